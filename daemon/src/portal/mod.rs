//! The front door on the LAN: hotspotd's portal listener (`portal.listen_port` on the LAN
//! interface only) and what it serves. For now that is the RFC 8908 captive-portal API,
//! `GET /api/captive`: whether the asking client is captive, where its portal is, and for a
//! running session the seconds and bytes it has left, read from the kernel's grant at the
//! moment of the request. Side effects: the listeners, until shutdown. `rfc8910` derives the
//! API's URI that DHCP and router advertisements give phones.

mod listen;
pub mod rfc8910;

use std::net::SocketAddr;

use axum::{
    Router,
    extract::{ConnectInfo, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use listen::{PortalListenError, bind};

use crate::control::{Command, Commands};

/// The media type RFC 8908 gives the API's answers.
const CAPTIVE_JSON: &str = "application/captive+json";

/// Both ends of a portal connection: who asks, and which of the box's addresses it reached
/// (the portal's URL names that one when `portal.url` is empty).
#[derive(Clone, Copy, Debug)]
pub struct Ends {
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

/// Serves the portal on `listeners` until `shutdown`.
pub async fn serve(listeners: Vec<TcpListener>, commands: Commands, shutdown: CancellationToken) {
    let router = Router::new()
        .route("/api/captive", get(captive))
        .fallback(not_found)
        .with_state(commands);
    let tasks = tokio_util::task::TaskTracker::new();
    for listener in listeners {
        let router = router.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let accept = || async {
                let (stream, peer) = listener.accept().await?;
                let local = stream.local_addr()?;
                Ok((stream, Some(Ends { peer, local })))
            };
            crate::api::serve::serve(accept, router, shutdown, crate::api::serve::MAX_CONNECTIONS)
                .await;
        });
    }
    tasks.close();
    tasks.wait().await;
}

/// `GET /api/captive` (RFC 8908): the asking client's state, `application/captive+json`,
/// never cached by anything shared (`Cache-Control: private`).
async fn captive(
    State(commands): State<Commands>,
    ConnectInfo(ends): ConnectInfo<Ends>,
) -> Response {
    let answer = commands
        .ask(|reply| Command::Captive {
            client: ends.peer.ip(),
            reached: ends.local,
            reply,
        })
        .await;
    let Ok(view) = answer else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "hotspotd is shutting down\n",
        )
            .into_response();
    };
    let body = serde_json::to_string(&view).unwrap_or_default();
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CAPTIVE_JSON));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    response
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}
