//! Benchmark: what sessions that are over cost the daemon (issue 15, item 5; BENCHMARKS.md,
//! "Ended sessions"). A database holds N sessions whose records are used up (an hour sold, an
//! hour used), written straight into the file as a hotspotd of any release leaves them, so the
//! same file serves a build from before ended sessions were history. hotspotd starts on it,
//! is stopped (SIGTERM) and started again. Printed for each start: the sessions it holds
//! (`status`), its resident memory once settled, and how long until its API answered.
//! Baseline in the same run: the same daemon on the empty database first. Another build is
//! measured with `HOTSPOTD_BIN` and `HOTSPOTCTL_BIN` pointing at its binaries. Needs root.
#![expect(clippy::print_stdout, reason = "a benchmark prints its results")]

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use hotspotd_tests::{Daemon, Lan, process::ProcessSample};

struct Args {
    sessions: u64,
}

fn parse_args() -> Result<Args> {
    let mut args = Args { sessions: 100_000 };
    let mut given = std::env::args().skip(1);
    while let Some(arg) = given.next() {
        match arg.as_str() {
            "--sessions" => {
                args.sessions = given
                    .next()
                    .context("--sessions needs a number")?
                    .parse()
                    .context("--sessions takes a whole number")?;
            }
            other => bail!("unknown argument {other}: bench-history [--sessions N]"),
        }
    }
    Ok(args)
}

/// One start, as measured.
struct Start {
    what: &'static str,
    held: u64,
    rss_kib: u64,
    api_after: Duration,
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let lan = Lan::new(1)?;
    let started = Instant::now();
    let mut daemon = Daemon::start(&lan, &[("HOTSPOTD__STORE__SAVE_INTERVAL_SECS", "1")])?;
    let mut starts = vec![measure(&daemon, "empty database", started.elapsed())?];
    daemon.terminate()?;

    let db = daemon
        .socket()
        .parent()
        .context("the socket's folder")?
        .join("hotspotd.sqlite");
    fill(&db, args.sessions)?;
    for what in ["with the used-up sessions", "started again"] {
        let started = Instant::now();
        daemon.restart(&lan)?;
        starts.push(measure(&daemon, what, started.elapsed())?);
        daemon.terminate()?;
    }

    println!(
        "hotspotd {} on a database with {} used-up sessions:\n",
        hotspotd_tests::hotspotd_bin().display(),
        args.sessions
    );
    println!("| start | sessions held | RSS MiB | API answered after, s |");
    println!("|---|---:|---:|---:|");
    for start in &starts {
        println!(
            "| {} | {} | {:.1} | {:.2} |",
            start.what,
            start.held,
            kib_to_mib(start.rss_kib),
            start.api_after.as_secs_f64()
        );
    }
    Ok(())
}

/// What the daemon holds and its memory, once what a start does (the first saves) is done.
fn measure(daemon: &Daemon, what: &'static str, api_after: Duration) -> Result<Start> {
    std::thread::sleep(Duration::from_secs(3));
    let mut rss_kib = u64::MAX;
    for _ in 0..3 {
        rss_kib = rss_kib.min(ProcessSample::read(daemon.pid())?.rss_kib);
        std::thread::sleep(Duration::from_secs(1));
    }
    let held = daemon.status()?["sessions"]
        .as_u64()
        .context("status has sessions")?;
    Ok(Start {
        what,
        held,
        rss_kib,
        api_after,
    })
}

/// Writes `count` used-up time sessions (an hour, all of it used), each on a client of its own.
fn fill(db: &std::path::Path, count: u64) -> Result<()> {
    let conn = rusqlite::Connection::open(db)?;
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
        INSERT INTO sessions (mac, provider, type, time_secs, data_mb, time_cons, data_cons,
            started_at, exp_days, down_mbits, up_mbits, use_global_speed, created_at)
        SELECT printf('02:%02x:%02x:%02x:00:01', (i >> 16) & 255, (i >> 8) & 255, i & 255),
            'voucher', 0, 3600, 0.0, 3600, 0.0, '2026-11-01T10:00:00.000000000Z', NULL, 0, 0,
            1, '2026-11-01T09:00:00.000000000Z'
        FROM n",
        [i64::try_from(count).context("--sessions fits in i64")?],
    )?;
    Ok(())
}

#[expect(
    clippy::cast_precision_loss,
    reason = "KiB of a process's memory fit in f64's 52 bits"
)]
fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
