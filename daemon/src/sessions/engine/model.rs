//! The values the session engine takes and gives back: clock readings, its configuration,
//! sessions and their states, the effects the caller must carry out, events and errors.
//! Plain data, no side effects.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    mac::MacAddr,
    sessions::data::{InvalidSession, SessionData},
};

/// A session's identity: its row id in the store.
pub type SessionId = i64;

/// A session and the client it belongs to. Serialises flat: `id`, `mac`, then every
/// [`SessionData`] field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: SessionId,
    /// The client that owns it; the engine never moves a session to another client.
    pub mac: MacAddr,
    #[serde(flatten)]
    pub data: SessionData,
}

/// A clock reading, passed in by the caller so the engine never reads a clock itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time since an arbitrary origin: never jumps. All time consumption is measured
    /// on it.
    pub mono: Duration,
    /// UTC wall time: can jump (NTP, a dead RTC battery). Used only for `started_at` and
    /// expiry, which the rules define in wall time.
    pub wall: DateTime<Utc>,
}

/// What the engine needs from the configuration; swapped whole on reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Bytes in one MB of `data_mb` (`accounting.bytes_per_mb`).
    pub bytes_per_mb: u64,
    /// Which waiting session a client starts next (`sessions.queue_order`).
    pub queue_order: QueueOrder,
    /// Pause a connected client after this long without traffic; `None` (or zero) = never.
    pub idle_pause: Option<Duration>,
    /// Speeds of sessions with `use_global_speed` (`speed.global_*_mbits`).
    pub global_down_mbits: u32,
    pub global_up_mbits: u32,
}

/// Which waiting session a client uses next.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueOrder {
    #[default]
    OldestFirst,
    NewestFirst,
}

impl QueueOrder {
    /// The names the configuration accepts, as serde spells them.
    pub(crate) const NAMES: &[&str] = &["oldest_first", "newest_first"];
}

/// A session's state as `hotspotctl sessions` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Never started, nothing consumed that ends it.
    Available,
    /// Its client is connected and consuming it.
    Running,
    /// Started, neither consumed nor expired, not running now.
    Paused,
    Consumed,
    Expired,
}

/// How a session ended: its state from then on, for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEnd {
    Consumed,
    Expired,
}

impl SessionEnd {
    /// The state it is shown as.
    #[must_use]
    pub const fn state(self) -> SessionState {
        match self {
            Self::Consumed => SessionState::Consumed,
            Self::Expired => SessionState::Expired,
        }
    }

    /// Its name in the database and in queries.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Consumed => "consumed",
            Self::Expired => "expired",
        }
    }

    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Consumed, Self::Expired]
            .into_iter()
            .find(|end| end.name() == name)
    }
}

/// A session that ended, handed over by [`super::Engine::take_ended`]: the engine has
/// forgotten it, the store keeps it as history.
#[derive(Clone, Debug, PartialEq)]
pub struct EndedSession {
    pub session: Session,
    pub end: SessionEnd,
}

/// A client's state as `hotspotctl clients` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientState {
    /// One of its sessions runs.
    Connected,
    /// Blocked, with a session to resume (or to pick) on `connect`.
    Paused,
    /// Blocked: never connected, or out of sessions.
    Disconnected,
}

/// Why a client was paused: decides whether its next packet resumes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseReason {
    /// `hotspotctl pause` or the API: only `connect` resumes.
    Operator,
    /// `sessions.idle_pause_secs` without traffic: the next packet resumes.
    Idle,
}

/// What the kernel must enforce for a client's running session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub mac: MacAddr,
    pub session_id: SessionId,
    /// Bytes the client may still pass, as of this decision; `None` = data does not count.
    /// Traffic not yet reported with [`super::Engine::traffic`] is not deducted.
    pub bytes_left: Option<u64>,
    /// Until the session must stop: the lesser of the time left (minus the carried fraction of
    /// a second) and the time until it expires; `None` = no deadline.
    pub run_for: Option<Duration>,
    /// Resolved speeds: the session's own, or the global ones with `use_global_speed`.
    pub down_mbits: u32,
    pub up_mbits: u32,
}

/// One thing the caller must do, in the order given (see the engine's module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Let the client run this session now: install or replace its kernel budget and speed.
    Grant(Grant),
    /// Block the client (paused, or out of sessions): remove its grant and shaping class.
    Revoke { mac: MacAddr },
    /// This session changed state (started, paused, resumed, consumed, expired, or time was
    /// credited on restore): write it to the store now.
    Save(SessionId),
    /// Tell listeners.
    Event(Event),
}

/// What happened, for logs, the API's event stream and hooks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    SessionStarted {
        id: SessionId,
        mac: MacAddr,
    },
    SessionResumed {
        id: SessionId,
        mac: MacAddr,
    },
    SessionPaused {
        id: SessionId,
        mac: MacAddr,
        reason: PauseReason,
    },
    SessionConsumed {
        id: SessionId,
        mac: MacAddr,
    },
    SessionExpired {
        id: SessionId,
        mac: MacAddr,
    },
    SessionRemoved {
        id: SessionId,
        mac: MacAddr,
    },
    /// The client went from disconnected to running `session_id`.
    ClientConnected {
        mac: MacAddr,
        session_id: SessionId,
    },
    /// The client has no session left to run.
    ClientDisconnected {
        mac: MacAddr,
    },
    /// The client was paused for lack of traffic.
    ClientIdle {
        mac: MacAddr,
    },
}

impl Event {
    /// The client the event is about.
    #[must_use]
    pub const fn mac(&self) -> MacAddr {
        match self {
            Self::SessionStarted { mac, .. }
            | Self::SessionResumed { mac, .. }
            | Self::SessionPaused { mac, .. }
            | Self::SessionConsumed { mac, .. }
            | Self::SessionExpired { mac, .. }
            | Self::SessionRemoved { mac, .. }
            | Self::ClientConnected { mac, .. }
            | Self::ClientDisconnected { mac }
            | Self::ClientIdle { mac } => *mac,
        }
    }
}

/// Why the engine refused a command; each message says what to do instead.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EngineError {
    #[error("session {id} cannot be added")]
    InvalidSession {
        id: SessionId,
        source: InvalidSession,
    },
    #[error(
        "session {id} exists already: remove it first with 'hotspotctl session remove --id {id}'"
    )]
    DuplicateSession { id: SessionId },
    #[error("there is no session {id}: list them with 'hotspotctl sessions'")]
    UnknownSession { id: SessionId },
    #[error(
        "client {mac} has no session left to run: add one with 'hotspotctl session add --mac {mac}'"
    )]
    NoSessionLeft { mac: MacAddr },
    #[error(
        "client {mac} is not connected, so there is nothing to pause: connect it with 'hotspotctl connect --mac {mac}'"
    )]
    NotConnected { mac: MacAddr },
}

/// What a client was doing when the daemon stopped, for [`super::Engine::restore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoredClient {
    pub mac: MacAddr,
    pub state: ClientState,
    /// The session it was running (connected) or would resume (paused).
    pub session_id: Option<SessionId>,
    /// Why a paused client was paused; `None` counts as the operator's pause, so a client is
    /// never resumed (and billed) on a guess.
    pub pause_reason: Option<PauseReason>,
    /// Time the kernel kept the session running while the daemon was down; zero after a
    /// reboot (downtime of the box is never billed).
    pub credit: Duration,
    /// Billable bytes the kernel let through while the daemon was down (since the last save),
    /// by the session they went to: billed before anything is decided, so a session that
    /// ran out meanwhile ends and its successor gets only what is really left.
    pub billed: Vec<(SessionId, u64)>,
}
