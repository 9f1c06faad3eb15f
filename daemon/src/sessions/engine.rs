//! The session engine: decides, for every client, which of its sessions runs, what it has
//! consumed, and when it starts, pauses, resumes, ends and hands over to the next one
//! (`shared/docs/sessions.md`, rules 1–10 and 12). A pure state machine with no side effects:
//! the caller passes the clock in ([`Now`]) and carries out the [`Effect`]s it gets back
//! (kernel grants, store saves, events). No I/O, no clock, no tasks.
//!
//! # Clocks
//! Time consumption is measured on `Now::mono` only, so a wall-clock jump (NTP, a dead RTC) never
//! bills or refunds time. `started_at` and expiry are wall time by definition (rule 4), taken
//! as given: the caller's clock (`crate::clock`) sees a step of the system clock and hands it
//! to [`Engine::shift_wall`] before anything else, so that recorded moments keep naming the
//! same instants and a jump neither expires a session early nor extends it.
//!
//! # Order of effects
//! Within one call, effects come per client (in MAC order when several clients change), and
//! for each client:
//! 1. for each session that ended (consumed, expired): `Save`, then its event; for one removed,
//!    `SessionRemoved` alone (the caller deletes it);
//! 2. the client's kernel effect: `Grant` of the session that now runs (straight after the
//!    previous session's end, with no `Revoke` between: no gap) or `Revoke`;
//! 3. for the session that now runs or was paused: `Save`, then `SessionStarted`,
//!    `SessionResumed` or `SessionPaused`;
//! 4. the client's own event: `ClientConnected`, `ClientDisconnected` or `ClientIdle`.
//!
//! `tick` first handles the sessions whose expiry came by the wall clock (in order of expiry),
//! then every connected client.

pub mod model;
mod state;
#[cfg(test)]
mod tests;
mod transitions;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

pub use self::model::{
    ClientState, Effect, EndedSession, EngineConfig, EngineError, Event, Grant, Now, PauseReason,
    QueueOrder, RestoredClient, Session, SessionEnd, SessionId, SessionState,
};
use self::state::{Client, End, Entry, Status, speed_mbits};
use self::transitions::credit_running;
use crate::{clock::Step, mac::MacAddr, sessions::SessionData};

/// The state machine; see the module doc.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    sessions: BTreeMap<SessionId, Entry>,
    clients: BTreeMap<MacAddr, Client>,
    /// Started, not yet ended sessions that expire, by expiry, so `tick` finds the due ones
    /// (paused ones too: expiry runs while paused) without scanning every session.
    expiries: BTreeSet<(DateTime<Utc>, SessionId)>,
    /// Sessions that ended and are still held, for [`Engine::take_ended`]: an ended session
    /// is history, kept by the store, not in memory (a box sells thousands a month).
    ended: BTreeSet<SessionId>,
}

impl Engine {
    #[must_use]
    pub fn new(config: EngineConfig) -> Self {
        Self {
            config,
            sessions: BTreeMap::new(),
            clients: BTreeMap::new(),
            expiries: BTreeSet::new(),
            ended: BTreeSet::new(),
        }
    }

    #[must_use]
    pub const fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Live reload. Re-grants running sessions whose resolved speed changed (global speeds with
    /// `use_global_speed`) or whose byte budget changed (`bytes_per_mb` with data counting).
    #[must_use = "the effects must be carried out"]
    pub fn set_config(&mut self, config: EngineConfig, now: Now) -> Vec<Effect> {
        let old = std::mem::replace(&mut self.config, config);
        if old.bytes_per_mb != self.config.bytes_per_mb {
            // The MB consumed stay what was sold and used; their bytes follow the new MB.
            for entry in self.sessions.values_mut() {
                entry.data_cons_bytes =
                    entry.session.data.data_cons_bytes(self.config.bytes_per_mb);
            }
        }
        let mut effects = Vec::new();
        for (mac, id) in self.connected() {
            let Some(entry) = self.sessions.get(&id) else {
                continue;
            };
            let data = &entry.session.data;
            let budget_changed =
                data.kind.counts_data() && old.bytes_per_mb != self.config.bytes_per_mb;
            if budget_changed || speed_mbits(&old, data) != speed_mbits(&self.config, data) {
                self.settle(mac, now, &mut effects);
                // When it ended just now, the next session's Grant is already in `effects`.
                if self.running_session(mac) == Some(id) {
                    self.push_grant(mac, id, now, &mut effects);
                }
            }
        }
        effects
    }

    /// Stores a new session. Does not connect its client.
    pub fn add(&mut self, session: Session, now: Now) -> Result<Vec<Effect>, EngineError> {
        let id = session.id;
        session
            .data
            .validate()
            .map_err(|source| EngineError::InvalidSession { id, source })?;
        if self.sessions.contains_key(&id) {
            return Err(EngineError::DuplicateSession { id });
        }
        self.insert(session);
        self.settle_quietly(id, now);
        Ok(Vec::new())
    }

    /// Drops a session. If it was running, its client goes on with the next one at once (or is
    /// disconnected); if it was the one a paused client would resume, `connect` will pick the
    /// next one. The caller deletes it from the store: there is no `Save` for it.
    pub fn remove(&mut self, id: SessionId, now: Now) -> Result<Vec<Effect>, EngineError> {
        let mac = self
            .sessions
            .get(&id)
            .map(|entry| entry.session.mac)
            .ok_or(EngineError::UnknownSession { id })?;
        let status = self.status(mac);
        if matches!(status, Status::Connected { session, .. } if session == id) {
            self.credit(mac, now);
        }
        self.ended.remove(&id);
        if let Some(entry) = self.sessions.remove(&id)
            && let Some(at) = entry.session.data.expires_at()
        {
            self.expiries.remove(&(at, id));
        }
        if let Some(client) = self.clients.get_mut(&mac) {
            client.sessions.remove(&id);
        }
        let mut effects = vec![Effect::Event(Event::SessionRemoved { id, mac })];
        match status {
            Status::Connected { session, .. } if session == id => {
                self.chain(mac, now, &mut effects);
            }
            Status::Paused {
                session: Some(session),
                reason,
            } if session == id => self.orphan_paused(mac, reason, now, &mut effects),
            _ => {}
        }
        if let Some(client) = self.clients.get(&mac)
            && client.sessions.is_empty()
            && client.status == Status::Disconnected
        {
            self.clients.remove(&mac);
        }
        Ok(effects)
    }

    /// Changes session `id`'s record as `change` says (a RADIUS change of authorization:
    /// more time or data, another speed), given the record as credited up to `now`. A running
    /// session's grant is replaced at once; one the change used up ends, and the next starts.
    /// On error (the new record is invalid) nothing changed.
    pub fn change(
        &mut self,
        id: SessionId,
        now: Now,
        change: impl FnOnce(&SessionData, u64) -> SessionData,
    ) -> Result<Vec<Effect>, EngineError> {
        let mac = self
            .sessions
            .get(&id)
            .map(|entry| entry.session.mac)
            .ok_or(EngineError::UnknownSession { id })?;
        let running = self.running_session(mac) == Some(id);
        if running {
            self.credit(mac, now);
        }
        let entry = self
            .sessions
            .get_mut(&id)
            .ok_or(EngineError::UnknownSession { id })?;
        let new = change(&entry.session.data, entry.data_cons_bytes);
        new.validate()
            .map_err(|source| EngineError::InvalidSession { id, source })?;
        let old_expiry = entry.session.data.expires_at();
        entry.session.data = new;
        let new_expiry = entry.session.data.expires_at();
        if let Some(at) = old_expiry {
            self.expiries.remove(&(at, id));
        }
        if let Some(at) = new_expiry {
            self.expiries.insert((at, id));
        }
        let mut effects = vec![Effect::Save(id)];
        if running {
            if self.usable(id, now) {
                self.push_grant(mac, id, now, &mut effects);
            } else {
                self.settle(mac, now, &mut effects);
            }
        }
        Ok(effects)
    }

    /// Gives session `id` to client `to` (a voucher moved to another device), with all it has
    /// consumed. If its client was running it, that client's time is credited up to `now`
    /// and it goes on with its next session at once (or is disconnected), as when the
    /// session is removed; the caller bills that client's counters first. Does not connect
    /// `to`. On error nothing changed.
    pub fn move_session(
        &mut self,
        id: SessionId,
        to: MacAddr,
        now: Now,
    ) -> Result<Vec<Effect>, EngineError> {
        let from = self
            .sessions
            .get(&id)
            .map(|entry| entry.session.mac)
            .ok_or(EngineError::UnknownSession { id })?;
        if from == to {
            return Ok(Vec::new());
        }
        let status = self.status(from);
        if matches!(status, Status::Connected { session, .. } if session == id) {
            self.credit(from, now);
        }
        if let Some(client) = self.clients.get_mut(&from) {
            client.sessions.remove(&id);
        }
        if let Some(entry) = self.sessions.get_mut(&id) {
            entry.session.mac = to;
        }
        self.clients
            .entry(to)
            .or_insert_with(state::Client::new)
            .sessions
            .insert(id);
        let mut effects = vec![Effect::Save(id)];
        match status {
            Status::Connected { session, .. } if session == id => {
                self.chain(from, now, &mut effects);
            }
            Status::Paused {
                session: Some(session),
                reason,
            } if session == id => self.orphan_paused(from, reason, now, &mut effects),
            _ => {}
        }
        if let Some(client) = self.clients.get(&from)
            && client.sessions.is_empty()
            && client.status == Status::Disconnected
        {
            self.clients.remove(&from);
        }
        Ok(effects)
    }

    /// Starts or resumes the client's session (rules 3, 7, 9): the paused one if it is still
    /// usable, else the next in the queue. Nothing to do when it already runs a usable one.
    /// On error nothing changed.
    pub fn connect(&mut self, mac: MacAddr, now: Now) -> Result<Vec<Effect>, EngineError> {
        let mut effects = Vec::new();
        match self.status(mac) {
            Status::Connected { session, .. } => {
                self.credit(mac, now);
                if !self.usable(session, now) {
                    if self.pick_next(mac, now).is_none() {
                        return Err(EngineError::NoSessionLeft { mac });
                    }
                    self.settle(mac, now, &mut effects);
                }
            }
            Status::Paused { .. } => {
                if !self.resume(mac, now, &mut effects) {
                    return Err(EngineError::NoSessionLeft { mac });
                }
            }
            Status::Disconnected => {
                let next = self
                    .pick_next(mac, now)
                    .ok_or(EngineError::NoSessionLeft { mac })?;
                self.run(mac, next, now, &mut effects);
                effects.push(Effect::Event(Event::ClientConnected {
                    mac,
                    session_id: next,
                }));
            }
        }
        Ok(effects)
    }

    /// Pauses a connected client on the operator's word (rule 9): time and data freeze, its
    /// traffic is blocked, and only `connect` resumes it. Pausing a client paused for idleness
    /// makes the pause the operator's (it no longer resumes on traffic).
    pub fn pause(&mut self, mac: MacAddr, now: Now) -> Result<Vec<Effect>, EngineError> {
        let mut effects = Vec::new();
        match self.status(mac) {
            Status::Connected { .. } => {
                self.pause_client(mac, PauseReason::Operator, now, &mut effects);
            }
            Status::Paused { session, .. } => self.set_status(
                mac,
                Status::Paused {
                    session,
                    reason: PauseReason::Operator,
                },
            ),
            Status::Disconnected => return Err(EngineError::NotConnected { mac }),
        }
        Ok(effects)
    }

    /// Traffic accounted for one client since the last call: `billable_bytes` (up + down) and
    /// whether any of its counters moved (`active`: billable, local or dropped). Bills data
    /// only to a running session (rule 6: traffic while paused or disconnected was blocked and
    /// is billed to nobody); activity resumes a client paused for idleness.
    #[must_use = "the effects must be carried out"]
    pub fn traffic(
        &mut self,
        mac: MacAddr,
        billable_bytes: u64,
        active: bool,
        now: Now,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        let Some(client) = self.clients.get_mut(&mac) else {
            return effects;
        };
        match &mut client.status {
            Status::Connected {
                session, active_at, ..
            } => {
                if active {
                    *active_at = (*active_at).max(now.mono);
                }
                let session = *session;
                self.bill(mac, session, billable_bytes);
                self.settle(mac, now, &mut effects);
            }
            Status::Paused {
                reason: PauseReason::Idle,
                ..
            } if active => {
                // With nothing left to resume it stays paused; `connect` reports why.
                self.resume(mac, now, &mut effects);
            }
            _ => {}
        }
        effects
    }

    /// [`Engine::traffic`] for many active clients at once: `traffic` is each one's billable
    /// bytes, in MAC order, each MAC once (what a poll of the counters gives). The same
    /// decisions and effects as calling `traffic` for each in turn, with one pass over the
    /// clients instead of lookups by MAC; only a client whose session ended or who resumes
    /// from an idle pause takes the full path.
    #[must_use = "the effects must be carried out"]
    pub fn traffic_sorted(&mut self, traffic: &[(MacAddr, u64)], now: Now) -> Vec<Effect> {
        let bytes_per_mb = self.config.bytes_per_mb;
        let mut due = Vec::new();
        let mut clients = self.clients.iter_mut().peekable();
        for (mac, billable_bytes) in traffic {
            while clients.next_if(|(known, _)| *known < mac).is_some() {}
            let Some((_, client)) = clients.next_if(|(known, _)| *known == mac) else {
                continue;
            };
            match &mut client.status {
                Status::Connected {
                    session, active_at, ..
                } => {
                    *active_at = (*active_at).max(now.mono);
                    if let Some(entry) = self.sessions.get_mut(session) {
                        entry.bill(*billable_bytes, bytes_per_mb);
                    }
                    if let Some((_, false)) =
                        credit_running(&mut client.status, &mut self.sessions, now, bytes_per_mb)
                    {
                        due.push(*mac);
                    }
                }
                Status::Paused {
                    reason: PauseReason::Idle,
                    ..
                } => due.push(*mac),
                _ => {}
            }
        }
        let mut effects = Vec::new();
        for mac in due {
            match self.status(mac) {
                // Credited above: this ends the session and starts the next.
                Status::Connected { .. } => self.settle(mac, now, &mut effects),
                Status::Paused { .. } => {
                    self.resume(mac, now, &mut effects);
                }
                Status::Disconnected => {}
            }
        }
        effects
    }

    /// Periodic work: ends sessions whose expiry came (running or not: expiry runs while
    /// paused), credits running time, ends consumed sessions and starts the next, and pauses
    /// clients idle for `idle_pause`.
    #[must_use = "the effects must be carried out"]
    pub fn tick(&mut self, now: Now) -> Vec<Effect> {
        let mut effects = Vec::new();
        while let Some(&(at, id)) = self.expiries.first()
            && at <= now.wall
        {
            self.expiries.pop_first();
            self.expire(id, now, &mut effects);
        }
        let idle_pause = self.config.idle_pause.filter(|idle| !idle.is_zero());
        // One pass in MAC order credits every running client; only a client whose session
        // is over or who may be idle takes the full path below (its credit is then 0).
        let mut due = Vec::new();
        let bytes_per_mb = self.config.bytes_per_mb;
        for (mac, client) in &mut self.clients {
            let Some((_, usable)) =
                credit_running(&mut client.status, &mut self.sessions, now, bytes_per_mb)
            else {
                continue;
            };
            let idle = matches!(
                (idle_pause, client.status),
                (Some(idle), Status::Connected { active_at, .. })
                    if now.mono.saturating_sub(active_at) >= idle
            );
            if !usable || idle {
                due.push(*mac);
            }
        }
        for mac in due {
            self.settle(mac, now, &mut effects);
            if let (Some(idle), Status::Connected { active_at, .. }) =
                (idle_pause, self.status(mac))
                && now.mono.saturating_sub(active_at) >= idle
            {
                self.pause_client(mac, PauseReason::Idle, now, &mut effects);
            }
        }
        effects
    }

    /// Replaces the engine's state with what the store and the kernel say after a restart:
    /// every session, and what each client was doing. Each client's `billed` bytes are added
    /// to their sessions first. A connected client's session is credited `credit` (time the
    /// kernel ran it meanwhile) and granted again, or ended and followed by the next one if it
    /// ran out meanwhile. Paused and disconnected clients are revoked; a
    /// paused one keeps its `pause_reason` (the operator's when unknown). Sessions no client was
    /// using that ended meanwhile are marked so without events.
    #[must_use = "the effects must be carried out"]
    pub fn restore(
        &mut self,
        sessions: Vec<Session>,
        clients: Vec<RestoredClient>,
        now: Now,
    ) -> Vec<Effect> {
        self.sessions.clear();
        self.clients.clear();
        self.expiries.clear();
        self.ended.clear();
        for session in sessions {
            self.insert(session);
        }
        let clients: BTreeMap<MacAddr, RestoredClient> = clients
            .into_iter()
            .map(|client| (client.mac, client))
            .collect();
        let mut effects = Vec::new();
        for (mac, restored) in clients {
            self.clients.entry(mac).or_insert_with(Client::new);
            for (id, bytes) in &restored.billed {
                self.bill(mac, *id, *bytes);
            }
            let session = restored.session_id.filter(|id| {
                self.sessions
                    .get(id)
                    .is_some_and(|entry| entry.session.mac == mac)
            });
            match (restored.state, session) {
                (ClientState::Connected, Some(id)) => {
                    self.restore_running(mac, id, restored.credit, now, &mut effects);
                }
                (ClientState::Connected, None) => self.chain(mac, now, &mut effects),
                (ClientState::Paused, session) => {
                    let reason = restored.pause_reason.unwrap_or(PauseReason::Operator);
                    self.set_status(mac, Status::Paused { session, reason });
                    match session {
                        Some(id) if !self.usable(id, now) => {
                            self.finish_at(id, now, &mut effects);
                            self.orphan_paused(mac, reason, now, &mut effects);
                        }
                        None => self.orphan_paused(mac, reason, now, &mut effects),
                        Some(_) => {}
                    }
                    if matches!(self.status(mac), Status::Paused { .. }) {
                        effects.push(Effect::Revoke { mac });
                    }
                }
                (ClientState::Disconnected, _) => effects.push(Effect::Revoke { mac }),
            }
        }
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            self.settle_quietly(id, now);
        }
        effects
    }

    /// The wall clock stepped (`crate::clock`): moves every `started_at` and `created_at` the
    /// step covers so that they name the same instants as before, and every expiry with
    /// them. Time consumed is monotonic and does not move. Returns a `Save` for each session
    /// that moved.
    #[must_use = "the effects must be carried out"]
    pub fn shift_wall(&mut self, step: Step) -> Vec<Effect> {
        let mut effects = Vec::new();
        for (id, entry) in &mut self.sessions {
            if entry.session.data.follow_step(&step) {
                effects.push(Effect::Save(*id));
            }
        }
        self.expiries = self
            .sessions
            .iter()
            .filter(|(_, entry)| entry.ended.is_none())
            .filter_map(|(id, entry)| Some((entry.session.data.expires_at()?, *id)))
            .collect();
        effects
    }

    /// Hands over the sessions that ended since the last call, and forgets them: no client
    /// runs or resumes one of them, so they matter only as history, which the caller gives
    /// the store. Their clients stay (disconnected, with their saved rows and lifetime totals),
    /// as they did while the ended sessions were held. Call it after the effects that ended
    /// them are carried out (their `Save` reads them here).
    pub fn take_ended(&mut self) -> Vec<EndedSession> {
        let mut taken = Vec::new();
        for id in std::mem::take(&mut self.ended) {
            let Some(entry) = self.sessions.get(&id) else {
                continue;
            };
            let (mac, end) = (entry.session.mac, entry.ended);
            let Some(end) = end else {
                continue;
            };
            let status = self.status(mac);
            let held = matches!(status, Status::Connected { session, .. } if session == id)
                || matches!(status, Status::Paused { session: Some(session), .. } if session == id);
            if held {
                // Not yet let go of (the caller has effects to carry out first): next time.
                self.ended.insert(id);
                continue;
            }
            let Some(entry) = self.sessions.remove(&id) else {
                continue;
            };
            if let Some(at) = entry.session.data.expires_at() {
                self.expiries.remove(&(at, id));
            }
            if let Some(client) = self.clients.get_mut(&mac) {
                client.sessions.remove(&id);
            }
            taken.push(EndedSession {
                session: entry.session,
                end,
            });
        }
        taken
    }

    /// Clients that hold no session and are disconnected: nothing of theirs is live.
    pub fn idle_clients(&self) -> impl Iterator<Item = MacAddr> + '_ {
        self.clients
            .iter()
            .filter(|(_, client)| {
                client.sessions.is_empty() && client.status == Status::Disconnected
            })
            .map(|(mac, _)| *mac)
    }

    /// Forgets a client that holds no session and is disconnected (one that left: the caller
    /// decides when); `false`, and nothing changes, for any other.
    pub fn forget_client(&mut self, mac: MacAddr) -> bool {
        let idle = self.clients.get(&mac).is_some_and(|client| {
            client.sessions.is_empty() && client.status == Status::Disconnected
        });
        if idle {
            self.clients.remove(&mac);
        }
        idle
    }

    /// How many sessions are held: those not ended, and the ended ones not yet taken.
    #[must_use]
    pub fn held(&self) -> usize {
        self.sessions.len()
    }

    #[must_use]
    pub fn session(&self, id: SessionId) -> Option<&Session> {
        self.sessions.get(&id).map(|entry| &entry.session)
    }

    /// Every session, by id.
    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values().map(|entry| &entry.session)
    }

    /// The client's sessions, by id.
    pub fn sessions_of(&self, mac: MacAddr) -> impl Iterator<Item = &Session> {
        self.clients
            .get(&mac)
            .into_iter()
            .flat_map(|client| client.sessions.iter())
            .filter_map(|id| self.session(*id))
    }

    /// The session's state at `now`; an unstarted session is `Available` even while its client
    /// is connected to another.
    #[must_use]
    pub fn state_of(&self, id: SessionId, now: Now) -> Option<SessionState> {
        let entry = self.sessions.get(&id)?;
        Some(match entry.end_at(now.wall, self.config.bytes_per_mb) {
            Some(End::Consumed) => SessionState::Consumed,
            Some(End::Expired) => SessionState::Expired,
            None if self.running_session(entry.session.mac) == Some(id) => SessionState::Running,
            None if entry.session.data.started_at.is_some() => SessionState::Paused,
            None => SessionState::Available,
        })
    }

    /// A client the engine never saw is `Disconnected`.
    #[must_use]
    pub fn client_state(&self, mac: MacAddr) -> ClientState {
        match self.status(mac) {
            Status::Disconnected => ClientState::Disconnected,
            Status::Connected { .. } => ClientState::Connected,
            Status::Paused { .. } => ClientState::Paused,
        }
    }

    #[must_use]
    pub fn pause_reason(&self, mac: MacAddr) -> Option<PauseReason> {
        match self.status(mac) {
            Status::Paused { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// The speed limits (down, up) in Mbit/s the client's running session grants it: its own,
    /// or the global ones (rule 10); `None` unless it is connected.
    #[must_use]
    pub fn speed_of(&self, mac: MacAddr) -> Option<(u32, u32)> {
        let session = self.session(self.running_session(mac)?)?;
        Some(speed_mbits(&self.config, &session.data))
    }

    /// Bytes the running session of `mac` may still pass: what its grant's budget should
    /// hold once everything counted is billed. `None` unless it is connected and its data
    /// counts.
    #[must_use]
    pub fn running_bytes_left(&self, mac: MacAddr) -> Option<u64> {
        let entry = self.sessions.get(&self.running_session(mac)?)?;
        entry.bytes_left(self.config.bytes_per_mb)
    }

    #[must_use]
    pub fn running_session(&self, mac: MacAddr) -> Option<SessionId> {
        match self.status(mac) {
            Status::Connected { session, .. } => Some(session),
            _ => None,
        }
    }

    /// Every client holding a session or connected, by MAC: its state and its session (the
    /// running one, or the one a paused client resumes).
    pub fn clients(&self) -> impl Iterator<Item = (MacAddr, ClientState, Option<SessionId>)> {
        self.clients.iter().map(|(mac, client)| {
            let (state, session) = client.state_and_session();
            (*mac, state, session)
        })
    }

    /// One client of [`Engine::clients`]: its state and session; `None` if it holds no
    /// session and is not connected.
    #[must_use]
    pub fn client(&self, mac: MacAddr) -> Option<(ClientState, Option<SessionId>)> {
        self.clients.get(&mac).map(Client::state_and_session)
    }

    /// Sessions running now, for the periodic batch save.
    #[must_use]
    pub fn running(&self) -> Vec<SessionId> {
        self.connected().into_iter().map(|(_, id)| id).collect()
    }
}
