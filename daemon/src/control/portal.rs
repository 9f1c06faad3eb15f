//! What the built-in portal's pages show one client (redeeming a voucher code is in
//! `vouchers.rs`). The client is the MAC the kernel saw send from the request's address (as
//! for the RFC 8908 answer): one it cannot name gets no personal data. Reads the kernel's maps
//! and the engine.

use std::net::IpAddr;

use super::Control;
use crate::{
    addresses::Owner,
    sessions::{
        SessionData,
        engine::{ClientState, SessionState},
    },
    views::{PortalClient, QueuedSession, Remaining},
};

impl Control {
    /// The client sending from `ip`, as its portal page shows it; `None` when the kernel
    /// cannot name one MAC for the address.
    pub(super) fn portal_client(&mut self, ip: IpAddr) -> Option<PortalClient> {
        let mac = match self.address_owner(ip) {
            Ok(Owner::Client(mac)) => mac,
            Ok(Owner::Unknown | Owner::Conflict(_)) => return None,
            Err(error) => {
                tracing::warn!(client = %ip, error = %crate::text::chain(&error), "cannot read who sends from this address; the portal shows the landing page");
                return None;
            }
        };
        let now = self.now();
        let bytes_per_mb = self.config.accounting.bytes_per_mb;
        // A device on a voucher's slot sees the session it shares; what is left comes from
        // its own grant, which names the shared budget.
        let owner = self.session_owner(mac);
        let state = self.engine.client_state(owner);
        let current = self.engine.client(owner).and_then(|(_, session)| session);
        let stored_left = |data: &SessionData| Remaining {
            seconds: data.time_left_secs(),
            bytes: data.bytes_left(data.data_cons_bytes(bytes_per_mb), bytes_per_mb),
        };
        let remaining = match state {
            // The kernel's grant: exact to the moment, as the RFC 8908 answer is.
            ClientState::Connected => self.kernel_remaining(mac),
            ClientState::Paused | ClientState::Disconnected => None,
        }
        .or_else(|| {
            let session = self.engine.session(current?)?;
            Some(stored_left(&session.data))
        });
        let queued = self
            .engine
            .sessions_of(owner)
            .filter(|session| Some(session.id) != current)
            .filter(|session| {
                matches!(
                    self.engine.state_of(session.id, now),
                    Some(SessionState::Available | SessionState::Paused)
                )
            })
            .map(|session| QueuedSession {
                kind: session.data.kind,
                remaining: stored_left(&session.data),
            })
            .collect();
        let speed = self.engine.speed_of(owner);
        let trial = self.trial_offer(mac, now);
        let voucher_moved = state != ClientState::Connected && self.moved_away.contains(mac, now);
        Some(PortalClient {
            mac,
            state,
            remaining,
            down_mbits: speed.map(|(down, _)| down),
            up_mbits: speed.map(|(_, up)| up),
            queued,
            trial,
            voucher_moved,
        })
    }
}
