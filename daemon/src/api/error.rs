//! What the API answers when it refuses: an HTTP status, a stable code and a sentence saying
//! what to do ([`ApiError`], rendered as an `ErrorBody`), with the refusals shared by the
//! API's handlers and the dashboard's. Pure.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};

use crate::{
    control::{CommandError, ControlGone, RedeemError, TrialError, VoucherError},
    mac::MacAddr,
    sessions::engine::EngineError,
    views::{ErrorBody, ErrorDetail},
};

/// The largest request body read. The largest body any endpoint takes, a new session, is a
/// few hundred bytes; the cap keeps a client from making the daemon buffer megabytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// An error a handler answers with: HTTP status, stable code, sentence.
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: crate::text::bounded(message.into()),
        }
    }
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
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            gone.to_string(),
        )
    }
}

impl From<RedeemError> for ApiError {
    fn from(error: RedeemError) -> Self {
        let status = match error {
            RedeemError::UnknownCode => StatusCode::NOT_FOUND,
            RedeemError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            RedeemError::Failed(_) | RedeemError::ServerAway(_) => StatusCode::SERVICE_UNAVAILABLE,
            RedeemError::Rejected { .. } => StatusCode::FORBIDDEN,
            RedeemError::Revoked
            | RedeemError::Expired
            | RedeemError::UsedUp
            | RedeemError::OwnSession => StatusCode::CONFLICT,
        };
        Self::new(status, error.code(), error.to_string())
    }
}

impl From<TrialError> for ApiError {
    fn from(error: TrialError) -> Self {
        let status = match error {
            TrialError::TooSoon { .. } => StatusCode::TOO_MANY_REQUESTS,
            TrialError::Off | TrialError::HasSession => StatusCode::CONFLICT,
            TrialError::Failed(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self::new(status, error.code(), error.to_string())
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        // The whole chain: the variants name what failed, their sources say why.
        let message = crate::text::chain_string(&error);
        let (status, code) = match &error {
            CommandError::Invalid(_) | CommandError::Engine(EngineError::InvalidSession { .. }) => {
                (StatusCode::BAD_REQUEST, "invalid_session")
            }
            CommandError::Engine(EngineError::UnknownSession { .. }) => {
                (StatusCode::NOT_FOUND, "unknown_session")
            }
            CommandError::Engine(EngineError::DuplicateSession { .. }) => {
                (StatusCode::CONFLICT, "duplicate_session")
            }
            CommandError::Engine(EngineError::NoSessionLeft { .. }) => {
                (StatusCode::CONFLICT, "no_session_left")
            }
            CommandError::Engine(EngineError::NotConnected { .. }) => {
                (StatusCode::CONFLICT, "not_connected")
            }
            CommandError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            CommandError::Voucher(
                VoucherError::Count(_) | VoucherError::MaxDevices(_) | VoucherError::PastDate(_),
            ) => (StatusCode::BAD_REQUEST, "invalid_voucher"),
            CommandError::Voucher(VoucherError::UnknownCode) => {
                (StatusCode::NOT_FOUND, "unknown_code")
            }
            CommandError::Voucher(VoucherError::UnknownVoucher(_)) => {
                (StatusCode::NOT_FOUND, "unknown_voucher")
            }
            CommandError::Voucher(VoucherError::Random(_)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        Self::new(status, code, message)
    }
}

pub(crate) fn parse_mac(text: &str) -> Result<MacAddr, ApiError> {
    let mac = text.parse().map_err(|error: crate::mac::ParseMacError| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_mac", error.to_string())
    })?;
    station(mac)
}

/// Refuses a MAC no device sends from: a session for it could never be used.
pub(crate) fn station(mac: MacAddr) -> Result<MacAddr, ApiError> {
    if mac.is_station() {
        return Ok(mac);
    }
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad_mac",
        format!(
            "{mac} is a multicast, broadcast or all-zero address, which no client sends from: \
             use the client's own MAC"
        ),
    ))
}

pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
}

pub(crate) fn body_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!(
            "the request body is larger than {MAX_BODY_BYTES} bytes; a session is a few hundred"
        ),
    )
}
