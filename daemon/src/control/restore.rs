//! Start-up: takes over what a previous run left. Sessions and client states come from the
//! store. Whether the kernel's pinned maps are still the ones the store's counter baselines
//! refer to decides what was used meanwhile:
//! - same boot, same maps (the daemon crashed or was restarted): the kernel kept counting and
//!   enforcing, so the traffic since the last save is billed from the counters, and a session
//!   the kernel kept running is credited the time since the last save;
//! - otherwise (a reboot, or the kernel state was removed): nothing is credited for the gap —
//!   the box's downtime is never billed — and running clients are resumed.
//!
//! Side effects: writes `CONFIG` (the maps' epoch), grants, and a save.

use std::{collections::BTreeMap, time::Duration};

use super::{Control, ControlError, now};
use crate::{
    sessions::engine::{ClientState, PauseReason, RestoredClient, Session},
    store::{self, Loaded},
};

/// Where the kernel says which boot this is.
const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

impl Control {
    pub(super) async fn restore(&mut self) -> Result<(), ControlError> {
        let now = now();
        std::fs::read_to_string(BOOT_ID_PATH)
            .unwrap_or_default()
            .trim()
            .clone_into(&mut self.boot_id);
        self.kernel_epoch = self.kernel.epoch()?;
        let Loaded {
            sessions,
            clients,
            meta,
        } = self.store.load_all();

        let survived = meta.as_ref().is_some_and(|meta| {
            meta.kernel_epoch == self.kernel_epoch && meta.boot_id == self.boot_id
        });
        let kernel_grants: BTreeMap<_, _> = self.kernel.grants()?.into_iter().collect();
        let downtime = meta
            .as_ref()
            .map(|meta| {
                now.mono
                    .saturating_sub(Duration::from_nanos(meta.saved_at_mono_ns))
            })
            .unwrap_or_default();
        if survived {
            self.table
                .restore_baselines(clients.iter().map(|client| (client.mac, client.baseline)));
        }
        tracing::info!(
            sessions = sessions.len(),
            clients = clients.len(),
            kernel_state_kept = survived,
            "restoring sessions"
        );

        let restored = clients
            .iter()
            .map(|client| {
                let pause_reason = match client.state {
                    store::ClientState::Paused(store::PauseReason::Idle) => Some(PauseReason::Idle),
                    store::ClientState::Paused(store::PauseReason::Operator) => {
                        Some(PauseReason::Operator)
                    }
                    _ => None,
                };
                let (state, kept_running) = match client.state {
                    store::ClientState::Connected => (
                        ClientState::Connected,
                        // The kernel ran it all along only if its grant is still there.
                        kernel_grants
                            .get(&client.mac.key())
                            .is_some_and(|grant| Some(grant.session_id) == client.session_id),
                    ),
                    store::ClientState::Paused(_) => (ClientState::Paused, false),
                    store::ClientState::Disconnected => (ClientState::Disconnected, false),
                };
                RestoredClient {
                    mac: client.mac,
                    state,
                    session_id: client.session_id,
                    pause_reason,
                    credit: if survived && kept_running {
                        downtime
                    } else {
                        Duration::ZERO
                    },
                }
            })
            .collect();
        let sessions = sessions
            .into_iter()
            .map(|stored| Session {
                id: stored.id,
                mac: stored.mac,
                data: stored.data,
            })
            .collect();
        let effects = self.engine.restore(sessions, restored, now);
        self.apply(effects, now).await;

        // Grants of clients the store does not know as running (a crash between a grant and
        // its save) would let them through for free.
        for mac in kernel_grants.keys() {
            if self.engine.client_state((*mac).into()) != ClientState::Connected {
                self.kernel.remove_grant(*mac)?;
            }
        }
        self.save(true);
        Ok(())
    }
}
