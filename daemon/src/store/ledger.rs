//! What the database should hold, kept in memory by the store: every live session, the
//! clients, the last save's time and the next session id, with what of it is not on disk yet.
//! A session that ended stays until its ending is on disk, then only the file keeps it. Every change
//! lands here first, so a write that fails loses nothing: the latest record of each session
//! wins, and the next write carries everything pending in one transaction. Pure: no I/O.

use std::{cell::Cell, collections::BTreeMap};

use super::{
    ChangeBatch, Ended, Loaded, SaveBatch, SavedMeta, SessionEnd, SessionId, StoreError,
    StoredClient, StoredSession, sqlite,
    usage::{Price, Sale, UsageBatch},
};
use chrono::{DateTime, Utc};

use crate::{
    mac::MacAddr,
    sessions::data::SessionData,
    trials::Trial,
    vouchers::{Voucher, VoucherId},
};

/// The store's memory. Generations number the changes: a write carries every change up to
/// the generation it was taken at, and only those are marked written when it succeeds.
#[derive(Debug)]
pub(super) struct Ledger {
    sessions: BTreeMap<SessionId, (MacAddr, SessionData)>,
    /// Sessions of `sessions` that ended, how and when (seconds since 1970): written with
    /// their record, then let go of ([`Self::written`]).
    ended: BTreeMap<SessionId, (SessionEnd, i64)>,
    clients: BTreeMap<MacAddr, StoredClient>,
    meta: Option<SavedMeta>,
    /// The highest id ever handed out (in this file or by this run); never handed out again.
    last_id: SessionId,
    /// Sessions whose record, or removal, is not on disk yet, with their last change.
    dirty: BTreeMap<SessionId, u64>,
    /// The last change that replaced every client (a periodic save) and is not on disk yet:
    /// the write then makes the stored clients exactly these.
    clients_replaced: Option<u64>,
    /// Clients saved alone since (a change of state), with their last change, not on disk.
    clients_dirty: BTreeMap<MacAddr, u64>,
    /// The last change to the save's time not on disk yet.
    meta_dirty: Option<u64>,
    vouchers: BTreeMap<VoucherId, Voucher>,
    /// Vouchers whose latest record is not on disk yet, with their last change.
    vouchers_dirty: BTreeMap<VoucherId, u64>,
    /// Each device's last free trial.
    trials: BTreeMap<MacAddr, DateTime<Utc>>,
    /// Devices whose trial entry, or its removal, is not on disk yet, with their last change.
    trials_dirty: BTreeMap<MacAddr, u64>,
    /// Usage counts not on disk yet, each batch with the change it came with. At most two: the
    /// one a write in flight carries and the one that came since (see [`Self::add_usage`]), so
    /// a disk that fails for days holds one batch's buckets, not one per save.
    usage: Vec<(u64, UsageBatch)>,
    /// The generation the last write taken carries, until it succeeds or fails: its usage must
    /// not be folded into newer counts, or a success would drop them too.
    usage_taken: Cell<Option<u64>>,
    /// Sales not on disk yet, with their change.
    sales: Vec<(u64, Sale)>,
    generation: u64,
}

/// What one write puts into the database.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Changes {
    /// The write carries every change up to this one.
    pub generation: u64,
    /// The file may lack anything (a new one, or one that missed failed writes): `sessions`
    /// holds all of them and the file keeps no other.
    pub full: bool,
    /// Sessions to write, new or changed.
    pub sessions: Vec<StoredSession>,
    /// Sessions to delete.
    pub removed: Vec<SessionId>,
    /// Sessions of `sessions` that ended: how, and when (seconds since 1970).
    pub ended: Vec<(SessionId, SessionEnd, i64)>,
    /// The clients to write and the last save's time, when they changed: with
    /// `replace_clients` the stored clients become exactly these, otherwise these replace
    /// their own rows and the rest stay.
    pub clients: Option<(Vec<StoredClient>, Option<SavedMeta>)>,
    pub replace_clients: bool,
    /// The highest id handed out, for the file to remember even if that session is gone.
    pub last_id: SessionId,
    /// Vouchers to write, new or changed (with `full`, all of them).
    pub vouchers: Vec<Voucher>,
    /// Trials to write, new or changed (with `full`, all of them), and to delete.
    pub trials: Vec<Trial>,
    pub trials_removed: Vec<MacAddr>,
    /// Usage counts to add to the history, and how long to keep it.
    pub usage: UsageBatch,
    /// Sales to record.
    pub sales: Vec<Sale>,
}

impl Ledger {
    /// The ledger of a database that holds `loaded` and has handed out ids up to `last_id`.
    pub(super) fn new(loaded: Loaded, last_id: SessionId) -> Self {
        Self {
            sessions: loaded
                .sessions
                .into_iter()
                .map(|stored| (stored.id, (stored.mac, stored.data)))
                .collect(),
            ended: BTreeMap::new(),
            clients: loaded
                .clients
                .into_iter()
                .map(|client| (client.mac, client))
                .collect(),
            meta: loaded.meta,
            vouchers: loaded
                .vouchers
                .into_iter()
                .map(|voucher| (voucher.id, voucher))
                .collect(),
            vouchers_dirty: BTreeMap::new(),
            trials: loaded
                .trials
                .into_iter()
                .map(|trial| (trial.mac, trial.granted_at))
                .collect(),
            trials_dirty: BTreeMap::new(),
            last_id,
            dirty: BTreeMap::new(),
            clients_replaced: None,
            clients_dirty: BTreeMap::new(),
            meta_dirty: None,
            usage: Vec::new(),
            usage_taken: Cell::new(None),
            sales: Vec::new(),
            generation: 0,
        }
    }

    /// Everything held, as a fresh start would read it from the file.
    pub(super) fn loaded(&self) -> Loaded {
        let mut sessions = self.stored_sessions();
        sessions.retain(|session| !self.ended.contains_key(&session.id));
        Loaded {
            sessions,
            clients: self.clients.values().cloned().collect(),
            meta: self.meta.clone(),
            vouchers: self.vouchers.values().cloned().collect(),
            trials: self.stored_trials(),
        }
    }

    /// The sessions that ended and whose ending is not on disk yet: how, and when (seconds
    /// since 1970). A listing of the history shows them with the file's.
    pub(super) fn ended_pending(&self) -> Vec<(StoredSession, SessionEnd, i64)> {
        self.ended
            .iter()
            .filter_map(|(id, (end, at))| {
                let (mac, data) = self.sessions.get(id)?;
                Some((
                    StoredSession {
                        id: *id,
                        mac: *mac,
                        data: data.clone(),
                    },
                    *end,
                    *at,
                ))
            })
            .collect()
    }

    pub(super) fn session(&self, id: SessionId) -> Option<(MacAddr, SessionData)> {
        self.sessions.get(&id).cloned()
    }

    /// The last change's generation: a write taken now carries it.
    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    /// Sessions whose latest change (a new record, a changed one, a removal) is not on disk.
    pub(super) fn pending(&self) -> usize {
        self.dirty.len()
    }

    /// Whether anything is not on disk yet.
    pub(super) fn has_changes(&self) -> bool {
        !self.dirty.is_empty()
            || self.clients_replaced.is_some()
            || !self.clients_dirty.is_empty()
            || self.meta_dirty.is_some()
            || !self.vouchers_dirty.is_empty()
            || !self.trials_dirty.is_empty()
            || !self.usage.is_empty()
            || !self.sales.is_empty()
    }

    /// Takes the usage counts of a save. Counts that no write has taken yet, or whose write
    /// failed, are summed with these; those a write in flight carries stay apart.
    fn add_usage(&mut self, batch: UsageBatch) {
        if batch.is_empty() {
            return;
        }
        self.generation += 1;
        let taken = self.usage_taken.get();
        let fold_from = match taken {
            None => 0,
            Some(taken) => self
                .usage
                .iter()
                .position(|(generation, _)| *generation > taken)
                .unwrap_or(self.usage.len()),
        };
        let mut merged = UsageBatch::default();
        for (_, pending) in self.usage.drain(fold_from..) {
            merged.absorb(pending);
        }
        merged.absorb(batch);
        self.usage.push((self.generation, merged));
    }

    /// Takes a new session like [`Self::insert`], and records its sale.
    pub(super) fn sell(
        &mut self,
        mac: MacAddr,
        data: SessionData,
        price: Option<Price>,
        currency: &str,
    ) -> Result<SessionId, StoreError> {
        let sale = Sale::of(0, mac, &data, price, currency);
        let id = self.insert(mac, data)?;
        self.sales.push((
            self.generation,
            Sale {
                session_id: id,
                ..sale
            },
        ));
        Ok(id)
    }

    /// The last write failed: nothing is in flight, its usage may be summed with newer.
    pub(super) fn write_failed(&self) {
        self.usage_taken.set(None);
    }

    /// Takes a device's new trial, replacing its last one.
    pub(super) fn put_trial(&mut self, trial: Trial) -> Result<(), StoreError> {
        super::trials::storable(&trial)?;
        self.generation += 1;
        self.trials_dirty.insert(trial.mac, self.generation);
        self.trials.insert(trial.mac, trial.granted_at);
        Ok(())
    }

    /// Forgets the trials granted at `before` or earlier.
    pub(super) fn forget_trials_before(&mut self, before: DateTime<Utc>) {
        let old: Vec<MacAddr> = self
            .trials
            .iter()
            .filter(|(_, granted_at)| **granted_at <= before)
            .map(|(mac, _)| *mac)
            .collect();
        if old.is_empty() {
            return;
        }
        self.generation += 1;
        for mac in old {
            self.trials.remove(&mac);
            self.trials_dirty.insert(mac, self.generation);
        }
    }

    /// Takes new or changed vouchers, each replacing its record. Refuses them all, before
    /// taking any, if one could not be written.
    pub(super) fn put_vouchers(&mut self, vouchers: Vec<Voucher>) -> Result<(), StoreError> {
        for voucher in &vouchers {
            super::vouchers::storable(voucher)?;
        }
        self.generation += 1;
        for voucher in vouchers {
            self.vouchers_dirty.insert(voucher.id, self.generation);
            self.vouchers.insert(voucher.id, voucher);
        }
        Ok(())
    }

    /// Takes a new session for `mac` and hands out its id, the next after every id ever
    /// handed out. Refuses what the database could not hold, before it has an id.
    pub(super) fn insert(
        &mut self,
        mac: MacAddr,
        data: SessionData,
    ) -> Result<SessionId, StoreError> {
        in_range(&data)?;
        self.last_id += 1;
        let id = self.last_id;
        self.sessions.insert(id, (mac, data));
        self.touch(id);
        Ok(id)
    }

    /// Replaces session `id`'s record; `false` when there is no such session.
    pub(super) fn update(&mut self, id: SessionId, data: SessionData) -> Result<bool, StoreError> {
        in_range(&data)?;
        let Some(entry) = self.sessions.get_mut(&id) else {
            return Ok(false);
        };
        entry.1 = data;
        self.touch(id);
        Ok(true)
    }

    /// Gives session `id` to client `mac` (a voucher moved to another device); `false` when
    /// there is no such session.
    pub(super) fn reassign(&mut self, id: SessionId, mac: MacAddr) -> bool {
        let Some(entry) = self.sessions.get_mut(&id) else {
            return false;
        };
        entry.0 = mac;
        self.touch(id);
        true
    }

    /// Takes a periodic save: the sessions' records, and the clients and save time, which
    /// replace the previous ones. A session no longer held (removed meanwhile) is skipped and
    /// returned: a save never brings back a removed session. A record the database could not
    /// hold is skipped too, and logged, so one bad value never blocks every later write.
    pub(super) fn merge(&mut self, batch: SaveBatch) -> Vec<SessionId> {
        self.add_usage(batch.usage);
        let missing = self.merge_sessions(batch.sessions);
        self.merge_ended(&batch.ended);
        self.merge_meta(batch.meta);
        self.clients = batch
            .clients
            .into_iter()
            .map(|client| (client.mac, client))
            .collect();
        self.generation += 1;
        self.clients_replaced = Some(self.generation);
        // The replacement carries every client.
        self.clients_dirty.clear();
        missing
    }

    /// Takes a save of what changed: these sessions and these clients replace their records,
    /// every other client keeps its own (each client's row and its sessions' records are
    /// saved together, so the two always agree). Skips what [`Self::merge`] skips.
    pub(super) fn merge_changes(&mut self, batch: ChangeBatch) -> Vec<SessionId> {
        self.add_usage(batch.usage);
        let missing = self.merge_sessions(batch.sessions);
        self.merge_ended(&batch.ended);
        self.merge_meta(batch.meta);
        self.generation += 1;
        for client in batch.clients {
            self.clients_dirty.insert(client.mac, self.generation);
            self.clients.insert(client.mac, client);
        }
        missing
    }

    fn merge_meta(&mut self, meta: SavedMeta) {
        match sqlite::storable_meta(&meta) {
            Ok(()) => {
                self.meta = Some(meta);
                self.generation += 1;
                self.meta_dirty = Some(self.generation);
            }
            Err(error) => {
                tracing::error!(error = %crate::text::chain(&error), "the save's time cannot be saved; the last one is kept");
            }
        }
    }

    /// Marks the sessions that ended, to be written so and then let go of.
    fn merge_ended(&mut self, ended: &[Ended]) {
        for ended in ended {
            if self.sessions.contains_key(&ended.id) {
                self.ended
                    .insert(ended.id, (ended.end, ended.at.timestamp()));
                self.touch(ended.id);
            }
        }
    }

    /// Takes the sessions' records of a save; returns those no longer held.
    fn merge_sessions(&mut self, sessions: Vec<(SessionId, SessionData)>) -> Vec<SessionId> {
        let mut missing = Vec::new();
        for (id, data) in sessions {
            if let Err(error) = sqlite::storable(&data) {
                tracing::error!(id, error = %crate::text::chain(&error), "a session's record cannot be saved; its last one is kept");
                continue;
            }
            match self.sessions.get_mut(&id) {
                Some(entry) => {
                    entry.1 = data;
                    self.touch(id);
                }
                None => missing.push(id),
            }
        }
        missing
    }

    /// Forgets session `id`; `false` when there is no such session. Its id is never handed out
    /// again. A client that was running it keeps no reference to it once written.
    pub(super) fn remove(&mut self, id: SessionId) -> bool {
        if self.sessions.remove(&id).is_none() {
            return false;
        }
        self.ended.remove(&id);
        // A sale taken back before it was written (`add_session` failed) leaves no row; one
        // already written stays, as a removal of a sold session does.
        self.sales.retain(|(_, sale)| sale.session_id != id);
        for client in self.clients.values_mut() {
            if client.session_id == Some(id) {
                client.session_id = None;
            }
        }
        self.touch(id);
        true
    }

    /// What a write taken now must carry: what is not on disk yet, or with `full`, everything.
    pub(super) fn changes(&self, full: bool) -> Changes {
        let (sessions, removed) = if full {
            (self.stored_sessions(), Vec::new())
        } else {
            let mut sessions = Vec::new();
            let mut removed = Vec::new();
            for id in self.dirty.keys() {
                match self.sessions.get(id) {
                    Some((mac, data)) => sessions.push(StoredSession {
                        id: *id,
                        mac: *mac,
                        data: data.clone(),
                    }),
                    None => removed.push(*id),
                }
            }
            (sessions, removed)
        };
        let replace_clients = full || self.clients_replaced.is_some();
        let clients = if replace_clients {
            Some(self.clients.values().cloned().collect())
        } else if !self.clients_dirty.is_empty() || self.meta_dirty.is_some() {
            Some(
                self.clients_dirty
                    .keys()
                    .filter_map(|mac| self.clients.get(mac).cloned())
                    .collect(),
            )
        } else {
            None
        };
        self.usage_taken.set(Some(self.generation));
        let mut usage = UsageBatch::default();
        for (_, pending) in &self.usage {
            usage.absorb(pending.clone());
        }
        let ended = sessions
            .iter()
            .filter_map(|session| {
                let (end, at) = self.ended.get(&session.id)?;
                Some((session.id, *end, *at))
            })
            .collect();
        Changes {
            ended,
            usage,
            sales: self.sales.iter().map(|(_, sale)| sale.clone()).collect(),
            generation: self.generation,
            full,
            sessions,
            removed,
            clients: clients.map(|clients| (clients, self.meta.clone())),
            replace_clients,
            last_id: self.last_id,
            vouchers: if full {
                self.vouchers.values().cloned().collect()
            } else {
                self.vouchers_dirty
                    .keys()
                    .filter_map(|id| self.vouchers.get(id).cloned())
                    .collect()
            },
            trials: if full {
                self.stored_trials()
            } else {
                self.trials_dirty
                    .keys()
                    .filter_map(|mac| {
                        self.trials.get(mac).map(|granted_at| Trial {
                            mac: *mac,
                            granted_at: *granted_at,
                        })
                    })
                    .collect()
            },
            trials_removed: if full {
                Vec::new()
            } else {
                self.trials_dirty
                    .keys()
                    .filter(|mac| !self.trials.contains_key(mac))
                    .copied()
                    .collect()
            },
        }
    }

    /// Marks every change up to `generation` as on disk; later ones stay pending.
    pub(super) fn written(&mut self, generation: u64) {
        self.dirty.retain(|_, changed| *changed > generation);
        // An ended session whose ending is on disk is history: only the file keeps it.
        let dirty = &self.dirty;
        let sessions = &mut self.sessions;
        self.ended.retain(|id, _| {
            if dirty.contains_key(id) {
                return true;
            }
            sessions.remove(id);
            false
        });
        for dirty in [&mut self.clients_replaced, &mut self.meta_dirty] {
            if dirty.is_some_and(|changed| changed <= generation) {
                *dirty = None;
            }
        }
        self.clients_dirty
            .retain(|_, changed| *changed > generation);
        self.vouchers_dirty
            .retain(|_, changed| *changed > generation);
        self.trials_dirty.retain(|_, changed| *changed > generation);
        self.usage.retain(|(changed, _)| *changed > generation);
        self.sales.retain(|(changed, _)| *changed > generation);
        self.usage_taken.set(None);
    }

    fn stored_trials(&self) -> Vec<Trial> {
        self.trials
            .iter()
            .map(|(mac, granted_at)| Trial {
                mac: *mac,
                granted_at: *granted_at,
            })
            .collect()
    }

    fn stored_sessions(&self) -> Vec<StoredSession> {
        self.sessions
            .iter()
            .map(|(id, (mac, data))| StoredSession {
                id: *id,
                mac: *mac,
                data: data.clone(),
            })
            .collect()
    }

    fn touch(&mut self, id: SessionId) {
        self.generation += 1;
        self.dirty.insert(id, self.generation);
    }
}

/// Refuses a record that the database could not hold or that is out of the range the session
/// rules are defined for: every path that writes a session passes here (a sale, and
/// `SessionSource::save`, which takes any record).
fn in_range(data: &SessionData) -> Result<(), StoreError> {
    data.check_ranges()
        .map_err(|source| StoreError::OutOfRange { source })?;
    sqlite::storable(data)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::store::tests::{connected, mac, meta, running};

    fn client(n: u32, session_id: Option<SessionId>) -> StoredClient {
        connected(n, session_id)
    }

    fn empty() -> Ledger {
        Ledger::new(
            Loaded {
                sessions: Vec::new(),
                clients: Vec::new(),
                meta: None,
                vouchers: Vec::new(),
                trials: Vec::new(),
            },
            0,
        )
    }

    #[test]
    fn an_ended_session_is_pending_until_written_then_let_go_of() {
        let mut ledger = empty();
        let id = ledger.insert(mac(1), running(1)).expect("storable");
        ledger.written(ledger.generation());
        let at = chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("valid");
        ledger.merge_changes(ChangeBatch {
            sessions: vec![(id, running(2))],
            clients: Vec::new(),
            meta: meta(1),
            usage: crate::store::usage::UsageBatch::default(),
            ended: vec![Ended {
                id,
                end: SessionEnd::Expired,
                at,
            }],
        });
        let pending = ledger.ended_pending();
        assert_eq!(pending.len(), 1, "listed while its ending is on its way");
        assert_eq!(pending[0].0.data, running(2));
        assert_eq!(
            (pending[0].1, pending[0].2),
            (SessionEnd::Expired, 1_800_000_000)
        );
        assert!(
            ledger.loaded().sessions.is_empty(),
            "a start would not load it"
        );
        let changes = ledger.changes(false);
        assert_eq!(
            changes.ended,
            vec![(id, SessionEnd::Expired, 1_800_000_000)]
        );
        ledger.write_failed();
        assert_eq!(ledger.ended_pending().len(), 1, "a failed write keeps it");
        ledger.written(changes.generation);
        assert!(ledger.ended_pending().is_empty());
        assert_eq!(ledger.session(id), None, "let go of once written");
    }

    #[test]
    fn a_save_of_what_changed_carries_only_its_clients_and_keeps_the_rest() {
        let mut ledger = empty();
        let ids: Vec<SessionId> = (1..=3)
            .map(|n| ledger.insert(mac(n), running(n)).expect("storable"))
            .collect();
        ledger.merge(SaveBatch {
            ended: Vec::new(),
            usage: crate::store::usage::UsageBatch::default(),
            sessions: Vec::new(),
            clients: (1..=3)
                .map(|n| client(n, Some(ids[n as usize - 1])))
                .collect(),
            meta: meta(1),
        });
        let all = ledger.changes(false);
        assert!(all.replace_clients, "a periodic save replaces every client");
        assert_eq!(
            all.clients.as_ref().map(|(clients, _)| clients.len()),
            Some(3)
        );
        ledger.written(ledger.generation());

        let mut moved = client(2, Some(ids[1]));
        moved.saved_at_mono_ns = 42;
        let mut used = running(2);
        used.time_cons += 1;
        ledger.merge_changes(ChangeBatch {
            ended: Vec::new(),
            usage: crate::store::usage::UsageBatch::default(),
            sessions: vec![(ids[1], used.clone())],
            clients: vec![moved.clone()],
            meta: meta(2),
        });
        let changes = ledger.changes(false);
        assert!(!changes.replace_clients);
        assert_eq!(changes.clients, Some((vec![moved.clone()], Some(meta(2)))));
        assert_eq!(changes.sessions.len(), 1, "the one session that changed");
        assert_eq!(
            ledger.loaded().clients,
            vec![client(1, Some(ids[0])), moved, client(3, Some(ids[2]))],
            "the others keep their rows"
        );
        ledger.written(ledger.generation());
        assert!(!ledger.has_changes());
        // A full write (a file made anew) carries every client again.
        assert!(ledger.changes(true).replace_clients);
        assert_eq!(
            ledger
                .changes(true)
                .clients
                .map(|(clients, _)| clients.len()),
            Some(3)
        );
    }

    #[test]
    fn the_latest_record_of_each_session_wins() {
        let mut ledger = empty();
        let a = ledger.insert(mac(1), running(1)).expect("storable");
        let b = ledger.insert(mac(2), running(2)).expect("storable");
        for n in 3..10 {
            assert!(ledger.update(a, running(n)).expect("storable"));
        }
        let missing = ledger.merge(SaveBatch {
            ended: Vec::new(),
            usage: crate::store::usage::UsageBatch::default(),
            sessions: vec![(b, running(20)), (a, running(21))],
            clients: vec![client(1, Some(a))],
            meta: meta(1),
        });
        assert!(missing.is_empty());
        let changes = ledger.changes(false);
        assert_eq!(
            changes.sessions,
            vec![
                StoredSession {
                    id: a,
                    mac: mac(1),
                    data: running(21)
                },
                StoredSession {
                    id: b,
                    mac: mac(2),
                    data: running(20)
                },
            ],
            "one write per session, with its last record"
        );
        assert_eq!(
            changes.clients,
            Some((vec![client(1, Some(a))], Some(meta(1))))
        );
        assert_eq!(ledger.pending(), 2);
    }

    #[test]
    fn a_write_marks_only_what_it_carried() {
        let mut ledger = empty();
        let a = ledger.insert(mac(1), running(1)).expect("storable");
        let b = ledger.insert(mac(2), running(2)).expect("storable");
        let taken = ledger.changes(false);
        // While that write runs, a changes again and the clients are saved.
        assert!(ledger.update(a, running(3)).expect("storable"));
        ledger.merge(SaveBatch {
            ended: Vec::new(),
            usage: crate::store::usage::UsageBatch::default(),
            sessions: Vec::new(),
            clients: vec![client(2, Some(b))],
            meta: meta(2),
        });
        ledger.written(taken.generation);
        assert!(ledger.has_changes());
        let next = ledger.changes(false);
        assert_eq!(
            next.sessions.iter().map(|s| s.id).collect::<Vec<_>>(),
            vec![a]
        );
        assert_eq!(next.sessions[0].data, running(3));
        assert!(next.clients.is_some());
        ledger.written(next.generation);
        assert!(!ledger.has_changes());
        assert_eq!(ledger.pending(), 0);
        assert_eq!(ledger.changes(false).clients, None);
    }

    #[test]
    fn a_failed_write_leaves_everything_pending() {
        let mut ledger = empty();
        let a = ledger.insert(mac(1), running(1)).expect("storable");
        let first = ledger.changes(false);
        // The write failed: nothing is marked. More changes come in.
        assert!(ledger.update(a, running(2)).expect("storable"));
        let b = ledger.insert(mac(2), running(3)).expect("storable");
        let retry = ledger.changes(false);
        assert!(retry.generation > first.generation);
        let ids: BTreeSet<SessionId> = retry.sessions.iter().map(|s| s.id).collect();
        assert_eq!(ids, [a, b].into());
        assert_eq!(retry.sessions[0].data, running(2));
        ledger.written(retry.generation);
        assert!(!ledger.has_changes());
    }

    #[test]
    fn a_removal_wins_over_a_pending_save_and_a_later_batch() {
        let mut ledger = empty();
        let a = ledger.insert(mac(1), running(1)).expect("storable");
        let b = ledger.insert(mac(2), running(2)).expect("storable");
        ledger.merge(SaveBatch {
            ended: Vec::new(),
            usage: crate::store::usage::UsageBatch::default(),
            sessions: Vec::new(),
            clients: vec![client(1, Some(a)), client(2, Some(b))],
            meta: meta(1),
        });
        ledger.written(ledger.generation());
        assert!(ledger.remove(a));
        assert!(!ledger.remove(a), "already gone");
        assert!(!ledger.update(a, running(9)).expect("storable"));
        // A batch built before the removal names it still.
        let missing = ledger.merge(SaveBatch {
            ended: Vec::new(),
            usage: crate::store::usage::UsageBatch::default(),
            sessions: vec![(a, running(5)), (b, running(6))],
            clients: vec![client(1, Some(a)), client(2, Some(b))],
            meta: meta(2),
        });
        assert_eq!(missing, vec![a]);
        let changes = ledger.changes(false);
        assert_eq!(changes.removed, vec![a]);
        assert_eq!(
            changes.sessions.iter().map(|s| s.id).collect::<Vec<_>>(),
            vec![b]
        );
        let held: BTreeSet<SessionId> = ledger.loaded().sessions.iter().map(|s| s.id).collect();
        assert_eq!(held, [b].into());
        assert_eq!(ledger.session(a), None);
    }

    #[test]
    fn removing_a_session_clears_the_clients_reference() {
        let mut ledger = empty();
        let a = ledger.insert(mac(1), running(1)).expect("storable");
        ledger.merge(SaveBatch {
            ended: Vec::new(),
            usage: crate::store::usage::UsageBatch::default(),
            sessions: Vec::new(),
            clients: vec![client(1, Some(a))],
            meta: meta(1),
        });
        assert!(ledger.remove(a));
        assert_eq!(ledger.loaded().clients, vec![client(1, None)]);
    }

    #[test]
    fn ids_go_on_after_the_highest_ever_handed_out() {
        let mut ledger = Ledger::new(
            Loaded {
                sessions: vec![StoredSession {
                    id: 4,
                    mac: mac(1),
                    data: running(1),
                }],
                clients: Vec::new(),
                meta: None,
                vouchers: Vec::new(),
                trials: Vec::new(),
            },
            // Session 9 was removed before this start; its id stays used.
            9,
        );
        let id = ledger.insert(mac(2), running(2)).expect("storable");
        assert_eq!(id, 10);
        assert!(ledger.remove(id));
        let next = ledger.insert(mac(3), running(3)).expect("storable");
        assert_eq!(next, 11, "a removed id is never handed out again");
        assert_eq!(ledger.changes(false).last_id, 11);
    }

    #[test]
    fn a_full_write_carries_every_session_and_the_clients() {
        let mut ledger = empty();
        let a = ledger.insert(mac(1), running(1)).expect("storable");
        let b = ledger.insert(mac(2), running(2)).expect("storable");
        ledger.merge(SaveBatch {
            ended: Vec::new(),
            usage: crate::store::usage::UsageBatch::default(),
            sessions: Vec::new(),
            clients: vec![client(1, Some(a))],
            meta: meta(1),
        });
        ledger.written(ledger.generation());
        let full = ledger.changes(true);
        assert!(full.full);
        assert_eq!(
            full.sessions.iter().map(|s| s.id).collect::<Vec<_>>(),
            vec![a, b]
        );
        assert!(full.removed.is_empty());
        assert_eq!(
            full.clients,
            Some((vec![client(1, Some(a))], Some(meta(1))))
        );
        assert_eq!(ledger.loaded().sessions, full.sessions);
    }

    #[test]
    fn what_the_database_cannot_hold_is_refused_or_skipped() {
        let mut ledger = empty();
        let mut nan = running(1);
        nan.data_cons = f64::NAN;
        let error = ledger.insert(mac(1), nan.clone()).expect_err("unstorable");
        assert!(matches!(
            error,
            StoreError::OutOfRange {
                source: crate::sessions::InvalidSession::NotANumber {
                    field: "data_cons",
                    ..
                }
            }
        ));
        assert_eq!(ledger.changes(false).last_id, 0, "no id handed out");
        let a = ledger.insert(mac(1), running(1)).expect("storable");
        ledger.written(ledger.generation());
        assert!(ledger.update(a, nan.clone()).is_err());
        // In a batch, the bad record is skipped and the rest is taken.
        ledger.merge(SaveBatch {
            ended: Vec::new(),
            usage: crate::store::usage::UsageBatch::default(),
            sessions: vec![(a, nan)],
            clients: vec![client(1, Some(a))],
            meta: meta(1),
        });
        assert_eq!(ledger.session(a), Some((mac(1), running(1))));
        assert_eq!(ledger.pending(), 0);
        assert!(ledger.has_changes(), "the clients are still saved");
    }

    fn usage(n: u32, up_bytes: u64) -> crate::store::usage::UsageBatch {
        let mut batch = crate::store::usage::UsageBatch::default();
        batch.add(
            crate::store::usage::UsageKey {
                hour_start_secs: 3_600,
                mac: mac(n),
                session_id: None,
            },
            crate::store::usage::UsageCounts {
                up_bytes,
                ..Default::default()
            },
        );
        batch
    }

    fn change_with(usage: crate::store::usage::UsageBatch) -> ChangeBatch {
        ChangeBatch {
            ended: Vec::new(),
            sessions: Vec::new(),
            clients: Vec::new(),
            meta: meta(1),
            usage,
        }
    }

    fn ups(changes: &Changes) -> Vec<u64> {
        changes.usage.counts.values().map(|c| c.up_bytes).collect()
    }

    #[test]
    fn usage_a_write_carries_is_dropped_by_its_success_and_nothing_else() {
        let mut ledger = empty();
        ledger.merge_changes(change_with(usage(1, 10)));
        let taken = ledger.changes(false);
        assert_eq!(ups(&taken), vec![10]);
        // Counted while that write is on its way: kept apart, not summed into it.
        ledger.merge_changes(change_with(usage(1, 5)));
        ledger.merge_changes(change_with(usage(1, 1)));
        ledger.written(taken.generation);
        assert_eq!(ups(&ledger.changes(false)), vec![6], "only what came after");
        // A write that fails keeps everything, summed with what comes next: one batch.
        ledger.write_failed();
        ledger.merge_changes(change_with(usage(1, 100)));
        assert_eq!(ledger.usage.len(), 1);
        let retried = ledger.changes(false);
        assert_eq!(ups(&retried), vec![106]);
        ledger.written(retried.generation);
        assert!(ledger.changes(false).usage.counts.is_empty());
        assert!(!ledger.has_changes());
    }

    #[test]
    fn a_sale_taken_back_before_it_is_written_leaves_no_row() {
        let mut ledger = empty();
        let id = ledger.sell(mac(1), running(1), None, "").expect("storable");
        assert!(ledger.remove(id));
        assert!(ledger.changes(false).sales.is_empty());
        let kept = ledger
            .sell(mac(2), running(2), Some(crate::price::Price(1_500)), "EUR")
            .expect("storable");
        let taken = ledger.changes(false);
        assert_eq!(taken.sales.len(), 1);
        assert_eq!(
            (
                taken.sales[0].session_id,
                taken.sales[0].price,
                taken.sales[0].currency.as_str()
            ),
            (kept, Some(crate::price::Price(1_500)), "EUR")
        );
        ledger.written(taken.generation);
        assert!(ledger.changes(false).sales.is_empty(), "written once");
    }
}
