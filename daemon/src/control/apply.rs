//! Carries out what the engine decided: grants into the kernel, saves into the store, events
//! into the log. Side effects: writes `GRANTS`, saves sessions and clients.

use std::time::Duration;

use tokio::time::Instant;

use hotspotd_common::{Grant, NO_DEADLINE, UNLIMITED_BYTES};

use super::{Control, speed};
use crate::{
    mac::MacAddr,
    sessions::engine::{self, ClientState, Effect, Event, Now},
};

impl Control {
    /// Carries out `effects` in order. The speed classes of new grants are sent to the
    /// shaper's worker first (a grant names them once the worker confirms them; until then
    /// the client runs in the default class, see `speed/confirm.rs`); then the kernel's
    /// grants are set, so a client is never blocked or let through later than the engine
    /// decided; saves happen after the batch.
    pub(super) async fn apply(&mut self, effects: Vec<Effect>, now: Now) {
        self.shape(&effects);
        // Holders whose grant changed: their members follow once the grants are in.
        let mut holders = Vec::new();
        for effect in effects {
            if let Effect::Grant(engine::Grant { mac, .. }) | Effect::Revoke { mac } = &effect
                && !self.sharing.members_of(*mac).is_empty()
            {
                holders.push(*mac);
            }
            match effect {
                Effect::Grant(grant) => {
                    let mac = grant.mac;
                    self.saving.unsaved_clients.insert(mac);
                    match grant.run_for {
                        Some(run_for) => {
                            self.deadlines
                                .set(mac, Instant::now() + run_for + WAKE_AFTER);
                        }
                        None => {
                            self.deadlines.remove(mac);
                        }
                    }
                    if self.held_grants.remove(&mac) == Some(grant.session_id) {
                        continue;
                    }
                    // A device on a voucher's slot that now runs a session of its own leaves
                    // the slot: its traffic is that session's from here on.
                    if self.sharing.holder_of(mac).is_some() {
                        Box::pin(self.leave_slot(mac, false, now)).await;
                    }
                    // Room for its counters first: what the grant lets through is counted
                    // whatever other MACs filled `SEEN` with.
                    if let Err(error) = self.kernel.reserve_counters(mac.key()) {
                        tracing::error!(%mac, error = %crate::text::chain(&error), "no room for the client's counters in USAGE; it is counted in SEEN, where a flood of MACs can push it out");
                    }
                    match self.kernel_grant(&grant, self.unbilled(mac)) {
                        Ok(kernel_grant) => {
                            if let Err(error) = self.kernel.set_grant(mac.key(), kernel_grant) {
                                tracing::error!(%mac, error = %crate::text::chain(&error), "cannot let the client through");
                            }
                        }
                        Err(error) => {
                            tracing::error!(%mac, error = %crate::text::chain(&error), "cannot read the kernel clock");
                        }
                    }
                }
                Effect::Revoke { mac } => {
                    self.saving.unsaved_clients.insert(mac);
                    self.deadlines.remove(mac);
                    if let Err(error) = self.kernel.remove_grant(mac.key()) {
                        tracing::error!(%mac, error = %crate::text::chain(&error), "cannot block the client");
                    }
                }
                Effect::Save(id) => {
                    self.saving.unsaved_sessions.insert(id);
                }
                Effect::Event(event) => {
                    self.radius_event(&event, now);
                    log_event(&event, now);
                    self.events.send(crate::events::EventRecord {
                        at: now.wall,
                        event,
                    });
                }
            }
        }
        for holder in holders {
            self.follow_holder(holder);
        }
    }

    /// Sends the HTB trees' changes for the grants and revocations in `effects` to the
    /// shaper's worker, without waiting for them. A failure is reported later: the client is
    /// still gated and billed, only its speed is not capped (it stays in the default class,
    /// under the global cap) until the trees are rebuilt.
    fn shape(&mut self, effects: &[Effect]) {
        // Only the classes of these clients change: the shaper's work is in proportion to
        // them, not to every client (see `Shaper::apply_changed`).
        for effect in effects {
            match effect {
                Effect::Grant(grant) => {
                    let rates = speed::rates(grant.down_mbits, grant.up_mbits);
                    self.speed.run_at(grant.mac, rates);
                }
                Effect::Revoke { mac } => self.speed.stop(*mac),
                Effect::Save(_) | Effect::Event(_) => {}
            }
        }
        self.speed.apply();
    }

    /// Takes a connected client's grant away and bills what it passed since the last poll,
    /// before a command revokes it (a pause, the removal of its running session): the grant
    /// goes first, so nothing passes after its counters are read, and what they hold is
    /// billed to the session it ran. Without this, each pause from a portal would give up to
    /// a poll interval of traffic for free. Carries out what the bill decided (a session
    /// consumed by it ends, and the next starts) before the command runs.
    pub(super) async fn bill_before_revoke(&mut self, mac: MacAddr, now: Now) {
        if self.engine.client_state(mac) != ClientState::Connected {
            return;
        }
        let spent_grant = match self.kernel.grant_of(mac.key()) {
            Ok(grant) => grant,
            Err(error) => {
                tracing::warn!(%mac, error = %crate::text::chain(&error), "cannot read the client's grant");
                None
            }
        };
        if let Err(error) = self.kernel.remove_grant(mac.key()) {
            tracing::error!(%mac, error = %crate::text::chain(&error), "cannot block the client");
        }
        // The devices sharing its voucher draw on the same budget: blocked too, and billed.
        let members = self.sharing.members_of(mac);
        for member in &members {
            if let Err(error) = self.kernel.remove_grant(member.key()) {
                tracing::error!(%member, error = %crate::text::chain(&error), "cannot block a device of a voucher");
            }
        }
        self.bill_since_poll(mac, mac, now).await;
        for member in members {
            self.bill_since_poll(member, mac, now).await;
        }
        if let Some(grant) = spent_grant {
            self.bill_spent_budget(mac, &grant, now).await;
        }
    }

    /// Reads `device`'s counters alone and bills what it passed since the last poll to the
    /// session `owner` runs: the client itself, once its grant was just removed, or the holder
    /// of the voucher whose slot `device` uses. Carries out what the bill decided.
    pub(super) async fn bill_since_poll(&mut self, device: MacAddr, owner: MacAddr, now: Now) {
        let read_at = std::time::Instant::now();
        let (reading, jiffies) = match (self.kernel.usage_of(device.key()), self.kernel.jiffies()) {
            (Ok(Some(reading)), Ok(jiffies)) => (reading, jiffies),
            // The kernel never counted it: nothing to bill.
            (Ok(None), _) => return,
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(%device, error = %crate::text::chain(&error), "cannot read the device's counters; what it passed since the last poll is not billed");
                return;
            }
        };
        let clocks = crate::accounting::Clocks {
            jiffies,
            hz: self.hz,
            wall: now.wall,
            read_at,
        };
        let Some(delta) = self.table.apply_one(device, &reading, clocks) else {
            return;
        };
        let effects = self
            .engine
            .traffic(owner, delta.up_bytes + delta.down_bytes, true, now);
        Box::pin(self.apply(effects, now)).await;
    }

    /// The last resort after the counters: the kernel's budget says how much the grant let
    /// through, whatever was counted. If it let through more than was billed (counters lost
    /// to a full map, or not yet written by a packet in flight), the difference is billed, so
    /// a connect never hands out again what the kernel already spent. Counted traffic is
    /// never below it in normal operation; the log says when it was.
    async fn bill_spent_budget(&mut self, mac: MacAddr, grant: &Grant, now: Now) {
        if grant.bytes_left == UNLIMITED_BYTES
            || self.engine.running_session(mac) != Some(grant.session_id)
        {
            return;
        }
        let Some(billed_left) = self.engine.running_bytes_left(mac) else {
            return;
        };
        let kernel_left = u64::try_from(grant.bytes_left.max(0)).unwrap_or(0);
        let unbilled = billed_left.saturating_sub(kernel_left);
        if unbilled == 0 {
            return;
        }
        tracing::warn!(%mac, bytes = unbilled, "the kernel's budget let through more than was counted; billed from the budget");
        let effects = self.engine.traffic(mac, unbilled, false, now);
        self.apply(effects, now).await;
    }

    /// Billable bytes the client passed since the last poll, under the grant this one
    /// replaces: the next poll bills them to the session now granted (its time has begun),
    /// so they are not in its budget — after a time session's end these are the packets of
    /// the moment before the next one's grant is in place. Zero when unknown.
    fn unbilled(&self, mac: MacAddr) -> u64 {
        match self.kernel.usage_of(mac.key()) {
            Ok(Some(reading)) => self.table.unaccounted_billable(mac, &reading).unwrap_or(0),
            Ok(None) => 0,
            Err(error) => {
                tracing::warn!(%mac, error = %crate::text::chain(&error), "cannot read the client's counters; its new budget counts from the last poll");
                0
            }
        }
    }

    /// The kernel's form of a grant: bytes as a signed budget less `unbilled` (see
    /// [`Self::unbilled`]), the deadline in jiffies, and the client's HTB classes once the
    /// shaper confirmed them (see `speed/confirm.rs`).
    fn kernel_grant(
        &mut self,
        grant: &engine::Grant,
        unbilled: u64,
    ) -> Result<Grant, crate::bpf::BpfError> {
        let bytes_left = grant.bytes_left.map_or(UNLIMITED_BYTES, |bytes| {
            i64::try_from(bytes.saturating_sub(unbilled)).unwrap_or(i64::MAX - 1)
        });
        let deadline_jiffies = match grant.run_for {
            None => NO_DEADLINE,
            Some(run_for) => {
                self.kernel.jiffies()? + jiffies_for(run_for + KERNEL_DEADLINE_SLACK, self.hz)
            }
        };
        let mut kernel_grant = Grant::new(grant.session_id, bytes_left, deadline_jiffies);
        if let Some(classes) = self.speed.named(grant.mac) {
            kernel_grant.class_down = classes.down;
            kernel_grant.class_up = classes.up;
        }
        Ok(kernel_grant)
    }
}

/// How long after a session's end the kernel cuts it: the daemon wakes `WAKE_AFTER` after
/// the end and starts the next session first, so a chain has no gap. Well inside the 100 ms
/// that sessions.md rule 11 allows.
pub(super) use crate::captive::KERNEL_DEADLINE_SLACK;
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
