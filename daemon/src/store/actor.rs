//! The store thread: owns the SQLite connection and runs the commands [`StoreHandle`]s send,
//! one at a time, in the order sent (LibreQoS's writer actor). Side effects: one OS thread,
//! `hotspotd-store`, which lives until [`Command::Close`] or until every handle is dropped.
//!
//! [`StoreHandle`]: super::StoreHandle

use tokio::sync::mpsc;

use super::{Loaded, Reply, SaveBatch, SessionId, StoreError, sqlite::Db};
use crate::{mac::MacAddr, sessions::data::SessionData};

/// Commands waiting for the thread. A full queue makes senders wait, which is the
/// back-pressure wanted when the disk is slow; a periodic save is one command, not one per
/// session, so the queue stays short in normal running.
const QUEUE_LEN: usize = 256;

pub(super) enum Command {
    LoadAll {
        reply: Reply<Loaded>,
    },
    Insert {
        mac: MacAddr,
        data: SessionData,
        reply: Reply<SessionId>,
    },
    Update {
        id: SessionId,
        data: SessionData,
        reply: Reply<bool>,
    },
    SaveBatch {
        batch: SaveBatch,
        reply: Reply<()>,
    },
    Remove {
        id: SessionId,
        reply: Reply<bool>,
    },
    Reload {
        id: SessionId,
        reply: Reply<Option<(MacAddr, SessionData)>>,
    },
    Close {
        reply: Reply<()>,
    },
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The records are long and the replies say nothing; the command's name is what helps.
        let name = match self {
            Self::LoadAll { .. } => "LoadAll",
            Self::Insert { .. } => "Insert",
            Self::Update { .. } => "Update",
            Self::SaveBatch { .. } => "SaveBatch",
            Self::Remove { .. } => "Remove",
            Self::Reload { .. } => "Reload",
            Self::Close { .. } => "Close",
        };
        f.write_str(name)
    }
}

/// Starts the thread that owns `db` and returns the way to send it commands.
pub(super) fn spawn(db: Db) -> Result<mpsc::Sender<Command>, StoreError> {
    let (commands, queue) = mpsc::channel(QUEUE_LEN);
    std::thread::Builder::new()
        .name("hotspotd-store".to_owned())
        .spawn(move || serve(db, queue))
        .map_err(|source| StoreError::Thread { source })?;
    Ok(commands)
}

fn serve(mut db: Db, mut queue: mpsc::Receiver<Command>) {
    let mut closing = None;
    // `blocking_recv` parks this thread, never a runtime worker: the thread is not one of
    // tokio's.
    while let Some(command) = queue.blocking_recv() {
        match command {
            Command::LoadAll { reply } => answer(reply, db.load_all()),
            Command::Insert { mac, data, reply } => answer(reply, db.insert(mac, &data)),
            Command::Update { id, data, reply } => answer(reply, db.update(id, &data)),
            Command::SaveBatch { batch, reply } => answer(reply, db.save_batch(&batch)),
            Command::Remove { id, reply } => answer(reply, db.remove(id)),
            Command::Reload { id, reply } => answer(reply, db.reload(id)),
            Command::Close { reply } => {
                closing = Some(reply);
                break;
            }
        }
    }
    // Commands queued after a close are dropped with their replies, so their callers get
    // `Closed` rather than wait.
    drop(queue);
    let closed = db.close();
    match closing {
        Some(reply) => answer(reply, closed),
        None => {
            if let Err(error) = closed {
                tracing::warn!(%error, "closing the session database");
            }
        }
    }
    tracing::debug!("session store thread stopped");
}

fn answer<T>(reply: Reply<T>, result: Result<T, StoreError>) {
    // The caller may have stopped waiting (its future was dropped); what was done stays done.
    let _ = reply.send(result);
}
