//! Benchmark: from a portal's `POST /v1/sessions` with `"connect": true` (what
//! `hotspotctl session add --connect` sends) to the first packet of that client reaching the
//! internet namespace, p50/p99. Clients in the namespace harness send a probe every 200 µs all
//! along; between rounds their session is removed, so each round starts blocked. With
//! `--voucher`, each round redeems a voucher instead (`POST /v1/vouchers/redeem`, what the
//! portal's form does) and revokes it after. Prints a markdown table; see BENCHMARKS.md.
#![expect(clippy::print_stdout, reason = "a benchmark prints its results")]

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use hotspotd::{api::SessionView, client::ApiClient};
use hotspotd_tests::{Daemon, INTERNET_V4, Lan, wait_for};

/// Clients in the LAN; rounds go round-robin over them.
const CLIENTS: usize = 10;
const PROBE_EVERY: Duration = Duration::from_micros(200);

/// When each source address was last heard from, at the internet side.
type Arrivals = Arc<Mutex<HashMap<IpAddr, Instant>>>;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut rounds: usize = 1_000;
    let mut voucher = false;
    while let Some(arg) = args.next() {
        if arg == "--voucher" {
            voucher = true;
            continue;
        }
        let value = args
            .next()
            .with_context(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--rounds" => rounds = value.parse().context("--rounds")?,
            _ => bail!("usage: bench-connect [--rounds N] [--voucher]"),
        }
    }
    let lan = Lan::new(CLIENTS)?;
    let daemon = Daemon::start(&lan, &[])?;
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

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let api = ApiClient::new(daemon.socket());
    let codes = if voucher {
        create_vouchers(&runtime, &api, rounds)?
    } else {
        Vec::new()
    };
    let mut latencies = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let client = &lan.clients[round % CLIENTS];
        let ip = IpAddr::V4(client.ipv4);
        let body = serde_json::json!({
            "mac": client.mac, "type": "data", "data_mb": 1_000,
            "use_global_speed": true, "connect": true,
        });
        let asked = Instant::now();
        let session = if voucher {
            let body = serde_json::json!({ "mac": client.mac, "code": codes.get(round).cloned().unwrap_or_default() });
            let _: serde_json::Value = runtime.block_on(api.post("/v1/vouchers/redeem", &body))?;
            None
        } else {
            let session: SessionView = runtime.block_on(api.post("/v1/sessions", &body))?;
            Some(session)
        };
        let mut arrived = None;
        wait_for(Duration::from_secs(2), || {
            arrived = arrivals
                .lock()
                .ok()
                .and_then(|seen| seen.get(&ip).copied())
                .filter(|at| *at > asked);
            arrived.is_some()
        });
        let arrived = arrived.with_context(|| format!("round {round}: no packet got through"))?;
        latencies.push(arrived - asked);
        // Blocked again before this client's next round.
        if let Some(session) = session {
            runtime.block_on(api.delete(&format!("/v1/sessions/{}", session.session.id)))?;
        } else {
            let _: serde_json::Value = runtime.block_on(api.post(
                "/v1/vouchers/revoke",
                &serde_json::json!({ "code": codes.get(round).cloned().unwrap_or_default() }),
            ))?;
        }
    }
    running.store(false, Ordering::SeqCst);
    let _ = receiver.join();
    for sender in senders {
        let _ = sender.join();
    }
    print_table(&mut latencies, rounds, voucher);
    Ok(())
}

/// The latencies' quantiles as a markdown table.
fn print_table(latencies: &mut [Duration], rounds: usize, voucher: bool) {
    latencies.sort();
    let at = |quantile: f64| {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "an index into a short vector"
        )]
        let index = ((latencies.len() - 1) as f64 * quantile).round() as usize;
        latencies[index].as_secs_f64() * 1e3
    };
    let from = if voucher {
        "`POST /v1/vouchers/redeem`"
    } else {
        "`POST /v1/sessions` (connect)"
    };
    println!("| from {from} to the first packet through | ms |");
    println!("|---|---:|");
    println!(
        "| p50 ({rounds} rounds over {CLIENTS} clients) | {:.2} |",
        at(0.5)
    );
    println!("| p99 | {:.2} |", at(0.99));
    println!("| max | {:.2} |", at(1.0));
    println!(
        "| probe interval (resolution) | {:.2} |",
        PROBE_EVERY.as_secs_f64() * 1e3
    );
}

/// `count` vouchers of the same plan as the sessions, and their codes.
fn create_vouchers(
    runtime: &tokio::runtime::Runtime,
    api: &ApiClient,
    count: usize,
) -> Result<Vec<String>> {
    let body = serde_json::json!({
        "count": count, "type": "data", "data_mb": 1_000, "use_global_speed": true,
    });
    let created: Vec<serde_json::Value> = runtime.block_on(api.post("/v1/vouchers", &body))?;
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
    let socket = UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, 0))?;
    while running.load(Ordering::SeqCst) {
        // Dropped by the gate while the client has no session: that is the point.
        let _ = socket.send_to(&[0u8; 64], to);
        thread::sleep(PROBE_EVERY);
    }
    Ok(())
}
