//! Saving (sessions.md rule 12): what the store gets, and when. Every
//! `store.save_interval_secs`, at start and at shutdown: every running session and every
//! client ([`SaveBatch`]). After a change of state in between: only the sessions that changed
//! and the clients they belong to ([`ChangeBatch`]), so that selling one session at 10,000
//! running clients costs one client's row, not every client's. Either way a client's counter
//! baseline goes out with its running session's consumption, stamped with the moment of the
//! save: the baseline says which traffic is billed, so one saved without the consumption it
//! stands for would lose that traffic's bill if the daemon then crashed. The store takes a
//! save at once and writes it on its own thread. Side effects: hands saves to the store.

use std::collections::{BTreeMap, BTreeSet};

use tokio::time::Instant;

use super::Control;
use crate::{
    mac::MacAddr,
    sessions::{
        SessionData,
        engine::{ClientState, Now, SessionEnd, SessionId},
    },
    store::{ChangeBatch, Ended, SaveBatch, SavedMeta, StoreError, StoredClient},
};

/// How long a client that holds nothing stays known after the kernel last saw it: its row and
/// its lifetime totals (`hotspotctl clients`) outlive a short absence.
const FORGET_DEPARTED_AFTER: std::time::Duration = std::time::Duration::from_hours(1);

/// What the store has not been given yet, and what the next save measures from.
pub(super) struct Saving {
    /// When everything was last saved.
    pub(super) last_full: Instant,
    /// Sessions whose state changed since the last save.
    pub(super) unsaved_sessions: BTreeSet<SessionId>,
    /// Clients whose state or grant changed since the last save.
    pub(super) unsaved_clients: BTreeSet<MacAddr>,
    /// Where each client's counts stood at its last save, for the usage history.
    pub(super) usage_marks: super::history::UsageMarks,
    /// Since when each client that holds nothing has held nothing, as this run saw it at its
    /// full saves ([`Control::forget_departed`]).
    pub(super) idle_since: BTreeMap<MacAddr, Instant>,
}

impl Saving {
    pub(super) fn new() -> Self {
        Self {
            last_full: Instant::now(),
            unsaved_sessions: BTreeSet::new(),
            unsaved_clients: BTreeSet::new(),
            usage_marks: super::history::UsageMarks::default(),
            idle_since: BTreeMap::new(),
        }
    }
}

impl Control {
    /// Saves what must be saved now: everything once the save interval has passed since the
    /// last full save, else what changed since the last save.
    pub(super) fn save(&mut self) {
        if self.saving.last_full.elapsed() >= self.config.save_interval() {
            self.save_all();
        } else {
            self.save_changes();
        }
    }

    /// Whether a change of state waits to be saved.
    pub(super) fn has_unsaved(&self) -> bool {
        !self.saving.unsaved_sessions.is_empty() || !self.saving.unsaved_clients.is_empty()
    }

    /// Saves every running session and every client, with what changed.
    pub(super) fn save_all(&mut self) {
        let now = self.now();
        let (ended, records) = self.let_go_of_ended(now);
        self.forget_departed();
        let mut ids = std::mem::take(&mut self.saving.unsaved_sessions);
        ids.extend(self.engine.running());
        self.saving.unsaved_clients.clear();
        let mut clients: Vec<StoredClient> = self
            .engine
            .clients()
            .map(|(mac, state, session_id)| self.stored_client(mac, state, session_id, now))
            .collect();
        let members: Vec<MacAddr> = self.sharing.members().collect();
        clients.extend(self.member_rows(&members, now));
        let mut usage = self
            .saving
            .usage_marks
            .take(self.every_client_seen(), now, true);
        usage.retention = Some(super::history::retention(&self.config.history, now));
        let mut sessions = self.records(&ids);
        sessions.extend(records);
        let batch = SaveBatch {
            sessions,
            clients,
            meta: self.meta(now),
            usage,
            ended,
        };
        taken(self.store.save_batch(batch));
        self.saving.last_full = Instant::now();
    }

    /// Saves the sessions whose state changed and the clients whose state or grant changed,
    /// each client with its running session. Nothing when nothing changed.
    fn save_changes(&mut self) {
        if !self.has_unsaved() {
            return;
        }
        let now = self.now();
        let mut ids = std::mem::take(&mut self.saving.unsaved_sessions);
        let mut macs: BTreeSet<MacAddr> = std::mem::take(&mut self.saving.unsaved_clients);
        macs.extend(
            ids.iter()
                .filter_map(|id| self.engine.session(*id).map(|session| session.mac)),
        );
        ids.extend(
            macs.iter()
                .filter_map(|mac| self.engine.running_session(*mac)),
        );
        // A client the engine forgot (no session left) keeps its row until the next full
        // save drops it; a start finds it holding nothing and leaves it disconnected.
        let mut clients: Vec<StoredClient> = macs
            .iter()
            .filter_map(|mac| {
                let (state, session_id) = self.engine.client(*mac)?;
                Some(self.stored_client(*mac, state, session_id, now))
            })
            .collect();
        // A holder's session is saved with what its devices passed: their counters with it.
        let members: Vec<MacAddr> = macs
            .iter()
            .flat_map(|mac| self.sharing.members_of(*mac))
            .collect();
        clients.extend(self.member_rows(&members, now));
        let usage = self.saving.usage_marks.take(seen(&clients), now, false);
        let (ended, records) = self.let_go_of_ended(now);
        let mut sessions = self.records(&ids);
        sessions.extend(records);
        let batch = ChangeBatch {
            sessions,
            clients,
            meta: self.meta(now),
            usage,
            ended,
        };
        taken(self.store.save_changes(batch));
    }

    /// Every client the table knows, for the usage history: also those without a session
    /// (walled-garden traffic), which have no row, so none of their traffic is counted later
    /// under a session they are sold.
    fn every_client_seen(&self) -> Vec<super::history::Seen> {
        self.table
            .records()
            .map(|record| {
                let (state, session_id) = self
                    .engine
                    .client(record.mac)
                    .unwrap_or((ClientState::Disconnected, None));
                super::history::Seen {
                    mac: record.mac,
                    totals: record.totals,
                    connected: state == ClientState::Connected,
                    session_id,
                }
            })
            .collect()
    }

    /// The rows of devices on vouchers' slots that hold no session of their own: what they
    /// keep is their counters as billed (to the holder's session, saved beside), so that a
    /// start bills only what they passed since.
    fn member_rows(&self, members: &[MacAddr], now: Now) -> Vec<StoredClient> {
        members
            .iter()
            .filter(|mac| self.engine.client(**mac).is_none())
            .map(|mac| self.stored_client(*mac, ClientState::Disconnected, None, now))
            .collect()
    }

    /// Forgets the clients that hold nothing (no session, no voucher shared) and that the
    /// kernel does not count now: at once one that never moved a byte, else once it has held
    /// nothing for [`FORGET_DEPARTED_AFTER`] (as this run saw it: a restart starts the hour
    /// again). The daemon's memory and each full save then follow who is around, not
    /// everyone who ever bought a session; what they used stays in the usage history, and a
    /// client that comes back starts a new row.
    fn forget_departed(&mut self) {
        let now = Instant::now();
        let idle: Vec<MacAddr> = self
            .engine
            .idle_clients()
            .filter(|mac| {
                self.sharing.holder_of(*mac).is_none() && self.sharing.members_of(*mac).is_empty()
            })
            .collect();
        let mut since = std::mem::take(&mut self.saving.idle_since);
        for mac in idle {
            let idle_since = since.remove(&mac).unwrap_or(now);
            let record = self.table.record(mac);
            let departed = record.is_none_or(|record| {
                !record.in_kernel()
                    && (record.totals == crate::accounting::Totals::default()
                        || now.duration_since(idle_since) >= FORGET_DEPARTED_AFTER)
            });
            if departed && self.engine.forget_client(mac) {
                continue;
            }
            self.saving.idle_since.insert(mac, idle_since);
        }
    }

    /// Takes the sessions that ended out of the engine: the save carries their last records
    /// and how they ended, and the store keeps them as history from then on; their vouchers
    /// remember how they ended.
    fn let_go_of_ended(&mut self, now: Now) -> (Vec<Ended>, Vec<(SessionId, SessionData)>) {
        let taken = self.engine.take_ended();
        let ends: Vec<(SessionId, SessionEnd)> = taken
            .iter()
            .map(|ended| (ended.session.id, ended.end))
            .collect();
        let vouchers = self.vouchers.sessions_ended(&ends);
        if !vouchers.is_empty()
            && let Err(error) = self.store.put_vouchers(vouchers)
        {
            tracing::error!(error = %crate::text::chain(&error), "the store did not take the vouchers whose sessions ended");
        }
        let ended = ends
            .iter()
            .map(|(id, end)| Ended {
                id: *id,
                end: *end,
                at: now.wall,
            })
            .collect();
        let records = taken
            .into_iter()
            .map(|ended| (ended.session.id, ended.session.data))
            .collect();
        (ended, records)
    }

    fn records(&self, ids: &BTreeSet<SessionId>) -> Vec<(SessionId, SessionData)> {
        ids.iter()
            .filter_map(|id| {
                self.engine
                    .session(*id)
                    .map(|session| (*id, session.data.clone()))
            })
            .collect()
    }

    /// The row of a client in `state` with `session_id`, as saved at `now`.
    fn stored_client(
        &self,
        mac: MacAddr,
        state: ClientState,
        session_id: Option<SessionId>,
        now: Now,
    ) -> StoredClient {
        StoredClient {
            mac,
            state,
            pause_reason: self.engine.pause_reason(mac),
            session_id,
            baseline: self.table.baseline(mac),
            totals: self.table.totals(mac),
            saved_at_mono_ns: mono_ns(now),
        }
    }

    fn meta(&self, now: Now) -> SavedMeta {
        SavedMeta {
            saved_at_wall: now.wall,
            saved_at_mono_ns: mono_ns(now),
            boot_id: self.boot_id.clone(),
            kernel_epoch: self.kernel_epoch,
            clock_ahead_ns: self.clock.ahead().num_nanoseconds().unwrap_or(i64::MAX),
        }
    }
}

/// Logs a save the store refused: only a closed store refuses, and it is closed after the
/// control task ends.
fn taken(result: Result<(), StoreError>) {
    if let Err(error) = result {
        tracing::error!(error = %crate::text::chain(&error), "the store did not take a save");
    }
}

/// The clients of a save as the usage history counts them: a device on a voucher's slot
/// (saved with no session) under no session.
fn seen(clients: &[StoredClient]) -> Vec<super::history::Seen> {
    clients
        .iter()
        .map(|client| super::history::Seen {
            mac: client.mac,
            totals: client.totals,
            connected: client.state == ClientState::Connected,
            session_id: client.session_id,
        })
        .collect()
}

fn mono_ns(now: Now) -> u64 {
    u64::try_from(now.mono.as_nanos()).unwrap_or(u64::MAX)
}
