//! Sessions that ended, read from the database: the history `GET /v1/sessions` and
//! `hotspotctl sessions` page through beside the live sessions the engine holds
//! (docs/usage.md, "Ended sessions"). Read on the caller's thread through its own read-only
//! connection, beside the store thread's writes. Side effects: reads the session database.

use chrono::{DateTime, Utc};

use super::{SessionEnd, SessionId, StoreError, StoredSession, sqlite, usage::History};
use crate::mac::MacAddr;

/// Which ended sessions to read: newest ending first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndedQuery {
    pub mac: Option<MacAddr>,
    /// Only those that ended so; `None`: both.
    pub end: Option<SessionEnd>,
    pub offset: u64,
    pub limit: u32,
}

/// One ended session: its last record, how and when it ended.
#[derive(Clone, Debug, PartialEq)]
pub struct EndedRow {
    pub session: StoredSession,
    pub end: SessionEnd,
    pub ended_at: DateTime<Utc>,
}

/// A page of ended sessions, and how many matched in all.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EndedPage {
    pub total: u64,
    pub rows: Vec<EndedRow>,
}

const FILTER: &str = "WHERE ended IS NOT NULL AND (?1 IS NULL OR mac = ?1)
    AND (?2 IS NULL OR ended = ?2)";

impl History {
    /// Ended session `id`, if the history has it. Blocking.
    pub fn ended_session(&self, id: SessionId) -> Result<Option<EndedRow>, StoreError> {
        let conn = self.open()?;
        let fail = super::schema::fail(&self.path, "read an ended session");
        let mut statement = conn
            .prepare(&format!(
                "SELECT {}, ended, ended_at_secs FROM sessions
                WHERE id = ?1 AND ended IS NOT NULL",
                sqlite::SESSION_COLUMNS
            ))
            .map_err(&fail)?;
        let mut rows = statement.query([id]).map_err(&fail)?;
        rows.next()
            .map_err(&fail)?
            .map(|row| self.ended_row(row))
            .transpose()
    }

    /// The page of ended sessions `query` asks for. Blocking.
    pub fn ended_sessions(&self, query: &EndedQuery) -> Result<EndedPage, StoreError> {
        let conn = self.open()?;
        let op = "read the ended sessions";
        let fail = super::schema::fail(&self.path, op);
        let mac = query.mac.map(|mac| mac.to_string());
        let end = query.end.map(SessionEnd::name);
        let total: i64 = conn
            .query_row(
                &format!("SELECT count(*) FROM sessions {FILTER}"),
                (&mac, end),
                |row| row.get(0),
            )
            .map_err(&fail)?;
        let mut statement = conn
            .prepare(&format!(
                "SELECT {}, ended, ended_at_secs FROM sessions {FILTER}
                ORDER BY ended_at_secs DESC, id DESC LIMIT ?3 OFFSET ?4",
                sqlite::SESSION_COLUMNS
            ))
            .map_err(&fail)?;
        let offset = i64::try_from(query.offset).unwrap_or(i64::MAX);
        let mut rows = statement
            .query((&mac, end, query.limit, offset))
            .map_err(&fail)?;
        let mut page = EndedPage {
            total: u64::try_from(total).unwrap_or(0),
            rows: Vec::new(),
        };
        while let Some(row) = rows.next().map_err(&fail)? {
            page.rows.push(self.ended_row(row)?);
        }
        Ok(page)
    }

    /// A row of `SESSION_COLUMNS`, `ended`, `ended_at_secs`.
    fn ended_row(&self, row: &rusqlite::Row<'_>) -> Result<EndedRow, StoreError> {
        let fail = super::schema::fail(&self.path, "read an ended session");
        let session = sqlite::read_session(&self.path, row)?;
        let end: String = row.get(14).map_err(&fail)?;
        let at: i64 = row.get(15).map_err(&fail)?;
        let bad = |field, value: String| StoreError::BadValue {
            path: self.path.clone(),
            table: "sessions",
            key: session.id.to_string(),
            field,
            value,
        };
        Ok(EndedRow {
            end: SessionEnd::from_name(&end).ok_or_else(|| bad("ended", end.clone()))?,
            ended_at: DateTime::from_timestamp(at, 0)
                .ok_or_else(|| bad("ended_at_secs", at.to_string()))?,
            session,
        })
    }
}
