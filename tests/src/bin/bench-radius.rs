//! Benchmark: hotspotd as a RADIUS client of a local `FreeRADIUS` (the files of docs/radius/,
//! started as the tests start it: `hotspotd_tests::radius`). Two parts, each with its baseline
//! in the same run; prints markdown tables (see BENCHMARKS.md, "RADIUS").
//!
//! 1. **Login to first packet.** Ten clients send a probe every 200 µs all along; each round
//!    redeems a code the server knows (`POST /v1/vouchers/redeem`: an Access-Request, its
//!    `sqlcounter` queries, the Access-Accept, the sale) and times until that client's next
//!    probe reaches the internet namespace; the session is then removed (its Stop goes out).
//!    Baselines: the same round with a local voucher, alternating with the RADIUS rounds, and
//!    the bare Access-Request round trip to the server from the gateway (no hotspotd).
//! 2. **Interim-Update bursts.** N sessions log in through the server with
//!    `Acct-Interim-Interval` 60; hotspotd is then killed and started again, so every session's
//!    next Interim-Update falls due in the same poll a full interval later: one burst of N, and
//!    every interval after. Timed from the spool filling to its emptying (its table is read
//!    every 20 ms); hotspotd's and the server's CPU over each burst and over whole intervals.
//!    Baseline: the server's own limit, the same N Interim-Updates for the same rows sent by
//!    the benchmark one at a time, as hotspotd's spool sends them.
#![expect(clippy::print_stdout, reason = "a benchmark prints its results")]

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket},
    path::Path,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use hotspotd::{client::ApiClient, config::RadiusConfig, radius};
use hotspotd_tests::{
    Daemon, INTERNET_V4, Lan,
    process::{ProcessSample, cpu_percent, load_average},
    radius::{FreeRadius, SECRET, config_with_radius},
    wait_for,
};
use serde_json::Value;

/// Clients in the LAN for part 1; rounds go round-robin over them.
const CLIENTS: usize = 10;
const PROBE_EVERY: Duration = Duration::from_micros(200);
/// Part 2's logins in flight: a busy portal's worth.
const LOGINS_IN_FLIGHT: usize = 16;
const INTERIM_SECS: u64 = 60;
/// How often part 2 reads the spool's length.
const SPOOL_EVERY: Duration = Duration::from_millis(20);

/// When each source address was last heard from, at the internet side.
type Arrivals = Arc<Mutex<HashMap<IpAddr, Instant>>>;

struct Args {
    rounds: usize,
    sessions: usize,
    bursts: usize,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        rounds: 500,
        sessions: 10_000,
        bursts: 2,
    };
    let mut given = std::env::args().skip(1);
    while let Some(arg) = given.next() {
        let value = given
            .next()
            .with_context(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--rounds" => args.rounds = value.parse().context("--rounds")?,
            "--sessions" => args.sessions = value.parse().context("--sessions")?,
            "--bursts" => args.bursts = value.parse().context("--bursts")?,
            _ => bail!("usage: bench-radius [--rounds N] [--sessions N] [--bursts N]"),
        }
    }
    ensure!(
        args.rounds > 0 && args.sessions > 0 && args.bursts > 0,
        "counts must be > 0"
    );
    Ok(args)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    println!("load average (1 min) at the start: {:.2}", load_average()?);
    let lan = Lan::new(CLIENTS)?;
    let mut server = FreeRadius::start()?;
    let address = server.link(&lan)?;
    let dir = tempfile::tempdir()?;
    let config = config_with_radius(dir.path(), &[format!("{address}:1812")], 2_000)?;
    let mut daemon = Daemon::start_with_config(&lan, &config, &[])?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let api = Arc::new(ApiClient::new(daemon.socket()));

    let logins = login_rounds(&lan, &server, &runtime, &api, args.rounds)?;
    let bare = bare_access_requests(&lan, address, &logins.codes)?;
    print_logins(&logins, &bare, args.rounds);

    interim_bursts(
        &lan,
        (&mut server, address),
        &mut daemon,
        (&runtime, &api),
        &args,
    )?;
    println!("load average (1 min) at the end: {:.2}", load_average()?);
    Ok(())
}

/// Part 1's latencies: RADIUS logins and local vouchers, and the codes used.
struct Logins {
    radius: Vec<Duration>,
    vouchers: Vec<Duration>,
    codes: Vec<String>,
}

fn login_rounds(
    lan: &Lan,
    server: &FreeRadius,
    runtime: &tokio::runtime::Runtime,
    api: &ApiClient,
    rounds: usize,
) -> Result<Logins> {
    let codes = server.add_codes(
        "LOGIN",
        rounds,
        &[("Hotspotd-Max-Total-Octets", "5000000")],
        &[],
    )?;
    let vouchers = create_vouchers(runtime, api, rounds)?;
    let target = SocketAddr::new(IpAddr::V4(INTERNET_V4), 9_999);
    let arrivals: Arrivals = Arc::default();
    let running = Arc::new(AtomicBool::new(true));
    let receiver = {
        let (arrivals, running) = (Arc::clone(&arrivals), Arc::clone(&running));
        lan.internet
            .spawn(move || receive(target, &arrivals, &running))?
    };
    let mut senders = Vec::new();
    for client in &lan.clients {
        let running = Arc::clone(&running);
        senders.push(client.netns.spawn(move || send_probes(target, &running))?);
    }
    let mut result = Logins {
        radius: Vec::with_capacity(rounds),
        vouchers: Vec::with_capacity(rounds),
        codes: codes.clone(),
    };
    for round in 0..rounds {
        let client = &lan.clients[round % CLIENTS];
        for (code, latencies) in [
            (&codes[round], &mut result.radius),
            (&vouchers[round], &mut result.vouchers),
        ] {
            let asked = Instant::now();
            let body = serde_json::json!({ "mac": client.mac, "code": code });
            let view: Value = runtime.block_on(api.post("/v1/vouchers/redeem", &body))?;
            let ip = IpAddr::V4(client.ipv4);
            let mut arrived = None;
            wait_for(Duration::from_secs(5), || {
                arrived = arrivals
                    .lock()
                    .ok()
                    .and_then(|seen| seen.get(&ip).copied())
                    .filter(|at| *at > asked);
                arrived.is_some()
            });
            let arrived =
                arrived.with_context(|| format!("round {round}, {code}: no packet got through"))?;
            latencies.push(arrived - asked);
            // Blocked again before this client's next round; a RADIUS session's Stop goes out.
            let id = view["session_id"]
                .as_i64()
                .with_context(|| format!("{code} connected no session: {view}"))?;
            runtime.block_on(api.delete(&format!("/v1/sessions/{id}")))?;
        }
    }
    running.store(false, Ordering::SeqCst);
    let _ = receiver.join();
    for sender in senders {
        let _ = sender.join();
    }
    Ok(result)
}

/// The Access-Request round trip alone, from the gateway's namespace, for each of `codes`
/// (now each with one radacct row, so `sqlcounter` sums as much as in part 1).
fn bare_access_requests(lan: &Lan, server: Ipv4Addr, codes: &[String]) -> Result<Vec<Duration>> {
    let config = RadiusConfig {
        auth_server: format!("{server}:1812"),
        secret: SECRET.to_owned(),
        timeout_ms: 2_000,
        retries: 0,
        ..RadiusConfig::default()
    };
    let codes = codes.to_vec();
    lan.gateway.run(move || -> Result<Vec<Duration>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut latencies = Vec::with_capacity(codes.len());
        for code in codes {
            let login = radius::Login {
                user: code.clone(),
                password: code,
                mac: "02:00:00:00:00:01".parse()?,
                ip: None,
            };
            let asked = Instant::now();
            let outcome = runtime.block_on(radius::authenticate(&config, &login))?;
            latencies.push(asked.elapsed());
            ensure!(
                matches!(outcome, radius::Outcome::Accept(_)),
                "{}: {outcome:?}",
                login.user
            );
        }
        Ok(latencies)
    })?
}

fn quantile(latencies: &[Duration], quantile: f64) -> f64 {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "an index into a short vector"
    )]
    let index = ((sorted.len().saturating_sub(1)) as f64 * quantile).round() as usize;
    sorted.get(index).map_or(0.0, |at| at.as_secs_f64() * 1e3)
}

fn print_logins(logins: &Logins, bare: &[Duration], rounds: usize) {
    println!();
    println!("| {rounds} rounds over {CLIENTS} clients | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|");
    for (what, latencies) in [
        (
            "RADIUS code: redeem → first packet through",
            logins.radius.as_slice(),
        ),
        (
            "local voucher (baseline): redeem → first packet through",
            logins.vouchers.as_slice(),
        ),
        (
            "bare Access-Request → Access-Accept, no hotspotd (the server's part)",
            bare,
        ),
    ] {
        println!(
            "| {what} | {:.2} | {:.2} | {:.2} |",
            quantile(latencies, 0.5),
            quantile(latencies, 0.99),
            quantile(latencies, 1.0)
        );
    }
    println!(
        "| probe interval (resolution) | {:.2} | | |",
        PROBE_EVERY.as_secs_f64() * 1e3
    );
}

/// Part 2: `args.sessions` RADIUS sessions, then `args.bursts` Interim-Update bursts.
fn interim_bursts(
    lan: &Lan,
    (server, address): (&mut FreeRadius, Ipv4Addr),
    daemon: &mut Daemon,
    (runtime, api): (&tokio::runtime::Runtime, &Arc<ApiClient>),
    args: &Args,
) -> Result<()> {
    let interval = INTERIM_SECS.to_string();
    let codes = server.add_codes(
        "INTERIM",
        args.sessions,
        &[],
        &[
            ("Acct-Interim-Interval", &interval),
            ("Session-Timeout", "86400"),
        ],
    )?;
    let started = Instant::now();
    let login_latencies = runtime
        .block_on(log_in_all(api, codes))
        .with_context(|| format!("the server's log ends:\n{}", log_tail(server)))?;
    let took = started.elapsed();
    let spool_path = daemon
        .socket()
        .parent()
        .context("the socket's folder")?
        .join("hotspotd.sqlite");
    // Every Start in radacct (the spool may not have written them all yet when logins end).
    ensure!(
        wait_for(Duration::from_mins(10), || running_rows(server)
            .is_ok_and(|rows| rows.len() == args.sessions)
            && spooled(&spool_path).is_ok_and(|n| n == 0)),
        "the Starts were not all delivered: {:?} radacct rows",
        running_rows(server).map(|rows| rows.len())
    );
    let rows = running_rows(server)?;
    println!();
    println!(
        "{} RADIUS logins, {LOGINS_IN_FLIGHT} in flight: {:.1} s (p50 {:.1} ms, p99 {:.1} ms each), every Start in radacct",
        args.sessions,
        took.as_secs_f64(),
        quantile(&login_latencies, 0.5),
        quantile(&login_latencies, 0.99)
    );

    // Every session's next Interim-Update now falls due together, INTERIM_SECS from the start.
    daemon.kill()?;
    daemon.restart(lan)?;
    let radius_pid = server.pid().context("the server runs")?;
    // Each burst's start, hotspotd's CPU time then, and its length and CPU time.
    let mut bursts: Vec<(Instant, Duration, Duration, Duration)> = Vec::new();
    println!();
    println!(
        "| burst of {} Interim-Updates | spool filled → empty, s | per request, ms | hotspotd CPU during, % of a core | server CPU during, % |",
        args.sessions
    );
    println!("|---|---:|---:|---:|---:|");
    for burst in 1..=args.bursts {
        ensure!(
            wait_for(Duration::from_secs(INTERIM_SECS * 2), || spooled(
                &spool_path
            )
            .is_ok_and(|n| n > 0)),
            "burst {burst} did not come"
        );
        let (at, ours, theirs) = (
            Instant::now(),
            ProcessSample::read(daemon.pid())?,
            ProcessSample::read(radius_pid)?,
        );
        while spooled(&spool_path)? > 0 {
            thread::sleep(SPOOL_EVERY);
        }
        let took = at.elapsed();
        let (ours_after, theirs_after) = (
            ProcessSample::read(daemon.pid())?,
            ProcessSample::read(radius_pid)?,
        );
        bursts.push((at, ours.cpu, took, ours_after.cpu.saturating_sub(ours.cpu)));
        #[expect(clippy::cast_precision_loss, reason = "a count")]
        let per_request = took.as_secs_f64() * 1e3 / args.sessions as f64;
        println!(
            "| hotspotd's spool, burst {burst} | {:.1} | {per_request:.2} | {:.1} | {:.1} |",
            took.as_secs_f64(),
            cpu_percent(&ours, &ours_after, took),
            cpu_percent(&theirs, &theirs_after, took),
        );
    }
    // The server's own limit: the same requests for the same rows, one at a time.
    let (ours, theirs) = (Instant::now(), ProcessSample::read(radius_pid)?);
    let gateway_to = SocketAddr::new(address.into(), 1813);
    lan.gateway
        .run(move || send_interims(gateway_to, &rows))??;
    let took = ours.elapsed();
    #[expect(clippy::cast_precision_loss, reason = "a count")]
    let per_request = took.as_secs_f64() * 1e3 / args.sessions as f64;
    println!(
        "| the server alone (baseline): the same, sent one at a time by the benchmark | {:.1} | {per_request:.2} | — | {:.1} |",
        took.as_secs_f64(),
        cpu_percent(&theirs, &ProcessSample::read(radius_pid)?, took),
    );
    print_intervals(&bursts, args.sessions);
    Ok(())
}

/// hotspotd's CPU over each whole interval, from one burst's start to the next's, and outside
/// the burst (the baseline: the same sessions with nothing to send).
fn print_intervals(bursts: &[(Instant, Duration, Duration, Duration)], sessions: usize) {
    println!();
    println!(
        "| {sessions} sessions, Interim-Update every {INTERIM_SECS} s | interval s | hotspotd CPU, % of a core | outside the burst (baseline), % |"
    );
    println!("|---|---:|---:|---:|");
    for (n, pair) in bursts.windows(2).enumerate() {
        let [(at, cpu_at, took, burst_cpu), (next, cpu_next, _, _)] = pair else {
            continue;
        };
        let interval = *next - *at;
        let used = cpu_next.saturating_sub(*cpu_at);
        let quiet = interval.saturating_sub(*took);
        println!(
            "| interval {} | {:.1} | {:.2} | {:.2} |",
            n + 1,
            interval.as_secs_f64(),
            100.0 * used.as_secs_f64() / interval.as_secs_f64(),
            100.0 * used.saturating_sub(*burst_cpu).as_secs_f64()
                / quiet.as_secs_f64().max(f64::EPSILON),
        );
    }
}

/// Redeems each of `codes` for a MAC of its own, `LOGINS_IN_FLIGHT` at a time; each login's
/// latency.
async fn log_in_all(api: &Arc<ApiClient>, codes: Vec<String>) -> Result<Vec<Duration>> {
    let codes = Arc::new(codes);
    let next = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(codes.len())));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..LOGINS_IN_FLIGHT {
        let (api, next, latencies, codes) = (
            Arc::clone(api),
            Arc::clone(&next),
            Arc::clone(&latencies),
            Arc::clone(&codes),
        );
        workers.spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(code) = codes.get(index) else {
                    return Ok::<_, anyhow::Error>(());
                };
                let mac = format!(
                    "02:5d:00:{:02x}:{:02x}:{:02x}",
                    (index >> 16) & 0xff,
                    (index >> 8) & 0xff,
                    index & 0xff
                );
                let body = serde_json::json!({ "mac": mac, "code": code });
                let asked = Instant::now();
                let view: Value = api.post("/v1/vouchers/redeem", &body).await?;
                let took = asked.elapsed();
                ensure!(view["state"] == "connected", "{code} for {mac}: {view}");
                latencies
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(took);
            }
        });
    }
    while let Some(worker) = workers.join_next().await {
        worker??;
    }
    let latencies = latencies.lock().unwrap_or_else(PoisonError::into_inner);
    Ok(latencies.clone())
}

/// The last lines of the server's log.
fn log_tail(server: &FreeRadius) -> String {
    let log = server.log();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Accounting-Requests waiting in hotspotd's spool (its session database, read-only).
fn spooled(path: &Path) -> Result<i64> {
    let db =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    Ok(db.query_row("SELECT COUNT(*) FROM radius_spool", [], |row| row.get(0))?)
}

/// A running session as radacct holds it: (Acct-Session-Id, User-Name, NAS-Identifier).
type Row = (String, String, String);

fn running_rows(server: &FreeRadius) -> Result<Vec<Row>> {
    let db = server.db()?;
    let mut statement = db.prepare(
        "SELECT acctsessionid, username, nasidentifier FROM radacct
         WHERE acctstoptime IS NULL AND username LIKE 'INTERIM%'",
    )?;
    let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One Interim-Update per row to `to`, each sent when the one before was answered.
fn send_interims(to: SocketAddr, rows: &[Row]) -> Result<()> {
    use radius::{codec, dict};
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    socket.set_read_timeout(Some(Duration::from_secs(2)))?;
    let now = u32::try_from(chrono::Utc::now().timestamp())?;
    let mut answer = [0_u8; 4096];
    for (n, (session, user, nas)) in rows.iter().enumerate() {
        let identifier = u8::try_from(n % 256)?;
        let packet = codec::Packet {
            code: dict::ACCOUNTING_REQUEST,
            identifier,
            authenticator: [0; 16],
            attributes: vec![
                codec::Attribute::integer(dict::ACCT_STATUS_TYPE, dict::ACCT_INTERIM_UPDATE),
                codec::Attribute::text(dict::USER_NAME, user),
                codec::Attribute::text(dict::ACCT_SESSION_ID, session),
                codec::Attribute::text(dict::NAS_IDENTIFIER, nas),
                codec::Attribute::integer(dict::EVENT_TIMESTAMP, now),
                codec::Attribute::integer(dict::ACCT_SESSION_TIME, 120),
            ],
        };
        let bytes = codec::encode_signed_request(packet, SECRET.as_bytes(), false)?;
        socket.send_to(&bytes, to)?;
        loop {
            let got = socket
                .recv(&mut answer)
                .with_context(|| format!("no Accounting-Response for {session}"))?;
            if got >= 2 && answer[0] == dict::ACCOUNTING_RESPONSE && answer[1] == identifier {
                break;
            }
        }
    }
    Ok(())
}

/// `count` local vouchers of a 1,000 MB data plan; their codes.
fn create_vouchers(
    runtime: &tokio::runtime::Runtime,
    api: &ApiClient,
    count: usize,
) -> Result<Vec<String>> {
    let body = serde_json::json!({
        "count": count, "type": "data", "data_mb": 1_000, "use_global_speed": true,
    });
    let created: Vec<Value> = runtime.block_on(api.post("/v1/vouchers", &body))?;
    created
        .iter()
        .map(|voucher| voucher["code"].as_str().map(str::to_owned))
        .collect::<Option<_>>()
        .context("the vouchers' codes")
}

fn receive(at: SocketAddr, arrivals: &Arrivals, running: &AtomicBool) -> Result<()> {
    let socket = UdpSocket::bind(at)?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut buffer = [0u8; 256];
    while running.load(Ordering::SeqCst) {
        if let Ok((_, from)) = socket.recv_from(&mut buffer)
            && let Ok(mut seen) = arrivals.lock()
        {
            seen.insert(from.ip(), Instant::now());
        }
    }
    Ok(())
}

fn send_probes(to: SocketAddr, running: &AtomicBool) -> Result<()> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    while running.load(Ordering::SeqCst) {
        // Dropped by the gate while the client has no session: that is the point.
        let _ = socket.send_to(&[0u8; 64], to);
        thread::sleep(PROBE_EVERY);
    }
    Ok(())
}
