//! The TCP listener's door: every request must carry `Authorization: Bearer <token>` with the
//! token of `api.token_file`. Refusals are counted per source ([`super::throttle`]): one that
//! sent too many is answered `429` for a while, its token not even compared. Side effects: a
//! log line for a source's first refusal in a window and one when it is blocked; counts in
//! [`Alerts`] for `/metrics`.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
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

/// Lets a request through only with the token, and only from a source not blocked.
pub(super) async fn require_token(
    State(guard): State<Arc<TokenGuard>>,
    request: Request,
    next: Next,
) -> Response {
    // `serve` puts each TCP connection's peer on its requests.
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
    let now = Instant::now();
    let blocked = guard.throttle().blocked(address, now);
    if let Some(wait) = blocked {
        guard.alerts.update(|counts| counts.api_rate_limited += 1);
        return too_many(wait);
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    if presented.is_some_and(|presented| same(presented.as_bytes(), guard.token.as_bytes())) {
        return next.run(request).await;
    }
    guard.refused(address, now);
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "this listener needs 'Authorization: Bearer <token>' with the token of api.token_file",
    )
    .into_response()
}

/// `429` with `Retry-After` in whole seconds, rounded up so a client that waits that long is
/// served.
fn too_many(wait: Duration) -> Response {
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
