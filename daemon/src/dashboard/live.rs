//! `GET /dashboard/events`: the event stream of `GET /v1/events` for the dashboard's page, as
//! server-sent events, so a client's row changes as soon as the daemon tells of it instead of
//! at the next poll.
//!
//! Why a route of its own rather than the page reading `/v1/events`: it is a dashboard route,
//! so the door refuses it to the LAN and without a login like every page; the number of
//! streams open at once is capped here, apart from the API's scrapers and portals; and the
//! stream ends when its login does. Server-sent events rather than raw NDJSON because the
//! browser parses them (`EventSource`), and a comment line every [`KEEP_ALIVE`] keeps proxies
//! from closing an idle stream. A tab that closes gives its place back at once: the
//! connection's end drops the stream.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{
        IntoResponse as _, Response,
        sse::{Event, Sse},
    },
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};
use tokio_util::sync::CancellationToken;

use super::{DashboardState, logins};
use crate::{api::error::ApiError, events::Record};

/// Dashboard event streams open at once, all logins together. Each holds one of the
/// listener's `MAX_CONNECTIONS` (256) connections for as long as its tab is open: 16 is
/// a tab each for more operators than a hotspot has, and leaves the API 240 whatever a page
/// (or a script with a login) does.
pub const MAX_STREAMS: usize = 16;

/// How often an idle stream sends a comment line, and checks that its login is still open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The places for streams; one is held by each open stream.
#[derive(Clone)]
pub struct Streams(Arc<Semaphore>);

impl Default for Streams {
    fn default() -> Self {
        Self(Arc::new(Semaphore::new(MAX_STREAMS)))
    }
}

/// What one stream carries along: where events come from, its place, its login (none when
/// it was opened with the bearer token), and what ends it.
struct Stream {
    receiver: broadcast::Receiver<Arc<Record>>,
    _place: OwnedSemaphorePermit,
    login: Option<String>,
    state: DashboardState,
    ticks: tokio::time::Interval,
    first: bool,
}

/// `GET /dashboard/events`: one `message` per event, its data the line `/v1/events` sends;
/// `429` `too_many_streams` when [`MAX_STREAMS`] are open.
pub(super) async fn events(State(state): State<DashboardState>, headers: HeaderMap) -> Response {
    let Ok(place) = Arc::clone(&state.streams.0).try_acquire_owned() else {
        tracing::warn!(
            streams = MAX_STREAMS,
            "a dashboard event stream was refused: all places are taken"
        );
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_streams",
            format!(
                "{MAX_STREAMS} dashboard event streams are open already: close a dashboard tab, the page retries"
            ),
        )
        .into_response();
    };
    let now = std::time::Instant::now();
    let login = logins::cookie(&headers)
        .filter(|id| state.door.logins.is_open(id, now))
        .map(str::to_owned);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = Stream {
        receiver: state.events.subscribe(),
        _place: place,
        login,
        state,
        ticks,
        first: true,
    };
    let body = futures::stream::unfold(stream, |mut stream| async move {
        let event = next(&mut stream).await?;
        Some((Ok::<_, Infallible>(event), stream))
    });
    let mut response = Sse::new(body).into_response();
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}

/// The stream's next item, or `None` when it ends: the daemon stops, or its login ended.
async fn next(stream: &mut Stream) -> Option<Event> {
    if std::mem::take(&mut stream.first) {
        // At once, so the page knows it is live (and headers leave now).
        return Some(Event::default().comment("live"));
    }
    let shutdown: &CancellationToken = &stream.state.shutdown;
    let received = tokio::select! {
        // The stream ends with the daemon, or a graceful shutdown would wait for it.
        () = shutdown.cancelled() => return None,
        _ = stream.ticks.tick() => {
            let now = std::time::Instant::now();
            if let Some(login) = &stream.login
                && !stream.state.door.logins.is_open(login, now)
            {
                return None;
            }
            return Some(Event::default().comment(""));
        }
        received = stream.receiver.recv() => received,
    };
    let line = match received {
        Ok(record) => serde_json::to_string(&*record).unwrap_or_default(),
        Err(broadcast::error::RecvError::Lagged(missed)) => {
            serde_json::json!({ "event": "missed", "count": missed }).to_string()
        }
        Err(broadcast::error::RecvError::Closed) => return None,
    };
    Some(Event::default().data(line))
}
