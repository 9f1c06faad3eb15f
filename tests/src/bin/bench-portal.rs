//! Benchmark: the front door's answer times, from a client namespace of the harness, p50/p99.
//! An unpaid client's plain HTTP connection to an internet address until the redirect has
//! arrived (connect, SYN steered to the redirect listener, request, `302`); the RFC 8908 answer
//! (`GET /api/captive` on the portal); and a paying client's status page (`GET /`) requested at
//! a steady rate, as phones polling it would. Each request on a new connection, as a phone's
//! check makes it. Prints a markdown table; see BENCHMARKS.md.
#![expect(clippy::print_stdout, reason = "a benchmark prints its results")]

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use hotspotd_tests::{Daemon, GATEWAY_LAN_V4, INTERNET_V4, Lan, http::timed_gets};

const PORTAL_PORT: u16 = 2050;

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
    let redirect = timed_gets(
        &unpaid.netns,
        internet,
        "/generate_204",
        requests,
        None,
        302,
    )?;
    let captive = timed_gets(&unpaid.netns, portal, "/api/captive", requests, None, 200)?;
    let pace = Duration::from_secs(1) / rate_per_sec.max(1);
    let status = timed_gets(&paying.netns, portal, "/", requests, Some(pace), 200)?;

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
