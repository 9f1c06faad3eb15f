//! Benchmark: TCP throughput from a client to the internet through the gateway, with and
//! without hotspotd's programs attached to the LAN interface, alternated in the same run so
//! both see the same machine. Prints a markdown table; see BENCHMARKS.md.
#![expect(clippy::print_stdout, reason = "a benchmark prints its results")]

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use hotspotd_tests::{Daemon, INTERNET_V4, Lan, TcpSink, tcp_send, wait_for};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut bytes_per_run: u64 = 2_000_000_000;
    let mut runs: usize = 5;
    while let Some(arg) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--bytes" => bytes_per_run = value.parse().context("--bytes")?,
            "--runs" => runs = value.parse().context("--runs")?,
            _ => bail!("usage: bench-throughput [--bytes N] [--runs N]"),
        }
    }
    let lan = Lan::new(1)?;
    let client = &lan.clients[0];
    let sink = TcpSink::start(&lan.internet, SocketAddr::new(IpAddr::V4(INTERNET_V4), 0))?;

    let mut without = Vec::new();
    let mut with = Vec::new();
    for _ in 0..runs {
        without.push(gbit_per_s(&lan, &sink, bytes_per_run)?);
        let daemon = Daemon::start(&lan, &[])?;
        // Through the gate: the client runs a session, so every packet takes the whole path.
        daemon.connect_for_an_hour(&client.mac)?;
        with.push(gbit_per_s(&lan, &sink, bytes_per_run)?);
        // The run only counts if hotspotd really accounted the transfer.
        let mut up_bytes = 0;
        wait_for(Duration::from_secs(5), || {
            up_bytes = daemon
                .ctl_json(&["clients"])
                .ok()
                .and_then(|rows| {
                    let rows = rows.as_array()?.clone();
                    rows.iter().find(|row| row["mac"] == client.mac.as_str())?["up_bytes"].as_u64()
                })
                .unwrap_or(0);
            up_bytes >= bytes_per_run
        });
        if up_bytes < bytes_per_run {
            bail!("the daemon counted {up_bytes} bytes of a {bytes_per_run}-byte transfer");
        }
        daemon.stop()?;
    }
    let (without, with) = (median(&mut without), median(&mut with));
    println!(
        "| setup | Gbit/s (median of {runs} × {} MB) |",
        bytes_per_run / 1_000_000
    );
    println!("|---|---|");
    println!("| no programs | {without:.2} |");
    println!("| hotspotd attached | {with:.2} |");
    println!("| ratio | {:.3} |", with / without);
    Ok(())
}

fn gbit_per_s(lan: &Lan, sink: &TcpSink, bytes: u64) -> Result<f64> {
    let started = Instant::now();
    let sent = tcp_send(&lan.clients[0].netns, sink.addr(), bytes)?;
    let seconds = started.elapsed().as_secs_f64();
    #[expect(clippy::cast_precision_loss, reason = "bytes well below 2^52")]
    Ok(sent as f64 * 8.0 / seconds / 1e9)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
