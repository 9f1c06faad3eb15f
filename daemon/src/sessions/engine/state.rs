//! The engine's records: a session with its bookkeeping ([`Entry`]), a client's status, and the
//! speed a session resolves to. Pure data and arithmetic, no side effects.

use std::{collections::BTreeSet, time::Duration};

use chrono::{DateTime, Utc};

use super::{ClientState, EngineConfig, PauseReason, Session, SessionId};
use crate::sessions::data::SessionData;

/// How a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum End {
    Consumed,
    Expired,
}

/// A session and the engine's bookkeeping for it.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) session: Session,
    /// Running time under a whole second not yet added to `time_cons` (rule 5). It stays with
    /// the session across pauses so that resuming continues it and nothing drifts.
    pub(super) carry: Duration,
    /// Set once the engine has ended the session and said so, so it ends (and is saved and
    /// announced) exactly once.
    pub(super) ended: Option<End>,
}

impl Entry {
    /// Whether the session is over at `wall`, and how; consumption wins over expiry.
    pub(super) fn end_at(&self, wall: DateTime<Utc>) -> Option<End> {
        let data = &self.session.data;
        self.ended.or_else(|| {
            if data.is_consumed() {
                Some(End::Consumed)
            } else if data.is_expired(wall) {
                Some(End::Expired)
            } else {
                None
            }
        })
    }

    /// Adds `elapsed` running time: whole seconds to `time_cons` (never past `time_secs`), the
    /// rest to the carry.
    pub(super) fn credit(&mut self, elapsed: Duration) {
        let data = &mut self.session.data;
        if !data.kind.counts_time() {
            return;
        }
        let total = self.carry.saturating_add(elapsed);
        self.carry = Duration::from_nanos(u64::from(total.subsec_nanos()));
        let limit = data.time_secs.max(data.time_cons);
        data.time_cons = data.time_cons.saturating_add(total.as_secs()).min(limit);
        if data.time_cons >= data.time_secs {
            self.carry = Duration::ZERO;
        }
    }

    /// Key of the queue order (rule 7): by `created_at`, ties by id.
    pub(super) fn queue_key(&self) -> (DateTime<Utc>, SessionId) {
        (self.session.data.created_at, self.session.id)
    }
}

/// What a client is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Status {
    Disconnected,
    Connected {
        session: SessionId,
        /// Monotonic time up to which running time has been credited.
        credited_to: Duration,
        /// Monotonic time of its last activity, or of its connect/resume (idle pause).
        active_at: Duration,
    },
    /// `session` is the one `connect` resumes; `None` when it ended or was removed while
    /// paused, so `connect` picks the next one.
    Paused {
        session: Option<SessionId>,
        reason: PauseReason,
    },
}

#[derive(Debug)]
pub(super) struct Client {
    /// Every session it holds, whatever their state: the queue is picked from these alone.
    pub(super) sessions: BTreeSet<SessionId>,
    pub(super) status: Status,
}

impl Client {
    pub(super) const fn new() -> Self {
        Self {
            sessions: BTreeSet::new(),
            status: Status::Disconnected,
        }
    }

    /// Its state as the engine shows it, and its session: the running one, or the one it
    /// resumes when paused.
    pub(super) const fn state_and_session(&self) -> (ClientState, Option<SessionId>) {
        match self.status {
            Status::Disconnected => (ClientState::Disconnected, None),
            Status::Connected { session, .. } => (ClientState::Connected, Some(session)),
            Status::Paused { session, .. } => (ClientState::Paused, session),
        }
    }
}

/// Rule 10: the session's own speeds, or the global ones with `use_global_speed` — and for a
/// stored session with a speed `<= 0` (validation keeps them out of `add`), rather than block.
pub(super) fn speed_mbits(config: &EngineConfig, data: &SessionData) -> (u32, u32) {
    let global = (config.global_down_mbits, config.global_up_mbits);
    if data.use_global_speed {
        return global;
    }
    match (u32::try_from(data.down_mbits), u32::try_from(data.up_mbits)) {
        (Ok(down), Ok(up)) if down > 0 && up > 0 => (down, up),
        _ => global,
    }
}
