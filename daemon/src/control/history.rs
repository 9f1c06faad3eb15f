//! The usage history's counts (docs/usage.md): at each save, what each client saved moved
//! since its previous save (from its lifetime totals) and how long it was connected
//! meanwhile, put in the hour of the save under the session it runs. Every change of a
//! client's state is saved (`save.rs`), so between two of its saves a client was in one state
//! the whole time: the seconds are exact, up to a save's delay. A save carries the counts, so
//! they are written in its transaction. Pure bookkeeping; no I/O.

use std::{collections::BTreeMap, time::Duration};

use crate::{
    accounting::Totals,
    mac::MacAddr,
    sessions::engine::{Now, SessionId},
    store::usage::{HOUR_SECS, Retention, UsageBatch, UsageCounts, UsageKey},
};

/// Where each client's counts stood at its last save.
#[derive(Debug, Default)]
pub(super) struct UsageMarks {
    by_mac: BTreeMap<MacAddr, Mark>,
}

#[derive(Clone, Copy, Debug)]
struct Mark {
    up_bytes: u64,
    down_bytes: u64,
    at: Duration,
    connected: bool,
}

/// One client as a save sees it.
pub(super) struct Seen {
    pub mac: MacAddr,
    pub totals: Totals,
    pub connected: bool,
    pub session_id: Option<SessionId>,
}

impl UsageMarks {
    /// Starts from the totals a previous run saved: what they hold was counted then.
    pub(super) fn seed(&mut self, totals: impl IntoIterator<Item = (MacAddr, Totals)>, now: Now) {
        for (mac, totals) in totals {
            self.by_mac.insert(
                mac,
                Mark {
                    up_bytes: totals.up_bytes,
                    down_bytes: totals.down_bytes,
                    at: now.mono,
                    // Unknown until the first save: its seconds before then are not counted.
                    connected: false,
                },
            );
        }
    }

    /// Counts what each of `seen` did since its mark into `batch`, in the hour of `now`, and
    /// moves the marks to now. A client never marked starts from zero (a new client's totals
    /// start there). With `every_client`, the clients not seen are forgotten: they are gone.
    pub(super) fn take(
        &mut self,
        seen: impl IntoIterator<Item = Seen>,
        now: Now,
        every_client: bool,
    ) -> UsageBatch {
        let hour_start_secs = now.wall.timestamp().div_euclid(HOUR_SECS) * HOUR_SECS;
        let mut batch = UsageBatch::default();
        let mut kept = BTreeMap::new();
        for client in seen {
            let previous = self.by_mac.remove(&client.mac).unwrap_or(Mark {
                up_bytes: 0,
                down_bytes: 0,
                at: now.mono,
                connected: false,
            });
            let counts = UsageCounts {
                up_bytes: client.totals.up_bytes.saturating_sub(previous.up_bytes),
                down_bytes: client.totals.down_bytes.saturating_sub(previous.down_bytes),
                connected_secs: if previous.connected {
                    now.mono.saturating_sub(previous.at).as_secs()
                } else {
                    0
                },
            };
            // The seconds' remainder stays in the mark, so short intervals add up.
            let at = if previous.connected {
                now.mono.saturating_sub(Duration::from_nanos(u64::from(
                    now.mono.saturating_sub(previous.at).subsec_nanos(),
                )))
            } else {
                now.mono
            };
            batch.add(
                UsageKey {
                    hour_start_secs,
                    mac: client.mac,
                    session_id: client.session_id,
                },
                counts,
            );
            kept.insert(
                client.mac,
                Mark {
                    up_bytes: client.totals.up_bytes,
                    down_bytes: client.totals.down_bytes,
                    at,
                    connected: client.connected,
                },
            );
        }
        if every_client {
            self.by_mac = kept;
        } else {
            self.by_mac.extend(kept);
        }
        batch
    }
}

/// The retention of `[history]` as of `now`.
pub(super) fn retention(config: &crate::config::HistoryConfig, now: Now) -> Retention {
    Retention {
        hourly_days: config.hourly_days,
        daily_days: config.daily_days,
        now: now.wall,
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;

    fn mac(n: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, n])
    }

    fn at(mono_ms: u64, wall_secs: i64) -> Now {
        Now {
            mono: Duration::from_millis(mono_ms),
            wall: DateTime::from_timestamp(wall_secs, 0).expect("valid"),
        }
    }

    fn seen(n: u8, up: u64, down: u64, connected: bool) -> Seen {
        Seen {
            mac: mac(n),
            totals: Totals {
                up_bytes: up,
                down_bytes: down,
                ..Totals::default()
            },
            connected,
            session_id: Some(i64::from(n)),
        }
    }

    fn counts(batch: &UsageBatch, n: u8, hour: i64) -> Option<UsageCounts> {
        batch
            .counts
            .get(&UsageKey {
                hour_start_secs: hour,
                mac: mac(n),
                session_id: Some(i64::from(n)),
            })
            .copied()
    }

    #[test]
    fn each_save_counts_what_moved_since_the_last_and_the_time_connected() {
        let mut marks = UsageMarks::default();
        // Seeded at 10 s from a previous run's totals: those are not counted again.
        marks.seed(
            [(mac(1), seen(1, 100, 1_000, false).totals)],
            at(10_000, 7_200),
        );
        let first = marks.take(
            [seen(1, 150, 1_500, true), seen(2, 7, 9, true)],
            at(20_000, 7_210),
            true,
        );
        assert_eq!(
            counts(&first, 1, 7_200),
            Some(UsageCounts {
                up_bytes: 50,
                down_bytes: 500,
                connected_secs: 0
            })
        );
        assert_eq!(
            counts(&first, 2, 7_200).map(|c| (c.up_bytes, c.down_bytes)),
            Some((7, 9)),
            "a new client counts from zero"
        );
        // Connected since the last save (20 s): 1.5 s and 1.5 s later, three seconds.
        let second = marks.take([seen(1, 150, 1_600, false)], at(21_500, 10_799), false);
        assert_eq!(
            counts(&second, 1, 7_200),
            Some(UsageCounts {
                up_bytes: 0,
                down_bytes: 100,
                connected_secs: 1
            })
        );
        let third = marks.take([seen(1, 150, 1_600, false)], at(23_000, 10_800), false);
        assert!(third.counts.is_empty(), "paused and idle: nothing");
        // Client 2 was not in that save but is still marked; a full save without it forgets it.
        let fourth = marks.take([seen(1, 150, 1_600, false)], at(24_000, 10_801), true);
        assert!(fourth.counts.is_empty());
        let fifth = marks.take([seen(2, 7, 9, false)], at(25_000, 10_802), true);
        assert_eq!(
            counts(&fifth, 2, 10_800).map(|c| c.up_bytes),
            Some(7),
            "forgotten: counted from zero again, as a new client's totals would be"
        );
    }

    #[test]
    fn seconds_left_over_add_up_across_saves() {
        let mut marks = UsageMarks::default();
        marks.take([seen(1, 0, 0, true)], at(0, 3_600), true);
        let mut secs = 0;
        for step in 1..=4 {
            let batch = marks.take([seen(1, 0, 0, true)], at(step * 1_500, 3_600), true);
            secs += counts(&batch, 1, 3_600).map_or(0, |c| c.connected_secs);
        }
        assert_eq!(secs, 6, "4 × 1.5 s");
    }
}
