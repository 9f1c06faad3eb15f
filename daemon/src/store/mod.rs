//! The session store: sessions, what each client was doing, and the daemon's last save, kept in
//! SQLite at `store.sqlite_path`. [`Store::open`] checks the file (a file it does not understand
//! is refused and left untouched), migrates it to the current schema and starts the one thread
//! that owns the connection, so no async worker ever waits on the disk; a [`StoreHandle`] sends
//! that thread commands. [`SqliteSession`] is the seed's [`SessionSource`] on this store.
//! Side effects: creates and writes the database file and its `-wal`/`-shm` companions, and
//! spawns the OS thread `hotspotd-store`.

mod actor;
mod schema;
mod source;
mod sqlite;

use std::{
    io,
    path::{Path, PathBuf},
    sync::Arc,
};

use chrono::{DateTime, Utc};
use hotspotd_common::Usage;
use tokio::sync::{mpsc, oneshot};

use crate::{mac::MacAddr, sessions::data::SessionData};
use actor::Command;

pub use schema::{APPLICATION_ID, SCHEMA_VERSION};
pub use source::{SessionSource, SourceError, SqliteSession};

/// A session's identity: its row id in the `sessions` table, never reused.
pub type SessionId = i64;

/// One session as stored: its id, the client it belongs to, its record.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredSession {
    pub id: SessionId,
    pub mac: MacAddr,
    pub data: SessionData,
}

/// Why a client is paused (sessions.md rule 9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PauseReason {
    /// The operator or a portal paused it; it stays paused until told to resume.
    Operator,
    /// Its traffic stopped for `sessions.idle_pause_secs`; its next packet resumes it.
    Idle,
}

/// What a client was doing at the last save.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientState {
    Connected,
    Paused(PauseReason),
    Disconnected,
}

/// One client at the last save: enough for a restarted daemon to carry on where it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredClient {
    pub mac: MacAddr,
    pub state: ClientState,
    /// The session it was running (connected) or would resume (paused). `None` when there was
    /// none, or when that session has been removed since (the database clears it rather than
    /// keep a dangling id).
    pub session_id: Option<SessionId>,
    /// The kernel's counters for this client (summed over CPUs) whose traffic is already in
    /// its sessions: a restarted daemon bills only what the kernel counted beyond them, if
    /// [`SavedMeta`] says the counters are still the same ones.
    pub baseline: Usage,
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
}

/// One save, periodic or of what changed, written in one transaction (all or nothing) and
/// synced to disk before it is reported done.
#[derive(Clone, Debug, PartialEq)]
pub struct SaveBatch {
    /// Sessions to update, by id. An id no longer in the database (removed meanwhile) is
    /// skipped with a warning: a save never brings back a removed session.
    pub sessions: Vec<(SessionId, SessionData)>,
    pub clients: ClientsSave,
    pub meta: SavedMeta,
}

/// Which clients a [`SaveBatch`] writes.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientsSave {
    /// Every client; the stored clients become exactly these (the periodic save).
    All(Vec<StoredClient>),
    /// Only the clients that changed since the last save: `changed` are written (added or
    /// replaced), the clients of `forget` removed; every other stored client stays as it is.
    /// Writing all of them after every sale would cost the time of a periodic save each.
    Changed {
        changed: Vec<StoredClient>,
        forget: Vec<MacAddr>,
    },
}

/// Everything in the store, as [`StoreHandle::load_all`] reads it at startup.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    /// By id, so oldest inserted first.
    pub sessions: Vec<StoredSession>,
    /// By MAC.
    pub clients: Vec<StoredClient>,
    /// `None` until the first [`SaveBatch`].
    pub meta: Option<SavedMeta>,
}

/// Why the store failed. Each message says what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot use the session database {path}: {source} (check that its folder exists and that hotspotd may read and write there, or set store.sqlite_path)"
    )]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "cannot open the session database {path}: {source} (check that its folder exists and that hotspotd may read and write there, or set store.sqlite_path)"
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
        "{path} is damaged ({reason}): keep the file for inspection, move it away, and restart; hotspotd will start a new one"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "{path}: upgrading the schema from version {from} to {SCHEMA_VERSION} failed: {source}; the schema was left at version {from}"
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
    #[error("session database: {op} failed: {source}")]
    Sql {
        op: &'static str,
        source: rusqlite::Error,
    },
    #[error("cannot start the session store's thread: {source}")]
    Thread { source: io::Error },
    #[error("the session store has stopped; restart hotspotd")]
    Closed,
}

/// Opens the store. A namespace for [`Store::open`]; the store itself is the thread it
/// starts, reached through a [`StoreHandle`].
#[derive(Debug)]
pub struct Store;

impl Store {
    /// Checks the database at `path`, creates it (mode 0600: it holds clients' MACs) or
    /// migrates it to [`SCHEMA_VERSION`], and starts the store thread. Blocking: call it
    /// before the runtime starts or inside `spawn_blocking`.
    ///
    /// A file that is not a hotspotd database, or is one from a newer hotspotd, is refused
    /// and not modified; so is a damaged one.
    pub fn open(path: &Path) -> Result<StoreHandle, StoreError> {
        let db = sqlite::Db::open(path)?;
        let commands = actor::spawn(db)?;
        Ok(StoreHandle {
            commands,
            path: path.into(),
        })
    }
}

/// The way to the store thread; cheap to clone, one per task that needs it. Every call
/// queues one command and waits for its answer. Dropping a call's future stops the waiting,
/// not the command: a save that was queued still happens.
#[derive(Clone, Debug)]
pub struct StoreHandle {
    commands: mpsc::Sender<Command>,
    path: Arc<Path>,
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

impl StoreHandle {
    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Everything stored, for startup.
    pub async fn load_all(&self) -> Result<Loaded, StoreError> {
        self.ask(|reply| Command::LoadAll { reply }).await
    }

    /// Stores a new session for `mac`, synced to disk, and returns its id.
    pub async fn insert(&self, mac: MacAddr, data: SessionData) -> Result<SessionId, StoreError> {
        self.ask(|reply| Command::Insert { mac, data, reply }).await
    }

    /// Overwrites one session's record (a change of state); `false` when no session has that
    /// id. Not synced to disk by itself: the next [`save_batch`](Self::save_batch) makes it
    /// durable.
    pub async fn update(&self, id: SessionId, data: SessionData) -> Result<bool, StoreError> {
        self.ask(|reply| Command::Update { id, data, reply }).await
    }

    /// Saves sessions, clients and meta in one transaction, synced to disk (sessions.md
    /// rule 12).
    pub async fn save_batch(&self, batch: SaveBatch) -> Result<(), StoreError> {
        self.ask(|reply| Command::SaveBatch { batch, reply }).await
    }

    /// Queues a save like [`save_batch`](Self::save_batch) and returns once it is queued,
    /// with a future that waits for its answer: for a caller that goes on meanwhile.
    pub async fn queue_batch(
        &self,
        batch: SaveBatch,
    ) -> Result<impl Future<Output = Result<(), StoreError>> + Send + 'static, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::SaveBatch { batch, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(async move { answer.await.map_err(|_| StoreError::Closed)? })
    }

    /// Deletes a session, synced to disk; `false` when no session has that id. A client that
    /// was running it keeps no reference to it.
    pub async fn remove(&self, id: SessionId) -> Result<bool, StoreError> {
        self.ask(|reply| Command::Remove { id, reply }).await
    }

    /// Reads one session back; `None` when no session has that id.
    pub async fn reload(
        &self,
        id: SessionId,
    ) -> Result<Option<(MacAddr, SessionData)>, StoreError> {
        self.ask(|reply| Command::Reload { id, reply }).await
    }

    /// Finishes the commands queued before this one, then closes the database (folding the
    /// WAL back into the file) and stops the thread. Every later call, from any clone,
    /// fails with [`StoreError::Closed`].
    pub async fn close(&self) -> Result<(), StoreError> {
        self.ask(|reply| Command::Close { reply }).await
    }

    async fn ask<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
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

    /// A locally administered MAC, `n` in its last four octets.
    pub(crate) fn mac(n: u32) -> MacAddr {
        let mut octets = [0x02, 0xaa, 0, 0, 0, 0];
        octets[2..].copy_from_slice(&n.to_be_bytes());
        MacAddr(octets)
    }

    #[tokio::test]
    async fn the_handle_inserts_updates_reloads_and_removes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("sessions.db")).expect("opens");
        let id = store.insert(mac(1), running(1)).await.expect("inserts");
        assert_eq!(
            store.reload(id).await.expect("reloads"),
            Some((mac(1), running(1)))
        );
        assert!(store.update(id, running(2)).await.expect("updates"));
        assert_eq!(
            store.reload(id).await.expect("reloads"),
            Some((mac(1), running(2)))
        );
        assert!(store.remove(id).await.expect("removes"));
        assert!(!store.remove(id).await.expect("removes"), "already gone");
        assert!(!store.update(id, running(3)).await.expect("updates"));
        assert_eq!(store.reload(id).await.expect("reloads"), None);
        assert!(store.load_all().await.expect("loads").sessions.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_tasks_share_the_store() {
        const TASKS: u32 = 50;
        const EACH: u32 = 20;
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("sessions.db")).expect("opens");
        let mut tasks = tokio::task::JoinSet::new();
        for task in 0..TASKS {
            let store = store.clone();
            tasks.spawn(async move {
                let mut ids = Vec::new();
                for n in 0..EACH {
                    let n = task * EACH + n;
                    ids.push((store.insert(mac(n), running(n)).await.expect("inserts"), n));
                }
                ids
            });
        }
        let mut ids = BTreeSet::new();
        while let Some(inserted) = tasks.join_next().await {
            for (id, n) in inserted.expect("task ran") {
                assert!(ids.insert(id), "id {id} handed out twice");
                let (stored_mac, data) = store.reload(id).await.expect("reloads").expect("there");
                assert_eq!((stored_mac, data), (mac(n), running(n)), "id {id}");
            }
        }
        let loaded = store.load_all().await.expect("loads");
        assert_eq!(loaded.sessions.len(), (TASKS * EACH) as usize);
        assert!(loaded.sessions.iter().all(|s| ids.contains(&s.id)));
    }

    #[tokio::test]
    async fn a_closed_store_says_so() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        let store = Store::open(&path).expect("opens");
        let id = store.insert(mac(1), running(1)).await.expect("inserts");
        let other = store.clone();
        store.close().await.expect("closes");
        let error = other.reload(id).await.expect_err("closed");
        assert!(matches!(error, StoreError::Closed), "{error}");
        assert!(error.to_string().contains("restart hotspotd"));
        assert!(
            !dir.path().join("sessions.db-wal").exists(),
            "closing folds the WAL into the file"
        );
        let store = Store::open(&path).expect("reopens");
        assert_eq!(
            store.reload(id).await.expect("reloads"),
            Some((mac(1), running(1)))
        );
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
            let loaded = store.load_all().await.expect("loads");
            assert_eq!(
                loaded,
                Loaded {
                    sessions: Vec::new(),
                    clients: Vec::new(),
                    meta: None,
                }
            );
        });
    }
}
