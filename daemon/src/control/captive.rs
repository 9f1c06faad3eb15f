//! The RFC 8908 API's answer for one client: captive unless it runs a session, and then what
//! is left of it, read from the kernel's grant (its deadline and budget) at this moment, not
//! from the last poll. The client is known by the MAC the kernel saw send from its address;
//! one it cannot name (an address nobody sent from, or one that moved between MACs moments
//! ago) is captive. Reads the kernel's maps; changes nothing.

use std::net::{IpAddr, SocketAddr};

use hotspotd_common::{NO_DEADLINE, UNLIMITED_BYTES};

use super::{Control, apply::KERNEL_DEADLINE_SLACK};
use crate::{
    addresses::Owner,
    mac::MacAddr,
    sessions::engine::ClientState,
    views::{CaptiveView, Remaining},
};

impl Control {
    pub(super) fn captive_view(&self, client: IpAddr, reached: SocketAddr) -> CaptiveView {
        let portal = &self.config.portal;
        let user_portal_url = if portal.url.is_empty() {
            default_portal_url(reached, portal.tls_enabled().then_some(portal.tls_port))
        } else {
            portal.url.clone()
        };
        let mut view = CaptiveView {
            captive: true,
            user_portal_url,
            venue_info_url: (!portal.venue_info_url.is_empty())
                .then(|| portal.venue_info_url.clone()),
            can_extend_session: true,
            seconds_remaining: None,
            bytes_remaining: None,
        };
        let mac = match self.address_owner(client) {
            Ok(Owner::Client(mac)) => mac,
            Ok(Owner::Unknown | Owner::Conflict(_)) => return view,
            Err(error) => {
                tracing::warn!(%client, error = %crate::text::chain(&error), "cannot read who sends from this address; answered captive");
                return view;
            }
        };
        if self.engine.client_state(mac) != ClientState::Connected {
            return view;
        }
        // Connected in the engine, not (yet) in the kernel: captive, as its packets are.
        let Some(remaining) = self.kernel_remaining(mac) else {
            return view;
        };
        view.captive = false;
        view.seconds_remaining = remaining.seconds;
        view.bytes_remaining = remaining.bytes;
        view
    }

    /// What the kernel's grant of `mac` leaves it at this moment: seconds when it has a
    /// deadline, bytes when it has a budget; `None` when the kernel holds no grant for it
    /// (or cannot be read, which is logged).
    pub(super) fn kernel_remaining(&self, mac: MacAddr) -> Option<Remaining> {
        let (grant, now) = match (self.kernel.grant_of(mac.key()), self.kernel.jiffies()) {
            (Ok(Some(grant)), Ok(now)) => (grant, now),
            (Ok(None), _) => return None,
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(%mac, error = %crate::text::chain(&error), "cannot read the client's grant");
                return None;
            }
        };
        Some(Remaining {
            seconds: (grant.deadline_jiffies != NO_DEADLINE)
                .then(|| seconds_until(grant.deadline_jiffies, now, self.hz)),
            bytes: (grant.bytes_left != UNLIMITED_BYTES)
                .then(|| u64::try_from(grant.bytes_left.max(0)).unwrap_or(0)),
        })
    }
}

/// The built-in portal's address as the client reached the box: `http://192.0.2.1:2050/`, or
/// over HTTPS (`tls_port`, when it serves HTTPS) `https://192.0.2.1/`: a client that asked over
/// HTTPS is sent to HTTPS.
fn default_portal_url(reached: SocketAddr, tls_port: Option<u16>) -> String {
    // `SocketAddr` writes IPv6 in brackets, as a URL needs; an IPv4-mapped one is IPv4.
    let reached = match reached.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(reached, |v4| {
            SocketAddr::new(IpAddr::V4(v4), reached.port())
        }),
        IpAddr::V4(_) => reached,
    };
    match tls_port {
        Some(443) if reached.port() == 443 => format!("https://{}/", Host(reached)),
        Some(port) if reached.port() == port => format!("https://{reached}/"),
        _ => format!("http://{reached}/"),
    }
}

/// An address as a URL's host: IPv6 in brackets.
struct Host(SocketAddr);

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.ip() {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "[{v6}]"),
        }
    }
}

/// Whole seconds left until a session whose kernel deadline is `deadline` jiffies: the kernel
/// cuts a slack and a tick after the session's end (`apply.rs`), which are not the client's.
fn seconds_until(deadline: u64, now: u64, hz: u32) -> u64 {
    let hz = u64::from(hz.max(1));
    let left_ms = deadline.saturating_sub(now).saturating_mul(1_000) / hz;
    let slack_ms = u64::try_from(KERNEL_DEADLINE_SLACK.as_millis()).unwrap_or(0) + 1_000 / hz;
    left_ms.saturating_sub(slack_ms) / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_portal_url_names_the_address_reached() {
        let v4: SocketAddr = "192.0.2.1:2050".parse().expect("valid");
        assert_eq!(default_portal_url(v4, None), "http://192.0.2.1:2050/");
        assert_eq!(default_portal_url(v4, Some(443)), "http://192.0.2.1:2050/");
        let v6: SocketAddr = "[2001:db8::1]:2050".parse().expect("valid");
        assert_eq!(default_portal_url(v6, None), "http://[2001:db8::1]:2050/");
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:2050".parse().expect("valid");
        assert_eq!(default_portal_url(mapped, None), "http://192.0.2.1:2050/");
    }

    #[test]
    fn a_client_that_asked_over_https_is_sent_to_https() {
        let v4: SocketAddr = "192.0.2.1:443".parse().expect("valid");
        assert_eq!(default_portal_url(v4, Some(443)), "https://192.0.2.1/");
        let v6: SocketAddr = "[2001:db8::1]:443".parse().expect("valid");
        assert_eq!(default_portal_url(v6, Some(443)), "https://[2001:db8::1]/");
        let other: SocketAddr = "[::ffff:192.0.2.1]:8443".parse().expect("valid");
        assert_eq!(
            default_portal_url(other, Some(8443)),
            "https://192.0.2.1:8443/"
        );
    }

    #[test]
    fn seconds_left_leave_out_the_kernels_slack() {
        // HZ 250: 4 ms a jiffy; the kernel cuts 20 ms + 4 ms after the session's end.
        let now = 1_000;
        assert_eq!(seconds_until(now + 250 * 60 + 6, now, 250), 60);
        assert_eq!(seconds_until(now + 250 * 60 + 5, now, 250), 59);
        assert_eq!(seconds_until(now, now, 250), 0);
        assert_eq!(seconds_until(now - 5, now, 250), 0);
    }
}
