//! Free trials (docs/trials.md): one short session per device (MAC) per reset window, offered on
//! the portal's landing page (`portal.trial_*`). What a trial sells, and the ledger of who had
//! one when, which decides whether a device may have another and when. Pure: the control task
//! owns a [`TrialLedger`] and the store keeps its entries.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};

use crate::{config::PortalConfig, mac::MacAddr, sessions::SessionData};

/// The provider of a trial's session.
pub const PROVIDER: &str = "trial";

/// One device's last trial, as the store keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trial {
    pub mac: MacAddr,
    pub granted_at: DateTime<Utc>,
}

/// Why a trial was refused; each message is what the portal's page and the API say.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TrialError {
    #[error("this hotspot offers no free trial (portal.trial_secs is 0)")]
    Off,
    #[error(
        "this device had its free trial less than {window_secs} s ago; the next is possible in {retry_secs} s"
    )]
    TooSoon { retry_secs: u64, window_secs: u64 },
    #[error("this device already has a session; a free trial is for a device without one")]
    HasSession,
    #[error("the free trial could not be given: {0}")]
    Failed(String),
}

impl TrialError {
    /// The API's error code (docs/api.md).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Off => "trial_off",
            Self::TooSoon { .. } => "trial_too_soon",
            Self::HasSession => "has_session",
            Self::Failed(_) => "session_failed",
        }
    }
}

/// The session a trial sells under `portal`: `trial_secs` of time at `trial_down_mbits` /
/// `trial_up_mbits`, or at the global speed when both are 0; `None` when trials are off.
#[must_use]
pub fn plan(portal: &PortalConfig, now: DateTime<Utc>) -> Option<SessionData> {
    if portal.trial_secs == 0 {
        return None;
    }
    let global = portal.trial_down_mbits == 0 && portal.trial_up_mbits == 0;
    // Checked to fit an i32 when the configuration was read.
    let mbits = |value: u64| i32::try_from(value).unwrap_or(i32::MAX);
    Some(SessionData {
        provider: PROVIDER.to_owned(),
        kind: crate::sessions::SessionType::Time,
        time_secs: portal.trial_secs,
        data_mb: 0.0,
        time_cons: 0,
        data_cons: 0.0,
        started_at: None,
        exp_days: None,
        down_mbits: mbits(portal.trial_down_mbits),
        up_mbits: mbits(portal.trial_up_mbits),
        use_global_speed: global,
        created_at: now,
    })
}

/// Who had a trial when: each device's last one. Entries older than the reset window decide
/// nothing and are pruned.
#[derive(Debug, Default)]
pub struct TrialLedger {
    granted: BTreeMap<MacAddr, DateTime<Utc>>,
}

impl TrialLedger {
    /// The ledger as the store kept it.
    #[must_use]
    pub fn new(trials: impl IntoIterator<Item = Trial>) -> Self {
        Self {
            granted: trials
                .into_iter()
                .map(|trial| (trial.mac, trial.granted_at))
                .collect(),
        }
    }

    /// Whether `mac` may have a trial at `now` with a window of `window_secs`; if not, in how
    /// many seconds it may (at least 1).
    pub fn check(&self, mac: MacAddr, now: DateTime<Utc>, window_secs: u64) -> Result<(), u64> {
        let Some(granted_at) = self.granted.get(&mac) else {
            return Ok(());
        };
        let next = next_after(*granted_at, window_secs);
        if now >= next {
            return Ok(());
        }
        let wait = (next - now).num_milliseconds();
        // Rounded up: "in 0 s" would be a lie.
        Err(u64::try_from(wait).unwrap_or(0).div_ceil(1_000).max(1))
    }

    /// Notes a trial granted to `mac` at `now`; returns the entry for the store.
    pub fn grant(&mut self, mac: MacAddr, now: DateTime<Utc>) -> Trial {
        self.granted.insert(mac, now);
        Trial {
            mac,
            granted_at: now,
        }
    }

    /// Forgets the trials whose window has passed at `now`; returns the instant before which
    /// every entry is gone (for the store to forget them too).
    pub fn prune(&mut self, now: DateTime<Utc>, window_secs: u64) -> DateTime<Utc> {
        let before = now
            .checked_sub_signed(window(window_secs))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        self.granted.retain(|_, granted_at| *granted_at > before);
        before
    }

    /// How many devices' trials the ledger holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.granted.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.granted.is_empty()
    }
}

/// The reset window as a duration (`portal.trial_reset_secs` is at most a year; a larger
/// number is held to what a duration can be).
fn window(window_secs: u64) -> TimeDelta {
    TimeDelta::seconds(i64::try_from(window_secs).unwrap_or(i64::MAX / 1_000_000))
}

/// When a device that had a trial at `granted_at` may have the next.
fn next_after(granted_at: DateTime<Utc>, window_secs: u64) -> DateTime<Utc> {
    granted_at
        .checked_add_signed(window(window_secs))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;
    const DAY_SECS: i64 = 86_400;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("valid")
    }

    fn mac(n: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, n])
    }

    #[test]
    fn one_trial_per_device_per_window() {
        let mut ledger = TrialLedger::default();
        assert_eq!(ledger.check(mac(1), at(0), DAY), Ok(()));
        ledger.grant(mac(1), at(0));
        assert_eq!(ledger.check(mac(1), at(0), DAY), Err(DAY));
        assert_eq!(ledger.check(mac(1), at(3_600), DAY), Err(DAY - 3_600));
        // Another device is not held back.
        assert_eq!(ledger.check(mac(2), at(3_600), DAY), Ok(()));
        // A part of a second left is a second to wait, never 0.
        let almost = at(86_399) + TimeDelta::milliseconds(500);
        assert_eq!(ledger.check(mac(1), almost, DAY), Err(1));
        // The window's end: the next trial.
        assert_eq!(ledger.check(mac(1), at(86_400), DAY), Ok(()));
        // A shorter window set by a reload applies to the trials already given.
        assert_eq!(ledger.check(mac(1), at(600), 600), Ok(()));
    }

    #[test]
    fn entries_past_their_window_are_pruned() {
        let mut ledger = TrialLedger::new([
            Trial {
                mac: mac(1),
                granted_at: at(0),
            },
            Trial {
                mac: mac(2),
                granted_at: at(100),
            },
        ]);
        assert_eq!(ledger.len(), 2);
        assert_eq!(ledger.prune(at(DAY_SECS), DAY), at(0));
        assert_eq!(ledger.len(), 1, "the first one's window has passed");
        assert_eq!(ledger.check(mac(2), at(DAY_SECS), DAY), Err(100));
        ledger.prune(at(DAY_SECS + 100), DAY);
        assert!(ledger.is_empty());
        // A huge window neither overflows nor prunes.
        ledger.grant(mac(3), at(0));
        ledger.prune(at(1), u64::MAX);
        assert_eq!(ledger.len(), 1);
        assert!(ledger.check(mac(3), at(1), u64::MAX).is_err());
    }

    #[test]
    fn a_trial_sells_time_at_its_speed_or_the_global_one() {
        let mut portal = PortalConfig::default();
        assert_eq!(plan(&portal, at(0)), None, "off by default");
        portal.trial_secs = 300;
        let global = plan(&portal, at(0)).expect("on");
        assert_eq!(
            (
                global.provider.as_str(),
                global.time_secs,
                global.use_global_speed
            ),
            (PROVIDER, 300, true)
        );
        assert!(global.validate().is_ok());
        portal.trial_down_mbits = 1;
        portal.trial_up_mbits = 2;
        let slow = plan(&portal, at(0)).expect("on");
        assert_eq!(
            (slow.down_mbits, slow.up_mbits, slow.use_global_speed),
            (1, 2, false)
        );
        assert!(slow.validate().is_ok());
    }
}
