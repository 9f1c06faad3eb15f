//! End to end: the daemon holds each client to its session's speed and all of them to the
//! global caps, with real single-flow TCP between a client and the internet namespace, and
//! keeps the HTB trees to exactly the clients that run a session. Needs root.
//!
//! Rates are goodput (what the receiving application got) compared with the ceiling HTB
//! enforces on whole Ethernet frames; a full-size TCP frame carries 1448 of its 1514 bytes, so
//! goodput at a ceiling is about 96 % of it, well inside the ±10 % asked of it.

use std::{
    net::{IpAddr, SocketAddr},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, ensure};
use hotspotd_tests::{
    Client, Daemon, INTERNET_V4, LAN_IFACE, Lan, Read, TcpMeter, UdpSink, UdpStream,
    largest_read_gap, mbits_between, mbits_per_second, tc, tcp_push, wait_for,
};
use serde_json::Value;

/// The IFB the daemon creates (config.toml's default).
const IFB: &str = "ifb-hotspot";
/// How long each rate is measured.
const MEASURE: Duration = Duration::from_secs(10);
/// Asked tolerance: goodput within ±10 % of the ceiling.
const TOLERANCE: f64 = 0.10;
/// How long flows started together are given to settle before their rate counts.
const WARMUP: Duration = Duration::from_secs(2);
/// What HTB may let through beyond the ceiling at the start of a flow: it charges a GSO packet
/// (up to 64 KiB, the size TCP hands the stack) whole once the class has tokens, going into
/// debt for the rest, plus its burst. The debt is paid back, so the average holds.
const START_ALLOWANCE_BYTES: f64 = 64.0 * 1024.0 + 15_140.0;
/// UDP payload of the chaining test's stream, and the share of each frame it is (payload
/// over payload + UDP + IPv4 + Ethernet headers), to turn what arrived into the frame rate
/// HTB shapes.
const PROBE_PAYLOAD: usize = 1400;
const PROBE_GOODPUT: f64 = 1400.0 / 1442.0;

fn addr(ip: impl Into<IpAddr>) -> SocketAddr {
    SocketAddr::new(ip.into(), 0)
}

/// `session add` arguments for an hour at `down`/`up` Mbit/s, connected.
fn hour_at(down: &str, up: &str) -> Vec<String> {
    [
        "--type",
        "time",
        "--time-secs",
        "3600",
        "--down-mbits",
        down,
        "--up-mbits",
        up,
        "--connect",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn add(daemon: &Daemon, client: &Client, args: &[String]) -> Result<Value> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    daemon.add_session(&client.mac, &args)
}

/// One flow's record: when its sender started and what its receiver read.
struct Flow {
    started: Instant,
    /// Where its goodput is measured from: its start, or later (see `after_warmup`).
    measured_from: Instant,
    reads: Vec<Read>,
}

impl Flow {
    /// Goodput from `measured_from` to the end of the `MEASURE` window.
    fn mbits(&self) -> f64 {
        mbits_between(&self.reads, self.measured_from, self.started + MEASURE)
    }

    /// Goodput measured from `WARMUP` after the start: for flows started together, which take
    /// a moment to settle on their shares.
    fn after_warmup(mut self) -> Self {
        self.measured_from = self.started + WARMUP;
        self
    }

    /// The most it got beyond `ceiling_mbits` (+ 10 %) from its start to any whole second,
    /// in bytes. Counted from the start, because TCP hands a receiver the data held back
    /// behind a lost segment all at once, which makes single seconds look faster than the
    /// wire was.
    fn most_beyond(&self, ceiling_mbits: f64) -> f64 {
        (1..=MEASURE.as_secs())
            .map(|secs| {
                let until = self.started + Duration::from_secs(secs);
                #[expect(clippy::cast_precision_loss, reason = "seconds of a test")]
                let allowed = (1.0 + TOLERANCE) * ceiling_mbits * 1e6 / 8.0 * secs as f64;
                mbits_between(&self.reads, self.started, until) * 1e6 / 8.0
                    * Duration::from_secs(secs).as_secs_f64()
                    - allowed
            })
            .fold(f64::MIN, f64::max)
    }

    fn seconds(&self) -> Vec<f64> {
        mbits_per_second(&self.reads, self.started, self.started + MEASURE)
    }
}

/// Where a flow goes: download (internet → client) or upload (client → internet).
#[derive(Clone, Copy, Debug)]
enum Way {
    Down,
    Up,
}

/// Runs one single-flow TCP transfer per `(client, way)` at the same time for `MEASURE`.
fn flows(lan: &Lan, wanted: &[(&Client, Way)]) -> Result<Vec<Flow>> {
    let meters = wanted
        .iter()
        .map(|(client, way)| match way {
            Way::Down => TcpMeter::start(&client.netns, addr(client.ipv4)),
            Way::Up => TcpMeter::start(&lan.internet, addr(INTERNET_V4)),
        })
        .collect::<Result<Vec<_>>>()?;
    let starts = thread::scope(|scope| {
        let senders: Vec<_> = wanted
            .iter()
            .zip(&meters)
            .map(|((client, way), meter)| {
                let from = match way {
                    Way::Down => &lan.internet,
                    Way::Up => &client.netns,
                };
                let to = meter.addr();
                scope.spawn(move || tcp_push(from, to, MEASURE))
            })
            .collect();
        senders
            .into_iter()
            .map(|sender| {
                sender
                    .join()
                    .map_err(|_| anyhow!("a sender thread panicked"))?
            })
            .collect::<Result<Vec<_>>>()
    })?;
    // Bytes still in flight when the senders stop would land after the measured window.
    Ok(starts
        .into_iter()
        .zip(&meters)
        .map(|((started, _), meter)| Flow {
            started,
            measured_from: started,
            reads: meter.reads(),
        })
        .collect())
}

/// Checks a flow's goodput against `ceiling_mbits`: within the tolerance over the window,
/// and no second above it by more than the tolerance.
fn assert_at_ceiling(flow: &Flow, ceiling_mbits: f64, what: &str) -> Result<()> {
    let mbits = flow.mbits();
    let beyond = flow.most_beyond(ceiling_mbits);
    eprintln!(
        "{what}: {mbits:.3} Mbit/s over {:?} ({:.1} % of the {ceiling_mbits} Mbit/s \
         ceiling); each second: {:.2?}; at most {:.0} bytes beyond the ceiling + 10 %",
        flow.started + MEASURE - flow.measured_from,
        100.0 * mbits / ceiling_mbits,
        flow.seconds(),
        beyond.max(0.0)
    );
    ensure!(
        (mbits - ceiling_mbits).abs() <= TOLERANCE * ceiling_mbits,
        "{what}: {mbits:.3} Mbit/s is not within 10 % of {ceiling_mbits} Mbit/s"
    );
    ensure!(
        beyond <= START_ALLOWANCE_BYTES,
        "{what}: it got {beyond:.0} bytes more than {ceiling_mbits} Mbit/s + 10 % allows"
    );
    Ok(())
}

/// `hotspotctl ARGS...`, which must succeed.
fn ctl_ok(daemon: &Daemon, args: &[&str]) -> Result<()> {
    let output = daemon.ctl(args)?;
    ensure!(
        output.status.success(),
        "hotspotctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

fn limits(row: &Value) -> (Option<u64>, Option<u64>) {
    (row["down_mbits"].as_u64(), row["up_mbits"].as_u64())
}

#[test]
fn a_client_gets_its_ceiling_each_way() -> Result<()> {
    let lan = Lan::new(1)?;
    let client = &lan.clients[0];
    let daemon = Daemon::start(&lan, &[])?;
    add(&daemon, client, &hour_at("5", "2"))?;
    let row = daemon.client(&client.mac)?;
    ensure!(
        limits(&row) == (Some(5), Some(2)),
        "clients shows the limits: {row}"
    );
    // One direction at a time: with pfifo leaves (no fq_codel here), a saturated upload
    // queues the download's ACKs behind its data, which is a property of the leaf, not of the
    // limit under test.
    let down = flows(&lan, &[(client, Way::Down)])?;
    assert_at_ceiling(&down[0], 5.0, "download at 5 Mbit/s")?;
    let up = flows(&lan, &[(client, Way::Up)])?;
    assert_at_ceiling(&up[0], 2.0, "upload at 2 Mbit/s")?;
    Ok(())
}

#[test]
fn two_clients_each_get_their_own_ceiling() -> Result<()> {
    let lan = Lan::new(2)?;
    let (fast, slow) = (&lan.clients[0], &lan.clients[1]);
    let daemon = Daemon::start(&lan, &[])?;
    add(&daemon, fast, &hour_at("8", "4"))?;
    add(&daemon, slow, &hour_at("3", "2"))?;
    let down = flows(&lan, &[(fast, Way::Down), (slow, Way::Down)])?;
    assert_at_ceiling(&down[0], 8.0, "client at 8 Mbit/s down")?;
    assert_at_ceiling(&down[1], 3.0, "client at 3 Mbit/s down")?;
    // Not below 2 Mbit/s: a single TCP flow at 1 Mbit/s behind a tail-drop queue loses whole
    // retransmission timeouts to one loss (a second at 0.06 Mbit/s was seen under load),
    // which measures TCP, not the limit.
    // Two uploads started together share the IFB's queues while TCP finds its rate: measured
    // once settled (the whole 10 s gave 92 % for the 2 Mbit/s one, the settled 8 s the usual
    // ~95 %).
    let up: Vec<Flow> = flows(&lan, &[(fast, Way::Up), (slow, Way::Up)])?
        .into_iter()
        .map(Flow::after_warmup)
        .collect();
    assert_at_ceiling(&up[0], 4.0, "client at 4 Mbit/s up")?;
    assert_at_ceiling(&up[1], 2.0, "client at 2 Mbit/s up")?;
    Ok(())
}

#[test]
fn global_speed_is_each_clients_limit_and_caps_their_sum() -> Result<()> {
    let lan = Lan::new(2)?;
    let (global, own) = (&lan.clients[0], &lan.clients[1]);
    let daemon = Daemon::start(
        &lan,
        &[
            ("HOTSPOTD__SPEED__GLOBAL_DOWN_MBITS", "8"),
            ("HOTSPOTD__SPEED__GLOBAL_UP_MBITS", "4"),
        ],
    )?;
    daemon.connect_for_an_hour(&global.mac)?;
    let row = daemon.client(&global.mac)?;
    ensure!(
        limits(&row) == (Some(8), Some(4)),
        "a client at the global speed shows the global limits: {row}"
    );
    let down = flows(&lan, &[(global, Way::Down)])?;
    assert_at_ceiling(&down[0], 8.0, "alone at the global 8 Mbit/s down")?;
    let up = flows(&lan, &[(global, Way::Up)])?;
    assert_at_ceiling(&up[0], 4.0, "alone at the global 4 Mbit/s up")?;

    // A second client bought more than the box has: together they still get the global caps.
    add(&daemon, own, &hour_at("20", "20"))?;
    let down = flows(&lan, &[(global, Way::Down), (own, Way::Down)])?;
    let up = flows(&lan, &[(global, Way::Up), (own, Way::Up)])?;
    // The first client's limit is the global cap, the second's (20) is above it: what they
    // share is split in proportion to those limits (docs/sessions.md), 8:20 down, 4:20 up.
    for (pair, cap, way) in [(&down, 8.0, "down"), (&up, 4.0, "up")] {
        let each: Vec<f64> = pair.iter().map(Flow::mbits).collect();
        let sum: f64 = each.iter().sum();
        eprintln!("together {way}: {each:.3?} Mbit/s, sum {sum:.3} of the global {cap}");
        ensure!(
            sum <= (1.0 + TOLERANCE) * cap && sum >= (1.0 - TOLERANCE) * cap,
            "{way}: the clients' sum {sum:.3} Mbit/s is not the global {cap} Mbit/s ± 10 %"
        );
        // Each one's share once the two TCP flows have found their rates (over the whole
        // window, a slow start behind the other's full queue was seen to leave the smaller
        // one 42 % of its share). Half its proportional share is the floor: starving it
        // (the failure this guards against) gives far less.
        let settled: Vec<f64> = pair
            .iter()
            .map(|flow| mbits_between(&flow.reads, flow.started + WARMUP, flow.started + MEASURE))
            .collect();
        let shares = [cap * cap / (cap + 20.0), cap * 20.0 / (cap + 20.0)];
        eprintln!("settled {way}: {settled:.3?} Mbit/s, proportional shares {shares:.3?}");
        ensure!(
            settled
                .iter()
                .zip(shares)
                .all(|(&mbits, share)| mbits >= 0.5 * share),
            "{way}: each client gets at least half its share of the global cap once settled: \
             {settled:.3?} Mbit/s of {shares:.3?}"
        );
        // Over time too: from the start to any second, the sum never ran above the cap
        // (beyond each flow's start allowance).
        for secs in 1..=MEASURE.as_secs() {
            let until = Duration::from_secs(secs);
            let bytes: f64 = pair
                .iter()
                .map(|flow| {
                    mbits_between(&flow.reads, flow.started, flow.started + until) * 1e6 / 8.0
                        * until.as_secs_f64()
                })
                .sum();
            let allowed = (1.0 + TOLERANCE) * cap * 1e6 / 8.0 * until.as_secs_f64()
                + 2.0 * START_ALLOWANCE_BYTES;
            ensure!(
                bytes <= allowed,
                "{way}: the first {secs} s carried {bytes:.0} bytes, over the global {cap} + 10 %"
            );
        }
    }
    Ok(())
}

#[test]
fn chaining_to_a_faster_session_changes_the_rate_without_a_gap() -> Result<()> {
    const FIRST_SECS: u64 = 4;
    let lan = Lan::new(1)?;
    let client = &lan.clients[0];
    let daemon = Daemon::start(&lan, &[])?;
    // Sold first, so the 2 Mbit/s session is the one that runs first (oldest first).
    let first = [
        "--type",
        "time",
        "--time-secs",
        &FIRST_SECS.to_string(),
        "--down-mbits",
        "2",
        "--up-mbits",
        "2",
    ]
    .map(str::to_owned);
    add(&daemon, client, &first)?;
    let sink = UdpSink::start(&client.netns, addr(client.ipv4))?;
    let connected = Instant::now();
    add(&daemon, client, &hour_at("10", "10"))?;
    let row = daemon.client(&client.mac)?;
    ensure!(
        limits(&row) == (Some(2), Some(2)),
        "the 2 Mbit/s session runs first: {row}"
    );
    // A paced UDP stream at 14.4 Mbit/s (1,442-byte frames every 0.8 ms), above both limits:
    // what arrives is what the class lets through, every few ms, so both the rate and any
    // interruption show. (A TCP receiver would also stall for a round trip after any
    // congestion loss, which says nothing about the switch.)
    let stream = UdpStream::start(
        &lan.internet,
        sink.addr(),
        PROBE_PAYLOAD,
        Duration::from_micros(800),
        Duration::from_secs(FIRST_SECS + 5),
    )?;
    ensure!(
        wait_for(Duration::from_secs(FIRST_SECS + 10), || stream.finished()),
        "the stream ends"
    );
    let row = daemon.client(&client.mac)?;
    ensure!(
        limits(&row) == (Some(10), Some(10)),
        "the 10 Mbit/s session runs now: {row}"
    );
    let arrivals: Vec<Read> = sink
        .arrivals()
        .iter()
        .map(|arrival| Read {
            at: arrival.at,
            bytes: arrival.len as u64,
        })
        .collect();
    let first_at = arrivals.first().context("nothing arrived")?.at;
    let switch = connected + Duration::from_secs(FIRST_SECS);
    let second = Duration::from_secs(1);
    let before = mbits_between(&arrivals, first_at + second, switch) / PROBE_GOODPUT;
    let after = mbits_between(&arrivals, switch + second, switch + 4 * second) / PROBE_GOODPUT;
    let window_start = switch
        .checked_sub(second)
        .context("the switch is a second in")?;
    let (gap, gap_at) = largest_read_gap(&arrivals, window_start, switch + second);
    eprintln!(
        "chained 2 → 10 Mbit/s: {before:.3} before, {after:.3} after (frames, Mbit/s); longest \
         silence within 1 s of the switch {gap:?}, starting {:+.3} s from it",
        gap_at.duration_since(connected).as_secs_f64()
            - switch.duration_since(connected).as_secs_f64(),
    );
    ensure!(
        (before - 2.0).abs() <= TOLERANCE * 2.0,
        "before the switch: {before:.3} Mbit/s, not 2 ± 10 %"
    );
    ensure!(
        (after - 10.0).abs() <= TOLERANCE * 10.0,
        "after the switch: {after:.3} Mbit/s, not 10 ± 10 %"
    );
    ensure!(
        gap <= Duration::from_millis(50),
        "nothing reached the client for {gap:?} around the switch"
    );
    Ok(())
}

/// The client classes' ceilings of the download and upload trees (none once the IFB is gone).
fn client_ceils(lan: &Lan) -> Result<(Vec<String>, Vec<String>)> {
    let down = tc::client_ceils(&lan.gateway, LAN_IFACE)?;
    let up = if ifb_exists(lan)? {
        tc::client_ceils(&lan.gateway, IFB)?
    } else {
        Vec::new()
    };
    Ok((down, up))
}

fn ifb_exists(lan: &Lan) -> Result<bool> {
    Ok(lan
        .gateway
        .ip(&["-o", "link", "show"])?
        .contains(&format!(" {IFB}:")))
}

fn expect_ceils(lan: &Lan, down: &[&str], up: &[&str], when: &str) -> Result<()> {
    let (got_down, got_up) = client_ceils(lan)?;
    ensure!(
        got_down == down && got_up == up,
        "{when}: client classes down {got_down:?} up {got_up:?}, expected {down:?} {up:?}"
    );
    Ok(())
}

#[test]
fn classes_follow_running_sessions_and_nothing_is_left_over() -> Result<()> {
    let lan = Lan::new(2)?;
    let (a, b) = (&lan.clients[0], &lan.clients[1]);
    let mut daemon = Daemon::start(&lan, &[])?;
    expect_ceils(&lan, &[], &[], "at start")?;
    add(&daemon, a, &hour_at("5", "2"))?;
    let b_session = add(
        &daemon,
        b,
        &[
            "--type",
            "time",
            "--time-secs",
            "2",
            "--down-mbits",
            "3",
            "--up-mbits",
            "1",
            "--connect",
        ]
        .map(str::to_owned),
    )?;
    expect_ceils(
        &lan,
        &["3Mbit", "5Mbit"],
        &["1Mbit", "2Mbit"],
        "two running",
    )?;

    ctl_ok(&daemon, &["pause", "--mac", &a.mac])?;
    expect_ceils(&lan, &["3Mbit"], &["1Mbit"], "a paused")?;
    ctl_ok(&daemon, &["connect", "--mac", &a.mac])?;
    expect_ceils(&lan, &["3Mbit", "5Mbit"], &["1Mbit", "2Mbit"], "a resumed")?;

    // b is out of sessions once its two seconds are up.
    let b_id = b_session["id"].as_i64().context("session id")?;
    let ended = wait_for(Duration::from_secs(5), || {
        daemon
            .session(b_id)
            .is_ok_and(|session| session["state"] == "consumed")
    });
    ensure!(ended, "b's 2 s session ends");
    expect_ceils(&lan, &["5Mbit"], &["2Mbit"], "b out of sessions")?;

    // A crash keeps the trees (clients stay shaped while the daemon is away); the next run
    // takes them over and drops the class of a session that ended meanwhile.
    let short = add(
        &daemon,
        b,
        &[
            "--type",
            "time",
            "--time-secs",
            "1",
            "--down-mbits",
            "7",
            "--up-mbits",
            "7",
            "--connect",
        ]
        .map(str::to_owned),
    )?;
    ensure!(short["state"] == "running", "b runs again: {short}");
    expect_ceils(&lan, &["5Mbit", "7Mbit"], &["2Mbit", "7Mbit"], "b back")?;
    daemon.kill()?;
    expect_ceils(
        &lan,
        &["5Mbit", "7Mbit"],
        &["2Mbit", "7Mbit"],
        "after SIGKILL",
    )?;
    // Dead for longer than b's 1 s session, which ends meanwhile (the duration under test).
    thread::sleep(Duration::from_millis(1_500));
    daemon.restart(&lan)?;
    expect_ceils(&lan, &["5Mbit"], &["2Mbit"], "after the restart")?;

    // The client's last session removed: it leaves, and so does its class.
    let a_id = daemon.client(&a.mac)?["session_id"]
        .as_i64()
        .context("a's running session")?;
    ctl_ok(&daemon, &["session", "remove", "--id", &a_id.to_string()])?;
    expect_ceils(&lan, &[], &[], "a's session removed")?;

    add(&daemon, a, &hour_at("5", "2"))?;
    let status = daemon.terminate()?;
    ensure!(status.success(), "hotspotd exits cleanly");
    // A stop leaves the trees as a crash does: the limits hold until the next start.
    expect_ceils(&lan, &["5Mbit"], &["2Mbit"], "after SIGTERM")?;
    let released = daemon.release(&lan)?;
    ensure!(
        released.status.success(),
        "hotspotd --release: {}",
        String::from_utf8_lossy(&released.stderr)
    );
    let root = tc::qdiscs(&lan.gateway, LAN_IFACE)?;
    ensure!(
        !root.values().any(|line| line.contains("htb")),
        "no HTB left on {LAN_IFACE} after --release: {root:?}"
    );
    ensure!(
        tc::classes(&lan.gateway, LAN_IFACE)?.is_empty(),
        "no class left"
    );
    ensure!(!ifb_exists(&lan)?, "--release removes the IFB");
    let filters = tc::filters(&lan.gateway, LAN_IFACE)?;
    ensure!(filters.is_empty(), "no tc filter left: {filters:?}");
    Ok(())
}

/// `speed.classes_ready` from the configuration file: the daemon makes that many spare class
/// pairs after it starts (no client yet), and more when a reload raises it.
#[test]
fn the_configured_classes_are_made_ready_and_a_reload_raises_them() -> Result<()> {
    let lan = Lan::new(1)?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[speed]\nclasses_ready = 200\n")?;
    let daemon = Daemon::start_with_config(&lan, &config, &[])?;
    let spares_reach = |count: f64| {
        wait_for(Duration::from_secs(30), || {
            daemon
                .metric("hotspotd_shaping_spare_classes")
                .is_ok_and(|spares| spares >= Some(count))
        })
    };
    ensure!(
        spares_reach(200.0),
        "200 spares after start: {}",
        daemon.log()
    );
    let parked = tc::classes(&lan.gateway, IFB)?
        .values()
        .filter(|line| tc::field(line, "ceil") == Some(tc::PARKED_CEIL))
        .count();
    ensure!(parked >= 200, "{parked} parked classes on the IFB");

    std::fs::write(&config, "[speed]\nclasses_ready = 700\n")?;
    daemon.reload()?;
    ensure!(
        spares_reach(700.0),
        "700 spares after the reload: {}",
        daemon.log()
    );
    Ok(())
}
