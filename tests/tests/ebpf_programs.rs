//! `BPF_PROG_TEST_RUN` tests of the tc programs `lan_ingress` (client upload) and `lan_egress`
//! (client download): crafted frames go in, the client counters in `USAGE` and the global
//! `STATS` come out. Each test loads its own copy of the object with its maps pinned in a fresh
//! bpffs folder, which is removed when the test ends; nothing is attached to an interface.
//! Needs root (`CAP_BPF`, `CAP_NET_ADMIN`) and bpffs at /sys/fs/bpf.
#![expect(clippy::expect_used, reason = "a test reports failure by panicking")]

use std::collections::BTreeSet;
use std::{
    fs,
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    process,
    sync::atomic::{AtomicU32, Ordering},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapError, PerCpuArray, PerCpuHashMap, PerCpuValues},
    programs::{SchedClassifier, TestRun, TestRunOptions},
    util::nr_cpus,
};
use hotspotd::bpf::EBPF_OBJECT;
use hotspotd_common::{IpKey, MAP_STATS, MAP_USAGE, MAX_CLIENTS, MacKey, Usage, stat};
use hotspotd_tests::frames::{
    BROADCAST_MAC, ETH_HLEN, ETH_P_8021Q, ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, IP_VERSION_AT,
    IPPROTO_TCP, IPPROTO_UDP, IPV4_HLEN, IPV4_TOTAL_LEN_AT, IPV6_HLEN, IPV6_PAYLOAD_LEN_AT, Mac,
    TCP_HLEN, TCP_TIMESTAMPS, UDP_HLEN, VlanTag, XorShift, arp_request, client_mac, ethernet, ipv4,
    ipv6, padded, random_frame, tcp, tcp_with_options, udp,
};

/// What both programs return for every frame: `TC_ACT_UNSPEC`, "let whatever comes next
/// decide". Accounting never drops.
const TC_ACT_UNSPEC: i32 = -1;

// Locally administered unicast MACs (second-lowest bit of the first octet set, lowest clear).
const CLIENT: Mac = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
const GATEWAY: Mac = [0x02, 0x00, 0x00, 0x00, 0x00, 0xfe];
const MDNS_V4_MAC: Mac = [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb];

const CLIENT_V4: [u8; 4] = Ipv4Addr::new(192, 168, 50, 10).octets();
const BOX_V4: [u8; 4] = Ipv4Addr::new(192, 168, 50, 1).octets();
const REMOTE_V4: [u8; 4] = Ipv4Addr::new(203, 0, 113, 7).octets();
const MDNS_V4: [u8; 4] = Ipv4Addr::new(224, 0, 0, 251).octets();
const CLIENT_V6: [u8; 16] = Ipv6Addr::new(0x2001, 0xdb8, 0x50, 0, 0, 0, 0, 0x10).octets();
const BOX_V6: [u8; 16] = Ipv6Addr::new(0x2001, 0xdb8, 0x50, 0, 0, 0, 0, 0x1).octets();
const REMOTE_V6: [u8; 16] = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x7).octets();
const ALL_NODES_V6: [u8; 16] = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets();

const CLIENT_PORT: u16 = 40_000;
const HTTPS_PORT: u16 = 443;
const DNS_PORT: u16 = 53;
const MDNS_PORT: u16 = 5353;
const DHCP_SERVER_PORT: u16 = 67;
const DHCP_CLIENT_PORT: u16 = 68;

// `struct __sk_buff` of the kernel's uapi `linux/bpf.h`: its size and the offsets of the two
// fields the GSO test sets. BPF_PROG_TEST_RUN copies these into the skb's shared info and
// rejects a context with any byte set in a field it does not let a test choose.
const SK_BUFF_LEN: usize = 192;
const SK_BUFF_GSO_SEGS: usize = 164;
const SK_BUFF_GSO_SIZE: usize = 176;

/// The two programs under test.
#[derive(Clone, Copy, Debug)]
enum Program {
    /// Frames from clients: the client is the source MAC.
    Ingress,
    /// Frames to clients: the client is the destination MAC.
    Egress,
}

impl Program {
    const BOTH: [Self; 2] = [Self::Ingress, Self::Egress];

    const fn name(self) -> &'static str {
        match self {
            Self::Ingress => "lan_ingress",
            Self::Egress => "lan_egress",
        }
    }
}

/// A bpffs folder for one test's pinned maps. Dropping it (also when the test panics) unpins
/// them, so no test sees another's counters and nothing outlives the run.
struct PinDir {
    path: PathBuf,
}

impl PinDir {
    fn create() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = PathBuf::from(format!(
            "/sys/fs/bpf/hotspotd-testrun-{}-{}",
            process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        if let Err(error) = fs::create_dir(&path) {
            panic!(
                "mkdir {}: {error} (needs root and bpffs at /sys/fs/bpf)",
                path.display()
            );
        }
        Self { path }
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        // Unpinning removes the names only; each map goes when its last fd closes.
        if let Err(error) = fs::remove_dir_all(&self.path) {
            eprintln!("removing {}: {error}", self.path.display());
        }
    }
}

/// The eBPF object loaded with its programs verified, ready for test runs.
struct Harness {
    ebpf: Ebpf,
    /// The box's addresses told to the programs so far.
    local_addrs: BTreeSet<IpKey>,
    // Declared after `ebpf` so the maps' fds close before their pins go.
    _pins: PinDir,
}

impl Harness {
    fn load() -> Self {
        let pins = PinDir::create();
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&pins.path)
            .load(EBPF_OBJECT)
            .expect("load the eBPF object");
        for program in Program::BOTH {
            let classifier: &mut SchedClassifier = ebpf
                .program_mut(program.name())
                .expect("program in the object")
                .try_into()
                .expect("program is a tc classifier");
            classifier.load().expect("the verifier accepts the program");
        }
        Self {
            ebpf,
            local_addrs: BTreeSet::new(),
            _pins: pins,
        }
    }

    /// Runs `program` once on `frame` and checks that it let the frame through.
    fn run(&self, program: Program, frame: &[u8]) {
        self.run_with_context(program, frame, None);
    }

    fn run_with_context(&self, program: Program, frame: &[u8], context: Option<&[u8]>) {
        let classifier: &SchedClassifier = self
            .ebpf
            .program(program.name())
            .expect("program in the object")
            .try_into()
            .expect("program is a tc classifier");
        let options = TestRunOptions {
            data_in: Some(frame),
            ctx_in: context,
            ..TestRunOptions::new()
        };
        let result = classifier.test_run(options).unwrap_or_else(|error| {
            panic!(
                "{} test run of a {}-byte frame: {error:?}",
                program.name(),
                frame.len()
            )
        });
        assert_eq!(
            result.return_value.cast_signed(),
            TC_ACT_UNSPEC,
            "{} must never drop or redirect: frame {frame:02x?}",
            program.name(),
        );
    }

    /// The client's counters summed over all CPUs, `None` when it has no entry.
    fn usage(&self, client: Mac) -> Option<Usage> {
        let map: PerCpuHashMap<_, MacKey, Usage> =
            PerCpuHashMap::try_from(self.ebpf.map(MAP_USAGE).expect("USAGE map"))
                .expect("USAGE is a per-CPU hash map");
        match map.get(&MacKey::new(client), 0) {
            Ok(per_cpu) => Some(sum_cpus(&per_cpu)),
            Err(MapError::KeyNotFound) => None,
            Err(error) => panic!("reading USAGE: {error}"),
        }
    }

    /// Every client's counters summed over all CPUs, in key order.
    fn all_usage(&self) -> Vec<(Mac, Usage)> {
        let map: PerCpuHashMap<_, MacKey, Usage> =
            PerCpuHashMap::try_from(self.ebpf.map(MAP_USAGE).expect("USAGE map"))
                .expect("USAGE is a per-CPU hash map");
        let mut entries: Vec<(Mac, Usage)> = map
            .iter()
            .map(|entry| {
                let (key, per_cpu) = entry.expect("iterate USAGE");
                (key.addr, sum_cpus(&per_cpu))
            })
            .collect();
        entries.sort_unstable_by_key(|(mac, _)| *mac);
        entries
    }

    /// One `STATS` counter summed over all CPUs.
    fn stat(&self, index: u32) -> u64 {
        let map: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map(MAP_STATS).expect("STATS map"))
                .expect("STATS is a per-CPU array");
        map.get(&index, 0).expect("read STATS").iter().sum()
    }

    fn stats(&self) -> Stats {
        Stats {
            malformed: self.stat(stat::MALFORMED_PACKETS),
            untracked: self.stat(stat::UNTRACKED_PACKETS),
            non_ip: self.stat(stat::NON_IP_PACKETS),
        }
    }

    /// Gives `client` an all-zero entry in `USAGE`, as if it had been seen before.
    fn insert_client(&mut self, client: Mac) {
        let mut map: PerCpuHashMap<_, MacKey, Usage> =
            PerCpuHashMap::try_from(self.ebpf.map_mut(MAP_USAGE).expect("USAGE map"))
                .expect("USAGE is a per-CPU hash map");
        let cpus = nr_cpus().expect("count the possible CPUs");
        let zeros = PerCpuValues::try_from(vec![Usage::default(); cpus]).expect("one per CPU");
        map.insert(MacKey::new(client), zeros, 0)
            .expect("insert into USAGE");
    }

    /// Tells the programs `addr` is the box itself, as the daemon does.
    fn add_local_addr(&mut self, addr: IpKey) {
        self.local_addrs.insert(addr);
        hotspotd::bpf::set_local_addrs(&mut self.ebpf, &self.local_addrs)
            .expect("write the local addresses");
    }
}

/// `STATS`, summed over all CPUs.
#[derive(Debug, Default, PartialEq, Eq)]
struct Stats {
    malformed: u64,
    untracked: u64,
    non_ip: u64,
}

fn sum_cpus(per_cpu: &[Usage]) -> Usage {
    per_cpu.iter().fold(Usage::default(), Usage::merged)
}

/// The counters without `last_seen_jiffies`, which is a clock reading.
fn counters(usage: Usage) -> Usage {
    Usage {
        last_seen_jiffies: 0,
        ..usage
    }
}

fn billable_up(ip_bytes: usize, packets: u64) -> Usage {
    Usage {
        up_bytes: to_u64(ip_bytes),
        up_packets: packets,
        ..Usage::default()
    }
}

fn billable_down(ip_bytes: usize, packets: u64) -> Usage {
    Usage {
        down_bytes: to_u64(ip_bytes),
        down_packets: packets,
        ..Usage::default()
    }
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).expect("usize fits u64")
}

fn udp_v4(src: [u8; 4], dst: [u8; 4], payload_len: usize) -> Vec<u8> {
    ipv4(
        src,
        dst,
        IPPROTO_UDP,
        &udp(CLIENT_PORT, DNS_PORT, payload_len),
    )
}

fn udp_v6(src: [u8; 16], dst: [u8; 16], payload_len: usize) -> Vec<u8> {
    ipv6(
        src,
        dst,
        IPPROTO_UDP,
        &udp(CLIENT_PORT, DNS_PORT, payload_len),
    )
}

/// A frame from the client through the gateway.
fn upload(ether_type: u16, packet: &[u8]) -> Vec<u8> {
    ethernet(GATEWAY, CLIENT, &[], ether_type, packet)
}

/// A frame from the gateway to the client.
fn download(ether_type: u16, packet: &[u8]) -> Vec<u8> {
    ethernet(CLIENT, GATEWAY, &[], ether_type, packet)
}

#[test]
fn ipv4_udp_is_billable_ip_bytes() {
    let mut harness = Harness::load();
    let up = udp_v4(CLIENT_V4, REMOTE_V4, 100);
    let down = udp_v4(REMOTE_V4, CLIENT_V4, 1_000);
    assert_eq!(up.len(), IPV4_HLEN + UDP_HLEN + 100);

    harness.run(Program::Ingress, &upload(ETH_P_IPV4, &up));
    let usage = harness
        .usage(CLIENT)
        .expect("the client's first packet creates its entry");
    assert_eq!(counters(usage), billable_up(up.len(), 1));
    assert_ne!(
        usage.last_seen_jiffies, 0,
        "last_seen_ns is set by the first packet"
    );

    harness.run(Program::Egress, &download(ETH_P_IPV4, &down));
    let usage = harness.usage(CLIENT).expect("client entry");
    assert_eq!(
        counters(usage),
        Usage {
            down_bytes: to_u64(down.len()),
            down_packets: 1,
            ..billable_up(up.len(), 1)
        }
    );
    assert_eq!(harness.stats(), Stats::default());

    // A remote that is not in LOCAL_ADDRS stays billable when another address is.
    harness.add_local_addr(IpKey::from_v4(BOX_V4));
    harness.run(Program::Ingress, &upload(ETH_P_IPV4, &up));
    assert_eq!(
        harness.usage(CLIENT).expect("client entry").up_bytes,
        2 * to_u64(up.len())
    );
}

#[test]
fn ethernet_padding_is_not_counted() {
    let harness = Harness::load();
    let up = udp_v4(CLIENT_V4, REMOTE_V4, 0);
    let down = udp_v4(REMOTE_V4, CLIENT_V4, 0);
    assert_eq!(up.len(), 28);
    let up_frame = padded(upload(ETH_P_IPV4, &up));
    assert_eq!(up_frame.len(), 60);

    harness.run(Program::Ingress, &up_frame);
    harness.run(Program::Egress, &padded(download(ETH_P_IPV4, &down)));

    let usage = harness.usage(CLIENT).expect("client entry");
    assert_eq!(
        counters(usage),
        Usage {
            down_bytes: 28,
            down_packets: 1,
            ..billable_up(28, 1)
        }
    );
}

#[test]
fn ipv6_udp_is_billable_ip_bytes() {
    let harness = Harness::load();
    let up = udp_v6(CLIENT_V6, REMOTE_V6, 200);
    let down = udp_v6(REMOTE_V6, CLIENT_V6, 1_200);
    assert_eq!(up.len(), IPV6_HLEN + UDP_HLEN + 200);

    harness.run(Program::Ingress, &upload(ETH_P_IPV6, &up));
    assert_eq!(
        counters(harness.usage(CLIENT).expect("client entry")),
        billable_up(up.len(), 1)
    );

    harness.run(Program::Egress, &download(ETH_P_IPV6, &down));
    assert_eq!(
        counters(harness.usage(CLIENT).expect("client entry")),
        Usage {
            down_bytes: to_u64(down.len()),
            down_packets: 1,
            ..billable_up(up.len(), 1)
        }
    );
}

#[test]
fn vlan_tags_are_not_counted() {
    let harness = Harness::load();
    let single = [VlanTag::dot1q(50)];
    let qinq = [VlanTag::dot1ad(100), VlanTag::dot1q(50)];
    let v4_up = udp_v4(CLIENT_V4, REMOTE_V4, 300);
    let v4_down = udp_v4(REMOTE_V4, CLIENT_V4, 700);
    let v6_up = udp_v6(CLIENT_V6, REMOTE_V6, 300);

    for tags in [&single[..], &qinq[..]] {
        harness.run(
            Program::Ingress,
            &ethernet(GATEWAY, CLIENT, tags, ETH_P_IPV4, &v4_up),
        );
        harness.run(
            Program::Egress,
            &ethernet(CLIENT, GATEWAY, tags, ETH_P_IPV4, &v4_down),
        );
    }
    harness.run(
        Program::Ingress,
        &ethernet(GATEWAY, CLIENT, &qinq, ETH_P_IPV6, &v6_up),
    );

    assert_eq!(
        counters(harness.usage(CLIENT).expect("client entry")),
        Usage {
            down_bytes: 2 * to_u64(v4_down.len()),
            down_packets: 2,
            ..billable_up(2 * v4_up.len() + v6_up.len(), 3)
        }
    );
    assert_eq!(harness.stats(), Stats::default());
}

#[test]
fn traffic_with_the_box_is_local() {
    let mut harness = Harness::load();
    harness.add_local_addr(IpKey::from_v4(BOX_V4));
    harness.add_local_addr(IpKey::from_v6(BOX_V6));
    let v4_up = udp_v4(CLIENT_V4, BOX_V4, 10);
    let v6_up = udp_v6(CLIENT_V6, BOX_V6, 20);
    let v4_down = udp_v4(BOX_V4, CLIENT_V4, 30);
    let v6_down = udp_v6(BOX_V6, CLIENT_V6, 40);

    harness.run(Program::Ingress, &upload(ETH_P_IPV4, &v4_up));
    harness.run(Program::Ingress, &upload(ETH_P_IPV6, &v6_up));
    harness.run(Program::Egress, &download(ETH_P_IPV4, &v4_down));
    harness.run(Program::Egress, &download(ETH_P_IPV6, &v6_down));

    assert_eq!(
        counters(harness.usage(CLIENT).expect("client entry")),
        Usage {
            up_local_bytes: to_u64(v4_up.len() + v6_up.len()),
            down_local_bytes: to_u64(v4_down.len() + v6_down.len()),
            ..Usage::default()
        }
    );
}

#[test]
fn addresses_beyond_the_inline_table_are_local_too() {
    let mut harness = Harness::load();
    // More IPv4 addresses than the inline table holds: the last ones only the hash map has.
    let count = u8::try_from(hotspotd_common::LOCAL_TABLE_LEN + 4).expect("fits a u8");
    for host in 0..count {
        harness.add_local_addr(IpKey::from_v4([203, 0, 113, host]));
    }
    let first = udp_v4(CLIENT_V4, [203, 0, 113, 0], 10);
    let last = udp_v4(CLIENT_V4, [203, 0, 113, count - 1], 20);
    let remote = udp_v4(CLIENT_V4, [203, 0, 113, count], 30);
    harness.run(Program::Ingress, &upload(ETH_P_IPV4, &first));
    harness.run(Program::Ingress, &upload(ETH_P_IPV4, &last));
    harness.run(Program::Ingress, &upload(ETH_P_IPV4, &remote));
    assert_eq!(
        counters(harness.usage(CLIENT).expect("client entry")),
        Usage {
            up_local_bytes: to_u64(first.len() + last.len()),
            up_bytes: to_u64(remote.len()),
            up_packets: 1,
            ..Usage::default()
        }
    );
}

#[test]
fn multicast_and_broadcast_are_local() {
    let harness = Harness::load();
    // The group addresses are sent to the gateway's unicast MAC so the IP-level check is what
    // is tested; the last frame tests the MAC-level one with a unicast remote.
    let mdns = ipv4(
        CLIENT_V4,
        MDNS_V4,
        IPPROTO_UDP,
        &udp(MDNS_PORT, MDNS_PORT, 50),
    );
    let dhcp = ipv4(
        [0; 4],
        [0xff; 4],
        IPPROTO_UDP,
        &udp(DHCP_CLIENT_PORT, DHCP_SERVER_PORT, 300),
    );
    let all_nodes = udp_v6(CLIENT_V6, ALL_NODES_V6, 60);
    let to_broadcast_mac = udp_v4(CLIENT_V4, REMOTE_V4, 70);
    let frames = [
        ("224.0.0.251", upload(ETH_P_IPV4, &mdns), mdns.len()),
        ("255.255.255.255", upload(ETH_P_IPV4, &dhcp), dhcp.len()),
        ("ff02::1", upload(ETH_P_IPV6, &all_nodes), all_nodes.len()),
        (
            "ff:ff:ff:ff:ff:ff",
            ethernet(BROADCAST_MAC, CLIENT, &[], ETH_P_IPV4, &to_broadcast_mac),
            to_broadcast_mac.len(),
        ),
    ];

    let mut local_bytes = 0;
    for (destination, frame, ip_len) in frames {
        harness.run(Program::Ingress, &frame);
        local_bytes += to_u64(ip_len);
        assert_eq!(
            counters(harness.usage(CLIENT).expect("client entry")),
            Usage {
                up_local_bytes: local_bytes,
                ..Usage::default()
            },
            "a packet to {destination} is local, not billable",
        );
    }

    // Downstream group traffic belongs to no client.
    let mdns_down = ipv4(BOX_V4, MDNS_V4, IPPROTO_UDP, &udp(MDNS_PORT, MDNS_PORT, 50));
    harness.run(
        Program::Egress,
        &ethernet(MDNS_V4_MAC, GATEWAY, &[], ETH_P_IPV4, &mdns_down),
    );
    harness.run(
        Program::Egress,
        &ethernet(BROADCAST_MAC, GATEWAY, &[], ETH_P_IPV4, &dhcp),
    );
    assert_eq!(harness.all_usage().len(), 1, "only the client has an entry");
}

/// A group packet reaches a client's unicast MAC when the bridge port converts multicast to
/// unicast (`bridge link set ... mcast_to_unicast on`, common on WiFi ports). Upstream, the
/// same packet is local because its destination is a group.
#[test]
fn multicast_to_a_client_mac_is_local() {
    const OTHER_CLIENT_V4: [u8; 4] = Ipv4Addr::new(192, 168, 50, 20).octets();
    let harness = Harness::load();
    let mdns = ipv4(
        OTHER_CLIENT_V4,
        MDNS_V4,
        IPPROTO_UDP,
        &udp(MDNS_PORT, MDNS_PORT, 50),
    );

    harness.run(Program::Egress, &download(ETH_P_IPV4, &mdns));

    assert_eq!(
        counters(harness.usage(CLIENT).expect("client entry")),
        Usage {
            down_local_bytes: to_u64(mdns.len()),
            ..Usage::default()
        },
        "a packet to 224.0.0.251 is local, not billable"
    );
}

#[test]
fn arp_is_counted_as_non_ip_only() {
    let harness = Harness::load();
    let request = arp_request(CLIENT, CLIENT_V4, BOX_V4);
    harness.run(
        Program::Ingress,
        &padded(ethernet(BROADCAST_MAC, CLIENT, &[], ETH_P_ARP, &request)),
    );
    harness.run(Program::Egress, &padded(download(ETH_P_ARP, &request)));

    assert_eq!(harness.usage(CLIENT), None, "ARP creates no client entry");
    assert_eq!(
        harness.stats(),
        Stats {
            non_ip: 2,
            ..Stats::default()
        }
    );
}

/// A packet the programs must count as malformed, and what is wrong with it.
struct MalformedCase {
    what: &'static str,
    tags: &'static [VlanTag],
    ether_type: u16,
    packet: Vec<u8>,
}

fn malformed_cases() -> Vec<MalformedCase> {
    // BPF_PROG_TEST_RUN refuses (EINVAL) a frame whose ethertype is IPv4 or IPv6 but that is
    // shorter than that header, so truncated headers go behind a VLAN tag, which the kernel
    // does not look through and the programs do.
    const UNTAGGED: &[VlanTag] = &[];
    const TAGGED: &[VlanTag] = &[VlanTag::dot1q(50)];
    let v4 = udp_v4(CLIENT_V4, REMOTE_V4, 100);
    let v6 = udp_v6(CLIENT_V6, REMOTE_V6, 100);
    let patched = |packet: &[u8], at: usize, bytes: &[u8]| {
        let mut packet = packet.to_vec();
        packet[at..at + bytes.len()].copy_from_slice(bytes);
        packet
    };
    let v4_len = u16::try_from(v4.len()).expect("short packet");
    let v6_payload_len = u16::try_from(v6.len() - IPV6_HLEN).expect("short packet");
    let v4_too_long = patched(&v4, IPV4_TOTAL_LEN_AT, &(v4_len + 1).to_be_bytes());
    let v4_too_short = patched(&v4, IPV4_TOTAL_LEN_AT, &10u16.to_be_bytes());
    let v6_too_long = patched(
        &v6,
        IPV6_PAYLOAD_LEN_AT,
        &(v6_payload_len + 1).to_be_bytes(),
    );
    let case = |what, tags, ether_type, packet| MalformedCase {
        what,
        tags,
        ether_type,
        packet,
    };
    #[rustfmt::skip]
    let cases = vec![
        case("802.1Q tag, nothing after it", UNTAGGED, ETH_P_8021Q, Vec::new()),
        case("802.1Q tag cut short", UNTAGGED, ETH_P_8021Q, vec![0x00]),
        case("IPv4 ethertype, nothing after it", TAGGED, ETH_P_IPV4, Vec::new()),
        case("IPv4 header cut at 10 bytes", TAGGED, ETH_P_IPV4, v4[..10].to_vec()),
        case("IPv4 header cut at 19 bytes", TAGGED, ETH_P_IPV4, v4[..19].to_vec()),
        case("IPv4 total length beyond the frame", UNTAGGED, ETH_P_IPV4, v4_too_long),
        case("IPv4 total length below the header", UNTAGGED, ETH_P_IPV4, v4_too_short),
        case("IPv4 IHL 4", UNTAGGED, ETH_P_IPV4, patched(&v4, IP_VERSION_AT, &[0x44])),
        case("IPv4 IHL 0", UNTAGGED, ETH_P_IPV4, patched(&v4, IP_VERSION_AT, &[0x40])),
        case("IPv4 version 5", UNTAGGED, ETH_P_IPV4, patched(&v4, IP_VERSION_AT, &[0x55])),
        case("IPv4 version 6", UNTAGGED, ETH_P_IPV4, patched(&v4, IP_VERSION_AT, &[0x65])),
        case("IPv6 header cut at 30 bytes", TAGGED, ETH_P_IPV6, v6[..30].to_vec()),
        case("IPv6 payload length beyond the frame", UNTAGGED, ETH_P_IPV6, v6_too_long),
        case("IPv6 version 4", UNTAGGED, ETH_P_IPV6, patched(&v6, IP_VERSION_AT, &[0x40])),
    ];
    cases
}

#[test]
fn malformed_ip_is_never_billed() {
    let harness = Harness::load();
    let mut malformed = 0;
    for MalformedCase {
        what,
        tags,
        ether_type,
        packet,
    } in malformed_cases()
    {
        for program in Program::BOTH {
            let frame = match program {
                Program::Ingress => ethernet(GATEWAY, CLIENT, tags, ether_type, &packet),
                Program::Egress => ethernet(CLIENT, GATEWAY, tags, ether_type, &packet),
            };
            harness.run(program, &frame);
            malformed += 1;
            assert_eq!(
                harness.stats(),
                Stats {
                    malformed,
                    ..Stats::default()
                },
                "{what} ({}): counted as malformed",
                program.name()
            );
            assert_eq!(
                harness.usage(CLIENT),
                None,
                "{what}: not accounted to the client"
            );
        }
    }
}

#[test]
fn group_source_mac_is_no_client() {
    let harness = Harness::load();
    let packet = udp_v4(CLIENT_V4, REMOTE_V4, 100);
    harness.run(
        Program::Ingress,
        &ethernet(GATEWAY, MDNS_V4_MAC, &[], ETH_P_IPV4, &packet),
    );
    harness.run(
        Program::Ingress,
        &ethernet(GATEWAY, BROADCAST_MAC, &[], ETH_P_IPV4, &packet),
    );

    assert_eq!(
        harness.all_usage(),
        Vec::new(),
        "no client entry for a group source MAC"
    );
    assert_eq!(harness.stats(), Stats::default());
}

/// A `__sk_buff` context saying the skb is a GSO packet of `segments` segments.
fn gso_context(segments: u32, segment_size: u32) -> [u8; SK_BUFF_LEN] {
    let mut context = [0; SK_BUFF_LEN];
    context[SK_BUFF_GSO_SEGS..SK_BUFF_GSO_SEGS + 4].copy_from_slice(&segments.to_ne_bytes());
    context[SK_BUFF_GSO_SIZE..SK_BUFF_GSO_SIZE + 4].copy_from_slice(&segment_size.to_ne_bytes());
    context
}

#[test]
fn gso_packet_counts_as_its_segments() {
    // BPF_PROG_TEST_RUN takes at most a page of linear data, about 3,700 bytes of frame.
    const SEGMENTS: usize = 4;
    const SEGMENT_PAYLOAD: usize = 800;
    const PAYLOAD: usize = SEGMENTS * SEGMENT_PAYLOAD;
    let context = gso_context(
        u32::try_from(SEGMENTS).expect("u32"),
        u32::try_from(SEGMENT_PAYLOAD).expect("u32"),
    );
    let tcp_up = tcp(CLIENT_PORT, HTTPS_PORT, PAYLOAD);
    let tcp_down = tcp(HTTPS_PORT, CLIENT_PORT, PAYLOAD);
    let tcp_timestamps_up = tcp_with_options(CLIENT_PORT, HTTPS_PORT, &TCP_TIMESTAMPS, PAYLOAD);
    let udp_down = udp(HTTPS_PORT, CLIENT_PORT, PAYLOAD);
    // What every segment repeats on the wire: its IP header and its TCP or UDP header.
    let cases = [
        (
            "IPv4 TCP",
            Program::Ingress,
            upload(
                ETH_P_IPV4,
                &ipv4(CLIENT_V4, REMOTE_V4, IPPROTO_TCP, &tcp_up),
            ),
            IPV4_HLEN + TCP_HLEN,
        ),
        (
            "IPv4 TCP with timestamps",
            Program::Ingress,
            upload(
                ETH_P_IPV4,
                &ipv4(CLIENT_V4, REMOTE_V4, IPPROTO_TCP, &tcp_timestamps_up),
            ),
            IPV4_HLEN + TCP_HLEN + TCP_TIMESTAMPS.len(),
        ),
        (
            "IPv6 TCP",
            Program::Egress,
            download(
                ETH_P_IPV6,
                &ipv6(REMOTE_V6, CLIENT_V6, IPPROTO_TCP, &tcp_down),
            ),
            IPV6_HLEN + TCP_HLEN,
        ),
        (
            "IPv6 UDP",
            Program::Egress,
            download(
                ETH_P_IPV6,
                &ipv6(REMOTE_V6, CLIENT_V6, IPPROTO_UDP, &udp_down),
            ),
            IPV6_HLEN + UDP_HLEN,
        ),
    ];

    for (what, program, frame, headers_len) in cases {
        let harness = Harness::load();
        harness.run_with_context(program, &frame, Some(&context));
        let wire_bytes = PAYLOAD + SEGMENTS * headers_len;
        let expected = match program {
            Program::Ingress => billable_up(wire_bytes, to_u64(SEGMENTS)),
            Program::Egress => billable_down(wire_bytes, to_u64(SEGMENTS)),
        };
        let usage = harness.usage(CLIENT).expect("client entry");
        assert_eq!(counters(usage), expected, "{what} GSO packet");
    }
}

/// virtio-net, tun/tap and Xen netback hand the stack GSO packets with only `gso_size` set and
/// `gso_segs` left 0 for later (`virtio_net_hdr_to_skb`: "Header must be checked, and
/// `gso_segs` computed"), and forwarding keeps them so: a hotspot running in a VM sees its
/// clients' traffic like this.
#[test]
fn gso_packet_without_segment_count_counts_as_its_segments() {
    const SEGMENTS: usize = 4;
    const SEGMENT_PAYLOAD: usize = 800;
    const PAYLOAD: usize = SEGMENTS * SEGMENT_PAYLOAD;
    let harness = Harness::load();
    let context = gso_context(0, u32::try_from(SEGMENT_PAYLOAD).expect("u32"));
    let up = ipv4(
        CLIENT_V4,
        REMOTE_V4,
        IPPROTO_TCP,
        &tcp(CLIENT_PORT, HTTPS_PORT, PAYLOAD),
    );

    harness.run_with_context(Program::Ingress, &upload(ETH_P_IPV4, &up), Some(&context));

    let wire_bytes = PAYLOAD + SEGMENTS * (IPV4_HLEN + TCP_HLEN);
    assert_eq!(
        counters(harness.usage(CLIENT).expect("client entry")),
        billable_up(wire_bytes, to_u64(SEGMENTS))
    );
}

#[test]
fn full_usage_map_counts_untracked_packets() {
    let mut harness = Harness::load();
    for n in 0..MAX_CLIENTS {
        harness.insert_client(client_mac(n));
    }
    let newcomer = client_mac(MAX_CLIENTS);
    let tracked = client_mac(MAX_CLIENTS - 1);
    let packet = udp_v4(CLIENT_V4, REMOTE_V4, 100);

    harness.run(
        Program::Ingress,
        &ethernet(GATEWAY, newcomer, &[], ETH_P_IPV4, &packet),
    );
    assert_eq!(harness.usage(newcomer), None, "no room for a new client");
    assert_eq!(
        harness.stats(),
        Stats {
            untracked: 1,
            ..Stats::default()
        },
        "the packet is counted as untracked"
    );

    harness.run(
        Program::Ingress,
        &ethernet(GATEWAY, tracked, &[], ETH_P_IPV4, &packet),
    );
    assert_eq!(
        counters(harness.usage(tracked).expect("client entry")),
        billable_up(packet.len(), 1),
        "clients already in the map are still counted"
    );
}

#[test]
fn clients_are_counted_apart() {
    const CLIENTS: [Mac; 3] = [client_mac(10), client_mac(11), client_mac(12)];
    let harness = Harness::load();
    let mut expected = Vec::new();
    for (n, client) in (1..).zip(CLIENTS) {
        let up = udp_v4(CLIENT_V4, REMOTE_V4, 100 * n);
        let down = udp_v6(REMOTE_V6, CLIENT_V6, 1_000 * n);
        for _ in 0..n {
            harness.run(
                Program::Ingress,
                &ethernet(GATEWAY, client, &[], ETH_P_IPV4, &up),
            );
            harness.run(
                Program::Egress,
                &ethernet(client, GATEWAY, &[], ETH_P_IPV6, &down),
            );
        }
        let packets = to_u64(n);
        expected.push((
            client,
            Usage {
                down_bytes: packets * to_u64(down.len()),
                down_packets: packets,
                ..billable_up(n * up.len(), packets)
            },
        ));
    }

    let actual: Vec<(Mac, Usage)> = harness
        .all_usage()
        .into_iter()
        .map(|(mac, usage)| (mac, counters(usage)))
        .collect();
    assert_eq!(actual, expected);
}

/// Clients the random frames are steered to; the rest come from random MACs.
const RANDOM_CLIENTS: [Mac; 4] = [
    client_mac(20),
    client_mac(21),
    client_mac(22),
    client_mac(23),
];

#[test]
fn random_frames_never_fail_and_never_overcount() {
    const FRAMES: usize = 100_000;
    const RANDOM_FRAME_MAX_LEN: usize = 200;
    const SEED: u64 = 0x5eed_f00d_cafe_0001;
    let harness = Harness::load();
    let mut rng = XorShift::new(SEED);
    let mut l3_bytes_fed = 0;
    for _ in 0..FRAMES {
        let frame = random_frame(&mut rng, &RANDOM_CLIENTS, RANDOM_FRAME_MAX_LEN);
        for program in Program::BOTH {
            harness.run(program, &frame);
        }
        l3_bytes_fed += to_u64(frame.len() - ETH_HLEN);
    }

    let total = harness
        .all_usage()
        .iter()
        .fold(Usage::default(), |sum, (_, usage)| sum.merged(usage));
    let frames = to_u64(FRAMES);
    // No packet is counted as more than it carries past its Ethernet header.
    assert!(
        total.up_bytes + total.up_local_bytes <= l3_bytes_fed,
        "{total:?}"
    );
    assert!(
        total.down_bytes + total.down_local_bytes <= l3_bytes_fed,
        "{total:?}"
    );
    assert!(
        total.up_packets <= frames && total.down_packets <= frames,
        "{total:?}"
    );
    // The fuzzing reached every outcome, or the bounds above prove little.
    let stats = harness.stats();
    assert!(
        total.up_packets > frames / 10 && total.down_packets > frames / 10,
        "{total:?}"
    );
    assert!(
        total.up_local_bytes > 0 && total.down_local_bytes > 0,
        "{total:?}"
    );
    assert!(
        stats.malformed > frames / 10 && stats.non_ip > frames / 10,
        "{stats:?}"
    );
    assert_eq!(
        stats.untracked, 0,
        "USAGE never fills with a handful of clients"
    );
}
