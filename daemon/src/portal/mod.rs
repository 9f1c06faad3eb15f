//! The front door on the LAN: hotspotd's portal listeners (`portal.listen_port`, and
//! `portal.tls_port` for HTTPS when `portal.tls_cert` and `portal.tls_key` are set, on the LAN
//! interface only) and what they serve, the same on both: the RFC 8908 captive-portal API,
//! `GET /api/captive`
//! (whether the asking client is captive, where its portal is, and for a running session the
//! seconds and bytes it has left, read from the kernel's grant at the moment of the request),
//! and the built-in portal's pages (`pages`), in the operator's theme (`crate::theme`). Every answer
//! carries a Content-Security-Policy, `no-store` (unless it says otherwise), `nosniff` and
//! `no-referrer`. `rfc8910` derives the API's URI that DHCP and router advertisements give
//! phones, `redirect` and `routes` steer unpaid clients here. Side effects: the listeners,
//! until shutdown.

mod captive;
mod csrf;
mod listen;
mod pages;
pub mod redirect;
pub mod rfc8910;
pub mod routes;
pub mod tls;

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::{ConnectInfo, DefaultBodyLimit, State},
    http::{HeaderName, HeaderValue, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use tokio::{net::TcpListener, sync::watch};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use crate::theme::{Theme, ThemeError};
pub use crate::tls_files::TlsFilesError;
pub use captive::CaptiveSource;
pub use csrf::CsrfKey;
pub use listen::{Port, PortalListenError};
pub use pages::MAX_CODE_CHARS;
pub use tls::PortalTls;

use crate::{config::Config, control::Commands};

/// The media type RFC 8908 gives the API's answers.
const CAPTIVE_JSON: &str = "application/captive+json";

/// Both ends of a portal connection: who asks, and which of the box's addresses it reached
/// (the portal's URL names that one when `portal.url` is empty).
#[derive(Clone, Copy, Debug)]
pub struct Ends {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// Whether the connection is HTTPS (cookies are then `Secure`).
    pub tls: bool,
}

/// The largest form body taken: a token and a code are a hundred bytes.
const MAX_FORM_BYTES: usize = 4_096;

/// The policy of every answer: nothing but the box's own files, no framing (clickjacking of
/// the pause button), forms only to the portal.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// What every page handler needs: the control task, the theme, the CSRF key. One per
/// daemon, shared by every listener serving the portal (so a token made on one is good on
/// another).
#[derive(Clone)]
pub struct Site {
    commands: Commands,
    theme: Arc<Theme>,
    csrf: Arc<CsrfKey>,
    /// The RFC 8908 answer's source: the kernel, read off the control task.
    captive: Arc<CaptiveSource>,
}

impl Site {
    #[must_use]
    pub fn new(commands: Commands, theme: Theme, csrf: CsrfKey, captive: CaptiveSource) -> Self {
        Self {
            commands,
            theme: Arc::new(theme),
            csrf: Arc::new(csrf),
            captive: Arc::new(captive),
        }
    }
}

/// Everything the portal serves, for any listener (plain HTTP here; HTTPS beside it). The
/// connections must carry [`Ends`] as their connect info.
pub fn router(site: Site) -> Router {
    Router::new()
        .route("/api/captive", get(captive))
        .route("/", get(pages::home).post(pages::redeem))
        .route("/pause", post(pages::pause))
        .route("/resume", post(pages::resume))
        .route("/resume-voucher", post(pages::resume_voucher))
        .route("/trial", post(pages::trial))
        .route("/portal.js", get(pages::script))
        .route("/style.css", get(pages::style))
        .route("/logo", get(pages::logo))
        .fallback(pages::not_found)
        .method_not_allowed_fallback(pages::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(site)
}

/// Adds the headers every answer carries, where the handler set none of its own.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        // Pages show one device's session: no cache may keep them.
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers
            .entry::<HeaderName>(name)
            .or_insert(HeaderValue::from_static(value));
    }
    response
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

/// How often the portal looks whether the LAN interface was deleted and made again.
const LINK_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Serves `router` (see [`router`]) on `listeners` until `shutdown`; the HTTPS side takes a
/// renewed certificate from each configuration `reloads` brings (SIGHUP).
///
/// The listeners are bound to the LAN interface as it was when they were made: one deleted
/// and made again (a bridge rebuilt by the network configuration) is another device, which
/// they would never hear from. So the portal watches the interface's index and, when it
/// changes, binds new listeners on it with the configuration it started with.
pub async fn serve(
    listeners: Listeners,
    router: Router,
    reloads: watch::Receiver<Arc<Config>>,
    shutdown: CancellationToken,
) {
    let started = Arc::clone(&reloads.borrow());
    let lan = started.network.lan_interface.clone();
    let index_of = || nix::net::if_::if_nametoindex(lan.as_str()).ok();
    let mut bound_to = index_of();
    let mut listeners = Some(listeners);
    loop {
        let round = shutdown.child_token();
        let serving = listeners.take().map(|listeners| {
            tokio::spawn(serve_round(
                listeners,
                router.clone(),
                reloads.clone(),
                round.clone(),
            ))
        });
        let now = loop {
            tokio::select! {
                () = shutdown.cancelled() => break None,
                () = tokio::time::sleep(LINK_CHECK) => {}
            }
            let now = index_of();
            if now.is_some() && now != bound_to {
                break now;
            }
        };
        round.cancel();
        if let Some(serving) = serving {
            let _ = serving.await;
        }
        if now.is_none() {
            return;
        }
        match Listeners::bind(&started) {
            Ok(bound) => {
                tracing::info!(interface = %lan, "the portal listens on the recreated LAN interface");
                listeners = Some(bound);
                bound_to = now;
            }
            Err(error) => {
                tracing::warn!(interface = %lan, error = %crate::text::chain(&error), "cannot listen on the recreated LAN interface; retrying");
            }
        }
    }
}

/// Serves `router` on `listeners` until `shutdown`: one round of [`serve`].
async fn serve_round(
    listeners: Listeners,
    router: Router,
    reloads: watch::Receiver<Arc<Config>>,
    shutdown: CancellationToken,
) {
    let tasks = TaskTracker::new();
    tasks.spawn(serve_plain(
        listeners.plain,
        router.clone(),
        shutdown.clone(),
    ));
    if let Some((https, tls)) = listeners.https {
        for listener in https {
            let router = router.clone();
            let shutdown = shutdown.clone();
            let tls = tls.clone();
            tasks.spawn(async move {
                let accept = || async {
                    let (stream, peer) = listener.accept().await?;
                    let local = stream.local_addr()?;
                    Ok((
                        (stream, peer),
                        Some(Ends {
                            peer,
                            local,
                            tls: true,
                        }),
                    ))
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

/// Serves `router` over plain HTTP on each of `listeners`, handlers knowing both ends of
/// each connection ([`Ends`]), until `shutdown`.
async fn serve_plain(listeners: Vec<TcpListener>, router: Router, shutdown: CancellationToken) {
    let tasks = TaskTracker::new();
    for listener in listeners {
        let router = router.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let accept = || async {
                let (stream, peer) = listener.accept().await?;
                let local = stream.local_addr()?;
                Ok((
                    stream,
                    Some(Ends {
                        peer,
                        local,
                        tls: false,
                    }),
                ))
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
async fn captive(State(site): State<Site>, ConnectInfo(ends): ConnectInfo<Ends>) -> Response {
    let view = site.captive.view(ends.peer.ip(), ends.local);
    let body = serde_json::to_string(&view).unwrap_or_default();
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CAPTIVE_JSON));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    response
}
