//! `GET /v1/usage` and `GET /v1/sales` (docs/usage.md): the usage history and the sales, as
//! JSON or (`format=csv`) CSV, a page at a time (`limit`, `offset`). The database is read on a
//! blocking thread, beside the store's writes, so neither the control task nor an API worker
//! waits on the disk. Side effects: reads the session database.

use axum::{
    extract::{Query, State, rejection::QueryRejection},
    http::{HeaderName, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;

use super::error::{ApiError, bad_request, parse_mac};
use crate::{
    control::{Command, Commands},
    store::usage::{History, Period, SalesQuery, UsageQuery, parse_instant, sales_csv, usage_csv},
};

/// A page's rows when `limit` is not given, and the most one may ask for.
const DEFAULT_LIMIT: u32 = 1_000;
const MAX_LIMIT: u32 = 100_000;

/// The query of `GET /v1/usage`; other parameters are refused, so a misspelt filter is not
/// taken for none.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UsageParams {
    mac: Option<String>,
    session: Option<i64>,
    since: Option<String>,
    until: Option<String>,
    by: Option<String>,
    per: Option<String>,
    limit: Option<u32>,
    offset: Option<u64>,
    format: Option<String>,
}

/// The query of `GET /v1/sales`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SalesParams {
    mac: Option<String>,
    provider: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<u32>,
    offset: Option<u64>,
    format: Option<String>,
}

pub(super) async fn usage(
    State(commands): State<Commands>,
    query: Result<Query<UsageParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = query.map_err(|rejection| {
        bad_request(format!(
            "{}: /v1/usage takes mac, session, since, until, by (hour or day), per (client or session), limit, offset and format (json or csv)",
            rejection.body_text()
        ))
    })?;
    let now = chrono::Utc::now();
    let query = UsageQuery {
        mac: params.mac.as_deref().map(parse_mac).transpose()?,
        session_id: params.session,
        since: instant(params.since.as_deref(), now)?,
        until: instant(params.until.as_deref(), now)?,
        by: params
            .by
            .as_deref()
            .map(str::parse::<Period>)
            .transpose()
            .map_err(bad_request)?
            .unwrap_or_default(),
        per_session: match params.per.as_deref() {
            None | Some("client") => false,
            Some("session") => true,
            Some(other) => {
                return Err(bad_request(format!(
                    "per={other} is not known: write per=client or per=session"
                )));
            }
        },
        limit: limit(params.limit)?,
        offset: params.offset.unwrap_or(0),
    };
    let csv = csv(params.format.as_deref())?;
    let history = history(&commands).await?;
    let rows = blocking(move || history.usage(&query)).await?;
    Ok(if csv {
        csv_response(usage_csv(&rows))
    } else {
        axum::Json(rows).into_response()
    })
}

pub(super) async fn sales(
    State(commands): State<Commands>,
    query: Result<Query<SalesParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = query.map_err(|rejection| {
        bad_request(format!(
            "{}: /v1/sales takes mac, provider, since, until, limit, offset and format (json or csv)",
            rejection.body_text()
        ))
    })?;
    let now = chrono::Utc::now();
    let query = SalesQuery {
        mac: params.mac.as_deref().map(parse_mac).transpose()?,
        provider: params.provider,
        since: instant(params.since.as_deref(), now)?,
        until: instant(params.until.as_deref(), now)?,
        limit: limit(params.limit)?,
        offset: params.offset.unwrap_or(0),
    };
    let csv = csv(params.format.as_deref())?;
    let history = history(&commands).await?;
    let report = blocking(move || history.sales(&query)).await?;
    Ok(if csv {
        csv_response(sales_csv(&report))
    } else {
        axum::Json(report).into_response()
    })
}

fn instant(
    text: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    text.map(|text| parse_instant(text, now))
        .transpose()
        .map_err(bad_request)
}

pub(super) fn limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(limit @ 1..=MAX_LIMIT) => Ok(limit),
        Some(other) => Err(bad_request(format!(
            "limit={other} is out of range: ask for 1 to {MAX_LIMIT} rows a page and page on with offset"
        ))),
    }
}

/// Whether CSV was asked for.
fn csv(format: Option<&str>) -> Result<bool, ApiError> {
    match format {
        None | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        Some(other) => Err(bad_request(format!(
            "format={other} is not known: write format=json or format=csv"
        ))),
    }
}

pub(crate) async fn history(commands: &Commands) -> Result<History, ApiError> {
    commands
        .ask(|reply| Command::History { reply })
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "no_history",
                "this daemon's session store keeps no usage history or sales: they are kept in the SQLite store (store.sqlite_path)",
            )
        })
}

pub(crate) async fn blocking<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|error| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("reading the history failed: {error}"),
            )
        })?
        .map_err(|error| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                crate::text::chain_string(&error),
            )
        })
}

fn csv_response(body: String) -> Response {
    let headers: [(HeaderName, &'static str); 1] =
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8")];
    (headers, body).into_response()
}
