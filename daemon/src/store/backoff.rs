//! When the store tries again after a failed write: 1 s after the first failure, doubling up
//! to 60 s, so a disk that hiccups is written again at once and one that stays broken costs an
//! attempt a minute; but a new save brings the next attempt forward to 1 s after the last one,
//! so storage that comes back is used at the next save. Pure: the caller passes the clock.

use std::time::{Duration, Instant};

/// The wait after the first failure, and the shortest between two attempts.
pub(super) const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
pub(super) const MAX_RETRY: Duration = Duration::from_mins(1);

/// The retry schedule of the store's writes.
#[derive(Debug, Default)]
pub(super) struct Backoff {
    /// Failed attempts in a row.
    failures: u32,
    /// The last failed attempt and when the next one is due; `None` while writes work.
    failed_at: Option<(Instant, Instant)>,
}

impl Backoff {
    /// Records a failed attempt at `now`; returns the wait before the next one.
    pub(super) fn failed(&mut self, now: Instant) -> Duration {
        // 2^6 s is past the cap: the shift never overflows, however long the disk is broken.
        let wait = FIRST_RETRY
            .saturating_mul(1 << self.failures.min(6))
            .min(MAX_RETRY);
        self.failures = self.failures.saturating_add(1);
        self.failed_at = Some((now, now + wait));
        wait
    }

    /// Records a successful write: the next failure starts the schedule again.
    pub(super) fn succeeded(&mut self) {
        *self = Self::default();
    }

    /// Failed attempts in a row.
    pub(super) fn failures(&self) -> u32 {
        self.failures
    }

    /// When to write next: `None` for at once (writes work), else the instant the schedule
    /// says, brought forward to [`FIRST_RETRY`] after the last attempt when `new_saves` came
    /// in since it.
    pub(super) fn next_attempt(&self, new_saves: bool) -> Option<Instant> {
        let (failed, due) = self.failed_at?;
        Some(if new_saves {
            due.min(failed + FIRST_RETRY)
        } else {
            due
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_from_one_second_to_a_minute() {
        let start = Instant::now();
        let mut backoff = Backoff::default();
        assert_eq!(backoff.next_attempt(false), None, "healthy: at once");
        let waits: Vec<u64> = (0..10)
            .map(|n| backoff.failed(start + Duration::from_secs(n)).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
        assert_eq!(backoff.failures(), 10);
        let last = start + Duration::from_secs(9);
        assert_eq!(backoff.next_attempt(false), Some(last + MAX_RETRY));
    }

    #[test]
    fn a_new_save_brings_the_attempt_forward_but_not_before_a_second() {
        let start = Instant::now();
        let mut backoff = Backoff::default();
        for _ in 0..5 {
            backoff.failed(start);
        }
        assert_eq!(
            backoff.next_attempt(false),
            Some(start + Duration::from_secs(16))
        );
        assert_eq!(backoff.next_attempt(true), Some(start + FIRST_RETRY));

        // Right after the first failure the schedule is already at one second.
        let mut backoff = Backoff::default();
        backoff.failed(start);
        assert_eq!(backoff.next_attempt(true), Some(start + FIRST_RETRY));
    }

    #[test]
    fn success_starts_the_schedule_again() {
        let start = Instant::now();
        let mut backoff = Backoff::default();
        for _ in 0..8 {
            backoff.failed(start);
        }
        backoff.succeeded();
        assert_eq!(backoff.failures(), 0);
        assert_eq!(backoff.next_attempt(true), None);
        assert_eq!(backoff.failed(start), FIRST_RETRY);
    }

    #[test]
    fn a_broken_disk_for_years_does_not_overflow() {
        let start = Instant::now();
        let mut backoff = Backoff {
            failures: u32::MAX - 1,
            ..Backoff::default()
        };
        assert_eq!(backoff.failed(start), MAX_RETRY);
        assert_eq!(backoff.failed(start), MAX_RETRY);
        assert_eq!(backoff.failures(), u32::MAX);
    }
}
