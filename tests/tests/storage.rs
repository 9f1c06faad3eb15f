//! End to end: the database's storage fails under a running daemon while a client with a
//! running session moves real traffic through the gateway — the filesystem fills up, turns
//! read-only, or the file is deleted — and a damaged file at start. The daemon goes on
//! enforcing and accounting in memory and selling sessions, `hotspotctl status` and
//! `/metrics` show the store degraded, and once storage is back the file holds everything; a
//! deleted file is made again; a damaged one is refused, left byte for byte as it was, with a
//! message that says what to do. Needs root (namespaces, eBPF, mounts, loop devices); CI runs
//! as root.
//!
//! The database is read with SQLite directly, never through the daemon: what is checked is
//! what the next start would find. Each test prints how long the store took to notice the
//! fault and to have everything on disk once storage was back (docs/reliability.md).

use std::{
    collections::BTreeMap,
    fs,
    net::{IpAddr, SocketAddr},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use hotspotd::{client::ApiClient, metrics};
use hotspotd_tests::{
    Client, Daemon, Ext4Disk, INTERNET_V4, LAN_IFACE, Lan, Tmpfs, UdpEcho, ip_bytes_udp,
    udp_ping_pong, wait_for,
};
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;

/// One MB of `data_mb`: `accounting.bytes_per_mb`'s default.
const MB: u64 = 1_000_000;
/// Payload of each ping-pong datagram; 1,028 bytes at the IP layer over IPv4.
const PAYLOAD: usize = 1_000;
/// Saves every second, so a test sees the store react in seconds, not half minutes.
const SAVE_INTERVAL_SECS: &str = "1";
/// How long the daemon may take to show what it decided on its own (polls every 100 ms, saves
/// every second, retries a second after a failed attempt when new saves come in). Seconds
/// more than needed: a loaded machine can only delay it.
const SETTLE: Duration = Duration::from_secs(10);
/// What the kernel may add to known traffic (a neighbour solicitation, say), MB.
const TOLERANCE_MB: f64 = 0.001;

fn addr(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

#[expect(
    clippy::cast_precision_loss,
    reason = "test traffic is megabytes, far below 2^52 bytes"
)]
fn round_trips_mb(round_trips: u64) -> f64 {
    (round_trips * 2 * ip_bytes_udp(PAYLOAD, false)) as f64 / MB as f64
}

fn id_of(session: &Value) -> Result<i64> {
    session["id"]
        .as_i64()
        .with_context(|| format!("a session has an integer id: {session}"))
}

fn data_cons(session: &Value) -> f64 {
    session["data_cons"].as_f64().unwrap_or(f64::NAN)
}

/// Starts the daemon on the database `db`, saving every second.
fn start(lan: &Lan, db: &Path) -> Result<Daemon> {
    let db = db.to_str().context("the database path is UTF-8")?;
    Daemon::start(
        lan,
        &[
            ("HOTSPOTD__STORE__SQLITE_PATH", db),
            ("HOTSPOTD__STORE__SAVE_INTERVAL_SECS", SAVE_INTERVAL_SECS),
        ],
    )
}

/// One session row as it is in the file.
#[derive(Clone, Copy, Debug, PartialEq)]
struct StoredRow {
    id: i64,
    data_cons: f64,
}

/// The sessions in the file, by id, read the way the next start reads them.
fn on_disk(db: &Path) -> Result<BTreeMap<i64, StoredRow>> {
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("open {}", db.display()))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let mut statement = conn.prepare("SELECT id, data_cons FROM sessions ORDER BY id")?;
    let rows = statement
        .query_map([], |row| {
            Ok(StoredRow {
                id: row.get(0)?,
                data_cons: row.get(1)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows.into_iter().map(|row| (row.id, row)).collect())
}

/// The clients in the file: MAC and the session each runs.
fn clients_on_disk(db: &Path) -> Result<Vec<(String, Option<i64>)>> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut statement = conn.prepare("SELECT mac, session_id FROM clients ORDER BY mac")?;
    let rows = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// `storage` of `hotspotd status`.
fn storage(daemon: &Daemon) -> Result<Value> {
    Ok(daemon.status()?["storage"].clone())
}

/// Waits until `hotspotctl status` shows the store `state`; returns its `storage`.
fn wait_for_storage(daemon: &Daemon, state: &str) -> Result<Value> {
    let mut last = Value::Null;
    let reached = wait_for(SETTLE, || {
        last = storage(daemon).unwrap_or(Value::Null);
        last["state"] == state
    });
    ensure!(reached, "the store never became {state}: {last}");
    Ok(last)
}

/// Whether `/metrics` says the store is degraded (`hotspotd_store_degraded`).
fn metrics_say_degraded(daemon: &Daemon) -> Result<bool> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let text = runtime.block_on(ApiClient::new(daemon.socket()).get_text("/metrics"))?;
    let samples = metrics::parse(&text).map_err(anyhow::Error::msg)?;
    samples
        .into_iter()
        .find(|(series, _)| series == "hotspotd_store_degraded")
        .map(|(_, value)| value > 0.5)
        .context("/metrics has no hotspotd_store_degraded")
}

/// A client with a running session and an echo in the internet to move traffic with.
struct Paying<'l> {
    client: &'l Client,
    echo: UdpEcho,
    id: i64,
    /// Round trips so far, each 2 × 1,028 billable bytes.
    round_trips: u64,
}

impl<'l> Paying<'l> {
    /// Sells `client` 100 MB at the global speed and connects it.
    fn new(lan: &'l Lan, daemon: &Daemon, client: &'l Client) -> Result<Self> {
        let session = daemon.add_session(
            &client.mac,
            &[
                "--type",
                "data",
                "--data-mb",
                "100",
                "--global-speed",
                "--connect",
            ],
        )?;
        ensure!(session["state"] == "running", "it runs: {session}");
        Ok(Self {
            client,
            echo: UdpEcho::start(&lan.internet, addr(INTERNET_V4, 0))?,
            id: id_of(&session)?,
            round_trips: 0,
        })
    }

    /// Moves `round_trips` more ping-pongs through the gate: an error if one is lost, so the
    /// session is enforced as running.
    fn traffic(&mut self, round_trips: u64) -> Result<()> {
        udp_ping_pong(
            &self.client.netns,
            self.echo.addr(),
            PAYLOAD,
            usize::try_from(round_trips)?,
        )
        .context("the client's traffic passes the gate")?;
        self.round_trips += round_trips;
        Ok(())
    }

    /// Waits until the daemon has billed all the traffic so far; returns its `data_cons`.
    fn billed(&self, daemon: &Daemon) -> Result<f64> {
        let expected = round_trips_mb(self.round_trips);
        let mut last = Value::Null;
        let billed = wait_for(SETTLE, || {
            last = daemon.session(self.id).unwrap_or(Value::Null);
            data_cons(&last) >= expected - TOLERANCE_MB
        });
        ensure!(billed, "{expected} MB never billed: {last}");
        ensure!(
            data_cons(&last) <= expected + TOLERANCE_MB,
            "billed more than the {expected} MB of traffic: {last}"
        );
        ensure!(last["state"] == "running", "the session runs: {last}");
        let row = daemon.client(&self.client.mac)?;
        ensure!(
            billable(&row) == self.round_trips * 2 * ip_bytes_udp(PAYLOAD, false),
            "hotspotctl clients shows all the client's traffic, across restarts too: {row}"
        );
        Ok(data_cons(&last))
    }
}

/// A client row's billable bytes, up and down: its lifetime totals.
fn billable(row: &Value) -> u64 {
    row["up_bytes"].as_u64().unwrap_or(0) + row["down_bytes"].as_u64().unwrap_or(0)
}

impl Paying<'_> {
    /// Waits until `hotspotctl clients` shows every byte of the traffic so far (a restarted
    /// daemon shows the lifetime totals once it has restored them, at once).
    fn counted(&self, daemon: &Daemon) -> Result<()> {
        let expected = self.round_trips * 2 * ip_bytes_udp(PAYLOAD, false);
        let mut row = Value::Null;
        let counted = wait_for(SETTLE, || {
            row = daemon.client(&self.client.mac).unwrap_or(Value::Null);
            billable(&row) == expected
        });
        ensure!(
            counted,
            "hotspotctl clients does not show {expected} bytes: {row}"
        );
        Ok(())
    }
}

/// Waits until the file holds `sessions` and session `id` with at least `data_cons` MB (what
/// the daemon showed once the traffic had stopped); returns how long that took.
fn wait_until_on_disk(db: &Path, sessions: &[i64], id: i64, billed: f64) -> Result<Duration> {
    let started = Instant::now();
    let mut last = Err(anyhow::anyhow!("not read yet"));
    let saved = wait_for(SETTLE, || {
        last = on_disk(db);
        last.as_ref().is_ok_and(|rows| {
            sessions.iter().all(|id| rows.contains_key(id))
                && rows.get(&id).is_some_and(|row| {
                    row.data_cons >= billed - 1e-9 && row.data_cons <= billed + TOLERANCE_MB
                })
        })
    });
    ensure!(
        saved,
        "{} never held sessions {sessions:?} with {billed} MB used by {id}: {last:?}",
        db.display()
    );
    Ok(started.elapsed())
}

/// While storage fails: the client's traffic still passes and is billed, the status and the
/// metrics say the store is degraded, and a session is still sold (queued behind the running
/// one) under the next id. The file does not have any of it. Returns the new session's id.
fn while_failing(daemon: &Daemon, paying: &mut Paying<'_>, db: &Path, fault: &str) -> Result<i64> {
    let failed_at = Instant::now();
    paying.traffic(300)?;
    let degraded = wait_for_storage(daemon, "degraded")?;
    eprintln!(
        "{fault}: storage degraded {:.1} s after the fault: {degraded}",
        failed_at.elapsed().as_secs_f64()
    );
    ensure!(
        degraded["error"]
            .as_str()
            .is_some_and(|error| !error.is_empty())
            && degraded["since"].is_string()
            && degraded["next_retry"].is_string(),
        "degraded says why, since when and when it tries again: {degraded}"
    );
    let table = daemon.ctl(&["status"])?;
    let table = String::from_utf8_lossy(&table.stdout);
    ensure!(
        table.contains("DEGRADED") && table.contains("pending saves"),
        "hotspotctl status shows it: {table}"
    );
    ensure!(
        metrics_say_degraded(daemon)?,
        "/metrics shows it: hotspotd_store_degraded"
    );

    paying.traffic(200)?;
    let billed = paying.billed(daemon)?;
    let sold_at = Instant::now();
    let sold = daemon.add_session(
        &paying.client.mac,
        &["--type", "time", "--time-secs", "600", "--global-speed"],
    )?;
    eprintln!(
        "{fault}: a session sold while degraded was answered in {} ms: {sold}",
        sold_at.elapsed().as_millis()
    );
    let sold = id_of(&sold)?;
    ensure!(sold == paying.id + 1, "the next id: {sold}");
    ensure!(
        daemon.session(sold)?["state"] == "available",
        "queued behind the running session"
    );
    let retried = wait_for(SETTLE, || {
        storage(daemon).is_ok_and(|storage| {
            storage["failed_attempts"].as_u64() >= Some(3)
                && storage["pending_saves"].as_u64() >= Some(2)
        })
    });
    ensure!(retried, "saves are retried and kept: {}", storage(daemon)?);
    let stale = on_disk(db)?;
    ensure!(
        !stale.contains_key(&sold)
            && stale
                .get(&paying.id)
                .is_some_and(|row| row.data_cons < billed - TOLERANCE_MB),
        "the fault was real: the file has the sale or the latest use ({billed} MB): {stale:?}"
    );
    Ok(sold)
}

/// Once storage is back: status ok, `/metrics` 0, and the file holds both sessions with the
/// latest use, all within seconds; prints how many.
fn once_back(
    daemon: &Daemon,
    paying: &Paying<'_>,
    sold: i64,
    db: &Path,
    fault: &str,
    back: Instant,
) -> Result<()> {
    wait_for_storage(daemon, "ok")?;
    let ok_after = back.elapsed();
    let billed = paying.billed(daemon)?;
    wait_until_on_disk(db, &[paying.id, sold], paying.id, billed)?;
    let saved_after = back.elapsed();
    eprintln!(
        "{fault}: storage back: status ok after {:.1} s, {billed} MB and the sale on disk after {:.1} s",
        ok_after.as_secs_f64(),
        saved_after.as_secs_f64()
    );
    ensure!(!metrics_say_degraded(daemon)?, "/metrics shows it ok");
    let storage = storage(daemon)?;
    ensure!(
        storage["pending_saves"] == 0 && storage["error"].is_null(),
        "nothing waits: {storage}"
    );
    // Once each, not once per retry.
    let log = daemon.log();
    for said in [
        "saving to the session database failed",
        "the session database can be written again",
    ] {
        ensure!(
            log.matches(said).count() == 1,
            "'{said}' is logged once:\n{log}"
        );
    }
    Ok(())
}

#[test]
fn a_full_filesystem_loses_nothing_and_is_written_once_there_is_room() -> Result<()> {
    let lan = Lan::new(1)?;
    let disk = Tmpfs::mount(4 * 1024 * 1024)?;
    let db = disk.path().join("sessions.db");
    let daemon = start(&lan, &db)?;
    let mut paying = Paying::new(&lan, &daemon, &lan.clients[0])?;
    paying.traffic(100)?;
    let billed = paying.billed(&daemon)?;
    wait_until_on_disk(&db, &[paying.id], paying.id, billed)?;

    let filler = disk.fill()?;
    let sold = while_failing(&daemon, &mut paying, &db, "full")?;
    let error = storage(&daemon)?["error"].clone();
    ensure!(
        error.as_str().is_some_and(|error| error.contains("full")),
        "the error says the disk is full: {error}"
    );

    fs::remove_file(&filler)?;
    once_back(&daemon, &paying, sold, &db, "full", Instant::now())
}

#[test]
fn a_stop_while_the_disk_is_full_leaves_the_kernel_to_bill_what_was_not_saved() -> Result<()> {
    let lan = Lan::new(1)?;
    let disk = Tmpfs::mount(4 * 1024 * 1024)?;
    let db = disk.path().join("sessions.db");
    let mut daemon = start(&lan, &db)?;
    let mut paying = Paying::new(&lan, &daemon, &lan.clients[0])?;
    paying.traffic(100)?;
    let billed = paying.billed(&daemon)?;
    wait_until_on_disk(&db, &[paying.id], paying.id, billed)?;

    let filler = disk.fill()?;
    paying.traffic(300)?;
    wait_for_storage(&daemon, "degraded")?;
    paying.billed(&daemon)?;
    let status = daemon.terminate()?;
    ensure!(status.success(), "a stop: {status}");
    let log = daemon.log();
    ensure!(
        log.contains("stopping with changes the disk did not take"),
        "the stop says what it kept:\n{log}"
    );
    // As after a crash, the gate stays and the kernel goes on serving and counting.
    let attached = lan
        .gateway
        .run(|| hotspotd::bpf::attached_programs(LAN_IFACE))??;
    ensure!(attached.len() == 2, "the gate stays attached: {attached:?}");
    paying.traffic(200)?;

    fs::remove_file(&filler)?;
    daemon.restart(&lan)?;
    // The file had 100 round trips; the kernel's counters the other 500.
    let billed = paying.billed(&daemon)?;
    wait_until_on_disk(&db, &[paying.id], paying.id, billed)?;
    eprintln!("stopped while full, started with room: {billed} MB billed, all on disk");
    Ok(())
}

#[test]
fn a_filesystem_turned_read_only_loses_nothing_and_is_written_once_repaired() -> Result<()> {
    let lan = Lan::new(1)?;
    let disk = Ext4Disk::new(32 * 1024 * 1024)?;
    let db = disk.path().join("sessions.db");
    let daemon = start(&lan, &db)?;
    let mut paying = Paying::new(&lan, &daemon, &lan.clients[0])?;
    paying.traffic(100)?;
    let billed = paying.billed(&daemon)?;
    wait_until_on_disk(&db, &[paying.id], paying.id, billed)?;

    disk.fail()?;
    let sold = while_failing(&daemon, &mut paying, &db, "read-only")?;

    // Only possible once the daemon has let go of the file: it must not hold a broken
    // filesystem open.
    let repairing = Instant::now();
    disk.repair()?;
    eprintln!(
        "unmounted, checked and mounted again in {:.1} s",
        repairing.elapsed().as_secs_f64()
    );
    once_back(&daemon, &paying, sold, &db, "read-only", Instant::now())
}

#[test]
fn a_deleted_database_is_made_again_with_everything_and_a_restart_loses_nothing() -> Result<()> {
    let lan = Lan::new(1)?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("sessions.db");
    let daemon = start(&lan, &db)?;
    let mut paying = Paying::new(&lan, &daemon, &lan.clients[0])?;
    let queued = id_of(&daemon.add_session(
        &paying.client.mac,
        &["--type", "time", "--time-secs", "600", "--global-speed"],
    )?)?;
    paying.traffic(100)?;
    let billed = paying.billed(&daemon)?;
    wait_until_on_disk(&db, &[paying.id, queued], paying.id, billed)?;

    for suffix in ["", "-wal", "-shm"] {
        let path = dir.path().join(format!("sessions.db{suffix}"));
        fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
    }
    let deleted = Instant::now();
    paying.traffic(300)?;
    ensure!(
        wait_for(SETTLE, || db.exists()),
        "{} was not made again",
        db.display()
    );
    let recreated_after = deleted.elapsed();
    let billed = paying.billed(&daemon)?;
    wait_until_on_disk(&db, &[paying.id, queued], paying.id, billed)?;
    eprintln!(
        "deleted database: made again after {:.1} s, everything on it after {:.1} s",
        recreated_after.as_secs_f64(),
        deleted.elapsed().as_secs_f64()
    );
    let clients = clients_on_disk(&db)?;
    ensure!(
        clients == vec![(paying.client.mac.clone(), Some(paying.id))],
        "the new file has the client and what it runs: {clients:?}"
    );
    let log = daemon.log();
    ensure!(
        log.matches("was deleted while hotspotd ran").count() == 1,
        "the deletion is logged once:\n{log}"
    );
    ensure!(
        !log.contains("saving to the session database failed")
            && storage(&daemon)?["state"] == "ok",
        "no save was lost on the way, so the store never degraded:\n{log}"
    );

    // A stop and a new start of another daemon: a stop leaves the kernel's state, but the
    // harness removes the stopped daemon's pins and the new one has a pin folder of its own,
    // so all the new daemon knows is in the file.
    let before = daemon.sessions()?;
    let status = daemon.stop()?;
    ensure!(status.success(), "a clean stop: {status}");
    let daemon = start(&lan, &db)?;
    let after = daemon.sessions()?;
    let summary = |sessions: &[Value]| -> Vec<(Option<i64>, f64)> {
        sessions
            .iter()
            .map(|session| (session["id"].as_i64(), data_cons(session)))
            .collect()
    };
    ensure!(
        summary(&after) == summary(&before),
        "the restart lost something: {before:?} then {after:?}"
    );
    ensure!(
        daemon.session(paying.id)?["state"] == "running",
        "the client's session runs again"
    );
    paying.traffic(10)?;
    Ok(())
}

/// Every file in `dir` and its bytes.
fn snapshot(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    fs::read_dir(dir)?
        .map(|entry| {
            let entry = entry?;
            Ok((
                entry.file_name().to_string_lossy().into_owned(),
                fs::read(entry.path())?,
            ))
        })
        .collect()
}

/// Starts the daemon on `db`, expecting it to refuse: a non-zero exit, a message that names
/// the file and says what to do, and every file in `db`'s folder as it was (no `-wal`, no
/// `-shm` added).
fn refused(lan: &Lan, db: &Path) -> Result<()> {
    let dir = db.parent().context("the database has a folder")?;
    let before = snapshot(dir)?;
    let path = db.to_str().context("the database path is UTF-8")?;
    let (status, log) =
        Daemon::start_expecting_exit(lan, &[("HOTSPOTD__STORE__SQLITE_PATH", path)])?;
    ensure!(!status.success(), "hotspotd exits non-zero: {status}");
    for says in [
        format!("{path} is damaged"),
        "left it untouched".to_owned(),
        format!("mv {path} {path}.damaged"),
        "restore a backup".to_owned(),
    ] {
        ensure!(
            log.contains(&says),
            "the error does not say '{says}':\n{log}"
        );
    }
    let after = snapshot(dir)?;
    let changed: Vec<&String> = before
        .keys()
        .chain(after.keys())
        .filter(|name| before.get(*name) != after.get(*name))
        .collect();
    ensure!(changed.is_empty(), "{changed:?} changed:\n{log}");
    Ok(())
}

#[test]
fn a_damaged_database_is_refused_at_start_and_left_as_it_was() -> Result<()> {
    let lan = Lan::new(1)?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("sessions.db");
    // A real database with a session, then a bad sector: its second page (the sessions
    // table's) overwritten.
    let daemon = start(&lan, &db)?;
    daemon.add_session(
        &lan.clients[0].mac,
        &["--type", "time", "--time-secs", "600", "--global-speed"],
    )?;
    let status = daemon.stop()?;
    ensure!(status.success(), "a clean stop: {status}");
    let mut bytes = fs::read(&db)?;
    ensure!(bytes.len() >= 3 * 4_096, "{} bytes", bytes.len());
    bytes[4_096..8_192].fill(0xff);
    fs::write(&db, &bytes)?;
    refused(&lan, &db)?;

    // Not a database at all.
    let noise: Vec<u8> = (0..16_384_u32)
        .map(|n| u8::try_from(n.wrapping_mul(2_654_435_761) >> 24).unwrap_or(0))
        .collect();
    fs::write(&db, noise)?;
    refused(&lan, &db)
}

/// A row out of the range the rules work on — written by hand or by another program, which
/// skips the daemon's validation — is set aside at start: listed by `status`, left in the
/// file, never loaded into arithmetic that would abort every start. A time of 10^16 s once
/// panicked the expiry's arithmetic at every start: a crash loop.
#[test]
fn an_out_of_range_row_is_set_aside_and_the_rest_is_served() -> Result<()> {
    let lan = Lan::new(1)?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("sessions.db");
    let mac = lan.clients[0].mac.clone();
    let daemon = start(&lan, &db)?;
    let spoiled = id_of(&daemon.add_session(
        &mac,
        &[
            "--type",
            "time",
            "--time-secs",
            "600",
            "--exp-days",
            "1",
            "--global-speed",
            "--connect",
        ],
    )?)?;
    let kept = id_of(&daemon.add_session(
        &mac,
        &["--type", "data", "--data-mb", "5", "--global-speed"],
    )?)?;
    ensure!(daemon.stop()?.success(), "a clean stop");

    let connection = Connection::open(&db)?;
    let changed = connection.execute(
        "UPDATE sessions SET time_secs = 10000000000000000 WHERE id = ?1",
        [spoiled],
    )?;
    ensure!(changed == 1, "the row to spoil is there");
    drop(connection);

    let daemon = start(&lan, &db)?;
    let status = daemon.status()?;
    let set_aside = status["sessions_set_aside"]
        .as_array()
        .context("status lists the sessions set aside")?;
    ensure!(
        set_aside.len() == 1
            && set_aside[0]["id"] == spoiled
            && set_aside[0]["reason"]
                .as_str()
                .is_some_and(|reason| reason.contains("time_secs")),
        "the spoiled row is listed with its reason: {status}"
    );
    ensure!(
        daemon.log().contains("was set aside"),
        "the log says so:\n{}",
        daemon.log()
    );
    ensure!(
        daemon.session(kept)?["state"] == "running",
        "the client goes on with the session that is left: {:?}",
        daemon.sessions()?
    );
    let text = String::from_utf8(daemon.ctl(&["status"])?.stdout)?;
    ensure!(
        text.contains(&format!(
            "set aside:               session {spoiled} of {mac}"
        )),
        "hotspotctl status shows it:\n{text}"
    );
    let rows = on_disk(&db)?;
    ensure!(
        rows.contains_key(&spoiled),
        "the row stays in the file: {rows:?}"
    );
    Ok(())
}

/// A client's byte counts are lifetime totals: a crash, a reboot (the kernel's counters gone)
/// and a clean stop each start the next run from them, not from zero or from the last save.
#[test]
fn a_clients_totals_survive_crashes_reboots_and_stops() -> Result<()> {
    let lan = Lan::new(1)?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("sessions.db");
    let mut daemon = start(&lan, &db)?;
    let mut paying = Paying::new(&lan, &daemon, &lan.clients[0])?;
    paying.traffic(100)?;
    let billed = paying.billed(&daemon)?;
    wait_until_on_disk(&db, &[paying.id], paying.id, billed)?;

    // A crash after more traffic than the file has: the kernel's counters hold the rest.
    paying.traffic(50)?;
    daemon.kill()?;
    daemon.restart(&lan)?;
    paying.counted(&daemon)?;

    // A reboot: nothing in the kernel, the totals come from the file alone.
    let billed = paying.billed(&daemon)?;
    wait_until_on_disk(&db, &[paying.id], paying.id, billed)?;
    daemon.kill()?;
    daemon.remove_kernel_state()?;
    daemon.restart(&lan)?;
    paying.counted(&daemon)?;
    paying.traffic(25)?;
    paying.counted(&daemon)?;

    // A clean stop and a start.
    ensure!(daemon.terminate()?.success(), "a clean stop");
    daemon.restart(&lan)?;
    paying.counted(&daemon)?;
    paying.traffic(25)?;
    paying.billed(&daemon)?;
    Ok(())
}
