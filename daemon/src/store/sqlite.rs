//! The queries of the session database: sessions by id, the clients and the last save's
//! time, each turned from and into the store's types with every value checked. Blocking: only
//! the store thread calls it. Side effects: reads and writes the database.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike as _, SecondsFormat, Utc};
use hotspotd_common::Usage;
use rusqlite::{Connection, OptionalExtension as _, Row, TransactionBehavior, types::ToSql};

use super::{
    ClientState, ClientsSave, Loaded, PauseReason, SaveBatch, SavedMeta, SessionId, StoreError,
    StoredClient, StoredSession,
    schema::{self, fail},
};
use crate::{
    mac::MacAddr,
    sessions::data::{SessionData, SessionType},
};

const INSERT_SESSION: &str = "
INSERT INTO sessions (mac, provider, type, time_secs, data_mb, time_cons, data_cons,
    started_at, exp_days, down_mbits, up_mbits, use_global_speed, created_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";

const UPDATE_SESSION: &str = "
UPDATE sessions SET provider = ?2, type = ?3, time_secs = ?4, data_mb = ?5, time_cons = ?6,
    data_cons = ?7, started_at = ?8, exp_days = ?9, down_mbits = ?10, up_mbits = ?11,
    use_global_speed = ?12, created_at = ?13
WHERE id = ?1";

macro_rules! select_sessions {
    () => {
        "SELECT id, mac, provider, type, time_secs, data_mb, time_cons, data_cons, started_at,
            exp_days, down_mbits, up_mbits, use_global_speed, created_at
        FROM sessions"
    };
}
const SELECT_ALL_SESSIONS: &str = concat!(select_sessions!(), " ORDER BY id");
const SELECT_SESSION: &str = concat!(select_sessions!(), " WHERE id = ?1");

/// The session a client row names is looked up rather than trusted, so a session removed
/// while the batch was being built leaves `NULL` instead of failing the whole save on the
/// foreign key. A MAC twice in one batch keeps the last: one bad row must not stop every
/// periodic save from then on.
const INSERT_CLIENT: &str = "
INSERT OR REPLACE INTO clients (mac, state, pause_reason, session_id, up_bytes, up_packets,
    down_bytes, down_packets, up_local_bytes, down_local_bytes, up_dropped_bytes,
    down_dropped_bytes, dropped_packets, last_seen_jiffies)
VALUES (?1, ?2, ?3, (SELECT id FROM sessions WHERE id = ?4), ?5, ?6, ?7, ?8, ?9, ?10, ?11,
    ?12, ?13, ?14)";

const SELECT_CLIENTS: &str = "
SELECT mac, state, pause_reason, session_id, up_bytes, up_packets, down_bytes, down_packets,
    up_local_bytes, down_local_bytes, up_dropped_bytes, down_dropped_bytes, dropped_packets,
    last_seen_jiffies
FROM clients ORDER BY mac";

const SAVE_META: &str = "
INSERT OR REPLACE INTO saved_state (id, saved_at_wall, saved_at_mono_ns, boot_id, kernel_epoch)
VALUES (1, ?1, ?2, ?3, ?4)";

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
            .prepare_cached(SELECT_ALL_SESSIONS)
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
                "SELECT saved_at_wall, saved_at_mono_ns, boot_id, kernel_epoch FROM saved_state",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .optional()
            .map_err(self.fail(op))?
            .map(|row| self.read_meta(row))
            .transpose()?;
        Ok(Loaded {
            sessions,
            clients,
            meta,
        })
    }

    /// Stores a sold session, synced: a power loss must not take what a customer paid for.
    pub(super) fn insert(
        &mut self,
        mac: MacAddr,
        data: &SessionData,
    ) -> Result<SessionId, StoreError> {
        let values = SessionValues::new(data)?;
        let mac = mac.to_string();
        self.synced(|db| {
            db.conn
                .prepare_cached(INSERT_SESSION)
                .and_then(|mut statement| statement.execute(values.bind(&mac).as_slice()))
                .map_err(db.fail("insert a session"))?;
            Ok(db.conn.last_insert_rowid())
        })
    }

    /// A change of state: unsynced, made durable by the next batch.
    pub(super) fn update(&self, id: SessionId, data: &SessionData) -> Result<bool, StoreError> {
        let values = SessionValues::new(data)?;
        let changed = self
            .conn
            .prepare_cached(UPDATE_SESSION)
            .and_then(|mut statement| statement.execute(values.bind(&id).as_slice()))
            .map_err(self.fail("save a session"))?;
        Ok(changed == 1)
    }

    /// Writes the batch in one transaction whose commit is synced to disk: the periodic save
    /// is the point up to which a power loss loses nothing (rule 12), and syncing the WAL
    /// there also makes every cheaper, unsynced commit before it durable.
    pub(super) fn save_batch(&mut self, batch: &SaveBatch) -> Result<(), StoreError> {
        self.synced(|db| db.write_batch(batch))
    }

    /// Runs `write` with its commits synced to disk before they return.
    fn synced<T>(
        &mut self,
        write: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(self.fail("turn on syncing"))?;
        let written = write(self);
        if let Err(error) = self
            .conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(self.fail("turn off syncing"))
        {
            // Only slower from here on: every commit is synced.
            tracing::warn!(%error, "the session database stays in synchronous = FULL");
        }
        written
    }

    fn write_batch(&mut self, batch: &SaveBatch) -> Result<(), StoreError> {
        let op = "save a batch";
        let path = &self.path;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail(path, op))?;
        // An early return drops `tx`, which rolls the whole batch back.
        let mut missing = Vec::new();
        {
            let mut update = tx.prepare_cached(UPDATE_SESSION).map_err(fail(path, op))?;
            for (id, data) in &batch.sessions {
                let values = SessionValues::new(data)?;
                let changed = update
                    .execute(values.bind(id).as_slice())
                    .map_err(fail(path, op))?;
                if changed == 0 {
                    missing.push(*id);
                }
            }
            let clients = match &batch.clients {
                ClientsSave::All(clients) => {
                    tx.execute("DELETE FROM clients", [])
                        .map_err(fail(path, op))?;
                    clients
                }
                ClientsSave::Changed { changed, forget } => {
                    let mut delete = tx
                        .prepare_cached("DELETE FROM clients WHERE mac = ?1")
                        .map_err(fail(path, op))?;
                    for mac in forget {
                        delete.execute([mac.to_string()]).map_err(fail(path, op))?;
                    }
                    changed
                }
            };
            // INSERT OR REPLACE: a changed client's row is replaced whole.
            let mut insert = tx.prepare_cached(INSERT_CLIENT).map_err(fail(path, op))?;
            for client in clients {
                let values = ClientValues::new(client);
                insert
                    .execute(values.bind().as_slice())
                    .map_err(fail(path, op))?;
            }
            let meta = &batch.meta;
            let wall = to_sql_time("saved_at_wall", meta.saved_at_wall)?;
            let mono_ns = to_sql_int("saved_at_mono_ns", meta.saved_at_mono_ns)?;
            tx.prepare_cached(SAVE_META)
                .and_then(|mut statement| {
                    statement.execute((
                        wall,
                        mono_ns,
                        &meta.boot_id,
                        meta.kernel_epoch.cast_signed(),
                    ))
                })
                .map_err(fail(path, op))?;
        }
        tx.commit().map_err(fail(path, op))?;
        if !missing.is_empty() {
            tracing::warn!(
                ?missing,
                "saved sessions that are no longer in the database were skipped"
            );
        }
        Ok(())
    }

    /// Removes a session, synced: a power loss must not bring back what the operator removed.
    pub(super) fn remove(&mut self, id: SessionId) -> Result<bool, StoreError> {
        self.synced(|db| {
            let removed = db
                .conn
                .prepare_cached("DELETE FROM sessions WHERE id = ?1")
                .and_then(|mut statement| statement.execute([id]))
                .map_err(db.fail("remove a session"))?;
            Ok(removed == 1)
        })
    }

    pub(super) fn reload(
        &self,
        id: SessionId,
    ) -> Result<Option<(MacAddr, SessionData)>, StoreError> {
        let op = "reload a session";
        let mut statement = self
            .conn
            .prepare_cached(SELECT_SESSION)
            .map_err(self.fail(op))?;
        let mut rows = statement.query([id]).map_err(self.fail(op))?;
        let Some(row) = rows.next().map_err(self.fail(op))? else {
            return Ok(None);
        };
        let session = self.read_session(row)?;
        Ok(Some((session.mac, session.data)))
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
        let sql = self.fail("read a session");
        let id: SessionId = row.get(0).map_err(&sql)?;
        let bad = |field, value: &dyn ToString| StoreError::BadValue {
            path: self.path.clone(),
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
        let state = match (state.as_str(), pause_reason.as_deref()) {
            ("connected", None) => ClientState::Connected,
            ("disconnected", None) => ClientState::Disconnected,
            ("paused", Some("operator")) => ClientState::Paused(PauseReason::Operator),
            ("paused", Some("idle")) => ClientState::Paused(PauseReason::Idle),
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
        Ok(StoredClient {
            mac: mac.parse().map_err(|_| bad("mac", &mac))?,
            state,
            session_id: row.get(3).map_err(&sql)?,
            baseline,
        })
    }

    fn read_meta(
        &self,
        (wall, mono_ns, boot_id, kernel_epoch): (String, i64, String, i64),
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

    /// Parameters `?1` (the row's key: the MAC for an insert, the id for an update) to `?13`.
    fn bind<'k>(&'k self, key: &'k dyn ToSql) -> [&'k dyn ToSql; 13] {
        [
            key,
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
    counters: [i64; 10],
}

impl ClientValues {
    fn new(client: &StoredClient) -> Self {
        let (state, pause_reason) = match client.state {
            ClientState::Connected => ("connected", None),
            ClientState::Disconnected => ("disconnected", None),
            ClientState::Paused(PauseReason::Operator) => ("paused", Some("operator")),
            ClientState::Paused(PauseReason::Idle) => ("paused", Some("idle")),
        };
        let usage = &client.baseline;
        // The kernel's counters are u64 and wrap; only `wrapping_sub` ever compares them, so
        // their two's complement keeps every value exact where a range check would refuse
        // the top half.
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

    fn bind(&self) -> [&dyn ToSql; 14] {
        let [c0, c1, c2, c3, c4, c5, c6, c7, c8, c9] = &self.counters;
        [
            &self.mac,
            &self.state,
            &self.pause_reason,
            &self.session_id,
            c0,
            c1,
            c2,
            c3,
            c4,
            c5,
            c6,
            c7,
            c8,
            c9,
        ]
    }
}

/// RFC 3339 in UTC with nanoseconds, fixed width (`2027-01-15T08:00:00.123456789Z`), so the
/// text sorts as the time does and no precision is lost. RFC 3339 has four-digit years only;
/// a time outside them would be written but never read back.
fn to_sql_time(field: &'static str, time: DateTime<Utc>) -> Result<String, StoreError> {
    if (0..=9_999).contains(&time.year()) {
        Ok(time.to_rfc3339_opts(SecondsFormat::Nanos, true))
    } else {
        Err(StoreError::Unstorable {
            field,
            value: time.to_string(),
        })
    }
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.with_timezone(&Utc))
}

fn to_sql_int(field: &'static str, value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Unstorable {
        field,
        value: value.to_string(),
    })
}

/// SQLite stores NaN as NULL, which would come back as an error or a different number.
fn to_sql_real(field: &'static str, value: f64) -> Result<f64, StoreError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(StoreError::Unstorable {
            field,
            value: value.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
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

    #[test]
    fn every_field_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        let mut db = Db::open(&path).expect("opens");
        let mut expected = Vec::new();
        for (mac, data) in edge_sessions() {
            let id = db.insert(mac, &data).expect("inserts");
            expected.push(StoredSession { id, mac, data });
        }
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
            assert_eq!(
                db.reload(expected.id).expect("reloads"),
                Some((expected.mac, expected.data.clone()))
            );
        }
        assert_eq!(db.reload(9_999).expect("reloads"), None);

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
            let error = db.insert(mac(1), &data).expect_err(field);
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
        }
    }

    fn client(n: u32, state: ClientState, session_id: Option<SessionId>) -> StoredClient {
        let n64 = u64::from(n);
        StoredClient {
            mac: mac(n),
            state,
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
        }
    }

    /// Inserts `count` running sessions in one transaction: `Db::insert` syncs each one,
    /// which for thousands is seconds of fsync that the test is not about.
    fn seed(db: &mut Db, count: u32) -> Vec<SessionId> {
        let tx = db.conn.transaction().expect("begins");
        let ids = (0..count)
            .map(|n| {
                let data = running(n);
                let values = SessionValues::new(&data).expect("storable");
                tx.prepare_cached(INSERT_SESSION)
                    .expect("prepares")
                    .execute(values.bind(&mac(n).to_string()).as_slice())
                    .expect("inserts");
                tx.last_insert_rowid()
            })
            .collect();
        tx.commit().expect("commits");
        ids
    }

    #[test]
    fn a_batch_of_10000_is_saved_in_one_transaction() {
        const SESSIONS: u32 = 10_000;
        let dir = tempfile::tempdir().expect("temp dir");
        let mut db = Db::open(&dir.path().join("sessions.db")).expect("opens");
        let ids = seed(&mut db, SESSIONS);

        let mut batch = SaveBatch {
            sessions: ids
                .iter()
                .zip(0..)
                .map(|(&id, n)| {
                    let mut data = running(n);
                    data.time_cons += 30;
                    data.data_cons += 0.5;
                    (id, data)
                })
                .collect(),
            clients: ClientsSave::All(
                ids.iter()
                    .zip(0..)
                    .map(|(&id, n)| client(n, ClientState::Connected, Some(id)))
                    .collect(),
            ),
            meta: meta(1),
        };
        db.save_batch(&batch).expect("saves");
        let synchronous: i64 = db
            .conn
            .pragma_query_value(None, "synchronous", |row| row.get(0))
            .expect("synchronous");
        assert_eq!(synchronous, 1, "back to NORMAL after the synced batch");
        let loaded = db.load_all().expect("loads");
        let saved: Vec<_> = loaded
            .sessions
            .into_iter()
            .map(|s| (s.id, s.data))
            .collect();
        assert_eq!(saved, batch.sessions);
        assert_eq!(ClientsSave::All(loaded.clients), batch.clients);
        assert_eq!(loaded.meta, Some(batch.meta.clone()));

        // One unstorable value at the very end: nothing of the batch may be saved.
        let before = db.load_all().expect("loads");
        for (_, data) in &mut batch.sessions {
            data.time_cons += 30;
        }
        if let ClientsSave::All(clients) = &mut batch.clients {
            clients.truncate(10);
        }
        batch.meta = meta(2);
        batch.sessions.last_mut().expect("sessions").1.data_cons = f64::INFINITY;
        let error = db.save_batch(&batch).expect_err("unstorable");
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
        let first = db.insert(mac(1), &running(1)).expect("inserts");
        let second = db.insert(mac(2), &running(2)).expect("inserts");
        let clients = vec![
            client(1, ClientState::Connected, Some(first)),
            client(2, ClientState::Paused(PauseReason::Operator), Some(second)),
            client(3, ClientState::Paused(PauseReason::Idle), None),
            client(4, ClientState::Disconnected, None),
        ];
        let batch = SaveBatch {
            sessions: Vec::new(),
            clients: ClientsSave::All(clients.clone()),
            meta: meta(1),
        };
        db.save_batch(&batch).expect("saves");
        let loaded = db.load_all().expect("loads");
        assert_eq!(loaded.clients, clients);
        assert_eq!(loaded.meta, Some(meta(1)));

        // Removing a session clears the client's reference to it.
        assert!(db.remove(first).expect("removes"));
        let loaded = db.load_all().expect("loads");
        assert_eq!(loaded.clients[0].session_id, None);
        assert_eq!(loaded.clients[1].session_id, Some(second));

        // The next batch replaces the clients; a removed session neither fails the batch nor
        // comes back, a client naming it keeps no dangling id, and a MAC given twice keeps
        // its last row.
        let batch = SaveBatch {
            sessions: vec![(first, running(9)), (second, running(8))],
            clients: ClientsSave::All(vec![
                client(5, ClientState::Disconnected, None),
                client(5, ClientState::Connected, Some(first)),
            ]),
            meta: meta(2),
        };
        db.save_batch(&batch).expect("saves");
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
    fn a_save_of_what_changed_leaves_the_other_clients_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut db = Db::open(&dir.path().join("sessions.db")).expect("opens");
        let first = db.insert(mac(1), &running(1)).expect("inserts");
        let everyone = vec![
            client(1, ClientState::Connected, Some(first)),
            client(2, ClientState::Disconnected, None),
            client(3, ClientState::Paused(PauseReason::Idle), None),
        ];
        db.save_batch(&SaveBatch {
            sessions: Vec::new(),
            clients: ClientsSave::All(everyone.clone()),
            meta: meta(1),
        })
        .expect("saves");

        let mut paused = client(1, ClientState::Paused(PauseReason::Operator), Some(first));
        paused.baseline.up_bytes = 4_242;
        db.save_batch(&SaveBatch {
            sessions: vec![(first, running(7))],
            clients: ClientsSave::Changed {
                changed: vec![paused.clone(), client(4, ClientState::Disconnected, None)],
                forget: vec![mac(2)],
            },
            meta: meta(2),
        })
        .expect("saves");
        let loaded = db.load_all().expect("loads");
        assert_eq!(
            loaded.clients,
            vec![
                paused,
                everyone[2].clone(),
                client(4, ClientState::Disconnected, None)
            ]
        );
        assert_eq!(loaded.sessions[0].data, running(7));
        assert_eq!(loaded.meta, Some(meta(2)));
    }

    #[test]
    fn ids_are_never_reused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut db = Db::open(&dir.path().join("sessions.db")).expect("opens");
        let ids: Vec<_> = (0..3)
            .map(|n| db.insert(mac(n), &running(n)).expect("inserts"))
            .collect();
        assert!(db.remove(ids[2]).expect("removes"));
        assert!(!db.remove(ids[2]).expect("removes"));
        let next = db.insert(mac(3), &running(3)).expect("inserts");
        assert!(next > ids[2], "{next} after {ids:?}");
    }

    #[test]
    fn a_value_hotspotd_never_writes_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        let mut db = Db::open(&path).expect("opens");
        let id = db.insert(mac(1), &running(1)).expect("inserts");
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
            ("sessions", id.to_string().as_str(), "started_at")
        );
        let message = error.to_string();
        assert!(message.contains("started_at = yesterday"), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
    }
}
