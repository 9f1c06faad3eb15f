//! Turns the kernel's per-client counters into per-client totals. The kernel's counters only
//! grow, so each poll takes the difference to the previous reading; a counter that went down
//! means its map entry was recreated, and then the new value is all new traffic. A client's
//! counters live in one of two maps (`USAGE` while the daemon keeps room for it, `SEEN`
//! otherwise), each with its own previous reading. Pure: the caller reads the maps and the
//! clock.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::{Duration, Instant},
};

use chrono::{DateTime, TimeDelta, Utc};
use hotspotd_common::{MacKey, Usage};

use crate::mac::MacAddr;

/// Traffic accounted to one client in its lifetime: continued from the last save at start
/// (`ClientTable::restore_totals`).
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
    /// The kernel's counters in `USAGE` at the last poll.
    last_reading: Usage,
    /// Its counters in `SEEN` at the last poll.
    last_seen_reading: Usage,
    /// Whether the last reading of `USAGE`, and of `SEEN`, had an entry for it.
    in_maps: [bool; 2],
    /// When this client alone was read last ([`ClientTable::apply_one`]), while a poll's
    /// reading taken before then may still be on its way: that reading's counters for it
    /// are older than `last_reading`, and must not be mistaken for a recreated entry.
    read_alone_at: Option<Instant>,
}

impl ClientRecord {
    /// Whether the last poll found it in either kernel map: the kernel still counts it.
    #[must_use]
    pub fn in_kernel(&self) -> bool {
        self.in_maps.iter().any(|held| *held)
    }

    /// Whether a reading begun at `read_at` is older than what this record already holds.
    fn is_stale(&self, read_at: Instant) -> bool {
        self.read_alone_at.is_some_and(|alone| read_at < alone)
    }

    /// Accounts one reading of this client's counters; what moved goes into `deltas`. A
    /// reading older than the record's last one is skipped.
    fn account(
        &mut self,
        map: CounterMap,
        reading: &Usage,
        clocks: Clocks,
        deltas: &mut Vec<(MacAddr, Usage)>,
    ) {
        self.in_maps[map as usize] = true;
        let last = match map {
            CounterMap::Usage => {
                if self.is_stale(clocks.read_at) {
                    return;
                }
                self.read_alone_at = None;
                &mut self.last_reading
            }
            // Only `USAGE` is ever read alone.
            CounterMap::Seen => &mut self.last_seen_reading,
        };
        let delta = usage_delta(last, reading);
        *last = *reading;
        self.totals.add(&delta);
        if reading.last_seen_jiffies != 0 {
            // The latest of the two maps: the one the client left keeps an older stamp.
            let seen = clocks.wall_time_of(reading.last_seen_jiffies);
            self.last_seen = Some(self.last_seen.map_or(seen, |last| last.max(seen)));
        }
        let unmoved = Usage {
            last_seen_jiffies: delta.last_seen_jiffies,
            ..Usage::default()
        };
        if delta != unmoved {
            deltas.push((self.mac, delta));
        }
    }

    fn new(mac: MacAddr) -> Self {
        Self {
            mac,
            ips: BTreeSet::new(),
            totals: Totals::default(),
            last_seen: None,
            last_reading: Usage::default(),
            last_seen_reading: Usage::default(),
            in_maps: [false; 2],
            read_alone_at: None,
        }
    }

    /// A client missing from a reading of `map` begun at `read_at`: if its entry comes back,
    /// it counts from zero — unless the reading is older than the record.
    fn missing(&mut self, map: CounterMap, read_at: Instant) {
        self.in_maps[map as usize] = false;
        match map {
            CounterMap::Usage if !self.is_stale(read_at) => self.last_reading = Usage::default(),
            CounterMap::Usage => {}
            CounterMap::Seen => self.last_seen_reading = Usage::default(),
        }
    }
}

/// The kernel map a reading of counters comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum CounterMap {
    /// `USAGE`: the clients the daemon keeps room for, every client with a grant among them.
    Usage,
    /// `SEEN`: every other MAC, evicted least recently seen first when full.
    Seen,
}

/// Every client seen, by MAC.
#[derive(Debug, Default)]
pub struct ClientTable {
    clients: BTreeMap<MacAddr, ClientRecord>,
}

/// The kernel ticks `HZ` jiffies a second; every kernel is built with one of these.
const KERNEL_HZ_CHOICES: [u32; 4] = [100, 250, 300, 1_000];

/// The kernel's `HZ`, from `ticks` jiffies counted over `elapsed`: the nearest value a kernel
/// can be built with, so a sample of a few tens of milliseconds is enough.
#[must_use]
pub fn nearest_hz(ticks: u64, elapsed: Duration) -> u32 {
    #[expect(clippy::cast_precision_loss, reason = "a tick count over milliseconds")]
    let measured = ticks as f64 / elapsed.as_secs_f64().max(f64::EPSILON);
    KERNEL_HZ_CHOICES
        .into_iter()
        .min_by(|a, b| {
            (f64::from(*a) - measured)
                .abs()
                .total_cmp(&(f64::from(*b) - measured).abs())
        })
        .unwrap_or(250)
}

/// A reading of the kernel's jiffies with the wall clock, which turns the programs'
/// `last_seen_jiffies` into wall time, and when the counters were read.
#[derive(Clone, Copy, Debug)]
pub struct Clocks {
    pub jiffies: u64,
    pub hz: u32,
    pub wall: DateTime<Utc>,
    /// When the reading of the counters began: readings arrive in the order they began, but
    /// a client read alone meanwhile holds newer counters than a poll begun before it.
    pub read_at: Instant,
}

impl Clocks {
    /// The wall time of a jiffies stamp the programs wrote.
    #[must_use]
    pub fn wall_time_of(&self, jiffies: u64) -> DateTime<Utc> {
        let ago_ms =
            self.jiffies.saturating_sub(jiffies).saturating_mul(1_000) / u64::from(self.hz.max(1));
        self.wall - TimeDelta::milliseconds(i64::try_from(ago_ms).unwrap_or(i64::MAX))
    }

    /// The jiffies `duration` before now; 0 if that is before the kernel started.
    #[must_use]
    pub fn jiffies_ago(&self, duration: Duration) -> u64 {
        let ticks = u64::try_from(duration.as_millis())
            .unwrap_or(u64::MAX)
            .saturating_mul(u64::from(self.hz))
            / 1_000;
        self.jiffies.saturating_sub(ticks)
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
        last_seen_jiffies: now.last_seen_jiffies,
    }
}

impl ClientTable {
    /// Accounts one reading of the kernel's counters and returns what moved, per client, in
    /// MAC order. A client missing from the reading keeps its totals; if its entry comes
    /// back, it counts from zero again.
    ///
    /// Sorts `readings` by MAC (the kernel hands them over in hash order), then walks them
    /// and the table side by side: no lookup per client, which at 10,000 clients was most of
    /// the cost.
    pub fn apply(
        &mut self,
        readings: &mut [(MacKey, Usage)],
        clocks: Clocks,
    ) -> Vec<(MacAddr, Usage)> {
        self.apply_map(CounterMap::Usage, readings, clocks)
    }

    /// [`ClientTable::apply`] for a reading of either map; each keeps its own previous
    /// readings, so a client moving from one to the other is counted once.
    pub fn apply_map(
        &mut self,
        map: CounterMap,
        readings: &mut [(MacKey, Usage)],
        clocks: Clocks,
    ) -> Vec<(MacAddr, Usage)> {
        readings.sort_unstable_by_key(|(key, _)| key.addr);
        let mut deltas = Vec::with_capacity(readings.len());
        let mut newcomers = Vec::new();
        let mut records = self.clients.iter_mut().peekable();
        for (key, reading) in readings.iter() {
            let mac = MacAddr::from(*key);
            while let Some((_, missing)) = records.next_if(|(known, _)| **known < mac) {
                missing.missing(map, clocks.read_at);
            }
            match records.next_if(|(known, _)| **known == mac) {
                Some((_, record)) => record.account(map, reading, clocks, &mut deltas),
                None => newcomers.push((mac, *reading)),
            }
        }
        for (_, missing) in records {
            missing.missing(map, clocks.read_at);
        }
        if !newcomers.is_empty() {
            for (mac, reading) in &newcomers {
                self.clients
                    .entry(*mac)
                    .or_insert_with(|| ClientRecord::new(*mac))
                    .account(map, reading, clocks, &mut deltas);
            }
            deltas.sort_by_key(|(mac, _)| *mac);
        }
        deltas
    }

    /// Accounts a reading of one client's counters taken outside the polls (at
    /// `clocks.read_at`), so that what it passed up to now can be billed before its grant
    /// changes; returns what moved, if anything. A poll's reading begun before this one is
    /// then skipped for this client.
    pub fn apply_one(&mut self, mac: MacAddr, reading: &Usage, clocks: Clocks) -> Option<Usage> {
        let record = self
            .clients
            .entry(mac)
            .or_insert_with(|| ClientRecord::new(mac));
        let mut deltas = Vec::with_capacity(1);
        record.account(CounterMap::Usage, reading, clocks, &mut deltas);
        record.read_alone_at = Some(clocks.read_at);
        deltas.pop().map(|(_, delta)| delta)
    }

    /// Replaces every client's learned addresses with the neighbour table's: `neighbours` is
    /// every (MAC, address) pair, in any order. A client's set is rebuilt only when it
    /// changed, so a steady neighbour table costs no allocation.
    pub fn set_addresses(&mut self, neighbours: &mut [(MacAddr, IpAddr)]) {
        neighbours.sort_unstable();
        let mut rest: &[(MacAddr, IpAddr)] = neighbours;
        for (mac, record) in &mut self.clients {
            let before = rest.partition_point(|(neighbour, _)| neighbour < mac);
            let own = rest[before..].partition_point(|(neighbour, _)| neighbour == mac);
            let (mine, after) = rest[before..].split_at(own);
            rest = after;
            // Sorted pairs give the addresses in the set's order, a duplicate next to its twin.
            let mut addresses = mine.iter().map(|(_, ip)| *ip).peekable();
            let unique = std::iter::from_fn(|| {
                let ip = addresses.next()?;
                while addresses.next_if_eq(&ip).is_some() {}
                Some(ip)
            });
            if !unique.eq(record.ips.iter().copied()) {
                record.ips = mine.iter().map(|(_, ip)| *ip).collect();
            }
        }
    }

    /// The kernel's counters for `mac` at the last poll: what is already accounted. Saved
    /// with the sessions, so a restarted daemon bills only what came after.
    #[must_use]
    pub fn baseline(&self, mac: MacAddr) -> Usage {
        self.clients
            .get(&mac)
            .map(|record| record.last_reading)
            .unwrap_or_default()
    }

    /// What `mac` moved in its lifetime (zero for a client never seen).
    #[must_use]
    pub fn totals(&self, mac: MacAddr) -> Totals {
        self.clients
            .get(&mac)
            .map(|record| record.totals)
            .unwrap_or_default()
    }

    /// Continues each client's lifetime totals from a previous run's, before anything is
    /// accounted: the counts a restart shows go on from there, not from zero.
    pub fn restore_totals(&mut self, totals: impl IntoIterator<Item = (MacAddr, Totals)>) {
        for (mac, totals) in totals {
            self.clients
                .entry(mac)
                .or_insert_with(|| ClientRecord::new(mac))
                .totals = totals;
        }
    }

    /// Billable bytes (up + down) that `reading`, a reading of `mac`'s counters taken since
    /// the last poll, holds beyond what that poll accounted; `None` for a client the table
    /// has not seen, whose counters it has no baseline for.
    #[must_use]
    pub fn unaccounted_billable(&self, mac: MacAddr, reading: &Usage) -> Option<u64> {
        let record = self.clients.get(&mac)?;
        let delta = usage_delta(&record.last_reading, reading);
        Some(delta.up_bytes + delta.down_bytes)
    }

    /// Starts from saved baselines: the next reading's deltas are the traffic since they
    /// were taken. Only valid while the kernel's counters are the same ones.
    /// Forgets the clients that neither kernel map holds any longer (a flood's made-up MACs,
    /// evicted from `SEEN`) unless `keep` says otherwise (they hold a session): the table
    /// stays as small as the maps, whatever MACs the LAN makes up. Returns how many went.
    pub fn forget_gone(&mut self, keep: impl Fn(MacAddr) -> bool) -> usize {
        let before = self.clients.len();
        self.clients
            .retain(|mac, record| record.in_kernel() || keep(*mac));
        before - self.clients.len()
    }

    /// Takes a reading of `SEEN` as already counted: at a start, where its previous readings
    /// are not saved (it holds no billable traffic, and what it gained since the last poll of
    /// the previous run is not counted).
    pub fn restore_seen(&mut self, readings: &[(MacKey, Usage)]) {
        for (key, reading) in readings {
            let mac = MacAddr::from(*key);
            let record = self
                .clients
                .entry(mac)
                .or_insert_with(|| ClientRecord::new(mac));
            record.last_seen_reading = *reading;
            record.in_maps[CounterMap::Seen as usize] = true;
        }
    }

    pub fn restore_baselines(&mut self, baselines: impl IntoIterator<Item = (MacAddr, Usage)>) {
        for (mac, baseline) in baselines {
            self.clients
                .entry(mac)
                .or_insert_with(|| ClientRecord::new(mac))
                .last_reading = baseline;
        }
    }

    #[must_use]
    pub fn record(&self, mac: MacAddr) -> Option<&ClientRecord> {
        self.clients.get(&mac)
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
            read_at: Instant::now(),
            jiffies: 10_000,
            hz: 250,
            wall: DateTime::from_timestamp(1_800_000_000, 0).expect("valid timestamp"),
        }
    }

    fn usage(up_bytes: u64, down_bytes: u64, last_seen_jiffies: u64) -> Usage {
        Usage {
            up_bytes,
            down_bytes,
            up_packets: 1,
            last_seen_jiffies,
            ..Usage::default()
        }
    }

    #[test]
    fn a_client_read_alone_skips_the_older_poll_and_counts_once() {
        let mut table = ClientTable::default();
        let mac = MacAddr::from(MAC);
        let poll_begun = clocks();
        table.apply(&mut [(MAC, usage(100, 1_000, 1))], poll_begun);
        // A poll begins (and reads 150/1,500); before it arrives, a pause reads the client
        // alone, later and further.
        let stale_poll = clocks();
        let alone = clocks();
        let delta = table
            .apply_one(mac, &usage(200, 2_000, 2), alone)
            .expect("moved");
        assert_eq!((delta.up_bytes, delta.down_bytes), (100, 1_000));
        // The older poll's counters are lower: no "recreated entry", no double count.
        assert_eq!(
            table.apply(&mut [(MAC, usage(150, 1_500, 2))], stale_poll),
            vec![]
        );
        assert_eq!(table.apply(&mut [], stale_poll), vec![], "nor when missing");
        assert_eq!(table.baseline(mac).up_bytes, 200);
        // The next poll, begun after, counts from the reading alone.
        let next = table.apply(&mut [(MAC, usage(210, 2_100, 3))], clocks());
        assert_eq!((next[0].1.up_bytes, next[0].1.down_bytes), (10, 100));
        let totals = table.record(mac).expect("known").totals;
        assert_eq!((totals.up_bytes, totals.down_bytes), (210, 2_100));
        assert_eq!(
            table.apply_one(mac, &usage(210, 2_100, 3), clocks()),
            None,
            "nothing moved"
        );
    }

    #[test]
    fn takes_deltas_between_readings() {
        let mut table = ClientTable::default();
        let first = table.apply(&mut [(MAC, usage(100, 1_000, 9_000))], clocks());
        assert_eq!(first.len(), 1);
        assert_eq!((first[0].1.up_bytes, first[0].1.down_bytes), (100, 1_000));

        let second = table.apply(&mut [(MAC, usage(150, 1_500, 9_500))], clocks());
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
        table.apply(&mut [(MAC, usage(100, 100, 1))], clocks());
        assert!(
            table
                .apply(&mut [(MAC, usage(100, 100, 1))], clocks())
                .is_empty()
        );
    }

    #[test]
    fn a_recreated_entry_counts_from_zero_without_losing_totals() {
        let mut table = ClientTable::default();
        table.apply(&mut [(MAC, usage(1_000, 0, 1))], clocks());
        // The entry vanished (deleted) and came back with fresh counters.
        table.apply(&mut [], clocks());
        let deltas = table.apply(&mut [(MAC, usage(30, 0, 2))], clocks());
        assert_eq!(deltas[0].1.up_bytes, 30);
        // A counter lower than the previous reading is a reset, never a negative delta.
        let deltas = table.apply(&mut [(MAC, usage(10, 0, 3))], clocks());
        assert_eq!(deltas[0].1.up_bytes, 10);
        assert_eq!(
            table.records().next().expect("one client").totals.up_bytes,
            1_040
        );
    }

    #[test]
    fn unaccounted_bytes_are_those_since_the_last_poll() {
        let mut table = ClientTable::default();
        let mac = MacAddr::from(MAC);
        assert_eq!(table.unaccounted_billable(mac, &usage(10, 10, 1)), None);
        table.apply(&mut [(MAC, usage(100, 1_000, 1))], clocks());
        assert_eq!(
            table.unaccounted_billable(mac, &usage(130, 1_200, 2)),
            Some(230)
        );
        assert_eq!(
            table.apply(&mut [(MAC, usage(130, 1_200, 2))], clocks())[0]
                .1
                .up_bytes,
            30
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
        table.apply(&mut [(MAC, reading)], clocks());
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
        // Seen 625 jiffies (2.5 s at 250 Hz) before the clocks were read.
        table.apply(&mut [(MAC, usage(1, 1, 9_375))], clocks());
        let seen = table
            .records()
            .next()
            .expect("one client")
            .last_seen
            .expect("seen");
        assert_eq!(seen, clocks().wall - TimeDelta::milliseconds(2_500));
    }

    #[test]
    fn hz_is_the_nearest_kernel_choice() {
        assert_eq!(nearest_hz(5, Duration::from_millis(50)), 100);
        assert_eq!(nearest_hz(13, Duration::from_millis(50)), 250);
        assert_eq!(nearest_hz(15, Duration::from_millis(50)), 300);
        assert_eq!(nearest_hz(49, Duration::from_millis(50)), 1_000);
        assert_eq!(nearest_hz(0, Duration::ZERO), 100);
    }

    #[test]
    fn addresses_come_from_the_neighbour_table() {
        let mut table = ClientTable::default();
        let other = MacAddr([2, 0, 0, 0, 0, 9]);
        table.apply(
            &mut [(MAC, usage(1, 1, 1)), (other.key(), usage(1, 1, 1))],
            clocks(),
        );
        let ip = |text: &str| -> IpAddr { text.parse().expect("valid address") };
        // Any order, a pair twice, and a MAC the table does not know.
        table.set_addresses(&mut [
            (other, ip("2001:db8::9")),
            (MacAddr::from(MAC), ip("192.0.2.10")),
            (MacAddr([2, 0, 0, 0, 0, 5]), ip("192.0.2.5")),
            (other, ip("192.0.2.9")),
            (MacAddr::from(MAC), ip("192.0.2.10")),
        ]);
        let ips = |table: &ClientTable, mac: MacAddr| table.record(mac).expect("known").ips.clone();
        assert_eq!(
            ips(&table, MacAddr::from(MAC)),
            BTreeSet::from([ip("192.0.2.10")])
        );
        assert_eq!(
            ips(&table, other),
            BTreeSet::from([ip("192.0.2.9"), ip("2001:db8::9")])
        );
        table.set_addresses(&mut [(other, ip("192.0.2.9"))]);
        assert!(ips(&table, MacAddr::from(MAC)).is_empty());
        assert_eq!(ips(&table, other), BTreeSet::from([ip("192.0.2.9")]));
    }

    #[test]
    fn readings_in_any_order_give_deltas_in_mac_order() {
        let mut table = ClientTable::default();
        let mac = |last: u8| MacKey::new([2, 0, 0, 0, 0, last]);
        table.apply(
            &mut [(mac(5), usage(10, 0, 1)), (mac(1), usage(10, 0, 1))],
            clocks(),
        );
        // A newcomer between the two, one unchanged, one moved; then one missing.
        let deltas = table.apply(
            &mut [
                (mac(5), usage(15, 0, 1)),
                (mac(3), usage(7, 0, 1)),
                (mac(1), usage(10, 0, 1)),
            ],
            clocks(),
        );
        let moved: Vec<(MacAddr, u64)> = deltas
            .iter()
            .map(|(mac, delta)| (*mac, delta.up_bytes))
            .collect();
        assert_eq!(
            moved,
            vec![(MacAddr::from(mac(3)), 7), (MacAddr::from(mac(5)), 5)]
        );
        table.apply(&mut [(mac(5), usage(15, 0, 1))], clocks());
        assert_eq!(table.baseline(MacAddr::from(mac(1))), Usage::default());
        assert_eq!(table.baseline(MacAddr::from(mac(3))), Usage::default());
        assert_eq!(table.baseline(MacAddr::from(mac(5))).up_bytes, 15);
        assert_eq!(table.len(), 3);
    }
}
