//! Benchmark: the front door's answer times, from a client namespace of the harness, p50/p99.
//! An unpaid client's plain HTTP connection to an internet address until the redirect has
//! arrived (connect, SYN steered to the redirect listener, request, `302`); the RFC 8908 answer
//! (`GET /api/captive` on the portal); and a paying client's status page (`GET /`) requested at
//! a steady rate, as phones polling it would. Each request on a new connection, as a phone's
//! check makes it. Prints a markdown table; see BENCHMARKS.md.
#![expect(clippy::print_stdout, reason = "a benchmark prints its results")]

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpStream},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use hotspotd_tests::{Daemon, GATEWAY_LAN_V4, INTERNET_V4, Lan, Netns};

const PORTAL_PORT: u16 = 2050;
const TIMEOUT: Duration = Duration::from_secs(5);

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut requests: usize = 2_000;
    let mut rate_per_sec: u32 = 100;
    while let Some(arg) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--requests" => requests = value.parse().context("--requests")?,
            "--rate" => rate_per_sec = value.parse().context("--rate")?,
            _ => bail!("usage: bench-portal [--requests N] [--rate PER_SEC]"),
        }
    }
    let lan = Lan::new(2)?;
    let daemon = Daemon::start(&lan, &[])?;
    let (unpaid, paying) = (&lan.clients[0], &lan.clients[1]);
    daemon.connect_for_an_hour(&paying.mac)?;

    let internet = SocketAddr::new(IpAddr::V4(INTERNET_V4), 80);
    let portal = SocketAddr::new(IpAddr::V4(GATEWAY_LAN_V4), PORTAL_PORT);
    let redirect = timed(
        &unpaid.netns,
        internet,
        "/generate_204",
        requests,
        None,
        302,
    )?;
    let captive = timed(&unpaid.netns, portal, "/api/captive", requests, None, 200)?;
    let pace = Duration::from_secs(1) / rate_per_sec.max(1);
    let status = timed(&paying.netns, portal, "/", requests, Some(pace), 200)?;

    println!("| answer | requests | p50 ms | p99 ms | max ms | target p99 |");
    println!("|---|---:|---:|---:|---:|---|");
    for (what, mut samples, target) in [
        ("unpaid SYN → redirect answered", redirect, "≤ 5 ms"),
        ("RFC 8908 `GET /api/captive`", captive, "≤ 5 ms"),
        ("status page `GET /` at {rate}/s", status, "≤ 20 ms"),
    ] {
        samples.sort_unstable();
        let at = |quantile: f64| {
            let last = samples.len().saturating_sub(1);
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss,
                reason = "an index into a few thousand samples"
            )]
            let index = ((last as f64) * quantile).round() as usize;
            samples[index.min(last)].as_secs_f64() * 1_000.0
        };
        let what = what.replace("{rate}", &rate_per_sec.to_string());
        println!(
            "| {what} | {} | {:.2} | {:.2} | {:.2} | {target} |",
            samples.len(),
            at(0.5),
            at(0.99),
            at(1.0)
        );
    }
    Ok(())
}

/// `requests` GETs of `path` at `target` from `netns`, each on its own connection, one after
/// another (or one every `pace`); the time from connecting to the whole answer, each checked
/// for `status`.
fn timed(
    netns: &Netns,
    target: SocketAddr,
    path: &str,
    requests: usize,
    pace: Option<Duration>,
    status: u16,
) -> Result<Vec<Duration>> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
    let path = path.to_owned();
    let expected = format!("HTTP/1.1 {status} ");
    netns.run(move || -> Result<Vec<Duration>> {
        let mut samples = Vec::with_capacity(requests);
        let started = Instant::now();
        for n in 0..requests {
            if let Some(pace) = pace {
                let due = started + pace * u32::try_from(n).unwrap_or(u32::MAX);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    thread::sleep(wait);
                }
            }
            let sent = Instant::now();
            let mut stream = TcpStream::connect_timeout(&target, TIMEOUT)
                .with_context(|| format!("connect to {target}"))?;
            stream.set_read_timeout(Some(TIMEOUT))?;
            stream.write_all(request.as_bytes())?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer)?;
            samples.push(sent.elapsed());
            ensure!(
                answer.starts_with(expected.as_bytes()),
                "{target}{path}: {}",
                String::from_utf8_lossy(&answer[..answer.len().min(200)])
            );
        }
        Ok(samples)
    })?
}
