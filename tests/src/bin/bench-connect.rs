//! Benchmark: from a portal's `POST /v1/sessions` with `"connect": true` (what
//! `hotspotctl session add --connect` sends) to the first packet of that client reaching the
//! internet namespace, p50/p99. Clients in the namespace harness send a probe every 200 µs all
//! along; between rounds their session is removed, so each round starts blocked. Prints a
//! markdown table; see BENCHMARKS.md.
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
    while let Some(arg) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--rounds" => rounds = value.parse().context("--rounds")?,
            _ => bail!("usage: bench-connect [--rounds N]"),
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
    let mut latencies = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let client = &lan.clients[round % CLIENTS];
        let ip = IpAddr::V4(client.ipv4);
        let body = serde_json::json!({
            "mac": client.mac, "type": "data", "data_mb": 1_000,
            "use_global_speed": true, "connect": true,
        });
        let asked = Instant::now();
        let session: SessionView = runtime.block_on(api.post("/v1/sessions", &body))?;
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
        runtime.block_on(api.delete(&format!("/v1/sessions/{}", session.session.id)))?;
    }
    running.store(false, Ordering::SeqCst);
    let _ = receiver.join();
    for sender in senders {
        let _ = sender.join();
    }
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
    println!("| from `POST /v1/sessions` (connect) to the first packet through | ms |");
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
    Ok(())
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
