//! The session store: sessions, what each client was doing, and the daemon's last save, kept in
//! SQLite at `store.sqlite_path` and in memory. [`Store::open`] checks the file (a file it does
//! not understand, or a damaged one, is refused and left untouched), migrates it to the current
//! schema, reads it, and starts the one thread that writes it, so no async worker ever waits on
//! the disk. A [`StoreHandle`] changes what the store holds at once and the thread writes it;
//! when the disk fails (full, read-only, the file deleted) nothing is lost: every change is
//! kept in memory, writing is retried with backoff, the file is made again if it was deleted,
//! and [`StoreHandle::health`] says so. [`SqliteSession`] is the seed's [`SessionSource`] on
//! this store. Side effects: creates and writes the database file and its `-wal`/`-shm`
//! companions, and spawns the OS thread `hotspotd-store`.

mod actor;
mod backoff;
pub mod ended;
pub mod health;
mod ledger;
mod schema;
mod seam;
mod source;
mod sqlite;
pub mod totals;
mod trials;
pub mod usage;
mod vouchers;
mod writer;

use std::{
    io,
    path::{Path, PathBuf},
    sync::Arc,
};

use chrono::{DateTime, Utc};
use hotspotd_common::Usage;

use crate::{accounting::Totals, mac::MacAddr, sessions::data::SessionData};
use actor::Shared;

pub use health::{StorageState, StoreHealth};
pub use schema::{APPLICATION_ID, SCHEMA_VERSION};
pub use seam::{MemoryStore, SessionStore};
pub use source::{SessionSource, SourceError, SqliteSession};

/// A session's identity (its row id in the `sessions` table), defined with the engine's rules.
pub use crate::sessions::engine::SessionId;

/// One session as stored: its id, the client it belongs to, its record — the engine's own
/// type, so a session has one definition wherever it is.
pub use crate::sessions::engine::Session as StoredSession;

/// Why a client is paused: the engine's own type, stored as it is.
pub use crate::sessions::engine::PauseReason;

/// What a client was doing at the last save: the engine's state, kept as it is.
pub use crate::sessions::engine::ClientState;

/// One client at the last save: enough for a restarted daemon to carry on where it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredClient {
    pub mac: MacAddr,
    pub state: ClientState,
    /// Why it was paused: `Some` exactly when `state` is `Paused` (the database refuses
    /// anything else).
    pub pause_reason: Option<PauseReason>,
    /// The session it was running (connected) or would resume (paused). `None` when there was
    /// none, or when that session has been removed since (the database clears it rather than
    /// keep a dangling id).
    pub session_id: Option<SessionId>,
    /// The kernel's counters for this client (summed over CPUs) whose traffic is already in
    /// its sessions: a restarted daemon bills only what the kernel counted beyond them, if
    /// [`SavedMeta`] says the counters are still the same ones.
    pub baseline: Usage,
    /// What the client moved in its lifetime, as `hotspotctl clients` shows it: a restart
    /// counts on from here.
    pub totals: Totals,
    /// `CLOCK_MONOTONIC` when this row (and its running session's record) was saved, ns:
    /// a restart in the same boot credits the time since then. 0 in a row of an older
    /// release, which the last save's time stands for.
    pub saved_at_mono_ns: u64,
}

/// When the last save was taken, in the terms a restarted daemon needs to decide whether the
/// kernel's counters and clock it saw are still the ones running now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedMeta {
    pub saved_at_wall: DateTime<Utc>,
    /// `CLOCK_MONOTONIC` at the save, ns. Comparable only within the same boot.
    pub saved_at_mono_ns: u64,
    /// `/proc/sys/kernel/random/boot_id` at the save; another one means the box rebooted, so
    /// the monotonic clock and the pinned maps started again.
    pub boot_id: String,
    /// Identifies the pinned kernel maps the baselines came from; another one means the
    /// counters started again from zero.
    pub kernel_epoch: u64,
    /// How far the daemon's wall clock (`saved_at_wall`) was ahead of the system's, ns
    /// (`crate::clock`); 0 when the system clock was taken as it is.
    pub clock_ahead_ns: i64,
}

/// How a session ended: the engine's own type.
pub use crate::sessions::engine::SessionEnd;

/// A session that ended: the store writes how and when beside its last record (which comes in
/// the same batch), then lets it go from memory: from then on it is history in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ended {
    pub id: SessionId,
    pub end: SessionEnd,
    pub at: DateTime<Utc>,
}

/// One periodic (or shutdown, or change of state) save: the store takes it at once and writes
/// it in one synced transaction (all or nothing) with whatever else is pending.
#[derive(Clone, Debug, PartialEq)]
pub struct SaveBatch {
    /// Sessions to update, by id. An id the store no longer holds (removed meanwhile) is
    /// skipped with a warning: a save never brings back a removed session.
    pub sessions: Vec<(SessionId, SessionData)>,
    /// Every client; the stored clients become exactly these.
    pub clients: Vec<StoredClient>,
    pub meta: SavedMeta,
    /// What each client moved since the last save, for the usage history.
    pub usage: usage::UsageBatch,
    /// Sessions of `sessions` that ended.
    pub ended: Vec<Ended>,
}

/// A save of what changed since the last one (a change of state: a sale, a pause, a session
/// consumed): these sessions' records and these clients' rows, each client with its running
/// session, so a client's counter baseline and the consumption it stands for are always saved
/// together. The other clients keep their rows. Costs what changed, not every client.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeBatch {
    pub sessions: Vec<(SessionId, SessionData)>,
    pub clients: Vec<StoredClient>,
    pub meta: SavedMeta,
    /// What these clients moved since the last save, for the usage history.
    pub usage: usage::UsageBatch,
    /// Sessions of `sessions` that ended.
    pub ended: Vec<Ended>,
}

/// Everything in the store, as [`StoreHandle::load_all`] gives it at startup.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    /// By id, so oldest inserted first.
    pub sessions: Vec<StoredSession>,
    /// By MAC.
    pub clients: Vec<StoredClient>,
    /// `None` until the first [`SaveBatch`].
    pub meta: Option<SavedMeta>,
    /// By id.
    pub vouchers: Vec<crate::vouchers::Voucher>,
    /// Each device's last free trial, by MAC.
    pub trials: Vec<crate::trials::Trial>,
}

/// Why the store failed. Each message says what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot use the session database {path} (check that its folder exists and that hotspotd may read and write there, or set store.sqlite_path)"
    )]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "cannot open the session database {path} (check that its folder exists and that hotspotd may read and write there, or set store.sqlite_path)"
    )]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "{path} is not a hotspotd database (application_id {application_id:#010x}, schema version {user_version}; hotspotd's is {APPLICATION_ID:#010x}); it was left untouched: move it away or set store.sqlite_path"
    )]
    Foreign {
        path: PathBuf,
        application_id: i32,
        user_version: i64,
    },
    #[error(
        "{path} was written by a newer hotspotd (schema version {version}; this one knows up to {SCHEMA_VERSION}); it was left untouched: run the newer hotspotd, or move the file away or set store.sqlite_path"
    )]
    TooNew { path: PathBuf, version: i64 },
    #[error(
        "{path} is damaged ({reason}); hotspotd left it untouched: move it aside with its -wal and -shm files (mv {path} {path}.damaged), then either restore a backup to {path} or start hotspotd again to begin an empty database, and sell the customers' remaining sessions again"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "{path}: upgrading the schema from version {from} to {SCHEMA_VERSION} failed (the schema was left at version {from})"
    )]
    Migrate {
        path: PathBuf,
        from: u32,
        source: rusqlite::Error,
    },
    #[error(
        "{path}: {table} row {key} has {field} = {value}, which hotspotd never writes; the file was changed by something else or is damaged"
    )]
    BadValue {
        path: PathBuf,
        table: &'static str,
        key: String,
        field: &'static str,
        value: String,
    },
    #[error(
        "cannot save {field} = {value}: the session database keeps finite numbers, integers up to 2^63 - 1 and years 0 to 9999"
    )]
    Unstorable { field: &'static str, value: String },
    #[error("cannot save the session")]
    OutOfRange {
        #[source]
        source: crate::sessions::InvalidSession,
    },
    #[error("session database: {op} failed")]
    Sql {
        op: &'static str,
        source: rusqlite::Error,
    },
    #[error("cannot start the session store's thread")]
    Thread { source: io::Error },
    #[error(
        "the session database {path} cannot be written ({reason}): the latest changes of {pending} sessions and the clients' counters are kept in memory and saved as soon as it can be written"
    )]
    Unsaved {
        path: PathBuf,
        pending: usize,
        reason: String,
    },
    #[error("the session store has stopped; restart hotspotd")]
    Closed,
}

/// Says which sessions of a save the store no longer held (removed meanwhile): a save never
/// brings back a removed session.
fn warn_skipped(missing: &[SessionId]) {
    if !missing.is_empty() {
        tracing::warn!(
            ?missing,
            "saved sessions that are no longer in the store were skipped"
        );
    }
}

/// Opens the store. A namespace for [`Store::open`]; the store itself is the thread it
/// starts, reached through a [`StoreHandle`].
#[derive(Debug)]
pub struct Store;

impl Store {
    /// Checks the database at `path`, creates it (mode 0600: it holds clients' MACs) or
    /// migrates it to [`SCHEMA_VERSION`], reads it, and starts the store thread. Blocking: call
    /// it before the runtime starts or inside `spawn_blocking`.
    ///
    /// A file that is not a hotspotd database, or is one from a newer hotspotd, is refused
    /// and not modified; so is a damaged one.
    pub fn open(path: &Path) -> Result<StoreHandle, StoreError> {
        let db = sqlite::Db::open(path)?;
        let ledger = ledger::Ledger::new(db.load_all()?, db.last_id()?);
        let shared = Arc::new(Shared::new(path.to_owned(), ledger));
        actor::spawn(Arc::clone(&shared), writer::Writer::new(path, db))?;
        Ok(StoreHandle {
            inner: Arc::new(Inner { shared }),
        })
    }
}

/// The way to the store; cheap to clone, one per task that needs it. Changes take effect in
/// the store at once and never wait for the disk: the store thread writes them, and
/// [`saved`](Self::saved) waits for that. When the last handle is dropped the thread writes
/// what is pending and stops.
#[derive(Clone)]
pub struct StoreHandle {
    inner: Arc<Inner>,
}

/// Shared by a handle's clones; the last one dropped closes the store.
struct Inner {
    shared: Arc<Shared>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.close();
    }
}

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHandle")
            .field("path", &self.inner.shared.path)
            .finish_non_exhaustive()
    }
}

/// A point in the store's changes: every change made before [`StoreHandle::ticket`] handed
/// it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

impl StoreHandle {
    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.inner.shared.path
    }

    /// Everything the store holds, for startup.
    #[must_use]
    pub fn load_all(&self) -> Loaded {
        self.inner.shared.lock().ledger.loaded()
    }

    /// Takes a new session for `mac` and returns its id, never handed out before. It is
    /// written at once, or kept and written when the disk works again.
    pub fn insert(&self, mac: MacAddr, data: SessionData) -> Result<SessionId, StoreError> {
        self.change(|ledger| ledger.insert(mac, data))
    }

    /// Takes a session sold for `price` (thousandths of `currency`) like [`Self::insert`],
    /// and records the sale in the same write.
    pub fn sell(
        &self,
        mac: MacAddr,
        data: SessionData,
        price: Option<usage::Price>,
        currency: &str,
    ) -> Result<SessionId, StoreError> {
        self.change(|ledger| ledger.sell(mac, data, price, currency))
    }

    /// The way to read the usage history and the sales in the file.
    #[must_use]
    pub fn history(&self) -> usage::History {
        usage::History::new(self.inner.shared.path.clone())
    }

    /// Replaces one session's record (a change of state); `false` when the store holds no
    /// session with that id.
    pub fn update(&self, id: SessionId, data: SessionData) -> Result<bool, StoreError> {
        self.change(|ledger| ledger.update(id, data))
    }

    /// Gives session `id` to client `mac`, written like any change; `false` when the store
    /// holds no session with that id.
    pub fn reassign(&self, id: SessionId, mac: MacAddr) -> Result<bool, StoreError> {
        self.change(|ledger| Ok(ledger.reassign(id, mac)))
    }

    /// Takes a save of sessions, clients and meta (sessions.md rule 12), written in one
    /// transaction with whatever else is pending.
    pub fn save_batch(&self, batch: SaveBatch) -> Result<(), StoreError> {
        let missing = self.change(|ledger| Ok(ledger.merge(batch)))?;
        warn_skipped(&missing);
        Ok(())
    }

    /// Takes a save of what changed ([`ChangeBatch`]), like [`Self::save_batch`].
    pub fn save_changes(&self, batch: ChangeBatch) -> Result<(), StoreError> {
        let missing = self.change(|ledger| Ok(ledger.merge_changes(batch)))?;
        warn_skipped(&missing);
        Ok(())
    }

    /// Deletes a session; `false` when the store holds no session with that id. Its id is
    /// never handed out again, and a client that was running it keeps no reference to it.
    pub fn remove(&self, id: SessionId) -> Result<bool, StoreError> {
        self.change(|ledger| Ok(ledger.remove(id)))
    }

    /// Takes new or changed vouchers, each replacing its record, written like a session.
    pub fn put_vouchers(&self, vouchers: Vec<crate::vouchers::Voucher>) -> Result<(), StoreError> {
        self.change(|ledger| ledger.put_vouchers(vouchers))
    }

    /// Takes a device's new free trial, replacing its last one, written like a voucher.
    pub fn put_trial(&self, trial: crate::trials::Trial) -> Result<(), StoreError> {
        self.change(|ledger| ledger.put_trial(trial))
    }

    /// Forgets the free trials granted at `before` or earlier.
    pub fn forget_trials_before(&self, before: DateTime<Utc>) -> Result<(), StoreError> {
        self.change(|ledger| {
            ledger.forget_trials_before(before);
            Ok(())
        })
    }

    /// One session as the store holds it; `None` when there is no such session.
    #[must_use]
    pub fn session(&self, id: SessionId) -> Option<(MacAddr, SessionData)> {
        self.inner.shared.lock().ledger.session(id)
    }

    /// The sessions that ended and are not written as ended yet: how, and when (seconds).
    #[must_use]
    pub fn ended_pending(&self) -> Vec<(StoredSession, SessionEnd, i64)> {
        self.inner.shared.lock().ledger.ended_pending()
    }

    /// Marks the changes made so far, for [`saved`](Self::saved).
    #[must_use]
    pub fn ticket(&self) -> Ticket {
        Ticket(self.inner.shared.lock().ledger.generation())
    }

    /// Waits until the store has tried to write every change up to `ticket`: `Ok` once they
    /// are on disk, [`StoreError::Unsaved`] if that attempt failed (they stay in memory and
    /// are retried). Dropping the future stops the waiting, not the write.
    pub async fn saved(&self, ticket: Ticket) -> Result<(), StoreError> {
        let mut progress = self.inner.shared.progress.subscribe();
        let reached = *progress
            .wait_for(|progress| progress.attempted >= ticket.0 || progress.stopped)
            .await
            .map_err(|_| StoreError::Closed)?;
        if reached.saved >= ticket.0 {
            return Ok(());
        }
        let state = self.inner.shared.lock();
        Err(StoreError::Unsaved {
            path: self.inner.shared.path.clone(),
            pending: state.ledger.pending(),
            reason: state.health.failure.as_ref().map_or_else(
                || "the store has stopped".to_owned(),
                |failure| failure.error.clone(),
            ),
        })
    }

    /// [`saved`](Self::saved) for every change made so far.
    pub async fn sync(&self) -> Result<(), StoreError> {
        self.saved(self.ticket()).await
    }

    /// Whether the last write failed: changes wait in memory until the disk works.
    #[must_use]
    pub fn is_degraded(&self) -> bool {
        self.inner.shared.lock().health.failure.is_some()
    }

    /// Whether writes reach the disk, what waits, and when the next attempt is.
    #[must_use]
    pub fn health(&self) -> StoreHealth {
        let state = self.inner.shared.lock();
        state
            .health
            .view(self.inner.shared.path.clone(), state.ledger.pending())
    }

    /// How long every write that reached the disk took, since this start.
    #[must_use]
    pub fn save_durations(&self) -> crate::histogram::Histogram {
        self.inner.shared.lock().health.save_durations.clone()
    }

    /// Makes a last attempt to write what is pending, closes the database (folding the WAL
    /// back into the file) and stops the thread. [`StoreError::Unsaved`] when changes could
    /// not be written: they are lost with the process. Every later change, from any clone,
    /// fails with [`StoreError::Closed`], and so does a second `close`.
    pub async fn close(&self) -> Result<(), StoreError> {
        if !self.inner.shared.close() {
            return Err(StoreError::Closed);
        }
        let mut progress = self.inner.shared.progress.subscribe();
        progress
            .wait_for(|progress| progress.stopped)
            .await
            .map_err(|_| StoreError::Closed)?;
        self.inner
            .shared
            .lock()
            .closed
            .take()
            .unwrap_or(Err(StoreError::Closed))
    }

    /// Applies `change` to the ledger and wakes the thread if it changed anything.
    fn change<T>(
        &self,
        change: impl FnOnce(&mut ledger::Ledger) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let shared = &self.inner.shared;
        let mut state = shared.lock();
        if state.closing {
            return Err(StoreError::Closed);
        }
        let before = state.ledger.generation();
        let result = change(&mut state.ledger)?;
        if state.ledger.generation() != before {
            shared.changed(&mut state);
        }
        Ok(result)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeSet;

    use chrono::TimeDelta;

    use super::*;
    use crate::sessions::data::SessionType;

    /// A running data session with fractions and a nanosecond start, `n` making it unique.
    pub(crate) fn running(n: u32) -> SessionData {
        let created_at = DateTime::from_timestamp(1_800_000_000, 123_456_789).expect("valid");
        SessionData {
            provider: "voucher".to_owned(),
            kind: SessionType::TimeOrData,
            time_secs: 3_600,
            data_mb: 512.25,
            time_cons: u64::from(n % 3_600),
            data_cons: f64::from(n) / 3.0,
            started_at: Some(created_at + TimeDelta::nanoseconds(i64::from(n) * 1_001)),
            exp_days: Some(30),
            down_mbits: 10,
            up_mbits: 5,
            use_global_speed: n.is_multiple_of(2),
            created_at,
        }
    }

    /// A voucher `n`: unused, or (odd `n`) redeemed by client `n`, with every optional field
    /// set.
    pub(crate) fn voucher(n: u32) -> crate::vouchers::Voucher {
        let created_at = DateTime::from_timestamp(1_800_000_000, 5).expect("valid");
        let mut code_hash = [7; 32];
        code_hash[..4].copy_from_slice(&n.to_be_bytes());
        let redeemed = n % 2 == 1;
        crate::vouchers::Voucher {
            session_end: None,
            id: i64::from(n),
            code_hash,
            plan: SessionData {
                time_cons: 0,
                data_cons: 0.0,
                started_at: None,
                created_at,
                ..running(n)
            },
            max_devices: n,
            valid_until: Some(created_at + TimeDelta::days(30)),
            stage: if redeemed {
                crate::vouchers::Stage::InUse
            } else {
                crate::vouchers::Stage::Unused
            },
            mac: redeemed.then(|| mac(n)),
            devices: if redeemed && n > 1 {
                vec![mac(n + 1_000)]
            } else {
                Vec::new()
            },
            session_id: redeemed.then_some(i64::from(n)),
            created_at,
            redeemed_at: redeemed.then(|| created_at + TimeDelta::seconds(9)),
            price: n
                .is_multiple_of(3)
                .then(|| usage::Price(i64::from(n) * 125)),
        }
    }

    /// A locally administered MAC, `n` in its last four octets.
    pub(crate) fn mac(n: u32) -> MacAddr {
        let mut octets = [0x02, 0xaa, 0, 0, 0, 0];
        octets[2..].copy_from_slice(&n.to_be_bytes());
        MacAddr(octets)
    }

    /// A connected client `n` running `session_id`, nothing counted yet.
    pub(crate) fn connected(n: u32, session_id: Option<SessionId>) -> StoredClient {
        StoredClient {
            mac: mac(n),
            state: ClientState::Connected,
            pause_reason: None,
            session_id,
            baseline: Usage::default(),
            totals: Totals::default(),
            saved_at_mono_ns: 0,
        }
    }

    /// A save taken at `n` ns of the monotonic clock.
    pub(crate) fn meta(n: u64) -> SavedMeta {
        SavedMeta {
            saved_at_wall: DateTime::from_timestamp(1_800_000_000, 0).expect("valid"),
            saved_at_mono_ns: n,
            boot_id: "boot".to_owned(),
            kernel_epoch: 7,
            clock_ahead_ns: 0,
        }
    }

    /// What the file holds, read by a second store.
    pub(crate) fn on_disk(path: &Path) -> Loaded {
        let db = sqlite::Db::open(path).expect("opens");
        let loaded = db.load_all().expect("loads");
        db.close().expect("closes");
        loaded
    }

    #[tokio::test]
    async fn changes_take_effect_at_once_and_reach_the_disk() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        let store = Store::open(&path).expect("opens");
        let id = store.insert(mac(1), running(1)).expect("inserts");
        assert_eq!(store.session(id), Some((mac(1), running(1))));
        assert!(store.update(id, running(2)).expect("updates"));
        assert_eq!(store.session(id), Some((mac(1), running(2))));
        store.sync().await.expect("saved");
        assert_eq!(
            on_disk(&path).sessions,
            vec![StoredSession {
                id,
                mac: mac(1),
                data: running(2)
            }]
        );
        assert!(store.remove(id).expect("removes"));
        assert!(!store.remove(id).expect("removes"), "already gone");
        assert!(!store.update(id, running(3)).expect("updates"));
        assert_eq!(store.session(id), None);
        assert!(store.load_all().sessions.is_empty());
        store.sync().await.expect("saved");
        assert!(on_disk(&path).sessions.is_empty());
        let health = store.health();
        assert_eq!(health.state, StorageState::Ok);
        assert_eq!(health.pending_saves, 0);
        assert!(health.last_saved.is_some());
    }

    #[tokio::test]
    async fn an_ended_session_leaves_memory_once_written_and_stays_in_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        let store = Store::open(&path).expect("opens");
        let ids: Vec<SessionId> = (1..=3)
            .map(|n| store.insert(mac(n), running(n)).expect("inserts"))
            .collect();
        let at = DateTime::from_timestamp(1_800_000_100, 0).expect("valid");
        let mut last = running(1);
        last.time_cons = 99;
        store
            .save_changes(ChangeBatch {
                sessions: vec![(ids[0], last.clone())],
                clients: Vec::new(),
                meta: meta(1),
                usage: usage::UsageBatch::default(),
                ended: vec![Ended {
                    id: ids[0],
                    end: SessionEnd::Consumed,
                    at,
                }],
            })
            .expect("takes");
        store.sync().await.expect("saved");
        assert_eq!(store.session(ids[0]), None, "let go of once written");
        assert_eq!(store.load_all().sessions.len(), 2);
        // A full write (a file that missed writes) keeps the history it has.
        store.update(ids[1], running(5)).expect("updates");
        store.sync().await.expect("saved");
        drop(store);
        let reopened = Store::open(&path).expect("opens again");
        let live: Vec<SessionId> = reopened.load_all().sessions.iter().map(|s| s.id).collect();
        assert_eq!(live, ids[1..].to_vec(), "a start loads only the live ones");
        let page = reopened
            .history()
            .ended_sessions(&ended::EndedQuery {
                limit: 10,
                ..ended::EndedQuery::default()
            })
            .expect("reads");
        assert_eq!(page.total, 1);
        assert_eq!(page.rows[0].session.id, ids[0]);
        assert_eq!(page.rows[0].session.data, last, "its last record");
        assert_eq!(page.rows[0].end, SessionEnd::Consumed);
        assert_eq!(page.rows[0].ended_at, at);
    }

    #[tokio::test]
    async fn vouchers_are_kept_changed_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        let store = Store::open(&path).expect("opens");
        let batch: Vec<_> = (1..=200).map(voucher).collect();
        store.put_vouchers(batch.clone()).expect("takes");
        store.sync().await.expect("saved");
        assert_eq!(on_disk(&path).vouchers, batch);
        let revoked = crate::vouchers::Voucher {
            stage: crate::vouchers::Stage::Revoked,
            ..voucher(2)
        };
        store.put_vouchers(vec![revoked.clone()]).expect("takes");
        let mut unstorable = voucher(3);
        unstorable.plan.data_mb = f64::NAN;
        assert!(
            store.put_vouchers(vec![voucher(4), unstorable]).is_err(),
            "refused whole"
        );
        store.sync().await.expect("saved");
        drop(store);
        let reopened = Store::open(&path).expect("opens again");
        let held = reopened.load_all().vouchers;
        assert_eq!(held.len(), 200);
        assert_eq!(held[1], revoked);
        assert_eq!(held[3], voucher(4));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_tasks_share_the_store() {
        const TASKS: u32 = 50;
        const EACH: u32 = 20;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        let store = Store::open(&path).expect("opens");
        let mut tasks = tokio::task::JoinSet::new();
        for task in 0..TASKS {
            let store = store.clone();
            tasks.spawn(async move {
                let mut ids = Vec::new();
                for n in 0..EACH {
                    let n = task * EACH + n;
                    ids.push((store.insert(mac(n), running(n)).expect("inserts"), n));
                    store.sync().await.expect("saved");
                }
                ids
            });
        }
        let mut ids = BTreeSet::new();
        while let Some(inserted) = tasks.join_next().await {
            for (id, n) in inserted.expect("task ran") {
                assert!(ids.insert(id), "id {id} handed out twice");
                assert_eq!(store.session(id), Some((mac(n), running(n))), "id {id}");
            }
        }
        let stored = on_disk(&path).sessions;
        assert_eq!(stored.len(), (TASKS * EACH) as usize);
        assert!(stored.iter().all(|s| ids.contains(&s.id)));
    }

    #[tokio::test]
    async fn a_closed_store_says_so() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        let store = Store::open(&path).expect("opens");
        let id = store.insert(mac(1), running(1)).expect("inserts");
        let other = store.clone();
        // Closing writes what is pending first.
        store.close().await.expect("closes");
        let error = other.insert(mac(2), running(2)).expect_err("closed");
        assert!(matches!(error, StoreError::Closed), "{error}");
        assert!(error.to_string().contains("restart hotspotd"));
        assert!(matches!(other.close().await, Err(StoreError::Closed)));
        assert!(
            !dir.path().join("sessions.db-wal").exists(),
            "closing folds the WAL into the file"
        );
        let store = Store::open(&path).expect("reopens");
        assert_eq!(store.session(id), Some((mac(1), running(1))));
        // Ids go on after the highest handed out.
        assert_eq!(store.insert(mac(2), running(2)).expect("inserts"), id + 1);
    }

    /// Waits until every change so far is on disk; the store retries on its own schedule.
    async fn until_saved(store: &StoreHandle) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        while store.sync().await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never saved: {:?}",
                store.health()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn a_failing_disk_loses_nothing_and_everything_is_saved_once_it_works() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        let store = Store::open(&path).expect("opens");
        let kept = store.insert(mac(1), running(1)).expect("inserts");
        let removed = store.insert(mac(2), running(2)).expect("inserts");
        store.sync().await.expect("saved");

        // The path becomes something SQLite cannot open (what a broken disk does to every
        // write, without needing one): the file is gone and a folder is in its place.
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(dir.path().join(format!("sessions.db{suffix}")));
        }
        std::fs::create_dir(&path).expect("creates a folder");
        assert!(store.update(kept, running(3)).expect("updates"));
        let error = store.sync().await.expect_err("cannot be written");
        assert!(
            matches!(error, StoreError::Unsaved { pending: 1, .. }),
            "{error}"
        );
        let health = store.health();
        assert_eq!(health.state, StorageState::Degraded, "{health:?}");
        assert!(
            health.error.is_some() && health.since.is_some(),
            "{health:?}"
        );
        assert!(health.next_retry > health.since, "{health:?}");

        // Meanwhile everything goes on in memory: changes, a sale, a removal, a batch.
        for n in 4..10 {
            assert!(store.update(kept, running(n)).expect("updates"));
        }
        let sold = store
            .insert(mac(3), running(30))
            .expect("sells while failing");
        assert_eq!(sold, removed + 1);
        assert!(store.remove(removed).expect("removes"));
        let meta = SavedMeta {
            saved_at_wall: DateTime::from_timestamp(1_800_000_000, 0).expect("valid"),
            saved_at_mono_ns: 1,
            boot_id: "boot".to_owned(),
            kernel_epoch: 1,
            clock_ahead_ns: 0,
        };
        let client = StoredClient {
            mac: mac(3),
            state: ClientState::Connected,
            pause_reason: None,
            session_id: Some(sold),
            baseline: Usage::default(),
            totals: Totals::default(),
            saved_at_mono_ns: 1,
        };
        store
            .save_batch(SaveBatch {
                ended: Vec::new(),
                usage: crate::store::usage::UsageBatch::default(),
                sessions: vec![(kept, running(10))],
                clients: vec![client.clone()],
                meta: meta.clone(),
            })
            .expect("takes the batch");
        assert!(store.sync().await.is_err());
        let health = store.health();
        assert_eq!(health.pending_saves, 3, "kept, sold, removed: {health:?}");
        assert!(
            health.failed_attempts >= 2,
            "a new save is tried: {health:?}"
        );

        // The disk works again: the next attempt writes it all.
        std::fs::remove_dir(&path).expect("removes the folder");
        until_saved(&store).await;
        let health = store.health();
        assert_eq!(health.state, StorageState::Ok, "{health:?}");
        assert_eq!(health.pending_saves, 0);
        let loaded = on_disk(&path);
        assert_eq!(
            loaded.sessions,
            vec![
                StoredSession {
                    id: kept,
                    mac: mac(1),
                    data: running(10)
                },
                StoredSession {
                    id: sold,
                    mac: mac(3),
                    data: running(30)
                },
            ]
        );
        assert_eq!((loaded.clients, loaded.meta), (vec![client], Some(meta)));
        store.close().await.expect("closes");
        // The removed session's id stays used in the new file.
        let store = Store::open(&path).expect("reopens");
        assert_eq!(store.insert(mac(4), running(4)).expect("inserts"), sold + 1);
    }

    #[tokio::test]
    async fn closing_while_the_disk_fails_says_what_was_not_saved() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        let store = Store::open(&path).expect("opens");
        std::fs::remove_file(&path).expect("removes");
        std::fs::create_dir(&path).expect("creates a folder");
        store.insert(mac(1), running(1)).expect("inserts");
        let error = store.close().await.expect_err("unsaved");
        assert!(
            matches!(error, StoreError::Unsaved { pending: 1, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("kept in memory"), "{error}");
    }

    #[test]
    fn opening_from_the_runtime_works_through_spawn_blocking() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        runtime.block_on(async {
            let store = tokio::task::spawn_blocking(move || Store::open(&path))
                .await
                .expect("joined")
                .expect("opens");
            assert_eq!(
                store.load_all(),
                Loaded {
                    sessions: Vec::new(),
                    clients: Vec::new(),
                    meta: None,
                    vouchers: Vec::new(),
                    trials: Vec::new(),
                }
            );
        });
    }
}
