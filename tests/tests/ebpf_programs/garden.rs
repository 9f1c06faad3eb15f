//! The walled garden's host names in the kernel: the download program copies a DNS answer the
//! box itself sends a client (UDP from port 53) whole into `GARDEN_ANSWERS`, only while the
//! garden has names (`CONFIG` word `GARDEN_NAMES`); the same answer forwarded by the box (from
//! a resolver elsewhere, or forged), from another port, or over TCP is never copied.

use aya::maps::{MapData, RingBuf};
use hotspotd_common::{GARDEN_ANSWER_MAX_LEN, IpKey, config_word};
use hotspotd_tests::frames::udp_with_payload;
use hotspotd_tests::frames::{ETH_P_IPV4, ETH_P_IPV6, IPPROTO_TCP, IPPROTO_UDP, ipv4, ipv6, tcp};

use crate::harness::{
    BOX_V4, BOX_V6, CLIENT_PORT, CLIENT_V4, CLIENT_V6, DNS_PORT, FROM_BOX, Harness, Program,
    download, forwarded,
};

/// A DNS message of `len` bytes whose bytes count up, so a copy can be compared.
fn message(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251).to_le_bytes()[0]).collect()
}

fn answer_v4(payload: &[u8]) -> Vec<u8> {
    download(
        ETH_P_IPV4,
        &ipv4(
            BOX_V4,
            CLIENT_V4,
            IPPROTO_UDP,
            &udp_with_payload(DNS_PORT, CLIENT_PORT, payload),
        ),
    )
}

fn answer_v6(payload: &[u8]) -> Vec<u8> {
    download(
        ETH_P_IPV6,
        &ipv6(
            BOX_V6,
            CLIENT_V6,
            IPPROTO_UDP,
            &udp_with_payload(DNS_PORT, CLIENT_PORT, payload),
        ),
    )
}

fn harness(names: bool) -> Harness {
    let mut harness = Harness::load();
    harness.add_local_addr(IpKey::from_v4(BOX_V4));
    harness.add_local_addr(IpKey::from_v6(BOX_V6));
    harness.set_config(config_word::GARDEN_NAMES, u32::from(names));
    harness
}

/// Every record in the ring, as the DNS message it carries (the 8-byte header says how long).
fn drain(ring: &mut RingBuf<MapData>) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    while let Some(record) = ring.next() {
        let len = u32::from_ne_bytes(record[..4].try_into().expect("4 bytes")) as usize;
        messages.push(record[8..8 + len].to_vec());
    }
    messages
}

#[test]
fn the_boxs_own_answers_are_copied_whole_and_cut_at_the_limit() {
    let mut harness = harness(true);
    let mut ring = harness.take_garden_answers();
    let short = message(60);
    let long = message(1_400);
    let from_box = Some(FROM_BOX.as_slice());
    harness.run_with_context(Program::Egress, &answer_v4(&short), from_box);
    harness.run_with_context(Program::Egress, &answer_v6(&short), from_box);
    harness.run_with_context(Program::Egress, &answer_v4(&long), from_box);
    let copied = drain(&mut ring);
    assert_eq!(copied.len(), 3);
    assert_eq!(copied[0], short);
    assert_eq!(copied[1], short);
    assert_eq!(copied[2], long[..GARDEN_ANSWER_MAX_LEN as usize]);
}

#[test]
fn forwarded_answers_other_ports_and_tcp_are_not_copied() {
    let mut harness = harness(true);
    let mut ring = harness.take_garden_answers();
    let payload = message(60);
    let context = forwarded();
    // Forwarded: from a resolver of the client's own, or forged with the box's address.
    harness.verdict(
        Program::Egress,
        &answer_v4(&payload),
        Some(context.as_slice()),
    );
    harness.verdict(
        Program::Egress,
        &answer_v6(&payload),
        Some(context.as_slice()),
    );
    let from_box = Some(FROM_BOX.as_slice());
    // From the box, but not from port 53 (the portal, DHCP).
    let other_port = download(
        ETH_P_IPV4,
        &ipv4(
            BOX_V4,
            CLIENT_V4,
            IPPROTO_UDP,
            &udp_with_payload(67, CLIENT_PORT, &payload),
        ),
    );
    harness.verdict(Program::Egress, &other_port, from_box);
    // DNS over TCP.
    let over_tcp = download(
        ETH_P_IPV4,
        &ipv4(
            BOX_V4,
            CLIENT_V4,
            IPPROTO_TCP,
            &tcp(DNS_PORT, CLIENT_PORT, 60),
        ),
    );
    harness.verdict(Program::Egress, &over_tcp, from_box);
    // Shorter than a DNS header.
    harness.verdict(Program::Egress, &answer_v4(&message(11)), from_box);
    assert!(drain(&mut ring).is_empty());
}

#[test]
fn nothing_is_copied_while_the_garden_has_no_names() {
    let mut harness = harness(false);
    let mut ring = harness.take_garden_answers();
    harness.run_with_context(
        Program::Egress,
        &answer_v4(&message(60)),
        Some(FROM_BOX.as_slice()),
    );
    assert!(drain(&mut ring).is_empty());
}
