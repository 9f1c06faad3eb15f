//! What is counted, and as what: IP bytes of IPv4 and IPv6 without Ethernet padding or VLAN
//! tags, traffic with the box and group traffic as local, ARP as non-IP, malformed packets,
//! GSO packets as their segments, a full `USAGE` map, and clients apart.

use std::net::{Ipv4Addr, Ipv6Addr};

use hotspotd_common::{IpKey, MAP_USAGE, MAX_SEEN, Usage};
use hotspotd_tests::frames::{
    BROADCAST_MAC, ETH_P_8021Q, ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, IP_VERSION_AT, IPPROTO_TCP,
    IPPROTO_UDP, IPV4_HLEN, IPV4_TOTAL_LEN_AT, IPV6_HLEN, IPV6_PAYLOAD_LEN_AT, Mac, TCP_HLEN,
    TCP_TIMESTAMPS, UDP_HLEN, VlanTag, arp_request, client_mac, ethernet, ipv4, ipv6, padded, tcp,
    tcp_with_options, udp,
};

use crate::harness::{
    BOX_V4, BOX_V6, CLIENT, CLIENT_PORT, CLIENT_V4, CLIENT_V6, FROM_BOX, GATEWAY, HTTPS_PORT,
    Harness, Program, REMOTE_V4, REMOTE_V6, Stats, billable_up, counters, dns_answer_v4,
    dns_answer_v6, download, gso_context, to_u64, udp_v4, udp_v6, unlimited, upload,
};

const MDNS_V4_MAC: Mac = [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb];
const MDNS_V4: [u8; 4] = Ipv4Addr::new(224, 0, 0, 251).octets();
const ALL_NODES_V6: [u8; 16] = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets();

const MDNS_PORT: u16 = 5353;
const DHCP_SERVER_PORT: u16 = 67;
const DHCP_CLIENT_PORT: u16 = 68;

fn billable_down(ip_bytes: usize, packets: u64) -> Usage {
    Usage {
        down_bytes: to_u64(ip_bytes),
        down_packets: packets,
        ..Usage::default()
    }
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
    let v4_down = dns_answer_v4(BOX_V4, CLIENT_V4, 30);
    let v6_down = dns_answer_v6(BOX_V6, CLIENT_V6, 40);

    harness.run(Program::Ingress, &upload(ETH_P_IPV4, &v4_up));
    harness.run(Program::Ingress, &upload(ETH_P_IPV6, &v6_up));
    let from_box = Some(FROM_BOX.as_slice());
    harness.run_with_context(Program::Egress, &download(ETH_P_IPV4, &v4_down), from_box);
    harness.run_with_context(Program::Egress, &download(ETH_P_IPV6, &v6_down), from_box);

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

    // The box's own group traffic belongs to no client.
    let mdns_down = ipv4(BOX_V4, MDNS_V4, IPPROTO_UDP, &udp(MDNS_PORT, MDNS_PORT, 50));
    let from_box = Some(FROM_BOX.as_slice());
    harness.run_with_context(
        Program::Egress,
        &ethernet(MDNS_V4_MAC, GATEWAY, &[], ETH_P_IPV4, &mdns_down),
        from_box,
    );
    harness.run_with_context(
        Program::Egress,
        &ethernet(BROADCAST_MAC, GATEWAY, &[], ETH_P_IPV4, &dhcp),
        from_box,
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
fn group_source_mac_is_dropped_and_no_client() {
    // No station sends from a group address. A bridge drops such frames itself; on a LAN
    // interface that is not a bridge the stack would route them, with no client to gate.
    let harness = Harness::load();
    let packet = udp_v4(CLIENT_V4, REMOTE_V4, 100);
    harness.run_dropped(
        Program::Ingress,
        &ethernet(GATEWAY, MDNS_V4_MAC, &[], ETH_P_IPV4, &packet),
    );
    harness.run_dropped(
        Program::Ingress,
        &ethernet(GATEWAY, BROADCAST_MAC, &[], ETH_P_IPV4, &packet),
    );
    let request = arp_request(CLIENT, CLIENT_V4, BOX_V4);
    harness.run_dropped(
        Program::Ingress,
        &padded(ethernet(
            BROADCAST_MAC,
            MDNS_V4_MAC,
            &[],
            ETH_P_ARP,
            &request,
        )),
    );

    assert_eq!(
        harness.all_usage(),
        Vec::new(),
        "no client entry for a group source MAC"
    );
    assert_eq!(
        harness.stats(),
        Stats {
            dropped_no_session: 3,
            ..Stats::default()
        },
        "counted with the drops of clients without a session"
    );
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
fn a_flood_of_macs_cannot_push_a_paying_client_out_of_the_counters() {
    // More made-up MACs than `SEEN` holds, each sending one packet without a session; a
    // client that pays afterwards is still counted to the packet, in the room its grant made
    // in `USAGE`, and the flood's own entries make way for each other.
    let mut harness = Harness::load();
    let packet = udp_v4(CLIENT_V4, REMOTE_V4, 100);
    let flood = MAX_SEEN + 600;
    for n in 0..flood {
        harness.run_dropped(
            Program::Ingress,
            &ethernet(GATEWAY, client_mac(n), &[], ETH_P_IPV4, &packet),
        );
    }
    let last = client_mac(flood - 1);
    assert!(harness.usage(last).is_some(), "the newest is counted");
    let payer = client_mac(flood);
    harness.grant(payer, unlimited());
    for _ in 0..3 {
        harness.run(
            Program::Ingress,
            &ethernet(GATEWAY, payer, &[], ETH_P_IPV4, &packet),
        );
    }
    assert_eq!(
        harness.usage_in(MAP_USAGE, payer).map(counters),
        Some(billable_up(3 * packet.len(), 3)),
        "billed to the packet, in USAGE"
    );
    for n in 0..100 {
        harness.run_dropped(
            Program::Ingress,
            &ethernet(GATEWAY, client_mac(flood + 1 + n), &[], ETH_P_IPV4, &packet),
        );
    }
    assert_eq!(
        harness.usage_in(MAP_USAGE, payer).map(counters),
        Some(billable_up(3 * packet.len(), 3)),
        "a flood after the grant changes nothing"
    );
    assert_eq!(harness.stats().untracked, 0, "every packet was counted");
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
