//! The engine's transitions: crediting time, ending a session, picking and running the next,
//! pausing, resuming, granting. Each pushes its effects in the order the engine's module doc
//! gives; none has a side effect of its own.

use std::{collections::BTreeMap, time::Duration};

use super::model::QueueOrder;
use super::{
    Effect, Engine, Event, Grant, Now, PauseReason, Session, SessionId,
    state::{Client, End, Entry, Status, speed_mbits},
};
use crate::mac::MacAddr;

impl Engine {
    pub(super) fn status(&self, mac: MacAddr) -> Status {
        self.clients
            .get(&mac)
            .map_or(Status::Disconnected, |client| client.status)
    }

    pub(super) fn set_status(&mut self, mac: MacAddr, status: Status) {
        self.clients.entry(mac).or_insert_with(Client::new).status = status;
    }

    /// Connected clients and their sessions, collected so callers can mutate while iterating.
    pub(super) fn connected(&self) -> Vec<(MacAddr, SessionId)> {
        self.clients
            .iter()
            .filter_map(|(mac, client)| match client.status {
                Status::Connected { session, .. } => Some((*mac, session)),
                _ => None,
            })
            .collect()
    }

    /// Adds a session to the maps and indexes, as it is.
    pub(super) fn insert(&mut self, session: Session) {
        let (id, mac) = (session.id, session.mac);
        if let Some(at) = session.data.expires_at() {
            self.expiries.insert((at, id));
        }
        self.clients
            .entry(mac)
            .or_insert_with(Client::new)
            .sessions
            .insert(id);
        let entry = Entry::new(session, self.config.bytes_per_mb);
        self.sessions.insert(id, entry);
    }

    /// Marks a session that arrived already over as ended, without events: it did not end now.
    pub(super) fn settle_quietly(&mut self, id: SessionId, now: Now) {
        if let Some(entry) = self.sessions.get_mut(&id)
            && entry.ended.is_none()
        {
            entry.ended = entry.end_at(now.wall, self.config.bytes_per_mb);
            if entry.ended.is_some() {
                self.ended.insert(id);
            }
        }
    }

    pub(super) fn usable(&self, id: SessionId, now: Now) -> bool {
        self.sessions
            .get(&id)
            .is_some_and(|entry| entry.end_at(now.wall, self.config.bytes_per_mb).is_none())
    }

    /// Credits the running time since the last credit to the client's running session.
    pub(super) fn credit(&mut self, mac: MacAddr, now: Now) {
        self.credit_and_check(mac, now);
    }

    /// Adds `bytes` of billable traffic to session `id` of `mac`, if it counts data (rule 2)
    /// and has not ended.
    pub(super) fn bill(&mut self, mac: MacAddr, id: SessionId, bytes: u64) {
        if let Some(entry) = self.sessions.get_mut(&id)
            && entry.session.mac == mac
        {
            entry.bill(bytes, self.config.bytes_per_mb);
        }
    }

    /// Credits a connected client's running time; if its session is over, ends it and starts
    /// the next one (or disconnects the client).
    pub(super) fn settle(&mut self, mac: MacAddr, now: Now, effects: &mut Vec<Effect>) {
        if let Some((id, false)) = self.credit_and_check(mac, now) {
            self.finish_at(id, now, effects);
            self.chain(mac, now, effects);
        }
    }

    /// Credits the running time since the last credit to the client's running session and
    /// says which session that is and whether it is still usable; `None` if the client is not
    /// connected. One lookup in each map: every poll does this for every running client.
    fn credit_and_check(&mut self, mac: MacAddr, now: Now) -> Option<(SessionId, bool)> {
        let client = self.clients.get_mut(&mac)?;
        credit_running(
            &mut client.status,
            &mut self.sessions,
            now,
            self.config.bytes_per_mb,
        )
    }

    /// Ends a session that is over at `now` (once): `Save`, then its event.
    pub(super) fn finish_at(&mut self, id: SessionId, now: Now, effects: &mut Vec<Effect>) {
        let Some(entry) = self.sessions.get_mut(&id) else {
            return;
        };
        if entry.ended.is_some() {
            return;
        }
        let Some(end) = entry.end_at(now.wall, self.config.bytes_per_mb) else {
            return;
        };
        entry.ended = Some(end);
        let mac = entry.session.mac;
        self.ended.insert(id);
        effects.push(Effect::Save(id));
        effects.push(Effect::Event(match end {
            End::Consumed => Event::SessionConsumed { id, mac },
            End::Expired => Event::SessionExpired { id, mac },
        }));
    }

    /// The wall clock reached a session's expiry.
    pub(super) fn expire(&mut self, id: SessionId, now: Now, effects: &mut Vec<Effect>) {
        let Some(entry) = self.sessions.get(&id) else {
            return;
        };
        let mac = entry.session.mac;
        match self.status(mac) {
            Status::Connected { session, .. } if session == id => self.settle(mac, now, effects),
            Status::Paused {
                session: Some(session),
                reason,
            } if session == id => {
                self.finish_at(id, now, effects);
                self.orphan_paused(mac, reason, now, effects);
            }
            _ => self.finish_at(id, now, effects),
        }
    }

    /// The client's running session ended: the next one runs at once, or the client is out.
    pub(super) fn chain(&mut self, mac: MacAddr, now: Now, effects: &mut Vec<Effect>) {
        match self.pick_next(mac, now) {
            Some(next) => self.run(mac, next, now, effects),
            None => self.disconnect(mac, effects),
        }
    }

    /// A paused client lost the session it would resume: it stays paused if it has another
    /// (`connect` picks it; starting one now would start a session nobody asked to run), else
    /// it is out of sessions.
    pub(super) fn orphan_paused(
        &mut self,
        mac: MacAddr,
        reason: PauseReason,
        now: Now,
        effects: &mut Vec<Effect>,
    ) {
        if self.pick_next(mac, now).is_some() {
            self.set_status(
                mac,
                Status::Paused {
                    session: None,
                    reason,
                },
            );
        } else {
            self.disconnect(mac, effects);
        }
    }

    fn disconnect(&mut self, mac: MacAddr, effects: &mut Vec<Effect>) {
        self.set_status(mac, Status::Disconnected);
        effects.push(Effect::Revoke { mac });
        effects.push(Effect::Event(Event::ClientDisconnected { mac }));
    }

    /// Resumes a paused client: its session if still usable, else the next one, ending the
    /// old one first if it is over. Returns false, changing nothing, when there is none.
    pub(super) fn resume(&mut self, mac: MacAddr, now: Now, effects: &mut Vec<Effect>) -> bool {
        let Status::Paused { session, .. } = self.status(mac) else {
            return false;
        };
        let target = session
            .filter(|id| self.usable(*id, now))
            .or_else(|| self.pick_next(mac, now));
        let Some(target) = target else {
            return false;
        };
        if let Some(old) = session {
            self.finish_at(old, now, effects);
        }
        self.run(mac, target, now, effects);
        true
    }

    /// Rule 7: a started, usable session first (oldest by `created_at`, then id); else the
    /// first available one in `queue_order` (ties: lower id first when oldest first, higher id
    /// first when newest first — the exact reverse order).
    pub(super) fn pick_next(&self, mac: MacAddr, now: Now) -> Option<SessionId> {
        let client = self.clients.get(&mac)?;
        let mut started: Option<&Entry> = None;
        let mut fresh: Option<&Entry> = None;
        let usable = client
            .sessions
            .iter()
            .filter_map(|id| self.sessions.get(id))
            .filter(|entry| entry.end_at(now.wall, self.config.bytes_per_mb).is_none());
        for entry in usable {
            let key = entry.queue_key();
            if entry.session.data.started_at.is_some() {
                if started.is_none_or(|best| key < best.queue_key()) {
                    started = Some(entry);
                }
            } else if fresh.is_none_or(|best| match self.config.queue_order {
                QueueOrder::OldestFirst => key < best.queue_key(),
                QueueOrder::NewestFirst => key > best.queue_key(),
            }) {
                fresh = Some(entry);
            }
        }
        started.or(fresh).map(|entry| entry.session.id)
    }

    /// Runs `id` for the client now: starts it (rule 3) or resumes it, and grants it.
    pub(super) fn run(&mut self, mac: MacAddr, id: SessionId, now: Now, effects: &mut Vec<Effect>) {
        // Handing over from one session to the next is not activity; connecting or resuming is.
        let active_at = match self.status(mac) {
            Status::Connected { active_at, .. } => active_at,
            _ => now.mono,
        };
        self.set_status(
            mac,
            Status::Connected {
                session: id,
                credited_to: now.mono,
                active_at,
            },
        );
        let Some(entry) = self.sessions.get_mut(&id) else {
            return;
        };
        let first = entry.session.data.started_at.is_none();
        if first {
            entry.session.data.started_at = Some(now.wall);
            if let Some(at) = entry.session.data.expires_at() {
                self.expiries.insert((at, id));
            }
        }
        self.push_grant(mac, id, now, effects);
        effects.push(Effect::Save(id));
        effects.push(Effect::Event(if first {
            Event::SessionStarted { id, mac }
        } else {
            Event::SessionResumed { id, mac }
        }));
    }

    /// Pauses a connected client; a session that ran out as it was paused is ended instead,
    /// without starting the next one.
    pub(super) fn pause_client(
        &mut self,
        mac: MacAddr,
        reason: PauseReason,
        now: Now,
        effects: &mut Vec<Effect>,
    ) {
        self.credit(mac, now);
        let Some(id) = self.running_session(mac) else {
            return;
        };
        if !self.usable(id, now) {
            self.finish_at(id, now, effects);
            if self.pick_next(mac, now).is_some() {
                self.set_status(
                    mac,
                    Status::Paused {
                        session: None,
                        reason,
                    },
                );
                effects.push(Effect::Revoke { mac });
            } else {
                self.disconnect(mac, effects);
            }
            return;
        }
        self.set_status(
            mac,
            Status::Paused {
                session: Some(id),
                reason,
            },
        );
        effects.push(Effect::Revoke { mac });
        effects.push(Effect::Save(id));
        effects.push(Effect::Event(Event::SessionPaused { id, mac, reason }));
        if reason == PauseReason::Idle {
            effects.push(Effect::Event(Event::ClientIdle { mac }));
        }
    }

    /// A connected client found after a restart: credit what the kernel ran, then grant it
    /// again, or end it and go on with the next one.
    pub(super) fn restore_running(
        &mut self,
        mac: MacAddr,
        id: SessionId,
        credit: Duration,
        now: Now,
        effects: &mut Vec<Effect>,
    ) {
        self.set_status(
            mac,
            Status::Connected {
                session: id,
                credited_to: now.mono,
                active_at: now.mono,
            },
        );
        let Some(entry) = self.sessions.get_mut(&id) else {
            return;
        };
        let time_cons = entry.session.data.time_cons;
        entry.credit(credit);
        let credited = entry.session.data.time_cons != time_cons;
        let started = entry.session.data.started_at.is_some();
        if !self.usable(id, now) {
            self.finish_at(id, now, effects);
            self.chain(mac, now, effects);
        } else if !started {
            // Running but never marked started (its start was never saved): start it now.
            self.run(mac, id, now, effects);
        } else {
            self.push_grant(mac, id, now, effects);
            if credited {
                effects.push(Effect::Save(id));
            }
        }
    }

    pub(super) fn push_grant(
        &self,
        mac: MacAddr,
        id: SessionId,
        now: Now,
        effects: &mut Vec<Effect>,
    ) {
        let Some(entry) = self.sessions.get(&id) else {
            return;
        };
        let data = &entry.session.data;
        let time_left = data
            .time_left_secs()
            .map(|secs| Duration::from_secs(secs).saturating_sub(entry.carry));
        let until_expiry = data.expires_at().map(|at| {
            at.signed_duration_since(now.wall)
                .to_std()
                .unwrap_or(Duration::ZERO)
        });
        let run_for = match (time_left, until_expiry) {
            (Some(left), Some(until)) => Some(left.min(until)),
            (left, until) => left.or(until),
        };
        let (down_mbits, up_mbits) = speed_mbits(&self.config, data);
        effects.push(Effect::Grant(Grant {
            mac,
            session_id: id,
            bytes_left: entry.bytes_left(self.config.bytes_per_mb),
            run_for,
            down_mbits,
            up_mbits,
        }));
    }
}

/// If `status` is running a session: credits it the running time since the last credit, and
/// says which session it is and whether it is still usable at `now`.
pub(super) fn credit_running(
    status: &mut Status,
    sessions: &mut BTreeMap<SessionId, Entry>,
    now: Now,
    bytes_per_mb: u64,
) -> Option<(SessionId, bool)> {
    let Status::Connected {
        session,
        credited_to,
        ..
    } = status
    else {
        return None;
    };
    let elapsed = now.mono.saturating_sub(*credited_to);
    // `max`: a reading older than the last one must not credit the same time twice.
    *credited_to = (*credited_to).max(now.mono);
    let usable = sessions.get_mut(session).is_some_and(|entry| {
        entry.credit(elapsed);
        entry.end_at(now.wall, bytes_per_mb).is_none()
    });
    Some((*session, usable))
}
