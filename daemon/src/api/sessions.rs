//! `GET /v1/sessions`: the live sessions the engine holds, then the ended ones the database
//! keeps as history (most recently ended first), a page at a time (`mac`, `state`, `offset`,
//! `limit`), with how many match in `X-Total-Count`. Live ones first, so the default page
//! shows what runs and waits however long the history grows. The history is read on a
//! blocking thread, beside the store's writes. Side effects: reads the session database.

use std::collections::BTreeSet;

use axum::{
    Json,
    extract::{Query, State, rejection::QueryRejection},
    http::HeaderName,
};
use serde::Deserialize;

use super::{
    error::{ApiError, bad_request, parse_mac},
    handlers::TOTAL_COUNT,
    history::{blocking, limit},
};
use crate::views::SessionView;
use crate::{
    control::{Command, Commands},
    sessions::engine::{SessionEnd, SessionState},
    store::ended::EndedQuery,
};

/// Other parameters are refused, so a misspelt filter is not taken for none.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SessionsParams {
    mac: Option<String>,
    state: Option<String>,
    offset: Option<u64>,
    limit: Option<u32>,
}

/// Which sessions a `state=` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wanted {
    All,
    /// Not ended: available, running, paused.
    Live,
    Ended,
    One(SessionState),
}

impl Wanted {
    fn parse(text: Option<&str>) -> Result<Self, ApiError> {
        Ok(match text {
            None => Self::All,
            Some("live") => Self::Live,
            Some("ended") => Self::Ended,
            Some("available") => Self::One(SessionState::Available),
            Some("running") => Self::One(SessionState::Running),
            Some("paused") => Self::One(SessionState::Paused),
            Some("consumed") => Self::One(SessionState::Consumed),
            Some("expired") => Self::One(SessionState::Expired),
            Some(other) => {
                return Err(bad_request(format!(
                    "state={other} is not known: write available, running, paused, consumed, expired, live or ended"
                )));
            }
        })
    }

    fn admits(self, state: SessionState) -> bool {
        let ended = matches!(state, SessionState::Consumed | SessionState::Expired);
        match self {
            Self::All => true,
            Self::Live => !ended,
            Self::Ended => ended,
            Self::One(wanted) => wanted == state,
        }
    }

    /// Which ended sessions of the history it admits.
    const fn history(self) -> FromHistory {
        match self {
            Self::All | Self::Ended => FromHistory::Every,
            Self::One(SessionState::Consumed) => FromHistory::Only(SessionEnd::Consumed),
            Self::One(SessionState::Expired) => FromHistory::Only(SessionEnd::Expired),
            Self::Live | Self::One(_) => FromHistory::Nothing,
        }
    }
}

/// What a listing reads from the history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FromHistory {
    Nothing,
    Every,
    Only(SessionEnd),
}

pub(super) async fn sessions(
    State(commands): State<Commands>,
    query: Result<Query<SessionsParams>, QueryRejection>,
) -> Result<([(HeaderName, String); 1], Json<Vec<SessionView>>), ApiError> {
    let Query(params) = query.map_err(|rejection| {
        bad_request(format!(
            "{}: /v1/sessions takes mac, state, offset and limit",
            rejection.body_text()
        ))
    })?;
    let mac = params.mac.as_deref().map(parse_mac).transpose()?;
    let wanted = Wanted::parse(params.state.as_deref())?;
    let limit = limit(params.limit)?;
    let offset = params.offset.unwrap_or(0);

    // The held ones (live, and any ended a save has not let go of yet), by id.
    let held: Vec<SessionView> = commands
        .ask(|reply| Command::Sessions { mac, reply })
        .await?
        .into_iter()
        .filter(|view| wanted.admits(view.state))
        .collect();
    let held_ids: BTreeSet<_> = held.iter().map(|view| view.session.id).collect();
    let held_total = u64::try_from(held.len()).unwrap_or(u64::MAX);
    let mut page: Vec<SessionView> = held
        .into_iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(limit as usize)
        .collect();

    let mut total = held_total;
    let end = match wanted.history() {
        FromHistory::Nothing => None,
        FromHistory::Every => Some(None),
        FromHistory::Only(end) => Some(Some(end)),
    };
    let history = match end {
        Some(end) => commands
            .ask(|reply| Command::History { reply })
            .await?
            .map(|history| (history, end)),
        None => None,
    };
    if let Some((history, end)) = history {
        let query = EndedQuery {
            mac,
            end,
            offset: offset.saturating_sub(held_total),
            limit: limit - u32::try_from(page.len()).unwrap_or(limit),
        };
        let ended = blocking(move || history.ended_sessions(&query)).await?;
        total = total.saturating_add(ended.total);
        for row in ended.rows {
            // Let go of and written between the two reads: listed once.
            if held_ids.contains(&row.session.id) {
                total = total.saturating_sub(1);
                continue;
            }
            page.push(SessionView {
                session: row.session,
                state: row.end.state(),
                ended_at: Some(row.ended_at),
            });
        }
    }
    Ok((
        [(HeaderName::from_static(TOTAL_COUNT), total.to_string())],
        Json(page),
    ))
}
