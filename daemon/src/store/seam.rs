//! [`SessionStore`], the daemon's seam to where its sessions live: the control task loads them
//! from it once at start and hands it every sale, removal and save, through this trait alone.
//! SQLite ([`StoreHandle`]) is one implementation; [`MemoryStore`] keeps everything in memory
//! (tests, and a box that needs no disk); a central store (RADIUS accounting, a shared
//! database) is the next. Object-safe, so the daemon holds an `Arc<dyn SessionStore>`.
//! Side effects: those of the implementation.

use std::{path::PathBuf, sync::Mutex};

use futures::future::BoxFuture;

use super::{
    ChangeBatch, Loaded, SaveBatch, SessionId, StoreError, StoreHandle, StoreHealth, Ticket,
    health::StorageState,
    ledger::Ledger,
    usage::{History, Price},
};
use chrono::{DateTime, Utc};

use crate::{
    histogram::Histogram, mac::MacAddr, sessions::data::SessionData, trials::Trial,
    vouchers::Voucher,
};

/// Where the daemon's sessions, its clients' rows and its last save's time are kept. Every
/// change is taken at once and never waits for a disk or a network: an implementation that
/// writes somewhere slow keeps the change and writes it on its own time, and says how that
/// goes through [`health`](Self::health) and [`saved`](Self::saved).
pub trait SessionStore: Send + Sync {
    /// Everything held, as a start reads it.
    fn load_all(&self) -> Loaded;

    /// Takes a new session for `mac` and hands out its id (never one handed out before).
    /// Refuses a record out of range ([`SessionData::check_ranges`]).
    fn insert(&self, mac: MacAddr, data: SessionData) -> Result<SessionId, StoreError>;

    /// Takes a session sold for `price` (thousandths of `currency`) like
    /// [`insert`](Self::insert), and records the sale (docs/usage.md) with it.
    fn sell(
        &self,
        mac: MacAddr,
        data: SessionData,
        price: Option<Price>,
        currency: &str,
    ) -> Result<SessionId, StoreError>;

    /// Where the usage history and the sales can be read; `None` for a store that keeps no
    /// history (it counts only what is live).
    fn history(&self) -> Option<History> {
        None
    }

    /// The sessions that ended and are not yet where the history is read from (written as
    /// ended): how, and when (seconds since 1970). Listings show them beside that history, so
    /// a session is listed while its ending is on its way.
    fn ended_pending(&self) -> Vec<(super::StoredSession, super::SessionEnd, i64)> {
        Vec::new()
    }

    /// Forgets a session; `false` when there is none with that id.
    fn remove(&self, id: SessionId) -> Result<bool, StoreError>;

    /// Gives a session to another client (a voucher moved to another device); `false` when
    /// there is none with that id.
    fn reassign(&self, id: SessionId, mac: MacAddr) -> Result<bool, StoreError>;

    /// Takes a save of every running session and every client (the stored clients become
    /// exactly these).
    fn save_batch(&self, batch: SaveBatch) -> Result<(), StoreError>;

    /// Takes a save of what changed: these sessions and clients, the rest kept as they are.
    fn save_changes(&self, batch: ChangeBatch) -> Result<(), StoreError>;

    /// Takes new or changed vouchers (docs/vouchers.md), each replacing its record; they are
    /// never deleted (a revoked voucher keeps its row). Refuses all of them if one could not
    /// be stored.
    fn put_vouchers(&self, vouchers: Vec<Voucher>) -> Result<(), StoreError>;

    /// Takes a device's new free trial (docs/trials.md), replacing its last one.
    fn put_trial(&self, trial: Trial) -> Result<(), StoreError>;

    /// Forgets the free trials granted at `before` or earlier (their window has passed).
    fn forget_trials_before(&self, before: DateTime<Utc>) -> Result<(), StoreError>;

    /// Marks the changes taken so far, for [`saved`](Self::saved).
    fn ticket(&self) -> Ticket;

    /// Resolves once every change up to `ticket` is where it belongs (`Ok`) or could not be
    /// put there ([`StoreError::Unsaved`]: it is kept and retried).
    fn saved(&self, ticket: Ticket) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Whether changes reach where they belong.
    fn health(&self) -> StoreHealth;

    /// Whether changes are waiting because the last attempt to put them away failed.
    fn is_degraded(&self) -> bool {
        self.health().state != StorageState::Ok
    }

    /// How long each write took, for `/metrics`.
    fn save_durations(&self) -> Histogram {
        Histogram::default()
    }

    /// A last attempt to put away what waits; every later change fails with
    /// [`StoreError::Closed`].
    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>>;
}

impl SessionStore for StoreHandle {
    fn load_all(&self) -> Loaded {
        Self::load_all(self)
    }

    fn insert(&self, mac: MacAddr, data: SessionData) -> Result<SessionId, StoreError> {
        Self::insert(self, mac, data)
    }

    fn sell(
        &self,
        mac: MacAddr,
        data: SessionData,
        price: Option<Price>,
        currency: &str,
    ) -> Result<SessionId, StoreError> {
        Self::sell(self, mac, data, price, currency)
    }

    fn history(&self) -> Option<History> {
        Some(Self::history(self))
    }

    fn ended_pending(&self) -> Vec<(super::StoredSession, super::SessionEnd, i64)> {
        Self::ended_pending(self)
    }

    fn remove(&self, id: SessionId) -> Result<bool, StoreError> {
        Self::remove(self, id)
    }

    fn reassign(&self, id: SessionId, mac: MacAddr) -> Result<bool, StoreError> {
        Self::reassign(self, id, mac)
    }

    fn save_batch(&self, batch: SaveBatch) -> Result<(), StoreError> {
        Self::save_batch(self, batch)
    }

    fn save_changes(&self, batch: ChangeBatch) -> Result<(), StoreError> {
        Self::save_changes(self, batch)
    }

    fn put_vouchers(&self, vouchers: Vec<Voucher>) -> Result<(), StoreError> {
        Self::put_vouchers(self, vouchers)
    }

    fn put_trial(&self, trial: Trial) -> Result<(), StoreError> {
        Self::put_trial(self, trial)
    }

    fn forget_trials_before(&self, before: DateTime<Utc>) -> Result<(), StoreError> {
        Self::forget_trials_before(self, before)
    }

    fn ticket(&self) -> Ticket {
        Self::ticket(self)
    }

    fn saved(&self, ticket: Ticket) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(Self::saved(self, ticket))
    }

    fn health(&self) -> StoreHealth {
        Self::health(self)
    }

    fn is_degraded(&self) -> bool {
        Self::is_degraded(self)
    }

    fn save_durations(&self) -> Histogram {
        Self::save_durations(self)
    }

    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(Self::close(self))
    }
}

/// A [`SessionStore`] in memory: the store's own ledger, every change put away as it is
/// taken. What it holds ends with the process.
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<MemoryState>,
}

#[derive(Debug)]
struct MemoryState {
    ledger: Ledger,
    closed: bool,
}

impl MemoryStore {
    /// A store holding `loaded`, as if a start had read it.
    #[must_use]
    pub fn new(loaded: Loaded) -> Self {
        let last_id = loaded
            .sessions
            .iter()
            .map(|stored| stored.id)
            .max()
            .unwrap_or(0);
        Self {
            state: Mutex::new(MemoryState {
                ledger: Ledger::new(loaded, last_id),
                closed: false,
            }),
        }
    }

    /// Applies `change` to the ledger, unless closed, and marks it put away.
    fn change<T>(
        &self,
        change: impl FnOnce(&mut Ledger) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.closed {
            return Err(StoreError::Closed);
        }
        let result = change(&mut state.ledger)?;
        let generation = state.ledger.generation();
        state.ledger.written(generation);
        Ok(result)
    }

    fn read<T>(&self, read: impl FnOnce(&Ledger) -> T) -> T {
        read(
            &self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .ledger,
        )
    }
}

impl SessionStore for MemoryStore {
    fn load_all(&self) -> Loaded {
        self.read(Ledger::loaded)
    }

    fn insert(&self, mac: MacAddr, data: SessionData) -> Result<SessionId, StoreError> {
        self.change(|ledger| ledger.insert(mac, data))
    }

    /// The sale is taken and forgotten with the session's record: this store keeps no history.
    fn sell(
        &self,
        mac: MacAddr,
        data: SessionData,
        price: Option<Price>,
        currency: &str,
    ) -> Result<SessionId, StoreError> {
        self.change(|ledger| ledger.sell(mac, data, price, currency))
    }

    fn remove(&self, id: SessionId) -> Result<bool, StoreError> {
        self.change(|ledger| Ok(ledger.remove(id)))
    }

    fn reassign(&self, id: SessionId, mac: MacAddr) -> Result<bool, StoreError> {
        self.change(|ledger| Ok(ledger.reassign(id, mac)))
    }

    fn save_batch(&self, batch: SaveBatch) -> Result<(), StoreError> {
        let missing = self.change(|ledger| Ok(ledger.merge(batch)))?;
        super::warn_skipped(&missing);
        Ok(())
    }

    fn save_changes(&self, batch: ChangeBatch) -> Result<(), StoreError> {
        let missing = self.change(|ledger| Ok(ledger.merge_changes(batch)))?;
        super::warn_skipped(&missing);
        Ok(())
    }

    fn put_vouchers(&self, vouchers: Vec<Voucher>) -> Result<(), StoreError> {
        self.change(|ledger| ledger.put_vouchers(vouchers))
    }

    fn put_trial(&self, trial: Trial) -> Result<(), StoreError> {
        self.change(|ledger| ledger.put_trial(trial))
    }

    fn forget_trials_before(&self, before: DateTime<Utc>) -> Result<(), StoreError> {
        self.change(|ledger| {
            ledger.forget_trials_before(before);
            Ok(())
        })
    }

    fn ticket(&self) -> Ticket {
        Ticket(self.read(Ledger::generation))
    }

    fn saved(&self, _ticket: Ticket) -> BoxFuture<'_, Result<(), StoreError>> {
        // Every change is put away as it is taken.
        Box::pin(std::future::ready(Ok(())))
    }

    fn health(&self) -> StoreHealth {
        StoreHealth {
            state: StorageState::Ok,
            path: PathBuf::from(":memory:"),
            error: None,
            since: None,
            pending_saves: 0,
            failed_attempts: 0,
            next_retry: None,
            last_saved: None,
            last_save_ms: 0.0,
        }
    }

    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let result = if std::mem::replace(&mut state.closed, true) {
            Err(StoreError::Closed)
        } else {
            Ok(())
        };
        Box::pin(std::future::ready(result))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::{
        Store, StoredClient,
        tests::{connected, mac, meta, running},
    };

    fn client(n: u32, session_id: Option<SessionId>, saved_at_mono_ns: u64) -> StoredClient {
        StoredClient {
            saved_at_mono_ns,
            ..connected(n, session_id)
        }
    }

    /// What the daemon asks of any store, asked of one through the trait object.
    async fn behaves_as_the_daemon_needs(store: Arc<dyn SessionStore>) {
        let a = store.insert(mac(1), running(1)).expect("inserts");
        let b = store.insert(mac(2), running(2)).expect("inserts");
        assert!(b > a, "ids only grow");
        let mut spoiled = running(3);
        spoiled.time_secs = u64::MAX;
        assert!(store.insert(mac(3), spoiled).is_err(), "out of range");
        store
            .save_batch(SaveBatch {
                ended: Vec::new(),
                usage: crate::store::usage::UsageBatch::default(),
                sessions: vec![(a, running(11))],
                clients: vec![client(1, Some(a), 1), client(2, Some(b), 1)],
                meta: meta(1),
            })
            .expect("takes a full save");
        store
            .save_changes(ChangeBatch {
                ended: Vec::new(),
                usage: crate::store::usage::UsageBatch::default(),
                sessions: vec![(b, running(12))],
                clients: vec![client(2, Some(b), 2)],
                meta: meta(2),
            })
            .expect("takes a save of what changed");
        store.saved(store.ticket()).await.expect("put away");
        let loaded = store.load_all();
        let records: Vec<_> = loaded
            .sessions
            .iter()
            .map(|stored| (stored.id, stored.data.clone()))
            .collect();
        assert_eq!(records, vec![(a, running(11)), (b, running(12))]);
        assert_eq!(
            loaded.clients,
            vec![client(1, Some(a), 1), client(2, Some(b), 2)],
            "a save of what changed keeps the other clients' rows"
        );
        assert_eq!(loaded.meta, Some(meta(2)));
        let vouchers = vec![
            crate::store::tests::voucher(1),
            crate::store::tests::voucher(2),
        ];
        store
            .put_vouchers(vouchers.clone())
            .expect("takes vouchers");
        let mut unstorable = crate::store::tests::voucher(3);
        unstorable.plan.time_secs = u64::MAX;
        assert!(
            store.put_vouchers(vec![unstorable]).is_err(),
            "out of range"
        );
        store.saved(store.ticket()).await.expect("put away");
        assert_eq!(store.load_all().vouchers, vouchers);
        let trial = |n, secs: i64| Trial {
            mac: mac(n),
            granted_at: DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("valid"),
        };
        store.put_trial(trial(1, 0)).expect("takes a trial");
        store.put_trial(trial(2, 10)).expect("takes a trial");
        store.put_trial(trial(1, 20)).expect("replaces a trial");
        store
            .forget_trials_before(DateTime::from_timestamp(1_800_000_010, 0).expect("valid"))
            .expect("forgets");
        store.saved(store.ticket()).await.expect("put away");
        assert_eq!(store.load_all().trials, vec![trial(1, 20)]);
        assert!(store.remove(a).expect("removes"));
        assert!(!store.remove(a).expect("removes nothing"));
        assert_eq!(store.load_all().clients[0].session_id, None);
        assert!(!store.is_degraded());
        store.close().await.expect("closes");
        assert!(matches!(
            store.insert(mac(1), running(1)),
            Err(StoreError::Closed)
        ));
    }

    #[tokio::test]
    async fn sqlite_is_a_session_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("sessions.db")).expect("opens");
        behaves_as_the_daemon_needs(Arc::new(store)).await;
    }

    #[tokio::test]
    async fn memory_is_a_session_store() {
        let store = MemoryStore::new(Loaded {
            sessions: Vec::new(),
            clients: Vec::new(),
            meta: None,
            vouchers: Vec::new(),
            trials: Vec::new(),
        });
        behaves_as_the_daemon_needs(Arc::new(store)).await;
    }
}
