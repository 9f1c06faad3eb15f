//! [`SessionSource`], the seed's interface to where a session lives (sessions.md "The
//! source"), and [`SqliteSession`], its implementation on this store. Side effects: through
//! the store thread only.

use std::sync::{Mutex, MutexGuard, PoisonError};

use futures::future::BoxFuture;

use super::{SessionId, StoreError, StoreHandle, StoredSession};
use crate::{mac::MacAddr, sessions::data::SessionData};

/// Where a session's record lives: this SQLite store, or another (a remote server, a central
/// database). Go's `context.Context` is Rust's dropping of the future; wrap a call in
/// `tokio::time::timeout` for a deadline. The futures are boxed and `Send`, so a source can
/// be held as `Arc<dyn SessionSource>` and used from a spawned task.
pub trait SessionSource: Send + Sync {
    /// The record as last saved or reloaded (the seed's `Data()`); never waits.
    fn data(&self) -> SessionData;

    /// Writes `data` to the source (`Save(ctx, data)`); afterwards [`data`](Self::data)
    /// returns it.
    fn save(&self, data: SessionData) -> BoxFuture<'_, Result<(), SourceError>>;

    /// Reads the record back from the source (`Reload(ctx)`); afterwards
    /// [`data`](Self::data) returns it.
    fn reload(&self) -> BoxFuture<'_, Result<SessionData, SourceError>>;
}

/// Why a [`SessionSource`] call failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "session {id} is no longer a live session (it was removed, or it ended and is kept as history: hotspotctl sessions --state ended)"
    )]
    Missing { id: SessionId },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One session row as a [`SessionSource`]: a cached copy of its record, saved through the
/// store and read back from what the store holds (the database as the store thread writes it,
/// with what a failing disk has not taken yet).
#[derive(Debug)]
pub struct SqliteSession {
    id: SessionId,
    mac: MacAddr,
    data: Mutex<SessionData>,
    store: StoreHandle,
}

impl SqliteSession {
    /// Stores a new session for `mac`. It is written at once, or kept and written when the
    /// disk works again: the session exists either way.
    pub fn create(store: StoreHandle, mac: MacAddr, data: SessionData) -> Result<Self, StoreError> {
        let id = store.insert(mac, data.clone())?;
        Ok(Self {
            id,
            mac,
            data: Mutex::new(data),
            store,
        })
    }

    /// A session read by [`StoreHandle::load_all`].
    #[must_use]
    pub fn from_stored(store: StoreHandle, stored: StoredSession) -> Self {
        Self {
            id: stored.id,
            mac: stored.mac,
            data: Mutex::new(stored.data),
            store,
        }
    }

    #[must_use]
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The client the session belongs to.
    #[must_use]
    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    fn cache(&self) -> MutexGuard<'_, SessionData> {
        // A panic elsewhere while holding the lock can only have been between whole-record
        // assignments, so the record is still a whole one.
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SessionSource for SqliteSession {
    fn data(&self) -> SessionData {
        self.cache().clone()
    }

    /// Waits for the write. When the disk fails the record is still taken (and [`data`]
    /// returns it) and written later; the error says so.
    ///
    /// [`data`]: SessionSource::data
    fn save(&self, data: SessionData) -> BoxFuture<'_, Result<(), SourceError>> {
        Box::pin(async move {
            if !self.store.update(self.id, data.clone())? {
                return Err(SourceError::Missing { id: self.id });
            }
            let ticket = self.store.ticket();
            *self.cache() = data;
            self.store.saved(ticket).await?;
            Ok(())
        })
    }

    fn reload(&self) -> BoxFuture<'_, Result<SessionData, SourceError>> {
        Box::pin(async move {
            let (_, data) = self
                .store
                .session(self.id)
                .ok_or(SourceError::Missing { id: self.id })?;
            self.cache().clone_from(&data);
            Ok(data)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::{
        Store,
        tests::{mac, running},
    };

    #[tokio::test]
    async fn save_writes_the_row_and_reload_reads_it_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("sessions.db")).expect("opens");
        let session = SqliteSession::create(store.clone(), mac(7), running(1)).expect("creates");
        assert_eq!(session.mac(), mac(7));
        assert_eq!(session.data(), running(1));

        let mut changed = running(1);
        changed.time_cons += 60;
        changed.data_cons += 0.125;
        changed.started_at = None;
        changed.exp_days = None;
        session.save(changed.clone()).await.expect("saves");
        assert_eq!(session.data(), changed, "the cache follows the save");
        assert_eq!(
            store.session(session.id()),
            Some((mac(7), changed.clone())),
            "the store holds the save"
        );
        let on_disk = crate::store::tests::on_disk(store.path());
        assert_eq!(on_disk.sessions[0].data, changed, "the row holds the save");

        // Someone else changes the record; reload picks it up.
        assert!(store.update(session.id(), running(2)).expect("updates"));
        assert_eq!(session.data(), changed, "data() never reads the store");
        assert_eq!(session.reload().await.expect("reloads"), running(2));
        assert_eq!(session.data(), running(2), "the cache follows the reload");
    }

    #[tokio::test]
    async fn a_removed_session_is_missing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("sessions.db")).expect("opens");
        let session = SqliteSession::create(store.clone(), mac(1), running(1)).expect("creates");
        assert!(store.remove(session.id()).expect("removes"));
        let error = session.reload().await.expect_err("gone");
        assert!(matches!(error, SourceError::Missing { id } if id == session.id()));
        let error = session.save(running(2)).await.expect_err("gone");
        assert!(error.to_string().contains("no longer a live session"));
        assert_eq!(session.data(), running(1), "a failed save leaves the cache");
        assert!(
            store.session(session.id()).is_none(),
            "a save does not bring a removed session back"
        );
    }

    #[tokio::test]
    async fn a_record_out_of_range_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("sessions.db")).expect("opens");
        let session = SqliteSession::create(store.clone(), mac(1), running(1)).expect("creates");
        // Once a crash loop: expiry arithmetic on 10^16 seconds panicked at every start.
        let mut spoiled = running(1);
        spoiled.time_secs = 10_u64.pow(16);
        let error = session.save(spoiled.clone()).await.expect_err("refused");
        let shown = crate::text::chain_string(&error);
        assert!(shown.contains("time_secs"), "{shown}");
        assert_eq!(session.data(), running(1), "the cache is unchanged");
        assert_eq!(store.session(session.id()), Some((mac(1), running(1))));
        assert!(
            SqliteSession::create(store.clone(), mac(1), spoiled).is_err(),
            "nor is it sold"
        );
    }

    /// Generic, as the engine will hold it: the futures must be `Send` to be spawned.
    /// As the daemon holds a source: a trait object, its futures spawned.
    async fn bump(source: Arc<dyn SessionSource>) -> SessionData {
        tokio::spawn(async move {
            let mut data = source.data();
            data.time_cons += 1;
            source.save(data).await.expect("saves");
            source.reload().await.expect("reloads")
        })
        .await
        .expect("task ran")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sources_work_from_spawned_tasks() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("sessions.db")).expect("opens");
        let loaded_from = store.insert(mac(3), running(3)).expect("inserts");
        let loaded = store.load_all();
        let stored = loaded.sessions.into_iter().next().expect("one session");
        assert_eq!(stored.id, loaded_from);
        let session = Arc::new(SqliteSession::from_stored(store, stored));
        let data = bump(Arc::clone(&session) as Arc<dyn SessionSource>).await;
        assert_eq!(data.time_cons, running(3).time_cons + 1);
        assert_eq!(session.data(), data);
    }
}
