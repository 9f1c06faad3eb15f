//! Turns the kernel's per-client counters into per-client totals. The kernel's counters only
//! grow, so each poll takes the difference to the previous reading; a counter that went down
//! means its map entry was recreated, and then the new value is all new traffic. Pure: the
//! caller reads the maps and the clock.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use chrono::{DateTime, TimeDelta, Utc};
use hotspotd_common::{MacKey, Usage};

use crate::mac::MacAddr;

/// Traffic accounted to one client since the daemon first saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub up_bytes: u64,
    pub up_packets: u64,
    pub down_bytes: u64,
    pub down_packets: u64,
    pub local_bytes: u64,
    pub dropped_bytes: u64,
    pub dropped_packets: u64,
}

impl Totals {
    fn add(&mut self, delta: &Usage) {
        self.up_bytes += delta.up_bytes;
        self.up_packets += delta.up_packets;
        self.down_bytes += delta.down_bytes;
        self.down_packets += delta.down_packets;
        self.local_bytes += delta.up_local_bytes + delta.down_local_bytes;
        self.dropped_bytes += delta.up_dropped_bytes + delta.down_dropped_bytes;
        self.dropped_packets += delta.dropped_packets;
    }
}

/// A client as accounting knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRecord {
    pub mac: MacAddr,
    pub ips: BTreeSet<IpAddr>,
    pub totals: Totals,
    pub last_seen: Option<DateTime<Utc>>,
    /// The kernel's counters at the last poll.
    last_reading: Usage,
}

/// Every client seen, by MAC.
#[derive(Debug, Default)]
pub struct ClientTable {
    clients: BTreeMap<MacAddr, ClientRecord>,
}

/// A reading of the clock pair that converts the kernel's coarse monotonic timestamps
/// (`bpf_ktime_get_coarse_ns`) into wall time.
#[derive(Clone, Copy, Debug)]
pub struct Clocks {
    pub monotonic_coarse_ns: u64,
    pub wall: DateTime<Utc>,
}

impl Clocks {
    /// Reads both clocks now.
    #[must_use]
    pub fn now() -> Self {
        let monotonic_coarse_ns =
            nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC_COARSE).map_or(0, |ts| {
                u64::try_from(ts.tv_sec()).unwrap_or(0) * 1_000_000_000
                    + u64::try_from(ts.tv_nsec()).unwrap_or(0)
            });
        Self {
            monotonic_coarse_ns,
            wall: Utc::now(),
        }
    }

    fn wall_time_of(&self, monotonic_ns: u64) -> DateTime<Utc> {
        let ago_ns = self.monotonic_coarse_ns.saturating_sub(monotonic_ns);
        self.wall - TimeDelta::nanoseconds(i64::try_from(ago_ns).unwrap_or(i64::MAX))
    }
}

/// What one counter moved since the last reading.
fn counter_delta(previous: u64, now: u64) -> u64 {
    if now >= previous { now - previous } else { now }
}

fn usage_delta(previous: &Usage, now: &Usage) -> Usage {
    Usage {
        up_bytes: counter_delta(previous.up_bytes, now.up_bytes),
        up_packets: counter_delta(previous.up_packets, now.up_packets),
        down_bytes: counter_delta(previous.down_bytes, now.down_bytes),
        down_packets: counter_delta(previous.down_packets, now.down_packets),
        up_local_bytes: counter_delta(previous.up_local_bytes, now.up_local_bytes),
        down_local_bytes: counter_delta(previous.down_local_bytes, now.down_local_bytes),
        up_dropped_bytes: counter_delta(previous.up_dropped_bytes, now.up_dropped_bytes),
        down_dropped_bytes: counter_delta(previous.down_dropped_bytes, now.down_dropped_bytes),
        dropped_packets: counter_delta(previous.dropped_packets, now.dropped_packets),
        last_seen_ns: now.last_seen_ns,
    }
}

impl ClientTable {
    /// Accounts one reading of the kernel's counters and returns what moved, per client.
    /// A client missing from the reading keeps its totals; if its entry comes back, it
    /// counts from zero again.
    pub fn apply(&mut self, readings: &[(MacKey, Usage)], clocks: Clocks) -> Vec<(MacAddr, Usage)> {
        let mut deltas = Vec::with_capacity(readings.len());
        let mut seen = BTreeSet::new();
        for (key, reading) in readings {
            let mac = MacAddr::from(*key);
            seen.insert(mac);
            let record = self.clients.entry(mac).or_insert_with(|| ClientRecord {
                mac,
                ips: BTreeSet::new(),
                totals: Totals::default(),
                last_seen: None,
                last_reading: Usage::default(),
            });
            let delta = usage_delta(&record.last_reading, reading);
            record.totals.add(&delta);
            record.last_reading = *reading;
            if reading.last_seen_ns != 0 {
                record.last_seen = Some(clocks.wall_time_of(reading.last_seen_ns));
            }
            if delta
                != (Usage {
                    last_seen_ns: delta.last_seen_ns,
                    ..Usage::default()
                })
            {
                deltas.push((mac, delta));
            }
        }
        for (mac, record) in &mut self.clients {
            if !seen.contains(mac) {
                record.last_reading = Usage::default();
            }
        }
        deltas
    }

    /// Replaces every client's learned addresses with the neighbour table's.
    pub fn set_addresses(&mut self, mut neighbours: BTreeMap<MacAddr, BTreeSet<IpAddr>>) {
        for (mac, record) in &mut self.clients {
            record.ips = neighbours.remove(mac).unwrap_or_default();
        }
    }

    pub fn records(&self) -> impl Iterator<Item = &ClientRecord> {
        self.clients.values()
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacKey = MacKey::new([2, 0, 0, 0, 0, 1]);

    fn clocks() -> Clocks {
        Clocks {
            monotonic_coarse_ns: 10_000_000_000,
            wall: DateTime::from_timestamp(1_800_000_000, 0).expect("valid timestamp"),
        }
    }

    fn usage(up_bytes: u64, down_bytes: u64, last_seen_ns: u64) -> Usage {
        Usage {
            up_bytes,
            down_bytes,
            up_packets: 1,
            last_seen_ns,
            ..Usage::default()
        }
    }

    #[test]
    fn takes_deltas_between_readings() {
        let mut table = ClientTable::default();
        let first = table.apply(&[(MAC, usage(100, 1_000, 9_000_000_000))], clocks());
        assert_eq!(first.len(), 1);
        assert_eq!((first[0].1.up_bytes, first[0].1.down_bytes), (100, 1_000));

        let second = table.apply(&[(MAC, usage(150, 1_500, 9_500_000_000))], clocks());
        assert_eq!((second[0].1.up_bytes, second[0].1.down_bytes), (50, 500));

        let record = table.records().next().expect("one client");
        assert_eq!(
            (record.totals.up_bytes, record.totals.down_bytes),
            (150, 1_500)
        );
    }

    #[test]
    fn an_unchanged_reading_reports_nothing() {
        let mut table = ClientTable::default();
        table.apply(&[(MAC, usage(100, 100, 1))], clocks());
        assert!(
            table
                .apply(&[(MAC, usage(100, 100, 1))], clocks())
                .is_empty()
        );
    }

    #[test]
    fn a_recreated_entry_counts_from_zero_without_losing_totals() {
        let mut table = ClientTable::default();
        table.apply(&[(MAC, usage(1_000, 0, 1))], clocks());
        // The entry vanished (deleted) and came back with fresh counters.
        table.apply(&[], clocks());
        let deltas = table.apply(&[(MAC, usage(30, 0, 2))], clocks());
        assert_eq!(deltas[0].1.up_bytes, 30);
        // A counter lower than the previous reading is a reset, never a negative delta.
        let deltas = table.apply(&[(MAC, usage(10, 0, 3))], clocks());
        assert_eq!(deltas[0].1.up_bytes, 10);
        assert_eq!(
            table.records().next().expect("one client").totals.up_bytes,
            1_040
        );
    }

    #[test]
    fn local_and_dropped_bytes_sum_both_directions() {
        let mut table = ClientTable::default();
        let reading = Usage {
            up_local_bytes: 10,
            down_local_bytes: 20,
            up_dropped_bytes: 3,
            down_dropped_bytes: 4,
            dropped_packets: 2,
            ..Usage::default()
        };
        table.apply(&[(MAC, reading)], clocks());
        let totals = table.records().next().expect("one client").totals;
        assert_eq!(
            (
                totals.local_bytes,
                totals.dropped_bytes,
                totals.dropped_packets
            ),
            (30, 7, 2)
        );
        assert_eq!((totals.up_bytes, totals.down_bytes), (0, 0));
    }

    #[test]
    fn last_seen_is_converted_to_wall_time() {
        let mut table = ClientTable::default();
        // Seen 2.5 s before the clocks were read.
        table.apply(&[(MAC, usage(1, 1, 7_500_000_000))], clocks());
        let seen = table
            .records()
            .next()
            .expect("one client")
            .last_seen
            .expect("seen");
        assert_eq!(seen, clocks().wall - TimeDelta::milliseconds(2_500));
    }

    #[test]
    fn addresses_come_from_the_neighbour_table() {
        let mut table = ClientTable::default();
        table.apply(&[(MAC, usage(1, 1, 1))], clocks());
        let ip: IpAddr = "192.0.2.10".parse().expect("valid address");
        table.set_addresses(BTreeMap::from([(MacAddr::from(MAC), BTreeSet::from([ip]))]));
        assert_eq!(
            table.records().next().expect("one client").ips,
            BTreeSet::from([ip])
        );
        table.set_addresses(BTreeMap::new());
        assert!(table.records().next().expect("one client").ips.is_empty());
    }
}
