//! The daemon's wall clock: the system's, watched against `CLOCK_MONOTONIC` so that a step of
//! it is seen and the moments the daemon recorded in the old clock's terms (`started_at`,
//! `created_at`) can be moved with it, to name the same instants. Expiry, which counts from
//! `started_at` in wall time, then counts real time across NTP's first sync on a box without
//! a real-time clock, an operator's `date -s`, or a correction of hours or years either way.
//!
//! While the system clock reads earlier than a moment known to have passed — after a reboot,
//! earlier than the daemon's last save plus the time since boot — it is not set yet (a box
//! without an RTC boots in 1970 or at some old date). The daemon's clock then runs on from
//! that moment, the earliest the true time can be, and the system clock is taken again once
//! it reads at least that (NTP has synced): the moments recorded since the boot move by the
//! difference, the box's downtime, and those recorded before it stay, so the downtime counts
//! towards their expiry.
//!
//! Pure: the caller reads the system's clocks ([`Reading::now`]) and carries out the steps.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// A change of the system clock smaller than this is drift or slewing, not a step: the
/// daemon's clock follows it without moving any recorded moment.
pub const STEP_TOLERANCE: TimeDelta = TimeDelta::seconds(1);

/// Both clocks read at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    /// `CLOCK_MONOTONIC`: time since boot, never stepped.
    pub mono: Duration,
    /// The system's wall clock (`CLOCK_REALTIME`).
    pub system: DateTime<Utc>,
}

impl Reading {
    /// Reads the system's clocks.
    #[must_use]
    pub fn now() -> Self {
        let mono = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(Duration::from)
            .unwrap_or_default();
        Self {
            mono,
            system: Utc::now(),
        }
    }
}

/// A step of the daemon's clock: every recorded moment later than `after` (all of them when
/// `None`) must move by `by` to name the same instant as before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub by: TimeDelta,
    pub after: Option<DateTime<Utc>>,
}

impl Step {
    /// `at` moved by the step, if it is one of the moments the step moves.
    #[must_use]
    pub fn moved(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.after.is_some_and(|after| at <= after) {
            return None;
        }
        at.checked_add_signed(self.by)
    }
}

/// What the last save recorded of the clocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Saved {
    /// The daemon's clock at the save.
    pub wall: DateTime<Utc>,
    /// `CLOCK_MONOTONIC` at the save.
    pub mono: Duration,
    /// How far the daemon's clock was ahead of the system's (zero when it was set).
    pub ahead: TimeDelta,
    /// The save was taken in this boot, so `mono` is comparable with now.
    pub same_boot: bool,
}

/// The daemon's wall clock; see the module doc.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WallClock {
    last: Reading,
    /// The daemon's clock at `last`.
    wall: DateTime<Utc>,
    /// How far the daemon's clock is ahead of the system's: zero while the system clock is
    /// taken as it is, more than [`STEP_TOLERANCE`] while it is not set yet.
    ahead: TimeDelta,
}

impl WallClock {
    /// The clock at start-up, continuing from the last save; a step when the system clock
    /// was stepped while the daemon was down (same boot) or was set since (after a reboot).
    #[must_use]
    pub fn start(now: Reading, saved: Option<Saved>) -> (Self, Option<Step>) {
        let taken = Self {
            last: now,
            wall: now.system,
            ahead: TimeDelta::zero(),
        };
        let Some(saved) = saved else {
            return (taken, None);
        };
        if !saved.same_boot {
            // The earliest the true time can be: the box was off after the save, then booted
            // `now.mono` ago.
            let earliest = saved.wall + delta(now.mono);
            if now.system >= earliest - STEP_TOLERANCE {
                return (taken, None);
            }
            let unset = Self {
                last: now,
                wall: earliest,
                ahead: earliest - now.system,
            };
            return (unset, None);
        }
        let ran = delta(now.mono.saturating_sub(saved.mono));
        let was = Self {
            last: Reading {
                mono: saved.mono,
                system: saved.wall - saved.ahead,
            },
            wall: saved.wall,
            ahead: saved.ahead,
        };
        let mut clock = was;
        let step = clock.advance(now, ran);
        (clock, step)
    }

    /// The daemon's wall time at `now`, and the step of its clock since the last reading,
    /// if there was one.
    pub fn read(&mut self, now: Reading) -> (DateTime<Utc>, Option<Step>) {
        let ran = delta(now.mono.saturating_sub(self.last.mono));
        let step = self.advance(now, ran);
        (self.wall, step)
    }

    /// How far the daemon's clock is ahead of the system's, for the save.
    #[must_use]
    pub const fn ahead(&self) -> TimeDelta {
        self.ahead
    }

    /// Moves to `now`, `ran` after the last reading.
    fn advance(&mut self, now: Reading, ran: TimeDelta) -> Option<Step> {
        let expected = self.wall + ran;
        self.last = now;
        if self.ahead.is_zero() {
            self.wall = now.system;
            let by = now.system - expected;
            return (by.abs() > STEP_TOLERANCE).then_some(Step { by, after: None });
        }
        if now.system >= expected - STEP_TOLERANCE {
            // Set at last. What was recorded since the boot was labelled with the earliest
            // possible time; what came before the boot is where it was.
            self.wall = now.system;
            self.ahead = TimeDelta::zero();
            return Some(Step {
                by: now.system - expected,
                after: Some(expected - delta(now.mono)),
            });
        }
        self.wall = expected;
        self.ahead = expected - now.system;
        None
    }
}

/// A monotonic duration as a signed one; durations beyond its range (292 years) saturate.
fn delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const YEAR: TimeDelta = TimeDelta::days(365);

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    /// 2027-01-15, and 1970-01-01 plus a little: a synced box, and one that booted unset.
    fn real() -> DateTime<Utc> {
        at(1_800_000_000)
    }

    fn reading(mono_secs: u64, system: DateTime<Utc>) -> Reading {
        Reading {
            mono: Duration::from_secs(mono_secs),
            system,
        }
    }

    #[test]
    fn time_passing_is_no_step() {
        let (mut clock, step) = WallClock::start(reading(100, real()), None);
        assert_eq!(step, None);
        let (wall, step) = clock.read(reading(160, real() + TimeDelta::seconds(60)));
        assert_eq!((wall, step), (real() + TimeDelta::seconds(60), None));
        // NTP slewing a few hundred milliseconds is followed, not a step.
        let slewed = real() + TimeDelta::milliseconds(120_400);
        assert_eq!(clock.read(reading(220, slewed)), (slewed, None));
    }

    #[test]
    fn a_step_either_way_moves_every_recorded_moment() {
        let (mut clock, _) = WallClock::start(reading(100, at(30)), None);
        // Booted in 1970 with nothing saved; NTP syncs 10 s later.
        let (wall, step) = clock.read(reading(110, real()));
        let by = real() - at(40);
        assert_eq!((wall, step), (real(), Some(Step { by, after: None })));
        assert_eq!(
            step.and_then(|step| step.moved(at(35))),
            Some(real() - TimeDelta::seconds(5))
        );
        // Three hours back, five seconds later.
        let back = real() - TimeDelta::hours(3) + TimeDelta::seconds(5);
        let (_, step) = clock.read(reading(115, back));
        assert_eq!(
            step,
            Some(Step {
                by: -TimeDelta::hours(3),
                after: None
            })
        );
        assert_eq!(clock.ahead(), TimeDelta::zero());
    }

    #[test]
    fn a_step_while_the_daemon_was_down_is_seen_at_start() {
        let saved = Saved {
            wall: real(),
            mono: Duration::from_secs(1_000),
            ahead: TimeDelta::zero(),
            same_boot: true,
        };
        // Started 20 s after the save, the clock 5 years ahead meanwhile.
        let now = reading(1_020, real() + TimeDelta::seconds(20) + YEAR * 5);
        let (clock, step) = WallClock::start(now, Some(saved));
        assert_eq!(
            step,
            Some(Step {
                by: YEAR * 5,
                after: None
            })
        );
        assert_eq!(clock.ahead(), TimeDelta::zero());
        // Nothing stepped: nothing moves.
        let now = reading(1_020, real() + TimeDelta::seconds(20));
        assert_eq!(WallClock::start(now, Some(saved)).1, None);
    }

    #[test]
    fn after_a_reboot_an_unset_clock_runs_on_from_the_last_save() {
        let saved = Saved {
            wall: real(),
            mono: Duration::from_secs(50_000),
            ahead: TimeDelta::zero(),
            same_boot: false,
        };
        // Booted 30 s ago, in 1970.
        let (mut clock, step) = WallClock::start(reading(30, at(30)), Some(saved));
        assert_eq!(step, None);
        assert_eq!(clock.ahead(), real() - at(0));
        // Ten seconds on, still unset: the daemon's clock runs on from the save.
        let (wall, step) = clock.read(reading(40, at(40)));
        assert_eq!((wall, step), (real() + TimeDelta::seconds(40), None));
        // NTP: the box was off for two hours. Moments since the boot move by that, the ones
        // before it stay.
        let synced = real() + TimeDelta::hours(2) + TimeDelta::seconds(50);
        let (wall, step) = clock.read(reading(50, synced));
        let step = step.expect("a step");
        assert_eq!(wall, synced);
        assert_eq!(step.by, TimeDelta::hours(2));
        assert_eq!(step.moved(real() - TimeDelta::seconds(1)), None);
        assert_eq!(
            step.moved(real() + TimeDelta::seconds(45)),
            Some(real() + TimeDelta::hours(2) + TimeDelta::seconds(45))
        );
        assert_eq!(clock.ahead(), TimeDelta::zero());
    }

    #[test]
    fn an_unset_clock_carries_on_across_a_restart() {
        let saved = Saved {
            wall: real(),
            mono: Duration::from_secs(50_000),
            ahead: TimeDelta::zero(),
            same_boot: false,
        };
        let (mut clock, _) = WallClock::start(reading(30, at(30)), Some(saved));
        let (wall, _) = clock.read(reading(40, at(40)));
        // The daemon restarts 5 s later, before NTP synced.
        let again = Saved {
            wall,
            mono: Duration::from_secs(40),
            ahead: clock.ahead(),
            same_boot: true,
        };
        let (mut clock, step) = WallClock::start(reading(45, at(45)), Some(again));
        assert_eq!(step, None);
        let synced = real() + TimeDelta::hours(2) + TimeDelta::seconds(50);
        let step = clock.read(reading(50, synced)).1.expect("a step");
        assert_eq!(step.by, TimeDelta::hours(2));
        assert_eq!(step.after, Some(real()), "moments since the boot move");
    }

    #[test]
    fn a_clock_that_kept_time_across_a_reboot_is_taken_as_it_is() {
        let saved = Saved {
            wall: real(),
            mono: Duration::from_secs(50_000),
            ahead: TimeDelta::zero(),
            same_boot: false,
        };
        let later = real() + TimeDelta::hours(5);
        let (clock, step) = WallClock::start(reading(30, later), Some(saved));
        assert_eq!(
            (clock.wall, clock.ahead(), step),
            (later, TimeDelta::zero(), None)
        );
    }
}
