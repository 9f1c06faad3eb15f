//! The kernel's neighbour tables, which a client can fill: every ARP request or neighbour
//! solicitation to the box from a new source address makes an entry, and once a table holds
//! `gc_thresh3` entries the kernel refuses new ones (for up to 5 s, until older ones may be
//! collected) — clients whose entry it cannot make get no downloads meanwhile. Every
//! [`CHECK_EVERY`] the tables are read: their numbers go to `/metrics`, and an overflow is a
//! warning (at most one every [`WARN_EVERY`] per family) naming the sysctl to raise. At start a
//! table smaller than [`RECOMMENDED_LIMIT`] gets one warning. Side effects: log lines, counts in
//! `Alerts`.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::{
    alerts::{AlertCounts, Alerts},
    netlink::{Family, FamilyTable, NeighbourTables},
};

/// How often the tables are read: a dump of two small messages.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);
/// How often one family's overflows are logged at most; `/metrics` counts every one.
pub const WARN_EVERY: Duration = Duration::from_mins(1);
/// The smallest `gc_thresh3` not warned about at start: four times the kernel's default of
/// 1,024, room for about 1,000 clients with an IPv4 address and up to three IPv6 addresses
/// each (link-local, global, temporary), or for 1,000 forged entries beside 1,500 clients.
/// docs/troubleshooting.md sizes it for a box.
pub const RECOMMENDED_LIMIT: u64 = 4_096;

/// Reads the tables every [`CHECK_EVERY`] until `shutdown`.
pub async fn watch(alerts: Arc<Alerts>, shutdown: CancellationToken) {
    let mut tables = match NeighbourTables::open() {
        Ok(tables) => tables,
        Err(error) => {
            tracing::warn!(error = %crate::text::chain(&error), "cannot read the kernel's neighbour tables: their overflows go unnoticed");
            return;
        }
    };
    let mut ticks = tokio::time::interval(CHECK_EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut overflows = Overflows::default();
    let mut failing = false;
    loop {
        let read = tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => tables.read().await,
        };
        let read = match read {
            Ok(read) => read,
            Err(error) => {
                if !failing {
                    tracing::warn!(error = %crate::text::chain(&error), "reading the kernel's neighbour tables failed; retrying");
                    failing = true;
                }
                continue;
            }
        };
        failing = false;
        let now = Instant::now();
        for table in &read {
            if let Some(warning) = overflows.take(table, now) {
                warn(&warning);
            }
        }
        alerts.update(|counts| record(counts, &read));
    }
}

fn record(counts: &mut AlertCounts, read: &[FamilyTable]) {
    for table in read {
        let slot = match table.family {
            Family::Ipv4 => &mut counts.neighbours_ipv4,
            Family::Ipv6 => &mut counts.neighbours_ipv6,
        };
        *slot = Some(table.table);
    }
}

/// What one family's table says the operator should hear.
#[derive(Debug, PartialEq, Eq)]
enum Warning {
    /// At start: the table is smaller than [`RECOMMENDED_LIMIT`].
    Small(FamilyTable),
    /// New entries were refused `refused` times since the last warning.
    Overflowed { table: FamilyTable, refused: u64 },
}

fn warn(warning: &Warning) {
    match *warning {
        Warning::Small(FamilyTable { family, table }) => {
            let sysctl = family.sysctl();
            tracing::warn!(
                "{sysctl}.gc_thresh3 is {}: the kernel keeps at most that many {} neighbours for \
                 the whole box, and one client's forged ARP requests or solicitations fill them \
                 in a second, cutting other clients off; for a hotspot set it to at least \
                 {RECOMMENDED_LIMIT} (2 × clients + 1,024 or more; on the host if hotspotd runs \
                 in a network namespace) as docs/troubleshooting.md says",
                table.limit,
                family.name(),
            );
        }
        Warning::Overflowed {
            table: FamilyTable { family, table },
            refused,
        } => {
            let sysctl = family.sysctl();
            tracing::warn!(
                "the kernel's {} neighbour table overflowed: it refused {refused} new entries \
                 since the last warning ({} of {} entries in use), so clients it could not \
                 make an entry for lose their traffic for a while (a flood of forged ARP \
                 requests or solicitations does this); raise {sysctl}.gc_thresh3, with \
                 gc_thresh1 and gc_thresh2, as docs/troubleshooting.md says",
                family.name(),
                table.entries,
                table.limit,
            );
        }
    }
}

/// Each family's overflow count as last read, and when it was last warned about. Pure.
#[derive(Default)]
struct Overflows {
    ipv4: Seen,
    ipv6: Seen,
}

#[derive(Default)]
struct Seen {
    /// `None` before the first reading.
    overflows: Option<u64>,
    /// Refusals not warned about yet.
    unwarned: u64,
    last_warning: Option<Instant>,
}

impl Overflows {
    /// Takes a reading of one family's table; what to warn about, if anything.
    fn take(&mut self, table: &FamilyTable, now: Instant) -> Option<Warning> {
        let seen = match table.family {
            Family::Ipv4 => &mut self.ipv4,
            Family::Ipv6 => &mut self.ipv6,
        };
        let count = table.table.overflows;
        let Some(before) = seen.overflows.replace(count) else {
            // What overflowed before this run is not this run's news.
            return (table.table.limit < RECOMMENDED_LIMIT).then_some(Warning::Small(*table));
        };
        seen.unwarned += count.saturating_sub(before);
        let due = seen
            .last_warning
            .is_none_or(|last| now.duration_since(last) >= WARN_EVERY);
        if seen.unwarned == 0 || !due {
            return None;
        }
        seen.last_warning = Some(now);
        Some(Warning::Overflowed {
            table: *table,
            refused: std::mem::take(&mut seen.unwarned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::NeighbourTable;

    fn ipv6(overflows: u64, limit: u64) -> FamilyTable {
        FamilyTable {
            family: Family::Ipv6,
            table: NeighbourTable {
                entries: limit,
                limit,
                overflows,
            },
        }
    }

    #[test]
    fn a_small_table_is_warned_about_once_at_start() {
        let mut overflows = Overflows::default();
        let now = Instant::now();
        assert_eq!(
            overflows.take(&ipv6(7, 1_024), now),
            Some(Warning::Small(ipv6(7, 1_024)))
        );
        assert_eq!(overflows.take(&ipv6(7, 1_024), now), None);
        let mut roomy = Overflows::default();
        assert_eq!(roomy.take(&ipv6(7, RECOMMENDED_LIMIT), now), None);
    }

    #[test]
    fn overflows_are_warned_about_at_most_once_a_minute_with_all_counted() {
        let mut overflows = Overflows::default();
        let start = Instant::now();
        overflows.take(&ipv6(100, 8_192), start);
        assert_eq!(overflows.take(&ipv6(100, 8_192), start), None);
        assert_eq!(
            overflows.take(&ipv6(376, 8_192), start + CHECK_EVERY),
            Some(Warning::Overflowed {
                table: ipv6(376, 8_192),
                refused: 276
            })
        );
        let soon = start + CHECK_EVERY * 2;
        assert_eq!(overflows.take(&ipv6(400, 8_192), soon), None);
        assert_eq!(overflows.take(&ipv6(410, 8_192), soon), None);
        let later = start + CHECK_EVERY + WARN_EVERY;
        assert_eq!(
            overflows.take(&ipv6(410, 8_192), later),
            Some(Warning::Overflowed {
                table: ipv6(410, 8_192),
                refused: 34
            })
        );
        // The other family has its own count.
        let ipv4 = FamilyTable {
            family: Family::Ipv4,
            ..ipv6(5, 8_192)
        };
        assert_eq!(overflows.take(&ipv4, later), None);
    }
}
