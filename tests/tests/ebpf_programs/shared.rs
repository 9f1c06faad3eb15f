//! Shared budgets: the devices of one voucher draw on one budget in `BUDGETS`, each counted
//! in its own slot of `USAGE`; and the slots themselves (zeroed when given out, not reused
//! while a program may still hold them).

use hotspotd_common::{Grant, NO_BUDGET, NO_DEADLINE, gate_event};
use hotspotd_tests::frames::{Mac, client_mac};

use crate::harness::{
    Harness, Program, TC_ACT_SHOT, TC_ACT_UNSPEC, counters, to_u64, udp_download_to,
    udp_upload_from,
};

const PACKET_LEN: usize = 100;

fn upload_from(client: Mac) -> Vec<u8> {
    udp_upload_from(client, PACKET_LEN)
}

fn download_to(client: Mac) -> Vec<u8> {
    udp_download_to(client, PACKET_LEN)
}

/// Billable bytes the kernel counted for `client`, both directions.
fn billed(harness: &Harness, client: Mac) -> u64 {
    harness
        .usage(client)
        .map(counters)
        .map_or(0, |usage| usage.up_bytes + usage.down_bytes)
}

#[test]
fn devices_sharing_a_budget_spend_it_together_to_the_packet() {
    const DEVICES: [Mac; 3] = [client_mac(1), client_mac(2), client_mac(3)];
    // 25 packets' worth: whatever the devices' order, 25 pass in all and the 26th does not.
    let budget = i64::try_from(25 * PACKET_LEN).expect("fits");
    let mut harness = Harness::load();
    harness.grant(DEVICES[0], Grant::new(9, budget, NO_DEADLINE));
    for member in &DEVICES[1..] {
        harness.share(*member, DEVICES[0]);
    }
    let mut events = harness.take_events();
    let mut passed = 0;
    for round in 0..20 {
        for (n, device) in DEVICES.iter().enumerate() {
            let frame = if (round + n) % 2 == 0 {
                upload_from(*device)
            } else {
                download_to(*device)
            };
            let program = if (round + n) % 2 == 0 {
                Program::Ingress
            } else {
                Program::Egress
            };
            match harness.verdict(program, &frame, None) {
                TC_ACT_UNSPEC => passed += 1,
                TC_ACT_SHOT => {}
                other => panic!("unexpected verdict {other}"),
            }
        }
    }
    assert_eq!(
        passed, 25,
        "exactly the budget passed, across three devices"
    );
    let sum: u64 = DEVICES.iter().map(|device| billed(&harness, *device)).sum();
    assert_eq!(
        sum,
        to_u64(25 * PACKET_LEN),
        "each device counted in its own slot"
    );
    for device in DEVICES {
        assert!(billed(&harness, device) > 0, "every device passed some");
        let grant = harness
            .grant_of(device)
            .expect("each device shows the grant");
        assert!(grant.bytes_left <= 0, "one budget, spent: {grant:?}");
        assert_eq!(grant.session_id, 9);
    }
    let spent = events.drain();
    assert_eq!(
        spent.len(),
        1,
        "one event for the budget, whoever spent it: {spent:?}"
    );
    assert_eq!(spent[0].kind, gate_event::BUDGET_SPENT);
}

#[test]
fn a_member_revoked_stops_and_the_others_go_on() {
    let (holder, member) = (client_mac(1), client_mac(2));
    let mut harness = Harness::load();
    harness.grant(holder, Grant::new(4, 10_000, NO_DEADLINE));
    harness.share(member, holder);
    harness.run(Program::Ingress, &upload_from(member));
    harness.revoke(member);
    harness.run_dropped(Program::Ingress, &upload_from(member));
    harness.run(Program::Ingress, &upload_from(holder));
    assert_eq!(
        harness
            .grant_of(holder)
            .expect("the holder keeps it")
            .bytes_left,
        10_000 - i64::try_from(2 * PACKET_LEN).expect("fits"),
        "the member's packet before the revoke was spent from the shared budget"
    );
    assert_eq!(harness.grant_of(member), None);
    assert_eq!(
        harness.slots_of(member).map(|slots| slots.budget),
        Some(NO_BUDGET),
        "the member keeps its room for its counters"
    );
}

#[test]
fn a_new_grant_for_the_holder_leaves_members_on_the_old_budget_until_shared_again() {
    let (holder, member) = (client_mac(1), client_mac(2));
    let mut harness = Harness::load();
    harness.grant(holder, Grant::new(1, 10_000, NO_DEADLINE));
    harness.share(member, holder);
    let old = harness.slots_of(holder).expect("room").budget;
    harness.grant(holder, Grant::new(2, 500, NO_DEADLINE));
    let new = harness.slots_of(holder).expect("room").budget;
    assert_ne!(
        old, new,
        "a grant gets a fresh budget, written whole before it is named"
    );
    assert_eq!(
        harness.grant_of(member).expect("still sharing").session_id,
        1
    );
    harness.share(member, holder);
    assert_eq!(
        harness.grant_of(member).expect("shared again").session_id,
        2
    );
    assert_eq!(harness.slots_of(member).expect("room").budget, new);
}

#[test]
fn a_slot_given_back_is_zeroed_and_not_reused_at_once() {
    let client = client_mac(1);
    let mut harness = Harness::load();
    harness.grant(client, Grant::new(1, 10_000, NO_DEADLINE));
    harness.run(Program::Ingress, &upload_from(client));
    let first = harness.slots_of(client).expect("room").counters;
    harness.revoke(client);
    harness.release(client);
    assert_eq!(harness.slots_of(client), None);
    harness.grant(client, Grant::new(2, 10_000, NO_DEADLINE));
    let second = harness.slots_of(client).expect("room again").counters;
    assert_ne!(
        first, second,
        "the slot just given back waits out its quarantine"
    );
    assert_eq!(billed(&harness, client), 0, "a fresh slot starts from zero");
    // A client given the first slot once it is free again finds it zeroed too.
    std::thread::sleep(hotspotd::bpf::QUARANTINE);
    let other = client_mac(2);
    harness.grant(other, Grant::new(3, 10_000, NO_DEADLINE));
    assert_eq!(harness.slots_of(other).expect("room").counters, first);
    assert_eq!(billed(&harness, other), 0, "the reused slot was zeroed");
    assert_eq!(
        harness.usage(other).map(counters),
        Some(hotspotd_common::Usage::default())
    );
}

#[test]
fn sharing_needs_a_holder_with_a_grant() {
    let mut harness = Harness::load();
    let (holder, member) = (client_mac(1), client_mac(2));
    assert!(
        harness.try_share(member, holder).is_err(),
        "a holder without a grant has nothing to share"
    );
    assert_eq!(
        harness.slots_of(member),
        None,
        "and the member got no room for it"
    );
}
