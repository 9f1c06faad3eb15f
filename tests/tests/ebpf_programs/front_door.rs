//! The front door in the kernel, frame by frame: an unpaid client's HTTPS SYN becomes a reset
//! with valid checksums sent back out, its plain HTTP is marked for the box's stack (and a SYN
//! with no redirect listener to take it is dropped), the portal's marked answers pass the
//! download program, and none of it is billed; a paying client's web traffic is untouched.
//! An unpaid client's DNS to any resolver is sent to the box's, and answered from the address
//! it asked, with checksums that still hold.

use hotspotd_common::{IpKey, PORTAL_MARK, config_word};
use hotspotd_tests::frames::{
    ETH_P_IPV4, ETH_P_IPV6, IPPROTO_TCP, IPPROTO_UDP, Ipv4Shape, TCP_TIMESTAMPS, internet_checksum,
    ipv4_routable, ipv6, tcp, tcp_with_options,
};

use crate::harness::{
    BOX_V4, BOX_V6, CLIENT, CLIENT_PORT, CLIENT_V4, CLIENT_V6, FROM_BOX, HTTPS_PORT, Harness,
    Program, REMOTE_V4, REMOTE_V6, SK_BUFF_LEN, SK_BUFF_MARK, TC_ACT_SHOT, TC_ACT_UNSPEC, download,
    forwarded, unlimited, upload,
};

const TC_ACT_OK: i32 = 0;
const TC_ACT_REDIRECT: i32 = 7;
const HTTP_PORT: u16 = 80;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;
const SYN_SEQUENCE: u32 = 0xfedc_ba98;

/// A TCP segment from the client with `flags`, the sequence number [`SYN_SEQUENCE`] and
/// Linux's SYN options.
fn segment(dst_port: u16, flags: u8) -> Vec<u8> {
    let mut segment = tcp_with_options(CLIENT_PORT, dst_port, &TCP_TIMESTAMPS, 0);
    segment[4..8].copy_from_slice(&SYN_SEQUENCE.to_be_bytes());
    segment[13] = flags;
    segment
}

fn to_internet_v4(dst_port: u16, flags: u8) -> Vec<u8> {
    upload(
        ETH_P_IPV4,
        &ipv4_routable(
            CLIENT_V4,
            REMOTE_V4,
            IPPROTO_TCP,
            &Ipv4Shape::default(),
            &segment(dst_port, flags),
        ),
    )
}

fn to_internet_v6(dst_port: u16, flags: u8) -> Vec<u8> {
    upload(
        ETH_P_IPV6,
        &ipv6(CLIENT_V6, REMOTE_V6, IPPROTO_TCP, &segment(dst_port, flags)),
    )
}

/// Steering on, and the box's addresses known (its resolver is one of its free services).
fn steering() -> Harness {
    let mut harness = Harness::load();
    harness.set_config(config_word::PORTAL_STEERING, 1);
    harness.add_local_addr(IpKey::from_v4(BOX_V4));
    harness.add_local_addr(IpKey::from_v6(BOX_V6));
    harness
}

fn mark_of(context: &[u8; SK_BUFF_LEN]) -> u32 {
    u32::from_ne_bytes(
        context[SK_BUFF_MARK..SK_BUFF_MARK + 4]
            .try_into()
            .expect("4 bytes"),
    )
}

fn with_mark(mut context: [u8; SK_BUFF_LEN], mark: u32) -> [u8; SK_BUFF_LEN] {
    context[SK_BUFF_MARK..SK_BUFF_MARK + 4].copy_from_slice(&mark.to_ne_bytes());
    context
}

/// Checks `reset` answers the SYN `syn` (both whole frames at `l3`, IP header `ip_len`): MACs,
/// addresses and ports swapped, RST+ACK acknowledging the SYN, nothing after the TCP header.
fn check_reset(syn: &[u8], reset: &[u8], ip_len: usize, address_at: usize, address_len: usize) {
    let l3 = 14;
    let l4 = l3 + ip_len;
    assert_eq!(
        reset.len(),
        l4 + 20,
        "a reset is headers only: {reset:02x?}"
    );
    assert_eq!(reset[0..6], syn[6..12], "to the client's MAC");
    assert_eq!(reset[6..12], syn[0..6], "from the box's MAC");
    let (src, dst) = (l3 + address_at, l3 + address_at + address_len);
    assert_eq!(reset[src..src + address_len], syn[dst..dst + address_len]);
    assert_eq!(reset[dst..dst + address_len], syn[src..src + address_len]);
    let tcp = &reset[l4..];
    assert_eq!(tcp[0..2], syn[l4 + 2..l4 + 4], "from the port asked for");
    assert_eq!(tcp[2..4], syn[l4..l4 + 2], "to the client's port");
    assert_eq!(tcp[13], RST | ACK);
    assert_eq!(tcp[12] >> 4, 5, "no options");
    assert_eq!(
        u32::from_be_bytes(tcp[8..12].try_into().expect("4 bytes")),
        SYN_SEQUENCE.wrapping_add(1),
        "acknowledges the SYN"
    );
    // The TCP checksum over the pseudo-header and the segment.
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&reset[src..src + address_len]);
    pseudo.extend_from_slice(&reset[dst..dst + address_len]);
    if address_len == 4 {
        pseudo.extend_from_slice(&[0, IPPROTO_TCP, 0, 20]);
    } else {
        pseudo.extend_from_slice(&[0, 0, 0, 20, 0, 0, 0, IPPROTO_TCP]);
    }
    pseudo.extend_from_slice(tcp);
    assert_eq!(internet_checksum(&pseudo), 0, "TCP checksum: {reset:02x?}");
}

#[test]
fn an_unpaid_https_syn_is_answered_with_a_reset() {
    let harness = steering();
    let syn = to_internet_v4(HTTPS_PORT, SYN);
    let (verdict, reset, context) = harness.run_rewrite(Program::Ingress, &syn, &forwarded());
    assert_eq!(verdict, TC_ACT_REDIRECT, "sent back out");
    assert_eq!(mark_of(&context), PORTAL_MARK);
    check_reset(&syn, &reset, 20, 12, 4);
    let ip = &reset[14..34];
    assert_eq!(internet_checksum(ip), 0, "IPv4 header checksum: {ip:02x?}");
    assert_eq!(u16::from_be_bytes([ip[2], ip[3]]), 40, "total length");

    let syn = to_internet_v6(HTTPS_PORT, SYN);
    let (verdict, reset, context) = harness.run_rewrite(Program::Ingress, &syn, &forwarded());
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!(mark_of(&context), PORTAL_MARK);
    check_reset(&syn, &reset, 40, 8, 16);
    assert_eq!(
        u16::from_be_bytes([reset[18], reset[19]]),
        20,
        "payload length"
    );

    // Anything but a plain SYN to 443 is dropped, never answered: a reset for a reset, or
    // for an ACK, would let a client make the box send packets to whomever it names.
    for flags in [ACK, SYN | ACK, RST, SYN | RST, 0] {
        harness.run_dropped(Program::Ingress, &to_internet_v4(HTTPS_PORT, flags));
        harness.run_dropped(Program::Ingress, &to_internet_v6(HTTPS_PORT, flags));
    }
    // Nothing of it is billed.
    let usage = harness.usage(CLIENT).expect("counted");
    assert_eq!(usage.up_bytes + usage.down_bytes, 0);
}

#[test]
fn unpaid_plain_http_is_marked_for_the_box_and_needs_a_listener() {
    let harness = steering();
    // A SYN needs the redirect listener, which only a running daemon puts in the map.
    harness.run_dropped(Program::Ingress, &to_internet_v4(HTTP_PORT, SYN));
    harness.run_dropped(Program::Ingress, &to_internet_v6(HTTP_PORT, SYN));
    // The rest of a connection is marked, and the box's stack finds its socket.
    for frame in [
        to_internet_v4(HTTP_PORT, ACK),
        to_internet_v6(HTTP_PORT, ACK),
    ] {
        let (verdict, out, context) = harness.run_rewrite(Program::Ingress, &frame, &forwarded());
        assert_eq!(verdict, TC_ACT_OK);
        assert_eq!(mark_of(&context), PORTAL_MARK);
        assert_eq!(out, frame, "passed on unchanged");
    }
    let usage = harness.usage(CLIENT).expect("counted");
    assert_eq!(usage.up_bytes, 0, "the portal's traffic is not billed");
    assert!(usage.up_local_bytes > 0, "it is the box's: {usage:?}");
}

#[test]
fn without_steering_web_traffic_is_dropped_like_the_rest() {
    // portal.mode = "off": the word stays 0.
    let harness = Harness::load();
    for flags in [SYN, ACK] {
        for port in [HTTP_PORT, HTTPS_PORT] {
            let frame = to_internet_v4(port, flags);
            let (verdict, out, context) =
                harness.run_rewrite(Program::Ingress, &frame, &forwarded());
            assert_eq!(verdict, TC_ACT_SHOT);
            assert_eq!(mark_of(&context), 0);
            assert_eq!(out, frame);
        }
    }
}

#[test]
fn a_paying_clients_web_traffic_is_untouched() {
    let mut harness = steering();
    harness.grant(CLIENT, unlimited());
    for frame in [
        to_internet_v4(HTTP_PORT, SYN),
        to_internet_v4(HTTPS_PORT, SYN),
        to_internet_v6(HTTP_PORT, SYN),
        to_internet_v6(HTTPS_PORT, SYN),
    ] {
        let (verdict, out, context) = harness.run_rewrite(Program::Ingress, &frame, &forwarded());
        assert_eq!(verdict, TC_ACT_UNSPEC);
        assert_eq!(mark_of(&context), 0);
        assert_eq!(out, frame);
    }
}

#[test]
fn the_portals_marked_answers_reach_an_unpaid_client_unbilled() {
    let harness = steering();
    let answer = download(
        ETH_P_IPV4,
        &ipv4_routable(
            REMOTE_V4,
            CLIENT_V4,
            IPPROTO_TCP,
            &Ipv4Shape::default(),
            &tcp(HTTP_PORT, CLIENT_PORT, 300),
        ),
    );
    // The redirect listener's answer (from the box) and a reset sent back out (forwarded).
    for context in [FROM_BOX, forwarded()] {
        let (verdict, _, _) =
            harness.run_rewrite(Program::Egress, &answer, &with_mark(context, PORTAL_MARK));
        assert_eq!(verdict, TC_ACT_UNSPEC);
    }
    // Without the mark, the same packet is an unpaid client's download: dropped.
    harness.run_dropped(Program::Egress, &answer);
    let (verdict, _, _) = harness.run_rewrite(Program::Egress, &answer, &with_mark(FROM_BOX, 1));
    assert_eq!(verdict, TC_ACT_SHOT, "another mark is not the portal's");
    let usage = harness.usage(CLIENT).expect("counted");
    assert_eq!(usage.down_bytes, 0);
    assert!(usage.down_local_bytes > 0);
}

const DNS_PORT: u16 = 53;
const RESOLVER_V4: [u8; 4] = [8, 8, 8, 8];
const RESOLVER_V6: [u8; 16] = [
    0x20, 0x01, 0x48, 0x60, 0x48, 0x60, 0, 0, 0, 0, 0, 0, 0, 0, 0x88, 0x88,
];

/// `segment` (TCP or UDP) with its checksum over the pseudo-header of `src` → `dst` filled in.
fn checksummed(src: &[u8], dst: &[u8], proto: u8, mut segment: Vec<u8>) -> Vec<u8> {
    let at = if proto == IPPROTO_TCP { 16 } else { 6 };
    segment[at..at + 2].copy_from_slice(&[0, 0]);
    let check = internet_checksum(&pseudo_header(src, dst, proto, &segment));
    segment[at..at + 2].copy_from_slice(&check.to_be_bytes());
    segment
}

fn pseudo_header(src: &[u8], dst: &[u8], proto: u8, segment: &[u8]) -> Vec<u8> {
    let len = u32::try_from(segment.len()).expect("a short segment");
    let mut bytes = Vec::new();
    bytes.extend_from_slice(src);
    bytes.extend_from_slice(dst);
    if src.len() == 4 {
        bytes.extend_from_slice(&[0, proto]);
        bytes.extend_from_slice(&u16::try_from(len).expect("short").to_be_bytes());
    } else {
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, proto]);
    }
    bytes.extend_from_slice(segment);
    bytes
}

/// A DNS query (UDP or TCP) from the client to `dst`, port 53, with valid checksums.
fn query(dst: &[u8], proto: u8, v6: bool) -> Vec<u8> {
    let segment = if proto == IPPROTO_TCP {
        segment(DNS_PORT, SYN)
    } else {
        hotspotd_tests::frames::udp_with_payload(CLIENT_PORT, DNS_PORT, b"\x12\x34 a query")
    };
    if v6 {
        let dst: [u8; 16] = dst.try_into().expect("an IPv6 address");
        let segment = checksummed(&CLIENT_V6, &dst, proto, segment);
        upload(ETH_P_IPV6, &ipv6(CLIENT_V6, dst, proto, &segment))
    } else {
        let dst: [u8; 4] = dst.try_into().expect("an IPv4 address");
        let segment = checksummed(&CLIENT_V4, &dst, proto, segment);
        upload(
            ETH_P_IPV4,
            &ipv4_routable(CLIENT_V4, dst, proto, &Ipv4Shape::default(), &segment),
        )
    }
}

/// The box resolver's answer to [`query`], from `src`, sent by the box itself.
fn answer(src: &[u8], proto: u8, v6: bool) -> Vec<u8> {
    let mut segment = if proto == IPPROTO_TCP {
        tcp(DNS_PORT, CLIENT_PORT, 0)
    } else {
        hotspotd_tests::frames::udp_with_payload(DNS_PORT, CLIENT_PORT, b"\x12\x34 an answer")
    };
    if proto == IPPROTO_TCP {
        segment[13] = SYN | ACK;
    }
    if v6 {
        let src: [u8; 16] = src.try_into().expect("an IPv6 address");
        let segment = checksummed(&src, &CLIENT_V6, proto, segment);
        download(ETH_P_IPV6, &ipv6(src, CLIENT_V6, proto, &segment))
    } else {
        let src: [u8; 4] = src.try_into().expect("an IPv4 address");
        let segment = checksummed(&src, &CLIENT_V4, proto, segment);
        download(
            ETH_P_IPV4,
            &ipv4_routable(src, CLIENT_V4, proto, &Ipv4Shape::default(), &segment),
        )
    }
}

/// The addresses of a frame made by [`query`] or [`answer`], and whether its checksums hold.
fn addresses_and_checksums(frame: &[u8], v6: bool) -> (Vec<u8>, Vec<u8>, bool) {
    let l3 = 14;
    if v6 {
        let (src, dst) = (&frame[l3 + 8..l3 + 24], &frame[l3 + 24..l3 + 40]);
        let proto = frame[l3 + 6];
        let valid = internet_checksum(&pseudo_header(src, dst, proto, &frame[l3 + 40..])) == 0;
        (src.to_vec(), dst.to_vec(), valid)
    } else {
        let (src, dst) = (&frame[l3 + 12..l3 + 16], &frame[l3 + 16..l3 + 20]);
        let proto = frame[l3 + 9];
        let valid = internet_checksum(&frame[l3..l3 + 20]) == 0
            && internet_checksum(&pseudo_header(src, dst, proto, &frame[l3 + 20..])) == 0;
        (src.to_vec(), dst.to_vec(), valid)
    }
}

#[test]
fn an_unpaid_clients_dns_to_any_resolver_is_answered_by_the_box() {
    let mut harness = steering();
    harness.set_box_resolver(BOX_V4, BOX_V6);
    for proto in [IPPROTO_UDP, IPPROTO_TCP] {
        for (v6, resolver, the_box) in [
            (false, &RESOLVER_V4[..], &BOX_V4[..]),
            (true, &RESOLVER_V6[..], &BOX_V6[..]),
        ] {
            let (verdict, out, _) =
                harness.run_rewrite(Program::Ingress, &query(resolver, proto, v6), &forwarded());
            assert_eq!(verdict, TC_ACT_OK, "proto {proto}, IPv6 {v6}");
            let (src, dst, valid) = addresses_and_checksums(&out, v6);
            assert_eq!(dst, the_box, "sent to the box's resolver");
            assert_eq!(src.len(), the_box.len());
            assert!(valid, "checksums after the rewrite: {out:02x?}");

            let (verdict, out, _) =
                harness.run_rewrite(Program::Egress, &answer(the_box, proto, v6), &FROM_BOX);
            assert_eq!(verdict, TC_ACT_UNSPEC);
            let (src, _, valid) = addresses_and_checksums(&out, v6);
            assert_eq!(src, resolver, "answered from the resolver the client asked");
            assert!(valid, "checksums of the answer: {out:02x?}");
        }
    }
    let usage = harness.usage(CLIENT).expect("counted");
    assert_eq!(
        usage.up_bytes + usage.down_bytes,
        0,
        "DNS with the box is never billed"
    );
}

#[test]
fn dns_redirect_needs_a_resolver_and_leaves_the_boxs_own_answers_alone() {
    let mut harness = steering();
    // No resolver named (portal.redirect_dns = false, or mode off): dropped.
    harness.run_dropped(Program::Ingress, &query(&RESOLVER_V4, IPPROTO_UDP, false));
    harness.run_dropped(Program::Ingress, &query(&RESOLVER_V6, IPPROTO_UDP, true));

    harness.set_box_resolver(BOX_V4, [0; 16]);
    harness.run_dropped(Program::Ingress, &query(&RESOLVER_V6, IPPROTO_UDP, true));
    let (verdict, _, _) = harness.run_rewrite(
        Program::Ingress,
        &query(&RESOLVER_V4, IPPROTO_UDP, false),
        &forwarded(),
    );
    assert_eq!(verdict, TC_ACT_OK);
    // The client then asks the box itself from the same port: that answer keeps the box's
    // address, or the client's stub would drop it.
    let (verdict, _, _) = harness.run_rewrite(
        Program::Ingress,
        &query(&BOX_V4, IPPROTO_UDP, false),
        &forwarded(),
    );
    assert_eq!(verdict, TC_ACT_UNSPEC);
    let answer = answer(&BOX_V4, IPPROTO_UDP, false);
    let (verdict, out, _) = harness.run_rewrite(Program::Egress, &answer, &FROM_BOX);
    assert_eq!(verdict, TC_ACT_UNSPEC);
    assert_eq!(out, answer, "untouched");

    // A paying client's DNS goes where it was sent.
    harness.grant(CLIENT, unlimited());
    let query = query(&RESOLVER_V4, IPPROTO_UDP, false);
    let (verdict, out, _) = harness.run_rewrite(Program::Ingress, &query, &forwarded());
    assert_eq!(verdict, TC_ACT_UNSPEC);
    assert_eq!(out, query);
}
