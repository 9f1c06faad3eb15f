//! Whether the store's writes reach the disk: what the store thread records after each
//! attempt, and [`StoreHealth`], the view `GET /v1/status`, `hotspotctl status` and
//! `/metrics` show. Pure.

use std::{path::PathBuf, time::Duration};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `ok` while writes reach the disk; `degraded` while they fail and changes wait in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageState {
    Ok,
    Degraded,
}

/// The store's health, as the API shows it under `storage`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoreHealth {
    pub state: StorageState,
    /// The database file (`store.sqlite_path`).
    pub path: PathBuf,
    /// Why the last attempt failed, while degraded.
    pub error: Option<String>,
    /// When writes started failing, while degraded.
    pub since: Option<DateTime<Utc>>,
    /// Sessions whose latest change (sold, changed, removed) is not on disk yet.
    pub pending_saves: usize,
    /// Failed attempts in a row, while degraded.
    pub failed_attempts: u32,
    /// When the next attempt is due, while degraded. A new save brings it forward to one
    /// second after the last attempt.
    pub next_retry: Option<DateTime<Utc>>,
    /// When a write last reached the disk (since this start).
    pub last_saved: Option<DateTime<Utc>>,
    /// How long that write took, ms.
    pub last_save_ms: f64,
}

/// What the store thread knows about its writes.
#[derive(Debug, Default)]
pub(super) struct Health {
    pub failure: Option<Failure>,
    pub last_saved: Option<DateTime<Utc>>,
    pub last_save: Duration,
    /// Every write that reached the disk, for `/metrics`.
    pub save_durations: crate::histogram::Histogram,
}

/// The writes have been failing since `since`.
#[derive(Debug)]
pub(super) struct Failure {
    pub error: String,
    pub since: DateTime<Utc>,
    pub attempts: u32,
    pub next_retry: DateTime<Utc>,
}

impl Health {
    pub(super) fn view(&self, path: PathBuf, pending_saves: usize) -> StoreHealth {
        let failure = self.failure.as_ref();
        StoreHealth {
            state: if failure.is_some() {
                StorageState::Degraded
            } else {
                StorageState::Ok
            },
            path,
            error: failure.map(|failure| failure.error.clone()),
            since: failure.map(|failure| failure.since),
            pending_saves,
            failed_attempts: failure.map_or(0, |failure| failure.attempts),
            next_retry: failure.map(|failure| failure.next_retry),
            last_saved: self.last_saved,
            last_save_ms: self.last_save.as_secs_f64() * 1_000.0,
        }
    }
}
