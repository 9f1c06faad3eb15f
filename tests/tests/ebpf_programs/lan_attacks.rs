//! What an attacker on the LAN tries through the box's own state, frame by frame: downloads
//! sent to a group MAC, the box's services as a tunnel, WAN packets wearing the box's
//! address, and claiming another client's address (issue 16; docs/reliability.md).

use hotspotd_common::{Grant, IpKey, MacKey, NO_DEADLINE, UNLIMITED_BYTES, Usage};
use hotspotd_tests::frames::{
    BROADCAST_MAC, ETH_P_IPV4, ETH_P_IPV6, IPPROTO_TCP, Mac, ethernet, ipv4, ipv6, tcp,
};

use crate::harness::{
    BOX_V4, BOX_V6, CLIENT, CLIENT_PORT, CLIENT_V4, CLIENT_V6, FROM_BOX, GATEWAY, Harness, Program,
    REMOTE_V4, REMOTE_V6, Stats, counters, dns_answer_v4, download, to_u64, udp_v4, upload,
};

const SSH_PORT: u16 = 22;
/// The first MAC of IPv6 multicast (33:33:…), which a poisoned neighbour entry can name.
const IPV6_MULTICAST_MAC: Mac = [0x33, 0x33, 0, 0, 0, 1];
const ATTACKER: Mac = [0x02, 0, 0, 0, 0, 0x66];

fn ssh_to_box_v4() -> Vec<u8> {
    ipv4(
        CLIENT_V4,
        BOX_V4,
        IPPROTO_TCP,
        &tcp(CLIENT_PORT, SSH_PORT, 40),
    )
}

fn ssh_from_box_v4() -> Vec<u8> {
    ipv4(
        BOX_V4,
        CLIENT_V4,
        IPPROTO_TCP,
        &tcp(SSH_PORT, CLIENT_PORT, 40),
    )
}

#[test]
fn forwarded_downloads_to_a_group_mac_are_dropped() {
    // A client claimed its address is at ff:ff:ff:ff:ff:ff (or 33:33:…): the box forwards its
    // downloads there, where every station would get a copy and no one client can be gated,
    // billed or shaped. With a session or without, they are dropped.
    let mut harness = Harness::load();
    harness.grant(CLIENT, Grant::new(1, UNLIMITED_BYTES, NO_DEADLINE));
    let v4 = udp_v4(REMOTE_V4, CLIENT_V4, 500);
    let v6 = ipv6(
        REMOTE_V6,
        CLIENT_V6,
        17,
        &hotspotd_tests::frames::udp(443, CLIENT_PORT, 500),
    );
    harness.run_dropped(
        Program::Egress,
        &ethernet(BROADCAST_MAC, GATEWAY, &[], ETH_P_IPV4, &v4),
    );
    harness.run_dropped(
        Program::Egress,
        &ethernet(IPV6_MULTICAST_MAC, GATEWAY, &[], ETH_P_IPV6, &v6),
    );
    assert_eq!(
        harness.stats(),
        Stats {
            dropped_group_destination: 2,
            ..Stats::default()
        }
    );
    assert_eq!(
        harness.usage(CLIENT).map(counters),
        Some(Usage::default()),
        "billed to nobody"
    );
    // The box's own broadcasts (a DHCP offer) still go out.
    harness.run_with_context(
        Program::Egress,
        &ethernet(BROADCAST_MAC, GATEWAY, &[], ETH_P_IPV4, &v4),
        Some(FROM_BOX.as_slice()),
    );
}

#[test]
fn the_box_is_free_only_for_its_client_services() {
    let mut harness = Harness::load();
    harness.add_local_addr(IpKey::from_v4(BOX_V4));
    harness.add_local_addr(IpKey::from_v6(BOX_V6));
    let dns = udp_v4(CLIENT_V4, BOX_V4, 40);
    let ping = ipv4(CLIENT_V4, BOX_V4, 1, &[8, 0, 0, 0, 0, 1, 0, 1]);
    let ssh = ssh_to_box_v4();
    let from_box = Some(FROM_BOX.as_slice());

    // Without a session: DNS and ICMP reach the box; SSH (or a tunnel, a proxy) does not,
    // either way.
    harness.run(Program::Ingress, &upload(ETH_P_IPV4, &dns));
    harness.run(Program::Ingress, &upload(ETH_P_IPV4, &ping));
    harness.run_dropped(Program::Ingress, &upload(ETH_P_IPV4, &ssh));
    harness.run_with_context(
        Program::Egress,
        &download(ETH_P_IPV4, &dns_answer_v4(BOX_V4, CLIENT_V4, 40)),
        from_box,
    );
    harness.run_dropped_with_context(
        Program::Egress,
        &download(ETH_P_IPV4, &ssh_from_box_v4()),
        from_box,
    );
    // Not through a broadcast MAC either.
    harness.run_dropped(
        Program::Ingress,
        &ethernet(BROADCAST_MAC, CLIENT, &[], ETH_P_IPV4, &ssh),
    );
    assert_eq!(harness.stats().dropped_no_session, 3);

    // With a session, SSH to the box is billed like the internet, both ways.
    harness.grant(CLIENT, Grant::new(1, UNLIMITED_BYTES, NO_DEADLINE));
    harness.run(Program::Ingress, &upload(ETH_P_IPV4, &ssh));
    let reply = ssh_from_box_v4();
    harness.run_with_context(Program::Egress, &download(ETH_P_IPV4, &reply), from_box);
    let usage = counters(harness.usage(CLIENT).expect("counted"));
    assert_eq!(
        (usage.up_bytes, usage.down_bytes),
        (to_u64(ssh.len()), to_u64(reply.len()))
    );

    // The operator's list decides: SSH listed, it is free.
    harness.set_local_services(&["tcp/22"]);
    harness.run(Program::Ingress, &upload(ETH_P_IPV4, &ssh));
    let after = counters(harness.usage(CLIENT).expect("counted"));
    assert_eq!(after.up_bytes, usage.up_bytes, "not billed");
    assert_eq!(
        after.up_local_bytes,
        usage.up_local_bytes + to_u64(ssh.len())
    );
}

#[test]
fn a_wan_packet_with_the_box_address_is_not_the_box() {
    // From the WAN side, anyone can write the box's address as a packet's source; forwarded,
    // it is gated like any other download. Only what the box sends itself is the box's.
    let mut harness = Harness::load();
    harness.add_local_addr(IpKey::from_v4(BOX_V4));
    harness.add_local_addr(IpKey::from_v6(BOX_V6));
    let v4 = dns_answer_v4(BOX_V4, CLIENT_V4, 200);
    let v6 = ipv6(
        BOX_V6,
        CLIENT_V6,
        17,
        &hotspotd_tests::frames::udp(53, CLIENT_PORT, 200),
    );
    harness.run_dropped(Program::Egress, &download(ETH_P_IPV4, &v4));
    harness.run_dropped(Program::Egress, &download(ETH_P_IPV6, &v6));
    assert_eq!(harness.stats().dropped_no_session, 2);
    harness.run_with_context(
        Program::Egress,
        &download(ETH_P_IPV4, &v4),
        Some(FROM_BOX.as_slice()),
    );
}

#[test]
fn an_address_is_bound_to_the_mac_that_sends_from_it_and_a_claim_is_flagged() {
    let mut harness = Harness::load();
    harness.add_local_addr(IpKey::from_v4(BOX_V4));
    let key = IpKey::from_v4(CLIENT_V4);
    let dns = udp_v4(CLIENT_V4, BOX_V4, 40);

    harness.run(Program::Ingress, &upload(ETH_P_IPV4, &dns));
    let owner = harness.address_owner(key).expect("bound");
    assert_eq!((owner.mac, owner.moved_jiffies), (MacKey::new(CLIENT), 0));

    // Another MAC sends from the same address: it owns it now, and the move is recorded.
    harness.run(
        Program::Ingress,
        &ethernet(GATEWAY, ATTACKER, &[], ETH_P_IPV4, &dns),
    );
    let owner = harness.address_owner(key).expect("bound");
    assert_eq!(
        (owner.mac, owner.previous),
        (MacKey::new(ATTACKER), MacKey::new(CLIENT))
    );
    assert_ne!(owner.moved_jiffies, 0);

    // A paying client's internet traffic binds too (its first packet in each jiffy): the
    // address is the client's again, and that is a move as well.
    harness.grant(CLIENT, Grant::new(1, UNLIMITED_BYTES, NO_DEADLINE));
    harness.run(
        Program::Ingress,
        &upload(ETH_P_IPV4, &udp_v4(CLIENT_V4, REMOTE_V4, 40)),
    );
    let owner = harness.address_owner(key).expect("bound");
    assert_eq!(
        (owner.mac, owner.previous),
        (MacKey::new(CLIENT), MacKey::new(ATTACKER))
    );
    // An unspecified source (DHCP's 0.0.0.0) is never bound.
    harness.run(
        Program::Ingress,
        &upload(ETH_P_IPV4, &udp_v4([0; 4], [255; 4], 40)),
    );
    assert_eq!(harness.address_owner(IpKey::from_v4([0; 4])), None);
}
