//! The RFC 8908 API's answer for one client: captive unless the kernel passes its packets
//! (a grant with budget and time left), and then what is left, read from that grant (its
//! deadline and budget) at the moment of the request, not from the last poll. The client is
//! known by the MAC the kernel saw send from its address; one it cannot name (an address nobody
//! sent from, or one that moved between MACs moments ago) is captive. Pure: the caller reads
//! the kernel (`portal::captive_source`, off the control task).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hotspotd_common::{Grant, NO_DEADLINE, UNLIMITED_BYTES};

use crate::{
    addresses::Owner,
    config::PortalConfig,
    views::{CaptiveView, Remaining},
};

/// How long after a session's end the kernel cuts it: the grant's deadline is this, and a
/// tick, later than the session's (`control/apply.rs`), and none of it is the client's.
pub const KERNEL_DEADLINE_SLACK: Duration = Duration::from_millis(20);

/// The answer for a client that the kernel saw as `owner` of the address it asked from, whose
/// grant (if any) is `grant`, at `now` jiffies of a kernel ticking `hz` times a second; it
/// reached the portal at `reached`.
#[must_use]
pub fn view(
    portal: &PortalConfig,
    reached: SocketAddr,
    owner: &Owner,
    grant: Option<&Grant>,
    now: u64,
    hz: u32,
) -> CaptiveView {
    let user_portal_url = if portal.url.is_empty() {
        default_portal_url(reached, portal.tls_enabled().then_some(portal.tls_port))
    } else {
        portal.url.clone()
    };
    let mut view = CaptiveView {
        captive: true,
        user_portal_url,
        venue_info_url: (!portal.venue_info_url.is_empty()).then(|| portal.venue_info_url.clone()),
        can_extend_session: true,
        seconds_remaining: None,
        bytes_remaining: None,
    };
    let (Owner::Client(_), Some(grant)) = (owner, grant) else {
        return view;
    };
    // A grant whose budget or time is spent no longer passes the client's packets: the
    // daemon is about to remove it, and the client is captive already.
    let spent = (grant.bytes_left != UNLIMITED_BYTES && grant.bytes_left <= 0)
        || (grant.deadline_jiffies != NO_DEADLINE && now >= grant.deadline_jiffies);
    if spent {
        return view;
    }
    let left = remaining(grant, now, hz);
    view.captive = false;
    view.seconds_remaining = left.seconds;
    view.bytes_remaining = left.bytes;
    view
}

/// What `grant` leaves its client at `now`: seconds when it has a deadline, bytes when it has
/// a budget.
#[must_use]
pub fn remaining(grant: &Grant, now: u64, hz: u32) -> Remaining {
    Remaining {
        seconds: (grant.deadline_jiffies != NO_DEADLINE)
            .then(|| seconds_until(grant.deadline_jiffies, now, hz)),
        bytes: (grant.bytes_left != UNLIMITED_BYTES)
            .then(|| u64::try_from(grant.bytes_left.max(0)).unwrap_or(0)),
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
    use crate::mac::MacAddr;

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
    fn only_a_named_client_with_a_live_grant_is_not_captive() {
        let portal = PortalConfig::default();
        let reached: SocketAddr = "192.0.2.1:2050".parse().expect("valid");
        let client = Owner::Client(MacAddr::from(hotspotd_common::MacKey::new([
            2, 0, 0, 0, 0, 1,
        ])));
        let (now, hz) = (10_000, 250);
        // One minute and 5 MB left (the kernel's slack and a tick beyond the minute).
        let live = Grant::new(1, 5_000_000, now + 250 * 60 + 6);
        let answer = view(&portal, reached, &client, Some(&live), now, hz);
        assert!(!answer.captive);
        assert_eq!(answer.seconds_remaining, Some(60));
        assert_eq!(answer.bytes_remaining, Some(5_000_000));
        assert_eq!(answer.user_portal_url, "http://192.0.2.1:2050/");
        // Unlimited data: no bytes; no deadline: no seconds.
        let unlimited = Grant::new(1, UNLIMITED_BYTES, NO_DEADLINE);
        let answer = view(&portal, reached, &client, Some(&unlimited), now, hz);
        assert!(!answer.captive && answer.seconds_remaining.is_none());
        assert!(answer.bytes_remaining.is_none());
        // Spent budget, passed deadline, no grant, nobody named, a conflict: captive.
        let spent = Grant::new(1, 0, NO_DEADLINE);
        let over = Grant::new(1, -1_500, NO_DEADLINE);
        let ended = Grant::new(1, UNLIMITED_BYTES, now);
        for grant in [Some(&spent), Some(&over), Some(&ended), None] {
            let answer = view(&portal, reached, &client, grant, now, hz);
            assert!(answer.captive && answer.seconds_remaining.is_none());
            assert!(answer.bytes_remaining.is_none());
        }
        let conflict = Owner::Conflict(crate::addresses::AddressMove {
            ip: reached.ip(),
            from: MacAddr::from(hotspotd_common::MacKey::new([2, 0, 0, 0, 0, 1])),
            to: MacAddr::from(hotspotd_common::MacKey::new([2, 0, 0, 0, 0, 2])),
            at: chrono::Utc::now(),
        });
        for owner in [Owner::Unknown, conflict] {
            assert!(view(&portal, reached, &owner, Some(&live), now, hz).captive);
        }
    }

    #[test]
    fn the_last_byte_and_the_last_jiffy_still_count() {
        let portal = PortalConfig::default();
        let reached: SocketAddr = "192.0.2.1:2050".parse().expect("valid");
        let client = Owner::Client(MacAddr::from(hotspotd_common::MacKey::new([
            2, 0, 0, 0, 0, 1,
        ])));
        let (now, hz) = (10_000, 250);
        // One byte left: the kernel passes one more packet, so not captive; none left: captive.
        let one_byte = Grant::new(1, 1, NO_DEADLINE);
        let answer = view(&portal, reached, &client, Some(&one_byte), now, hz);
        assert!(!answer.captive);
        assert_eq!(answer.bytes_remaining, Some(1));
        assert!(
            view(
                &portal,
                reached,
                &client,
                Some(&Grant::new(1, 0, NO_DEADLINE)),
                now,
                hz
            )
            .captive
        );
        // A deadline one jiffy away passes packets; one at `now` drops them.
        let last_jiffy = Grant::new(1, UNLIMITED_BYTES, now + 1);
        let answer = view(&portal, reached, &client, Some(&last_jiffy), now, hz);
        assert!(!answer.captive);
        assert_eq!(answer.seconds_remaining, Some(0));
        let at_deadline = Grant::new(1, UNLIMITED_BYTES, now);
        assert!(view(&portal, reached, &client, Some(&at_deadline), now, hz).captive);
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
