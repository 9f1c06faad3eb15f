//! The HTTP/JSON API on a Unix socket: what captive portals and `hotspotctl` call. Side effects:
//! creates the socket file (mode 0660) and its folder, replaces a stale socket left by a dead
//! daemon, removes the socket on shutdown. Handlers only ask the control task; they hold no state.

use std::{
    net::IpAddr,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::{
    bpf::KernelStats,
    control::{Commands, ControlGone},
    mac::MacAddr,
};

/// A client's connection state, as `hotspotctl clients` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientState {
    Connected,
    Paused,
    Disconnected,
}

/// One client in `GET /v1/clients`. Bytes are IP-level; `up`/`down` are billable traffic,
/// `local_bytes` is traffic with the box itself (never billed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientView {
    pub mac: MacAddr,
    pub ips: Vec<IpAddr>,
    pub state: ClientState,
    pub session_id: Option<i64>,
    pub up_bytes: u64,
    pub down_bytes: u64,
    pub up_packets: u64,
    pub down_packets: u64,
    pub local_bytes: u64,
    pub dropped_bytes: u64,
    pub dropped_packets: u64,
    pub last_seen: Option<DateTime<Utc>>,
}

/// `GET /v1/status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    pub version: String,
    pub lan_interface: String,
    pub clients: usize,
    pub last_poll_ms: f64,
    pub kernel: KernelStats,
}

/// Every error the API returns: a stable machine code and a sentence for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// An error a handler answers with.
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<ControlGone> for ApiError {
    fn from(gone: ControlGone) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "shutting_down",
            message: gone.to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot create the API socket's folder {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "another hotspotd already serves {path}: stop it first, or set api.socket to another path"
    )]
    InUse { path: PathBuf },
    #[error("cannot listen on {path}: {source}")]
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
    let listener = UnixListener::bind(path).map_err(bind_error)?;
    // Owner and group (the portal's) may call the API; nobody else.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(bind_error)?;
    Ok(listener)
}

pub fn router(commands: Commands) -> Router {
    Router::new()
        .route("/v1/clients", get(clients))
        .route("/v1/status", get(status))
        .fallback(not_found)
        .with_state(commands)
}

/// Serves until `shutdown`, then removes the socket file.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    commands: Commands,
    shutdown: CancellationToken,
) {
    let served = axum::serve(listener, router(commands))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    if let Err(error) = served {
        tracing::error!(%error, "the API server stopped");
    }
    let _ = std::fs::remove_file(&path);
}

async fn clients(State(commands): State<Commands>) -> Result<Json<Vec<ClientView>>, ApiError> {
    Ok(Json(commands.clients().await?))
}

async fn status(State(commands): State<Commands>) -> Result<Json<StatusView>, ApiError> {
    Ok(Json(commands.status().await?))
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "not_found",
        message: format!("there is no endpoint {uri}; see docs/api.md"),
    }
}
