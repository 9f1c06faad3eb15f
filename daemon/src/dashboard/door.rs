//! The TCP listener's door, in front of the API and the dashboard. A request passes with the
//! bearer token, or with an open dashboard login's cookie, and then, unless it only reads
//! (GET, HEAD), with that login's CSRF token in `X-CSRF-Token`. The dashboard's pages are
//! refused to the LAN whatever they carry, and a login's cookie counts for nothing from there.
//! Without either the answer is `401` (a browser asking for a page is sent to the login form
//! instead), counted like a wrong token; a source that sent too many is answered `429`.
//! A login reads the events at `/dashboard/events`, whose streams are counted, not at
//! `/v1/events`, which only the bearer token opens.

use std::{sync::Arc, time::Instant};

use axum::{
    extract::{Request, State},
    http::{HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse as _, Response},
};

use super::logins::{self, Logins};
use crate::api::{
    error::ApiError,
    token::{TokenGuard, bearer, peer, too_many},
};

/// What the door checks against.
pub struct Door {
    pub guard: TokenGuard,
    pub logins: Logins,
    /// The LAN interface, whose networks never reach the dashboard.
    pub lan_interface: String,
}

/// The header a page of a login sends its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Where the dashboard lives on the listener.
pub const PREFIX: &str = "/dashboard";

/// The API's event stream: each one holds a connection for as long as it is read, so a
/// login (a page, or a script in it) is sent to the dashboard's, which are capped.
const API_EVENTS: &str = "/v1/events";

/// Whether `path` is one of the dashboard's.
fn is_dashboard(path: &str) -> bool {
    path == PREFIX
        || path
            .strip_prefix(PREFIX)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// What anyone off the LAN may ask for without a login: the login form and its style.
fn is_open(method: &Method, path: &str) -> bool {
    matches!(
        (method, path),
        (&Method::GET | &Method::POST, "/dashboard/login") | (&Method::GET, "/dashboard/style.css")
    )
}

pub(crate) async fn door(State(door): State<Arc<Door>>, request: Request, next: Next) -> Response {
    let address = peer(&request);
    let now = Instant::now();
    if let Some(wait) = door.guard.blocked(address, now) {
        return too_many(wait);
    }
    let path = request.uri().path();
    let dashboard = is_dashboard(path);
    // Read only where it matters: a portal's bearer requests to /v1 need no look at the
    // interfaces.
    let from_lan = || super::lan::is_on(&door.lan_interface, address);
    if dashboard && from_lan() {
        tracing::warn!(%address, "a request for the dashboard from the LAN was refused");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "lan_refused",
            "the dashboard is for the operator: it does not answer the hotspot's LAN",
        )
        .into_response();
    }
    if dashboard && is_open(request.method(), path) {
        return next.run(request).await;
    }
    if let Some(presented) = bearer(&request) {
        if door.guard.accepts(presented) {
            return next.run(request).await;
        }
        return door.guard.refuse(address, now);
    }
    let login = logins::cookie(request.headers())
        .filter(|id| door.logins.is_open(id, now) && !from_lan())
        .map(str::to_owned);
    if let Some(login) = login {
        if path == API_EVENTS {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "dashboard_stream",
                "a dashboard login reads the events at /dashboard/events (a few streams at once); /v1/events takes the bearer token",
            )
            .into_response();
        }
        let reads = matches!(*request.method(), Method::GET | Method::HEAD);
        let csrf = request
            .headers()
            .get(CSRF_HEADER)
            .and_then(|value| value.to_str().ok());
        if reads || csrf.is_some_and(|csrf| door.logins.csrf_accepts(&login, csrf)) {
            return next.run(request).await;
        }
        tracing::warn!(%address, path, "a dashboard request that changes something came without its login's CSRF token and was refused");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf_refused",
            "a request that changes something needs the X-CSRF-Token of its dashboard page: reload the page",
        )
        .into_response();
    }
    if dashboard && request.method() == Method::GET {
        // A person opening a page, or whose login ended: the form, nothing counted.
        let mut response = StatusCode::SEE_OTHER.into_response();
        response.headers_mut().insert(
            header::LOCATION,
            HeaderValue::from_static("/dashboard/login"),
        );
        return response;
    }
    door.guard.refuse(address, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dashboard_is_its_prefix_only() {
        assert!(is_dashboard("/dashboard"));
        assert!(is_dashboard("/dashboard/login"));
        assert!(!is_dashboard("/dashboardx"));
        assert!(!is_dashboard("/v1/clients"));
        assert!(is_open(&Method::POST, "/dashboard/login"));
        assert!(!is_open(&Method::POST, "/dashboard/logout"));
        assert!(!is_open(&Method::GET, "/dashboard"));
    }
}
