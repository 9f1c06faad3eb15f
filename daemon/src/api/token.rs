//! The TCP listener's token: a request carries `Authorization: Bearer <token>` with the token
//! of `api.token_file` (or a dashboard login made with it, see `crate::dashboard::door`). Refusals are counted per source ([`super::throttle`]): one that
//! sent too many is answered `429` for a while, its token not even compared. Side effects: a
//! log line for a source's first refusal in a window and one when it is blocked; counts in
//! [`Alerts`] for `/metrics`.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use axum::{
    extract::{ConnectInfo, Request},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse as _, Response},
};

use super::{
    ApiError,
    throttle::{BLOCK, MAX_FAILURES, Refusal, Throttle, WINDOW},
};
use crate::alerts::Alerts;

/// The token and who got it wrong lately.
pub struct TokenGuard {
    token: String,
    throttle: Mutex<Throttle>,
    alerts: Arc<Alerts>,
}

impl TokenGuard {
    #[must_use]
    pub fn new(token: String, alerts: Arc<Alerts>) -> Self {
        Self {
            token,
            throttle: Mutex::default(),
            alerts,
        }
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        // The throttle holds counts only; one left half-updated by a panic is still usable.
        self.throttle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a refusal from `address` and logs what the operator should hear of it.
    fn refused(&self, address: IpAddr, now: Instant) {
        self.alerts.update(|counts| counts.api_wrong_tokens += 1);
        let refusal = self.throttle().refused(address, now);
        match refusal {
            Refusal::First => tracing::warn!(
                "a TCP API request from {address} without the token of api.token_file was \
                 refused; after {MAX_FAILURES} within {} s its requests are refused for {} s",
                WINDOW.as_secs(),
                BLOCK.as_secs()
            ),
            Refusal::Blocked { failures } => tracing::warn!(
                "{address} sent {failures} TCP API requests without the right token within \
                 {} s: its requests are refused (429) for {} s, whatever token they carry",
                WINDOW.as_secs(),
                BLOCK.as_secs()
            ),
            Refusal::Again => {}
        }
    }
}

impl TokenGuard {
    /// How long `address` is still refused unread, counting the refusal, if it is blocked.
    pub(crate) fn blocked(&self, address: IpAddr, now: Instant) -> Option<Duration> {
        let blocked = self.throttle().blocked(address, now);
        if blocked.is_some() {
            self.alerts.update(|counts| counts.api_rate_limited += 1);
        }
        blocked
    }

    /// Whether `presented` is the token.
    pub(crate) fn accepts(&self, presented: &str) -> bool {
        same(presented.as_bytes(), self.token.as_bytes())
    }

    /// Counts a wrong or missing token from `address`, and answers `401`.
    pub(crate) fn refuse(&self, address: IpAddr, now: Instant) -> Response {
        self.refused(address, now);
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this listener needs 'Authorization: Bearer <token>' with the token of api.token_file, or a dashboard login",
        )
        .into_response()
    }
}

/// The address a TCP request came from (`serve` puts each connection's peer on its requests).
pub(crate) fn peer(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip())
}

/// The token of an `Authorization: Bearer` header, if the request has one.
pub(crate) fn bearer(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
}

/// `429` with `Retry-After` in whole seconds, rounded up so a client that waits that long is
/// served.
pub(crate) fn too_many(wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_wrong_tokens",
        format!(
            "too many requests from this address came without the right token; try again in \
             {secs} s with the token of api.token_file"
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

/// Compares in constant time, so how long a refusal takes says nothing about how much of the
/// token was right. `subtle` keeps the optimiser from turning the comparison back into an
/// early exit, which a hand-written fold does not promise. The length is not secret: tokens
/// of another length are refused at once.
fn same(presented: &[u8], token: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    bool::from(presented.ct_eq(token))
}

#[cfg(test)]
mod tests {
    use super::same;

    const TOKEN: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn the_token_is_accepted_only_whole() {
        assert!(same(TOKEN, TOKEN));
        assert!(same(b"0123456789abcdef0123456789abcdef", TOKEN));
        // Same length, one byte off (first, middle, last).
        for at in [0, TOKEN.len() / 2, TOKEN.len() - 1] {
            let mut wrong = TOKEN.to_vec();
            wrong[at] ^= 1;
            assert!(!same(&wrong, TOKEN), "accepted a token wrong at byte {at}");
        }
        // Other lengths: a prefix, the token with more after it, nothing.
        assert!(!same(&TOKEN[..TOKEN.len() - 1], TOKEN));
        assert!(!same(b"0123456789abcdef0123456789abcdef0", TOKEN));
        assert!(!same(b"", TOKEN));
    }
}
