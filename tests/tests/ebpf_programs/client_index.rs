//! `CLIENT_INDEX`, the programs' way to a client's slots: every client the daemon keeps room
//! for is found, billed to its own counters and held to its own budget — at full windows
//! (where the daemon leaves a client to `CLIENTS`), across a restart, on pins an older release
//! left without an index, and over entries the daemon did not write.

use hotspotd_common::{
    CLIENT_INDEX_PROBES, ClientSlots, Grant, IndexEntry, MacKey, NO_DEADLINE, index_home,
    index_info, index_key,
};
use hotspotd_tests::frames::{Mac, client_mac};

use crate::harness::{
    Harness, Program, TC_ACT_SHOT, TC_ACT_UNSPEC, counters, to_u64, udp_download_to,
    udp_upload_from,
};

const PACKET_LEN: usize = 100;
/// Each client's data budget: this many packets pass, the next does not.
const PACKETS_IN_BUDGET: usize = 3;

fn upload_from(client: Mac) -> Vec<u8> {
    udp_upload_from(client, PACKET_LEN)
}

fn download_to(client: Mac) -> Vec<u8> {
    udp_download_to(client, PACKET_LEN)
}

fn budget() -> Grant {
    let bytes = i64::try_from(PACKETS_IN_BUDGET * PACKET_LEN).expect("fits");
    Grant::new(1, bytes, NO_DEADLINE)
}

/// Every one of `clients` (each granted [`budget`]) passes exactly its budget, an upload and a
/// download at a time, then is cut; each is billed exactly that, in its own counters.
fn each_is_billed_and_cut_at_its_budget(harness: &Harness, clients: &[Mac]) {
    for client in clients {
        for n in 0..PACKETS_IN_BUDGET {
            let (program, frame) = if n % 2 == 0 {
                (Program::Ingress, upload_from(*client))
            } else {
                (Program::Egress, download_to(*client))
            };
            assert_eq!(
                harness.verdict(program, &frame, None),
                TC_ACT_UNSPEC,
                "client {client:02x?}: packet {n} is within its budget"
            );
        }
        assert_eq!(
            harness.verdict(Program::Ingress, &upload_from(*client), None),
            TC_ACT_SHOT,
            "client {client:02x?}: its budget is spent"
        );
        let usage = counters(harness.usage(*client).expect("counters"));
        assert_eq!(
            usage.up_bytes + usage.down_bytes,
            to_u64(PACKETS_IN_BUDGET * PACKET_LEN),
            "client {client:02x?}: billed exactly its budget"
        );
    }
}

fn clients(range: std::ops::RangeInclusive<u32>) -> Vec<Mac> {
    range.map(client_mac).collect()
}

#[test]
fn a_full_window_leaves_clients_to_clients_and_they_are_billed_and_cut_all_the_same() {
    let mut harness = Harness::load_colliding();
    let many = clients(1..=20);
    for client in &many {
        harness.grant(*client, budget());
    }
    let unindexed = many.len() - CLIENT_INDEX_PROBES as usize;
    assert_eq!(
        harness.index_info(index_info::UNINDEXED),
        to_u64(unindexed),
        "one window holds {CLIENT_INDEX_PROBES} clients"
    );
    each_is_billed_and_cut_at_its_budget(&harness, &many);

    // The first client goes: the next one takes its entry; the unindexed ones stay served.
    harness.release(many[0]);
    let newcomer = client_mac(21);
    harness.grant(newcomer, budget());
    assert_eq!(harness.index_info(index_info::UNINDEXED), to_u64(unindexed));
    each_is_billed_and_cut_at_its_budget(&harness, &[newcomer]);

    // The unindexed go: the count is back to 0 and their packets find no session.
    for client in &many[CLIENT_INDEX_PROBES as usize..] {
        harness.release(*client);
    }
    assert_eq!(harness.index_info(index_info::UNINDEXED), 0);
    assert_eq!(
        harness.verdict(Program::Ingress, &upload_from(many[19]), None),
        TC_ACT_SHOT,
        "a released client has no session"
    );
    assert_eq!(
        harness.verdict(Program::Ingress, &upload_from(many[0]), None),
        TC_ACT_SHOT,
        "a released client has no session"
    );
}

#[test]
fn a_restart_finds_every_client_where_it_was_and_rewrites_nothing() {
    let mut harness = Harness::load();
    let all = clients(1..=50);
    for client in &all {
        harness.grant(*client, budget());
    }
    let multiplier = harness.index_info(index_info::MULTIPLIER);
    assert_ne!(multiplier, 0, "new maps get a multiplier");
    let positions: Vec<(u32, IndexEntry)> = all
        .iter()
        .map(|client| position_of(&harness, multiplier, *client))
        .collect();
    let harness = harness.reload(|_| {});
    assert_eq!(harness.index_info(index_info::MULTIPLIER), multiplier);
    for (position, entry) in &positions {
        assert_eq!(
            harness.index_entry(*position),
            *entry,
            "entry {position} kept"
        );
    }
    each_is_billed_and_cut_at_its_budget(&harness, &all);
}

#[test]
fn pins_of_a_release_without_the_index_get_one_with_every_client() {
    let mut harness = Harness::load();
    let all = clients(1..=50);
    for client in &all {
        harness.grant(*client, budget());
    }
    // What the previous release leaves: `CLIENTS` full, the index maps new and empty.
    let harness = harness.reload(|ebpf| {
        for position in 0..hotspotd_common::CLIENT_INDEX_LEN {
            Harness::write_index_entry(ebpf, position, IndexEntry::default());
        }
        let mut info: aya::maps::Array<_, u64> = aya::maps::Array::try_from(
            ebpf.map_mut(hotspotd_common::MAP_CLIENT_INDEX_INFO)
                .expect("CLIENT_INDEX_INFO map"),
        )
        .expect("an array");
        info.set(index_info::MULTIPLIER, 0, 0).expect("clear it");
    });
    assert_ne!(harness.index_info(index_info::MULTIPLIER), 0);
    assert_eq!(harness.index_info(index_info::UNINDEXED), 0);
    each_is_billed_and_cut_at_its_budget(&harness, &all);
}

#[test]
fn entries_the_daemon_did_not_write_are_undone_at_start() {
    let mut harness = Harness::load();
    let payer = client_mac(1);
    let other = client_mac(2);
    let stranger = client_mac(3);
    harness.grant(payer, budget());
    harness.grant(other, budget());
    let multiplier = harness.index_info(index_info::MULTIPLIER);
    let payer_slots = harness.slots_of(payer).expect("slots");
    let other_slots = harness.slots_of(other).expect("slots");
    let (other_position, _) = position_of(&harness, multiplier, other);
    let harness = harness.reload(|ebpf| {
        // A stranger's entry naming the payer's counters and budget, at its own home.
        let stranger_key = index_key(&MacKey::new(stranger));
        let home = index_home(stranger_key, multiplier);
        Harness::write_index_entry(
            ebpf,
            home,
            IndexEntry {
                key: stranger_key,
                slots: payer_slots,
            },
        );
        // And the other client's entry pointing at the payer's budget.
        Harness::write_index_entry(
            ebpf,
            other_position,
            IndexEntry {
                key: index_key(&MacKey::new(other)),
                slots: ClientSlots {
                    budget: payer_slots.budget,
                    ..other_slots
                },
            },
        );
    });
    assert_eq!(
        harness.verdict(Program::Ingress, &upload_from(stranger), None),
        TC_ACT_SHOT,
        "the stranger has no session"
    );
    each_is_billed_and_cut_at_its_budget(&harness, &[other, payer]);
    assert!(
        harness
            .usage(stranger)
            .is_some_and(|usage| counters(usage).up_bytes == 0),
        "the stranger's packet was counted as its own, dropped"
    );
}

/// Where `client`'s entry is, walking as the programs do, and the entry.
fn position_of(harness: &Harness, multiplier: u64, client: Mac) -> (u32, IndexEntry) {
    let key = index_key(&MacKey::new(client));
    let home = index_home(key, multiplier);
    for probe in 0..CLIENT_INDEX_PROBES {
        let position = (home + probe) % hotspotd_common::CLIENT_INDEX_LEN;
        let entry = harness.index_entry(position);
        if entry.key == key {
            return (position, entry);
        }
        assert_ne!(
            entry.key,
            hotspotd_common::INDEX_EMPTY,
            "the walk met an empty entry before {client:02x?}"
        );
    }
    panic!("client {client:02x?} is not in its window");
}
