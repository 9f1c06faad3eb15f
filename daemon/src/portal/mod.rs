//! The front door on the LAN: hotspotd's portal listeners (`portal.listen_port`, and
//! `portal.tls_port` for HTTPS when `portal.tls_cert` and `portal.tls_key` are set, on the LAN
//! interface only) and what they serve, the same on both. For now that is the RFC 8908
//! captive-portal API, `GET /api/captive`: whether the asking client is captive, where its
//! portal is, and for a running session the seconds and bytes it has left, read from the
//! kernel's grant at the moment of the request. Side effects: the listeners, until shutdown.

mod listen;
pub mod tls;

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::{ConnectInfo, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::{net::TcpListener, sync::watch};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use listen::{Port, PortalListenError};
pub use tls::{PortalTls, TlsFilesError};

use crate::{
    config::Config,
    control::{Command, Commands},
};

/// The media type RFC 8908 gives the API's answers.
const CAPTIVE_JSON: &str = "application/captive+json";

/// Both ends of a portal connection: who asks, and which of the box's addresses it reached
/// (the portal's URL names that one when `portal.url` is empty).
#[derive(Clone, Copy, Debug)]
pub struct Ends {
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

/// Why the portal cannot be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error(transparent)]
    Listen(#[from] PortalListenError),
    #[error("the portal cannot serve HTTPS")]
    Tls(#[from] TlsFilesError),
}

/// The portal's listening sockets, bound at start: plain HTTP, and HTTPS with its TLS if the
/// configuration has a certificate.
pub struct Listeners {
    plain: Vec<TcpListener>,
    https: Option<(Vec<TcpListener>, PortalTls)>,
}

impl Listeners {
    /// Binds `portal.listen_port` on the LAN interface, and if `portal.tls_cert` and
    /// `portal.tls_key` are set, loads them and binds `portal.tls_port`.
    pub fn bind(config: &Config) -> Result<Self, PortalError> {
        let lan = &config.network.lan_interface;
        let portal = &config.portal;
        let plain = listen::bind(lan, Port::Plain(portal.listen_port))?;
        let https = if portal.tls_enabled() {
            let tls = PortalTls::new(portal)?;
            Some((listen::bind(lan, Port::Tls(portal.tls_port))?, tls))
        } else {
            None
        };
        Ok(Self { plain, https })
    }

    /// Whether HTTPS is among them.
    #[must_use]
    pub fn serves_https(&self) -> bool {
        self.https.is_some()
    }
}

/// What the portal serves, over HTTP and HTTPS alike: every page and API of the portal is
/// routed here, once.
pub fn router(commands: Commands) -> Router {
    Router::new()
        .route("/api/captive", get(captive))
        .fallback(not_found)
        .with_state(commands)
}

/// Serves the portal on `listeners` until `shutdown`; the HTTPS side takes a renewed
/// certificate from each configuration `reloads` brings (SIGHUP).
pub async fn serve(
    listeners: Listeners,
    commands: Commands,
    reloads: watch::Receiver<Arc<Config>>,
    shutdown: CancellationToken,
) {
    let router = router(commands);
    let tasks = TaskTracker::new();
    for listener in listeners.plain {
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
    if let Some((https, tls)) = listeners.https {
        for listener in https {
            let router = router.clone();
            let shutdown = shutdown.clone();
            let tls = tls.clone();
            tasks.spawn(async move {
                let accept = || async {
                    let (stream, peer) = listener.accept().await?;
                    let local = stream.local_addr()?;
                    Ok(((stream, peer), Some(Ends { peer, local })))
                };
                // The handshake runs in the connection's task, under its time limit.
                let handshake = move |(stream, peer)| {
                    let tls = tls.clone();
                    async move { tls.handshake(stream, peer).await }
                };
                crate::api::serve::serve_prepared(
                    accept,
                    handshake,
                    router,
                    shutdown,
                    crate::api::serve::MAX_CONNECTIONS,
                )
                .await;
            });
        }
        tasks.spawn(tls.follow_reloads(reloads, shutdown.clone()));
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
