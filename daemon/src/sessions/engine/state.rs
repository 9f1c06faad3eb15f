//! The engine's records: a session with its bookkeeping ([`Entry`]), a client's status, and the
//! speed a session resolves to. Pure data and arithmetic, no side effects.

use std::{collections::BTreeSet, time::Duration};

use chrono::{DateTime, Utc};

use super::{ClientState, EngineConfig, PauseReason, Session, SessionId};
use crate::sessions::data::SessionData;

pub(super) use super::model::SessionEnd as End;

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
    /// Billable bytes consumed, the count of record for data (rule 6): whole bytes, so that
    /// "consumed" and the kernel's budget are decided on the same integer. `data_cons` is
    /// derived from it at every bill.
    pub(super) data_cons_bytes: u64,
}

impl Entry {
    /// A session as it arrives (sold or restored), with what it consumed in bytes of
    /// `bytes_per_mb`.
    pub(super) fn new(session: Session, bytes_per_mb: u64) -> Self {
        let data_cons_bytes = session.data.data_cons_bytes(bytes_per_mb);
        Self {
            session,
            carry: Duration::ZERO,
            ended: None,
            data_cons_bytes,
        }
    }

    /// Adds `bytes` of billable traffic if the session counts data (rule 2) and has not
    /// ended; `data_cons` follows.
    pub(super) fn bill(&mut self, bytes: u64, bytes_per_mb: u64) {
        if self.ended.is_none() && self.session.data.kind.counts_data() {
            self.data_cons_bytes = self.data_cons_bytes.saturating_add(bytes);
            self.session
                .data
                .set_data_cons_bytes(self.data_cons_bytes, bytes_per_mb);
        }
    }

    /// Bytes the session may still pass; `None` when data does not count.
    pub(super) fn bytes_left(&self, bytes_per_mb: u64) -> Option<u64> {
        self.session
            .data
            .bytes_left(self.data_cons_bytes, bytes_per_mb)
    }

    /// Whether the session is over at `wall`, and how; consumption wins over expiry.
    pub(super) fn end_at(&self, wall: DateTime<Utc>, bytes_per_mb: u64) -> Option<End> {
        let data = &self.session.data;
        self.ended.or_else(|| {
            if data.is_consumed(self.data_cons_bytes, bytes_per_mb) {
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
