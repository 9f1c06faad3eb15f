//! Benchmark: one engine tick with 10,000 connected clients (every client reports traffic, then
//! time passes), next to the same tick of an empty engine. Prints a markdown table; see
//! BENCHMARKS.md.
#![expect(clippy::print_stdout, reason = "a benchmark prints its results")]

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, Utc};
use hotspotd::{
    config::QueueOrder,
    mac::MacAddr,
    sessions::{
        SessionData, SessionType,
        engine::{Engine, EngineConfig, Now, Session},
    },
};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut clients: u32 = 10_000;
    let mut runs: u32 = 50;
    while let Some(arg) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--clients" => clients = value.parse().context("--clients")?,
            "--runs" => runs = value.parse().context("--runs")?,
            _ => bail!("usage: bench-engine [--clients N] [--runs N]"),
        }
    }
    let empty = median_tick(0, runs)?;
    let full = median_tick(clients, runs)?;
    println!("| engine | clients | µs per tick (median of {runs}) |");
    println!("|---|---:|---:|");
    println!("| empty | 0 | {:.1} |", micros(empty));
    println!(
        "| every client running, every client with traffic | {clients} | {:.1} |",
        micros(full)
    );
    Ok(())
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

/// Builds an engine with `clients` connected clients, then times `runs` ticks, each being one
/// poll's worth of work: every client's traffic, then `tick`.
fn median_tick(clients: u32, runs: u32) -> Result<Duration> {
    let start = DateTime::from_timestamp(1_800_000_000, 0).context("a valid time")?;
    let mut clock = Clock {
        mono: Duration::from_secs(1_000),
        wall: start,
    };
    let mut engine = Engine::new(EngineConfig {
        bytes_per_mb: 1_000_000,
        queue_order: QueueOrder::OldestFirst,
        idle_pause: Some(Duration::from_mins(5)),
        global_down_mbits: 100,
        global_up_mbits: 100,
    });
    let macs: Vec<MacAddr> = (0..clients)
        .map(|i| {
            let [a, b, c, d] = i.to_be_bytes();
            MacAddr([0x02, 0, a, b, c, d])
        })
        .collect();
    for (id, mac) in (1..).zip(&macs) {
        let session = Session {
            id,
            mac: *mac,
            data: hour_or_gigabyte(start),
        };
        let _ = engine.add(session, clock.now())?;
        let _ = engine.connect(*mac, clock.now())?;
    }
    let mut times = Vec::new();
    for _ in 0..runs {
        clock.advance(Duration::from_secs(1));
        let now = clock.now();
        let started = Instant::now();
        for mac in &macs {
            let _ = engine.traffic(*mac, 12_345, true, now);
        }
        let _ = engine.tick(now);
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

fn hour_or_gigabyte(now: DateTime<Utc>) -> SessionData {
    SessionData {
        provider: "bench".to_owned(),
        kind: SessionType::TimeOrData,
        time_secs: 3_600,
        data_mb: 1_000.0,
        time_cons: 0,
        data_cons: 0.0,
        started_at: None,
        exp_days: Some(1),
        down_mbits: 10,
        up_mbits: 5,
        use_global_speed: false,
        created_at: now,
    }
}

struct Clock {
    mono: Duration,
    wall: DateTime<Utc>,
}

impl Clock {
    fn now(&self) -> Now {
        Now {
            mono: self.mono,
            wall: self.wall,
        }
    }

    fn advance(&mut self, by: Duration) {
        self.mono += by;
        self.wall += by;
    }
}
