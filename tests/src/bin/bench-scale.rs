//! Benchmark: hotspotd with thousands of clients, each running a session and sending a packet
//! every second. For each client count (0 is the baseline, measured in the same run): the time
//! to sell and connect every session through the API, then over a quiet window (nothing but the
//! 1 s poll) the poll duration, the periodic save, resident memory and CPU, and over a loaded
//! window the latency of a steady 100 requests/s mix; finally the full `GET /v1/clients`, an
//! unpaid device's front door (its web request redirected, the RFC 8908 answer) and
//! `GET /metrics` (whole, and without the per-client series). Right after the first sales, a turnover at full house: [`TURNOVER`] (`--turnover`) running
//! sessions removed, then as many sold again to those devices, each sale timed. The clients are a [`Crowd`]: crafted frames from one client namespace, one
//! source MAC and IPv6 address per client. Their sender is a thread of this process, so its CPU
//! is not the daemon's. Prints markdown tables; see BENCHMARKS.md.
#![expect(clippy::print_stdout, reason = "a benchmark prints its results")]

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use hotspotd::client::{ApiClient, ClientError};
use hotspotd_tests::{
    Crowd, Daemon, GATEWAY_LAN_V4, INTERNET_V4, INTERNET_V6, Lan, UdpSink,
    frames::XorShift,
    http::timed_gets,
    process::{ProcessSample, cpu_percent, load_average},
};
use serde_json::Value;

/// Sessions removed and sold again once the crowd is in: sales at N running clients, as a
/// busy box sees them (clients leaving, others arriving).
const TURNOVER: usize = 1_000;
/// Sessions sold at once: the portal's requests in flight.
const SELL_CONCURRENCY: usize = 16;
/// How often the quiet window asks `/v1/status` for the last poll's duration: often enough to
/// see every 1 s poll, rarely enough to cost the daemon nothing measurable.
const STATUS_EVERY: Duration = Duration::from_millis(250);
/// After every client is seen active: time for the saves that followed the sales to finish.
const WARM_UP: Duration = Duration::from_secs(5);
/// How long the daemon may take to make the spare classes for every client.
const SPARES_TIMEOUT: Duration = Duration::from_mins(3);
/// How long every client may take to show traffic after the crowd starts sending.
const ACTIVE_TIMEOUT: Duration = Duration::from_mins(1);
/// Full listings (`GET /v1/clients`) measured, one a second.
const FULL_LISTINGS: usize = 5;
/// The front door's requests from an unpaid device, of each kind, at 50 a second: 10 s, so
/// ten 1 s polls fall among them.
const PORTAL_REQUESTS: usize = 500;
const PORTAL_PACE: Duration = Duration::from_millis(20);
/// `GET /metrics?clients=false` requests timed, one every [`PORTAL_PACE`].
const LIGHT_METRICS_REQUESTS: usize = 200;
const PORTAL_PORT: u16 = 2050;

struct Args {
    clients: Vec<usize>,
    window: Duration,
    rate_per_second: u32,
    /// `speed.classes_ready`; `None`: the run's client count.
    classes_ready: Option<usize>,
    /// Running sessions removed and sold again at full house.
    turnover: usize,
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!(
        "load average before: {:.2}; {} CPUs",
        load_average()?,
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    let mut runs = Vec::new();
    for &clients in &args.clients {
        let run = measure(&runtime, clients, &args)
            .with_context(|| format!("the run with {clients} clients"))?;
        print_run(&run);
        runs.push(run);
    }
    print_summary(&runs, &args);
    Ok(())
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        clients: vec![0, 1_000, 10_000],
        window: Duration::from_secs(30),
        rate_per_second: 100,
        classes_ready: None,
        turnover: TURNOVER,
    };
    let mut given = std::env::args().skip(1);
    while let Some(arg) = given.next() {
        let value = given
            .next()
            .with_context(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--clients" => {
                args.clients = value
                    .split(',')
                    .map(|count| count.trim().parse().context("--clients"))
                    .collect::<Result<_>>()?;
            }
            "--window-secs" => {
                args.window = Duration::from_secs(value.parse().context("--window-secs")?);
            }
            "--rate" => args.rate_per_second = value.parse().context("--rate")?,
            "--classes-ready" => {
                args.classes_ready = Some(value.parse().context("--classes-ready")?);
            }
            "--turnover" => args.turnover = value.parse().context("--turnover")?,
            _ => {
                bail!(
                    "usage: bench-scale [--clients 0,1000,10000] [--window-secs 30] [--rate 100] \
                     [--classes-ready N (default: the client count)] [--turnover 1000]"
                )
            }
        }
    }
    ensure!(args.rate_per_second > 0, "--rate must be > 0");
    Ok(args)
}

/// Everything measured with one client count.
struct Run {
    clients: usize,
    load_before: f64,
    load_after: f64,
    selling: Latencies,
    selling_took: Duration,
    /// Sales to new devices after as many sessions were removed, at full house.
    turnover: Latencies,
    turnover_took: Duration,
    quiet: Window,
    loaded: Window,
    /// Per kind of request in the loaded window: path shape, latencies, failures.
    requests: Vec<(&'static str, Latencies, usize)>,
    listing: Latencies,
    listing_bytes: usize,
    /// The front door for an unpaid device while the crowd runs: the redirect of its web
    /// request and the RFC 8908 answer, each at [`PORTAL_PACE`].
    portal_redirect: Latencies,
    portal_captive: Latencies,
    metrics: Latencies,
    metrics_bytes: usize,
    /// `GET /metrics?clients=false`, without the per-client series.
    light_metrics: Latencies,
    light_metrics_bytes: usize,
    peak_rss_kib: u64,
    polls_counted: u64,
    frames_sent: u64,
    frames_delivered: usize,
}

/// A window of steady state: what the daemon used, and the polls and saves it reported.
#[derive(Default)]
struct Window {
    cpu_percent: f64,
    /// Highest `VmRSS` seen, sampled each second, KiB.
    rss_kib: u64,
    /// Distinct `last_poll_ms` / `last_save_ms` values seen in `/v1/status`: one per poll
    /// and save (two of either taking the same nanoseconds are not told apart).
    polls_ms: BTreeSet<u64>,
    saves_ms: BTreeSet<u64>,
}

impl Window {
    fn note_status(&mut self, status: &Value) {
        // Kept as f64 bits: ordered like the values, since they are positive.
        if let Some(poll) = status["last_poll_ms"].as_f64().filter(|ms| *ms > 0.0) {
            self.polls_ms.insert(poll.to_bits());
        }
        if let Some(save) = status["last_save_ms"].as_f64().filter(|ms| *ms > 0.0) {
            self.saves_ms.insert(save.to_bits());
        }
    }

    fn polls(&self) -> Vec<f64> {
        self.polls_ms
            .iter()
            .map(|bits| f64::from_bits(*bits))
            .collect()
    }
}

/// Every save seen in either window, once (the same save may show in both).
fn saves(run: &Run) -> Vec<f64> {
    run.quiet
        .saves_ms
        .union(&run.loaded.saves_ms)
        .map(|bits| f64::from_bits(*bits))
        .collect()
}

/// Request latencies, ms, sorted when read.
#[derive(Default, Clone)]
struct Latencies(Vec<f64>);

impl Latencies {
    fn push(&mut self, took: Duration) {
        self.0.push(took.as_secs_f64() * 1e3);
    }

    fn at(&self, quantile: f64) -> f64 {
        quantile_of(&self.0, quantile)
    }
}

/// The `quantile` (0..=1) of `values` by the nearest rank; NaN for none.
fn quantile_of(values: &[f64], quantile: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "an index into a vector of samples"
    )]
    let rank = ((sorted.len() as f64 * quantile).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn measure(runtime: &tokio::runtime::Runtime, clients: usize, args: &Args) -> Result<Run> {
    let load_before = load_average()?;
    let lan = Lan::new(1)?;
    let crowd = Crowd::new(clients)?;
    let (daemon, api) = start_daemon(runtime, &lan, clients, args)?;
    let pid = daemon.pid();

    let (selling, selling_took, turnover, turnover_took) =
        runtime.block_on(sales(&api, &crowd, args.turnover))?;
    crowd.add_neighbours(&lan.gateway)?;
    let sink = UdpSink::start(&lan.internet, SocketAddr::new(IpAddr::V6(INTERNET_V6), 0))?;
    let SocketAddr::V6(to) = sink.addr() else {
        bail!("the sink is IPv6");
    };
    let sender = crowd.start_sending(
        &lan.clients[0].netns,
        parse_mac(lan.bridge_mac())?,
        to,
        Duration::from_secs(1),
    )?;
    runtime.block_on(wait_until_active(&api, &crowd))?;
    std::thread::sleep(WARM_UP);

    let (metrics_text, metrics_took) = runtime.block_on(timed_text(&api, "/metrics"))?;
    let polls_before = poll_count(&metrics_text)?;
    let quiet = runtime.block_on(quiet_window(&api, pid, args.window))?;
    let (metrics_text, _) = runtime.block_on(timed_text(&api, "/metrics"))?;
    let polls_counted = poll_count(&metrics_text)? - polls_before;
    let mut metrics = Latencies::default();
    metrics.push(metrics_took);

    let (loaded, requests) = runtime.block_on(loaded_window(&api, pid, &crowd, args))?;

    let mut listing = Latencies::default();
    let mut listing_bytes = 0;
    for _ in 0..FULL_LISTINGS {
        let (body, took) = runtime.block_on(timed_text(&api, "/v1/clients"))?;
        listing.push(took);
        listing_bytes = body.len();
        std::thread::sleep(Duration::from_secs(1));
    }
    let phone = &lan.clients[0].netns;
    let mut portal_redirect = Latencies::default();
    let internet = SocketAddr::new(IpAddr::V4(INTERNET_V4), 80);
    for took in timed_gets(
        phone,
        internet,
        "/",
        PORTAL_REQUESTS,
        Some(PORTAL_PACE),
        302,
    )? {
        portal_redirect.push(took);
    }
    let mut portal_captive = Latencies::default();
    let portal = SocketAddr::new(IpAddr::V4(GATEWAY_LAN_V4), PORTAL_PORT);
    for took in timed_gets(
        phone,
        portal,
        "/api/captive",
        PORTAL_REQUESTS,
        Some(PORTAL_PACE),
        200,
    )? {
        portal_captive.push(took);
    }
    let (light_metrics, light_metrics_bytes) = time_light_metrics(runtime, &api)?;
    let (metrics_text, metrics_took) = runtime.block_on(timed_text(&api, "/metrics"))?;
    metrics.push(metrics_took);
    let peak_rss_kib = ProcessSample::read(pid)?.peak_rss_kib;

    let frames_sent = sender.stop()?;
    sink.sync(&lan.gateway)?;
    let frames_delivered = sink.received();
    drop(daemon);
    Ok(Run {
        clients,
        load_before,
        load_after: load_average()?,
        selling,
        selling_took,
        turnover,
        turnover_took,
        quiet,
        loaded,
        requests,
        listing,
        listing_bytes,
        portal_redirect,
        portal_captive,
        metrics,
        metrics_bytes: metrics_text.len(),
        light_metrics,
        light_metrics_bytes,
        peak_rss_kib,
        polls_counted,
        frames_sent,
        frames_delivered,
    })
}

/// The daemon for a run: the shipped configuration but for the harness's paths (a 1 s poll,
/// a save every 30 s), with classes made ready for every client, as an operator sets
/// `speed.classes_ready` to the box's peak (unless `--classes-ready` says otherwise). Returns
/// once the classes are made.
fn start_daemon(
    runtime: &tokio::runtime::Runtime,
    lan: &Lan,
    clients: usize,
    args: &Args,
) -> Result<(Daemon, Arc<ApiClient>)> {
    let ready = args.classes_ready.unwrap_or(clients);
    let daemon = Daemon::start(
        lan,
        &[
            ("HOTSPOTD__ACCOUNTING__POLL_INTERVAL_MS", "1000"),
            ("HOTSPOTD__SPEED__CLASSES_READY", &ready.to_string()),
        ],
    )?;
    let api = Arc::new(ApiClient::new(daemon.socket()));
    let spares = ready.max(hotspotd::shaping::POOL_LOW);
    let spares_took = runtime.block_on(wait_for_spares(&api, spares))?;
    println!(
        "{clients} clients: {spares} spare class pairs made ready in {:.1} s after start",
        spares_took.as_secs_f64()
    );
    Ok((daemon, api))
}

fn parse_mac(text: &str) -> Result<[u8; 6]> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|byte| u8::from_str_radix(byte, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("a MAC: {text}"))?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("a MAC has 6 bytes: {text}"))
}

/// Sells every member of `crowd` a 2-hour or 100 GB session and connects it, as a portal
/// would, `SELL_CONCURRENCY` requests at a time. Each must come back running.
async fn sell(api: &Arc<ApiClient>, crowd: &Crowd) -> Result<Latencies> {
    sell_to(
        api,
        (0..crowd.len())
            .map(|index| crowd.mac_string(index))
            .collect(),
    )
    .await
}

/// Sells every member of `crowd` a session ([`sell`]), then turns `turnover` of them over
/// ([`turn_over`]), waiting after each until every client runs in its own classes; prints
/// both. Returns the sales' latencies and how long each part took.
async fn sales(
    api: &Arc<ApiClient>,
    crowd: &Crowd,
    turnover: usize,
) -> Result<(Latencies, Duration, Latencies, Duration)> {
    let sold_at = Instant::now();
    let selling = sell(api, crowd).await?;
    let selling_took = sold_at.elapsed();
    let fill_classes = wait_for_classes(api).await?;
    let (turnover, turnover_took) = turn_over(api, crowd, turnover).await?;
    let turnover_classes = wait_for_classes(api).await?;
    print_sales(
        crowd.len(),
        &selling,
        selling_took,
        &turnover,
        turnover_took,
    );
    eprintln!(
        "{} clients: every client in its own classes {:.2} s after the last sale of the fill, {:.2} s after the last of the turnover",
        crowd.len(),
        fill_classes.as_secs_f64(),
        turnover_classes.as_secs_f64()
    );
    Ok((selling, selling_took, turnover, turnover_took))
}

/// Prints the sales at once (on stderr): they are what issue 10 measures, and a later step
/// may fail.
fn print_sales(
    clients: usize,
    selling: &Latencies,
    selling_took: Duration,
    turnover: &Latencies,
    turnover_took: Duration,
) {
    eprintln!(
        "{clients} clients: sell + connect all {:.1} s, one sale p50 / p99 {:.2} / {:.2} ms; turnover: {} sales {:.2} s, p50 / p99 {:.2} / {:.2} ms",
        selling_took.as_secs_f64(),
        selling.at(0.5),
        selling.at(0.99),
        turnover.0.len(),
        turnover_took.as_secs_f64(),
        turnover.at(0.5),
        turnover.at(0.99),
    );
}

/// Removes the running sessions of the first `count` members of `crowd` (or all), which
/// leave the daemon with them, then sells each of them a new session as [`sell`] does, as
/// devices arriving at a full house; returns those sales and how long they took together.
async fn turn_over(
    api: &Arc<ApiClient>,
    crowd: &Crowd,
    count: usize,
) -> Result<(Latencies, Duration)> {
    let count = count.min(crowd.len());
    for index in 0..count {
        let mac = crowd.mac_string(index);
        let client: Value = api.get(&format!("/v1/clients/{mac}")).await?;
        let id = client["session_id"]
            .as_i64()
            .with_context(|| format!("the running session of {mac}: {client}"))?;
        api.delete(&format!("/v1/sessions/{id}")).await?;
    }
    let newcomers = (0..count).map(|index| crowd.mac_string(index)).collect();
    let sold_at = Instant::now();
    let latencies = sell_to(api, newcomers).await?;
    Ok((latencies, sold_at.elapsed()))
}

/// Sells each of `macs` a session like [`sell`]'s and connects it, `SELL_CONCURRENCY` at a
/// time.
async fn sell_to(api: &Arc<ApiClient>, macs: Vec<String>) -> Result<Latencies> {
    let crowd = Arc::new(macs);
    let next = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Latencies::default()));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..SELL_CONCURRENCY {
        let (api, next, latencies, crowd) = (
            Arc::clone(api),
            Arc::clone(&next),
            Arc::clone(&latencies),
            crowd.clone(),
        );
        workers.spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= crowd.len() {
                    return Ok::<_, anyhow::Error>(());
                }
                let mac = &crowd[index];
                let body = serde_json::json!({
                    "mac": mac, "type": "time_or_data", "time_secs": 7_200,
                    "data_mb": 100_000, "use_global_speed": true, "connect": true,
                });
                let asked = Instant::now();
                let session: Value = api.post("/v1/sessions", &body).await?;
                let took = asked.elapsed();
                ensure!(
                    session["state"] == "running",
                    "the session of {mac} does not run: {session}"
                );
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

/// Waits until the daemon has counted traffic of every member.
async fn wait_until_active(api: &ApiClient, crowd: &Crowd) -> Result<()> {
    let deadline = Instant::now() + ACTIVE_TIMEOUT;
    loop {
        let clients: Vec<Value> = api.get("/v1/clients").await?;
        let active = clients
            .iter()
            .filter(|client| {
                client["mac"]
                    .as_str()
                    .is_some_and(|mac| mac.starts_with("02:5c:"))
                    && client["up_packets"].as_u64().unwrap_or(0) > 0
            })
            .count();
        if active == crowd.len() {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "only {active} of {} clients showed traffic within {ACTIVE_TIMEOUT:?}",
            crowd.len()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn timed_text(api: &ApiClient, path: &str) -> Result<(String, Duration)> {
    let asked = Instant::now();
    let text = api.get_text(path).await?;
    Ok((text, asked.elapsed()))
}

/// Waits until the daemon holds `count` spare class pairs (`speed.classes_ready`), returning
/// how long that took from now.
async fn wait_for_spares(api: &ApiClient, count: usize) -> Result<Duration> {
    let started = Instant::now();
    loop {
        let spares = light_metric(api, "hotspotd_shaping_spare_classes").await?;
        #[expect(clippy::cast_precision_loss, reason = "a count below 2^16")]
        if spares >= count as f64 {
            return Ok(started.elapsed());
        }
        ensure!(
            started.elapsed() < SPARES_TIMEOUT,
            "{spares} spare classes of {count} after {SPARES_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until every client sold a session runs in its own classes (the shaper's backlog is
/// worked off: `hotspotd_shaping_clients_awaiting_classes` is 0); returns how long that took.
/// Zero with a daemon older than that metric, whose sales waited for their classes.
async fn wait_for_classes(api: &ApiClient) -> Result<Duration> {
    const AWAITING: &str = "hotspotd_shaping_clients_awaiting_classes";
    let started = Instant::now();
    if !api
        .get_text("/metrics?clients=false")
        .await?
        .contains(AWAITING)
    {
        return Ok(Duration::ZERO);
    }
    loop {
        let awaiting = light_metric(api, AWAITING).await?;
        if awaiting == 0.0 {
            return Ok(started.elapsed());
        }
        ensure!(
            started.elapsed() < SPARES_TIMEOUT,
            "{awaiting} clients still without their classes after {SPARES_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One sample of `/metrics?clients=false`.
async fn light_metric(api: &ApiClient, name: &str) -> Result<f64> {
    let metrics = api.get_text("/metrics?clients=false").await?;
    let samples = hotspotd::metrics::parse(&metrics).map_err(anyhow::Error::msg)?;
    samples
        .iter()
        .find(|(sample, _)| sample == name)
        .map(|(_, value)| *value)
        .with_context(|| format!("/metrics has {name}"))
}

/// How many polls the daemon has made: `hotspotd_poll_seconds_count`.
fn poll_count(metrics: &str) -> Result<u64> {
    let samples = hotspotd::metrics::parse(metrics).map_err(anyhow::Error::msg)?;
    let count = samples
        .iter()
        .find(|(name, _)| name == "hotspotd_poll_seconds_count")
        .map(|(_, value)| *value)
        .context("/metrics has hotspotd_poll_seconds_count")?;
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a count"
    )]
    Ok(count as u64)
}

/// Nothing but the daemon's own work for `window`; `/v1/status` read every `STATUS_EVERY`.
async fn quiet_window(api: &ApiClient, pid: u32, window: Duration) -> Result<Window> {
    let mut result = Window::default();
    // The poll and save before the window are not in it.
    let earlier: Value = api.get("/v1/status").await?;
    let mut earlier_window = Window::default();
    earlier_window.note_status(&earlier);
    let started = Instant::now();
    let before = ProcessSample::read(pid)?;
    let mut ticks = tokio::time::interval(STATUS_EVERY);
    let mut next_rss = started;
    while started.elapsed() < window {
        ticks.tick().await;
        let status: Value = api.get("/v1/status").await?;
        result.note_status(&status);
        if Instant::now() >= next_rss {
            result.rss_kib = result.rss_kib.max(ProcessSample::read(pid)?.rss_kib);
            next_rss += Duration::from_secs(1);
        }
    }
    let after = ProcessSample::read(pid)?;
    result.cpu_percent = cpu_percent(&before, &after, started.elapsed());
    result
        .polls_ms
        .retain(|poll| !earlier_window.polls_ms.contains(poll));
    result
        .saves_ms
        .retain(|save| !earlier_window.saves_ms.contains(save));
    Ok(result)
}

/// The request kinds of the loaded window, in turn.
const REQUEST_KINDS: [&str; 3] = [
    "GET /v1/clients/{mac}",
    "GET /v1/sessions?mac={mac}",
    "GET /v1/status",
];

/// A steady `rate_per_second` requests for `window`, each sent on its schedule whether or not
/// the earlier ones have been answered (an open loop, so a slow answer cannot hide the
/// requests that would have queued behind it), each timed from when it was due.
async fn loaded_window(
    api: &Arc<ApiClient>,
    pid: u32,
    crowd: &Crowd,
    args: &Args,
) -> Result<(Window, Vec<(&'static str, Latencies, usize)>)> {
    let period = Duration::from_secs(1) / args.rate_per_second;
    let total = u32::try_from(args.window.as_secs())
        .unwrap_or(u32::MAX)
        .saturating_mul(args.rate_per_second);
    // An unknown client (404) for the baseline without clients.
    let macs = if crowd.is_empty() {
        Crowd::new(1)?
    } else {
        crowd.clone()
    };
    let mut random = XorShift::new(0x5ca1e);
    let window = Arc::new(Mutex::new(Window::default()));
    let mut requests = tokio::task::JoinSet::new();
    let started = Instant::now();
    let before = ProcessSample::read(pid)?;
    let mut next_rss = started;
    for index in 0..total {
        let due = tokio::time::Instant::from_std(started + period * index);
        tokio::time::sleep_until(due).await;
        let kind = index as usize % REQUEST_KINDS.len();
        let member = usize::try_from(random.next_u64() % macs.len() as u64).unwrap_or(0);
        let mac = macs.mac_string(member);
        let path = match kind {
            0 => format!("/v1/clients/{mac}"),
            1 => format!("/v1/sessions?mac={mac}"),
            _ => "/v1/status".to_owned(),
        };
        let (api, seen) = (Arc::clone(api), Arc::clone(&window));
        let expect_unknown = crowd.is_empty() && kind == 0;
        requests.spawn(async move {
            let answer = api.get_text(&path).await;
            let took = due.elapsed();
            let ok = match answer {
                Ok(text) => {
                    if kind == 2
                        && let Ok(status) = serde_json::from_str::<Value>(&text)
                    {
                        seen.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .note_status(&status);
                    }
                    true
                }
                Err(ClientError::Api { status: 404, .. }) => expect_unknown,
                Err(_) => false,
            };
            (kind, took, ok)
        });
        if Instant::now() >= next_rss {
            let rss = ProcessSample::read(pid)?.rss_kib;
            let mut window = window.lock().unwrap_or_else(PoisonError::into_inner);
            window.rss_kib = window.rss_kib.max(rss);
            next_rss += Duration::from_secs(1);
        }
    }
    let mut by_kind: Vec<(&'static str, Latencies, usize)> = REQUEST_KINDS
        .iter()
        .map(|kind| (*kind, Latencies::default(), 0))
        .collect();
    while let Some(done) = requests.join_next().await {
        let (kind, took, ok) = done?;
        by_kind[kind].1.push(took);
        if !ok {
            by_kind[kind].2 += 1;
        }
    }
    let after = ProcessSample::read(pid)?;
    let mut window = std::mem::take(&mut *window.lock().unwrap_or_else(PoisonError::into_inner));
    window.cpu_percent = cpu_percent(&before, &after, started.elapsed());
    Ok((window, by_kind))
}

fn all_requests(run: &Run) -> Latencies {
    Latencies(
        run.requests
            .iter()
            .flat_map(|(_, latencies, _)| latencies.0.iter().copied())
            .collect(),
    )
}

/// [`LIGHT_METRICS_REQUESTS`] of `GET /metrics?clients=false`, paced: their latencies and
/// the size of the text.
fn time_light_metrics(
    runtime: &tokio::runtime::Runtime,
    api: &ApiClient,
) -> Result<(Latencies, usize)> {
    let mut latencies = Latencies::default();
    let mut bytes = 0;
    for _ in 0..LIGHT_METRICS_REQUESTS {
        let (body, took) = runtime.block_on(timed_text(api, "/metrics?clients=false"))?;
        latencies.push(took);
        bytes = body.len();
        std::thread::sleep(PORTAL_PACE);
    }
    Ok((latencies, bytes))
}

#[expect(clippy::cast_precision_loss, reason = "KiB and bytes shown as MB")]
fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn print_run(run: &Run) {
    let polls = run.quiet.polls();
    let saves = saves(run);
    println!();
    println!("### {} clients", run.clients);
    println!();
    println!(
        "load average {:.2} before, {:.2} after; frames sent {}, delivered to the internet namespace {}",
        run.load_before, run.load_after, run.frames_sent, run.frames_delivered
    );
    println!(
        "polls seen in /v1/status {} of {} counted in /metrics (quiet window)",
        polls.len(),
        run.polls_counted
    );
    let listed: Vec<String> = saves.iter().map(|ms| format!("{ms:.1}")).collect();
    println!("saves seen in /v1/status, ms: {}", listed.join(", "));
    println!();
    println!("| what | n | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    let row = |name: &str, values: &[f64]| {
        println!(
            "| {name} | {} | {:.2} | {:.2} | {:.2} |",
            values.len(),
            quantile_of(values, 0.5),
            quantile_of(values, 0.99),
            quantile_of(values, 1.0)
        );
    };
    row("poll (quiet window)", &polls);
    row("poll (loaded window)", &run.loaded.polls());
    row("save (both windows)", &saves);
    row("sell + connect, one request", &run.selling.0);
    row("turnover at full house: sale", &run.turnover.0);
    for (kind, latencies, failed) in &run.requests {
        row(&format!("{kind} ({failed} failed)"), &latencies.0);
    }
    row("all of the mix", &all_requests(run).0);
    row("GET /v1/clients (every client)", &run.listing.0);
    row("portal: unpaid HTTP → redirect", &run.portal_redirect.0);
    row("portal: RFC 8908 GET /api/captive", &run.portal_captive.0);
    row("GET /metrics", &run.metrics.0);
    #[expect(clippy::cast_precision_loss, reason = "bytes shown as KiB")]
    let light_kib = run.light_metrics_bytes as f64 / 1024.0;
    row(
        &format!("GET /metrics?clients=false ({light_kib:.1} KiB)"),
        &run.light_metrics.0,
    );
    println!();
    println!(
        "sell + connect all: {:.1} s; RSS {:.1} MiB (quiet), {:.1} MiB (loaded), peak {:.1} MiB; CPU {:.2} % (quiet), {:.2} % (loaded); GET /v1/clients {:.2} MB, /metrics {:.2} MB",
        run.selling_took.as_secs_f64(),
        mib(run.quiet.rss_kib),
        mib(run.loaded.rss_kib),
        mib(run.peak_rss_kib),
        run.quiet.cpu_percent,
        run.loaded.cpu_percent,
        mib(run.listing_bytes as u64) / 1024.0,
        mib(run.metrics_bytes as u64) / 1024.0,
    );
}

fn print_summary(runs: &[Run], args: &Args) {
    println!();
    println!(
        "| clients | poll p50 / p99 / max ms | save ms (max) | RSS MiB (steady / peak) | CPU % of a core, 1 s poll | API p50 / p99 / max ms at {} req/s | CPU % with the API load |",
        args.rate_per_second
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for run in runs {
        let polls = run.quiet.polls();
        let saves = saves(run);
        let api = all_requests(run);
        println!(
            "| {} | {:.2} / {:.2} / {:.2} | {:.1} | {:.1} / {:.1} | {:.2} | {:.2} / {:.2} / {:.2} | {:.2} |",
            run.clients,
            quantile_of(&polls, 0.5),
            quantile_of(&polls, 0.99),
            quantile_of(&polls, 1.0),
            quantile_of(&saves, 1.0),
            mib(run.quiet.rss_kib.max(run.loaded.rss_kib)),
            mib(run.peak_rss_kib),
            run.quiet.cpu_percent,
            api.at(0.5),
            api.at(0.99),
            api.at(1.0),
            run.loaded.cpu_percent,
        );
    }
    println!("| target at 10,000 | p99 ≤ 20 | | ≤ 64 | ≤ 5 | p99 ≤ 10 | |");
    println!();
    println!(
        "| clients | sell + connect all, s | one sale p50 / p99 ms | turnover at full house: sales, s | one sale p50 / p99 ms | GET /v1/clients p50 / max ms, MB | GET /metrics max ms, MB |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for run in runs {
        println!(
            "| {} | {:.1} | {:.2} / {:.2} | {}, {:.2} | {:.2} / {:.2} | {:.1} / {:.1}, {:.2} | {:.1}, {:.2} |",
            run.clients,
            run.selling_took.as_secs_f64(),
            run.selling.at(0.5),
            run.selling.at(0.99),
            run.turnover.0.len(),
            run.turnover_took.as_secs_f64(),
            run.turnover.at(0.5),
            run.turnover.at(0.99),
            run.listing.at(0.5),
            run.listing.at(1.0),
            mib(run.listing_bytes as u64) / 1024.0,
            run.metrics.at(1.0),
            mib(run.metrics_bytes as u64) / 1024.0,
        );
    }
}
