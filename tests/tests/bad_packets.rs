//! End to end: a client without a session injects every kind of frame a parser could get
//! wrong — VLAN and QinQ tags, IPv4 fragments and options, IPv6 extension headers, one IP family
//! behind the other's ethertype, PPPoE, MPLS and other non-IP ethertypes, group addresses,
//! source routes through the box, and the source MAC of clients whose sessions wait — straight
//! onto its link with a raw socket. A capture in the internet namespace sees every frame that
//! crosses the gateway: only the walled garden's may. Each frame is one the gateway would
//! route, and the same frames from a client with a running session do arrive (the positive
//! control), so an empty capture is the gate's doing; the frames that never arrive even then
//! are the ones the kernel does not route at all, which the test also proves. Afterwards the
//! daemon still answers, the programs are still attached and the drop counters moved.
//! Needs root (namespaces, eBPF, raw sockets).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use hotspotd::{client::ApiClient, metrics};
use hotspotd_tests::frames::{
    BROADCAST_MAC, ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, IPPROTO_DSTOPTS, IPPROTO_FRAGMENT,
    IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_UDP, Ipv4Shape, Mac, VlanTag, ethernet,
    ipv4_routable, ipv6, ipv6_fragment_header, ipv6_options_header, ipv6_routing_header, mac_of,
    udp_with_payload,
};
use hotspotd_tests::{
    CLIENT_IFACE, Client, Daemon, FrameCapture, FrameSender, GATEWAY_LAN_V4, GATEWAY_LAN_V6,
    INTERNET_IFACE, INTERNET_V4, INTERNET_V6, LAN_IFACE, Lan, wait_for,
};
use serde_json::Value;

/// Every injected frame carries this, then its number, in a 24-byte payload.
const MARKER: &[u8] = b"hotspotd-bad-input-";
const PAYLOAD_LEN: usize = 24;
/// Numbers of the frames a client with a session sends start here; the others' below.
const CONTROL_BASE: u8 = 100;
/// Numbers of the forged-MAC frames.
const FORGED_BASE: u8 = 200;

/// UDP "discard": nobody listens, which does not matter to a capture.
const DISCARD_PORT: u16 = 9;
const CLIENT_PORT: u16 = 40_000;
/// The walled garden of this test: the internet host, this port only.
const GARDEN_PORT: u16 = 443;

/// The gateway's VLAN 10 (802.1Q) and QinQ 100/10 (802.1ad outside) subinterfaces on the LAN
/// bridge, so tagged frames are routed when the gate lets them through. Their own subnets,
/// so reverse-path filtering accepts the sources.
const VLAN_ID: u16 = 10;
const QINQ_OUTER_ID: u16 = 100;
const VLAN_GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const VLAN_CLIENT_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const QINQ_GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 65);
const QINQ_CLIENT_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 70);
const VLAN_GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x10, 0, 0, 0, 0, 1);
const VLAN_CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x10, 0, 0, 0, 0, 0x10);
const QINQ_GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x11, 0, 0, 0, 0, 1);
const QINQ_CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x11, 0, 0, 0, 0, 0x10);

/// How long frames that should arrive may take; those that should not are given as long.
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_secs(1);

/// What becomes of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// The gate drops it without a session (and counts it); with one, the kernel routes it.
    Gated,
    /// The gate drops it without a session, and the kernel would not route it anyway: tags
    /// of VLANs the gateway does not have (all of them, on a kernel without 802.1Q).
    GatedUnroutable,
    /// Reaches the walled garden without a session.
    Garden,
    /// Not IP for the internet as the gate reads it (not IP, or for the box or a group), so
    /// it passes the gate; the kernel never routes it, session or not.
    NeverRouted,
}

impl Fate {
    /// Whether the gate drops it from a client without a session.
    fn gate_drops(self) -> bool {
        matches!(self, Self::Gated | Self::GatedUnroutable)
    }
}

/// Who a frame claims to come from.
struct Sender {
    mac: Mac,
    v4: [u8; 4],
    v6: [u8; 16],
}

/// One kind of frame: a name for messages, its fate, and how to build it from a sender,
/// the gateway's MAC and the marked payload.
struct Case {
    name: &'static str,
    fate: Fate,
    build: fn(&Sender, Mac, &[u8]) -> Vec<u8>,
}

fn payload(number: u8) -> Vec<u8> {
    let mut payload = MARKER.to_vec();
    payload.push(number);
    payload.resize(PAYLOAD_LEN, 0);
    payload
}

fn sender(client: &Client) -> Result<Sender> {
    Ok(Sender {
        mac: mac_of(&client.mac)?,
        v4: client.ipv4.octets(),
        v6: client.ipv6.octets(),
    })
}

/// A UDP datagram to `port` of `dst`, in an IPv4 packet a router forwards.
fn udp4(src: [u8; 4], dst: [u8; 4], port: u16, payload: &[u8]) -> Vec<u8> {
    let datagram = udp_with_payload(CLIENT_PORT, port, payload);
    ipv4_routable(src, dst, IPPROTO_UDP, &Ipv4Shape::default(), &datagram)
}

fn udp6(src: [u8; 16], dst: [u8; 16], payload: &[u8]) -> Vec<u8> {
    ipv6(
        src,
        dst,
        IPPROTO_UDP,
        &udp_with_payload(CLIENT_PORT, DISCARD_PORT, payload),
    )
}

/// A UDP datagram to the discard port, its header and `payload` only: `after` more bytes
/// follow in later fragments.
fn first_fragment_datagram(payload: &[u8], after: usize) -> Vec<u8> {
    let mut datagram = udp_with_payload(CLIENT_PORT, DISCARD_PORT, payload);
    let total = u16::try_from(datagram.len() + after).unwrap_or(u16::MAX);
    datagram[4..6].copy_from_slice(&total.to_be_bytes());
    datagram
}

const INTERNET4: [u8; 4] = INTERNET_V4.octets();
const INTERNET6: [u8; 16] = INTERNET_V6.octets();
const ETH_P_PPPOE_DISCOVERY: u16 = 0x8863;
const ETH_P_PPPOE_SESSION: u16 = 0x8864;
const ETH_P_MPLS: u16 = 0x8847;
/// IEEE's "local experimental" ethertype: nothing on the box handles it.
const ETH_P_EXPERIMENTAL: u16 = 0x88b5;

/// Every kind of frame, in the order they are sent; `vlans` says whether the gateway has VLAN
/// subinterfaces to route tagged frames through.
#[expect(clippy::too_many_lines, reason = "one entry per kind of frame")]
fn cases(vlans: bool) -> Vec<Case> {
    let tagged = if vlans {
        Fate::Gated
    } else {
        Fate::GatedUnroutable
    };
    vec![
        Case {
            name: "IPv4 UDP",
            fate: Fate::Gated,
            build: |s, gw, p| {
                ethernet(
                    gw,
                    s.mac,
                    &[],
                    ETH_P_IPV4,
                    &udp4(s.v4, INTERNET4, DISCARD_PORT, p),
                )
            },
        },
        Case {
            name: "IPv6 UDP",
            fate: Fate::Gated,
            build: |s, gw, p| ethernet(gw, s.mac, &[], ETH_P_IPV6, &udp6(s.v6, INTERNET6, p)),
        },
        Case {
            name: "IPv4 with options (record route)",
            fate: Fate::Gated,
            build: |s, gw, p| {
                const RECORD_ROUTE: [u8; 8] = [7, 7, 4, 0, 0, 0, 0, 1];
                let shape = Ipv4Shape {
                    options: &RECORD_ROUTE,
                    ..Ipv4Shape::default()
                };
                let datagram = udp_with_payload(CLIENT_PORT, DISCARD_PORT, p);
                let packet = ipv4_routable(s.v4, INTERNET4, IPPROTO_UDP, &shape, &datagram);
                ethernet(gw, s.mac, &[], ETH_P_IPV4, &packet)
            },
        },
        Case {
            name: "802.1Q-tagged IPv4",
            fate: tagged,
            build: |s, gw, p| {
                let packet = udp4(VLAN_CLIENT_V4.octets(), INTERNET4, DISCARD_PORT, p);
                ethernet(gw, s.mac, &[VlanTag::dot1q(VLAN_ID)], ETH_P_IPV4, &packet)
            },
        },
        Case {
            name: "802.1Q-tagged IPv6",
            fate: tagged,
            build: |s, gw, p| {
                let packet = udp6(VLAN_CLIENT_V6.octets(), INTERNET6, p);
                ethernet(gw, s.mac, &[VlanTag::dot1q(VLAN_ID)], ETH_P_IPV6, &packet)
            },
        },
        Case {
            name: "QinQ-tagged IPv4",
            fate: tagged,
            build: |s, gw, p| {
                let tags = [VlanTag::dot1ad(QINQ_OUTER_ID), VlanTag::dot1q(VLAN_ID)];
                let packet = udp4(QINQ_CLIENT_V4.octets(), INTERNET4, DISCARD_PORT, p);
                ethernet(gw, s.mac, &tags, ETH_P_IPV4, &packet)
            },
        },
        Case {
            name: "QinQ-tagged IPv6",
            fate: tagged,
            build: |s, gw, p| {
                let tags = [VlanTag::dot1ad(QINQ_OUTER_ID), VlanTag::dot1q(VLAN_ID)];
                let packet = udp6(QINQ_CLIENT_V6.octets(), INTERNET6, p);
                ethernet(gw, s.mac, &tags, ETH_P_IPV6, &packet)
            },
        },
        Case {
            // VLAN 0 carries only a priority; the kernel routes it as untagged.
            name: "priority-tagged (VLAN 0) IPv4",
            fate: Fate::Gated,
            build: |s, gw, p| {
                let packet = udp4(s.v4, INTERNET4, DISCARD_PORT, p);
                ethernet(gw, s.mac, &[VlanTag::dot1q(0)], ETH_P_IPV4, &packet)
            },
        },
        Case {
            name: "IPv4 first fragment",
            fate: Fate::Gated,
            build: |s, gw, p| {
                let shape = Ipv4Shape {
                    id: 0x1111,
                    more_fragments: true,
                    ..Ipv4Shape::default()
                };
                let datagram = first_fragment_datagram(p, PAYLOAD_LEN);
                let packet = ipv4_routable(s.v4, INTERNET4, IPPROTO_UDP, &shape, &datagram);
                ethernet(gw, s.mac, &[], ETH_P_IPV4, &packet)
            },
        },
        Case {
            name: "IPv4 later fragment",
            fate: Fate::Gated,
            build: |s, gw, p| {
                let shape = Ipv4Shape {
                    id: 0x2222,
                    fragment_offset: 32,
                    ..Ipv4Shape::default()
                };
                let packet = ipv4_routable(s.v4, INTERNET4, IPPROTO_UDP, &shape, p);
                ethernet(gw, s.mac, &[], ETH_P_IPV4, &packet)
            },
        },
        Case {
            // Its first bytes read as ports ending in the garden's: never to be taken for them.
            name: "IPv4 later fragment that looks like the garden's port",
            fate: Fate::Gated,
            build: |s, gw, p| {
                let shape = Ipv4Shape {
                    id: 0x3333,
                    fragment_offset: 8,
                    ..Ipv4Shape::default()
                };
                let mut bytes = [CLIENT_PORT.to_be_bytes(), GARDEN_PORT.to_be_bytes()].concat();
                bytes.extend_from_slice(p);
                let packet = ipv4_routable(s.v4, INTERNET4, IPPROTO_UDP, &shape, &bytes);
                ethernet(gw, s.mac, &[], ETH_P_IPV4, &packet)
            },
        },
        Case {
            name: "IPv6 hop-by-hop options",
            fate: Fate::Gated,
            build: |s, gw, p| {
                let datagram = udp_with_payload(CLIENT_PORT, DISCARD_PORT, p);
                let packet = ipv6(
                    s.v6,
                    INTERNET6,
                    IPPROTO_HOPOPTS,
                    &ipv6_options_header(IPPROTO_UDP, &datagram),
                );
                ethernet(gw, s.mac, &[], ETH_P_IPV6, &packet)
            },
        },
        Case {
            name: "IPv6 destination options",
            fate: Fate::Gated,
            build: |s, gw, p| {
                let datagram = udp_with_payload(CLIENT_PORT, DISCARD_PORT, p);
                let packet = ipv6(
                    s.v6,
                    INTERNET6,
                    IPPROTO_DSTOPTS,
                    &ipv6_options_header(IPPROTO_UDP, &datagram),
                );
                ethernet(gw, s.mac, &[], ETH_P_IPV6, &packet)
            },
        },
        Case {
            name: "IPv6 routing header with nothing left to visit",
            fate: Fate::Gated,
            build: |s, gw, p| {
                let datagram = udp_with_payload(CLIENT_PORT, DISCARD_PORT, p);
                let routing = ipv6_routing_header(IPPROTO_UDP, 0, 0, &[INTERNET6], &datagram);
                ethernet(
                    gw,
                    s.mac,
                    &[],
                    ETH_P_IPV6,
                    &ipv6(s.v6, INTERNET6, IPPROTO_ROUTING, &routing),
                )
            },
        },
        Case {
            name: "IPv6 first fragment",
            fate: Fate::Gated,
            build: |s, gw, p| {
                let datagram = first_fragment_datagram(p, PAYLOAD_LEN);
                let fragment = ipv6_fragment_header(IPPROTO_UDP, 0, true, 0x4444, &datagram);
                ethernet(
                    gw,
                    s.mac,
                    &[],
                    ETH_P_IPV6,
                    &ipv6(s.v6, INTERNET6, IPPROTO_FRAGMENT, &fragment),
                )
            },
        },
        Case {
            name: "IPv6 later fragment",
            fate: Fate::Gated,
            build: |s, gw, p| {
                let fragment = ipv6_fragment_header(IPPROTO_UDP, 32, false, 0x5555, p);
                ethernet(
                    gw,
                    s.mac,
                    &[],
                    ETH_P_IPV6,
                    &ipv6(s.v6, INTERNET6, IPPROTO_FRAGMENT, &fragment),
                )
            },
        },
        Case {
            name: "IPv4 UDP to the walled garden's port",
            fate: Fate::Garden,
            build: |s, gw, p| {
                ethernet(
                    gw,
                    s.mac,
                    &[],
                    ETH_P_IPV4,
                    &udp4(s.v4, INTERNET4, GARDEN_PORT, p),
                )
            },
        },
        Case {
            name: "IPv6 packet behind the IPv4 ethertype",
            fate: Fate::NeverRouted,
            build: |s, gw, p| ethernet(gw, s.mac, &[], ETH_P_IPV4, &udp6(s.v6, INTERNET6, p)),
        },
        Case {
            name: "IPv4 packet behind the IPv6 ethertype",
            fate: Fate::NeverRouted,
            build: |s, gw, p| {
                ethernet(
                    gw,
                    s.mac,
                    &[],
                    ETH_P_IPV6,
                    &udp4(s.v4, INTERNET4, DISCARD_PORT, p),
                )
            },
        },
        Case {
            name: "PPPoE discovery (PADI)",
            fate: Fate::NeverRouted,
            build: |s, _, p| {
                // Version/type 0x11, code PADI, session 0, then a Host-Uniq tag holding p.
                let mut body = vec![0x11, 0x09, 0, 0];
                body.extend_from_slice(&u16::try_from(p.len() + 4).unwrap_or(0).to_be_bytes());
                body.extend_from_slice(&[0x01, 0x03]);
                body.extend_from_slice(&u16::try_from(p.len()).unwrap_or(0).to_be_bytes());
                body.extend_from_slice(p);
                ethernet(BROADCAST_MAC, s.mac, &[], ETH_P_PPPOE_DISCOVERY, &body)
            },
        },
        Case {
            name: "PPPoE session carrying IPv4",
            fate: Fate::NeverRouted,
            build: |s, gw, p| {
                const PPP_IPV4: [u8; 2] = [0x00, 0x21];
                let packet = udp4(s.v4, INTERNET4, DISCARD_PORT, p);
                let mut body = vec![0x11, 0x00, 0x00, 0x01];
                body.extend_from_slice(&u16::try_from(packet.len() + 2).unwrap_or(0).to_be_bytes());
                body.extend_from_slice(&PPP_IPV4);
                body.extend_from_slice(&packet);
                ethernet(gw, s.mac, &[], ETH_P_PPPOE_SESSION, &body)
            },
        },
        Case {
            name: "MPLS carrying IPv4",
            fate: Fate::NeverRouted,
            build: |s, gw, p| {
                // Label 16, bottom of stack, TTL 64.
                let mut body = vec![0x00, 0x01, 0x01, 0x40];
                body.extend_from_slice(&udp4(s.v4, INTERNET4, DISCARD_PORT, p));
                ethernet(gw, s.mac, &[], ETH_P_MPLS, &body)
            },
        },
        Case {
            name: "IPv4 behind the ARP ethertype",
            fate: Fate::NeverRouted,
            build: |s, gw, p| {
                ethernet(
                    gw,
                    s.mac,
                    &[],
                    ETH_P_ARP,
                    &udp4(s.v4, INTERNET4, DISCARD_PORT, p),
                )
            },
        },
        Case {
            name: "IPv4 behind an experimental ethertype",
            fate: Fate::NeverRouted,
            build: |s, gw, p| {
                ethernet(
                    gw,
                    s.mac,
                    &[],
                    ETH_P_EXPERIMENTAL,
                    &udp4(s.v4, INTERNET4, DISCARD_PORT, p),
                )
            },
        },
        Case {
            name: "IPv4 on a VLAN the gateway does not have",
            fate: Fate::GatedUnroutable,
            build: |s, gw, p| {
                let packet = udp4(VLAN_CLIENT_V4.octets(), INTERNET4, DISCARD_PORT, p);
                ethernet(
                    gw,
                    s.mac,
                    &[VlanTag::dot1q(VLAN_ID + 10)],
                    ETH_P_IPV4,
                    &packet,
                )
            },
        },
        Case {
            name: "IPv4 three tags deep",
            fate: Fate::GatedUnroutable,
            build: |s, gw, p| {
                let tags = [
                    VlanTag::dot1ad(QINQ_OUTER_ID),
                    VlanTag::dot1q(VLAN_ID),
                    VlanTag::dot1q(30),
                ];
                ethernet(
                    gw,
                    s.mac,
                    &tags,
                    ETH_P_IPV4,
                    &udp4(QINQ_CLIENT_V4.octets(), INTERNET4, DISCARD_PORT, p),
                )
            },
        },
        Case {
            // Deeper than the parser looks: it passes as non-IP, and the kernel drops it.
            name: "IPv4 four tags deep",
            fate: Fate::NeverRouted,
            build: |s, gw, p| {
                let tags = [
                    VlanTag::dot1ad(QINQ_OUTER_ID),
                    VlanTag::dot1q(VLAN_ID),
                    VlanTag::dot1q(30),
                    VlanTag::dot1q(40),
                ];
                ethernet(
                    gw,
                    s.mac,
                    &tags,
                    ETH_P_IPV4,
                    &udp4(QINQ_CLIENT_V4.octets(), INTERNET4, DISCARD_PORT, p),
                )
            },
        },
        Case {
            // Group traffic passes the gate as local; the kernel forwards no L2 broadcast.
            name: "IPv4 to the internet in an Ethernet broadcast",
            fate: Fate::NeverRouted,
            build: |s, _, p| {
                ethernet(
                    BROADCAST_MAC,
                    s.mac,
                    &[],
                    ETH_P_IPV4,
                    &udp4(s.v4, INTERNET4, DISCARD_PORT, p),
                )
            },
        },
        Case {
            name: "IPv6 to the internet in an Ethernet multicast",
            fate: Fate::NeverRouted,
            build: |s, _, p| {
                const ALL_NODES_MAC: Mac = [0x33, 0x33, 0, 0, 0, 1];
                ethernet(
                    ALL_NODES_MAC,
                    s.mac,
                    &[],
                    ETH_P_IPV6,
                    &udp6(s.v6, INTERNET6, p),
                )
            },
        },
        Case {
            name: "IPv4 to the limited broadcast address",
            fate: Fate::NeverRouted,
            build: |s, gw, p| {
                ethernet(
                    gw,
                    s.mac,
                    &[],
                    ETH_P_IPV4,
                    &udp4(s.v4, [255; 4], DISCARD_PORT, p),
                )
            },
        },
        Case {
            name: "IPv4 to a multicast group",
            fate: Fate::NeverRouted,
            build: |s, gw, p| {
                ethernet(
                    gw,
                    s.mac,
                    &[],
                    ETH_P_IPV4,
                    &udp4(s.v4, [239, 1, 2, 3], DISCARD_PORT, p),
                )
            },
        },
        Case {
            // Addressed to the box, but the loose source route sends it on to the internet
            // (the test turns source routing on): not the box's traffic, so it is gated.
            name: "IPv4 source-routed through the box (LSRR)",
            fate: Fate::Gated,
            build: |s, gw, p| {
                let [a, b, c, d] = INTERNET4;
                let route = [1, 131, 7, 4, a, b, c, d];
                let shape = Ipv4Shape {
                    options: &route,
                    ..Ipv4Shape::default()
                };
                let datagram = udp_with_payload(CLIENT_PORT, DISCARD_PORT, p);
                let packet = ipv4_routable(
                    s.v4,
                    GATEWAY_LAN_V4.octets(),
                    IPPROTO_UDP,
                    &shape,
                    &datagram,
                );
                ethernet(gw, s.mac, &[], ETH_P_IPV4, &packet)
            },
        },
        Case {
            name: "IPv6 segment-routed through the box",
            fate: Fate::Gated,
            build: |s, gw, p| {
                const SEGMENT_ROUTING: u8 = 4;
                let datagram = udp_with_payload(CLIENT_PORT, DISCARD_PORT, p);
                let segments = [INTERNET6, GATEWAY_LAN_V6.octets()];
                let routing =
                    ipv6_routing_header(IPPROTO_UDP, SEGMENT_ROUTING, 1, &segments, &datagram);
                let packet = ipv6(s.v6, GATEWAY_LAN_V6.octets(), IPPROTO_ROUTING, &routing);
                ethernet(gw, s.mac, &[], ETH_P_IPV6, &packet)
            },
        },
        Case {
            // Type 0 is never honoured, but the gate does not tell routing types apart.
            name: "IPv6 type 0 source-routed through the box",
            fate: Fate::GatedUnroutable,
            build: |s, gw, p| {
                let datagram = udp_with_payload(CLIENT_PORT, DISCARD_PORT, p);
                let routing = ipv6_routing_header(IPPROTO_UDP, 0, 1, &[INTERNET6], &datagram);
                let packet = ipv6(s.v6, GATEWAY_LAN_V6.octets(), IPPROTO_ROUTING, &routing);
                ethernet(gw, s.mac, &[], ETH_P_IPV6, &packet)
            },
        },
        Case {
            // No station sends from a group address; the bridge drops these, and the gate
            // would on an interface that is not a bridge (see the TestRun tests).
            name: "IPv4 from a group source MAC",
            fate: Fate::NeverRouted,
            build: |s, gw, p| {
                const GROUP: Mac = [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb];
                ethernet(
                    gw,
                    GROUP,
                    &[],
                    ETH_P_IPV4,
                    &udp4(s.v4, INTERNET4, DISCARD_PORT, p),
                )
            },
        },
    ]
}

/// The numbers of the marked frames `capture` received since it started, numbered from
/// `base` (frames numbered `base..base + 100`), with how often each arrived.
fn arrivals(capture: &FrameCapture, base: u8) -> BTreeMap<u8, usize> {
    let mut seen = BTreeMap::new();
    for frame in capture.frames() {
        let found = frame
            .windows(MARKER.len())
            .position(|window| window == MARKER)
            .and_then(|at| frame.get(at + MARKER.len()))
            .and_then(|number| number.checked_sub(base))
            .filter(|number| *number < 100);
        if let Some(number) = found {
            *seen.entry(number).or_insert(0) += 1;
        }
    }
    seen
}

/// What the test knows about the LAN: the cases for it and the gateway's MAC.
struct Bench<'a> {
    lan: &'a Lan,
    daemon: &'a Daemon,
    cases: Vec<Case>,
    gateway: Mac,
    capture: FrameCapture,
}

impl Bench<'_> {
    /// Cases (by number) whose fate is one of `fates`, each expected to arrive once.
    fn numbered(&self, fates: &[Fate]) -> BTreeMap<u8, usize> {
        self.cases
            .iter()
            .enumerate()
            .filter(|(_, case)| fates.contains(&case.fate))
            .map(|(index, _)| (u8::try_from(index).unwrap_or(u8::MAX), 1))
            .collect()
    }

    fn names(&self, numbers: &BTreeMap<u8, usize>) -> Vec<&'static str> {
        numbers
            .keys()
            .filter_map(|n| self.cases.get(usize::from(*n)).map(|case| case.name))
            .collect()
    }

    /// Waits until the frames numbered from `base` that arrived are `expected` (or a timeout),
    /// then a little longer for any that should not, and checks.
    fn expect_arrivals(&self, base: u8, expected: &BTreeMap<u8, usize>, what: &str) -> Result<()> {
        wait_for(ARRIVAL_TIMEOUT, || {
            arrivals(&self.capture, base) == *expected
        });
        std::thread::sleep(QUIET);
        let got = arrivals(&self.capture, base);
        ensure!(
            got == *expected,
            "{what}: arrived {:?} ({got:?}), expected {:?}",
            self.names(&got),
            self.names(expected)
        );
        Ok(())
    }

    /// Sends every case from `client`'s link as `who`, numbered from `base`. With `counted`,
    /// checks after each frame that the gate counted an upload drop against `who` exactly
    /// when the case says it drops, reading the kernel's counters directly. (Only uploads:
    /// the internet's ICMP errors about the garden's frame are dropped on their way back.)
    fn send_all(&self, client: &Client, who: &Sender, base: u8, counted: bool) -> Result<()> {
        let link = FrameSender::open(&client.netns, CLIENT_IFACE)?;
        let dropped = || -> u64 {
            self.daemon
                .kernel_usage(who.mac)
                .ok()
                .flatten()
                .map_or(0, |usage| usage.up_dropped_bytes)
        };
        for (index, case) in self.cases.iter().enumerate() {
            let number = base + u8::try_from(index)?;
            let before = dropped();
            link.send(&(case.build)(who, self.gateway, &payload(number)))
                .with_context(|| case.name)?;
            if !counted {
                continue;
            }
            let drops = case.fate.gate_drops();
            let changed = wait_for(COUNTED_TIMEOUT, || dropped() != before);
            ensure!(
                changed == drops,
                "{}: the gate {} it",
                case.name,
                if drops { "did not drop" } else { "dropped" }
            );
        }
        Ok(())
    }
}

/// How long the kernel's counters may take to show a frame: it crosses a veth and a bridge.
const COUNTED_TIMEOUT: Duration = Duration::from_millis(300);

/// Adds the gateway's VLAN 10 and QinQ 100/10 subinterfaces; false when the kernel has no
/// 802.1Q support (then no tagged frame but VLAN 0 is ever routed).
fn add_vlans(lan: &Lan) -> Result<bool> {
    let dot1q = format!("{LAN_IFACE}.{VLAN_ID}");
    let outer = format!("{LAN_IFACE}.{QINQ_OUTER_ID}");
    let qinq = format!("{outer}.{VLAN_ID}");
    let first = [
        "link", "add", "link", LAN_IFACE, "name", &dot1q, "type", "vlan",
    ];
    if let Err(error) = lan.gateway.ip(&[&first[..], &["id", "10"]].concat()) {
        if format!("{error:#}").contains("Unknown device type") {
            eprintln!("this kernel has no 802.1Q: tagged frames are never routed here");
            return Ok(false);
        }
        return Err(error);
    }
    lan.gateway.ip_batch(&[
        format!("addr add {VLAN_GATEWAY_V4}/26 dev {dot1q}"),
        format!("addr add {VLAN_GATEWAY_V6}/64 dev {dot1q} nodad"),
        format!("link set {dot1q} up"),
        format!(
            "link add link {LAN_IFACE} name {outer} type vlan proto 802.1ad id {QINQ_OUTER_ID}"
        ),
        format!("link set {outer} up"),
        format!("link add link {outer} name {qinq} type vlan id {VLAN_ID}"),
        format!("addr add {QINQ_GATEWAY_V4}/26 dev {qinq}"),
        format!("addr add {QINQ_GATEWAY_V6}/64 dev {qinq} nodad"),
        format!("link set {qinq} up"),
    ])?;
    Ok(true)
}

fn stat(status: &Value, field: &str) -> u64 {
    status["kernel"][field].as_u64().unwrap_or(0)
}

#[test]
fn bad_frames_without_a_session_reach_nothing() -> Result<()> {
    let lan = Lan::new(4)?;
    let [attacker, available, paused, payer] = [0, 1, 2, 3].map(|i| &lan.clients[i]);
    let vlans = add_vlans(&lan)?;
    // An operator may turn source routing on; the gate must not depend on it being off.
    lan.gateway.sysctl(&[
        ("net/ipv4/conf/all/accept_source_route", "1"),
        (
            &format!("net/ipv4/conf/{LAN_IFACE}/accept_source_route"),
            "1",
        ),
        ("net/ipv6/conf/all/seg6_enabled", "1"),
        (&format!("net/ipv6/conf/{LAN_IFACE}/seg6_enabled"), "1"),
    ])?;
    let garden = format!("{INTERNET_V4}:{GARDEN_PORT}");
    let daemon = Daemon::start(
        &lan,
        &[("HOTSPOTD__NETWORK__WALLED_GARDEN", garden.as_str())],
    )?;
    // Sessions in waiting: one never started, one started and paused.
    daemon.add_session(
        &available.mac,
        &["--type", "time", "--time-secs", "3600", "--global-speed"],
    )?;
    daemon.connect_for_an_hour(&paused.mac)?;
    daemon.ctl_json(&["pause", "--mac", &paused.mac])?;
    daemon.connect_for_an_hour(&payer.mac)?;
    let before = daemon.ctl_json(&["status"])?;
    let bench = Bench {
        lan: &lan,
        daemon: &daemon,
        cases: cases(vlans),
        gateway: mac_of(lan.bridge_mac())?,
        capture: FrameCapture::start(&lan.internet, INTERNET_IFACE)?,
    };

    // Without a session, only the walled garden is reached, and the gate itself stopped
    // every IP packet for the internet, whatever its wrapping.
    bench.send_all(attacker, &sender(attacker)?, 0, true)?;
    let garden = bench.numbered(&[Fate::Garden]);
    bench.expect_arrivals(0, &garden, "without a session only the garden")?;

    // Forged: the MACs of clients whose sessions wait, with their addresses. The gate drops
    // them, billed as drops to the MAC they claim.
    let link = FrameSender::open(&attacker.netns, CLIENT_IFACE)?;
    let mut forged = 0;
    for victim in [available, paused] {
        let as_victim = sender(victim)?;
        for case in &bench.cases[..2] {
            link.send(&(case.build)(
                &as_victim,
                bench.gateway,
                &payload(FORGED_BASE + forged),
            ))?;
            forged += 1;
        }
        let counted = wait_for(COUNTED_TIMEOUT, || {
            daemon
                .kernel_usage(as_victim.mac)
                .is_ok_and(|usage| usage.is_some_and(|u| u.dropped_packets == 2))
        });
        ensure!(
            counted,
            "the gate did not drop the frames forging {}",
            victim.mac
        );
    }
    bench.expect_arrivals(
        FORGED_BASE,
        &BTreeMap::new(),
        "forging a waiting client's MAC",
    )?;

    // The positive control: the same frames from a client whose session runs arrive, all but
    // those the kernel never routes.
    bench.send_all(payer, &sender(payer)?, CONTROL_BASE, false)?;
    let routed = bench.numbered(&[Fate::Gated, Fate::Garden]);
    bench.expect_arrivals(CONTROL_BASE, &routed, "with a session")?;

    // The known limit of a hotspot that knows clients by MAC (as openNDS and CoovaChilli
    // do): a frame forging the MAC of a client whose session runs passes, billed to that
    // client. Shown here so the limit is measured, not assumed.
    let as_payer = sender(payer)?;
    let billed_before = daemon
        .kernel_usage(as_payer.mac)?
        .map_or(0, |u| u.up_packets);
    link.send(&(bench.cases[0].build)(
        &as_payer,
        bench.gateway,
        &payload(FORGED_BASE + forged),
    ))?;
    let mut limit = BTreeMap::new();
    limit.insert(forged, 1);
    bench.expect_arrivals(FORGED_BASE, &limit, "forging a running client's MAC")?;
    let billed_after = daemon
        .kernel_usage(as_payer.mac)?
        .map_or(0, |u| u.up_packets);
    ensure!(
        billed_after == billed_before + 1,
        "the forged frame is billed to the payer"
    );

    let gated = bench.numbered(&[Fate::Gated, Fate::GatedUnroutable]).len() + usize::from(forged);
    eprintln!(
        "{} kinds of frame: {} stopped by the gate ({} routable here with a session), {} to the \
         garden, {} never routed; {forged} forged as waiting clients, stopped",
        bench.cases.len(),
        bench.numbered(&[Fate::Gated, Fate::GatedUnroutable]).len(),
        bench.numbered(&[Fate::Gated]).len(),
        bench.numbered(&[Fate::Garden]).len(),
        bench.numbered(&[Fate::NeverRouted]).len(),
    );
    check_after(&bench, attacker, &before, gated)
}

/// The daemon still answers and its programs are attached; the gate counted its drops, and
/// billed nothing to the attacker.
fn check_after(bench: &Bench<'_>, attacker: &Client, before: &Value, gated: usize) -> Result<()> {
    let daemon = bench.daemon;
    let attached = bench
        .lan
        .gateway
        .run(|| hotspotd::bpf::attached_programs(LAN_IFACE))??;
    ensure!(
        attached.iter().any(|name| name == "lan_ingress")
            && attached.iter().any(|name| name == "lan_egress"),
        "the programs are still attached to {LAN_IFACE}: {attached:?}"
    );
    // Read through the daemon, after its poll: what an operator sees.
    let field = "dropped_no_session_packets";
    let mut after = Value::Null;
    let moved = wait_for(ARRIVAL_TIMEOUT, || {
        after = daemon.ctl_json(&["status"]).unwrap_or(Value::Null);
        stat(&after, field) >= stat(before, field) + u64::try_from(gated).unwrap_or(u64::MAX)
    });
    ensure!(
        moved,
        "{gated} frames were stopped by the gate; status says {after}"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let text = runtime.block_on(ApiClient::new(daemon.socket()).get_text("/metrics"))?;
    let series = "hotspotd_gate_drops_total{reason=\"no_session\"}";
    let counted = metrics::parse(&text)
        .map_err(anyhow::Error::msg)?
        .into_iter()
        .find_map(|(name, value)| (name == series).then_some(value))
        .with_context(|| format!("/metrics has no {series}"))?;
    #[expect(clippy::cast_precision_loss, reason = "small test counts")]
    let status_count = stat(&after, field) as f64;
    ensure!(
        counted >= status_count,
        "{series} is {counted}, status says {status_count}"
    );
    let row = daemon.client(&attacker.mac)?;
    ensure!(
        row["up_bytes"] == 0 && row["down_bytes"] == 0,
        "the attacker is billed nothing: {row}"
    );
    Ok(())
}
