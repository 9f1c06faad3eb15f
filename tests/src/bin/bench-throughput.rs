//! Benchmark: TCP throughput between a client and the internet through the gateway, upload
//! and download, with and without hotspotd, alternated in the same run so both see the same
//! machine. With hotspotd, every packet takes the whole path: the gate (the client runs a
//! session), the counters, and the speed limits set far above the link (the harness's
//! 100 Gbit/s global caps): downloads through the HTB tree on the LAN interface, uploads
//! redirected through the IFB's. Prints a markdown table; see BENCHMARKS.md.
#![expect(clippy::print_stdout, reason = "a benchmark prints its results")]

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use hotspotd_tests::{
    Daemon, INTERNET_V4, Lan, TcpSink, TcpSource, tcp_receive, tcp_send, wait_for,
};

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
    let internet = SocketAddr::new(IpAddr::V4(INTERNET_V4), 0);
    let sink = TcpSink::start(&lan.internet, internet)?;
    let source = TcpSource::start(&lan.internet, internet, bytes_per_run)?;
    let upload = || {
        gbit_per_s(bytes_per_run, || {
            tcp_send(&client.netns, sink.addr(), bytes_per_run)
        })
    };
    let download = || gbit_per_s(bytes_per_run, || tcp_receive(&client.netns, source.addr()));

    let (mut up_without, mut up_with, mut down_without, mut down_with) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        up_without.push(upload()?);
        down_without.push(download()?);
        let daemon = Daemon::start(&lan, &[])?;
        // Through the gate: the client runs a session, so every packet takes the whole path.
        daemon.connect_for_an_hour(&client.mac)?;
        up_with.push(upload()?);
        down_with.push(download()?);
        // The run only counts if hotspotd really accounted the transfers.
        let mut counted = (0, 0);
        wait_for(Duration::from_secs(5), || {
            counted = daemon
                .client(&client.mac)
                .ok()
                .and_then(|row| Some((row["up_bytes"].as_u64()?, row["down_bytes"].as_u64()?)))
                .unwrap_or_default();
            counted.0 >= bytes_per_run && counted.1 >= bytes_per_run
        });
        if counted.0 < bytes_per_run || counted.1 < bytes_per_run {
            bail!(
                "the daemon counted {} up and {} down of {bytes_per_run}-byte transfers",
                counted.0,
                counted.1
            );
        }
        daemon.stop()?;
    }
    println!(
        "| direction | no hotspotd, Gbit/s | hotspotd (gate + HTB far above the link), Gbit/s | ratio |"
    );
    println!("|---|---:|---:|---:|");
    for (direction, without, with) in [
        ("upload (through the IFB)", &mut up_without, &mut up_with),
        (
            "download (HTB on the LAN)",
            &mut down_without,
            &mut down_with,
        ),
    ] {
        let (without, with) = (median(without), median(with));
        println!(
            "| {direction} | {without:.2} | {with:.2} | {:.3} |",
            with / without
        );
    }
    println!(
        "(median of {runs} runs × {} MB each way)",
        bytes_per_run / 1_000_000
    );
    Ok(())
}

/// Runs `transfer` (which moves `bytes`) and returns its rate.
fn gbit_per_s(bytes: u64, transfer: impl FnOnce() -> Result<u64>) -> Result<f64> {
    let started = Instant::now();
    let moved = transfer()?;
    let seconds = started.elapsed().as_secs_f64();
    if moved < bytes {
        bail!("moved {moved} of {bytes} bytes");
    }
    #[expect(clippy::cast_precision_loss, reason = "bytes well below 2^52")]
    Ok(moved as f64 * 8.0 / seconds / 1e9)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
