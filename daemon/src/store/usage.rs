//! The usage history and the sales (docs/usage.md): what each client moved, and how long it
//! was connected, per hour and per session it ran; and every session sold, with who sold it,
//! its plan and its price. The control task hands the store the counts since its last save
//! with that save ([`UsageBatch`]), and the sale with the session's insert, so both are written
//! in the transaction (and the one sync) that write takes anyway. Hours older than
//! `history.hourly_days` are folded into days, days older than `history.daily_days` (and
//! sales as old) are deleted, in the same transaction, so the file stays bounded. Reading
//! ([`History`]) opens the file read-only beside the store thread's connection (WAL lets
//! both go on at once). Every count is an integer; prices are integers of thousandths of the
//! currency. Side effects: writes and reads the database.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    time::Duration,
};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, Transaction};
use serde::Serialize;

use super::{
    SessionId, StoreError,
    schema::fail,
    sqlite::{parse_time, to_sql_int, to_sql_time},
};
pub use crate::price::{BadPrice, Price};
use crate::{
    mac::MacAddr,
    sessions::data::{SessionData, SessionType},
};

/// Seconds in an hour and in a day: the history's buckets start at multiples of these (UTC).
pub const HOUR_SECS: i64 = 3_600;
pub const DAY_SECS: i64 = 86_400;

/// One bucket of the history: an hour (its start, Unix seconds), a client, and the session
/// it ran then (`None`: none, traffic of a client without a session).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UsageKey {
    pub hour_start_secs: i64,
    pub mac: MacAddr,
    pub session_id: Option<SessionId>,
}

/// What was counted in a bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsageCounts {
    pub up_bytes: u64,
    pub down_bytes: u64,
    pub connected_secs: u64,
}

impl UsageCounts {
    /// Adds `other`, saturating: a count never wraps to a small number.
    pub fn add(&mut self, other: Self) {
        self.up_bytes = self.up_bytes.saturating_add(other.up_bytes);
        self.down_bytes = self.down_bytes.saturating_add(other.down_bytes);
        self.connected_secs = self.connected_secs.saturating_add(other.connected_secs);
    }

    #[must_use]
    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }
}

/// How long the history is kept, and the moment the cut is made from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Whole days of hourly rows kept before they are folded into days.
    pub hourly_days: u32,
    /// Days of daily rows, of sales and of ended sessions, kept before they are deleted.
    pub daily_days: u32,
    pub now: DateTime<Utc>,
}

impl Retention {
    /// Hours starting before this are folded into days: a whole UTC day, so a day is either
    /// all hours or one row.
    fn hourly_cut_secs(&self) -> i64 {
        let today = self.now.timestamp().div_euclid(DAY_SECS) * DAY_SECS;
        today - i64::from(self.hourly_days) * DAY_SECS
    }

    /// Days, and sales, before this are deleted.
    fn daily_cut_secs(&self) -> i64 {
        let today = self.now.timestamp().div_euclid(DAY_SECS) * DAY_SECS;
        today - i64::from(self.daily_days) * DAY_SECS
    }
}

/// The history a save carries: the counts since the previous save, and (with a full save) how
/// long to keep them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UsageBatch {
    pub counts: BTreeMap<UsageKey, UsageCounts>,
    pub retention: Option<Retention>,
}

impl UsageBatch {
    /// Adds `counts` to `key`'s bucket; nothing for zero.
    pub fn add(&mut self, key: UsageKey, counts: UsageCounts) {
        if !counts.is_zero() {
            self.counts.entry(key).or_default().add(counts);
        }
    }

    /// Takes `other`'s counts into this one, and its retention if it has one.
    pub fn absorb(&mut self, other: Self) {
        for (key, counts) in other.counts {
            self.add(key, counts);
        }
        if other.retention.is_some() {
            self.retention = other.retention;
        }
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.retention.is_none()
    }
}

/// One session sold, as it is kept after the session itself is gone.
#[derive(Clone, Debug, PartialEq)]
pub struct Sale {
    pub session_id: SessionId,
    pub mac: MacAddr,
    pub provider: String,
    pub kind: SessionType,
    pub time_secs: u64,
    pub data_mb: f64,
    pub price: Option<Price>,
    /// `sales.currency` when it was sold ("" when none is set).
    pub currency: String,
    pub sold_at: DateTime<Utc>,
}

impl Sale {
    /// The sale of session `session_id`, with the plan of its record.
    #[must_use]
    pub fn of(
        session_id: SessionId,
        mac: MacAddr,
        data: &SessionData,
        price: Option<Price>,
        currency: &str,
    ) -> Self {
        Self {
            session_id,
            mac,
            provider: data.provider.clone(),
            kind: data.kind,
            time_secs: data.time_secs,
            data_mb: data.data_mb,
            price,
            currency: currency.to_owned(),
            sold_at: data.created_at,
        }
    }
}

/// Adds each bucket's counts to its row (made if new).
const ADD_HOURLY: &str = "
INSERT INTO usage_hourly (hour_start, mac, session_id, up_bytes, down_bytes, connected_secs)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)
ON CONFLICT (hour_start, mac, session_id) DO UPDATE SET
    up_bytes = up_bytes + excluded.up_bytes,
    down_bytes = down_bytes + excluded.down_bytes,
    connected_secs = connected_secs + excluded.connected_secs";

/// Folds the hours before ?1 into their days (`WHERE` is what lets SQLite parse the upsert).
const FOLD_HOURS: &str = "
INSERT INTO usage_daily (day_start, mac, session_id, up_bytes, down_bytes, connected_secs)
SELECT hour_start - hour_start % 86400, mac, session_id, sum(up_bytes), sum(down_bytes),
    sum(connected_secs)
FROM usage_hourly WHERE hour_start < ?1 GROUP BY 1, 2, 3
ON CONFLICT (day_start, mac, session_id) DO UPDATE SET
    up_bytes = up_bytes + excluded.up_bytes,
    down_bytes = down_bytes + excluded.down_bytes,
    connected_secs = connected_secs + excluded.connected_secs";

const INSERT_SALE: &str = "
INSERT OR REPLACE INTO sales (session_id, mac, provider, type, time_secs, data_mb, price_milli,
    currency, sold_at, sold_at_secs)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

/// Writes `usage` and `sales` into the save's transaction, then cuts what is past `retention`.
pub(super) fn write(
    tx: &Transaction<'_>,
    path: &Path,
    usage: &UsageBatch,
    sales: &[Sale],
) -> Result<(), StoreError> {
    let op = "save the usage history";
    let mut add = tx.prepare_cached(ADD_HOURLY).map_err(fail(path, op))?;
    for (key, counts) in &usage.counts {
        add.execute((
            key.hour_start_secs,
            key.mac.to_string(),
            key.session_id.unwrap_or(0),
            to_sql_int("up_bytes", counts.up_bytes)?,
            to_sql_int("down_bytes", counts.down_bytes)?,
            to_sql_int("connected_secs", counts.connected_secs)?,
        ))
        .map_err(fail(path, op))?;
    }
    let mut insert = tx.prepare_cached(INSERT_SALE).map_err(fail(path, op))?;
    for sale in sales {
        insert
            .execute((
                sale.session_id,
                sale.mac.to_string(),
                &sale.provider,
                sale.kind as u8,
                to_sql_int("time_secs", sale.time_secs)?,
                super::sqlite::to_sql_real("data_mb", sale.data_mb)?,
                sale.price.map(|price| price.0),
                &sale.currency,
                to_sql_time("sold_at", sale.sold_at)?,
                sale.sold_at.timestamp(),
            ))
            .map_err(fail(path, op))?;
    }
    if let Some(retention) = usage.retention {
        let hourly_cut = retention.hourly_cut_secs();
        let daily_cut = retention.daily_cut_secs();
        tx.prepare_cached(FOLD_HOURS)
            .and_then(|mut fold| fold.execute([hourly_cut]))
            .map_err(fail(path, op))?;
        for (sql, cut) in [
            ("DELETE FROM usage_hourly WHERE hour_start < ?1", hourly_cut),
            ("DELETE FROM usage_daily WHERE day_start < ?1", daily_cut),
            ("DELETE FROM sales WHERE sold_at_secs < ?1", daily_cut),
            // Ended sessions are history like their sales (live ones are never cut).
            (
                "DELETE FROM sessions WHERE ended IS NOT NULL AND ended_at_secs < ?1",
                daily_cut,
            ),
        ] {
            tx.prepare_cached(sql)
                .and_then(|mut statement| statement.execute([cut]))
                .map_err(fail(path, op))?;
        }
    }
    Ok(())
}

/// Hours or days.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    #[default]
    Hour,
    Day,
}

impl std::str::FromStr for Period {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "hour" => Ok(Self::Hour),
            "day" => Ok(Self::Day),
            other => Err(format!("'{other}' is not a period: write hour or day")),
        }
    }
}

/// Which history to read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageQuery {
    pub mac: Option<MacAddr>,
    pub session_id: Option<SessionId>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub by: Period,
    /// One row per session (per client and period otherwise).
    pub per_session: bool,
    pub limit: u32,
    pub offset: u64,
}

/// One row of the history: a period, a client, and (per session) a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    pub start: DateTime<Utc>,
    pub mac: MacAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<SessionId>,
    pub up_bytes: u64,
    pub down_bytes: u64,
    pub connected_secs: u64,
}

/// Which sales to read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SalesQuery {
    pub mac: Option<MacAddr>,
    pub provider: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: u32,
    pub offset: u64,
}

/// One sale as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SaleRow {
    pub session_id: SessionId,
    pub mac: MacAddr,
    pub provider: String,
    #[serde(rename = "type")]
    pub kind: SessionType,
    pub time_secs: u64,
    pub data_mb: f64,
    pub price: Option<Price>,
    pub currency: String,
    pub sold_at: DateTime<Utc>,
}

/// The sales a query matched, and their sum over all of them (not only this page).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SalesReport {
    /// How many sales matched.
    pub count: u64,
    /// The sum of their prices per currency (sales without a price add nothing).
    pub totals: BTreeMap<String, Price>,
    pub sales: Vec<SaleRow>,
}

/// Reads the history and the sales of the database at a path, beside the store thread.
#[derive(Clone, Debug)]
pub struct History {
    pub(super) path: PathBuf,
}

/// How long a read waits for the store thread's write to let go (a checkpoint).
const READ_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A read connection's page cache, KiB (as SQLite's negative `cache_size`).
const READ_CACHE_KIB: i64 = -256;

impl History {
    #[must_use]
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    pub(super) fn open(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open {
            path: self.path.clone(),
            source,
        })?;
        conn.busy_timeout(READ_BUSY_TIMEOUT)
            .map_err(fail(&self.path, "read the usage history"))?;
        // A read scans and is gone: a small page cache costs only rereads from the kernel's
        // cache, while SQLite's 2 MB default, once allocated on each of the blocking threads
        // that serve reads, stays in the daemon's memory (the allocator keeps a freed arena's
        // pages): tens of MB after an operator pages through the history.
        conn.pragma_update(None, "cache_size", READ_CACHE_KIB)
            .map_err(fail(&self.path, "read the usage history"))?;
        Ok(conn)
    }

    /// The history `query` asks for, oldest first. Blocking.
    pub fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageRow>, StoreError> {
        let conn = self.open()?;
        let op = "read the usage history";
        let session = if query.per_session { "session_id" } else { "0" };
        // Days are the folded days and the hours still kept, summed by day; hours are hours.
        let source = match query.by {
            Period::Hour => "SELECT hour_start AS start, mac, session_id, up_bytes, down_bytes,
                    connected_secs FROM usage_hourly"
                .to_owned(),
            Period::Day => "SELECT day_start AS start, mac, session_id, up_bytes, down_bytes,
                    connected_secs FROM usage_daily
                UNION ALL
                SELECT hour_start - hour_start % 86400, mac, session_id, up_bytes, down_bytes,
                    connected_secs FROM usage_hourly"
                .to_owned(),
        };
        let sql = format!(
            "SELECT start, mac, {session}, sum(up_bytes), sum(down_bytes), sum(connected_secs)
            FROM ({source})
            WHERE (?1 IS NULL OR mac = ?1) AND (?2 IS NULL OR session_id = ?2)
                AND (?3 IS NULL OR start >= ?3) AND (?4 IS NULL OR start < ?4)
            GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 LIMIT ?5 OFFSET ?6"
        );
        let since = query.since.map(|since| floor(since.timestamp(), query.by));
        let mut statement = conn.prepare(&sql).map_err(fail(&self.path, op))?;
        let rows = statement
            .query_map(
                (
                    query.mac.map(|mac| mac.to_string()),
                    query.session_id,
                    since,
                    query.until.map(|until| until.timestamp()),
                    query.limit,
                    i64::try_from(query.offset).unwrap_or(i64::MAX),
                ),
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, i64>(2)?,
                        row.get::<_, i64>(3)?,
                        row.get::<_, i64>(4)?,
                        row.get::<_, i64>(5)?,
                    ))
                },
            )
            .map_err(fail(&self.path, op))?;
        let mut read = Vec::new();
        for row in rows {
            let (start, mac, session_id, up, down, secs) = row.map_err(fail(&self.path, op))?;
            read.push(UsageRow {
                start: DateTime::from_timestamp(start, 0)
                    .ok_or_else(|| self.bad("usage", &mac, "start", start.to_string()))?,
                mac: mac
                    .parse()
                    .map_err(|_| self.bad("usage", &mac, "mac", mac.clone()))?,
                session_id: (query.per_session && session_id != 0).then_some(session_id),
                up_bytes: self.count(&mac, "up_bytes", up)?,
                down_bytes: self.count(&mac, "down_bytes", down)?,
                connected_secs: self.count(&mac, "connected_secs", secs)?,
            });
        }
        Ok(read)
    }

    /// The sales `query` asks for, oldest first, with the sum of all that matched. Blocking.
    pub fn sales(&self, query: &SalesQuery) -> Result<SalesReport, StoreError> {
        let conn = self.open()?;
        let op = "read the sales";
        let filter = "WHERE (?1 IS NULL OR mac = ?1) AND (?2 IS NULL OR provider = ?2)
            AND (?3 IS NULL OR sold_at_secs >= ?3) AND (?4 IS NULL OR sold_at_secs < ?4)";
        let filters = (
            query.mac.map(|mac| mac.to_string()),
            query.provider.clone(),
            query.since.map(|since| since.timestamp()),
            query.until.map(|until| until.timestamp()),
        );
        let count: i64 = conn
            .query_row(
                &format!("SELECT count(*) FROM sales {filter}"),
                filters.clone(),
                |row| row.get(0),
            )
            .map_err(fail(&self.path, op))?;
        let mut totals = BTreeMap::new();
        {
            let mut statement = conn
                .prepare(&format!(
                    "SELECT currency, sum(price_milli) FROM sales {filter}
                        AND price_milli IS NOT NULL GROUP BY currency ORDER BY currency"
                ))
                .map_err(fail(&self.path, op))?;
            let rows = statement
                .query_map(filters.clone(), |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                })
                .map_err(fail(&self.path, op))?;
            for row in rows {
                let (currency, sum) = row.map_err(fail(&self.path, op))?;
                totals.insert(currency, Price(sum));
            }
        }
        let mut statement = conn
            .prepare(&format!(
                "SELECT session_id, mac, provider, type, time_secs, data_mb, price_milli, currency,
                    sold_at FROM sales {filter} ORDER BY sold_at_secs, session_id
                    LIMIT ?5 OFFSET ?6"
            ))
            .map_err(fail(&self.path, op))?;
        let rows = statement
            .query_map(
                (
                    filters.0,
                    filters.1,
                    filters.2,
                    filters.3,
                    query.limit,
                    i64::try_from(query.offset).unwrap_or(i64::MAX),
                ),
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, u8>(3)?,
                        row.get::<_, i64>(4)?,
                        row.get::<_, f64>(5)?,
                        row.get::<_, Option<i64>>(6)?,
                        row.get::<_, String>(7)?,
                        row.get::<_, String>(8)?,
                    ))
                },
            )
            .map_err(fail(&self.path, op))?;
        let mut sales = Vec::new();
        for row in rows {
            let (id, mac, provider, kind, time_secs, data_mb, price, currency, sold_at) =
                row.map_err(fail(&self.path, op))?;
            let key = id.to_string();
            sales.push(SaleRow {
                session_id: id,
                mac: mac
                    .parse()
                    .map_err(|_| self.bad("sales", &key, "mac", mac.clone()))?,
                provider,
                kind: SessionType::try_from(kind)
                    .map_err(|_| self.bad("sales", &key, "type", kind.to_string()))?,
                time_secs: u64::try_from(time_secs)
                    .map_err(|_| self.bad("sales", &key, "time_secs", time_secs.to_string()))?,
                data_mb,
                price: price.map(Price),
                currency,
                sold_at: parse_time(&sold_at)
                    .ok_or_else(|| self.bad("sales", &key, "sold_at", sold_at.clone()))?,
            });
        }
        Ok(SalesReport {
            count: u64::try_from(count).unwrap_or(0),
            totals,
            sales,
        })
    }

    fn count(&self, key: &str, field: &'static str, value: i64) -> Result<u64, StoreError> {
        u64::try_from(value).map_err(|_| self.bad("usage", key, field, value.to_string()))
    }

    pub(super) fn bad(
        &self,
        table: &'static str,
        key: &str,
        field: &'static str,
        value: String,
    ) -> StoreError {
        StoreError::BadValue {
            path: self.path.clone(),
            table,
            key: key.to_owned(),
            field,
            value,
        }
    }
}

/// The start of the period `secs` falls in.
fn floor(secs: i64, by: Period) -> i64 {
    let size = match by {
        Period::Hour => HOUR_SECS,
        Period::Day => DAY_SECS,
    };
    secs.div_euclid(size) * size
}

/// A moment as `--since`/`--until` and the API take it: an RFC 3339 time, a UTC date
/// (`2026-12-01`, its start), or a span back from `now` (`90m`, `24h`, `7d`).
pub fn parse_instant(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let bad = || {
        format!(
            "'{}' is not a time: write an RFC 3339 time (2026-12-01T08:00:00Z), a date (2026-12-01) or a span back from now (90m, 24h, 7d)",
            text.chars().take(40).collect::<String>()
        )
    };
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    let split = text.len().saturating_sub(1);
    let (number, unit) = text.split_at(split);
    let count: i64 = number.parse().map_err(|_| bad())?;
    let span = match unit {
        "m" => chrono::TimeDelta::try_minutes(count),
        "h" => chrono::TimeDelta::try_hours(count),
        "d" => chrono::TimeDelta::try_days(count),
        _ => None,
    }
    .filter(|_| count >= 0)
    .ok_or_else(bad)?;
    now.checked_sub_signed(span).ok_or_else(bad)
}

/// The history as CSV, a header line first; integers as they are.
#[must_use]
pub fn usage_csv(rows: &[UsageRow]) -> String {
    let mut csv = String::from("start,mac,session_id,up_bytes,down_bytes,connected_secs\n");
    for row in rows {
        // Writing to a String cannot fail.
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{}",
            row.start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            row.mac,
            row.session_id.map(|id| id.to_string()).unwrap_or_default(),
            row.up_bytes,
            row.down_bytes,
            row.connected_secs
        );
    }
    csv
}

/// The sales as CSV, a header line first. The provider is the only free text: quoted, so a
/// comma or quote in it stays in its column, and a leading `=+-@` cannot start a formula in
/// a spreadsheet.
#[must_use]
pub fn sales_csv(report: &SalesReport) -> String {
    let mut csv =
        String::from("sold_at,session_id,mac,provider,type,time_secs,data_mb,price,currency\n");
    for sale in &report.sales {
        let mut provider = sale.provider.replace('"', "\"\"");
        if provider.starts_with(['=', '+', '-', '@']) {
            provider.insert(0, '\'');
        }
        let _ = writeln!(
            csv,
            "{},{},{},\"{}\",{},{},{},{},{}",
            sale.sold_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            sale.session_id,
            sale.mac,
            provider,
            sale.kind.name(),
            sale.time_secs,
            sale.data_mb,
            sale.price
                .map(|price| price.to_string())
                .unwrap_or_default(),
            sale.currency
        );
    }
    csv
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::store::{
        SaveBatch, Store,
        tests::{connected, mac, meta, running},
    };

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).expect("valid")
    }

    fn key(hour_start_secs: i64, n: u32, session_id: Option<SessionId>) -> UsageKey {
        UsageKey {
            hour_start_secs,
            mac: mac(n),
            session_id,
        }
    }

    fn counts(up_bytes: u64, down_bytes: u64, connected_secs: u64) -> UsageCounts {
        UsageCounts {
            up_bytes,
            down_bytes,
            connected_secs,
        }
    }

    fn save(usage: UsageBatch) -> SaveBatch {
        SaveBatch {
            ended: Vec::new(),
            sessions: Vec::new(),
            clients: vec![connected(1, None)],
            meta: meta(1),
            usage,
        }
    }

    fn query(by: Period, per_session: bool) -> UsageQuery {
        UsageQuery {
            by,
            per_session,
            limit: 1_000,
            ..UsageQuery::default()
        }
    }

    /// 2027-01-15T00:00:00Z, a day's start.
    const DAY: i64 = 1_800_000_000 - 1_800_000_000 % DAY_SECS;

    #[tokio::test]
    async fn usage_and_sales_are_written_with_the_save_and_read_back_exactly() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        let store = Store::open(&path).expect("opens");
        let mut sold = running(1);
        sold.created_at = at(DAY + 10);
        let first = store
            .sell(
                mac(1),
                sold.clone(),
                Some("2.50".parse().expect("price")),
                "EUR",
            )
            .expect("sells");
        let second = store
            .sell(mac(2), sold.clone(), None, "EUR")
            .expect("sells");
        let mut usage = UsageBatch::default();
        // More than 2^53: exact integers, never floats.
        let big = (1_u64 << 53) + 1;
        usage.add(key(DAY, 1, Some(first)), counts(big, 2, 30));
        usage.add(key(DAY + HOUR_SECS, 1, Some(first)), counts(1, 1, 60));
        usage.add(key(DAY + HOUR_SECS, 1, None), counts(5, 5, 0));
        usage.add(key(DAY, 2, Some(second)), counts(7, 8, 9));
        let before = store.health().last_saved;
        store.save_batch(save(usage.clone())).expect("takes");
        // The same counts again add up.
        store.save_batch(save(usage)).expect("takes");
        store.sync().await.expect("saved");
        assert_ne!(store.health().last_saved, before);

        let history = store.history();
        let hours = history.usage(&query(Period::Hour, false)).expect("reads");
        assert_eq!(
            hours
                .iter()
                .map(|row| (
                    row.start.timestamp(),
                    row.mac,
                    row.up_bytes,
                    row.connected_secs
                ))
                .collect::<Vec<_>>(),
            vec![
                (DAY, mac(1), 2 * big, 60),
                (DAY, mac(2), 14, 18),
                (DAY + HOUR_SECS, mac(1), 12, 120),
            ]
        );
        let days = history.usage(&query(Period::Day, true)).expect("reads");
        assert_eq!(
            days.iter()
                .map(|row| (row.mac, row.session_id, row.up_bytes, row.down_bytes))
                .collect::<Vec<_>>(),
            vec![
                (mac(1), None, 10, 10),
                (mac(1), Some(first), 2 * big + 2, 6),
                (mac(2), Some(second), 14, 16),
            ]
        );
        let one = history
            .usage(&UsageQuery {
                mac: Some(mac(2)),
                since: Some(at(DAY + 1)),
                ..query(Period::Hour, true)
            })
            .expect("reads");
        assert_eq!(one.len(), 1, "the hour that holds --since is in");
        assert!(
            usage_csv(&one).ends_with(&format!("{},{second},14,16,18\n", mac(2))),
            "{}",
            usage_csv(&one)
        );
        let page = history
            .usage(&UsageQuery {
                limit: 1,
                offset: 2,
                ..query(Period::Hour, false)
            })
            .expect("reads");
        assert_eq!(page[0].start.timestamp(), DAY + HOUR_SECS);
    }

    #[tokio::test]
    async fn sales_are_written_with_their_session_and_summed_exactly() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        let store = Store::open(&path).expect("opens");
        let mut sold = running(1);
        sold.created_at = at(DAY + 10);
        let first = store
            .sell(
                mac(1),
                sold.clone(),
                Some("2.50".parse().expect("price")),
                "EUR",
            )
            .expect("sells");
        store.sell(mac(2), sold, None, "EUR").expect("sells");
        store.sync().await.expect("saved");
        let history = store.history();
        let report = history
            .sales(&SalesQuery {
                limit: 10,
                ..SalesQuery::default()
            })
            .expect("reads");
        assert_eq!(report.count, 2);
        assert_eq!(report.totals.get("EUR"), Some(&Price(2_500)));
        assert_eq!(report.sales[0].session_id, first);
        assert_eq!(report.sales[0].price, Some(Price(2_500)));
        assert_eq!(report.sales[0].sold_at, at(DAY + 10));
        assert_eq!(report.sales[1].price, None);
        let csv = sales_csv(&report);
        assert!(
            csv.contains(&format!(
                ",{first},{},\"voucher\",time_or_data,3600,512.25,2.50,EUR\n",
                mac(1)
            )),
            "{csv}"
        );
        let none = history
            .sales(&SalesQuery {
                since: Some(at(DAY + 11)),
                limit: 10,
                ..SalesQuery::default()
            })
            .expect("reads");
        assert_eq!((none.count, none.sales.len()), (0, 0));
        assert!(none.totals.is_empty());
    }

    #[tokio::test]
    async fn old_hours_fold_into_days_and_old_days_and_sales_go() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        let store = Store::open(&path).expect("opens");
        let mut old = running(1);
        old.created_at = at(DAY - 40 * DAY_SECS);
        store
            .sell(mac(1), old, Some(Price(1_000)), "")
            .expect("sells");
        let mut recent = running(2);
        recent.created_at = at(DAY - 2 * DAY_SECS);
        store
            .sell(mac(2), recent, Some(Price(3_000)), "")
            .expect("sells");
        let mut usage = UsageBatch::default();
        for (n, day) in [(1, 40), (1, 3), (2, 3), (1, 2), (1, 0)] {
            for hour in [1, 5] {
                usage.add(
                    key(DAY - day * DAY_SECS + hour * HOUR_SECS, n, None),
                    counts(100, 10, 1),
                );
            }
        }
        store.save_batch(save(usage)).expect("takes");
        store.sync().await.expect("saved");
        // Now is 3 h into DAY: two days of hours, thirty of days.
        let mut cut = UsageBatch {
            retention: Some(Retention {
                hourly_days: 2,
                daily_days: 30,
                now: at(DAY + 3 * HOUR_SECS),
            }),
            ..UsageBatch::default()
        };
        cut.add(key(DAY + 2 * HOUR_SECS, 3, None), counts(1, 1, 1));
        store.save_batch(save(cut)).expect("takes");
        store.sync().await.expect("saved");

        let history = store.history();
        let hours = history.usage(&query(Period::Hour, false)).expect("reads");
        let starts: Vec<i64> = hours
            .iter()
            .map(|row| (row.start.timestamp() - DAY) / HOUR_SECS)
            .collect();
        assert_eq!(starts, vec![-47, -43, 1, 2, 5], "days -2 and 0 by the hour");
        let days = history.usage(&query(Period::Day, false)).expect("reads");
        assert_eq!(
            days.iter()
                .map(|row| (
                    (row.start.timestamp() - DAY) / DAY_SECS,
                    row.mac,
                    row.up_bytes
                ))
                .collect::<Vec<_>>(),
            vec![
                (-3, mac(1), 200),
                (-3, mac(2), 200),
                (-2, mac(1), 200),
                (0, mac(1), 200),
                (0, mac(3), 1),
            ],
            "day -3 folded, day -40 gone"
        );
        let report = history
            .sales(&SalesQuery {
                limit: 10,
                ..SalesQuery::default()
            })
            .expect("reads");
        assert_eq!(report.count, 1, "the sale of 40 days ago is gone");
        assert_eq!(report.totals.get(""), Some(&Price(3_000)));
    }

    #[tokio::test]
    async fn an_ended_session_goes_one_second_past_the_cut_and_stays_at_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("sessions.db")).expect("opens");
        let cut_secs = DAY - 30 * DAY_SECS;
        let ids: Vec<_> = (1..=3)
            .map(|n| store.insert(mac(n), running(n)).expect("inserts"))
            .collect();
        let ended = [(ids[0], cut_secs - 1), (ids[1], cut_secs)]
            .into_iter()
            .map(|(id, secs)| crate::store::Ended {
                id,
                end: crate::store::SessionEnd::Consumed,
                at: at(secs),
            })
            .collect();
        store
            .save_changes(crate::store::ChangeBatch {
                sessions: Vec::new(),
                clients: Vec::new(),
                meta: crate::store::tests::meta(1),
                usage: UsageBatch::default(),
                ended,
            })
            .expect("takes");
        store
            .save_batch(save(UsageBatch {
                retention: Some(Retention {
                    hourly_days: 2,
                    daily_days: 30,
                    now: at(DAY + 3 * HOUR_SECS),
                }),
                ..UsageBatch::default()
            }))
            .expect("takes");
        store.sync().await.expect("saved");
        let page = store
            .history()
            .ended_sessions(&crate::store::ended::EndedQuery {
                limit: 10,
                ..crate::store::ended::EndedQuery::default()
            })
            .expect("reads");
        assert_eq!(
            page.rows
                .iter()
                .map(|row| row.session.id)
                .collect::<Vec<_>>(),
            vec![ids[1]],
            "ended at the cut: kept; a second before: gone"
        );
        assert_eq!(
            store.load_all().sessions.len(),
            1,
            "the live one is never cut"
        );
    }

    #[test]
    fn times_are_read_as_rfc_3339_dates_or_spans_back() {
        let now = at(DAY + 5 * HOUR_SECS);
        assert_eq!(parse_instant("24h", now), Ok(at(DAY - 19 * HOUR_SECS)));
        assert_eq!(parse_instant("7d", now), Ok(now - TimeDelta::days(7)));
        assert_eq!(parse_instant("90m", now), Ok(now - TimeDelta::minutes(90)));
        assert_eq!(parse_instant("2027-01-15", now), Ok(at(DAY)));
        assert_eq!(parse_instant("2027-01-15T01:00:00+01:00", now), Ok(at(DAY)));
        for bad in ["", "yesterday", "-5d", "5y", "2027-13-01"] {
            let error = parse_instant(bad, now).expect_err(bad);
            assert!(error.contains("RFC 3339"), "{error}");
        }
    }
}
