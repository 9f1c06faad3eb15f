//! The operator's dashboard: pages served on the API's TCP listener under `/dashboard`
//! (docs/dashboard.md), never on the portal's. A login form takes the API token and opens a
//! login ([`logins`]); the pages' script then calls the same `/v1` API with the login's cookie
//! and CSRF token ([`door`]), and follows the daemon's events on a stream of its own, capped
//! ([`live`]). Charts are SVG drawn here from the usage history and the
//! sales ([`charts`]); the voucher sheet is `hotspotctl --print`'s. Every asset is in the
//! binary: no CDN, no build step.

pub mod charts;
pub mod door;
pub mod lan;
mod live;
pub mod logins;

use std::{net::SocketAddr, sync::Arc, time::Instant};

use axum::{
    Form, Json, Router,
    extract::{ConnectInfo, Query, State, rejection::JsonRejection},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse as _, Response},
    routing::{get, post},
};
use serde::Deserialize;

use tokio_util::sync::CancellationToken;

use self::door::Door;
use crate::{api::error::ApiError, control::Commands, events::Events};

const INDEX: &str = include_str!("assets/index.html");
const LOGIN: &str = include_str!("assets/login.html");
const STYLE: &str = include_str!("assets/style.css");
const SCRIPT: &str = include_str!("assets/app.js");

/// What the dashboard's handlers share.
#[derive(Clone)]
struct DashboardState {
    commands: Commands,
    door: Arc<Door>,
    events: Events,
    /// Ends the event streams when the daemon stops.
    shutdown: CancellationToken,
    streams: live::Streams,
}

/// The dashboard's routes; the TCP listener puts [`door::door`] in front of them.
pub fn router(
    commands: Commands,
    door: Arc<Door>,
    events: Events,
    shutdown: CancellationToken,
) -> Router {
    Router::new()
        .route("/dashboard", get(index))
        .route("/dashboard/", get(index))
        .route("/dashboard/login", get(login_form).post(log_in))
        .route("/dashboard/logout", post(log_out))
        .route("/dashboard/style.css", get(style))
        .route("/dashboard/app.js", get(script))
        .route("/dashboard/charts/traffic.svg", get(traffic_chart))
        .route("/dashboard/charts/sales.svg", get(sales_chart))
        .route("/dashboard/vouchers/sheet", post(voucher_sheet))
        .route("/dashboard/events", get(live::events))
        .layer(axum::middleware::from_fn(
            crate::api::serve::read_body_in_time,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::api::error::MAX_BODY_BYTES,
        ))
        .with_state(DashboardState {
            commands,
            door,
            events,
            shutdown,
            streams: live::Streams::default(),
        })
}

/// Headers of every page: no caching of what a login saw, no framing by other sites, and
/// nothing loaded from elsewhere.
fn page(body: String) -> Response {
    let mut response = Html(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'self'; form-action 'self'",
        ),
    );
    headers.insert(
        HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("SAMEORIGIN"),
    );
    headers.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    response
}

async fn index(State(state): State<DashboardState>, headers: HeaderMap) -> Response {
    // A page opened with the bearer token has no login, so no CSRF token: it can only read.
    let csrf = logins::cookie(&headers)
        .filter(|id| state.door.logins.is_open(id, Instant::now()))
        .map(|id| state.door.logins.csrf(id))
        .unwrap_or_default();
    page(INDEX.replace("{{csrf}}", &csrf))
}

fn login_page(message: &str) -> String {
    LOGIN.replace("{{message}}", &crate::voucher_sheet::escape(message))
}

async fn login_form() -> Response {
    page(login_page(""))
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

/// Opens a login for the right token; a wrong one is counted like a wrong bearer token.
async fn log_in(
    State(state): State<DashboardState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let now = Instant::now();
    let presented = form.map(|Form(form)| form.token).unwrap_or_default();
    if !state.door.guard.accepts(presented.trim()) {
        let _ = state.door.guard.refuse(peer.ip(), now);
        let mut response = page(login_page(
            "That is not the token of api.token_file. Copy its first line.",
        ));
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return response;
    }
    let id = match state.door.logins.log_in(now) {
        Ok(id) => id,
        Err(error) => {
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("cannot draw a login id from /dev/urandom: {error}"),
            )
            .into_response();
        }
    };
    tracing::info!(address = %peer.ip(), "the dashboard was logged in to");
    let cookie = format!(
        "{}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        logins::COOKIE,
        logins::LOGIN_LIFETIME.as_secs()
    );
    see_other("/dashboard", &cookie)
}

async fn log_out(State(state): State<DashboardState>, headers: HeaderMap) -> Response {
    if let Some(id) = logins::cookie(&headers) {
        state.door.logins.log_out(id);
    }
    let cookie = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        logins::COOKIE
    );
    see_other("/dashboard/login", &cookie)
}

fn see_other(location: &'static str, cookie: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, HeaderValue::from_static(location));
    if let Ok(cookie) = HeaderValue::from_str(cookie) {
        headers.insert(header::SET_COOKIE, cookie);
    }
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `?days=N`: how far back a chart reaches. Other parameters are ignored: the page adds one
/// so that the browser loads a chart anew instead of showing the one it has.
#[derive(Deserialize)]
struct ChartQuery {
    days: Option<u32>,
}

/// The longest a chart reaches back.
const MAX_CHART_DAYS: u32 = 366;

fn chart_days(
    query: Result<Query<ChartQuery>, axum::extract::rejection::QueryRejection>,
    default: u32,
) -> Result<u32, ApiError> {
    let Query(query) = query.map_err(|rejection| {
        crate::api::error::bad_request(format!(
            "{}: a chart takes days (1 to {MAX_CHART_DAYS})",
            rejection.body_text()
        ))
    })?;
    match query.days.unwrap_or(default) {
        days @ 1..=MAX_CHART_DAYS => Ok(days),
        other => Err(crate::api::error::bad_request(format!(
            "days={other} is out of range: a chart shows 1 to {MAX_CHART_DAYS} days"
        ))),
    }
}

fn svg(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// `GET /dashboard/charts/traffic.svg?days=N` (7 by default): every client's traffic, by
/// hour up to two days, by day beyond.
async fn traffic_chart(
    State(state): State<DashboardState>,
    query: Result<Query<ChartQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let days = chart_days(query, 7)?;
    let now = chrono::Utc::now();
    let by = if days <= 2 {
        crate::store::usage::Period::Hour
    } else {
        crate::store::usage::Period::Day
    };
    let since = charts::first_period(now, days, by);
    let history = crate::api::history::history(&state.commands).await?;
    let totals = crate::api::history::blocking(move || history.traffic_totals(since, by)).await?;
    Ok(svg(charts::traffic(&totals, since, now, by)))
}

/// `GET /dashboard/charts/sales.svg?days=N` (30 by default): sessions sold per day, and
/// what they brought.
async fn sales_chart(
    State(state): State<DashboardState>,
    query: Result<Query<ChartQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let days = chart_days(query, 30)?;
    let now = chrono::Utc::now();
    let since = charts::first_period(now, days, crate::store::usage::Period::Day);
    let history = crate::api::history::history(&state.commands).await?;
    let totals = crate::api::history::blocking(move || history.sales_totals(since)).await?;
    Ok(svg(charts::sales(&totals, since, now)))
}

/// `POST /dashboard/vouchers/sheet`: creates a batch as `POST /v1/vouchers` does (same body)
/// and answers with its page of cards to print, the only place its codes are shown.
async fn voucher_sheet(
    State(state): State<DashboardState>,
    body: Result<Json<crate::views::NewVoucherBatch>, JsonRejection>,
) -> Result<Response, ApiError> {
    let (_, Json(created)) =
        crate::api::handlers::create_vouchers(State(state.commands), body).await?;
    tracing::info!(
        count = created.len(),
        "vouchers were created from the dashboard"
    );
    Ok(page(crate::voucher_sheet::cards(&created)))
}
