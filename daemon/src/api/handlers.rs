//! One function per endpoint: parse and check the request, ask the control task, answer. Bad
//! input (JSON, MAC, id) is refused here with a sentence and changes nothing.

use axum::{
    Json,
    extract::{
        Path, Query, State,
        rejection::{JsonRejection, PathRejection},
    },
    http::{HeaderName, StatusCode},
};
use serde::Deserialize;
use tokio::sync::broadcast;

use super::error::{ApiError, bad_request, body_too_large, parse_mac, station};
use crate::views::{ClientView, NewSession, SessionView, StatusView};
use crate::{
    control::{Command, Commands},
    events::Events,
    mac::MacAddr,
    portal::rfc8910::{self, Format},
    sessions::engine::SessionId,
    views::ClientFilter,
};

/// The header that says how many clients match a listing, beside the page it answers.
pub(super) const TOTAL_COUNT: &str = "x-total-count";

/// The most clients one page of `GET /v1/clients` holds.
pub const MAX_CLIENTS_PAGE: usize = 1_000;

/// Other parameters are ignored, as they were before these existed.
#[derive(Deserialize)]
pub(super) struct ClientsQuery {
    ip: Option<String>,
    search: Option<String>,
    state: Option<String>,
    offset: Option<String>,
    limit: Option<String>,
}

impl ClientsQuery {
    /// The listing's filter, or a sentence saying which parameter is wrong.
    fn filter(self) -> Result<ClientFilter, ApiError> {
        let state = self
            .state
            .map(|state| {
                serde_json::from_value(serde_json::Value::String(state.clone())).map_err(|_| {
                    bad_request(format!(
                        "state '{state}' is not a client state: connected, paused or disconnected"
                    ))
                })
            })
            .transpose()?;
        let number = |name: &str, text: Option<String>, range: std::ops::RangeInclusive<usize>| {
            text.map(|text| {
                text.parse::<usize>()
                    .ok()
                    .filter(|value| range.contains(value))
                    .ok_or_else(|| {
                        bad_request(format!(
                            "{name} must be a whole number from {} to {} (got '{text}')",
                            range.start(),
                            range.end()
                        ))
                    })
            })
            .transpose()
        };
        Ok(ClientFilter {
            search: self
                .search
                .map(|search| crate::views::client_search(&search).map_err(bad_request))
                .transpose()?,
            state,
            offset: number("offset", self.offset, 0..=usize::MAX)?.unwrap_or(0),
            limit: number("limit", self.limit, 1..=MAX_CLIENTS_PAGE)?,
        })
    }
}

/// `GET /v1/clients`: every client, or a page of them (`search`, `state`, `offset`,
/// `limit`), with how many match in `X-Total-Count`. `?ip=ADDR`: the one client the kernel saw
/// send from `ADDR` (how a portal finds who is asking), as a list of one; 404 if nobody did,
/// 409 if the address moved between two MACs in the last minute (someone claims another's
/// address: no answer could be trusted).
pub(super) async fn clients(
    State(commands): State<Commands>,
    query: Result<Query<ClientsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<([(HeaderName, String); 1], Json<Vec<ClientView>>), ApiError> {
    let Query(query) = query.map_err(|rejection| bad_request(rejection.body_text()))?;
    let total = |count: usize| [(HeaderName::from_static(TOTAL_COUNT), count.to_string())];
    let Some(ip) = query.ip.clone() else {
        let filter = query.filter()?;
        let page = commands
            .ask(|reply| Command::Clients { filter, reply })
            .await?;
        return Ok((total(page.total), Json(page.clients)));
    };
    let ip: std::net::IpAddr = ip.parse().map_err(|_| {
        bad_request(format!(
            "'{ip}' is not an IPv4 or IPv6 address: write it like 192.0.2.10 or 2001:db8::10"
        ))
    })?;
    match commands
        .ask(|reply| Command::ClientAt { ip, reply })
        .await?
    {
        Ok(crate::control::ClientAt::Client(view)) => Ok((total(1), Json(vec![*view]))),
        Ok(crate::control::ClientAt::Unknown) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_address",
            format!("no client has sent from {ip}: it may not have sent anything to the box yet"),
        )),
        Ok(crate::control::ClientAt::Conflict(change)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "address_conflict",
            format!(
                "{ip} moved from {} to {} at {}: two devices claim it, so hotspotd names neither; ask again in a minute",
                change.from, change.to, change.at
            ),
        )),
        Err(error) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!(
                "cannot read the kernel's table of addresses: {}",
                crate::text::chain(&error)
            ),
        )),
    }
}

/// `GET /v1/clients/{mac}`: one client, as `GET /v1/clients` lists it; 404 if it is not listed.
pub(super) async fn client(
    State(commands): State<Commands>,
    Path(mac): Path<String>,
) -> Result<Json<ClientView>, ApiError> {
    let mac = parse_mac(&mac)?;
    commands
        .ask(|reply| Command::Client { mac, reply })
        .await?
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_client",
                format!(
                    "hotspotd does not know the client {mac}: the kernel has seen no packet of it and it holds no session"
                ),
            )
        })
}

pub(super) async fn status(State(commands): State<Commands>) -> Result<Json<StatusView>, ApiError> {
    Ok(Json(commands.ask(|reply| Command::Status { reply }).await?))
}

pub(super) async fn add_session(
    State(commands): State<Commands>,
    body: Result<Json<NewSession>, JsonRejection>,
) -> Result<(StatusCode, Json<SessionView>), ApiError> {
    let Json(new) = body.map_err(|rejection| json_error(&rejection))?;
    let (mac, connect, price) = (station(new.mac)?, new.connect, new.price);
    // The control task stamps `created_at` again with the daemon's clock (`crate::clock`).
    let data = new.into_data(chrono::Utc::now());
    let view = commands
        .ask(|reply| Command::AddSession {
            mac,
            data,
            price,
            connect,
            reply,
        })
        .await??;
    Ok((StatusCode::CREATED, Json(view)))
}

pub(super) async fn remove_session(
    State(commands): State<Commands>,
    id: Result<Path<SessionId>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = id.map_err(|_| bad_request("a session id is a whole number, like 42"))?;
    let removed = commands
        .ask(|reply| Command::RemoveSession { id, reply })
        .await?;
    if let Err(crate::control::CommandError::Engine(
        crate::sessions::engine::EngineError::UnknownSession { .. },
    )) = removed
        && let Some(history) = commands.ask(|reply| Command::History { reply }).await?
        && let Some(ended) = super::history::blocking(move || history.ended_session(id)).await?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "session_ended",
            format!(
                "session {id} ended ({}) at {}: it is history, kept for the usage and sales reports until history.daily_days have passed, and is not removed",
                ended.end.name(),
                ended.ended_at.to_rfc3339()
            ),
        ));
    }
    removed?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn connect(
    State(commands): State<Commands>,
    mac: Result<Path<String>, PathRejection>,
) -> Result<Json<ClientView>, ApiError> {
    client_command(&commands, mac, |mac, reply| Command::Connect { mac, reply }).await
}

pub(super) async fn pause(
    State(commands): State<Commands>,
    mac: Result<Path<String>, PathRejection>,
) -> Result<Json<ClientView>, ApiError> {
    client_command(&commands, mac, |mac, reply| Command::Pause { mac, reply }).await
}

/// The answer to a command about one client, named by the MAC in the path.
type ClientReply = tokio::sync::oneshot::Sender<Result<ClientView, crate::control::CommandError>>;

/// Sends a command about one client and answers with the client as it is afterwards.
async fn client_command(
    commands: &Commands,
    mac: Result<Path<String>, PathRejection>,
    make: impl FnOnce(MacAddr, ClientReply) -> Command,
) -> Result<Json<ClientView>, ApiError> {
    // A path segment that is not UTF-8 once percent-decoded is no MAC either.
    let Path(mac) = mac.map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_mac",
            "the MAC in the path is not text: write six hex pairs separated by ':' or '-', like aa:bb:cc:dd:ee:ff",
        )
    })?;
    let mac = parse_mac(&mac)?;
    Ok(Json(commands.ask(|reply| make(mac, reply)).await??))
}

/// The query of `GET /v1/portal/dhcp-options`; other parameters are refused, so a misspelt
/// `format` is not taken for the default.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DhcpOptionsQuery {
    format: Option<String>,
}

/// The answer of `GET /v1/portal/dhcp-options`: the RFC 8908 API's URI as DHCPv4 and as
/// DHCPv6/RA carry it, and the configuration lines for `format`.
#[derive(serde::Serialize)]
pub(super) struct DhcpOptionsView {
    format: Format,
    interface: String,
    ipv4_uri: Option<String>,
    ipv6_uri: Option<String>,
    text: String,
}

/// `GET /v1/portal/dhcp-options?format=dnsmasq|odhcpd|radvd|raw`: the RFC 8910 options for
/// the running configuration and the LAN interface's addresses now; `409 no_portal_api`
/// when there is no URI to give (the message says what to set).
pub(super) async fn dhcp_options(
    State(commands): State<Commands>,
    query: Result<Query<DhcpOptionsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DhcpOptionsView>, ApiError> {
    let Query(query) = query.map_err(|rejection| bad_request(rejection.body_text()))?;
    let format = match query.format.as_deref() {
        None => Format::default(),
        Some(name) => serde_json::from_value(serde_json::Value::from(name)).map_err(|_| {
            bad_request(format!(
                "format must be {} (got {name:?})",
                Format::NAMES.join(", ")
            ))
        })?,
    };
    let config = commands
        .ask(|reply| Command::RunningConfig { reply })
        .await?;
    let interface = config.network.lan_interface.clone();
    let addresses = lan_addresses(&interface).await?;
    let uris = rfc8910::api_uris(&config.portal, &interface, &addresses).map_err(|reason| {
        ApiError::new(StatusCode::CONFLICT, "no_portal_api", reason.to_string())
    })?;
    let text = rfc8910::render(format, &uris, &interface);
    Ok(Json(DhcpOptionsView {
        format,
        interface,
        ipv4_uri: uris.ipv4,
        ipv6_uri: uris.ipv6,
        text,
    }))
}

/// The LAN interface's addresses a URI can name, read from the kernel now (they may have
/// changed since the daemon started).
async fn lan_addresses(interface: &str) -> Result<Vec<std::net::IpAddr>, ApiError> {
    let internal =
        |message: String| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message);
    let ifindex = nix::net::if_::if_nametoindex(interface).map_err(|errno| {
        internal(format!(
            "cannot find the LAN interface {interface} ({errno}): is it there? ('ip link show {interface}')"
        ))
    })?;
    let netlink = crate::netlink::Netlink::open()
        .map_err(|error| internal(crate::text::chain_string(&error)))?;
    netlink.portal_addresses(ifindex).await.map_err(|error| {
        internal(format!(
            "cannot read the addresses of {interface}: {}",
            crate::text::chain_string(&error)
        ))
    })
}

/// `GET /metrics`'s parameters. Others are ignored, as they were before `clients` existed
/// (a scraper's own parameters must not break it).
#[derive(Deserialize)]
pub(super) struct MetricsQuery {
    /// `false`: leave out the series of each client (`hotspotd_client_*`), whose number
    /// grows with the clients (cardinality, and megabytes at thousands of clients).
    #[serde(default = "per_client_by_default")]
    clients: bool,
}

const fn per_client_by_default() -> bool {
    true
}

/// `GET /metrics`: Prometheus text; `?clients=false` without the per-client series.
pub(super) async fn metrics(
    State(commands): State<Commands>,
    query: Result<Query<MetricsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<([(axum::http::HeaderName, &'static str); 1], String), ApiError> {
    let Query(query) = query.map_err(|rejection| {
        bad_request(format!(
            "{}: clients is true or false",
            rejection.body_text()
        ))
    })?;
    let per_client = query.clients;
    let snapshot = commands
        .ask(|reply| Command::Metrics { per_client, reply })
        .await?;
    // Megabytes of text at thousands of clients: rendered on a blocking thread, so neither
    // the control task nor an API worker waits for it.
    let text = tokio::task::spawn_blocking(move || crate::metrics::render(&snapshot))
        .await
        .map_err(|error| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("rendering the metrics failed: {error}"),
            )
        })?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    ))
}

/// `GET /v1/events`: newline-delimited JSON, one event a line, from now on, until the client
/// goes away. A client too slow to keep up is told how many it missed in a line of its own.
pub(super) async fn events(
    State(events): State<Events>,
    State(shutdown): State<tokio_util::sync::CancellationToken>,
) -> axum::response::Response {
    let start = (events.subscribe(), shutdown);
    let stream = futures::stream::unfold(start, |(mut receiver, shutdown)| async move {
        let received = tokio::select! {
            // The stream ends with the daemon, or a graceful shutdown would wait for it.
            () = shutdown.cancelled() => return None,
            received = receiver.recv() => received,
        };
        let line = match received {
            Ok(record) => serde_json::to_string(&*record).unwrap_or_default(),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                serde_json::json!({ "event": "missed", "count": missed }).to_string()
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        let line = Ok::<_, std::convert::Infallible>(format!("{line}\n"));
        Some((line, (receiver, shutdown)))
    });
    axum::response::Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "application/x-ndjson")
        .body(axum::body::Body::from_stream(stream))
        .unwrap_or_default()
}

pub(super) async fn method_not_allowed(
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{uri} does not take {method}; see docs/api.md"),
    )
}

pub(super) async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("there is no endpoint {uri}; see docs/api.md"),
    )
}

/// Why a JSON body was refused: too large (`body_too_large`, 413), or not the JSON expected.
fn json_error(rejection: &JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return body_too_large();
    }
    bad_request(rejection.body_text())
}

/// `GET /v1/garden`: the walled garden's host names with the addresses learned for them.
pub(super) async fn garden(
    State(commands): State<Commands>,
) -> Result<Json<crate::garden::GardenView>, ApiError> {
    Ok(Json(commands.ask(|reply| Command::Garden { reply }).await?))
}

/// `GET /v1/vouchers`: every voucher, without codes (only their hashes are kept).
pub(super) async fn vouchers(
    State(commands): State<Commands>,
) -> Result<Json<Vec<crate::control::VoucherView>>, ApiError> {
    Ok(Json(
        commands.ask(|reply| Command::Vouchers { reply }).await?,
    ))
}

/// `POST /v1/vouchers`: creates a batch; the answer is the only place the codes are shown.
pub(crate) async fn create_vouchers(
    State(commands): State<Commands>,
    body: Result<Json<crate::views::NewVoucherBatch>, JsonRejection>,
) -> Result<(StatusCode, Json<Vec<crate::control::VoucherView>>), ApiError> {
    let Json(batch) = body.map_err(|rejection| json_error(&rejection))?;
    let valid_until = batch
        .valid_until
        .as_deref()
        .map(|text| {
            crate::views::parse_valid_until(text).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_voucher",
                    format!(
                        "valid_until '{text}' is not a date: write it like 2027-01-31 or 2027-01-31T18:00:00Z"
                    ),
                )
            })
        })
        .transpose()?;
    // The control task stamps the plan's `created_at` with the daemon's clock.
    let new = crate::control::NewVouchers {
        count: batch.count,
        plan: batch.plan(chrono::Utc::now()),
        price: batch.price,
        max_devices: batch.max_devices,
        valid_until,
    };
    let views = commands
        .ask(|reply| Command::CreateVouchers { new, reply })
        .await??;
    Ok((StatusCode::CREATED, Json(views)))
}

/// `POST /v1/vouchers/{id}/revoke`.
pub(super) async fn revoke_voucher(
    State(commands): State<Commands>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<crate::control::VoucherView>, ApiError> {
    let Path(id) = id.map_err(|_| bad_request("a voucher id is a whole number, like 42"))?;
    let target = crate::control::VoucherRef::Id(id);
    Ok(Json(
        commands
            .ask(|reply| Command::RevokeVoucher { target, reply })
            .await??,
    ))
}

/// `POST /v1/vouchers/revoke` with `{"code": …}`.
pub(super) async fn revoke_by_code(
    State(commands): State<Commands>,
    body: Result<Json<crate::views::VoucherCode>, JsonRejection>,
) -> Result<Json<crate::control::VoucherView>, ApiError> {
    let Json(body) = body.map_err(|rejection| json_error(&rejection))?;
    let target = crate::control::VoucherRef::Code(body.code);
    Ok(Json(
        commands
            .ask(|reply| Command::RevokeVoucher { target, reply })
            .await??,
    ))
}

/// `POST /v1/vouchers/redeem` with `{"mac": …, "code": …}`: what the built-in portal's form
/// does, for an external portal; answers with the client, connected.
pub(super) async fn redeem(
    State(commands): State<Commands>,
    body: Result<Json<crate::views::VoucherCode>, JsonRejection>,
) -> Result<Json<ClientView>, ApiError> {
    let Json(body) = body.map_err(|rejection| json_error(&rejection))?;
    let mac = station(
        body.mac
            .ok_or_else(|| bad_request("redeeming needs the client's mac"))?,
    )?;
    let code = body.code;
    Ok(Json(
        commands
            .ask(|reply| Command::Redeem { mac, code, reply })
            .await??,
    ))
}

/// The body of `POST /v1/trial`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TrialRequest {
    mac: MacAddr,
}

/// `POST /v1/trial` with `{"mac": …}`: what the built-in portal's trial button does, for an
/// external portal; answers with the client, connected. A device that had its trial within
/// the reset window is refused with `429` and `Retry-After` (docs/trials.md).
pub(super) async fn trial(
    State(commands): State<Commands>,
    body: Result<Json<TrialRequest>, JsonRejection>,
) -> Result<Json<ClientView>, axum::response::Response> {
    use axum::response::IntoResponse as _;
    let Json(body) = body.map_err(|rejection| json_error(&rejection).into_response())?;
    let mac = station(body.mac).map_err(ApiError::into_response)?;
    match commands.ask(|reply| Command::Trial { mac, reply }).await {
        Err(gone) => Err(ApiError::from(gone).into_response()),
        Ok(Ok(view)) => Ok(Json(view)),
        Ok(Err(error)) => {
            let retry_secs = match error {
                crate::control::TrialError::TooSoon { retry_secs, .. } => Some(retry_secs),
                _ => None,
            };
            let mut response = ApiError::from(error).into_response();
            if let Some(retry_secs) = retry_secs {
                response.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from(retry_secs),
                );
            }
            Err(response)
        }
    }
}
