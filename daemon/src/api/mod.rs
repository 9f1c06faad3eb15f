//! The HTTP/JSON API on a Unix socket: what captive portals and `hotspotctl` call. Side effects:
//! creates the socket file (mode 0660) and its folder, replaces a stale socket left by a dead
//! daemon, removes the socket on shutdown. Handlers only ask the control task; they hold no state.

pub(crate) mod error;
pub(crate) mod handlers;
pub(crate) mod history;
pub(crate) mod serve;
mod sessions;
mod throttle;
pub(crate) mod token;

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use axum::{
    Router,
    routing::{get, post},
};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

pub use crate::views::{
    ClientView, ErrorBody, ErrorDetail, NewSession, SessionView, SetAsideView, StatusView,
};

pub use error::{ApiError, MAX_BODY_BYTES};

use crate::control::Commands;
use crate::events::Events;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot create the API socket's folder {path}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "another hotspotd already serves {path}: stop it first, or set api.socket to another path"
    )]
    InUse { path: PathBuf },
    #[error("api.token_file {path}: {reason}")]
    Token { path: PathBuf, reason: String },
    #[error("cannot draw the dashboard's login key from /dev/urandom")]
    LoginKey(#[source] std::io::Error),
    #[error("cannot listen on TCP {address}")]
    Tcp {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen on {path}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Binds the API socket at `path`, replacing a stale socket file nobody listens on.
pub async fn listen(path: &Path) -> Result<UnixListener, ListenError> {
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder).map_err(|source| ListenError::Folder {
            path: folder.to_owned(),
            source,
        })?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(ListenError::InUse {
                path: path.to_owned(),
            });
        }
        let _ = std::fs::remove_file(path);
    }
    let bind_error = |source| ListenError::Bind {
        path: path.to_owned(),
        source,
    };
    let fd = bind_private(path).map_err(bind_error)?;
    // Owner and group (the portal's) may call the API; nobody else. The kernel took the
    // socket's mode less the umask (0640 under 022): the group's write bit comes back here,
    // before `listen`, so no client connects while the file has another mode.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(bind_error)?;
    nix::sys::socket::listen(&fd, nix::sys::socket::Backlog::MAXCONN)
        .map_err(|errno| bind_error(errno.into()))?;
    UnixListener::from_std(std::os::unix::net::UnixListener::from(fd)).map_err(bind_error)
}

/// Binds (without listening) a Unix socket whose file is created with mode 0660 less the
/// umask, so there is no moment in which another user could connect: Linux creates the file
/// with the socket's own mode, which `fchmod` sets before `bind`.
fn bind_private(path: &Path) -> std::io::Result<std::os::fd::OwnedFd> {
    use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr};
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    nix::sys::stat::fchmod(&fd, nix::sys::stat::Mode::from_bits_truncate(0o660))?;
    socket::bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &UnixAddr::new(path)?)?;
    Ok(fd)
}

/// What the handlers share: the way to the control task, and the event stream.
#[derive(Clone)]
pub struct ApiState {
    pub commands: Commands,
    pub events: Events,
    /// Ends the event streams when the daemon stops, so shutdown does not wait on them.
    pub shutdown: CancellationToken,
}

impl axum::extract::FromRef<ApiState> for CancellationToken {
    fn from_ref(state: &ApiState) -> Self {
        state.shutdown.clone()
    }
}

impl axum::extract::FromRef<ApiState> for Commands {
    fn from_ref(state: &ApiState) -> Self {
        state.commands.clone()
    }
}

impl axum::extract::FromRef<ApiState> for Events {
    fn from_ref(state: &ApiState) -> Self {
        state.events.clone()
    }
}

pub fn router(commands: Commands, events: Events, shutdown: CancellationToken) -> Router {
    Router::new()
        .route("/v1/clients", get(handlers::clients))
        .route("/v1/clients/{mac}", get(handlers::client))
        .route("/v1/clients/{mac}/connect", post(handlers::connect))
        .route("/v1/clients/{mac}/pause", post(handlers::pause))
        .route(
            "/v1/sessions",
            get(sessions::sessions).post(handlers::add_session),
        )
        .route(
            "/v1/sessions/{id}",
            axum::routing::delete(handlers::remove_session),
        )
        .route("/v1/status", get(handlers::status))
        .route(
            "/v1/vouchers",
            get(handlers::vouchers).post(handlers::create_vouchers),
        )
        .route("/v1/garden", get(handlers::garden))
        .route("/v1/vouchers/redeem", post(handlers::redeem))
        .route("/v1/vouchers/revoke", post(handlers::revoke_by_code))
        .route("/v1/vouchers/{id}/revoke", post(handlers::revoke_voucher))
        .route("/v1/trial", post(handlers::trial))
        .route("/v1/portal/dhcp-options", get(handlers::dhcp_options))
        .route("/v1/events", get(handlers::events))
        .route("/v1/usage", get(history::usage))
        .route("/v1/sales", get(history::sales))
        .route("/metrics", get(handlers::metrics))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(axum::middleware::from_fn(serve::read_body_in_time))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(ApiState {
            commands,
            events,
            shutdown,
        })
}

/// What the TCP listener checks requests against: the token, the dashboard's logins, and the
/// LAN interface whose networks never reach the dashboard.
pub struct TcpAccess {
    pub token: String,
    pub logins: crate::dashboard::logins::Logins,
    pub lan_interface: String,
}

/// Serves the same API, and the dashboard (`crate::dashboard`), on a TCP listener until
/// `shutdown`, every request checked first for `Authorization: Bearer <token>` or a dashboard
/// login: without either the answer is `401` and nothing else, and a source that sent too
/// many of those is answered `429` (see `token.rs`, `dashboard/door.rs`). Refusals are
/// counted in `alerts`.
pub async fn serve_tcp(
    listener: tokio::net::TcpListener,
    access: TcpAccess,
    alerts: std::sync::Arc<crate::alerts::Alerts>,
    commands: Commands,
    events: Events,
    shutdown: CancellationToken,
) {
    let door = std::sync::Arc::new(crate::dashboard::door::Door {
        guard: token::TokenGuard::new(access.token, alerts),
        logins: access.logins,
        lan_interface: access.lan_interface,
    });
    // Outside the routers' own layers: the token is checked before the body is read.
    let guarded = router(commands.clone(), events.clone(), shutdown.clone())
        .merge(crate::dashboard::router(
            commands,
            std::sync::Arc::clone(&door),
            events,
            shutdown.clone(),
        ))
        .layer(axum::middleware::from_fn_with_state(
            door,
            crate::dashboard::door::door,
        ));
    let accept = || async {
        listener
            .accept()
            .await
            .map(|(stream, peer)| (stream, Some(peer)))
    };
    serve::serve(accept, guarded, shutdown, serve::MAX_CONNECTIONS).await;
}

/// Reads the bearer token from the first line of `path`.
pub fn read_token(path: &Path) -> Result<String, ListenError> {
    let text = std::fs::read_to_string(path).map_err(|source| ListenError::Token {
        path: path.to_owned(),
        reason: source.to_string(),
    })?;
    let token = text.lines().next().unwrap_or_default().trim().to_owned();
    if token.len() < MIN_TOKEN_LEN {
        return Err(ListenError::Token {
            path: path.to_owned(),
            reason: format!(
                "its first line must hold a token of at least {MIN_TOKEN_LEN} characters"
            ),
        });
    }
    Ok(token)
}

/// Shorter tokens are guessable; `openssl rand -hex 16` gives 32 characters.
const MIN_TOKEN_LEN: usize = 16;

/// Serves until `shutdown`, then removes the socket file.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    commands: Commands,
    events: Events,
    shutdown: CancellationToken,
) {
    let accept = || async {
        listener
            .accept()
            .await
            .map(|(stream, _)| (stream, None::<std::net::SocketAddr>))
    };
    serve::serve(
        accept,
        router(commands, events, shutdown.clone()),
        shutdown,
        serve::MAX_CONNECTIONS,
    )
    .await;
    let _ = std::fs::remove_file(&path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_socket_file_is_born_private() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("api.sock");
        let _listener = bind_private(&path).expect("bind");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        // A plain bind gives 0777 less the umask (0755 under the usual 022): any bit for
        // others, or the owner's x, means the mode did not come from the socket.
        assert_eq!(mode & 0o107, 0, "created as {mode:o}");
    }

    /// `listen` sets the mode before it listens: until then nobody can connect, so no client
    /// ever reaches the socket while its file has the umask's mode.
    #[tokio::test]
    async fn nobody_connects_before_the_mode_is_set() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("api.sock");
        let _bound = bind_private(&path).expect("bind");
        let refused = std::os::unix::net::UnixStream::connect(&path).expect_err("not listening");
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        let _ = std::fs::remove_file(&path);
        let _listener = listen(&path).await.expect("listen");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        std::os::unix::net::UnixStream::connect(&path).expect("listening");
    }
}
