//! The queries of the session database: sessions by id, the clients and the last save's
//! time, each turned from and into the store's types with every value checked. Blocking: only
//! the store thread calls it. Side effects: reads and writes the database.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike as _, SecondsFormat, Utc};
use hotspotd_common::Usage;
use rusqlite::{Connection, OptionalExtension as _, Row, TransactionBehavior, types::ToSql};

use super::{
    ClientState, Loaded, PauseReason, SavedMeta, SessionId, StoreError, StoredClient,
    StoredSession,
    ledger::Changes,
    schema::{self, fail},
};
use crate::{
    accounting::Totals,
    sessions::data::{SessionData, SessionType},
};

/// The id is the store's, not SQLite's: the store hands ids out itself, so it can sell a
/// session while the disk is failing and write it later under the id the portal already has.
/// An existing row (a changed session) is overwritten.
const UPSERT_SESSION: &str = "
INSERT INTO sessions (id, mac, provider, type, time_secs, data_mb, time_cons, data_cons,
    started_at, exp_days, down_mbits, up_mbits, use_global_speed, created_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
ON CONFLICT (id) DO UPDATE SET mac = excluded.mac, provider = excluded.provider,
    type = excluded.type, time_secs = excluded.time_secs, data_mb = excluded.data_mb,
    time_cons = excluded.time_cons, data_cons = excluded.data_cons,
    started_at = excluded.started_at, exp_days = excluded.exp_days,
    down_mbits = excluded.down_mbits, up_mbits = excluded.up_mbits,
    use_global_speed = excluded.use_global_speed, created_at = excluded.created_at";

/// The columns `read_session` reads, first in every query of sessions.
macro_rules! session_columns {
    () => {
        "id, mac, provider, type, time_secs, data_mb, time_cons, data_cons, started_at,
            exp_days, down_mbits, up_mbits, use_global_speed, created_at"
    };
}
macro_rules! select_sessions {
    () => {
        concat!("SELECT ", session_columns!(), " FROM sessions")
    };
}
/// Every session's columns as `read_session` reads them, for queries elsewhere.
pub(super) const SESSION_COLUMNS: &str = session_columns!();

/// The live sessions: an ended one is history, read by `History::sessions` when asked for.
const SELECT_LIVE_SESSIONS: &str = concat!(select_sessions!(), " WHERE ended IS NULL ORDER BY id");

/// How and when a session ended, beside its last record.
const MARK_ENDED: &str = "UPDATE sessions SET ended = ?2, ended_at_secs = ?3 WHERE id = ?1";

/// The session a client row names is looked up rather than trusted, so a session removed
/// while the batch was being built leaves `NULL` instead of failing the whole save on the
/// foreign key. A MAC twice in one batch keeps the last: one bad row must not stop every
/// periodic save from then on.
const INSERT_CLIENT: &str = "
INSERT OR REPLACE INTO clients (mac, state, pause_reason, session_id, up_bytes, up_packets,
    down_bytes, down_packets, up_local_bytes, down_local_bytes, up_dropped_bytes,
    down_dropped_bytes, dropped_packets, last_seen_jiffies, total_up_bytes, total_up_packets,
    total_down_bytes, total_down_packets, total_local_bytes, total_dropped_bytes,
    total_dropped_packets, saved_at_mono_ns)
VALUES (?1, ?2, ?3, (SELECT id FROM sessions WHERE id = ?4), ?5, ?6, ?7, ?8, ?9, ?10, ?11,
    ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)";

const SELECT_CLIENTS: &str = "
SELECT mac, state, pause_reason, session_id, up_bytes, up_packets, down_bytes, down_packets,
    up_local_bytes, down_local_bytes, up_dropped_bytes, down_dropped_bytes, dropped_packets,
    last_seen_jiffies, total_up_bytes, total_up_packets, total_down_bytes, total_down_packets,
    total_local_bytes, total_dropped_bytes, total_dropped_packets, saved_at_mono_ns
FROM clients ORDER BY mac";

const SAVE_META: &str = "
INSERT OR REPLACE INTO saved_state (id, saved_at_wall, saved_at_mono_ns, boot_id, kernel_epoch,
    clock_ahead_ns)
VALUES (1, ?1, ?2, ?3, ?4, ?5)";

/// The highest id ever handed out: AUTOINCREMENT's record of it (which outlives the removal
/// of that session), or the highest row of a file that never had one.
const SELECT_LAST_ID: &str = "
SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'sessions'), 0),
           coalesce((SELECT max(id) FROM sessions), 0))";

/// Makes the file remember the highest id handed out even when that session never reached
/// it (sold and removed while the disk failed) or the file is new: a later start must not
/// hand the id out again. `sqlite_sequence` is AUTOINCREMENT's own table, meant to be written.
const RAISE_LAST_ID: [&str; 2] = [
    "UPDATE sqlite_sequence SET seq = ?1 WHERE name = 'sessions' AND seq < ?1",
    "INSERT INTO sqlite_sequence (name, seq) SELECT 'sessions', ?1
     WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'sessions')",
];

/// The open database. Owned by the store thread.
pub(super) struct Db {
    conn: Connection,
    path: PathBuf,
}

impl Db {
    /// Opens the database at `path`: see [`schema::open`].
    pub(super) fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            conn: schema::open(path)?,
            path: path.to_owned(),
        })
    }

    pub(super) fn load_all(&self) -> Result<Loaded, StoreError> {
        let op = "load the sessions";
        let mut sessions = Vec::new();
        let mut statement = self
            .conn
            .prepare_cached(SELECT_LIVE_SESSIONS)
            .map_err(self.fail(op))?;
        let mut rows = statement.query([]).map_err(self.fail(op))?;
        while let Some(row) = rows.next().map_err(self.fail(op))? {
            sessions.push(self.read_session(row)?);
        }

        let op = "load the clients";
        let mut clients = Vec::new();
        let mut statement = self
            .conn
            .prepare_cached(SELECT_CLIENTS)
            .map_err(self.fail(op))?;
        let mut rows = statement.query([]).map_err(self.fail(op))?;
        while let Some(row) = rows.next().map_err(self.fail(op))? {
            clients.push(self.read_client(row)?);
        }

        let op = "load the last save's time";
        let meta = self
            .conn
            .query_row(
                "SELECT saved_at_wall, saved_at_mono_ns, boot_id, kernel_epoch, clock_ahead_ns
                FROM saved_state",
                [],
                |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                    ))
                },
            )
            .optional()
            .map_err(self.fail(op))?
            .map(|row| self.read_meta(row))
            .transpose()?;
        Ok(Loaded {
            sessions,
            clients,
            meta,
            vouchers: super::vouchers::load(&self.conn, &self.path)?,
            trials: super::trials::load(&self.conn, &self.path)?,
        })
    }

    /// The highest session id this file has handed out.
    pub(super) fn last_id(&self) -> Result<SessionId, StoreError> {
        self.conn
            .query_row(SELECT_LAST_ID, [], |row| row.get(0))
            .map_err(self.fail("read the last session id"))
    }

    /// Writes `changes` in one transaction whose commit is synced to disk before this returns:
    /// every save is the point up to which a power loss loses nothing (sessions.md rule 12).
    /// All or nothing: a failure leaves the file as it was.
    pub(super) fn write(&mut self, changes: &Changes) -> Result<(), StoreError> {
        self.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(self.fail("turn on syncing"))?;
        let written = self.write_changes(changes);
        if let Err(error) = self
            .conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(self.fail("turn off syncing"))
        {
            // Only slower from here on: every commit is synced.
            tracing::warn!(error = %crate::text::chain(&error), "the session database stays in synchronous = FULL");
        }
        written
    }

    fn write_changes(&mut self, changes: &Changes) -> Result<(), StoreError> {
        let op = "save";
        let path = &self.path;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail(path, op))?;
        // An early return drops `tx`, which rolls the whole write back.
        {
            if changes.full {
                // The file may be an older copy: it keeps exactly the live sessions held now,
                // and the history it has (ended sessions are not held in memory).
                tx.execute_batch("DELETE FROM clients; DELETE FROM sessions WHERE ended IS NULL;")
                    .map_err(fail(path, op))?;
            }
            let mut upsert = tx.prepare_cached(UPSERT_SESSION).map_err(fail(path, op))?;
            for session in &changes.sessions {
                let values = SessionValues::new(&session.data)?;
                let mac = session.mac.to_string();
                upsert
                    .execute(values.bind(&session.id, &mac).as_slice())
                    .map_err(fail(path, op))?;
            }
            let mut mark = tx.prepare_cached(MARK_ENDED).map_err(fail(path, op))?;
            for (id, end, at) in &changes.ended {
                mark.execute((id, end.name(), at)).map_err(fail(path, op))?;
            }
            let mut delete = tx
                .prepare_cached("DELETE FROM sessions WHERE id = ?1")
                .map_err(fail(path, op))?;
            for id in &changes.removed {
                delete.execute([id]).map_err(fail(path, op))?;
            }
            if let Some((clients, meta)) = &changes.clients {
                if changes.replace_clients {
                    tx.execute("DELETE FROM clients", [])
                        .map_err(fail(path, op))?;
                }
                let mut insert = tx.prepare_cached(INSERT_CLIENT).map_err(fail(path, op))?;
                for client in clients {
                    let values = ClientValues::new(client);
                    insert
                        .execute(rusqlite::params_from_iter(values.bind()))
                        .map_err(fail(path, op))?;
                }
                if let Some(meta) = meta {
                    let wall = to_sql_time("saved_at_wall", meta.saved_at_wall)?;
                    let mono_ns = to_sql_int("saved_at_mono_ns", meta.saved_at_mono_ns)?;
                    tx.prepare_cached(SAVE_META)
                        .and_then(|mut statement| {
                            statement.execute((
                                wall,
                                mono_ns,
                                &meta.boot_id,
                                meta.kernel_epoch.cast_signed(),
                                meta.clock_ahead_ns,
                            ))
                        })
                        .map_err(fail(path, op))?;
                }
            }
            super::vouchers::write(&tx, path, &changes.vouchers, changes.full)?;
            super::trials::write(
                &tx,
                path,
                &changes.trials,
                &changes.trials_removed,
                changes.full,
            )?;
            super::usage::write(&tx, path, &changes.usage, &changes.sales)?;
            for sql in RAISE_LAST_ID {
                tx.prepare_cached(sql)
                    .and_then(|mut statement| statement.execute([changes.last_id]))
                    .map_err(fail(path, op))?;
            }
        }
        tx.commit().map_err(fail(path, op))
    }

    /// Closes the connection; the last one to close folds the WAL back into the file.
    pub(super) fn close(self) -> Result<(), StoreError> {
        let path = self.path;
        self.conn
            .close()
            .map_err(|(_, source)| fail(&path, "close")(source))
    }

    fn fail(&self, op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        fail(&self.path, op)
    }

    fn read_session(&self, row: &Row<'_>) -> Result<StoredSession, StoreError> {
        read_session(&self.path, row)
    }

    fn read_client(&self, row: &Row<'_>) -> Result<StoredClient, StoreError> {
        let sql = self.fail("read a client");
        let mac: String = row.get(0).map_err(&sql)?;
        let bad = |field, value: &dyn ToString| StoreError::BadValue {
            path: self.path.clone(),
            table: "clients",
            key: mac.clone(),
            field,
            value: value.to_string(),
        };
        let state: String = row.get(1).map_err(&sql)?;
        let pause_reason: Option<String> = row.get(2).map_err(&sql)?;
        let (state, pause_reason) = match (state.as_str(), pause_reason.as_deref()) {
            ("connected", None) => (ClientState::Connected, None),
            ("disconnected", None) => (ClientState::Disconnected, None),
            ("paused", Some("operator")) => (ClientState::Paused, Some(PauseReason::Operator)),
            ("paused", Some("idle")) => (ClientState::Paused, Some(PauseReason::Idle)),
            _ => return Err(bad("state", &format!("{state} ({pause_reason:?})"))),
        };
        // Counters are stored as their two's complement (see `ClientValues`).
        let counter = |index| row.get::<_, i64>(index).map(i64::cast_unsigned);
        let baseline = Usage {
            up_bytes: counter(4).map_err(&sql)?,
            up_packets: counter(5).map_err(&sql)?,
            down_bytes: counter(6).map_err(&sql)?,
            down_packets: counter(7).map_err(&sql)?,
            up_local_bytes: counter(8).map_err(&sql)?,
            down_local_bytes: counter(9).map_err(&sql)?,
            up_dropped_bytes: counter(10).map_err(&sql)?,
            down_dropped_bytes: counter(11).map_err(&sql)?,
            dropped_packets: counter(12).map_err(&sql)?,
            last_seen_jiffies: counter(13).map_err(&sql)?,
        };
        let totals = Totals {
            up_bytes: counter(14).map_err(&sql)?,
            up_packets: counter(15).map_err(&sql)?,
            down_bytes: counter(16).map_err(&sql)?,
            down_packets: counter(17).map_err(&sql)?,
            local_bytes: counter(18).map_err(&sql)?,
            dropped_bytes: counter(19).map_err(&sql)?,
            dropped_packets: counter(20).map_err(&sql)?,
        };
        Ok(StoredClient {
            mac: mac.parse().map_err(|_| bad("mac", &mac))?,
            state,
            pause_reason,
            session_id: row.get(3).map_err(&sql)?,
            baseline,
            totals,
            saved_at_mono_ns: counter(21).map_err(&sql)?,
        })
    }

    fn read_meta(
        &self,
        (wall, mono_ns, boot_id, kernel_epoch, clock_ahead_ns): (String, i64, String, i64, i64),
    ) -> Result<SavedMeta, StoreError> {
        let bad = |field, value: &dyn ToString| StoreError::BadValue {
            path: self.path.clone(),
            table: "saved_state",
            key: "1".to_owned(),
            field,
            value: value.to_string(),
        };
        Ok(SavedMeta {
            saved_at_wall: parse_time(&wall).ok_or_else(|| bad("saved_at_wall", &wall))?,
            saved_at_mono_ns: u64::try_from(mono_ns)
                .map_err(|_| bad("saved_at_mono_ns", &mono_ns))?,
            boot_id,
            kernel_epoch: kernel_epoch.cast_unsigned(),
            clock_ahead_ns,
        })
    }
}

/// A session's columns after `mac`/`id`, in SQL's types.
struct SessionValues<'a> {
    provider: &'a str,
    kind: u8,
    time_secs: i64,
    data_mb: f64,
    time_cons: i64,
    data_cons: f64,
    started_at: Option<String>,
    exp_days: Option<u32>,
    down_mbits: i32,
    up_mbits: i32,
    use_global_speed: bool,
    created_at: String,
}

impl<'a> SessionValues<'a> {
    fn new(data: &'a SessionData) -> Result<Self, StoreError> {
        Ok(Self {
            provider: &data.provider,
            kind: data.kind as u8,
            time_secs: to_sql_int("time_secs", data.time_secs)?,
            data_mb: to_sql_real("data_mb", data.data_mb)?,
            time_cons: to_sql_int("time_cons", data.time_cons)?,
            data_cons: to_sql_real("data_cons", data.data_cons)?,
            started_at: data
                .started_at
                .map(|time| to_sql_time("started_at", time))
                .transpose()?,
            exp_days: data.exp_days,
            down_mbits: data.down_mbits,
            up_mbits: data.up_mbits,
            use_global_speed: data.use_global_speed,
            created_at: to_sql_time("created_at", data.created_at)?,
        })
    }

    /// Parameters `?1` (the id) to `?14`.
    fn bind<'k>(&'k self, id: &'k SessionId, mac: &'k dyn ToSql) -> [&'k dyn ToSql; 14] {
        [
            id,
            mac,
            &self.provider,
            &self.kind,
            &self.time_secs,
            &self.data_mb,
            &self.time_cons,
            &self.data_cons,
            &self.started_at,
            &self.exp_days,
            &self.down_mbits,
            &self.up_mbits,
            &self.use_global_speed,
            &self.created_at,
        ]
    }
}

/// A client's columns, in SQL's types.
struct ClientValues {
    mac: String,
    state: &'static str,
    pause_reason: Option<&'static str>,
    session_id: Option<SessionId>,
    counters: [i64; 18],
}

impl ClientValues {
    fn new(client: &StoredClient) -> Self {
        // A paused client without a reason was paused by the operator (the engine's
        // default); a reason beside another state means nothing and is not kept.
        let (state, pause_reason) = match (client.state, client.pause_reason) {
            (ClientState::Connected, _) => ("connected", None),
            (ClientState::Disconnected, _) => ("disconnected", None),
            (ClientState::Paused, Some(PauseReason::Idle)) => ("paused", Some("idle")),
            (ClientState::Paused, Some(PauseReason::Operator) | None) => {
                ("paused", Some("operator"))
            }
        };
        let usage = &client.baseline;
        let totals = &client.totals;
        // The kernel's counters are u64 and wrap; only `wrapping_sub` ever compares them, so
        // their two's complement keeps every value exact where a range check would refuse
        // the top half. The totals are u64 too, and kept the same way.
        let counters = [
            usage.up_bytes,
            usage.up_packets,
            usage.down_bytes,
            usage.down_packets,
            usage.up_local_bytes,
            usage.down_local_bytes,
            usage.up_dropped_bytes,
            usage.down_dropped_bytes,
            usage.dropped_packets,
            usage.last_seen_jiffies,
            totals.up_bytes,
            totals.up_packets,
            totals.down_bytes,
            totals.down_packets,
            totals.local_bytes,
            totals.dropped_bytes,
            totals.dropped_packets,
            client.saved_at_mono_ns,
        ]
        .map(u64::cast_signed);
        Self {
            mac: client.mac.to_string(),
            state,
            pause_reason,
            session_id: client.session_id,
            counters,
        }
    }

    /// The row's values in `INSERT_CLIENT`'s order.
    fn bind(&self) -> impl Iterator<Item = &dyn ToSql> {
        [
            &self.mac as &dyn ToSql,
            &self.state,
            &self.pause_reason,
            &self.session_id,
        ]
        .into_iter()
        .chain(self.counters.iter().map(|counter| counter as &dyn ToSql))
    }
}

/// Whether the database can hold `data` and give it back as it is.
pub(super) fn storable(data: &SessionData) -> Result<(), StoreError> {
    SessionValues::new(data).map(drop)
}

/// Whether the database can hold `meta` and give it back as it is.
pub(super) fn storable_meta(meta: &SavedMeta) -> Result<(), StoreError> {
    to_sql_time("saved_at_wall", meta.saved_at_wall)?;
    to_sql_int("saved_at_mono_ns", meta.saved_at_mono_ns).map(drop)
}

/// RFC 3339 in UTC with nanoseconds, fixed width (`2027-01-15T08:00:00.123456789Z`), so the
/// text sorts as the time does and no precision is lost. RFC 3339 has four-digit years only;
/// a time outside them would be written but never read back.
pub(super) fn to_sql_time(field: &'static str, time: DateTime<Utc>) -> Result<String, StoreError> {
    if (0..=9_999).contains(&time.year()) {
        Ok(time.to_rfc3339_opts(SecondsFormat::Nanos, true))
    } else {
        Err(StoreError::Unstorable {
            field,
            value: time.to_string(),
        })
    }
}

pub(super) fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.with_timezone(&Utc))
}

pub(super) fn to_sql_int(field: &'static str, value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Unstorable {
        field,
        value: value.to_string(),
    })
}

/// SQLite stores NaN as NULL, which would come back as an error or a different number.
pub(super) fn to_sql_real(field: &'static str, value: f64) -> Result<f64, StoreError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(StoreError::Unstorable {
            field,
            value: value.to_string(),
        })
    }
}

/// A session of a row whose first columns are `select_sessions!`'s, in the file at `path`.
pub(super) fn read_session(path: &Path, row: &Row<'_>) -> Result<StoredSession, StoreError> {
    let sql = fail(path, "read a session");
    let id: SessionId = row.get(0).map_err(&sql)?;
    let bad = |field, value: &dyn ToString| StoreError::BadValue {
        path: path.to_owned(),
        table: "sessions",
        key: id.to_string(),
        field,
        value: value.to_string(),
    };
    let mac: String = row.get(1).map_err(&sql)?;
    let kind: i64 = row.get(3).map_err(&sql)?;
    let time_secs: i64 = row.get(4).map_err(&sql)?;
    let time_cons: i64 = row.get(6).map_err(&sql)?;
    let started_at: Option<String> = row.get(8).map_err(&sql)?;
    let exp_days: Option<i64> = row.get(9).map_err(&sql)?;
    let down_mbits: i64 = row.get(10).map_err(&sql)?;
    let up_mbits: i64 = row.get(11).map_err(&sql)?;
    let use_global_speed: i64 = row.get(12).map_err(&sql)?;
    let created_at: String = row.get(13).map_err(&sql)?;
    let data = SessionData {
        provider: row.get(2).map_err(&sql)?,
        kind: u8::try_from(kind)
            .ok()
            .and_then(|kind| SessionType::try_from(kind).ok())
            .ok_or_else(|| bad("type", &kind))?,
        time_secs: u64::try_from(time_secs).map_err(|_| bad("time_secs", &time_secs))?,
        data_mb: row.get(5).map_err(&sql)?,
        time_cons: u64::try_from(time_cons).map_err(|_| bad("time_cons", &time_cons))?,
        data_cons: row.get(7).map_err(&sql)?,
        started_at: started_at
            .map(|text| parse_time(&text).ok_or_else(|| bad("started_at", &text)))
            .transpose()?,
        exp_days: exp_days
            .map(|days| u32::try_from(days).map_err(|_| bad("exp_days", &days)))
            .transpose()?,
        down_mbits: i32::try_from(down_mbits).map_err(|_| bad("down_mbits", &down_mbits))?,
        up_mbits: i32::try_from(up_mbits).map_err(|_| bad("up_mbits", &up_mbits))?,
        use_global_speed: match use_global_speed {
            0 => false,
            1 => true,
            other => return Err(bad("use_global_speed", &other)),
        },
        created_at: parse_time(&created_at).ok_or_else(|| bad("created_at", &created_at))?,
    };
    Ok(StoredSession {
        id,
        mac: mac.parse().map_err(|_| bad("mac", &mac))?,
        data,
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::mac::MacAddr;
    use crate::store::tests::{mac, running};

    fn time(secs: i64, nanos: u32) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, nanos).expect("valid")
    }

    /// Sessions that between them put every field at its edges: `None`s, fractions that have
    /// no short decimal form, nanoseconds, the integer limits.
    fn edge_sessions() -> Vec<(MacAddr, SessionData)> {
        let never_started = SessionData {
            data_mb: 0.0,
            ..crate::sessions::data::example(SessionType::Time, time(1_800_000_000, 0))
        };
        let limits = SessionData {
            provider: "plugin \"café\" ☕'; DROP TABLE sessions; --".to_owned(),
            kind: SessionType::Data,
            time_secs: i64::MAX.cast_unsigned(),
            data_mb: 0.1,
            time_cons: i64::MAX.cast_unsigned(),
            data_cons: 1.0 / 3.0,
            started_at: Some(time(1_800_000_123, 999_999_999)),
            exp_days: Some(u32::MAX),
            down_mbits: i32::MIN,
            up_mbits: i32::MAX,
            use_global_speed: true,
            created_at: time(1_800_000_000, 1),
        };
        let tiny_and_huge = SessionData {
            provider: "v".to_owned(),
            kind: SessionType::TimeOrData,
            time_secs: 1,
            data_mb: f64::MAX,
            time_cons: 1,
            data_cons: f64::from_bits(1),
            started_at: Some(time(-1, 500_000_000)),
            exp_days: Some(0),
            down_mbits: 0,
            up_mbits: -1,
            use_global_speed: false,
            created_at: time(-62_167_219_200, 0),
        };
        vec![
            (MacAddr([0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF]), never_started),
            (mac(1), limits),
            (mac(2), tiny_and_huge),
            (mac(3), running(3)),
        ]
    }

    /// A write of `sessions` as new or changed, and nothing else.
    fn sessions(sessions: Vec<StoredSession>) -> Changes {
        let last_id = sessions.iter().map(|s| s.id).max().unwrap_or(0);
        Changes {
            ended: Vec::new(),
            usage: crate::store::usage::UsageBatch::default(),
            sales: Vec::new(),
            generation: 1,
            full: false,
            sessions,
            removed: Vec::new(),
            clients: None,
            replace_clients: true,
            last_id,
            vouchers: Vec::new(),
            trials: Vec::new(),
            trials_removed: Vec::new(),
        }
    }

    /// Writes `data` for `mac` as session `id`.
    fn put(db: &mut Db, id: SessionId, mac: MacAddr, data: SessionData) {
        db.write(&sessions(vec![StoredSession { id, mac, data }]))
            .expect("writes");
    }

    fn ids(db: &Db) -> Vec<SessionId> {
        db.load_all()
            .expect("loads")
            .sessions
            .iter()
            .map(|s| s.id)
            .collect()
    }

    #[test]
    fn every_field_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        let mut db = Db::open(&path).expect("opens");
        let expected: Vec<StoredSession> = edge_sessions()
            .into_iter()
            .zip(1..)
            .map(|((mac, data), id)| StoredSession { id, mac, data })
            .collect();
        db.write(&sessions(expected.clone())).expect("writes");
        db.close().expect("closes");

        let db = Db::open(&path).expect("reopens");
        let loaded = db.load_all().expect("loads").sessions;
        assert_eq!(loaded, expected);
        for (loaded, expected) in loaded.iter().zip(&expected) {
            for (field, got, want) in [
                ("data_mb", loaded.data.data_mb, expected.data.data_mb),
                ("data_cons", loaded.data.data_cons, expected.data.data_cons),
            ] {
                assert_eq!(got.to_bits(), want.to_bits(), "{field} of {}", expected.id);
            }
        }

        // What another reader of the file sees: lower-case MACs, UTC with nanoseconds.
        let (mac, started_at, created_at): (String, Option<String>, String) = db
            .conn
            .query_row(
                "SELECT mac, started_at, created_at FROM sessions WHERE id = ?1",
                [expected[1].id],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .expect("row");
        assert_eq!(mac, "02:aa:00:00:00:01");
        assert_eq!(
            started_at.as_deref(),
            Some("2027-01-15T08:02:03.999999999Z")
        );
        assert_eq!(created_at, "2027-01-15T08:00:00.000000001Z");
    }

    #[test]
    fn what_cannot_be_read_back_is_not_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut db = Db::open(&dir.path().join("sessions.db")).expect("opens");
        let mut nan = running(1);
        nan.data_cons = f64::NAN;
        let mut huge = running(1);
        huge.time_cons = u64::MAX;
        let mut far = running(1);
        far.created_at = time(253_402_300_800, 0);
        for (field, data) in [("data_cons", nan), ("time_cons", huge), ("created_at", far)] {
            assert!(
                matches!(storable(&data), Err(StoreError::Unstorable { field: got, .. }) if got == field),
                "{field}"
            );
            let error = db
                .write(&sessions(vec![StoredSession {
                    id: 1,
                    mac: mac(1),
                    data,
                }]))
                .expect_err(field);
            assert!(
                matches!(error, StoreError::Unstorable { field: got, .. } if got == field),
                "{error}"
            );
        }
        assert!(db.load_all().expect("loads").sessions.is_empty());
    }

    fn meta(n: u64) -> SavedMeta {
        SavedMeta {
            saved_at_wall: time(1_800_000_000, 123_456_789) + TimeDelta::seconds(n.cast_signed()),
            saved_at_mono_ns: 5_000_000_000 + n,
            boot_id: "3f0b52b4-6a4c-4a0e-9d3e-0c9d1f1c2b7a".to_owned(),
            kernel_epoch: u64::MAX - n,
            clock_ahead_ns: -i64::try_from(n).unwrap_or(i64::MAX),
        }
    }

    fn client(n: u32, state: ClientState, session_id: Option<SessionId>) -> StoredClient {
        client_paused(n, state, None, session_id)
    }

    fn client_paused(
        n: u32,
        state: ClientState,
        pause_reason: Option<PauseReason>,
        session_id: Option<SessionId>,
    ) -> StoredClient {
        let n64 = u64::from(n);
        StoredClient {
            mac: mac(n),
            state,
            pause_reason,
            session_id,
            baseline: Usage {
                up_bytes: u64::MAX - n64,
                up_packets: 1 << 63,
                down_bytes: n64 * 1_500,
                down_packets: n64,
                up_local_bytes: 1,
                down_local_bytes: 2,
                up_dropped_bytes: 3,
                down_dropped_bytes: 4,
                dropped_packets: 5,
                last_seen_jiffies: 4_294_937_296 + n64,
            },
            totals: Totals {
                up_bytes: u64::MAX - 7 * n64,
                up_packets: n64,
                down_bytes: (1 << 63) + n64,
                down_packets: 2 * n64,
                local_bytes: 3 * n64,
                dropped_bytes: 4 * n64,
                dropped_packets: 5 * n64,
            },
            saved_at_mono_ns: 7_000_000_000 + n64,
        }
    }

    #[test]
    fn a_write_of_10000_sessions_and_clients_is_one_transaction() {
        const SESSIONS: u32 = 10_000;
        let dir = tempfile::tempdir().expect("temp dir");
        let mut db = Db::open(&dir.path().join("sessions.db")).expect("opens");
        let stored: Vec<StoredSession> = (0..SESSIONS)
            .map(|n| StoredSession {
                id: i64::from(n) + 1,
                mac: mac(n),
                data: running(n),
            })
            .collect();
        db.write(&sessions(stored.clone())).expect("writes");

        let mut changes = Changes {
            ended: Vec::new(),
            usage: crate::store::usage::UsageBatch::default(),
            sales: Vec::new(),
            generation: 2,
            full: false,
            sessions: stored
                .iter()
                .map(|session| {
                    let mut session = session.clone();
                    session.data.time_cons += 30;
                    session.data.data_cons += 0.5;
                    session
                })
                .collect(),
            removed: Vec::new(),
            clients: Some((
                stored
                    .iter()
                    .zip(0..)
                    .map(|(session, n)| client(n, ClientState::Connected, Some(session.id)))
                    .collect(),
                Some(meta(1)),
            )),
            replace_clients: true,
            last_id: i64::from(SESSIONS),
            vouchers: Vec::new(),
            trials: Vec::new(),
            trials_removed: Vec::new(),
        };
        db.write(&changes).expect("writes");
        let synchronous: i64 = db
            .conn
            .pragma_query_value(None, "synchronous", |row| row.get(0))
            .expect("synchronous");
        assert_eq!(synchronous, 1, "back to NORMAL after the synced write");
        let loaded = db.load_all().expect("loads");
        assert_eq!(loaded.sessions, changes.sessions);
        let (clients, meta_written) = changes.clients.clone().expect("clients");
        assert_eq!(loaded.clients, clients);
        assert_eq!(loaded.meta, meta_written);

        // One unstorable value at the very end: nothing of the write may be saved.
        let before = db.load_all().expect("loads");
        for session in &mut changes.sessions {
            session.data.time_cons += 30;
        }
        changes.clients = Some((clients[..10].to_vec(), Some(meta(2))));
        changes
            .sessions
            .last_mut()
            .expect("sessions")
            .data
            .data_cons = f64::INFINITY;
        let error = db.write(&changes).expect_err("unstorable");
        assert!(matches!(
            error,
            StoreError::Unstorable {
                field: "data_cons",
                ..
            }
        ));
        assert_eq!(
            db.load_all().expect("loads"),
            before,
            "rolled back as a whole"
        );
    }

    #[test]
    fn clients_and_the_last_save_round_trip() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut db = Db::open(&dir.path().join("sessions.db")).expect("opens");
        assert_eq!(db.load_all().expect("loads").meta, None);
        put(&mut db, 1, mac(1), running(1));
        put(&mut db, 2, mac(2), running(2));
        let clients = vec![
            client(1, ClientState::Connected, Some(1)),
            client_paused(2, ClientState::Paused, Some(PauseReason::Operator), Some(2)),
            client_paused(3, ClientState::Paused, Some(PauseReason::Idle), None),
            client(4, ClientState::Disconnected, None),
        ];
        let mut changes = sessions(Vec::new());
        changes.clients = Some((clients.clone(), Some(meta(1))));
        changes.last_id = 2;
        db.write(&changes).expect("writes");
        let loaded = db.load_all().expect("loads");
        assert_eq!(loaded.clients, clients);
        assert_eq!(loaded.meta, Some(meta(1)));

        // Removing a session clears the client's reference to it.
        let mut removal = sessions(Vec::new());
        removal.removed = vec![1];
        removal.last_id = 2;
        db.write(&removal).expect("writes");
        let loaded = db.load_all().expect("loads");
        assert_eq!(loaded.clients[0].session_id, None);
        assert_eq!(loaded.clients[1].session_id, Some(2));

        // The next clients replace them; a client naming a session the file does not hold
        // keeps no dangling id, and a MAC given twice keeps its last row.
        let mut changes = sessions(vec![StoredSession {
            id: 2,
            mac: mac(2),
            data: running(8),
        }]);
        changes.clients = Some((
            vec![
                client(5, ClientState::Disconnected, None),
                client(5, ClientState::Connected, Some(1)),
            ],
            Some(meta(2)),
        ));
        db.write(&changes).expect("writes");
        let loaded = db.load_all().expect("loads");
        assert_eq!(
            loaded.clients,
            vec![client(5, ClientState::Connected, None)]
        );
        assert_eq!(loaded.meta, Some(meta(2)));
        assert_eq!(loaded.sessions.len(), 1);
        assert_eq!(loaded.sessions[0].data, running(8));
    }

    #[test]
    fn a_full_write_leaves_exactly_what_is_held() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut db = Db::open(&dir.path().join("sessions.db")).expect("opens");
        for id in 1..=3 {
            put(&mut db, id, mac(1), running(1));
        }
        let mut changes = sessions(Vec::new());
        changes.clients = Some((vec![client(1, ClientState::Connected, Some(3))], None));
        db.write(&changes).expect("writes");
        // What is held now: session 2 changed, 1 and 3 removed, 4 sold.
        let held = vec![
            StoredSession {
                id: 2,
                mac: mac(1),
                data: running(7),
            },
            StoredSession {
                id: 4,
                mac: mac(2),
                data: running(4),
            },
        ];
        let full = Changes {
            ended: Vec::new(),
            usage: crate::store::usage::UsageBatch::default(),
            sales: Vec::new(),
            generation: 9,
            full: true,
            sessions: held.clone(),
            removed: Vec::new(),
            clients: Some((
                vec![client(2, ClientState::Connected, Some(4))],
                Some(meta(1)),
            )),
            replace_clients: true,
            last_id: 5,
            vouchers: Vec::new(),
            trials: Vec::new(),
            trials_removed: Vec::new(),
        };
        // Session 5 ended before: history, which a full write of the live ones keeps.
        put(&mut db, 5, mac(3), running(3));
        let mut ended = sessions(Vec::new());
        ended.ended = vec![(5, crate::store::SessionEnd::Expired, 1_800_000_000)];
        db.write(&ended).expect("writes");
        db.write(&full).expect("writes");
        let loaded = db.load_all().expect("loads");
        assert_eq!(loaded.sessions, held);
        let kept: (String, i64) = db
            .conn
            .query_row(
                "SELECT ended, ended_at_secs FROM sessions WHERE id = 5",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .expect("the ended row stays");
        assert_eq!(kept, ("expired".to_owned(), 1_800_000_000));
        assert_eq!(
            loaded.clients,
            vec![client(2, ClientState::Connected, Some(4))]
        );
        assert_eq!(
            db.last_id().expect("reads"),
            5,
            "5 was handed out, if never written"
        );
    }

    #[test]
    fn the_last_id_outlives_its_session() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        let mut db = Db::open(&path).expect("opens");
        assert_eq!(db.last_id().expect("reads"), 0);
        for id in 1..=3 {
            put(&mut db, id, mac(1), running(1));
        }
        let mut removal = sessions(Vec::new());
        removal.removed = vec![3];
        removal.last_id = 3;
        db.write(&removal).expect("writes");
        assert_eq!(ids(&db), vec![1, 2]);
        // Sold and removed before it was ever written: the file still learns its id.
        let mut skipped = sessions(Vec::new());
        skipped.last_id = 7;
        db.write(&skipped).expect("writes");
        db.close().expect("closes");
        let mut db = Db::open(&path).expect("reopens");
        assert_eq!(db.last_id().expect("reads"), 7);
        // An older last id never lowers it.
        let mut older = sessions(Vec::new());
        older.last_id = 2;
        db.write(&older).expect("writes");
        assert_eq!(db.last_id().expect("reads"), 7);
    }

    #[test]
    fn a_value_hotspotd_never_writes_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        let mut db = Db::open(&path).expect("opens");
        put(&mut db, 1, mac(1), running(1));
        db.conn
            .execute("UPDATE sessions SET started_at = 'yesterday'", [])
            .expect("edits");
        let error = db.load_all().expect_err("bad value");
        let StoreError::BadValue {
            table, key, field, ..
        } = &error
        else {
            panic!("{error}");
        };
        assert_eq!(
            (*table, key.as_str(), *field),
            ("sessions", "1", "started_at")
        );
        let message = error.to_string();
        assert!(message.contains("started_at = yesterday"), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
    }
}
