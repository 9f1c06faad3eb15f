//! End to end: sessions that ended are history (docs/usage.md, "Ended sessions"). They leave
//! the daemon's memory once saved, a start loads only the live ones, `GET /v1/sessions` and
//! `hotspotctl sessions` list the live ones first and then the history from the database, a
//! page at a time, and the history is pruned after `history.daily_days`. Needs root.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, Result, ensure};
use hotspotd_tests::{
    Daemon, Lan,
    http::{Answer, exchange, listing, request},
    process::ProcessSample,
    wait_for,
};
use serde_json::Value;

fn get(daemon: &Daemon, target: &str) -> Result<Answer> {
    exchange(daemon.socket(), &request("GET", target, &[], b""))
}

/// The page's sessions and the total the header gives.
fn page(daemon: &Daemon, target: &str) -> Result<(Vec<Value>, u64)> {
    listing(daemon.socket(), target)
}

/// Sessions the daemon holds in memory (`status`).
fn held(daemon: &Daemon) -> Result<u64> {
    daemon.status()?["sessions"]
        .as_u64()
        .context("status has sessions")
}

fn database(daemon: &Daemon) -> Result<PathBuf> {
    Ok(daemon
        .socket()
        .parent()
        .context("the socket's folder")?
        .join("hotspotd.sqlite"))
}

const SAVE_EVERY_SECOND: (&str, &str) = ("HOTSPOTD__STORE__SAVE_INTERVAL_SECS", "1");

/// Twenty one-second sessions, each on a client of its own, connected: they run out, are
/// saved and leave memory, and are listed from the database after the one live session.
#[test]
fn ended_sessions_leave_memory_and_are_listed_after_the_live_ones() -> Result<()> {
    let lan = Lan::new(1)?;
    let mut daemon = Daemon::start(&lan, &[SAVE_EVERY_SECOND])?;
    let live = daemon.add_session(
        "02:00:00:00:01:00",
        &["--type", "time", "--time-secs", "3600", "--global-speed"],
    )?;
    for n in 1..=20 {
        let mac = format!("02:00:00:00:00:{n:02x}");
        let added = daemon.ctl(&[
            "session",
            "add",
            "--mac",
            &mac,
            "--type",
            "time",
            "--time-secs",
            "1",
            "--global-speed",
            "--connect",
        ])?;
        ensure!(added.status.success(), "{added:?}");
    }
    ensure!(
        wait_for(Duration::from_secs(15), || held(&daemon)
            .is_ok_and(|held| held == 1)),
        "the ended sessions are still held: status says {:?}",
        held(&daemon)
    );
    clients_with_nothing_are_forgotten(&daemon)?;
    let (all, total) = page(&daemon, "/v1/sessions")?;
    ensure!(total == 21 && all.len() == 21, "{total}: {all:?}");
    ensure!(
        all[0]["id"] == live["id"],
        "the live one comes first: {all:?}"
    );
    ensure!(
        all[1..].iter().all(|row| row["state"] == "consumed"
            && row["time_cons"] == 1
            && row["ended_at"].is_string()),
        "the rest are history, with their last record: {all:?}"
    );
    // Pages together are the whole list.
    let mut paged = Vec::new();
    for offset in (0..25).step_by(5) {
        let (rows, total) = page(&daemon, &format!("/v1/sessions?offset={offset}&limit=5"))?;
        ensure!(total == 21, "offset {offset}: {total}");
        paged.extend(rows.into_iter().map(|row| row["id"].clone()));
    }
    let ids: Vec<Value> = all.iter().map(|row| row["id"].clone()).collect();
    ensure!(paged == ids, "the pages {paged:?} are the list {ids:?}");
    for (query, expected) in [
        ("state=live", 1),
        ("state=ended", 20),
        ("state=consumed", 20),
        ("state=expired", 0),
        ("state=available", 1),
        ("mac=02:00:00:00:00:07", 1),
        ("mac=02:00:00:00:00:07&state=live", 0),
    ] {
        let (_, total) = page(&daemon, &format!("/v1/sessions?{query}"))?;
        ensure!(total == expected, "{query}: {total}, not {expected}");
    }
    refusals(&daemon)?;
    let ended_id = all[1]["id"].clone();
    let removal = exchange(
        daemon.socket(),
        &request("DELETE", &format!("/v1/sessions/{ended_id}"), &[], b""),
    )?;
    ensure!(
        removal.status == 409
            && removal
                .json()
                .is_some_and(|body| body["error"]["code"] == "session_ended"),
        "history is not removed: {removal:?}"
    );

    let listed = daemon.ctl(&["sessions", "--state", "ended", "--limit", "5", "--json"])?;
    ensure!(listed.status.success(), "{listed:?}");
    let rows: Value = serde_json::from_slice(&listed.stdout).context("JSON")?;
    ensure!(
        rows.as_array().is_some_and(|rows| rows.len() == 5),
        "{rows}"
    );
    ensure!(
        String::from_utf8_lossy(&listed.stderr).contains("5 of 20 shown"),
        "{listed:?}"
    );

    // A start loads the live one alone; the history is still listed.
    daemon.terminate()?;
    daemon.restart(&lan)?;
    ensure!(
        held(&daemon)? == 1,
        "a start holds {} sessions",
        held(&daemon)?
    );
    let (_, total) = page(&daemon, "/v1/sessions")?;
    ensure!(total == 21, "after a start: {total}");
    Ok(())
}

/// The ended sessions' clients hold nothing and the kernel never saw them: forgotten at a full
/// save (one the kernel saw is kept an hour after it was last seen); the live one's stays.
fn clients_with_nothing_are_forgotten(daemon: &Daemon) -> Result<()> {
    let known = |mac: &str| get(daemon, &format!("/v1/clients/{mac}")).map(|a| a.status);
    ensure!(
        wait_for(Duration::from_secs(5), || known("02:00:00:00:00:07")
            .is_ok_and(|s| s == 404)),
        "a client with nothing left is still known: {:?}",
        known("02:00:00:00:00:07")
    );
    ensure!(
        known("02:00:00:00:01:00")? == 200,
        "the live one's client stays"
    );
    Ok(())
}

/// Wrong parameters: 400 with a sentence naming the parameter.
fn refusals(daemon: &Daemon) -> Result<()> {
    for (target, says) in [
        ("/v1/sessions?state=gone", "state"),
        ("/v1/sessions?limit=0", "limit"),
        ("/v1/sessions?limit=100001", "limit"),
        ("/v1/sessions?offset=-1", "offset"),
        ("/v1/sessions?colour=red", "colour"),
        ("/v1/sessions?mac=nope", "nope"),
    ] {
        let answer = get(daemon, target)?;
        let body: Value = answer.json().unwrap_or_default();
        ensure!(
            answer.status == 400
                && body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(says)),
            "{target}: {answer:?}"
        );
    }
    Ok(())
}

/// A database with 100,000 ended sessions (and 1,000 older than the history keeps): the
/// daemon's memory stays within a few MB of an empty one's, a start loads none of them, the
/// old ones are pruned, and the history is listed a page at a time.
#[test]
fn a_hundred_thousand_ended_sessions_cost_no_memory() -> Result<()> {
    let lan = Lan::new(1)?;
    let env = [SAVE_EVERY_SECOND, ("HOTSPOTD__HISTORY__DAILY_DAYS", "30")];
    let mut daemon = Daemon::start(&lan, &env)?;
    let empty_kib = settled_rss_kib(&daemon)?;
    daemon.terminate()?;

    let db = database(&daemon)?;
    let conn = rusqlite::Connection::open(&db)?;
    let now = chrono::Utc::now().timestamp();
    let day = 86_400;
    let written = conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 101000)
        INSERT INTO sessions (mac, provider, type, time_secs, data_mb, time_cons, data_cons,
            started_at, exp_days, down_mbits, up_mbits, use_global_speed, created_at, ended,
            ended_at_secs)
        SELECT printf('02:%02x:%02x:%02x:00:01', (i >> 16) & 255, (i >> 8) & 255, i & 255),
            'voucher', 2, 3600, 500.0, 3600, 12.5, '2026-11-01T10:00:00.000000000Z', 30, 5, 2,
            0, '2026-11-01T09:00:00.000000000Z', CASE WHEN i % 2 = 0 THEN 'consumed' ELSE 'expired' END,
            CASE WHEN i <= 1000 THEN ?1 - 60 * ?2 ELSE ?1 - i END
        FROM n",
        (now, day),
    )?;
    ensure!(written == 101_000, "{written}");
    drop(conn);

    let started = std::time::Instant::now();
    daemon.restart(&lan)?;
    let start_time = started.elapsed();
    ensure!(
        held(&daemon)? == 0,
        "a start holds {} sessions",
        held(&daemon)?
    );
    // The first full save prunes what is older than history.daily_days (read from the file, so
    // the daemon's memory is measured before it has read any history).
    let kept = || -> Result<i64> {
        let conn =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        Ok(conn.query_row("SELECT count(*) FROM sessions", [], |row| row.get(0))?)
    };
    ensure!(
        wait_for(Duration::from_secs(10), || kept()
            .is_ok_and(|n| n == 100_000)),
        "the 1,000 older than 30 days are pruned: {:?}",
        kept()
    );
    let history_kib = settled_rss_kib(&daemon)?;
    eprintln!(
        "RSS empty {empty_kib} KiB, with 100,000 ended sessions {history_kib} KiB; start {start_time:?}"
    );
    // SQLite's page caches (2 MB a connection) are most of what is left.
    ensure!(
        history_kib <= empty_kib + 5 * 1024,
        "100,000 ended sessions took {} KiB of memory",
        history_kib.saturating_sub(empty_kib)
    );
    let (_, total) = page(&daemon, "/v1/sessions?limit=1")?;
    ensure!(total == 100_000, "{total} listed");
    let (rows, total) = page(&daemon, "/v1/sessions?state=expired&offset=49990&limit=100")?;
    ensure!(
        total == 50_000 && rows.len() == 10,
        "{total}: {}",
        rows.len()
    );
    ensure!(
        rows.iter()
            .all(|row| row["state"] == "expired" && row["data_cons"] == 12.5),
        "{rows:?}"
    );
    let listed = daemon.ctl_json(&["sessions", "--limit", "3"])?;
    ensure!(
        listed.as_array().is_some_and(|rows| rows.len() == 3),
        "{listed}"
    );
    // An operator paging through the history, a page after another: what that leaves behind.
    for n in 0..40 {
        listing(
            daemon.socket(),
            &format!("/v1/sessions?offset={}&limit=500", n * 2_500),
        )?;
    }
    let browsed_kib = settled_rss_kib(&daemon)?;
    eprintln!("RSS after paging through the history {browsed_kib} KiB");
    ensure!(
        browsed_kib <= empty_kib + 8 * 1024,
        "paging through the history left {} KiB of memory behind",
        browsed_kib.saturating_sub(empty_kib)
    );
    Ok(())
}

/// Resident memory once start-up's work is done: the lowest of a few readings a second apart.
fn settled_rss_kib(daemon: &Daemon) -> Result<u64> {
    std::thread::sleep(Duration::from_secs(2));
    let mut lowest = u64::MAX;
    for _ in 0..3 {
        lowest = lowest.min(ProcessSample::read(daemon.pid())?.rss_kib);
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(lowest)
}
