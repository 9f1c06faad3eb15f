//! The store thread: the one writer of the database (LibreQoS's writer actor). Handles record
//! changes in the [`Ledger`] and wake the thread; it writes what is pending in one synced
//! transaction, and when that fails keeps it all, retries on the [`Backoff`] schedule, and
//! records the failure for the status. Nothing else ever waits on the disk: a handle holds the
//! lock only to change the ledger, and the thread holds it only to copy what it writes. Side
//! effects: one OS thread, `hotspotd-store`, which lives until the store is closed or every
//! handle is dropped; it logs when writes start failing and when they work again, once each.

use std::{
    path::PathBuf,
    sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use chrono::Utc;
use tokio::sync::watch;

use super::{
    StoreError,
    backoff::Backoff,
    health::{Failure, Health},
    ledger::Ledger,
    writer::Writer,
};

/// What the handles and the thread share.
pub(super) struct Shared {
    pub path: PathBuf,
    state: Mutex<State>,
    wake: Condvar,
    /// How far the writes got, for callers that wait for theirs.
    pub progress: watch::Sender<Progress>,
}

pub(super) struct State {
    pub ledger: Ledger,
    pub health: Health,
    /// A change came in since the last attempt: it brings a retry forward.
    fresh: bool,
    /// No more changes are taken; the thread makes a last attempt and stops.
    pub closing: bool,
    /// How the store ended, for the `close` call that waits for it.
    pub closed: Option<Result<(), StoreError>>,
}

/// How far the writes got, in ledger generations.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Progress {
    /// Every change up to this one has been tried (written or not).
    pub attempted: u64,
    /// Every change up to this one is on disk.
    pub saved: u64,
    /// The thread has stopped: nothing more will be tried.
    pub stopped: bool,
}

impl Shared {
    pub(super) fn new(path: PathBuf, ledger: Ledger) -> Self {
        Self {
            path,
            state: Mutex::new(State {
                ledger,
                health: Health::default(),
                fresh: false,
                closing: false,
                closed: None,
            }),
            wake: Condvar::new(),
            progress: watch::Sender::new(Progress::default()),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock happened between whole changes of the ledger, which
        // is still consistent; refusing every later save would lose more.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells the thread that `state` holds new changes.
    pub(super) fn changed(&self, state: &mut State) {
        state.fresh = true;
        self.wake.notify_one();
    }

    /// Asks the thread for a last attempt and to stop; `false` if it was asked already.
    pub(super) fn close(&self) -> bool {
        let mut state = self.lock();
        if state.closing {
            return false;
        }
        state.closing = true;
        self.wake.notify_one();
        true
    }

    fn wait<'s>(
        &self,
        state: MutexGuard<'s, State>,
        at_most: Option<Duration>,
    ) -> MutexGuard<'s, State> {
        match at_most {
            None => self
                .wake
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner),
            Some(timeout) => {
                self.wake
                    .wait_timeout(state, timeout)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        }
    }
}

/// Starts the thread that writes `shared`'s changes through `writer`.
pub(super) fn spawn(shared: Arc<Shared>, writer: Writer) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name("hotspotd-store".to_owned())
        .spawn(move || serve(&shared, writer))
        .map(drop)
        .map_err(|source| StoreError::Thread { source })
}

fn serve(shared: &Shared, mut writer: Writer) {
    let mut backoff = Backoff::default();
    let mut state = shared.lock();
    loop {
        let closing = state.closing;
        if !state.ledger.has_changes() {
            if closing {
                break;
            }
            state = shared.wait(state, None);
            continue;
        }
        // Closing tries once more whatever the schedule says: it is the last chance.
        if !closing && let Some(due) = backoff.next_attempt(state.fresh) {
            let now = Instant::now();
            if due > now {
                state = shared.wait(state, Some(due - now));
                continue;
            }
        }
        state.fresh = false;
        let before = state.ledger.generation();
        drop(state);
        let attempt = attempt(shared, &mut writer, before);
        state = shared.lock();
        record(shared, &mut state, &mut backoff, attempt);
        if closing {
            break;
        }
    }
    drop(state);
    let closed = writer.close();
    let mut state = shared.lock();
    let pending = state.ledger.has_changes();
    state.closed = Some(match (pending, closed) {
        (true, _) => Err(StoreError::Unsaved {
            path: shared.path.clone(),
            pending: state.ledger.pending(),
            reason: state
                .health
                .failure
                .as_ref()
                .map_or_else(String::new, |failure| failure.error.clone()),
        }),
        (false, result) => result,
    });
    drop(state);
    shared
        .progress
        .send_modify(|progress| progress.stopped = true);
    tracing::debug!("session store thread stopped");
}

/// One write and how it went.
struct Attempt {
    /// The changes it carried, up to this generation.
    generation: u64,
    /// It carried every session (the file was opened again).
    full: bool,
    sessions: usize,
    took: Duration,
    result: Result<(), StoreError>,
}

/// Writes what is pending, or everything if the file was opened again. `before` is the
/// ledger's generation when the attempt began: even one that fails before it copies the
/// changes has tried those.
fn attempt(shared: &Shared, writer: &mut Writer, before: u64) -> Attempt {
    let started = Instant::now();
    let prepared = match writer.prepare() {
        Ok(prepared) => prepared,
        Err(error) => {
            return Attempt {
                generation: before,
                full: false,
                sessions: 0,
                took: started.elapsed(),
                result: Err(error),
            };
        }
    };
    let full = prepared.full;
    let changes = shared.lock().ledger.changes(full);
    let result = prepared.db.write(&changes);
    if result.is_err() {
        writer.let_go();
    }
    Attempt {
        generation: changes.generation,
        full,
        sessions: changes.sessions.len() + changes.removed.len(),
        took: started.elapsed(),
        result,
    }
}

/// Marks what `attempt` wrote, or schedules the retry; logs a change of health once.
fn record(shared: &Shared, state: &mut State, backoff: &mut Backoff, attempt: Attempt) {
    let now = Utc::now();
    let path = shared.path.display();
    match attempt.result {
        Ok(()) => {
            state.ledger.written(attempt.generation);
            backoff.succeeded();
            state.health.last_saved = Some(now);
            state.health.last_save = attempt.took;
            state.health.save_durations.observe(attempt.took);
            if let Some(failure) = state.health.failure.take() {
                tracing::info!(
                    %path,
                    failing_for_secs = (now - failure.since).num_seconds(),
                    failed_attempts = failure.attempts,
                    sessions = attempt.sessions,
                    "the session database can be written again: everything kept in memory meanwhile is saved"
                );
            } else if attempt.full {
                tracing::info!(%path, sessions = attempt.sessions, "every session held is in the session database again");
            }
            shared.progress.send_modify(|progress| {
                progress.attempted = progress.attempted.max(attempt.generation);
                progress.saved = progress.saved.max(attempt.generation);
            });
        }
        Err(error) => {
            state.ledger.write_failed();
            let wait = backoff.failed(Instant::now());
            let next_retry = now + wait;
            let pending = state.ledger.pending();
            match &mut state.health.failure {
                None => {
                    tracing::warn!(
                        %path,
                        error = %crate::text::chain(&error),
                        pending_saves = pending,
                        retry_in_secs = wait.as_secs(),
                        "saving to the session database failed: sessions go on being enforced and accounted in memory, every change is kept, and saving is retried until it works"
                    );
                    state.health.failure = Some(Failure {
                        error: crate::text::chain_string(&error),
                        since: now,
                        attempts: backoff.failures(),
                        next_retry,
                    });
                }
                Some(failure) => {
                    tracing::debug!(error = %crate::text::chain(&error), attempt = backoff.failures(), pending_saves = pending, "saving to the session database failed again");
                    failure.error = crate::text::chain_string(&error);
                    failure.attempts = backoff.failures();
                    failure.next_retry = next_retry;
                }
            }
            shared.progress.send_modify(|progress| {
                progress.attempted = progress.attempted.max(attempt.generation);
            });
        }
    }
}
