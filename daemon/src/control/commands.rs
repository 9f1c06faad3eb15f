//! What the API asks of the control task, and how the task answers: each command carries a
//! one-shot channel for its reply. The handlers run on the control task, between polls.

use tokio::sync::{mpsc, oneshot};

use super::{Control, now};
use crate::{
    api::{ClientView, SessionView, StatusView},
    mac::MacAddr,
    sessions::{
        SessionData,
        engine::{ClientState, EngineError, Session, SessionId},
    },
    store::StoreError,
};

/// A request to the control task.
pub enum Command {
    Clients {
        reply: oneshot::Sender<Vec<ClientView>>,
    },
    /// One client; `None` if the daemon does not know it.
    Client {
        mac: MacAddr,
        reply: oneshot::Sender<Option<ClientView>>,
    },
    Status {
        reply: oneshot::Sender<StatusView>,
    },
    Sessions {
        mac: Option<MacAddr>,
        reply: oneshot::Sender<Vec<SessionView>>,
    },
    AddSession {
        mac: MacAddr,
        data: SessionData,
        connect: bool,
        reply: oneshot::Sender<Result<SessionView, CommandError>>,
    },
    RemoveSession {
        id: SessionId,
        reply: oneshot::Sender<Result<(), CommandError>>,
    },
    Connect {
        mac: MacAddr,
        reply: oneshot::Sender<Result<ClientView, CommandError>>,
    },
    Pause {
        mac: MacAddr,
        reply: oneshot::Sender<Result<ClientView, CommandError>>,
    },
    /// A new, validated configuration (SIGHUP): applies what can change live.
    Reload {
        config: std::sync::Arc<crate::config::Config>,
    },
    /// What `/metrics` shows; the API renders it, off this task.
    Metrics {
        reply: oneshot::Sender<crate::metrics::Snapshot>,
    },
}

/// Why a command was refused.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("the session cannot be sold: {0}")]
    Invalid(#[from] crate::sessions::InvalidSession),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the session could not be stored: {0}")]
    Store(#[from] StoreError),
}

/// The control task is gone: the daemon is shutting down.
#[derive(Debug, thiserror::Error)]
#[error("hotspotd is shutting down")]
pub struct ControlGone;

/// A cloneable handle for sending [`Command`]s.
#[derive(Clone)]
pub struct Commands(mpsc::Sender<Command>);

/// Commands queued while a poll runs; the API waits when it is full.
const COMMAND_QUEUE_LEN: usize = 256;

#[must_use]
pub fn channel() -> (Commands, mpsc::Receiver<Command>) {
    let (sender, receiver) = mpsc::channel(COMMAND_QUEUE_LEN);
    (Commands(sender), receiver)
}

impl Commands {
    /// Sends a command that has no reply.
    pub async fn tell(&self, command: Command) -> Result<(), ControlGone> {
        self.0.send(command).await.map_err(|_| ControlGone)
    }

    /// Sends the command `make` builds and waits for its reply.
    pub async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, ControlGone> {
        let (reply, answer) = oneshot::channel();
        self.0.send(make(reply)).await.map_err(|_| ControlGone)?;
        answer.await.map_err(|_| ControlGone)
    }
}

impl Control {
    /// Answers one command. A requester that gave up has dropped its receiver; its answer is
    /// then dropped too.
    pub(super) async fn handle(&mut self, command: Command) {
        match command {
            Command::Clients { reply } => {
                let _ = reply.send(self.client_views());
            }
            Command::Client { mac, reply } => {
                let _ = reply.send(self.known_client_view(mac));
            }
            Command::Status { reply } => {
                let _ = reply.send(self.status_view());
            }
            Command::Sessions { mac, reply } => {
                let _ = reply.send(self.session_views(mac));
            }
            Command::AddSession {
                mac,
                data,
                connect,
                reply,
            } => {
                self.client_count.set(None);
                let _ = reply.send(self.add_session(mac, data, connect).await);
            }
            Command::RemoveSession { id, reply } => {
                self.client_count.set(None);
                let _ = reply.send(self.remove_session(id).await);
            }
            Command::Connect { mac, reply } => {
                let result = self.engine.connect(mac, now());
                let _ = reply.send(self.after(result, mac).await);
            }
            Command::Pause { mac, reply } => {
                let result = self.engine.pause(mac, now());
                let _ = reply.send(self.after(result, mac).await);
            }
            Command::Reload { config } => self.reload(config).await,
            Command::Metrics { reply } => {
                let _ = reply.send(self.metrics_snapshot());
            }
        }
    }

    /// Carries out a command's effects, saves, and answers with the client as it is now.
    async fn after(
        &mut self,
        result: Result<Vec<crate::sessions::engine::Effect>, EngineError>,
        mac: MacAddr,
    ) -> Result<ClientView, CommandError> {
        let effects = result?;
        // Also when there are no effects: pausing a paused client changes whose pause it is.
        self.unsaved_clients.insert(mac);
        self.apply(effects, now());
        self.save(false).await;
        Ok(self.client_view(mac))
    }

    async fn add_session(
        &mut self,
        mac: MacAddr,
        data: SessionData,
        connect: bool,
    ) -> Result<SessionView, CommandError> {
        // Checked before it is stored, so a bad session leaves no row behind.
        data.validate()?;
        let id = self.store.insert(mac, data.clone()).await?;
        let now = now();
        let mut effects = self.engine.add(Session { id, mac, data }, now)?;
        if connect && self.engine.client_state(mac) != ClientState::Connected {
            effects.extend(self.engine.connect(mac, now)?);
        }
        self.unsaved_clients.insert(mac);
        self.apply(effects, now);
        self.save(false).await;
        self.session_view(id)
            .ok_or(CommandError::Engine(EngineError::UnknownSession { id }))
    }

    /// Deletes from the store first: if that fails, nothing has changed; the engine then
    /// forgets the session (and chains or disconnects its client if it was running).
    async fn remove_session(&mut self, id: SessionId) -> Result<(), CommandError> {
        let Some(mac) = self.engine.session(id).map(|session| session.mac) else {
            return Err(EngineError::UnknownSession { id }.into());
        };
        self.store.remove(id).await?;
        let now = now();
        let effects = self.engine.remove(id, now)?;
        // A client left with no session is forgotten by the engine, and so by the save.
        self.unsaved_clients.insert(mac);
        self.apply(effects, now);
        self.save(false).await;
        Ok(())
    }
}
