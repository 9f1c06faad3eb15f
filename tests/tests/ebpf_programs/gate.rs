//! The gate: what passes and what is dropped. Drops without a session, the walled garden,
//! data budgets (exact, shared by both directions, GSO packets whole), deadlines, the events
//! that report them, and two CPUs spending one budget.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    sync::Barrier,
    time::{Duration, Instant},
};

use hotspotd_common::{
    GateEvent, Grant, IpKey, MacKey, NO_DEADLINE, UNLIMITED_BYTES, Usage, gate_event, grant_flag,
};
use hotspotd_tests::frames::{
    BROADCAST_MAC, ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, IPPROTO_DSTOPTS, IPPROTO_HOPOPTS,
    IPPROTO_ROUTING, IPPROTO_TCP, IPPROTO_UDP, IPV4_HLEN, Ipv4Shape, Mac, TCP_HLEN, UDP_HLEN,
    arp_request, ethernet, ipv4, ipv4_routable, ipv6, ipv6_options_header, ipv6_routing_header,
    padded, tcp, udp,
};

use crate::harness::{
    BOX_V4, BOX_V6, CLIENT, CLIENT_PORT, CLIENT_V4, CLIENT_V6, DNS_PORT, FROM_BOX, HTTPS_PORT,
    Harness, Program, REMOTE_V4, REMOTE_V6, Stats, TC_ACT_SHOT, TC_ACT_UNSPEC, billable_up,
    counters, dns_answer_v4, download, gso_context, to_u64, udp_v4, udp_v6, upload,
};

const HTTP_PORT: u16 = 80;

/// The event the programs send when `client`'s session `session_id` crosses `kind`.
fn event(client: Mac, session_id: i64, kind: u32) -> GateEvent {
    GateEvent::new(MacKey::new(client), session_id, kind)
}

/// A data session with `bytes` left and no deadline.
const fn data_grant(session_id: i64, bytes: i64) -> Grant {
    Grant::new(session_id, bytes, NO_DEADLINE)
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).expect("usize fits i64")
}

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
    let from_box = dns_answer_v4(BOX_V4, CLIENT_V4, 60);
    harness.run(Program::Ingress, &upload(ETH_P_IPV4, &to_box));
    harness.run_with_context(
        Program::Egress,
        &download(ETH_P_IPV4, &from_box),
        Some(FROM_BOX.as_slice()),
    );
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

#[test]
fn a_packet_to_the_box_that_could_be_routed_on_is_gated() {
    // With source routing on, the box would pass these on to the address they name: they
    // are not traffic with the box, and a client without a session is stopped at the gate.
    let mut harness = Harness::load();
    harness.add_local_addr(IpKey::from_v4(BOX_V4));
    harness.add_local_addr(IpKey::from_v6(BOX_V6));
    let [a, b, c, d] = REMOTE_V4;
    let loose_route = [1, 131, 7, 4, a, b, c, d];
    let datagram = udp(CLIENT_PORT, DNS_PORT, 20);
    let shape = Ipv4Shape {
        options: &loose_route,
        ..Ipv4Shape::default()
    };
    let v4 = ipv4_routable(CLIENT_V4, BOX_V4, IPPROTO_UDP, &shape, &datagram);
    let routing = ipv6_routing_header(IPPROTO_UDP, 4, 1, &[REMOTE_V6, BOX_V6], &datagram);
    let v6_routed = ipv6(CLIENT_V6, BOX_V6, IPPROTO_ROUTING, &routing);
    let hop_by_hop = ipv6_options_header(IPPROTO_ROUTING, &routing);
    let v6_behind_hop_by_hop = ipv6(CLIENT_V6, BOX_V6, IPPROTO_HOPOPTS, &hop_by_hop);
    let destination_options = ipv6_options_header(IPPROTO_UDP, &datagram);
    let v6_options = ipv6(CLIENT_V6, BOX_V6, IPPROTO_DSTOPTS, &destination_options);

    harness.run_dropped(Program::Ingress, &upload(ETH_P_IPV4, &v4));
    harness.run_dropped(Program::Ingress, &upload(ETH_P_IPV6, &v6_routed));
    harness.run_dropped(Program::Ingress, &upload(ETH_P_IPV6, &v6_behind_hop_by_hop));
    // Destination options route nothing, but they hide the port: not a free service either.
    harness.run_dropped(Program::Ingress, &upload(ETH_P_IPV6, &v6_options));
    assert_eq!(
        harness.stats(),
        Stats {
            dropped_no_session: 4,
            ..Stats::default()
        }
    );

    // With a session they pass, billed: their destination is wherever the route leads.
    harness.grant(CLIENT, Grant::new(1, UNLIMITED_BYTES, NO_DEADLINE));
    harness.run(Program::Ingress, &upload(ETH_P_IPV4, &v4));
    let usage = harness.usage(CLIENT).expect("client entry");
    assert_eq!(usage.up_bytes, to_u64(v4.len()), "{usage:?}");
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
