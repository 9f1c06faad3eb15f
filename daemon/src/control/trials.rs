//! Free trials on the control task (docs/trials.md): a device without a session asks (the
//! portal's button, `POST /v1/trial`), and gets `portal.trial_secs` of time unless it had a
//! trial within `portal.trial_reset_secs`. The ledger of who had one when is the control task's
//! and the store keeps it, so a restart still refuses a second trial. Side effects: a trial
//! sells a session (provider "trial") and connects its client; the ledger's new and pruned
//! entries go to the store.

use super::Control;
use crate::{
    mac::MacAddr,
    sessions::engine::{Now, SessionState},
    trials::{Trial, TrialError, TrialLedger},
    views::{ClientView, TrialOffer},
};

/// The trials the control task knows of.
#[derive(Debug, Default)]
pub(super) struct Trials {
    ledger: TrialLedger,
    /// Granted since the daemon started, for `/metrics`.
    granted: u64,
}

impl Control {
    /// Takes the stored ledger at start, and forgets the entries whose window has passed.
    pub(super) fn load_trials(&mut self, trials: Vec<Trial>) {
        self.trials.ledger = TrialLedger::new(trials);
        let now = self.now();
        self.prune_trials(now);
    }

    /// Gives `mac` a free trial, connected at once; refused when trials are off, when it has
    /// a session, or when it had a trial within the reset window (saying when the next is
    /// possible).
    pub(super) async fn grant_trial(&mut self, mac: MacAddr) -> Result<ClientView, TrialError> {
        let now = self.now();
        let Some(plan) = crate::trials::plan(&self.config.portal, now.wall) else {
            return Err(TrialError::Off);
        };
        if self.has_live_session(mac, now) {
            return Err(TrialError::HasSession);
        }
        let window_secs = self.config.portal.trial_reset_secs;
        self.prune_trials(now);
        self.trials
            .ledger
            .check(mac, now.wall, window_secs)
            .map_err(|retry_secs| TrialError::TooSoon {
                retry_secs,
                window_secs,
            })?;
        self.telemetry.clients_changed();
        let sold = self
            .add_session(mac, plan, None, true)
            .await
            .map_err(|error| TrialError::Failed(crate::text::chain_string(&error)))?;
        let trial = self.trials.ledger.grant(mac, now.wall);
        self.trials.granted += 1;
        if let Err(error) = self.store.put_trial(trial) {
            // The session is sold; the ledger in memory still refuses a second trial until a
            // restart.
            tracing::error!(%mac, error = %crate::text::chain(&error), "a free trial cannot be stored: a restart would forget it");
        }
        tracing::info!(%mac, session = sold.session.id, secs = sold.session.data.time_secs, "free trial granted");
        Ok(self.client_view(mac))
    }

    /// What the landing page offers `mac`: nothing (trials off), a trial, or the time until
    /// its next one.
    pub(super) fn trial_offer(&self, mac: MacAddr, now: Now) -> TrialOffer {
        let portal = &self.config.portal;
        if portal.trial_secs == 0 {
            return TrialOffer::Off;
        }
        match self
            .trials
            .ledger
            .check(mac, now.wall, portal.trial_reset_secs)
        {
            Ok(()) => TrialOffer::Available {
                secs: portal.trial_secs,
            },
            Err(retry_secs) => TrialOffer::After { retry_secs },
        }
    }

    /// Trials granted since start, and devices the ledger holds: for `/metrics`.
    pub(super) fn trial_counts(&self) -> crate::telemetry::TrialCounts {
        crate::telemetry::TrialCounts {
            granted: self.trials.granted,
            ledger_entries: self.trials.ledger.len(),
        }
    }

    /// Whether `mac` has a session waiting, running or paused.
    fn has_live_session(&self, mac: MacAddr, now: Now) -> bool {
        self.engine.sessions_of(mac).any(|session| {
            matches!(
                self.engine.state_of(session.id, now),
                Some(SessionState::Available | SessionState::Running | SessionState::Paused)
            )
        })
    }

    /// Forgets, here and in the store, the trials whose window has passed.
    fn prune_trials(&mut self, now: Now) {
        let before = self
            .trials
            .ledger
            .prune(now.wall, self.config.portal.trial_reset_secs);
        if let Err(error) = self.store.forget_trials_before(before) {
            tracing::warn!(error = %crate::text::chain(&error), "old free trials cannot be forgotten in the store; retried at the next trial");
        }
    }
}
