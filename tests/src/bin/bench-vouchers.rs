//! Benchmark: creating vouchers in batches of 10,000 through the API (`POST /v1/vouchers`, from
//! the request to the whole answer with its codes, written to the database before it is
//! sent), and listing them all (`GET /v1/vouchers`). Prints a markdown table; see
//! BENCHMARKS.md.
#![expect(clippy::print_stdout, reason = "a benchmark prints its results")]

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use hotspotd_tests::{
    Daemon, Lan,
    http::{exchange, request},
};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut batches: usize = 5;
    while let Some(arg) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--batches" => batches = value.parse().context("--batches")?,
            _ => bail!("usage: bench-vouchers [--batches N]"),
        }
    }
    let lan = Lan::new(1)?;
    let daemon = Daemon::start(&lan, &[])?;
    let body = serde_json::json!({
        "count": 10_000, "type": "time", "time_secs": 3600, "use_global_speed": true,
    })
    .to_string();
    println!("| request | vouchers held after | ms |");
    println!("|---|---:|---:|");
    for batch in 1..=batches {
        let raw = request(
            "POST",
            "/v1/vouchers",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        let started = Instant::now();
        let answer = exchange(daemon.socket(), &raw)?;
        let took = started.elapsed();
        ensure!(answer.status == 201, "{}", answer.body);
        let created = answer.json().context("JSON")?;
        ensure!(
            created.as_array().map(Vec::len) == Some(10_000),
            "not 10,000 vouchers"
        );
        println!(
            "| `POST /v1/vouchers` count 10,000 | {} | {} |",
            batch * 10_000,
            ms(took)
        );
    }
    let started = Instant::now();
    let answer = exchange(daemon.socket(), &request("GET", "/v1/vouchers", &[], b""))?;
    let took = started.elapsed();
    ensure!(answer.status == 200, "{}", answer.body);
    println!(
        "| `GET /v1/vouchers` | {} | {} |",
        batches * 10_000,
        ms(took)
    );
    Ok(())
}

fn ms(took: Duration) -> String {
    format!("{:.0}", took.as_secs_f64() * 1000.0)
}
