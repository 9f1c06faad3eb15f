//! The schema of the session database and the way to it: the look that refuses, untouched, a
//! file hotspotd does not understand; the versioned migrations; the connection's settings.
//! Blocking. Side effects: reads the file, creates it (mode 0600) when there is none, and
//! migrates it.
//!
//! Durability: WAL with `synchronous = NORMAL`, and `FULL` for the periodic save's batch. A
//! single session's save (a change of state) is a write to the WAL without an fsync; the
//! batch's commit syncs the WAL, and with it every commit before it. So a power loss loses at
//! most what changed since the last batch, one save interval, in the customer's favour
//! (sessions.md rule 12), and never corrupts the file; a crash of the daemon alone loses
//! nothing. `FULL` throughout would add an fsync to every change of state, which at a busy
//! hotspot on flash storage is what the store thread would spend its time on.

use std::{
    fs, io,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use super::StoreError;

/// `PRAGMA application_id` of every hotspotd database: "HSPD" in ASCII. A file with another
/// one belongs to someone else.
pub const APPLICATION_ID: i32 = 0x4853_5044;

/// The schema this hotspotd writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: u32 = 10;

/// Version 1: the sessions, every field of `SessionData` (sessions.md "The record").
/// AUTOINCREMENT because ids are handed to portals and operators: a plain rowid would give a
/// removed newest session's id to the next one.
const SCHEMA_V1: &str = "
CREATE TABLE sessions (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    mac              TEXT    NOT NULL CHECK (length(mac) = 17),
    provider         TEXT    NOT NULL,
    type             INTEGER NOT NULL CHECK (type IN (0, 1, 2)),
    time_secs        INTEGER NOT NULL CHECK (time_secs >= 0),
    data_mb          REAL    NOT NULL,
    time_cons        INTEGER NOT NULL CHECK (time_cons >= 0),
    data_cons        REAL    NOT NULL,
    started_at       TEXT,
    exp_days         INTEGER CHECK (exp_days >= 0),
    down_mbits       INTEGER NOT NULL,
    up_mbits         INTEGER NOT NULL,
    use_global_speed INTEGER NOT NULL CHECK (use_global_speed IN (0, 1)),
    created_at       TEXT    NOT NULL
);
CREATE INDEX sessions_by_mac ON sessions (mac);
";

/// Version 2: what each client was doing and the kernel's counters already billed, and when
/// that was, so a restarted daemon resumes clients and bills only new traffic.
const SCHEMA_V2: &str = "
CREATE TABLE clients (
    mac                TEXT    NOT NULL PRIMARY KEY CHECK (length(mac) = 17),
    state              TEXT    NOT NULL CHECK (state IN ('connected', 'paused', 'disconnected')),
    pause_reason       TEXT    CHECK (pause_reason IN ('operator', 'idle')),
    session_id         INTEGER REFERENCES sessions (id) ON DELETE SET NULL,
    up_bytes           INTEGER NOT NULL,
    up_packets         INTEGER NOT NULL,
    down_bytes         INTEGER NOT NULL,
    down_packets       INTEGER NOT NULL,
    up_local_bytes     INTEGER NOT NULL,
    down_local_bytes   INTEGER NOT NULL,
    up_dropped_bytes   INTEGER NOT NULL,
    down_dropped_bytes INTEGER NOT NULL,
    dropped_packets    INTEGER NOT NULL,
    last_seen_jiffies  INTEGER NOT NULL,
    CHECK ((state = 'paused') = (pause_reason IS NOT NULL))
) WITHOUT ROWID;
CREATE INDEX clients_by_session ON clients (session_id);
CREATE TABLE saved_state (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    saved_at_wall    TEXT    NOT NULL,
    saved_at_mono_ns INTEGER NOT NULL,
    boot_id          TEXT    NOT NULL,
    kernel_epoch     INTEGER NOT NULL
);
";

/// Version 3: how far the daemon's wall clock was ahead of the system's at the last save
/// (`crate::clock`: nonzero while the system clock was not set yet, after booting without a
/// real-time clock), so that a restart before NTP syncs carries on with the same clock.
const SCHEMA_V3: &str = "
ALTER TABLE saved_state ADD COLUMN clock_ahead_ns INTEGER NOT NULL DEFAULT 0;
";

/// Version 4: each client's lifetime totals (what `hotspotctl clients` shows), so a restart
/// goes on counting from them instead of from zero (a file of version 3 has none: its
/// clients start from 0); and when each client's row was saved, since a change of state
/// saves only the clients it changed (0: at the last save's time).
const SCHEMA_V4: &str = "
ALTER TABLE clients ADD COLUMN total_up_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE clients ADD COLUMN total_up_packets INTEGER NOT NULL DEFAULT 0;
ALTER TABLE clients ADD COLUMN total_down_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE clients ADD COLUMN total_down_packets INTEGER NOT NULL DEFAULT 0;
ALTER TABLE clients ADD COLUMN total_local_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE clients ADD COLUMN total_dropped_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE clients ADD COLUMN total_dropped_packets INTEGER NOT NULL DEFAULT 0;
ALTER TABLE clients ADD COLUMN saved_at_mono_ns INTEGER NOT NULL DEFAULT 0;
";

/// Version 5: vouchers (docs/vouchers.md). A code is kept only as its HMAC under a key kept
/// apart from this file; the plan is a session's fields as `session add` takes them.
/// `session_id` is a plain reference, not a foreign key: a voucher names the session it
/// became, and that session's row keeps the seed's fields alone; a removed session leaves the
/// reference dangling, which reads as used up.
const SCHEMA_V5: &str = "
CREATE TABLE vouchers (
    id               INTEGER PRIMARY KEY,
    code_hash        BLOB    NOT NULL UNIQUE CHECK (length(code_hash) = 32),
    provider         TEXT    NOT NULL,
    type             INTEGER NOT NULL CHECK (type IN (0, 1, 2)),
    time_secs        INTEGER NOT NULL CHECK (time_secs >= 0),
    data_mb          REAL    NOT NULL,
    exp_days         INTEGER CHECK (exp_days >= 0),
    down_mbits       INTEGER NOT NULL,
    up_mbits         INTEGER NOT NULL,
    use_global_speed INTEGER NOT NULL CHECK (use_global_speed IN (0, 1)),
    max_devices      INTEGER NOT NULL CHECK (max_devices >= 1),
    valid_until      TEXT,
    state            TEXT    NOT NULL CHECK (state IN ('unused', 'in_use', 'revoked')),
    mac              TEXT    CHECK (mac IS NULL OR length(mac) = 17),
    session_id       INTEGER,
    created_at       TEXT    NOT NULL,
    redeemed_at      TEXT
);
";

/// Version 6: free trials (docs/trials.md): each device's last one, so a restart still knows
/// who had one within the reset window. Entries past the window are deleted.
const SCHEMA_V6: &str = "
CREATE TABLE trials (
    mac        TEXT NOT NULL PRIMARY KEY CHECK (length(mac) = 17),
    granted_at TEXT NOT NULL
) WITHOUT ROWID;
";

/// Version 7, device slots: the devices that share a voucher besides the one that redeemed it first
/// (`mac`), as MACs separated by spaces.
const SCHEMA_V7: &str = "
ALTER TABLE vouchers ADD COLUMN devices TEXT NOT NULL DEFAULT '';
";

/// Version 8, the usage history and the sales (docs/usage.md): bytes and connected seconds
/// per hour, client and session (`session_id` 0: none), hours folded into days after
/// `history.hourly_days`; every session sold with its plan and price (thousandths of
/// `currency`); a voucher's price. Neither refers to `sessions`: they outlive the sessions they count.
const SCHEMA_V8: &str = "
CREATE TABLE usage_hourly (
    hour_start     INTEGER NOT NULL,
    mac            TEXT    NOT NULL CHECK (length(mac) = 17),
    session_id     INTEGER NOT NULL CHECK (session_id >= 0),
    up_bytes       INTEGER NOT NULL CHECK (up_bytes >= 0),
    down_bytes     INTEGER NOT NULL CHECK (down_bytes >= 0),
    connected_secs INTEGER NOT NULL CHECK (connected_secs >= 0),
    PRIMARY KEY (hour_start, mac, session_id)
) WITHOUT ROWID;
CREATE TABLE usage_daily (
    day_start      INTEGER NOT NULL,
    mac            TEXT    NOT NULL CHECK (length(mac) = 17),
    session_id     INTEGER NOT NULL CHECK (session_id >= 0),
    up_bytes       INTEGER NOT NULL CHECK (up_bytes >= 0),
    down_bytes     INTEGER NOT NULL CHECK (down_bytes >= 0),
    connected_secs INTEGER NOT NULL CHECK (connected_secs >= 0),
    PRIMARY KEY (day_start, mac, session_id)
) WITHOUT ROWID;
CREATE TABLE sales (
    session_id   INTEGER PRIMARY KEY,
    mac          TEXT    NOT NULL CHECK (length(mac) = 17),
    provider     TEXT    NOT NULL,
    type         INTEGER NOT NULL CHECK (type IN (0, 1, 2)),
    time_secs    INTEGER NOT NULL CHECK (time_secs >= 0),
    data_mb      REAL    NOT NULL,
    price_milli  INTEGER CHECK (price_milli >= 0),
    currency     TEXT    NOT NULL,
    sold_at      TEXT    NOT NULL,
    sold_at_secs INTEGER NOT NULL
);
CREATE INDEX sales_by_time ON sales (sold_at_secs);
ALTER TABLE vouchers ADD COLUMN price_milli INTEGER CHECK (price_milli >= 0);
";

/// Version 9, RADIUS (docs/radius.md): the sessions a RADIUS server sold, with what their
/// accounting needs (the client's byte totals when they started, their Acct-Session-Id), and
/// the accounting requests not yet answered, in the order they are sent (`radius::spool`).
const SCHEMA_V9: &str = "
CREATE TABLE radius_sessions (
    session_id      INTEGER PRIMARY KEY,
    user_name       TEXT    NOT NULL,
    acct_session_id TEXT    NOT NULL UNIQUE,
    mac             TEXT    NOT NULL,
    ip              TEXT    NOT NULL DEFAULT '',
    interim_secs    INTEGER NOT NULL,
    base_up         INTEGER,
    base_down       INTEGER,
    started_at      INTEGER
);
CREATE TABLE radius_spool (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    attributes BLOB    NOT NULL,
    queued_at  INTEGER NOT NULL
);
";

/// Version 10, sessions that ended are history (docs/usage.md, "Ended sessions"): how and
/// when each ended, so a start loads only the live ones (`sessions_live`) and lists, paging
/// and pruning find the ended ones by time (`sessions_ended`); a voucher remembers how its
/// session ended, which outlives the session's pruned row. Rows of an older schema have
/// `ended` NULL: the first start loads them and ends those that are over, as it always did.
const SCHEMA_V10: &str = "
ALTER TABLE sessions ADD COLUMN ended TEXT CHECK (ended IN ('consumed', 'expired'));
ALTER TABLE sessions ADD COLUMN ended_at_secs INTEGER;
CREATE INDEX sessions_live ON sessions (id) WHERE ended IS NULL;
CREATE INDEX sessions_ended ON sessions (ended_at_secs) WHERE ended IS NOT NULL;
ALTER TABLE vouchers ADD COLUMN session_end TEXT CHECK (session_end IN ('consumed', 'expired'));
";

/// `MIGRATIONS[n]` takes the schema from version `n` to `n + 1`; a new database runs them
/// all. A released step is never edited: a change is a new step.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [
    SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6, SCHEMA_V7, SCHEMA_V8,
    SCHEMA_V9, SCHEMA_V10,
];

/// How long a write waits for a lock someone else holds (an operator's `sqlite3` shell)
/// before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// What a file holds, as far as its header tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Found {
    /// No file, an empty one, or an SQLite database with nothing in it: nothing to lose.
    Nothing,
    /// A hotspotd database at this schema version.
    Schema(u32),
}

/// The header fields that say whose a database is.
struct Header {
    application_id: i32,
    user_version: i64,
    /// Tables, indexes, views and triggers.
    objects: i64,
}

/// Looks at `path` read-only and refuses what it does not understand; then opens it for
/// writing, turns on WAL and migrates it to [`SCHEMA_VERSION`].
pub(super) fn open(path: &Path) -> Result<Connection, StoreError> {
    if inspect(path)? == Found::Nothing {
        create_private(path)?;
    }
    // No CREATE flag: the file exists by now, and must not be made anew if it vanished.
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| StoreError::Open {
        path: path.to_owned(),
        source,
    })?;
    configure(&conn, path)?;
    migrate(&mut conn, path)?;
    Ok(conn)
}

fn configure(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(fail(path, "set the busy timeout"))?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(fail(path, "turn on WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        // Some filesystems (network ones, those without shared memory) cannot do WAL; the
        // rollback journal is slower but just as safe.
        tracing::warn!(path = %path.display(), mode, "the session database cannot use WAL here");
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(fail(path, "set synchronous"))?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(fail(path, "turn on foreign keys"))?;
    Ok(())
}

/// Brings the schema to [`SCHEMA_VERSION`] in one transaction: it is all done or not at all.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(fail(path, "start the schema upgrade"))?;
    // Looked at again under the write lock: the read-only look came before it.
    let header = read_header(&tx).map_err(fail(path, "read the header"))?;
    let from = match classify(path, &header)? {
        Found::Nothing => 0,
        Found::Schema(version) => version,
    };
    if from == SCHEMA_VERSION {
        return Ok(());
    }
    let migrate_error = |source| StoreError::Migrate {
        path: path.to_owned(),
        from,
        source,
    };
    for step in &MIGRATIONS[from as usize..] {
        tx.execute_batch(step).map_err(migrate_error)?;
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)
        .map_err(migrate_error)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(migrate_error)?;
    tx.commit().map_err(migrate_error)?;
    if from == 0 {
        tracing::info!(path = %path.display(), "created the session database");
    } else {
        tracing::info!(path = %path.display(), from, to = SCHEMA_VERSION, "upgraded the session database");
    }
    Ok(())
}

/// Looks at what is at `path` without writing to it.
fn inspect(path: &Path) -> Result<Found, StoreError> {
    match fs::metadata(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Found::Nothing),
        Err(source) => {
            return Err(StoreError::Io {
                path: path.to_owned(),
                source,
            });
        }
        Ok(metadata) if metadata.len() == 0 => return Ok(Found::Nothing),
        Ok(_) => {}
    }
    // Read-only: SQLite cannot change a file it opened so, so a refused file stays byte for
    // byte as it was. It still reads a WAL left by a crash, so our own header is current; but
    // for a file in WAL mode it creates an empty `-wal` and a `-shm` beside it, which a refusal
    // takes away again, so the folder is left as it was found.
    let left = Companions::look(path);
    let found = look(path);
    if found.is_err() {
        left.remove_new(path);
    }
    found
}

/// Reads the header of the database at `path` and checks its pages.
fn look(path: &Path) -> Result<Found, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| StoreError::Open {
        path: path.to_owned(),
        source,
    })?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(fail(path, "set the busy timeout"))?;
    let header = read_header(&conn).map_err(fail(path, "read the header"))?;
    let found = classify(path, &header)?;
    if let Found::Schema(_) = found {
        // Finds damage now, with a message that says what to do, rather than at the first
        // save. Cheap at this size: a few thousand sessions are a few MB.
        let report: String = conn
            .pragma_query_value(None, "quick_check", |row| row.get(0))
            .map_err(fail(path, "check the file"))?;
        if report != "ok" {
            return Err(StoreError::Corrupt {
                path: path.to_owned(),
                reason: report,
            });
        }
    }
    Ok(found)
}

/// Which of a database's `-wal` and `-shm` exist.
struct Companions {
    wal: bool,
    shm: bool,
}

impl Companions {
    fn look(path: &Path) -> Self {
        Self {
            wal: companion(path, "-wal").exists(),
            shm: companion(path, "-shm").exists(),
        }
    }

    /// Removes the `-wal` and `-shm` that a read-only look created: a WAL that was not there
    /// and is still empty (another program writing the file would have put frames in it), and
    /// the `-shm` that came with it.
    fn remove_new(&self, path: &Path) {
        let wal = companion(path, "-wal");
        let wal_created = !self.wal && fs::metadata(&wal).is_ok_and(|metadata| metadata.len() == 0);
        if wal_created && fs::remove_file(&wal).is_ok() && !self.shm {
            let _ = fs::remove_file(companion(path, "-shm"));
        }
    }
}

/// `path` with `suffix` appended: SQLite's name for a companion file.
fn companion(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn read_header(conn: &Connection) -> rusqlite::Result<Header> {
    conn.query_row(
        "SELECT (SELECT application_id FROM pragma_application_id),
                (SELECT user_version FROM pragma_user_version),
                (SELECT count(*) FROM sqlite_schema)",
        [],
        |row| {
            Ok(Header {
                application_id: row.get(0)?,
                user_version: row.get(1)?,
                objects: row.get(2)?,
            })
        },
    )
}

/// Decides from the header whether the file is ours, and at which version.
fn classify(path: &Path, header: &Header) -> Result<Found, StoreError> {
    if header.application_id == APPLICATION_ID {
        if header.user_version > i64::from(SCHEMA_VERSION) {
            return Err(StoreError::TooNew {
                path: path.to_owned(),
                version: header.user_version,
            });
        }
        if let Ok(version @ 1..) = u32::try_from(header.user_version) {
            return Ok(Found::Schema(version));
        }
    } else if header.application_id == 0 && header.user_version == 0 && header.objects == 0 {
        return Ok(Found::Nothing);
    }
    Err(StoreError::Foreign {
        path: path.to_owned(),
        application_id: header.application_id,
        user_version: header.user_version,
    })
}

/// Creates the database file readable by its owner only: it holds clients' MACs and what
/// they bought. An existing (empty) file is left as it is.
fn create_private(path: &Path) -> Result<(), StoreError> {
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|source| StoreError::Io {
            path: path.to_owned(),
            source,
        })
}

/// Turns an SQLite error into the store's: damage gets the message that says what to do.
pub(super) fn fail<'p>(
    path: &'p Path,
    op: &'static str,
) -> impl Fn(rusqlite::Error) -> StoreError + 'p {
    move |source| match source.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreError::Corrupt {
            path: path.to_owned(),
            reason: source.to_string(),
        },
        _ => StoreError::Sql { op, source },
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, os::unix::fs::PermissionsExt as _};

    use chrono::DateTime;

    use super::*;
    use crate::{
        mac::MacAddr,
        sessions::data::{SessionData, SessionType},
        store::{
            ClientState, SavedMeta, Store, StoreHandle, StoredClient, StoredSession,
            ledger::Changes, sqlite::Db,
        },
    };

    /// Every file in `dir` and its bytes: a refused database must leave all of them as they
    /// were, and add none (no `-wal`, no `-shm`).
    fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        fs::read_dir(dir)
            .expect("lists")
            .map(|entry| {
                let entry = entry.expect("entry");
                let name = entry.file_name().to_string_lossy().into_owned();
                (name, fs::read(entry.path()).expect("reads"))
            })
            .collect()
    }

    /// Opens `path` with the store, expecting a refusal, and checks nothing changed.
    fn refused(dir: &Path, path: &Path) -> StoreError {
        let before = snapshot(dir);
        let error = Store::open(path)
            .map(|_: StoreHandle| ())
            .expect_err("refused");
        assert_eq!(
            snapshot(dir),
            before,
            "{error}: the files must be untouched"
        );
        let message = error.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        error
    }

    fn sqlite_file(path: &Path, sql: &str) {
        let conn = Connection::open(path).expect("creates");
        conn.execute_batch(sql).expect("writes");
        conn.close().expect("closes");
    }

    fn pragma(path: &Path, name: &str) -> i64 {
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("opens");
        conn.pragma_query_value(None, name, |row| row.get(0))
            .expect("pragma")
    }

    #[test]
    fn a_new_file_gets_the_current_schema_privately() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        let conn = open(&path).expect("creates");
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .expect("journal_mode");
        assert_eq!(mode, "wal");
        let synchronous: i64 = conn
            .pragma_query_value(None, "synchronous", |row| row.get(0))
            .expect("synchronous");
        assert_eq!(synchronous, 1, "NORMAL");
        let foreign_keys: bool = conn
            .pragma_query_value(None, "foreign_keys", |row| row.get(0))
            .expect("foreign_keys");
        assert!(foreign_keys);
        conn.close().expect("closes");
        assert_eq!(pragma(&path, "application_id"), i64::from(APPLICATION_ID));
        assert_eq!(pragma(&path, "user_version"), i64::from(SCHEMA_VERSION));
        let permissions = fs::metadata(&path).expect("exists").permissions();
        assert_eq!(permissions.mode() & 0o777, 0o600);
    }

    #[test]
    fn an_empty_file_or_database_is_taken() {
        let dir = tempfile::tempdir().expect("temp dir");
        let empty = dir.path().join("empty.db");
        fs::write(&empty, b"").expect("writes");
        open(&empty).expect("an empty file holds nothing to lose");
        let blank = dir.path().join("blank.db");
        // What `sqlite3 blank.db 'VACUUM'` leaves: a valid database with nothing in it.
        sqlite_file(&blank, "CREATE TABLE t (x); DROP TABLE t; VACUUM;");
        open(&blank).expect("an empty database holds nothing to lose");
        assert_eq!(pragma(&blank, "user_version"), i64::from(SCHEMA_VERSION));
    }

    /// The first schema, as hotspotd wrote it, frozen here: the code's copy may not change,
    /// and this one shows what an old file on a box looks like.
    const FIRST_SCHEMA: &str = "
        PRAGMA application_id = 1213419588;
        PRAGMA user_version = 1;
        PRAGMA journal_mode = WAL;
        CREATE TABLE sessions (
            id               INTEGER PRIMARY KEY AUTOINCREMENT,
            mac              TEXT    NOT NULL CHECK (length(mac) = 17),
            provider         TEXT    NOT NULL,
            type             INTEGER NOT NULL CHECK (type IN (0, 1, 2)),
            time_secs        INTEGER NOT NULL CHECK (time_secs >= 0),
            data_mb          REAL    NOT NULL,
            time_cons        INTEGER NOT NULL CHECK (time_cons >= 0),
            data_cons        REAL    NOT NULL,
            started_at       TEXT,
            exp_days         INTEGER CHECK (exp_days >= 0),
            down_mbits       INTEGER NOT NULL,
            up_mbits         INTEGER NOT NULL,
            use_global_speed INTEGER NOT NULL CHECK (use_global_speed IN (0, 1)),
            created_at       TEXT    NOT NULL
        );
        CREATE INDEX sessions_by_mac ON sessions (mac);
        INSERT INTO sessions VALUES
            (1, 'aa:bb:cc:dd:ee:01', 'cli', 0, 3600, 0.0, 1200, 0.0,
             '2027-01-15T08:00:00.250000000Z', NULL, 5, 2, 0, '2027-01-15T07:00:00.000000000Z'),
            (2, 'aa:bb:cc:dd:ee:02', 'voucher', 1, 0, 512.75, 0, 100.125,
             NULL, 30, 10, 5, 1, '2027-01-15T07:30:00.000000001Z'),
            (4, 'aa:bb:cc:dd:ee:01', 'plugin', 2, 60, 0.5, 60, 0.5,
             '2027-01-16T00:00:00.000000000Z', 1, 1, 1, 0, '2027-01-15T23:59:59.999999999Z');
    ";

    fn first_schema_sessions() -> Vec<StoredSession> {
        let time = |text| DateTime::parse_from_rfc3339(text).expect("valid").to_utc();
        let mac = |last| MacAddr([0xaa, 0xbb, 0xcc, 0xdd, 0xee, last]);
        vec![
            StoredSession {
                id: 1,
                mac: mac(1),
                data: SessionData {
                    provider: "cli".to_owned(),
                    kind: SessionType::Time,
                    time_secs: 3_600,
                    data_mb: 0.0,
                    time_cons: 1_200,
                    data_cons: 0.0,
                    started_at: Some(time("2027-01-15T08:00:00.25Z")),
                    exp_days: None,
                    down_mbits: 5,
                    up_mbits: 2,
                    use_global_speed: false,
                    created_at: time("2027-01-15T07:00:00Z"),
                },
            },
            StoredSession {
                id: 2,
                mac: mac(2),
                data: SessionData {
                    provider: "voucher".to_owned(),
                    kind: SessionType::Data,
                    time_secs: 0,
                    data_mb: 512.75,
                    time_cons: 0,
                    data_cons: 100.125,
                    started_at: None,
                    exp_days: Some(30),
                    down_mbits: 10,
                    up_mbits: 5,
                    use_global_speed: true,
                    created_at: time("2027-01-15T07:30:00.000000001Z"),
                },
            },
            StoredSession {
                id: 4,
                mac: mac(1),
                data: SessionData {
                    provider: "plugin".to_owned(),
                    kind: SessionType::TimeOrData,
                    time_secs: 60,
                    data_mb: 0.5,
                    time_cons: 60,
                    data_cons: 0.5,
                    started_at: Some(time("2027-01-16T00:00:00Z")),
                    exp_days: Some(1),
                    down_mbits: 1,
                    up_mbits: 1,
                    use_global_speed: false,
                    created_at: time("2027-01-15T23:59:59.999999999Z"),
                },
            },
        ]
    }

    #[test]
    fn the_first_schema_is_migrated_with_its_sessions() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        sqlite_file(&path, FIRST_SCHEMA);

        let mut db = Db::open(&path).expect("migrates");
        let loaded = db.load_all().expect("loads");
        assert_eq!(loaded.sessions, first_schema_sessions());
        assert!(loaded.clients.is_empty());
        assert_eq!(loaded.meta, None);
        // The new tables work, and ids go on after the highest ever handed out.
        let client = StoredClient {
            mac: loaded.sessions[0].mac,
            state: ClientState::Connected,
            pause_reason: None,
            session_id: Some(1),
            baseline: hotspotd_common::Usage::default(),
            totals: crate::accounting::Totals::default(),
            saved_at_mono_ns: 0,
        };
        let meta = SavedMeta {
            saved_at_wall: DateTime::from_timestamp(1_800_000_000, 0).expect("valid"),
            saved_at_mono_ns: 1,
            boot_id: "boot".to_owned(),
            kernel_epoch: 1,
            clock_ahead_ns: 0,
        };
        assert_eq!(db.last_id().expect("reads"), 4);
        let sold = StoredSession {
            id: 5,
            ..loaded.sessions[0].clone()
        };
        db.write(&Changes {
            ended: Vec::new(),
            usage: crate::store::usage::UsageBatch::default(),
            sales: Vec::new(),
            generation: 1,
            full: false,
            sessions: vec![sold.clone()],
            removed: Vec::new(),
            clients: Some((vec![client.clone()], Some(meta.clone()))),
            replace_clients: true,
            last_id: 5,
            vouchers: Vec::new(),
            trials: Vec::new(),
            trials_removed: Vec::new(),
        })
        .expect("saves");
        let loaded = db.load_all().expect("loads");
        assert_eq!(loaded.sessions.last(), Some(&sold));
        assert_eq!((loaded.clients, loaded.meta), (vec![client], Some(meta)));
        db.close().expect("closes");
        assert_eq!(pragma(&path, "user_version"), i64::from(SCHEMA_VERSION));
        assert_eq!(pragma(&path, "application_id"), i64::from(APPLICATION_ID));
    }

    /// A version 2 file, as a box running it saved it: its last save is kept, with the clock
    /// taken as set.
    #[test]
    fn the_second_schema_keeps_its_last_save() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        sqlite_file(
            &path,
            &format!(
                "{FIRST_SCHEMA} {SCHEMA_V2} PRAGMA user_version = 2;
                 INSERT INTO saved_state VALUES
                    (1, '2027-01-15T08:00:00.000000000Z', 42, 'boot', 7);"
            ),
        );
        let db = Db::open(&path).expect("migrates");
        let meta = db.load_all().expect("loads").meta.expect("the last save");
        assert_eq!(
            meta,
            SavedMeta {
                saved_at_wall: DateTime::from_timestamp(1_800_000_000, 0).expect("valid"),
                saved_at_mono_ns: 42,
                boot_id: "boot".to_owned(),
                kernel_epoch: 7,
                clock_ahead_ns: 0,
            }
        );
        db.close().expect("closes");
        assert_eq!(pragma(&path, "user_version"), i64::from(SCHEMA_VERSION));
    }

    /// A version 3 file with a client: its baseline is kept and its lifetime totals, which
    /// version 3 did not keep, start from zero.
    #[test]
    fn the_third_schema_keeps_its_clients_and_starts_their_totals_at_zero() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        sqlite_file(
            &path,
            &format!(
                "{FIRST_SCHEMA} {SCHEMA_V2} {SCHEMA_V3} PRAGMA user_version = 3;
                 INSERT INTO clients VALUES
                    ('02:00:00:00:00:01', 'connected', NULL, 1, 10, 1, 20, 2, 0, 0, 0, 0, 0, 5);"
            ),
        );
        let db = Db::open(&path).expect("migrates");
        let loaded = db.load_all().expect("loads");
        let client = loaded.clients.first().expect("the client");
        assert_eq!(
            (client.baseline.up_bytes, client.baseline.down_bytes),
            (10, 20)
        );
        assert_eq!(client.session_id, Some(1));
        assert_eq!(client.totals, crate::accounting::Totals::default());
        db.close().expect("closes");
        assert_eq!(pragma(&path, "user_version"), i64::from(SCHEMA_VERSION));
    }

    /// A version 4 file with a session: kept, and an empty voucher table beside it that takes
    /// vouchers.
    #[test]
    fn the_fourth_schema_gets_an_empty_voucher_table() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        sqlite_file(
            &path,
            &format!("{FIRST_SCHEMA} {SCHEMA_V2} {SCHEMA_V3} {SCHEMA_V4} PRAGMA user_version = 4;"),
        );
        let mut db = Db::open(&path).expect("migrates");
        let loaded = db.load_all().expect("loads");
        assert_eq!(loaded.sessions, first_schema_sessions());
        assert!(loaded.vouchers.is_empty());
        let voucher = crate::store::tests::voucher(1);
        let mut ledger = crate::store::ledger::Ledger::new(loaded, db.last_id().expect("id"));
        ledger.put_vouchers(vec![voucher.clone()]).expect("takes");
        db.write(&ledger.changes(false)).expect("writes");
        assert_eq!(db.load_all().expect("loads").vouchers, vec![voucher]);
        db.close().expect("closes");
        assert_eq!(pragma(&path, "user_version"), i64::from(SCHEMA_VERSION));
    }

    /// A version 5 file with a voucher: kept, and an empty trial table beside it that takes
    /// trials and forgets them.
    #[test]
    fn the_fifth_schema_gets_an_empty_trial_table() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        sqlite_file(
            &path,
            &format!(
                "{FIRST_SCHEMA} {SCHEMA_V2} {SCHEMA_V3} {SCHEMA_V4} {SCHEMA_V5} PRAGMA user_version = 5;"
            ),
        );
        let mut db = Db::open(&path).expect("migrates");
        let voucher = crate::store::tests::voucher(1);
        let mut ledger = crate::store::ledger::Ledger::new(
            db.load_all().expect("loads"),
            db.last_id().expect("id"),
        );
        ledger.put_vouchers(vec![voucher.clone()]).expect("takes");
        db.write(&ledger.changes(false)).expect("writes");
        let loaded = db.load_all().expect("loads");
        assert_eq!(loaded.sessions, first_schema_sessions());
        assert!(loaded.trials.is_empty());
        let start = DateTime::parse_from_rfc3339("2027-01-15T08:00:00Z")
            .expect("valid")
            .to_utc();
        let trial = |n, secs: i64| crate::trials::Trial {
            mac: crate::store::tests::mac(n),
            granted_at: start + chrono::TimeDelta::seconds(secs),
        };
        let mut ledger = crate::store::ledger::Ledger::new(loaded, db.last_id().expect("id"));
        ledger.put_trial(trial(1, 0)).expect("takes");
        ledger.put_trial(trial(2, 10)).expect("takes");
        db.write(&ledger.changes(false)).expect("writes");
        ledger.written(ledger.generation());
        assert_eq!(
            db.load_all().expect("loads").trials,
            vec![trial(1, 0), trial(2, 10)]
        );
        ledger.forget_trials_before(start + chrono::TimeDelta::seconds(5));
        db.write(&ledger.changes(false)).expect("writes");
        let loaded = db.load_all().expect("loads");
        assert_eq!(loaded.trials, vec![trial(2, 10)]);
        assert_eq!(loaded.vouchers, vec![voucher]);
        db.close().expect("closes");
        assert_eq!(pragma(&path, "user_version"), i64::from(SCHEMA_VERSION));
    }

    /// A version 6 file with a voucher in use: its voucher comes back with no other device,
    /// and devices can be written.
    #[test]
    fn the_sixth_schema_gets_device_slots() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        sqlite_file(
            &path,
            &format!(
                "{FIRST_SCHEMA} {SCHEMA_V2} {SCHEMA_V3} {SCHEMA_V4} {SCHEMA_V5} {SCHEMA_V6}
                 INSERT INTO vouchers (id, code_hash, provider, type, time_secs, data_mb,
                     down_mbits, up_mbits, use_global_speed, max_devices, state, mac,
                     session_id, created_at)
                 VALUES (3, zeroblob(32), 'voucher', 0, 60, 0, 1, 1, 0, 2, 'in_use',
                     '02:00:00:00:00:01', 1, '2027-01-01T00:00:00Z');
                 PRAGMA user_version = 6;"
            ),
        );
        let mut db = Db::open(&path).expect("migrates");
        let loaded = db.load_all().expect("loads");
        assert_eq!(loaded.vouchers.len(), 1);
        assert!(loaded.vouchers[0].devices.is_empty());
        let mut voucher = loaded.vouchers[0].clone();
        voucher.devices = vec![crate::store::tests::mac(7), crate::store::tests::mac(8)];
        let mut ledger = crate::store::ledger::Ledger::new(loaded, db.last_id().expect("id"));
        ledger.put_vouchers(vec![voucher.clone()]).expect("takes");
        db.write(&ledger.changes(false)).expect("writes");
        assert_eq!(db.load_all().expect("loads").vouchers, vec![voucher]);
        db.close().expect("closes");
        assert_eq!(pragma(&path, "user_version"), i64::from(SCHEMA_VERSION));
    }

    #[test]
    fn the_seventh_schema_gets_an_empty_usage_history_and_sales() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        sqlite_file(
            &path,
            &format!(
                "{FIRST_SCHEMA} {SCHEMA_V2} {SCHEMA_V3} {SCHEMA_V4} {SCHEMA_V5} {SCHEMA_V6}
                 {SCHEMA_V7} PRAGMA user_version = 7;"
            ),
        );
        let db = Db::open(&path).expect("migrates");
        db.close().expect("closes");
        assert_eq!(pragma(&path, "user_version"), i64::from(SCHEMA_VERSION));
        let conn = Connection::open(&path).expect("opens");
        for table in ["usage_hourly", "usage_daily", "sales"] {
            let rows: i64 = conn
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                    row.get(0)
                })
                .expect(table);
            assert_eq!(rows, 0, "{table}");
        }
    }

    #[test]
    fn a_failed_migration_changes_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        // A table in the way of version 2's: the upgrade fails half way and must roll back.
        sqlite_file(
            &path,
            &format!("{FIRST_SCHEMA} CREATE TABLE saved_state (x);"),
        );
        let error = Db::open(&path).map(drop).expect_err("fails");
        assert!(
            matches!(error, StoreError::Migrate { from: 1, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("left at version 1"), "{error}");
        assert_eq!(pragma(&path, "user_version"), 1);
        let conn = Connection::open(&path).expect("opens");
        let clients: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'clients'",
                [],
                |row| row.get(0),
            )
            .expect("counts");
        assert_eq!(
            clients, 0,
            "the clients table of the failed step was rolled back"
        );
    }

    #[test]
    fn a_foreign_database_is_refused_untouched() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("other.db");
        sqlite_file(
            &path,
            "CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('alice');",
        );
        let error = refused(dir.path(), &path);
        assert!(
            matches!(
                error,
                StoreError::Foreign {
                    application_id: 0,
                    user_version: 0,
                    ..
                }
            ),
            "{error}"
        );
        let message = error.to_string();
        assert!(message.contains("is not a hotspotd database"), "{message}");
        assert!(message.contains("set store.sqlite_path"), "{message}");

        // Another program's marked database, even an empty one, is not ours to take.
        let fossil = dir.path().join("fossil.db");
        sqlite_file(&fossil, "PRAGMA application_id = 252006673;");
        let error = refused(dir.path(), &fossil);
        assert!(
            matches!(
                error,
                StoreError::Foreign {
                    application_id: 252_006_673,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused_untouched() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        // xorshift: noise without a dependency, the same every run.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let noise: Vec<u8> = (0..8_192)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect();
        fs::write(&path, noise).expect("writes");
        let error = refused(dir.path(), &path);
        assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
        let message = error.to_string();
        assert!(message.contains("is damaged"), "{message}");
        assert!(message.contains("left it untouched"), "{message}");
        assert!(
            message.contains(&format!("mv {0} {0}.damaged", path.display())),
            "{message}"
        );
        assert!(message.contains("restore a backup"), "{message}");
    }

    #[test]
    fn a_damaged_hotspotd_database_is_refused_untouched() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        let mut db = Db::open(&path).expect("opens");
        db.write(&Changes {
            ended: Vec::new(),
            usage: crate::store::usage::UsageBatch::default(),
            sales: Vec::new(),
            generation: 1,
            full: false,
            sessions: vec![StoredSession {
                id: 1,
                mac: crate::store::tests::mac(1),
                data: crate::store::tests::running(1),
            }],
            removed: Vec::new(),
            clients: None,
            replace_clients: true,
            last_id: 1,
            vouchers: Vec::new(),
            trials: Vec::new(),
            trials_removed: Vec::new(),
        })
        .expect("writes");
        db.close().expect("closes");
        // A bad sector in the sessions table's page; the file is in WAL mode, whose companion
        // files a look would create.
        let mut bytes = fs::read(&path).expect("reads");
        bytes[4_096..8_192].fill(0xff);
        fs::write(&path, bytes).expect("writes");
        let error = refused(dir.path(), &path);
        assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
    }

    #[test]
    fn a_newer_schema_is_refused_untouched() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        sqlite_file(
            &path,
            &format!(
                "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {};
                 CREATE TABLE sessions_next (id INTEGER PRIMARY KEY);",
                SCHEMA_VERSION + 1
            ),
        );
        let error = refused(dir.path(), &path);
        assert!(
            matches!(error, StoreError::TooNew { version, .. } if version == i64::from(SCHEMA_VERSION) + 1),
            "{error}"
        );
        assert!(error.to_string().contains("newer hotspotd"), "{error}");
    }

    #[test]
    fn a_database_left_by_a_crash_opens_with_its_last_commit() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sessions.db");
        let mut db = Db::open(&path).expect("opens");
        let session = StoredSession {
            id: 1,
            mac: crate::store::tests::mac(1),
            data: crate::store::tests::running(1),
        };
        db.write(&Changes {
            ended: Vec::new(),
            usage: crate::store::usage::UsageBatch::default(),
            sales: Vec::new(),
            generation: 1,
            full: false,
            sessions: vec![session.clone()],
            removed: Vec::new(),
            clients: None,
            replace_clients: true,
            last_id: 1,
            vouchers: Vec::new(),
            trials: Vec::new(),
            trials_removed: Vec::new(),
        })
        .expect("writes");
        // What a power cut leaves: the file and its WAL, never checkpointed, and no `-shm`.
        let crashed = tempfile::tempdir().expect("temp dir");
        let copy = crashed.path().join("sessions.db");
        for suffix in ["", "-wal"] {
            fs::copy(
                dir.path().join(format!("sessions.db{suffix}")),
                crashed.path().join(format!("sessions.db{suffix}")),
            )
            .expect("copies");
        }
        assert!(
            fs::metadata(crashed.path().join("sessions.db-wal"))
                .expect("WAL")
                .len()
                > 0,
            "the commit is still in the WAL only"
        );
        db.close().expect("closes");
        let db = Db::open(&copy).expect("reopens");
        assert_eq!(db.load_all().expect("loads").sessions, vec![session]);
    }
}
