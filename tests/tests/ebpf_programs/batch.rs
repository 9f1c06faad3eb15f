//! `BatchReader`, hotspotd's `BPF_MAP_LOOKUP_BATCH` wrapper, against the real maps: `SEEN` (a
//! per-CPU hash map), where it must read exactly what aya's entry-by-entry walk reads, every
//! CPU's values in their place, whatever its chunk size; `CLIENTS`, a plain hash map; and
//! `USAGE`, a per-CPU array read up to the highest slot in use.

use aya::util::nr_cpus;
use hotspotd::bpf::BatchReader;
use hotspotd_common::{MacKey, Usage};
use hotspotd_tests::frames::client_mac;

use crate::harness::{
    CLIENT, CLIENT_V4, Harness, Program, REMOTE_V4, to_u64, udp_v4, unlimited, upload,
};

/// Distinct counters for client `n` on CPU `cpu`, so a value in the wrong slot shows.
fn counters(n: u32, cpu: usize) -> Usage {
    let cpu = to_u64(cpu);
    Usage {
        up_bytes: u64::from(n) * 1_000 + cpu,
        up_packets: cpu + 1,
        down_bytes: u64::from(n),
        dropped_packets: 7 * cpu,
        last_seen_jiffies: u64::from(n) + cpu,
        ..Usage::default()
    }
}

fn batch_read(harness: &Harness, chunk: usize) -> Vec<(MacKey, Vec<Usage>)> {
    let cpus = nr_cpus().expect("count the possible CPUs");
    let mut reader = BatchReader::<MacKey, Usage>::new(chunk, cpus).expect("a valid layout");
    let mut entries = Vec::new();
    reader
        .read(harness.seen_fd(), |key, per_cpu| {
            entries.push((*key, per_cpu.to_vec()));
        })
        .expect("a batch read");
    entries.sort_unstable_by_key(|(key, _)| *key);
    entries
}

#[test]
fn an_empty_map_reads_as_nothing() {
    let harness = Harness::load();
    assert!(batch_read(&harness, 64).is_empty());
}

#[test]
fn reads_every_entry_and_every_cpu_as_aya_does() {
    const CLIENTS: u32 = 3_000;
    let mut harness = Harness::load();
    let cpus = nr_cpus().expect("count the possible CPUs");
    for n in 0..CLIENTS {
        harness.set_seen(
            client_mac(n),
            (0..cpus).map(|cpu| counters(n, cpu)).collect(),
        );
    }
    let walked = harness.seen_per_cpu();
    assert_eq!(walked.len(), CLIENTS as usize);
    // 1 makes every bucket with two entries too big for a chunk (the reader grows it);
    // 64 takes many calls; 16,384 takes one.
    for chunk in [1, 64, 16_384] {
        let read = batch_read(&harness, chunk);
        assert!(
            read == walked,
            "chunk {chunk}: the batch read differs from aya's walk"
        );
    }
}

#[test]
fn sees_what_the_programs_counted() {
    let client = CLIENT;
    let harness = Harness::with_sessions(&[client]);
    let frame = upload(
        hotspotd_tests::frames::ETH_P_IPV4,
        &udp_v4(CLIENT_V4, REMOTE_V4, 100),
    );
    for _ in 0..3 {
        harness.run(Program::Ingress, &frame);
    }
    let slot = harness
        .slots_of(client)
        .expect("room for the client")
        .counters;
    let cpus = nr_cpus().expect("count the possible CPUs");
    let mut reader = BatchReader::<u32, Usage>::new(64, cpus).expect("a valid layout");
    let mut read = Vec::new();
    reader
        .read_first(harness.usage_fd(), slot as usize + 1, |index, per_cpu| {
            read.push((*index, per_cpu.iter().fold(Usage::default(), Usage::merged)));
        })
        .expect("a batch read");
    assert_eq!(
        read.len(),
        slot as usize + 1,
        "the slots up to the client's, no more"
    );
    let summed = read[slot as usize].1;
    assert_eq!(read[slot as usize].0, slot);
    assert_eq!(Some(summed), harness.usage(client));
    assert_eq!(summed.up_packets, 3);
}

#[test]
fn reads_a_plain_hash_map_with_one_cpu() {
    // What the daemon does to find each client's counters: values of a plain hash map are
    // one per entry, so `cpus` = 1.
    const CLIENTS: u32 = 1_500;
    let mut harness = Harness::load();
    for n in 0..CLIENTS {
        harness.grant(client_mac(n), unlimited());
    }
    let mut reader =
        BatchReader::<MacKey, hotspotd_common::ClientSlots>::new(64, 1).expect("a valid layout");
    let mut keys = Vec::new();
    reader
        .read(harness.clients_fd(), |key, values| {
            assert_eq!(values.len(), 1);
            assert_eq!(harness.slots_of(key.addr), Some(values[0]));
            keys.push(*key);
        })
        .expect("a batch read");
    keys.sort_unstable();
    let mut expected: Vec<MacKey> = (0..CLIENTS).map(|n| MacKey::new(client_mac(n))).collect();
    expected.sort_unstable();
    assert_eq!(keys, expected);
}
