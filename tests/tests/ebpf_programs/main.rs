//! `BPF_PROG_TEST_RUN` tests of the tc programs `lan_ingress` (client upload) and `lan_egress`
//! (client download): crafted frames go in; the verdict, the client counters in `USAGE`, the
//! global `STATS`, the grants in `GRANTS` and the events in `EVENTS` come out. Each test loads
//! its own copy of the object with its maps pinned in a fresh bpffs folder, which is removed
//! when the test ends; nothing is attached to an interface.
//! Needs root (`CAP_BPF`, `CAP_NET_ADMIN`) and bpffs at /sys/fs/bpf.
#![expect(clippy::expect_used, reason = "a test reports failure by panicking")]

use std::collections::BTreeSet;
use std::{
    fs,
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    process,
    sync::{
        Barrier,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, MapError, PerCpuArray, PerCpuHashMap, PerCpuValues, RingBuf},
    programs::{SchedClassifier, TestRun, TestRunOptions},
    util::nr_cpus,
};
use hotspotd::{bpf::EBPF_OBJECT, config::WalledGardenEntry};
use hotspotd_common::{
    CLOCK_PROBE, GateEvent, Grant, IpKey, MAP_CLOCK, MAP_EVENTS, MAP_STATS, MAP_USAGE, MAX_CLIENTS,
    MacKey, NO_DEADLINE, UNLIMITED_BYTES, Usage, gate_event, grant_flag, stat,
};
use hotspotd_tests::frames::{
    BROADCAST_MAC, ETH_HLEN, ETH_P_8021Q, ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, IP_VERSION_AT,
    IPPROTO_TCP, IPPROTO_UDP, IPV4_HLEN, IPV4_TOTAL_LEN_AT, IPV6_HLEN, IPV6_PAYLOAD_LEN_AT, Mac,
    TCP_HLEN, TCP_TIMESTAMPS, UDP_HLEN, VlanTag, XorShift, arp_request, client_mac, ethernet, ipv4,
    ipv6, padded, random_frame, tcp, tcp_with_options, udp,
};

/// The verdict on every frame the gate lets through: `TC_ACT_UNSPEC` (`TCX_NEXT`), "let whatever
/// comes next decide".
const TC_ACT_UNSPEC: i32 = -1;
/// The verdict on a packet the gate drops.
const TC_ACT_SHOT: i32 = 2;

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
const HTTP_PORT: u16 = 80;
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
        for name in [Program::Ingress.name(), Program::Egress.name(), CLOCK_PROBE] {
            let classifier: &mut SchedClassifier = ebpf
                .program_mut(name)
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

    /// A harness where each of `clients` has a running session without limits, so the gate
    /// lets all its traffic through: for tests about what is counted, not what passes.
    fn with_sessions(clients: &[Mac]) -> Self {
        let mut harness = Self::load();
        for client in clients {
            harness.grant(*client, unlimited());
        }
        harness
    }

    fn classifier(&self, name: &str) -> &SchedClassifier {
        self.ebpf
            .program(name)
            .expect("program in the object")
            .try_into()
            .expect("program is a tc classifier")
    }

    /// Runs `program` once on `frame` and returns its verdict.
    fn verdict(&self, program: Program, frame: &[u8], context: Option<&[u8]>) -> i32 {
        let options = TestRunOptions {
            data_in: Some(frame),
            ctx_in: context,
            ..TestRunOptions::new()
        };
        let result = self
            .classifier(program.name())
            .test_run(options)
            .unwrap_or_else(|error| {
                panic!(
                    "{} test run of a {}-byte frame: {error:?}",
                    program.name(),
                    frame.len()
                )
            });
        result.return_value.cast_signed()
    }

    /// Runs `program` once on `frame` and checks that it let the frame through.
    fn run(&self, program: Program, frame: &[u8]) {
        self.run_with_context(program, frame, None);
    }

    fn run_with_context(&self, program: Program, frame: &[u8], context: Option<&[u8]>) {
        assert_eq!(
            self.verdict(program, frame, context),
            TC_ACT_UNSPEC,
            "{} must let this frame through: {frame:02x?}",
            program.name(),
        );
    }

    /// Runs `program` once on `frame` and checks that it dropped the frame.
    fn run_dropped(&self, program: Program, frame: &[u8]) {
        self.run_dropped_with_context(program, frame, None);
    }

    fn run_dropped_with_context(&self, program: Program, frame: &[u8], context: Option<&[u8]>) {
        assert_eq!(
            self.verdict(program, frame, context),
            TC_ACT_SHOT,
            "{} must drop this frame: {frame:02x?}",
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
            dropped_no_session: self.stat(stat::DROPPED_NO_SESSION),
            dropped_budget: self.stat(stat::DROPPED_BUDGET),
            dropped_deadline: self.stat(stat::DROPPED_DEADLINE),
            events_lost: self.stat(stat::EVENTS_LOST),
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

    /// Installs or replaces `client`'s grant, as the daemon does when a session runs.
    fn grant(&mut self, client: Mac, grant: Grant) {
        hotspotd::bpf::set_grant(&mut self.ebpf, MacKey::new(client), grant)
            .expect("write the grant");
    }

    /// Removes `client`'s grant, as the daemon does when its session stops.
    fn revoke(&mut self, client: Mac) {
        hotspotd::bpf::remove_grant(&mut self.ebpf, MacKey::new(client)).expect("remove the grant");
    }

    /// `client`'s grant as the programs left it, `None` when it has none.
    fn grant_of(&self, client: Mac) -> Option<Grant> {
        hotspotd::bpf::grants(&self.ebpf)
            .expect("read GRANTS")
            .into_iter()
            .find_map(|(key, grant)| (key == MacKey::new(client)).then_some(grant))
    }

    /// Makes the walled garden exactly `entries` (`network.walled_garden` syntax).
    fn set_walled_garden(&mut self, entries: &[&str]) {
        let entries: Vec<WalledGardenEntry> = entries
            .iter()
            .map(|text| text.parse().expect("a valid walled-garden entry"))
            .collect();
        hotspotd::bpf::set_walled_garden(&mut self.ebpf, &entries)
            .expect("write the walled garden");
    }

    /// The kernel's jiffies now, the clock of `Grant::deadline_jiffies`: runs the clock probe
    /// and reads what it left in `CLOCK`, as the daemon does.
    fn jiffies(&self) -> u64 {
        // BPF_PROG_TEST_RUN wants at least an Ethernet header; the probe never reads it.
        let frame = [0u8; ETH_HLEN];
        self.classifier(CLOCK_PROBE)
            .test_run(TestRunOptions {
                data_in: Some(&frame),
                ..TestRunOptions::new()
            })
            .expect("run the clock probe");
        let clock: Array<_, u64> =
            Array::try_from(self.ebpf.map(MAP_CLOCK).expect("CLOCK map")).expect("CLOCK array");
        clock.get(&0, 0).expect("read CLOCK")
    }

    /// The reader of the programs' gate events. The map leaves the object, so call this once.
    fn take_events(&mut self) -> Events {
        let map = self.ebpf.take_map(MAP_EVENTS).expect("EVENTS map");
        Events(RingBuf::try_from(map).expect("EVENTS is a ring buffer"))
    }
}

/// `EVENTS`, read as the daemon reads it.
struct Events(RingBuf<MapData>);

impl Events {
    /// Every event written since the last call, oldest first.
    fn drain(&mut self) -> Vec<GateEvent> {
        let mut events = Vec::new();
        while let Some(item) = self.0.next() {
            events.push(decode_event(&item));
        }
        events
    }
}

/// A `GateEvent` from the bytes the kernel wrote (`#[repr(C)]`: session id, MAC key, kind).
fn decode_event(bytes: &[u8]) -> GateEvent {
    assert_eq!(
        bytes.len(),
        size_of::<GateEvent>(),
        "an EVENTS record is one GateEvent"
    );
    let session_id = i64::from_ne_bytes(bytes[0..8].try_into().expect("8 bytes"));
    let mac: Mac = bytes[8..14].try_into().expect("6 bytes");
    let kind = u32::from_ne_bytes(bytes[16..20].try_into().expect("4 bytes"));
    assert_eq!(
        (&bytes[14..16], &bytes[20..24]),
        (&[0u8; 2][..], &[0u8; 4][..]),
        "padding is zero"
    );
    GateEvent::new(MacKey::new(mac), session_id, kind)
}

/// The event the programs send when `client`'s session `session_id` crosses `kind`.
fn event(client: Mac, session_id: i64, kind: u32) -> GateEvent {
    GateEvent::new(MacKey::new(client), session_id, kind)
}

/// A running session that passes everything: no data limit, no deadline.
const fn unlimited() -> Grant {
    Grant::new(1, UNLIMITED_BYTES, NO_DEADLINE)
}

/// A data session with `bytes` left and no deadline.
const fn data_grant(session_id: i64, bytes: i64) -> Grant {
    Grant::new(session_id, bytes, NO_DEADLINE)
}

/// `STATS`, summed over all CPUs.
#[derive(Debug, Default, PartialEq, Eq)]
struct Stats {
    malformed: u64,
    untracked: u64,
    non_ip: u64,
    dropped_no_session: u64,
    dropped_budget: u64,
    dropped_deadline: u64,
    events_lost: u64,
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

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).expect("usize fits i64")
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
    let mut harness = Harness::with_sessions(&[CLIENT]);
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
    let harness = Harness::with_sessions(&[CLIENT]);
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
    let harness = Harness::with_sessions(&[CLIENT]);
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
    let harness = Harness::with_sessions(&[CLIENT]);
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

/// The box is reachable without a session: the captive portal, DNS and DHCP live there.
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
    assert_eq!(harness.stats(), Stats::default(), "nothing dropped");
}

#[test]
fn addresses_beyond_the_inline_table_are_local_too() {
    let mut harness = Harness::with_sessions(&[CLIENT]);
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
    // No session: group traffic never leaves the LAN, so the gate lets it through.
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
        let harness = Harness::with_sessions(&[CLIENT]);
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
    let harness = Harness::with_sessions(&[CLIENT]);
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
    harness.grant(newcomer, unlimited());
    harness.grant(tracked, unlimited());
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
    let harness = Harness::with_sessions(&CLIENTS);
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

/// What the programs did with a batch of random frames.
struct RandomRun {
    harness: Harness,
    /// Frames dropped, by both programs together.
    dropped: u64,
    frames: u64,
}

/// Feeds `FRAMES` seeded random frames to both programs, with `granted` (a subset of
/// [`RANDOM_CLIENTS`]) holding sessions without limits. Checks every verdict is "pass" or
/// "drop" and that nothing is counted as more than it carries.
fn run_random_frames(granted: &[Mac]) -> RandomRun {
    const FRAMES: usize = 100_000;
    const RANDOM_FRAME_MAX_LEN: usize = 200;
    const SEED: u64 = 0x5eed_f00d_cafe_0001;
    let harness = Harness::with_sessions(granted);
    let mut rng = XorShift::new(SEED);
    let mut l3_bytes_fed = 0;
    let mut dropped = 0;
    for _ in 0..FRAMES {
        let frame = random_frame(&mut rng, &RANDOM_CLIENTS, RANDOM_FRAME_MAX_LEN);
        for program in Program::BOTH {
            match harness.verdict(program, &frame, None) {
                TC_ACT_UNSPEC => {}
                TC_ACT_SHOT => dropped += 1,
                other => panic!(
                    "{} returned {other}, neither pass nor drop: frame {frame:02x?}",
                    program.name()
                ),
            }
        }
        l3_bytes_fed += to_u64(frame.len() - ETH_HLEN);
    }

    let total = total_usage(&harness);
    let frames = to_u64(FRAMES);
    // No packet is counted as more than it carries past its Ethernet header, nor twice.
    assert!(
        total.up_bytes + total.up_local_bytes + total.up_dropped_bytes <= l3_bytes_fed,
        "{total:?}"
    );
    assert!(
        total.down_bytes + total.down_local_bytes + total.down_dropped_bytes <= l3_bytes_fed,
        "{total:?}"
    );
    assert!(
        total.up_packets <= frames && total.down_packets <= frames,
        "{total:?}"
    );
    assert!(
        total.up_packets + total.down_packets + total.dropped_packets <= 2 * frames,
        "{total:?}"
    );
    // Every drop is accounted to its client and its reason, and only drops are.
    let stats = harness.stats();
    assert_eq!(total.dropped_packets, dropped, "{total:?}");
    assert_eq!(
        stats.dropped_no_session + stats.dropped_budget + stats.dropped_deadline,
        dropped,
        "{stats:?}"
    );
    // The fuzzing reached every outcome, or the bounds above prove little.
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
    RandomRun {
        harness,
        dropped,
        frames,
    }
}

fn total_usage(harness: &Harness) -> Usage {
    harness
        .all_usage()
        .iter()
        .fold(Usage::default(), |sum, (_, usage)| sum.merged(usage))
}

#[test]
fn random_frames_never_fail_and_never_overcount() {
    let RandomRun {
        mut harness,
        dropped,
        frames,
    } = run_random_frames(&RANDOM_CLIENTS);

    let total = total_usage(&harness);
    assert!(
        total.up_packets > frames / 10 && total.down_packets > frames / 10,
        "{total:?}"
    );
    // Sessions without limits never drop; only the random MACs without one are.
    for client in RANDOM_CLIENTS {
        let usage = harness
            .usage(client)
            .expect("a steered client has an entry");
        assert_eq!(
            (
                usage.up_dropped_bytes,
                usage.down_dropped_bytes,
                usage.dropped_packets
            ),
            (0, 0, 0),
            "{client:02x?} has a session: nothing of it is dropped"
        );
        assert_eq!(harness.grant_of(client), Some(unlimited()), "untouched");
    }
    assert!(dropped > 0, "random MACs without a session are dropped");
    let stats = harness.stats();
    assert_eq!((stats.dropped_budget, stats.dropped_deadline), (0, 0));
    assert_eq!(harness.take_events().drain(), Vec::new(), "no event");
}

#[test]
fn random_frames_without_sessions_are_never_billed() {
    let RandomRun {
        mut harness,
        dropped,
        frames,
    } = run_random_frames(&[]);

    let total = total_usage(&harness);
    assert_eq!(
        (
            total.up_bytes,
            total.up_packets,
            total.down_bytes,
            total.down_packets
        ),
        (0, 0, 0, 0),
        "nothing passes as billable without a session: {total:?}"
    );
    assert!(dropped > frames / 10, "{dropped} of {frames}");
    assert!(
        total.up_dropped_bytes > 0 && total.down_dropped_bytes > 0,
        "{total:?}"
    );
    let stats = harness.stats();
    assert_eq!(stats.dropped_no_session, dropped, "{stats:?}");
    assert_eq!(harness.take_events().drain(), Vec::new(), "no event");
}

// The gate: what passes and what is dropped.

/// The IP-level size of the packets the budget tests send.
const GATE_PACKET_LEN: usize = 100;

/// A `GATE_PACKET_LEN`-byte IPv4 UDP packet from the client to the internet.
fn gate_upload() -> Vec<u8> {
    let packet = udp_v4(CLIENT_V4, REMOTE_V4, GATE_PACKET_LEN - IPV4_HLEN - UDP_HLEN);
    assert_eq!(packet.len(), GATE_PACKET_LEN);
    upload(ETH_P_IPV4, &packet)
}

/// A `GATE_PACKET_LEN`-byte IPv4 UDP packet from the internet to the client.
fn gate_download() -> Vec<u8> {
    let packet = udp_v4(REMOTE_V4, CLIENT_V4, GATE_PACKET_LEN - IPV4_HLEN - UDP_HLEN);
    assert_eq!(packet.len(), GATE_PACKET_LEN);
    download(ETH_P_IPV4, &packet)
}

/// `n` gate packets' worth of bytes.
fn gate_bytes(n: usize) -> u64 {
    to_u64(n * GATE_PACKET_LEN)
}

#[test]
fn without_a_session_billable_traffic_is_dropped() {
    let mut harness = Harness::load();
    harness.add_local_addr(IpKey::from_v4(BOX_V4));
    let mut events = harness.take_events();
    let v4_up = udp_v4(CLIENT_V4, REMOTE_V4, 100);
    let v6_up = udp_v6(CLIENT_V6, REMOTE_V6, 200);
    let v4_down = udp_v4(REMOTE_V4, CLIENT_V4, 300);
    let v6_down = udp_v6(REMOTE_V6, CLIENT_V6, 400);

    harness.run_dropped(Program::Ingress, &upload(ETH_P_IPV4, &v4_up));
    harness.run_dropped(Program::Ingress, &upload(ETH_P_IPV6, &v6_up));
    harness.run_dropped(Program::Egress, &download(ETH_P_IPV4, &v4_down));
    harness.run_dropped(Program::Egress, &download(ETH_P_IPV6, &v6_down));

    let dropped = Usage {
        up_dropped_bytes: to_u64(v4_up.len() + v6_up.len()),
        down_dropped_bytes: to_u64(v4_down.len() + v6_down.len()),
        dropped_packets: 4,
        ..Usage::default()
    };
    let usage = harness.usage(CLIENT).expect("a dropped packet is counted");
    assert_eq!(counters(usage), dropped, "dropped, not billable");
    assert_ne!(
        usage.last_seen_jiffies, 0,
        "a dropped packet is a sign of life"
    );
    assert_eq!(
        harness.stats(),
        Stats {
            dropped_no_session: 4,
            ..Stats::default()
        }
    );

    // The box stays reachable, and so does the link layer.
    let to_box = udp_v4(CLIENT_V4, BOX_V4, 50);
    let from_box = udp_v4(BOX_V4, CLIENT_V4, 60);
    harness.run(Program::Ingress, &upload(ETH_P_IPV4, &to_box));
    harness.run(Program::Egress, &download(ETH_P_IPV4, &from_box));
    let request = arp_request(CLIENT, CLIENT_V4, BOX_V4);
    harness.run(
        Program::Ingress,
        &padded(ethernet(BROADCAST_MAC, CLIENT, &[], ETH_P_ARP, &request)),
    );
    harness.run(Program::Egress, &padded(download(ETH_P_ARP, &request)));

    assert_eq!(
        counters(harness.usage(CLIENT).expect("client entry")),
        Usage {
            up_local_bytes: to_u64(to_box.len()),
            down_local_bytes: to_u64(from_box.len()),
            ..dropped
        }
    );
    assert_eq!(
        harness.stats(),
        Stats {
            dropped_no_session: 4,
            non_ip: 2,
            ..Stats::default()
        }
    );
    assert_eq!(events.drain(), Vec::new(), "no session, no event");
}

/// A TCP or UDP header between `src_port` and `dst_port`, with a little payload.
fn transport(protocol: u8, src_port: u16, dst_port: u16) -> Vec<u8> {
    const PAYLOAD: usize = 20;
    match protocol {
        IPPROTO_TCP => tcp(src_port, dst_port, PAYLOAD),
        IPPROTO_UDP => udp(src_port, dst_port, PAYLOAD),
        _ => panic!("no ports in protocol {protocol}"),
    }
}

/// A frame for the walled-garden test: the program it goes to, the frame, its IP bytes.
type GardenProbe = (Program, Vec<u8>, usize);

/// The client sends a TCP or UDP packet to `dst`.
fn up4(dst: [u8; 4], protocol: u8, src_port: u16, dst_port: u16) -> GardenProbe {
    let packet = ipv4(
        CLIENT_V4,
        dst,
        protocol,
        &transport(protocol, src_port, dst_port),
    );
    (Program::Ingress, upload(ETH_P_IPV4, &packet), packet.len())
}

/// The client receives a TCP or UDP packet from `src`.
fn down4(src: [u8; 4], protocol: u8, src_port: u16, dst_port: u16) -> GardenProbe {
    let packet = ipv4(
        src,
        CLIENT_V4,
        protocol,
        &transport(protocol, src_port, dst_port),
    );
    (Program::Egress, download(ETH_P_IPV4, &packet), packet.len())
}

fn up6(dst: [u8; 16], protocol: u8, dst_port: u16) -> GardenProbe {
    let packet = ipv6(
        CLIENT_V6,
        dst,
        protocol,
        &transport(protocol, CLIENT_PORT, dst_port),
    );
    (Program::Ingress, upload(ETH_P_IPV6, &packet), packet.len())
}

fn down6(src: [u8; 16], protocol: u8, src_port: u16) -> GardenProbe {
    let packet = ipv6(
        src,
        CLIENT_V6,
        protocol,
        &transport(protocol, src_port, CLIENT_PORT),
    );
    (Program::Egress, download(ETH_P_IPV6, &packet), packet.len())
}

/// The client pings `dst`: ICMP, which has no ports.
fn ping4(dst: [u8; 4]) -> GardenProbe {
    const IPPROTO_ICMP: u8 = 1;
    const ECHO_REQUEST: [u8; 8] = [8, 0, 0, 0, 0, 0, 0, 0];
    let packet = ipv4(CLIENT_V4, dst, IPPROTO_ICMP, &ECHO_REQUEST);
    (Program::Ingress, upload(ETH_P_IPV4, &packet), packet.len())
}

/// The walled garden of the tests: a /24 with any port, one host with one port, and an IPv6
/// /48 with one port. [`REMOTE_V4`] (203.0.113.7) is the single host.
const GARDEN: [&str; 3] = [
    "198.51.100.0/24",
    "203.0.113.7:443",
    "[2001:db8:99::/48]:53",
];

#[test]
fn walled_garden_is_reachable_without_a_session() {
    const TCP: u8 = IPPROTO_TCP;
    const UDP: u8 = IPPROTO_UDP;
    const PASS: bool = true;
    const DROP: bool = false;
    const NET_HOST: [u8; 4] = Ipv4Addr::new(198, 51, 100, 9).octets();
    const OFF_NET: [u8; 4] = Ipv4Addr::new(198, 51, 101, 9).octets();
    const NEXT_HOST: [u8; 4] = Ipv4Addr::new(203, 0, 113, 8).octets();
    const V6_HOST: [u8; 16] = Ipv6Addr::new(0x2001, 0xdb8, 0x99, 0, 0, 0, 0, 1).octets();
    const V6_OFF_NET: [u8; 16] = Ipv6Addr::new(0x2001, 0xdb8, 0x9a, 0, 0, 0, 0, 1).octets();
    const OTHER_PORT: u16 = 12_345;
    let mut harness = Harness::load();
    harness.set_walled_garden(&GARDEN);
    #[rustfmt::skip]
    let cases = [
        ("198.51.100.9, any port of the /24", up4(NET_HOST, UDP, CLIENT_PORT, OTHER_PORT), PASS),
        ("198.51.100.9 by ICMP", ping4(NET_HOST), PASS),
        ("from 198.51.100.9", down4(NET_HOST, TCP, HTTP_PORT, CLIENT_PORT), PASS),
        ("198.51.101.9, next to the /24", up4(OFF_NET, UDP, CLIENT_PORT, OTHER_PORT), DROP),
        ("203.0.113.7 TCP 443", up4(REMOTE_V4, TCP, CLIENT_PORT, HTTPS_PORT), PASS),
        ("203.0.113.7 TCP 80", up4(REMOTE_V4, TCP, CLIENT_PORT, HTTP_PORT), DROP),
        ("203.0.113.7 UDP 443, any protocol", up4(REMOTE_V4, UDP, CLIENT_PORT, HTTPS_PORT), PASS),
        ("203.0.113.7 by ICMP, no port", ping4(REMOTE_V4), DROP),
        ("203.0.113.7 TCP 80 from port 443", up4(REMOTE_V4, TCP, HTTPS_PORT, HTTP_PORT), DROP),
        ("from 203.0.113.7 TCP 443", down4(REMOTE_V4, TCP, HTTPS_PORT, CLIENT_PORT), PASS),
        ("from 203.0.113.7 UDP 443", down4(REMOTE_V4, UDP, HTTPS_PORT, CLIENT_PORT), PASS),
        ("from 203.0.113.7 TCP 80 to port 443", down4(REMOTE_V4, TCP, HTTP_PORT, HTTPS_PORT), DROP),
        ("203.0.113.8 TCP 443, the next host", up4(NEXT_HOST, TCP, CLIENT_PORT, HTTPS_PORT), DROP),
        ("2001:db8:99::1 UDP 53", up6(V6_HOST, UDP, DNS_PORT), PASS),
        ("2001:db8:99::1 TCP 53", up6(V6_HOST, TCP, DNS_PORT), PASS),
        ("2001:db8:99::1 UDP 443", up6(V6_HOST, UDP, HTTPS_PORT), DROP),
        ("2001:db8:9a::1 UDP 53, next to the /48", up6(V6_OFF_NET, UDP, DNS_PORT), DROP),
        ("from 2001:db8:99::1 UDP 53", down6(V6_HOST, UDP, DNS_PORT), PASS),
        ("from 2001:db8:99::1 UDP 443", down6(V6_HOST, UDP, HTTPS_PORT), DROP),
    ];

    let mut expected = Usage::default();
    let mut dropped = 0;
    for (what, (program, frame, ip_len), passes) in cases {
        let bytes = to_u64(ip_len);
        let verdict = harness.verdict(program, &frame, None);
        match (passes, program) {
            (true, Program::Ingress) => expected.up_local_bytes += bytes,
            (true, Program::Egress) => expected.down_local_bytes += bytes,
            (false, Program::Ingress) => expected.up_dropped_bytes += bytes,
            (false, Program::Egress) => expected.down_dropped_bytes += bytes,
        }
        if !passes {
            expected.dropped_packets += 1;
            dropped += 1;
        }
        let wanted = if passes { TC_ACT_UNSPEC } else { TC_ACT_SHOT };
        assert_eq!(verdict, wanted, "{what}: passes = {passes}");
        assert_eq!(
            counters(harness.usage(CLIENT).expect("client entry")),
            expected,
            "{what}: the garden is counted as local, never billed"
        );
    }
    assert_eq!(
        harness.stats(),
        Stats {
            dropped_no_session: dropped,
            ..Stats::default()
        }
    );
}

/// Rule 8: a client whose session ran out still reaches the walled garden, even while its
/// spent grant is still in the kernel (the daemon may be down).
#[test]
fn a_spent_session_still_reaches_the_walled_garden() {
    let mut harness = Harness::load();
    harness.set_walled_garden(&GARDEN);
    harness.grant(CLIENT, data_grant(3, 0));
    let (program, garden, _) = up4(REMOTE_V4, IPPROTO_TCP, CLIENT_PORT, HTTPS_PORT);
    harness.run(program, &garden);
    let (program, elsewhere, _) = up4([192, 0, 2, 200], IPPROTO_TCP, CLIENT_PORT, HTTPS_PORT);
    harness.run_dropped(program, &elsewhere);
}

/// A fragment after the first has no ports: bytes of its payload that look like the allowed
/// port must not open a port-limited walled-garden host.
#[test]
fn later_fragments_never_match_a_garden_port() {
    let mut harness = Harness::load();
    harness.set_walled_garden(&GARDEN);
    // A UDP-sized payload whose first four bytes read as ports 1234 → 443.
    let mut payload = transport(IPPROTO_UDP, CLIENT_PORT, HTTPS_PORT);
    payload.truncate(16);
    let mut packet = ipv4(CLIENT_V4, REMOTE_V4, IPPROTO_UDP, &payload);
    // Fragment offset 185 × 8 bytes, no more fragments.
    packet[6..8].copy_from_slice(&185u16.to_be_bytes());
    harness.run_dropped(Program::Ingress, &upload(ETH_P_IPV4, &packet));
    // The same bytes as a first fragment are a real UDP header: allowed.
    let first = ipv4(CLIENT_V4, REMOTE_V4, IPPROTO_UDP, &payload);
    harness.run(Program::Ingress, &upload(ETH_P_IPV4, &first));
}

/// sessions.md rule 6: with a session, everything but the box is billable, the walled garden
/// too.
#[test]
fn walled_garden_traffic_of_a_session_is_billable() {
    let mut harness = Harness::with_sessions(&[CLIENT]);
    harness.set_walled_garden(&GARDEN);
    let (program, frame, ip_len) = up4(REMOTE_V4, IPPROTO_TCP, CLIENT_PORT, HTTPS_PORT);
    harness.run(program, &frame);
    assert_eq!(
        counters(harness.usage(CLIENT).expect("client entry")),
        billable_up(ip_len, 1)
    );
}

/// A data session of `bytes_left` bytes sends `GATE_PACKET_LEN`-byte packets up: exactly
/// `passes` get through, every later one (up or down) is dropped, and the crossing is reported
/// once.
fn check_budget(bytes_left: i64, passes: usize) {
    const SESSION: i64 = 7;
    const LATER_DROPS: usize = 20;
    let mut harness = Harness::load();
    harness.grant(CLIENT, data_grant(SESSION, bytes_left));
    let mut events = harness.take_events();
    let (up, down) = (gate_upload(), gate_download());

    for n in 1..=passes {
        assert_eq!(
            harness.verdict(Program::Ingress, &up, None),
            TC_ACT_UNSPEC,
            "budget {bytes_left}: packet {n} of {passes} passes"
        );
    }
    let grant = harness.grant_of(CLIENT).expect("the grant stays");
    assert_eq!(
        grant.bytes_left,
        bytes_left - to_i64(passes * GATE_PACKET_LEN),
        "budget {bytes_left}: every passed byte is spent"
    );
    // The packet that spent the last bytes reported it, so the daemon can chain at once.
    let reported = if passes > 0 {
        grant_flag::BUDGET_REPORTED
    } else {
        0
    };
    assert_eq!(
        grant.flags, reported,
        "budget {bytes_left}: reported by the last passing packet"
    );

    assert_eq!(
        harness.verdict(Program::Ingress, &up, None),
        TC_ACT_SHOT,
        "budget {bytes_left}: the packet after the budget is dropped"
    );
    for n in 0..LATER_DROPS {
        let (program, frame) = if n % 2 == 0 {
            (Program::Egress, &down)
        } else {
            (Program::Ingress, &up)
        };
        harness.run_dropped(program, frame);
    }

    let up_drops = 1 + LATER_DROPS / 2;
    let down_drops = LATER_DROPS / 2;
    assert_eq!(
        counters(harness.usage(CLIENT).expect("client entry")),
        Usage {
            up_dropped_bytes: gate_bytes(up_drops),
            down_dropped_bytes: gate_bytes(down_drops),
            dropped_packets: to_u64(up_drops + down_drops),
            ..billable_up(passes * GATE_PACKET_LEN, to_u64(passes))
        },
        "budget {bytes_left}: what passed is billed, the rest counted as dropped"
    );
    assert_eq!(
        harness.stats(),
        Stats {
            dropped_budget: to_u64(up_drops + down_drops),
            ..Stats::default()
        },
        "budget {bytes_left}"
    );
    let grant = harness.grant_of(CLIENT).expect("the grant stays");
    assert_eq!(
        (grant.flags, grant.session_id, grant.deadline_jiffies),
        (grant_flag::BUDGET_REPORTED, SESSION, NO_DEADLINE),
        "budget {bytes_left}"
    );
    assert!(grant.bytes_left <= 0, "budget {bytes_left}: {grant:?}");
    assert_eq!(
        events.drain(),
        vec![event(CLIENT, SESSION, gate_event::BUDGET_SPENT)],
        "budget {bytes_left}: one event, however many packets are dropped"
    );
}

#[test]
fn a_budget_passes_exactly_what_is_left() {
    check_budget(1_000, 10);
}

/// sessions.md rule 11: "at most one packet beyond its remaining data".
#[test]
fn a_budget_lets_at_most_one_packet_cross_its_end() {
    check_budget(950, 10);
    check_budget(1, 1);
}

#[test]
fn an_empty_budget_passes_nothing() {
    check_budget(0, 0);
    check_budget(-50, 0);
}

#[test]
fn both_directions_spend_one_budget() {
    let mut harness = Harness::load();
    harness.grant(CLIENT, data_grant(3, 1_000));
    let mut events = harness.take_events();
    let (up, down) = (gate_upload(), gate_download());

    for _ in 0..5 {
        harness.run(Program::Ingress, &up);
        harness.run(Program::Egress, &down);
    }
    assert_eq!(
        harness.grant_of(CLIENT).expect("grant").bytes_left,
        0,
        "5 up and 5 down spent it all"
    );
    harness.run_dropped(Program::Egress, &down);
    harness.run_dropped(Program::Ingress, &up);

    assert_eq!(
        counters(harness.usage(CLIENT).expect("client entry")),
        Usage {
            down_bytes: gate_bytes(5),
            down_packets: 5,
            up_dropped_bytes: gate_bytes(1),
            down_dropped_bytes: gate_bytes(1),
            dropped_packets: 2,
            ..billable_up(5 * GATE_PACKET_LEN, 5)
        }
    );
    assert_eq!(
        events.drain(),
        vec![event(CLIENT, 3, gate_event::BUDGET_SPENT)]
    );
}

/// A GSO packet stands for several wire packets, so "one packet beyond" does not stretch to
/// it: it passes only if it fits whole, and one that does not costs nothing.
#[test]
fn a_gso_packet_must_fit_the_budget_whole() {
    const SEGMENTS: usize = 4;
    const SEGMENT_PAYLOAD: usize = 800;
    const PAYLOAD: usize = SEGMENTS * SEGMENT_PAYLOAD;
    const WIRE_BYTES: usize = PAYLOAD + SEGMENTS * (IPV4_HLEN + TCP_HLEN);
    let context = gso_context(
        u32::try_from(SEGMENTS).expect("u32"),
        u32::try_from(SEGMENT_PAYLOAD).expect("u32"),
    );
    let gso = upload(
        ETH_P_IPV4,
        &ipv4(
            CLIENT_V4,
            REMOTE_V4,
            IPPROTO_TCP,
            &tcp(CLIENT_PORT, HTTPS_PORT, PAYLOAD),
        ),
    );

    // One byte short: dropped, and the budget is as it was, not reported as spent.
    let mut harness = Harness::load();
    let short = to_i64(WIRE_BYTES) - 1;
    harness.grant(CLIENT, data_grant(4, short));
    let mut events = harness.take_events();
    harness.run_dropped_with_context(Program::Ingress, &gso, Some(&context));
    let grant = harness.grant_of(CLIENT).expect("grant");
    assert_eq!((grant.bytes_left, grant.flags), (short, 0), "given back");
    assert_eq!(
        counters(harness.usage(CLIENT).expect("client entry")),
        Usage {
            up_dropped_bytes: to_u64(WIRE_BYTES),
            dropped_packets: to_u64(SEGMENTS),
            ..Usage::default()
        }
    );
    assert_eq!(
        harness.stats(),
        Stats {
            dropped_budget: 1,
            ..Stats::default()
        }
    );
    assert_eq!(events.drain(), Vec::new(), "the budget is not spent");
    // What is left still serves smaller packets.
    harness.run(Program::Ingress, &gate_upload());
    assert_eq!(
        harness.grant_of(CLIENT).expect("grant").bytes_left,
        short - to_i64(GATE_PACKET_LEN)
    );

    // Exactly enough: passes and spends it all; the next one is dropped and reported.
    let mut harness = Harness::load();
    harness.grant(CLIENT, data_grant(5, to_i64(WIRE_BYTES)));
    let mut events = harness.take_events();
    harness.run_with_context(Program::Ingress, &gso, Some(&context));
    assert_eq!(harness.grant_of(CLIENT).expect("grant").bytes_left, 0);
    assert_eq!(
        counters(harness.usage(CLIENT).expect("client entry")),
        billable_up(WIRE_BYTES, to_u64(SEGMENTS))
    );
    harness.run_dropped_with_context(Program::Ingress, &gso, Some(&context));
    assert_eq!(
        events.drain(),
        vec![event(CLIENT, 5, gate_event::BUDGET_SPENT)]
    );
}

#[test]
fn a_time_only_session_never_spends_bytes() {
    const PACKETS: usize = 500;
    let mut harness = Harness::load();
    let grant = Grant::new(6, UNLIMITED_BYTES, harness.jiffies() + 100_000);
    harness.grant(CLIENT, grant);
    let mut events = harness.take_events();
    let up = udp_v4(CLIENT_V4, REMOTE_V4, 1_400);
    let down = udp_v6(REMOTE_V6, CLIENT_V6, 1_400);

    for _ in 0..PACKETS {
        harness.run(Program::Ingress, &upload(ETH_P_IPV4, &up));
        harness.run(Program::Egress, &download(ETH_P_IPV6, &down));
    }

    assert_eq!(
        harness.grant_of(CLIENT),
        Some(grant),
        "bytes_left stays UNLIMITED_BYTES"
    );
    assert_eq!(
        counters(harness.usage(CLIENT).expect("client entry")),
        Usage {
            down_bytes: to_u64(PACKETS * down.len()),
            down_packets: to_u64(PACKETS),
            ..billable_up(PACKETS * up.len(), to_u64(PACKETS))
        }
    );
    assert_eq!(harness.stats(), Stats::default());
    assert_eq!(events.drain(), Vec::new());
}

#[test]
fn a_passed_deadline_drops_and_is_reported_once() {
    let mut harness = Harness::load();
    let mut events = harness.take_events();
    let (up, down) = (gate_upload(), gate_download());

    let now = harness.jiffies();
    harness.grant(CLIENT, Grant::new(10, 1_000, now - 1));
    harness.run_dropped(Program::Ingress, &up);
    harness.run_dropped(Program::Egress, &down);
    harness.run_dropped(Program::Ingress, &up);
    let grant = harness.grant_of(CLIENT).expect("grant");
    assert_eq!(
        (grant.bytes_left, grant.flags),
        (1_000, grant_flag::DEADLINE_REPORTED),
        "a packet past the deadline spends nothing"
    );
    assert_eq!(
        events.drain(),
        vec![event(CLIENT, 10, gate_event::DEADLINE_PASSED)]
    );
    assert_eq!(
        counters(harness.usage(CLIENT).expect("client entry")),
        Usage {
            up_dropped_bytes: gate_bytes(2),
            down_dropped_bytes: gate_bytes(1),
            dropped_packets: 3,
            ..Usage::default()
        }
    );
    assert_eq!(
        harness.stats(),
        Stats {
            dropped_deadline: 3,
            ..Stats::default()
        }
    );

    // The deadline is the first jiffy without service; a time-only session ends the same.
    harness.grant(CLIENT, Grant::new(11, 1_000, harness.jiffies()));
    harness.run_dropped(Program::Ingress, &up);
    harness.grant(CLIENT, Grant::new(12, UNLIMITED_BYTES, harness.jiffies()));
    harness.run_dropped(Program::Egress, &down);
    assert_eq!(
        events.drain(),
        vec![
            event(CLIENT, 11, gate_event::DEADLINE_PASSED),
            event(CLIENT, 12, gate_event::DEADLINE_PASSED),
        ]
    );

    // Well before the deadline (100,000 jiffies: at least 100 s), packets pass.
    harness.grant(CLIENT, Grant::new(13, 1_000, harness.jiffies() + 100_000));
    harness.run(Program::Ingress, &up);
    harness.run(Program::Egress, &down);
    let grant = harness.grant_of(CLIENT).expect("grant");
    assert_eq!((grant.bytes_left, grant.flags), (800, 0));
    assert_eq!(events.drain(), Vec::new());
    assert_eq!(harness.stats().dropped_deadline, 5);
}

#[test]
fn a_new_grant_reports_again_and_no_grant_gates_again() {
    let mut harness = Harness::load();
    let mut events = harness.take_events();
    let up = gate_upload();
    let one_packet = to_i64(GATE_PACKET_LEN);

    harness.grant(CLIENT, data_grant(20, one_packet));
    harness.run(Program::Ingress, &up);
    harness.run_dropped(Program::Ingress, &up);
    harness.run_dropped(Program::Ingress, &up);
    assert_eq!(
        harness.grant_of(CLIENT).expect("grant").flags,
        grant_flag::BUDGET_REPORTED
    );

    // The next session replaces the grant whole: fresh budget, nothing reported yet.
    harness.grant(CLIENT, data_grant(21, one_packet));
    assert_eq!(
        harness.grant_of(CLIENT),
        Some(data_grant(21, one_packet)),
        "flags start at 0"
    );
    harness.run(Program::Ingress, &up);
    harness.run_dropped(Program::Ingress, &up);
    assert_eq!(
        events.drain(),
        vec![
            event(CLIENT, 20, gate_event::BUDGET_SPENT),
            event(CLIENT, 21, gate_event::BUDGET_SPENT),
        ]
    );

    // No session: gated again, and nothing is reported for a client without one.
    harness.revoke(CLIENT);
    assert_eq!(harness.grant_of(CLIENT), None);
    harness.run_dropped(Program::Ingress, &up);
    harness.run_dropped(Program::Egress, &gate_download());
    assert_eq!(
        harness.stats(),
        Stats {
            dropped_budget: 3,
            dropped_no_session: 2,
            ..Stats::default()
        }
    );
    assert_eq!(
        counters(harness.usage(CLIENT).expect("client entry")),
        Usage {
            up_dropped_bytes: gate_bytes(4),
            down_dropped_bytes: gate_bytes(1),
            dropped_packets: 5,
            ..billable_up(2 * GATE_PACKET_LEN, 2)
        }
    );
    assert_eq!(events.drain(), Vec::new());
}

/// Two CPUs spend one budget at once, one uploading and one downloading for the same client:
/// the atomic subtraction lets exactly the packets through that the budget allows, plus at
/// most one, and reports the end once. `BPF_PROG_TEST_RUN` runs the program on the calling
/// thread's CPU, so two threads are two CPUs spending together (on a machine with two).
#[test]
fn two_cpus_spend_one_budget_exactly() {
    const RUNS_PER_THREAD: usize = 3_000;
    // Three quarters of what the threads send, and not a whole number of packets.
    const BUDGET: i64 = 449_950;
    let mut harness = Harness::load();
    harness.grant(CLIENT, data_grant(30, BUDGET));
    let mut events = harness.take_events();
    let (up, down) = (gate_upload(), gate_download());
    let barrier = Barrier::new(Program::BOTH.len());

    let started = Instant::now();
    let passed: Vec<usize> = std::thread::scope(|scope| {
        let workers: Vec<_> = [(Program::Ingress, &up), (Program::Egress, &down)]
            .into_iter()
            .map(|(program, frame)| {
                let (harness, barrier) = (&harness, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    let mut passed = 0;
                    for _ in 0..RUNS_PER_THREAD {
                        match harness.verdict(program, frame, None) {
                            TC_ACT_UNSPEC => passed += 1,
                            TC_ACT_SHOT => {}
                            other => panic!("{} returned {other}", program.name()),
                        }
                    }
                    passed
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("a worker thread"))
            .collect()
    });
    let elapsed = started.elapsed();

    let passed_total: usize = passed.iter().sum();
    let passed_bytes = to_i64(passed_total * GATE_PACKET_LEN);
    assert!(
        passed_bytes >= BUDGET && passed_bytes < BUDGET + to_i64(GATE_PACKET_LEN),
        "{passed_bytes} bytes passed on a budget of {BUDGET} ({passed:?} per thread)"
    );
    let sent = 2 * RUNS_PER_THREAD;
    let usage = counters(harness.usage(CLIENT).expect("client entry"));
    assert_eq!(
        usage,
        Usage {
            down_bytes: gate_bytes(passed[1]),
            down_packets: to_u64(passed[1]),
            up_dropped_bytes: gate_bytes(RUNS_PER_THREAD - passed[0]),
            down_dropped_bytes: gate_bytes(RUNS_PER_THREAD - passed[1]),
            dropped_packets: to_u64(sent - passed_total),
            ..billable_up(passed[0] * GATE_PACKET_LEN, to_u64(passed[0]))
        },
        "per-CPU counters agree with the verdicts"
    );
    assert_eq!(harness.stats().dropped_budget, to_u64(sent - passed_total));
    let grant = harness.grant_of(CLIENT).expect("grant");
    assert_eq!(grant.flags, grant_flag::BUDGET_REPORTED);
    assert_eq!(
        events.drain(),
        vec![event(CLIENT, 30, gate_event::BUDGET_SPENT)],
        "reported once, though both CPUs saw it spent"
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "{sent} test runs took {elapsed:?}"
    );
}
