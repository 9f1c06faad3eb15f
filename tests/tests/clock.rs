//! End to end: the wall clock jumps under a running daemon — a box without a real-time clock
//! that booted in 1970 and syncs with NTP, then corrections of hours back and years forward,
//! also while the daemon is down — with traffic flowing. No session expires early, time is
//! counted as it really passed, data as it really flowed, and the sessions' start and sale
//! times keep naming the instants they happened at. The daemon runs under libfaketime, so
//! only its wall clock moves (its monotonic clock and the kernel's are the real ones).
//! Needs root (namespaces, eBPF) and libfaketime (`scripts/bootstrap.sh` installs it).

use std::{
    fs,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use chrono::{DateTime, TimeDelta, Utc};
use hotspotd_tests::{Daemon, INTERNET_V4, Lan, UdpSink, UdpStream, ip_bytes_udp, wait_for};
use serde_json::Value;

/// Where Debian puts the multi-threaded libfaketime (hotspotd runs several threads).
const LIBFAKETIME: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
];
/// A year as libfaketime counts one.
const YEAR: TimeDelta = TimeDelta::days(365);
/// One MB of `data_mb`: `accounting.bytes_per_mb`'s default.
const MB: f64 = 1_000_000.0;
const PAYLOAD: usize = 1_000;
/// The time session's length: long enough for every jump to happen while it runs.
const TIME_SECS: u64 = 25;
/// How far a recorded moment may be from the instant it names: the daemon's poll (100 ms),
/// the API, and the whole seconds a check is made in, on a loaded machine.
const MOMENT_SLACK: TimeDelta = TimeDelta::seconds(2);
/// How long the daemon may take to notice a step and answer (it reads the clock at every
/// poll and every command).
const SETTLE: Duration = Duration::from_secs(5);

/// The daemon's wall clock, as an offset from the real one that a test can change while it
/// runs: libfaketime reads the file at every clock read.
struct FakeClock {
    file: PathBuf,
    _dir: tempfile::TempDir,
}

impl FakeClock {
    fn new(offset: TimeDelta) -> Result<Self> {
        let dir = tempfile::tempdir().context("create a folder for the fake clock")?;
        let clock = Self {
            file: dir.path().join("faketimerc"),
            _dir: dir,
        };
        clock.set(offset)?;
        Ok(clock)
    }

    /// From now on the daemon's wall clock reads the real time plus `offset`.
    fn set(&self, offset: TimeDelta) -> Result<()> {
        // Written whole and renamed, so a read never sees half a line.
        let next = self.file.with_extension("next");
        fs::write(&next, format!("{:+}\n", offset.num_seconds()))
            .with_context(|| format!("write {}", next.display()))?;
        fs::rename(&next, &self.file).with_context(|| format!("replace {}", self.file.display()))
    }

    /// The environment that runs a program on this clock.
    fn env(&self) -> Result<Vec<(&'static str, String)>> {
        let library = LIBFAKETIME
            .iter()
            .find(|path| Path::new(path).exists())
            .context(
                "libfaketime is not installed: run scripts/bootstrap.sh (Debian package faketime)",
            )?;
        Ok(vec![
            ("LD_PRELOAD", (*library).to_owned()),
            ("FAKETIME_TIMESTAMP_FILE", self.file.display().to_string()),
            ("FAKETIME_NO_CACHE", "1".to_owned()),
            // Only the wall clock moves: the monotonic clocks stay the real ones, as NTP
            // leaves them.
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()),
        ])
    }
}

fn moment(session: &Value, field: &str) -> Result<DateTime<Utc>> {
    let text = session[field]
        .as_str()
        .with_context(|| format!("no {field} in {session}"))?;
    Ok(DateTime::parse_from_rfc3339(text)
        .with_context(|| format!("{field} is no RFC 3339 time: {text}"))?
        .with_timezone(&Utc))
}

#[expect(
    clippy::cast_precision_loss,
    reason = "test traffic is megabytes and seconds, far below 2^52"
)]
fn float(count: u64) -> f64 {
    count as f64
}

fn uint(session: &Value, field: &str) -> u64 {
    session[field].as_u64().unwrap_or(0)
}

/// A session's recorded moments, to compare with the real instants they name.
struct Moments {
    started_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    state: String,
    time_cons: u64,
}

fn moments(daemon: &Daemon, id: i64) -> Result<Moments> {
    let session = daemon.session(id)?;
    Ok(Moments {
        started_at: moment(&session, "started_at")?,
        created_at: moment(&session, "created_at")?,
        state: session["state"].as_str().unwrap_or_default().to_owned(),
        time_cons: uint(&session, "time_cons"),
    })
}

/// Waits until the daemon labels session `id`'s start and sale with `real` shifted by
/// `offset` — the instants they happened at, in the terms of the clock it now runs on — and
/// the session still runs.
fn wait_for_moments(
    daemon: &Daemon,
    id: i64,
    what: &str,
    started: DateTime<Utc>,
    offset: TimeDelta,
) -> Result<Moments> {
    let wanted = started + offset;
    let mut last = None;
    let held = wait_for(SETTLE, || match moments(daemon, id) {
        Ok(now) => {
            let right = (now.started_at - wanted).abs() <= MOMENT_SLACK
                && (now.created_at - wanted).abs() <= MOMENT_SLACK;
            let running = now.state == "running";
            last = Some(now);
            right && running
        }
        Err(_) => false,
    });
    match last {
        Some(last) if held => {
            eprintln!(
                "{what}: started_at {} (the start was {wanted}), time_cons {} s",
                last.started_at, last.time_cons
            );
            Ok(last)
        }
        Some(last) => bail!(
            "{what}: session {id} reads started_at {}, created_at {}, {} — wanted {wanted} \
             and running",
            last.started_at,
            last.created_at,
            last.state
        ),
        None => bail!("{what}: session {id} cannot be read"),
    }
}

/// Steps the daemon's wall clock as a box without an RTC sees it, checking after each
/// step that session `id`, sold at `started`, still runs and still names its start.
fn jump_around(
    lan: &Lan,
    daemon: &mut Daemon,
    clock: &FakeClock,
    a_id: i64,
    started: DateTime<Utc>,
) -> Result<()> {
    let in_1970 = moments(daemon, a_id)?;
    eprintln!("sold in the box's 1970: started_at {}", in_1970.started_at);
    ensure!(
        (in_1970.started_at - (started - YEAR * 56)).abs() <= MOMENT_SLACK,
        "the daemon runs on the fake clock: {}",
        in_1970.started_at
    );

    std::thread::sleep(Duration::from_secs(2));
    // NTP syncs: 56 years forward. The session started 2 s ago, not 56 years ago.
    clock.set(TimeDelta::zero())?;
    let synced = wait_for_moments(daemon, a_id, "NTP synced", started, TimeDelta::zero())?;
    ensure!(
        synced.time_cons <= 4,
        "56 years forward billed time: {} s",
        synced.time_cons
    );

    std::thread::sleep(Duration::from_secs(2));
    // A correction of three hours back: the start moves with it, nothing is given back.
    clock.set(-TimeDelta::hours(3))?;
    wait_for_moments(daemon, a_id, "3 h back", started, -TimeDelta::hours(3))?;

    std::thread::sleep(Duration::from_secs(2));
    // Five years forward while the daemon is down; it notices when it starts.
    daemon.kill()?;
    clock.set(YEAR * 5)?;
    daemon.restart(lan)?;
    wait_for_moments(daemon, a_id, "5 years on while down", started, YEAR * 5)?;

    // A restart with no step moves nothing.
    daemon.kill()?;
    daemon.restart(lan)?;
    wait_for_moments(daemon, a_id, "restarted again", started, YEAR * 5)?;

    // And back to the true time.
    clock.set(TimeDelta::zero())?;
    wait_for_moments(daemon, a_id, "true time", started, TimeDelta::zero())?;

    Ok(())
}

#[test]
fn wall_clock_jumps_neither_expire_nor_bill() -> Result<()> {
    let lan = Lan::new(2)?;
    lan.pin_neighbors()?;
    let (a, b) = (&lan.clients[0], &lan.clients[1]);
    // The box booted without a real-time clock: 1970 (56 years before now).
    let clock = FakeClock::new(-YEAR * 56)?;
    let env = clock.env()?;
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut daemon = Daemon::start(&lan, &env)?;

    // A: a time session valid one day, a data session queued behind it. B: time or data.
    let sold = daemon.add_session(
        &a.mac,
        &[
            "--type",
            "time",
            "--time-secs",
            &TIME_SECS.to_string(),
            "--exp-days",
            "1",
            "--global-speed",
            "--connect",
        ],
    )?;
    let sold_at = Instant::now();
    let started = Utc::now();
    let a_id = sold["id"].as_i64().context("an id")?;
    let b_id = daemon.add_session(
        &b.mac,
        &[
            "--type",
            "time_or_data",
            "--time-secs",
            "3600",
            "--data-mb",
            "1000",
            "--exp-days",
            "1",
            "--global-speed",
            "--connect",
        ],
    )?["id"]
        .as_i64()
        .context("an id")?;
    let a_down = UdpSink::start(&a.netns, SocketAddr::new(a.ipv4.into(), 0))?;
    let b_down = UdpSink::start(&b.netns, SocketAddr::new(b.ipv4.into(), 0))?;
    let b_up = UdpSink::start(&lan.internet, SocketAddr::new(IpAddr::from(INTERNET_V4), 0))?;
    let every = Duration::from_millis(10);
    let long = Duration::from_mins(10);
    let streams = [
        UdpStream::start(&lan.internet, a_down.addr(), PAYLOAD, every, long)?,
        UdpStream::start(&lan.internet, b_down.addr(), PAYLOAD, every, long)?,
        UdpStream::start(&b.netns, b_up.addr(), PAYLOAD, every, long)?,
    ];

    jump_around(&lan, &mut daemon, &clock, a_id, started)?;

    // The time session ends on its time, counted as it really passed.
    let mut a_end = Value::Null;
    let ended = wait_for(Duration::from_secs(TIME_SECS + 10), || {
        a_end = daemon.session(a_id).unwrap_or(Value::Null);
        a_end["state"] != "running"
    });
    ensure!(ended, "A's session never ended: {a_end}");
    let ran = sold_at.elapsed();
    ensure!(
        a_end["state"] == "consumed" && uint(&a_end, "time_cons") == TIME_SECS,
        "A's session ended on its {TIME_SECS} s, neither expired nor short: {a_end}"
    );
    a_down.sync(&lan.gateway)?;
    let arrivals = a_down.arrivals();
    let (first, last) = match (arrivals.first(), arrivals.last()) {
        (Some(first), Some(last)) => (first.at, last.at),
        _ => bail!("A received nothing"),
    };
    let open_for = last - first;
    eprintln!(
        "A's {TIME_SECS} s session let its stream through for {:.3} s (ended {:.1} s after the sale)",
        open_for.as_secs_f64(),
        ran.as_secs_f64()
    );
    ensure!(
        (open_for.as_secs_f64() - float(TIME_SECS)).abs() < 1.0,
        "A's {TIME_SECS} s session let traffic through for {open_for:?}"
    );

    // B: its time is the time that passed, its data the bytes that flowed.
    drop(streams);
    b_down.sync(&lan.gateway)?;
    b_up.sync(&lan.internet)?;
    let flowed = b_down.received_ip_bytes() + b_up.received_ip_bytes();
    check_billed(&daemon, b_id, flowed, sold_at.elapsed())?;
    Ok(())
}

/// Session `id`, sold `elapsed` ago, has counted that time (within a second or two) and
/// billed the `flowed` bytes (within a packet), and still runs.
fn check_billed(daemon: &Daemon, id: i64, flowed: u64, elapsed: Duration) -> Result<()> {
    let mut now = Value::Null;
    let billed = wait_for(SETTLE, || {
        now = daemon.session(id).unwrap_or(Value::Null);
        (now["data_cons"].as_f64().unwrap_or(0.0) * MB - float(flowed)).abs()
            <= float(ip_bytes_udp(PAYLOAD, false))
    });
    let time_cons = uint(&now, "time_cons");
    eprintln!(
        "B: {flowed} bytes flowed, {:.0} billed; {time_cons} s counted in {:.1} s",
        now["data_cons"].as_f64().unwrap_or(0.0) * MB,
        elapsed.as_secs_f64()
    );
    ensure!(
        billed,
        "B was billed {} MB for {flowed} bytes: {now}",
        now["data_cons"]
    );
    ensure!(
        now["state"] == "running"
            && time_cons + 2 >= elapsed.as_secs()
            && time_cons <= elapsed.as_secs() + 1,
        "B's time is the time that passed ({:.1} s): {now}",
        elapsed.as_secs_f64()
    );
    Ok(())
}
