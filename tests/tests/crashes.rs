//! End to end: the daemon is killed (SIGKILL) at 20 random moments while three paying clients
//! stream both ways through queues of data and time-or-data sessions that run out and hand
//! over to each other across the crashes, and a fourth client without a session knocks on
//! the internet all along (sessions.md rules 11 and 12). The client without a session gets
//! nothing through; every paying client is billed exactly what the kernel let through (as its
//! receivers count it, within one packet); no session is lost, duplicated or billed twice.
//! Real traffic between network namespaces. Needs root (namespaces, eBPF); CI runs as root.
//!
//! A stop (SIGTERM: `systemctl stop`, the first half of a restart or an upgrade) leaves the
//! kernel as a crash does; the last tests stop and start the daemon under traffic, once with a
//! start in between that fails on a bad configuration, once on pins of another layout version
//! (an upgrade that changed a map), and hold it to the same promises.
//!
//! The moments are drawn from a seeded generator; the seed is printed, and
//! `HOTSPOTD_CRASH_SEED=<seed>` replays a run.

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use hotspotd_tests::{
    Client, Daemon, INTERNET_V4, INTERNET_V6, LAN_IFACE, Lan, UdpEcho, UdpSink, UdpStream,
    udp_ping_pong, wait_for,
};
use serde_json::Value;

/// How many times the daemon is killed.
const CRASHES: usize = 20;
/// Replays a run: the seed the failed run printed.
const SEED_VAR: &str = "HOTSPOTD_CRASH_SEED";
/// One MB of `data_mb`: `accounting.bytes_per_mb`'s default.
const MB: f64 = 1_000_000.0;
/// The largest packet on these links (their MTU): what "one packet" may be.
const PACKET: f64 = 1_500.0;
/// Payload of the streams' datagrams.
const PAYLOAD: usize = 1_000;
/// Each paying client downloads a datagram every 4 ms and uploads one every 10 ms: about
/// 0.36 MB/s, so its smaller sessions run out within seconds, several of them across crashes.
const DOWN_EVERY: Duration = Duration::from_millis(4);
const UP_EVERY: Duration = Duration::from_millis(10);
/// Longer than the test; the streams stop when dropped.
const STREAM_FOR: Duration = Duration::from_mins(10);
/// The daemon runs this long, at most, between a restart and the next crash...
const MAX_UPTIME_MS: u64 = 2_000;
/// ...and stays dead this long, at most, in half of the crashes (the others restart at once).
const MAX_DOWNTIME_MS: u64 = 1_000;
/// How far a running session's `time_cons` may be behind the wall time since it started:
/// the fraction of a second it does not show, and the API answering from a poll or two ago
/// on a loaded machine.
const TIME_BEHIND_MS: i64 = 2_000;
/// How long the daemon may take to bill what the kernel counted once traffic has stopped
/// (its poll is 100 ms here; a loaded machine only delays it).
const SETTLE: Duration = Duration::from_secs(10);
/// How long the bills must stay the same to count as settled: five of the test's 100 ms polls.
const BILLS_STABLE: Duration = Duration::from_millis(500);
/// The client without a session knocks this often in the stop tests: a gap in the gate of a
/// few milliseconds lets some knocks through.
const KNOCK_EVERY: Duration = Duration::from_millis(2);
/// How long the daemon stays stopped in the stop tests: a slow restart.
const STOPPED_FOR: Duration = Duration::from_secs(1);

/// `splitmix64`: small, good enough to spread crash moments, and the same on every machine
/// for a given seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn millis(&mut self, max: u64) -> Duration {
        Duration::from_millis(self.next() % (max + 1))
    }
}

fn seed() -> Result<u64> {
    match std::env::var(SEED_VAR) {
        Ok(text) => text
            .trim()
            .parse()
            .with_context(|| format!("{SEED_VAR} must be a whole number (got {text:?})")),
        Err(_) => Ok(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |since| {
                u64::try_from(since.as_nanos() % u128::from(u64::MAX)).unwrap_or(1)
            })),
    }
}

/// A paying client: what it sends and receives, counted at the far ends, and its sessions.
struct Payer<'a> {
    name: &'static str,
    client: &'a Client,
    /// In the client: what the internet sent it and the gate let through.
    down: UdpSink,
    /// In the internet: what the client sent and the gate let through.
    up: UdpSink,
    sessions: Vec<i64>,
    /// Down and up; `None` once stopped.
    streams: Option<[UdpStream; 2]>,
}

impl Payer<'_> {
    /// IP-level bytes the gate let through for this client, both ways, as the receivers
    /// counted them.
    fn let_through(&self) -> u64 {
        self.down.received_ip_bytes() + self.up.received_ip_bytes()
    }

    /// Stops its streams (dropping them joins their threads).
    fn stop(&mut self) {
        self.streams = None;
    }
}

/// Sells `client` the sessions `queue` (each the arguments of `hotspotctl session add`; the
/// first one is connected) and starts its streams, over IPv6 if `ipv6`.
fn payer<'a>(
    lan: &Lan,
    daemon: &Daemon,
    name: &'static str,
    client: &'a Client,
    ipv6: bool,
    queue: &[&[&str]],
) -> Result<Payer<'a>> {
    let mut sessions = Vec::new();
    for (index, args) in queue.iter().enumerate() {
        let mut args = args.to_vec();
        args.push("--global-speed");
        if index == 0 {
            args.push("--connect");
        }
        let session = daemon.add_session(&client.mac, &args)?;
        sessions.push(
            session["id"]
                .as_i64()
                .with_context(|| format!("a session has an id: {session}"))?,
        );
    }
    let (client_ip, internet_ip): (IpAddr, IpAddr) = if ipv6 {
        (client.ipv6.into(), INTERNET_V6.into())
    } else {
        (client.ipv4.into(), INTERNET_V4.into())
    };
    let down = UdpSink::start(&client.netns, SocketAddr::new(client_ip, 0))?;
    let up = UdpSink::start(&lan.internet, SocketAddr::new(internet_ip, 0))?;
    let streams = [
        UdpStream::start(&lan.internet, down.addr(), PAYLOAD, DOWN_EVERY, STREAM_FOR)?,
        UdpStream::start(&client.netns, up.addr(), PAYLOAD, UP_EVERY, STREAM_FOR)?,
    ];
    Ok(Payer {
        name,
        client,
        down,
        up,
        sessions,
        streams: Some(streams),
    })
}

#[expect(
    clippy::cast_precision_loss,
    reason = "test traffic is megabytes, far below 2^52 bytes"
)]
fn bytes(count: u64) -> f64 {
    count as f64
}

fn float(value: &Value, field: &str) -> f64 {
    value[field].as_f64().unwrap_or(f64::NAN)
}

/// Bytes billed to the sessions `ids` in `list`: the sum of their `data_cons`.
fn billed(list: &[Value], ids: &[i64]) -> f64 {
    list.iter()
        .filter(|session| ids.iter().any(|id| session["id"] == *id))
        .map(|session| float(session, "data_cons") * MB)
        .sum()
}

/// The queues the paying clients buy: A and C chains of data sessions, B a short
/// time-or-data session that ends on its time, then data.
const A_QUEUE: &[&[&str]] = &[
    &["--type", "data", "--data-mb", "2"],
    &["--type", "data", "--data-mb", "3"],
    &[
        "--type",
        "time_or_data",
        "--time-secs",
        "600",
        "--data-mb",
        "4",
    ],
    &["--type", "data", "--data-mb", "500"],
];
const B_QUEUE: &[&[&str]] = &[
    &[
        "--type",
        "time_or_data",
        "--time-secs",
        "8",
        "--data-mb",
        "100",
    ],
    &["--type", "data", "--data-mb", "3"],
    &[
        "--type",
        "time_or_data",
        "--time-secs",
        "600",
        "--data-mb",
        "500",
    ],
];
const C_QUEUE: &[&[&str]] = &[
    &["--type", "data", "--data-mb", "4"],
    &["--type", "data", "--data-mb", "4"],
    &["--type", "data", "--data-mb", "500"],
];

#[test]
fn crashes_under_traffic_bill_exactly_what_passed() -> Result<()> {
    let seed = seed()?;
    eprintln!("crash moments from seed {seed} (replay with {SEED_VAR}={seed})");
    let mut rng = Rng(seed);

    let lan = Lan::new(4)?;
    // No ARP or neighbour discovery mid-test: only the streams cross the gate.
    lan.pin_neighbors()?;
    // The default save interval (30 s) is longer than any run between crashes: only changes
    // of state are saved, and the kernel's counters carry the rest across each crash.
    let mut daemon = Daemon::start(&lan, &[])?;
    let started = Instant::now();

    // The client without a session knocks on the internet all along: 100 datagrams a second.
    let knocked = UdpSink::start(&lan.internet, SocketAddr::new(INTERNET_V4.into(), 0))?;
    let knocks = UdpStream::start(
        &lan.clients[3].netns,
        knocked.addr(),
        100,
        Duration::from_millis(10),
        STREAM_FOR,
    )?;
    let mut payers = [
        payer(&lan, &daemon, "A", &lan.clients[0], false, A_QUEUE)?,
        payer(&lan, &daemon, "B", &lan.clients[1], true, B_QUEUE)?,
        payer(&lan, &daemon, "C", &lan.clients[2], false, C_QUEUE)?,
    ];
    let sold: BTreeSet<i64> = payers
        .iter()
        .flat_map(|payer| payer.sessions.iter().copied())
        .collect();

    let dead_for = crash_repeatedly(&lan, &mut daemon, &mut rng)?;
    // The last run bills what came through meanwhile and carries on for a moment.
    std::thread::sleep(Duration::from_secs(1));
    for payer in &mut payers {
        payer.stop();
    }
    let knocks_sent = knocks.sent();
    drop(knocks);
    let traffic_for = started.elapsed();
    for payer in &payers {
        payer.down.sync(&lan.gateway)?;
        payer.up.sync(&lan.internet)?;
    }
    knocked.sync(&lan.internet)?;
    eprintln!(
        "{CRASHES} crashes in {:.1} s of traffic, {:.1} s of it with the daemon dead (plus \
         its restarts)",
        traffic_for.as_secs_f64(),
        dead_for.as_secs_f64()
    );
    ensure!(
        knocked.received() == 0,
        "the client without a session got {} of its {knocks_sent} datagrams through",
        knocked.received()
    );

    let live = check_bills(&daemon, &payers)?;
    let listed: BTreeSet<i64> = live.iter().filter_map(|s| s["id"].as_i64()).collect();
    ensure!(
        listed == sold && live.len() == sold.len(),
        "sessions lost or duplicated: sold {sold:?}, listed {:?}",
        live.iter().map(|s| &s["id"]).collect::<Vec<_>>()
    );

    // What was saved is what was billed: a clean stop saves, the next start reads it back.
    daemon.terminate()?;
    daemon.restart(&lan)?;
    let saved = daemon.sessions()?;
    ensure!(
        saved.len() == live.len(),
        "a clean stop lost or added sessions: {live:?} then {saved:?}"
    );
    for (session, before) in saved.iter().zip(&live) {
        ensure!(
            session["id"] == before["id"]
                && (float(session, "data_cons") - float(before, "data_cons")).abs() * MB < 1.0,
            "a clean stop saved another bill: {before} then {session}"
        );
    }
    Ok(())
}

/// Kills the daemon [`CRASHES`] times at moments `rng` picks, each time leaving it dead for
/// a moment or not and starting it again; returns how long it was dead in all (restarts
/// aside).
fn crash_repeatedly(lan: &Lan, daemon: &mut Daemon, rng: &mut Rng) -> Result<Duration> {
    let mut dead_for = Duration::ZERO;
    for crash in 1..=CRASHES {
        // The random moment: how long this run of the daemon lives. It stands in for no
        // condition; any moment must do.
        let uptime = rng.millis(MAX_UPTIME_MS);
        std::thread::sleep(uptime);
        daemon.kill()?;
        let downtime = if rng.next().is_multiple_of(2) {
            rng.millis(MAX_DOWNTIME_MS)
        } else {
            Duration::ZERO
        };
        std::thread::sleep(downtime);
        dead_for += downtime;
        let restarting = Instant::now();
        daemon.restart(lan)?;
        eprintln!(
            "crash {crash}: after {} ms up, {} ms dead; back in {} ms",
            uptime.as_millis(),
            downtime.as_millis(),
            restarting.elapsed().as_millis()
        );
    }
    Ok(dead_for)
}

/// Once traffic has stopped: every paying client is billed what the kernel let through,
/// within one packet, and its sessions make sense. Returns the sessions as checked.
fn check_bills(daemon: &Daemon, payers: &[Payer<'_>]) -> Result<Vec<Value>> {
    // Everything the kernel counted is billed at the daemon's next poll; a bill that stays
    // short is reported below with the numbers.
    // Settled means within a packet *and* unchanged for a few polls: a bill one packet short
    // may still have that packet's poll to come, and a clean stop's last poll would then
    // bill it after the check.
    let mut live = Vec::new();
    let mut last_bills = Vec::new();
    let mut unchanged_since = Instant::now();
    wait_for(SETTLE, || {
        live = daemon.sessions().unwrap_or_default();
        let bills: Vec<f64> = payers
            .iter()
            .map(|payer| billed(&live, &payer.sessions))
            .collect();
        if bills != last_bills {
            last_bills.clone_from(&bills);
            unchanged_since = Instant::now();
        }
        let within = payers
            .iter()
            .zip(&bills)
            .all(|(payer, billed)| *billed >= bytes(payer.let_through()) - PACKET);
        within && unchanged_since.elapsed() >= BILLS_STABLE
    });
    let checked_at = chrono::Utc::now();
    let mut report = Vec::new();
    for payer in payers {
        let passed = bytes(payer.let_through());
        let billed = billed(&live, &payer.sessions);
        eprintln!(
            "client {} ({}): the kernel let through {passed:.0} bytes ({} down, {} up); \
             billed {billed:.0} ({:+.0})",
            payer.name,
            payer.client.mac,
            payer.down.received_ip_bytes(),
            payer.up.received_ip_bytes(),
            billed - passed
        );
        if (billed - passed).abs() > PACKET {
            report.push(format!(
                "client {} was billed {billed:.0} bytes for {passed:.0} let through",
                payer.name
            ));
        }
    }
    ensure!(
        report.is_empty(),
        "billing is off by more than one packet: {}; sessions: {live:#?}",
        report.join("; ")
    );
    for payer in payers {
        check_sessions(payer.name, &live, &payer.sessions, checked_at)?;
    }
    Ok(live)
}

/// The sessions of one client make sense after the crashes: at most one runs; every
/// session that ended on its data went at most one packet past it; the one that ended on its
/// time used exactly its time; time is never counted beyond the wall time since a session
/// started.
fn check_sessions(
    name: &str,
    list: &[Value],
    ids: &[i64],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    let mine: Vec<&Value> = list
        .iter()
        .filter(|session| ids.iter().any(|id| session["id"] == *id))
        .collect();
    let running = mine.iter().filter(|s| s["state"] == "running").count();
    ensure!(
        running <= 1,
        "client {name} runs {running} sessions at once: {mine:?}"
    );
    for session in &mine {
        let (data_mb, data_cons) = (float(session, "data_mb"), float(session, "data_cons"));
        let counts_data = session["type"] != 0;
        if counts_data {
            ensure!(
                data_cons * MB <= data_mb * MB + PACKET,
                "client {name}: session went more than one packet past its data: {session}"
            );
        }
        let time_cons = session["time_cons"].as_u64().unwrap_or(0);
        let time_secs = session["time_secs"].as_u64().unwrap_or(0);
        eprintln!(
            "  {name} session {}: type {}, {}, {data_cons:.6}/{data_mb} MB, {time_cons}/{time_secs} s",
            session["id"], session["type"], session["state"]
        );
        if session["state"] == "consumed" && counts_data && data_cons < data_mb {
            ensure!(
                time_cons == time_secs,
                "client {name}: a session that ended on time used {time_cons} of {time_secs} s: \
                 {session}"
            );
        }
        if let Some(started) = session["started_at"]
            .as_str()
            .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
        {
            let since = (now - started.with_timezone(&chrono::Utc)).num_milliseconds();
            if session["state"] == "running" && session["type"] != 1 {
                eprintln!("    running for {since} ms by the wall clock");
            }
            let counted_ms = i64::try_from(time_cons).unwrap_or(i64::MAX) * 1_000;
            ensure!(
                counted_ms <= since + 1_000,
                "client {name}: {time_cons} s counted in the {since} ms since the session \
                 started: {session}"
            );
            // A running session ran all along (the kernel runs it while the daemon is dead),
            // and crashes lose nothing: whole seconds and one poll behind, at most.
            if session["state"] == "running" && session["type"] != 1 {
                ensure!(
                    counted_ms + TIME_BEHIND_MS >= since,
                    "client {name}: only {time_cons} s counted in the {since} ms since the \
                     session started: {session}"
                );
            }
        }
    }
    Ok(())
}

#[test]
fn a_stop_and_start_under_traffic_keep_the_gate_closed_and_bill_every_byte() -> Result<()> {
    stop_and_start_under_traffic(false)
}

#[test]
fn a_start_that_fails_after_a_stop_leaves_the_gate_closed() -> Result<()> {
    stop_and_start_under_traffic(true)
}

/// A paying client streams both ways and a client without a session knocks every 2 ms while
/// the daemon is stopped with SIGTERM, stays stopped for [`STOPPED_FOR`] (with
/// `failed_start`, during which a start on a bad configuration fails) and is started again.
/// The knocks get nothing through; the paying client's traffic flows throughout and is
/// billed to the byte what reached its receivers.
fn stop_and_start_under_traffic(failed_start: bool) -> Result<()> {
    let lan = Lan::new(2)?;
    lan.pin_neighbors()?;
    let mut daemon = Daemon::start(&lan, &[])?;
    let knocked = UdpSink::start(&lan.internet, SocketAddr::new(INTERNET_V4.into(), 0))?;
    let knocks = UdpStream::start(
        &lan.clients[1].netns,
        knocked.addr(),
        100,
        KNOCK_EVERY,
        STREAM_FOR,
    )?;
    let mut payers = [payer(
        &lan,
        &daemon,
        "A",
        &lan.clients[0],
        false,
        &[&["--type", "data", "--data-mb", "500"]],
    )?];
    // Traffic before the stop; the moment stands in for no condition.
    std::thread::sleep(Duration::from_millis(500));
    let stopping = Instant::now();
    let status = daemon.terminate()?;
    ensure!(
        status.success(),
        "hotspotd exits cleanly on SIGTERM: {status}; log:\n{}",
        daemon.log()
    );
    let stopped_in = stopping.elapsed();
    let received_at_stop = payers[0].down.received();
    if failed_start {
        // An invalid value: the start fails before it touches the kernel, as an operator's
        // typo in config.toml would make the start half of a restart fail.
        let (status, log) =
            Daemon::start_expecting_exit(&lan, &[("HOTSPOTD__ACCOUNTING__POLL_INTERVAL_MS", "0")])?;
        ensure!(
            !status.success() && log.contains("poll_interval_ms"),
            "a start on a bad configuration fails and says why ({status}):\n{log}"
        );
    }
    std::thread::sleep(STOPPED_FOR);
    ensure!(
        payers[0].down.received() > received_at_stop,
        "the paying client's session goes on while no daemon runs"
    );
    let restarting = Instant::now();
    daemon.restart(&lan)?;
    let restarted_in = restarting.elapsed();
    // Traffic after the start: the take-over bills what came through meanwhile.
    std::thread::sleep(Duration::from_millis(500));
    for payer in &mut payers {
        payer.stop();
    }
    let knocks_sent = knocks.sent();
    drop(knocks);
    for payer in &payers {
        payer.down.sync(&lan.gateway)?;
        payer.up.sync(&lan.internet)?;
    }
    knocked.sync(&lan.internet)?;
    eprintln!(
        "stopped in {} ms, stayed stopped {} ms{}, started again in {} ms",
        stopped_in.as_millis(),
        STOPPED_FOR.as_millis(),
        if failed_start {
            " (a start on a bad configuration failed meanwhile)"
        } else {
            ""
        },
        restarted_in.as_millis()
    );
    eprintln!(
        "the client without a session got {} of its {knocks_sent} datagrams through",
        knocked.received()
    );
    ensure!(
        knocked.received() == 0,
        "the client without a session got {} of its {knocks_sent} datagrams through across \
         the stop",
        knocked.received()
    );
    // TCX: the pinned links; without TCX (Linux before 6.6): the clsact filters, whose
    // programs are replaced in place.
    let log = daemon.log();
    ensure!(
        log.contains("took over the link a previous run pinned")
            || log.contains("replaced the program of the filter a previous run left"),
        "the start takes over the links or filters the stop left:\n{log}"
    );
    let live = check_bills(&daemon, &payers)?;
    // To the byte, not only within the packet check_bills allows: nothing is lost in a
    // take-over, so every byte that reached a receiver is billed, and nothing else.
    for payer in &payers {
        let (passed, billed) = (bytes(payer.let_through()), billed(&live, &payer.sessions));
        ensure!(
            (billed - passed).abs() < 0.5,
            "client {} was billed {billed:.0} bytes for {passed:.0} that reached its receivers",
            payer.name
        );
    }
    Ok(())
}

/// An upgrade (or downgrade) that changes a map's layout: the stopped daemon's pins are in
/// another layout's folder (`v0` here, renamed from this version's), which the new daemon
/// cannot read. It takes over their links, so the gate never opens and the old programs do not
/// stay chained in front of the new ones, and removes that folder. A client without a session
/// gets nothing through across it; a client who pays after it gets through.
#[test]
fn a_start_on_pins_of_another_layout_takes_over_the_gate() -> Result<()> {
    let lan = Lan::new(2)?;
    lan.pin_neighbors()?;
    let mut daemon = Daemon::start(&lan, &[])?;
    let (paying, waiting) = (&lan.clients[0], &lan.clients[1]);
    daemon.connect_for_an_hour(&paying.mac)?;
    let knocked = UdpSink::start(&lan.internet, SocketAddr::new(INTERNET_V4.into(), 0))?;
    let knocks = UdpStream::start(&waiting.netns, knocked.addr(), 100, KNOCK_EVERY, STREAM_FOR)?;

    let status = daemon.terminate()?;
    ensure!(
        status.success(),
        "hotspotd exits cleanly on SIGTERM: {status}"
    );
    let current = daemon
        .pin_dir()
        .join(format!("v{}", hotspotd_common::MAP_LAYOUT_VERSION));
    let other = daemon.pin_dir().join("v0");
    std::fs::rename(&current, &other).context("move the pins to another layout's folder")?;
    daemon.restart(&lan)?;
    let log = daemon.log();
    ensure!(
        log.contains("took over the link of another pin layout")
            && log.contains("removed the pins of another layout"),
        "the start says it took over another layout's links and removed its pins:\n{log}"
    );
    ensure!(!other.exists(), "the other layout's pins are removed");
    let attached = lan
        .gateway
        .run(|| hotspotd::bpf::attached_programs(LAN_IFACE))??;
    ensure!(
        attached.len() == 2,
        "the new programs replaced the old ones in their links: {attached:?}"
    );

    let sent = knocks.sent();
    drop(knocks);
    knocked.sync(&lan.internet)?;
    eprintln!(
        "across the change of layout the client without a session got {} of {sent} datagrams \
         through",
        knocked.received()
    );
    ensure!(
        knocked.received() == 0,
        "the client without a session got {} of {sent} datagrams through",
        knocked.received()
    );
    let echo = UdpEcho::start(&lan.internet, SocketAddr::new(INTERNET_V4.into(), 0))?;
    daemon.connect_for_an_hour(&waiting.mac)?;
    for (who, client) in [
        ("the client who paid before", paying),
        ("the new payer", waiting),
    ] {
        let echoed = udp_ping_pong(&client.netns, echo.addr(), 500, 10)
            .with_context(|| format!("{who} gets through"))?;
        ensure!(echoed == 10, "{who}: {echoed} of 10 came back");
    }
    Ok(())
}
