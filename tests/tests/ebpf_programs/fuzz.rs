//! A million random frames, seeded so a failure reproduces: the programs never fail, every
//! verdict is pass or drop, and every frame lands in exactly the counter that a model of the
//! parser and the gate (written here from the documented rules, not from the program) says.
//! So the counters add up to the frames fed, nothing is billed without a session, and nothing
//! is counted twice or as more than it carries.

use std::collections::BTreeMap;
use std::time::Instant;

use hotspotd_common::{IpKey, Usage};
use hotspotd_tests::frames::{
    ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IPV4, ETH_P_IPV6, FrameMix, IPPROTO_HOPOPTS,
    IPPROTO_ROUTING, IPV4_HLEN, IPV6_HLEN, Mac, VLAN_HLEN, XorShift, client_mac, random_frame,
};

use crate::harness::{
    BOX_V4, BOX_V6, Harness, Program, REMOTE_V4, REMOTE_V6, Stats, TC_ACT_SHOT, TC_ACT_UNSPEC,
    counters, to_u64,
};

const FRAMES: usize = 1_000_000;
const SEED: u64 = 0x5eed_f00d_cafe_0001;
const MAX_FRAME_LEN: usize = 200;

/// Clients with a running session without limits.
const GRANTED: [Mac; 2] = [client_mac(20), client_mac(21)];
/// Clients without one (say, with a session that waits in the queue).
const WAITING: [Mac; 2] = [client_mac(22), client_mac(23)];
/// Unicast strangers: more MACs, but far fewer than `USAGE` holds, so every one is counted.
const STRANGERS: usize = 4_096;

const MULTICAST_V4: [u8; 4] = [224, 0, 0, 251];
const BROADCAST_V4: [u8; 4] = [255, 255, 255, 255];
const ALL_NODES_V6: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// Where one frame ends up in one program, as the model predicts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// Forwarded (every egress frame here) to a group MAC: dropped, counted in `STATS` only.
    GroupDestination,
    /// Ingress from a group MAC: dropped, counted in `STATS` only.
    GroupSource,
    NonIp,
    Malformed,
    Local {
        client: Mac,
        bytes: u64,
    },
    Billable {
        client: Mac,
        bytes: u64,
    },
    Dropped {
        client: Mac,
        bytes: u64,
    },
}

impl Outcome {
    fn verdict(self) -> i32 {
        match self {
            Self::GroupSource | Self::GroupDestination | Self::Dropped { .. } => TC_ACT_SHOT,
            _ => TC_ACT_UNSPEC,
        }
    }

    /// A name for the summary, without the client and the size.
    fn kind(self) -> &'static str {
        match self {
            Self::GroupDestination => "group destination",
            Self::GroupSource => "group source",
            Self::NonIp => "non-IP",
            Self::Malformed => "malformed",
            Self::Local { .. } => "local",
            Self::Billable { .. } => "billable",
            Self::Dropped { .. } => "dropped",
        }
    }
}

fn is_group(mac: &[u8]) -> bool {
    mac[0] & 1 == 1
}

fn be16(frame: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([frame[at], frame[at + 1]]))
}

/// What the IP layer of a frame says: its IP-level size, whether it is addressed to a group,
/// and whether it is for one of the box's free services. `None` for a header that is
/// truncated or inconsistent.
struct Ip {
    bytes: usize,
    group: bool,
    /// Addressed to the box, without options that could route it on.
    to_box: bool,
    free_service: bool,
}

/// The default `network.local_services`: ICMP (v4 and v6), IGMP, and these (protocol, port).
const FREE_PORTS: [(u8, usize); 5] = [(17, 53), (6, 53), (17, 67), (17, 547), (6, 2050)];
const CONTROL_PROTOCOLS: [u8; 3] = [1, 2, 58];

/// Whether a packet of `protocol` whose transport header starts at `l4` is for a free service
/// (the destination port: every frame the model checks for it goes up to the box).
fn free_service(frame: &[u8], protocol: u8, l4: usize) -> bool {
    if CONTROL_PROTOCOLS.contains(&protocol) {
        return true;
    }
    if protocol != 6 && protocol != 17 || l4 + 4 > frame.len() {
        return false;
    }
    FREE_PORTS.contains(&(protocol, be16(frame, l4 + 2)))
}

/// The model: sessions.md's accounting rules and the gate's, for frames without GSO, with
/// `BOX_V4` and `BOX_V6` as the box's addresses, the default free services and no walled
/// garden. Every egress frame is forwarded (none is the box's own).
fn predict(frame: &[u8], program: Program) -> Outcome {
    let (dst, src) = (&frame[0..6], &frame[6..12]);
    let (client, to_group) = match program {
        Program::Ingress => (src, is_group(dst)),
        Program::Egress => (dst, false),
    };
    if is_group(client) {
        return match program {
            Program::Ingress => Outcome::GroupSource,
            Program::Egress => Outcome::GroupDestination,
        };
    }
    let client: Mac = client.try_into().expect("6 bytes");
    // Up to two VLAN tags (QinQ) are looked through.
    let mut offset = ETH_HLEN;
    let mut ether_type = be16(frame, ETH_HLEN - 2);
    for _ in 0..2 {
        if ether_type != usize::from(ETH_P_8021Q) && ether_type != usize::from(ETH_P_8021AD) {
            break;
        }
        if offset + VLAN_HLEN > frame.len() {
            return Outcome::Malformed;
        }
        ether_type = be16(frame, offset + 2);
        offset += VLAN_HLEN;
    }
    let ip = match u16::try_from(ether_type).unwrap_or(0) {
        ETH_P_IPV4 => ipv4(frame, offset, program),
        ETH_P_IPV6 => ipv6(frame, offset, program),
        _ => return Outcome::NonIp,
    };
    let Some(ip) = ip else {
        return Outcome::Malformed;
    };
    let bytes = to_u64(ip.bytes);
    // A group MAC makes a packet the LAN's unless it is addressed to the box itself.
    let group = ip.group || (to_group && !ip.to_box);
    if group || (ip.to_box && ip.free_service) {
        Outcome::Local { client, bytes }
    } else if GRANTED.contains(&client) {
        Outcome::Billable { client, bytes }
    } else {
        Outcome::Dropped { client, bytes }
    }
}

fn ipv4(frame: &[u8], offset: usize, program: Program) -> Option<Ip> {
    let header = frame.get(offset..offset + IPV4_HLEN)?;
    let header_len = usize::from(header[0] & 0x0f) * 4;
    if header[0] >> 4 != 4 || header_len < IPV4_HLEN {
        return None;
    }
    // The header's length is the truth (Ethernet pads); more than arrived is truncated.
    let total_len = be16(header, 2);
    if total_len < header_len || total_len > frame.len() - offset {
        return None;
    }
    let (src, dst) = (&header[12..16], &header[16..20]);
    let remote = match program {
        Program::Ingress => dst,
        Program::Egress => src,
    };
    let group = dst[0] & 0xf0 == 0xe0 || dst == BROADCAST_V4;
    // Options may route it on from the box: only a plain packet is the box's.
    let plain = header_len == IPV4_HLEN;
    // A fragment after the first has no transport header.
    let offset_bits = be16(header, 6) & 0x1fff;
    let first_fragment = offset_bits == 0;
    let protocol = if first_fragment { header[9] } else { 0 };
    Some(Ip {
        bytes: total_len,
        group,
        to_box: program == Program::Ingress && plain && remote == BOX_V4,
        free_service: free_service(frame, protocol, offset + header_len),
    })
}

fn ipv6(frame: &[u8], offset: usize, program: Program) -> Option<Ip> {
    let header = frame.get(offset..offset + IPV6_HLEN)?;
    if header[0] >> 4 != 6 {
        return None;
    }
    let total_len = IPV6_HLEN + be16(header, 4);
    if total_len > frame.len() - offset {
        return None;
    }
    let (src, dst) = (&header[8..24], &header[24..40]);
    let remote = match program {
        Program::Ingress => dst,
        Program::Egress => src,
    };
    // Hop-by-hop options and a routing header may route it on from the box.
    let plain = header[6] != IPPROTO_HOPOPTS && header[6] != IPPROTO_ROUTING;
    Some(Ip {
        bytes: total_len,
        group: dst[0] == 0xff,
        to_box: program == Program::Ingress && plain && remote == BOX_V6,
        free_service: free_service(frame, header[6], offset + IPV6_HLEN),
    })
}

/// The counters the model expects: per client, and `STATS`.
#[derive(Default)]
struct Expected {
    usage: BTreeMap<Mac, Usage>,
    stats: Stats,
    /// Frames per outcome kind, both programs together.
    outcomes: BTreeMap<&'static str, u64>,
}

impl Expected {
    fn add(&mut self, outcome: Outcome, program: Program) {
        *self.outcomes.entry(outcome.kind()).or_default() += 1;
        let up = matches!(program, Program::Ingress);
        let (client, bytes) = match outcome {
            Outcome::GroupDestination => {
                self.stats.dropped_group_destination += 1;
                return;
            }
            Outcome::GroupSource => {
                self.stats.dropped_no_session += 1;
                return;
            }
            Outcome::NonIp => {
                self.stats.non_ip += 1;
                return;
            }
            Outcome::Malformed => {
                self.stats.malformed += 1;
                return;
            }
            Outcome::Local { client, bytes }
            | Outcome::Billable { client, bytes }
            | Outcome::Dropped { client, bytes } => (client, bytes),
        };
        let usage = self.usage.entry(client).or_default();
        match (outcome, up) {
            (Outcome::Local { .. }, true) => usage.up_local_bytes += bytes,
            (Outcome::Local { .. }, false) => usage.down_local_bytes += bytes,
            (Outcome::Billable { .. }, true) => {
                usage.up_bytes += bytes;
                usage.up_packets += 1;
            }
            (Outcome::Billable { .. }, false) => {
                usage.down_bytes += bytes;
                usage.down_packets += 1;
            }
            (_, true) => {
                usage.up_dropped_bytes += bytes;
                usage.dropped_packets += 1;
                self.stats.dropped_no_session += 1;
            }
            (_, false) => {
                usage.down_dropped_bytes += bytes;
                usage.dropped_packets += 1;
                self.stats.dropped_no_session += 1;
            }
        }
    }
}

/// Feeds [`FRAMES`] random frames to both programs, checking each verdict against the model
/// as it goes, and returns what the model expects the counters to be.
fn feed_random_frames(harness: &Harness) -> Expected {
    let strangers: Vec<Mac> = (0..STRANGERS)
        .map(|n| client_mac(1_000 + u32::try_from(n).expect("u32")))
        .collect();
    let clients = [GRANTED, WAITING].concat();
    let mix = FrameMix {
        clients: &clients,
        strangers: &strangers,
        addrs_v4: &[BOX_V4, MULTICAST_V4, BROADCAST_V4, REMOTE_V4],
        addrs_v6: &[BOX_V6, ALL_NODES_V6, REMOTE_V6],
        max_len: MAX_FRAME_LEN,
    };
    let mut rng = XorShift::new(SEED);
    let mut expected = Expected::default();
    let started = Instant::now();
    for n in 0..FRAMES {
        let frame = random_frame(&mut rng, &mix);
        for program in Program::BOTH {
            let outcome = predict(&frame, program);
            let verdict = harness.verdict(program, &frame, None);
            assert!(
                verdict == TC_ACT_UNSPEC || verdict == TC_ACT_SHOT,
                "{} returned {verdict}, neither pass nor drop: frame {n} {frame:02x?}",
                program.name()
            );
            assert_eq!(
                verdict,
                outcome.verdict(),
                "{} on frame {n}, expected {outcome:?}: {frame:02x?}",
                program.name()
            );
            expected.add(outcome, program);
        }
    }
    eprintln!(
        "{FRAMES} frames through both programs in {:.1?}: {:?}",
        started.elapsed(),
        expected.outcomes
    );
    expected
}

#[test]
fn a_million_random_frames_land_where_the_model_says() {
    let mut harness = Harness::with_sessions(&GRANTED);
    harness.add_local_addr(IpKey::from_v4(BOX_V4));
    harness.add_local_addr(IpKey::from_v6(BOX_V6));
    let expected = feed_random_frames(&harness);

    // Every frame went to exactly one place, in each program.
    let fed = 2 * to_u64(FRAMES);
    assert_eq!(expected.outcomes.values().sum::<u64>(), fed);
    let kernel: BTreeMap<Mac, Usage> = harness
        .all_usage()
        .into_iter()
        .map(|(mac, usage)| (mac, counters(usage)))
        .collect();
    let stats = harness.stats();
    // The identity in the kernel's own counters: billable and dropped packets of clients,
    // plus what STATS counts, plus the frames with no packet counter (local traffic is
    // counted in bytes only) make every frame fed.
    let total = kernel.values().fold(Usage::default(), Usage::merged);
    let uncounted = expected.outcomes["local"];
    let group_source = stats.dropped_no_session - total.dropped_packets;
    assert_eq!(
        total.up_packets
            + total.down_packets
            + total.dropped_packets
            + stats.non_ip
            + stats.malformed
            + stats.dropped_group_destination
            + group_source
            + uncounted,
        fed,
        "{total:?} {stats:?}"
    );
    assert_eq!(stats, expected.stats, "STATS");
    assert_eq!(
        kernel.len(),
        expected.usage.len(),
        "clients in USAGE: kernel and model"
    );
    for ((mac, got), (model_mac, want)) in kernel.iter().zip(&expected.usage) {
        assert_eq!((mac, got), (model_mac, want), "counters of {mac:02x?}");
    }
    for waiting in WAITING {
        let usage = &kernel[&waiting];
        assert_eq!(
            (usage.up_bytes, usage.down_bytes),
            (0, 0),
            "nothing billed without a session"
        );
        assert!(usage.dropped_packets > 0, "{usage:?}");
    }
    for client in GRANTED {
        assert_eq!(kernel[&client].dropped_packets, 0, "a session passes all");
        assert!(kernel[&client].up_packets > 0 && kernel[&client].down_packets > 0);
    }
    // The mix reached every outcome, or the equalities above prove little.
    for kind in [
        "group destination",
        "group source",
        "non-IP",
        "malformed",
        "local",
        "billable",
        "dropped",
    ] {
        assert!(
            expected.outcomes.get(kind).is_some_and(|n| *n > fed / 100),
            "{kind}: {:?}",
            expected.outcomes
        );
    }
    assert_eq!(stats.untracked, 0, "USAGE never fills with these clients");
}
