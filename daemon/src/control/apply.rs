//! Carries out what the engine decided: grants into the kernel, saves into the store, events
//! into the log. Side effects: writes `GRANTS`, saves sessions and clients.

use std::{collections::BTreeSet, time::Duration};

use tokio::time::Instant;

use hotspotd_common::{Grant, NO_DEADLINE, UNLIMITED_BYTES};

use super::{Control, now};
use crate::{
    mac::MacAddr,
    sessions::engine::{self, ClientState, Effect, Event, Now, PauseReason, SessionId},
    store::{self, ClientsSave, SaveBatch, SavedMeta, StoredClient},
};

impl Control {
    /// Carries out `effects` in order. The kernel is told first, so a client is never blocked
    /// or let through later than the engine decided; saves happen after the batch.
    pub(super) fn apply(&mut self, effects: Vec<Effect>, now: Now) {
        for effect in effects {
            match effect {
                Effect::Grant(grant) => {
                    let mac = grant.mac;
                    self.unsaved_clients.insert(mac);
                    match grant.run_for {
                        Some(run_for) => {
                            self.deadlines
                                .set(mac, Instant::now() + run_for + WAKE_AFTER);
                        }
                        None => {
                            self.deadlines.remove(mac);
                        }
                    }
                    match self.kernel_grant(&grant) {
                        Ok(kernel_grant) => {
                            if let Err(error) = self.kernel.set_grant(mac.key(), kernel_grant) {
                                tracing::error!(%mac, %error, "cannot let the client through");
                            }
                        }
                        Err(error) => tracing::error!(%mac, %error, "cannot read the kernel clock"),
                    }
                }
                Effect::Revoke { mac } => {
                    self.unsaved_clients.insert(mac);
                    self.deadlines.remove(mac);
                    if let Err(error) = self.kernel.remove_grant(mac.key()) {
                        tracing::error!(%mac, %error, "cannot block the client");
                    }
                }
                Effect::Save(id) => {
                    self.unsaved.insert(id);
                    if let Some(session) = self.engine.session(id) {
                        self.unsaved_clients.insert(session.mac);
                    }
                }
                Effect::Event(event) => {
                    self.unsaved_clients.insert(event.mac());
                    log_event(&event, now);
                    self.events.send(crate::events::EventRecord {
                        at: now.wall,
                        event,
                    });
                }
            }
        }
    }

    /// The kernel's form of a grant: bytes as a signed budget, the deadline in jiffies.
    fn kernel_grant(&self, grant: &engine::Grant) -> Result<Grant, crate::bpf::BpfError> {
        let bytes_left = grant.bytes_left.map_or(UNLIMITED_BYTES, |bytes| {
            i64::try_from(bytes).unwrap_or(i64::MAX - 1)
        });
        let deadline_jiffies = match grant.run_for {
            None => NO_DEADLINE,
            Some(run_for) => {
                self.kernel.jiffies()? + jiffies_for(run_for + KERNEL_DEADLINE_SLACK, self.hz)
            }
        };
        Ok(Grant::new(grant.session_id, bytes_left, deadline_jiffies))
    }

    /// Saves the sessions and clients whose state changed and, when `periodic`, every running
    /// session and every client (rule 12), with the counter baselines, in one transaction. A
    /// changed client is saved with its session, so its baseline and what the session used
    /// stay in step. A failed save is logged and retried with the next poll: enforcement
    /// never waits for the disk.
    pub(super) async fn save(&mut self, periodic: bool) {
        let (batch, unsaved) = self.save_batch(periodic);
        let started = Instant::now();
        let result = self.store.save_batch(batch).await;
        self.saved(SaveDone {
            result,
            took: started.elapsed(),
            unsaved,
        });
    }

    /// Like [`Control::save`], without waiting for the disk: the answer comes back through
    /// `saves_done` while the task goes on answering the API (a periodic save of 10,000
    /// clients takes ~50 ms). One at a time: while one is under way, the next poll tries again.
    pub(super) async fn save_in_background(&mut self, periodic: bool) {
        if self.save_in_flight {
            return;
        }
        let (batch, unsaved) = self.save_batch(periodic);
        let started = Instant::now();
        match self.store.queue_batch(batch).await {
            Ok(answer) => {
                self.save_in_flight = true;
                let done = self.saves_done.clone();
                tokio::spawn(async move {
                    let result = answer.await;
                    let took = started.elapsed();
                    // Gone only when the daemon stops; its last save is waited for.
                    let _ = done
                        .send(SaveDone {
                            result,
                            took,
                            unsaved,
                        })
                        .await;
                });
            }
            Err(error) => self.saved(SaveDone {
                result: Err(error),
                took: started.elapsed(),
                unsaved,
            }),
        }
    }

    /// Takes note of a save's outcome; what a failed one held is saved again later.
    pub(super) fn saved(&mut self, done: SaveDone) {
        match done.result {
            Ok(()) => {
                self.last_save = Instant::now();
                self.last_save_took = done.took;
                self.save_durations.observe(done.took);
            }
            Err(error) => {
                tracing::error!(%error, "saving sessions failed; retrying with the next poll");
                self.unsaved.extend(done.unsaved.sessions);
                self.unsaved_clients.extend(done.unsaved.clients);
            }
        }
    }

    /// The batch of a save, and what it holds.
    fn save_batch(&mut self, periodic: bool) -> (SaveBatch, Unsaved) {
        let now = now();
        let mut ids = std::mem::take(&mut self.unsaved);
        let unsaved_clients = std::mem::take(&mut self.unsaved_clients);
        let clients = if periodic {
            ids.extend(self.engine.running());
            ClientsSave::All(
                self.engine
                    .clients()
                    .map(|(mac, state, session_id)| self.stored_client(mac, state, session_id))
                    .collect(),
            )
        } else {
            let mut changed = Vec::new();
            let mut forget = Vec::new();
            for mac in &unsaved_clients {
                match self.engine.client(*mac) {
                    Some((state, session_id)) => {
                        ids.extend(session_id);
                        changed.push(self.stored_client(*mac, state, session_id));
                    }
                    None => forget.push(*mac),
                }
            }
            ClientsSave::Changed { changed, forget }
        };
        let sessions = ids
            .iter()
            .filter_map(|id| {
                self.engine
                    .session(*id)
                    .map(|session| (*id, session.data.clone()))
            })
            .collect();
        let batch = SaveBatch {
            sessions,
            clients,
            meta: SavedMeta {
                saved_at_wall: now.wall,
                saved_at_mono_ns: u64::try_from(now.mono.as_nanos()).unwrap_or(u64::MAX),
                boot_id: self.boot_id.clone(),
                kernel_epoch: self.kernel_epoch,
            },
        };
        let unsaved = Unsaved {
            sessions: ids,
            clients: unsaved_clients,
        };
        (batch, unsaved)
    }
}

/// What a save held, to be saved again if it fails.
pub(super) struct Unsaved {
    sessions: BTreeSet<SessionId>,
    clients: BTreeSet<MacAddr>,
}

/// The outcome of a save.
pub(super) struct SaveDone {
    result: Result<(), crate::store::StoreError>,
    took: Duration,
    unsaved: Unsaved,
}

impl Control {
    fn stored_client(
        &self,
        mac: MacAddr,
        state: ClientState,
        session_id: Option<SessionId>,
    ) -> StoredClient {
        StoredClient {
            mac,
            state: stored_state(state, self.engine.pause_reason(mac)),
            session_id,
            baseline: self.table.baseline(mac),
        }
    }
}

/// How long after a session's end the kernel cuts it: the daemon wakes `WAKE_AFTER` after
/// the end and starts the next session first, so a chain has no gap. Well inside the 100 ms
/// that sessions.md rule 11 allows.
const KERNEL_DEADLINE_SLACK: Duration = Duration::from_millis(20);
/// When the daemon wakes after a session's end to end it and start the next.
pub(super) const WAKE_AFTER: Duration = Duration::from_millis(2);

/// Jiffies that cover `duration`, plus one: jiffies advance in whole ticks, so without the
/// extra tick the kernel could stop a session up to one tick before the engine's deadline,
/// and the engine would not yet see it consumed.
fn jiffies_for(duration: Duration, hz: u32) -> u64 {
    let ticks = duration
        .as_nanos()
        .saturating_mul(u128::from(hz))
        .div_ceil(1_000_000_000);
    u64::try_from(ticks).unwrap_or(u64::MAX / 2) + 1
}

pub(super) fn stored_state(state: ClientState, reason: Option<PauseReason>) -> store::ClientState {
    match state {
        ClientState::Connected => store::ClientState::Connected,
        ClientState::Disconnected => store::ClientState::Disconnected,
        ClientState::Paused => store::ClientState::Paused(match reason {
            Some(PauseReason::Idle) => store::PauseReason::Idle,
            Some(PauseReason::Operator) | None => store::PauseReason::Operator,
        }),
    }
}

fn log_event(event: &Event, now: Now) {
    let json = serde_json::to_string(event).unwrap_or_default();
    tracing::info!(at = %now.wall, event = %json, "event");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jiffies_round_up_and_add_a_tick() {
        assert_eq!(jiffies_for(Duration::from_secs(5), 250), 1_251);
        assert_eq!(jiffies_for(Duration::from_millis(1), 250), 2);
        assert_eq!(jiffies_for(Duration::ZERO, 1_000), 1);
    }
}
