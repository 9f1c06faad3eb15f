//! Measures the session store's periodic save: 10,000 running sessions (and their clients) in
//! one batch, next to an empty batch (one transaction with only the save's time in it: the
//! cost of the store thread's round trip and of a commit) in the same run. Each is measured
//! `--runs` times, round robin, from `StoreHandle::save_batch` as the daemon calls it until the
//! store thread has it on disk (`StoreHandle::sync`), and the median is printed as a markdown
//! table. With the usage history (docs/usage.md): the same save carrying every client's
//! counts of the hour, and the day's fold: every client's 24 hourly rows of a day past
//! `history.hourly_days` folded into one daily row each, in the save that crosses the day.
//! Side effects: a database in a temporary folder,
//! removed on exit. Needs no root.
//!
//! Usage: `bench-store [--runs N] [--sessions N]`
#![expect(clippy::print_stdout, reason = "a benchmark prints its results")]

use std::{
    env, process,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use chrono::{DateTime, TimeDelta, Utc};
use hotspotd::{
    accounting::Totals,
    mac::MacAddr,
    sessions::data::{SessionData, SessionType},
    store::{
        ClientState, SaveBatch, SavedMeta, SessionId, Store, StoreHandle, StoredClient,
        usage::{
            DAY_SECS, HOUR_SECS, Period, Retention, UsageBatch, UsageCounts, UsageKey, UsageQuery,
        },
    },
};
use hotspotd_common::Usage;

const USAGE_TEXT: &str = "usage: bench-store [--runs N] [--sessions N]
  --runs N      measurements of each batch; the median is reported (default 21)
  --sessions N  running sessions in the store and in each full batch (default 10000)";

/// Issue target for saving 10,000 running sessions in one batch.
const TARGET: Duration = Duration::from_millis(100);

struct Options {
    runs: usize,
    sessions: u32,
}

impl Options {
    fn from_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Self> {
        let mut options = Self {
            runs: 21,
            sessions: 10_000,
        };
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .with_context(|| format!("{name} needs a number\n{USAGE_TEXT}"))
            };
            match arg.as_str() {
                "--runs" => {
                    options.runs = value("--runs")?
                        .parse()
                        .with_context(|| format!("--runs needs a number\n{USAGE_TEXT}"))?;
                }
                "--sessions" => {
                    options.sessions = value("--sessions")?
                        .parse()
                        .with_context(|| format!("--sessions needs a number\n{USAGE_TEXT}"))?;
                }
                "--help" | "-h" => {
                    println!("{USAGE_TEXT}");
                    process::exit(0);
                }
                other => anyhow::bail!("unknown argument '{other}'\n{USAGE_TEXT}"),
            }
        }
        ensure!(options.runs > 0, "--runs must be > 0");
        ensure!(options.sessions > 0, "--sessions must be > 0");
        Ok(options)
    }
}

/// What each measured batch holds.
#[derive(Clone, Copy)]
enum Kind {
    Empty,
    Sessions,
    SessionsAndClients,
    /// The periodic save with the usage history: every client's counts of the hour.
    WithUsage,
}

impl Kind {
    const ALL: [Self; 4] = [
        Self::Empty,
        Self::Sessions,
        Self::SessionsAndClients,
        Self::WithUsage,
    ];

    fn label(self, sessions: u32) -> String {
        match self {
            Self::Empty => {
                "empty batch (baseline: one transaction, the save's time only)".to_owned()
            }
            Self::Sessions => format!("{} running sessions", thousands(sessions)),
            Self::SessionsAndClients => {
                let sessions = thousands(sessions);
                format!("{sessions} running sessions + their {sessions} clients")
            }
            Self::WithUsage => {
                let sessions = thousands(sessions);
                format!(
                    "{sessions} running sessions + their {sessions} clients + {sessions} usage buckets of the hour"
                )
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    let options = Options::from_args(env::args().skip(1))?;
    let dir = tempfile::tempdir().context("create a temporary folder")?;
    let path = dir.path().join("sessions.db");
    // Opening blocks on the disk, so it happens before the runtime exists.
    let store = Store::open(&path)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the tokio runtime")?;
    let samples = runtime.block_on(measure(&store, &options))?;
    let folds = runtime.block_on(measure_folds(&store, &options))?;
    runtime.block_on(store.close())?;
    print_table(&samples, &options);
    print_folds(&folds, &options);
    Ok(())
}

/// Days folded: each run first writes (untimed) a day of 24 hourly rows per client, older
/// than the hours kept, then times the save whose retention folds them.
const FOLD_RUNS: usize = 5;
const HOURLY_DAYS: u32 = 14;

async fn measure_folds(store: &StoreHandle, options: &Options) -> anyhow::Result<Vec<Duration>> {
    let now = Utc::now();
    let today = now.timestamp().div_euclid(DAY_SECS) * DAY_SECS;
    let mut samples = Vec::with_capacity(FOLD_RUNS);
    for run in 0..FOLD_RUNS {
        let day = today - (i64::from(HOURLY_DAYS) + 1 + i64::try_from(run)?) * DAY_SECS;
        let mut seed = UsageBatch::default();
        for n in 0..options.sessions {
            for hour in 0..24 {
                seed.add(
                    UsageKey {
                        hour_start_secs: day + hour * HOUR_SECS,
                        mac: mac(n),
                        session_id: Some(i64::from(n) + 1),
                    },
                    counts(n),
                );
            }
        }
        store.save_batch(SaveBatch {
            ended: Vec::new(),
            usage: seed,
            ..batch(Kind::Empty, &[], run)
        })?;
        store.sync().await?;
        let started = Instant::now();
        store.save_batch(SaveBatch {
            ended: Vec::new(),
            usage: UsageBatch {
                counts: std::collections::BTreeMap::new(),
                retention: Some(Retention {
                    hourly_days: HOURLY_DAYS,
                    daily_days: 400,
                    now,
                }),
            },
            ..batch(Kind::Empty, &[], run)
        })?;
        store.sync().await?;
        samples.push(started.elapsed());
    }
    let days = store.history().usage(&UsageQuery {
        by: Period::Day,
        since: Some(DateTime::from_timestamp(today - 40 * DAY_SECS, 0).unwrap_or_default()),
        until: Some(
            DateTime::from_timestamp(today - i64::from(HOURLY_DAYS) * DAY_SECS, 0)
                .unwrap_or_default(),
        ),
        limit: 100_000,
        ..UsageQuery::default()
    })?;
    ensure!(
        days.len() == FOLD_RUNS * options.sessions as usize
            && days
                .iter()
                .all(|row| row.up_bytes == 24 * counts(0).up_bytes),
        "every folded day holds its 24 hours: {} rows",
        days.len()
    );
    Ok(samples)
}

/// A client's counts in one bucket.
fn counts(n: u32) -> UsageCounts {
    UsageCounts {
        up_bytes: 1_000_000,
        down_bytes: 9_000_000 + u64::from(n),
        connected_secs: 30,
    }
}

fn print_folds(samples: &[Duration], options: &Options) {
    println!();
    println!(
        "Folding a day of the usage history: the save that crosses a day folds {} clients' 24 hourly rows of the day past `history.hourly_days` into one daily row each ({} hourly rows folded), {} runs: median {} ms, min {} ms, max {} ms.",
        thousands(options.sessions),
        thousands(options.sessions.saturating_mul(24)),
        samples.len(),
        ms(median(samples)),
        ms(samples.iter().min().copied().unwrap_or_default()),
        ms(samples.iter().max().copied().unwrap_or_default()),
    );
}

async fn measure(store: &StoreHandle, options: &Options) -> anyhow::Result<Vec<Vec<Duration>>> {
    let mut sessions = Vec::new();
    for n in 0..options.sessions {
        let data = running(n);
        sessions.push((store.insert(mac(n), data.clone())?, data));
    }
    store.sync().await?;
    let mut samples = vec![Vec::with_capacity(options.runs); Kind::ALL.len()];
    for run in 0..options.runs {
        // Round robin, so that a burst of other load on the machine hits every batch alike.
        for (kind, samples) in Kind::ALL.into_iter().zip(&mut samples) {
            // Every run saves new values, as the daemon's saves do.
            for (_, data) in &mut sessions {
                data.time_cons += 1;
                data.data_cons += 0.37;
            }
            let batch = batch(kind, &sessions, run);
            let started = Instant::now();
            store.save_batch(batch)?;
            store.sync().await?;
            samples.push(started.elapsed());
        }
    }
    let loaded = store.load_all();
    ensure!(
        loaded.sessions.len() == sessions.len()
            && loaded
                .sessions
                .iter()
                .zip(&sessions)
                .all(|(stored, (id, data))| { stored.id == *id && stored.data == *data }),
        "the store does not hold what was saved last"
    );
    Ok(samples)
}

fn batch(kind: Kind, sessions: &[(SessionId, SessionData)], run: usize) -> SaveBatch {
    let run = u64::try_from(run).unwrap_or(u64::MAX);
    let meta = SavedMeta {
        saved_at_wall: Utc::now(),
        saved_at_mono_ns: 1_000_000_000 * (run + 1),
        boot_id: "3f0b52b4-6a4c-4a0e-9d3e-0c9d1f1c2b7a".to_owned(),
        kernel_epoch: 1,
        clock_ahead_ns: 0,
    };
    let clients = || {
        sessions
            .iter()
            .zip(0..)
            .map(|(&(id, _), n)| StoredClient {
                mac: mac(n),
                state: ClientState::Connected,
                pause_reason: None,
                session_id: Some(id),
                baseline: Usage {
                    up_bytes: 1_000_000 * (run + 1),
                    up_packets: 1_000 * (run + 1),
                    down_bytes: 9_000_000 * (run + 1),
                    down_packets: 7_000 * (run + 1),
                    last_seen_jiffies: 4_294_000_000 + run,
                    ..Usage::default()
                },
                totals: Totals {
                    up_bytes: 2_000_000 * (run + 1),
                    up_packets: 2_000 * (run + 1),
                    down_bytes: 18_000_000 * (run + 1),
                    down_packets: 14_000 * (run + 1),
                    ..Totals::default()
                },
                saved_at_mono_ns: 5_000_000_000,
            })
            .collect()
    };
    match kind {
        Kind::Empty => SaveBatch {
            ended: Vec::new(),
            usage: UsageBatch::default(),
            sessions: Vec::new(),
            clients: Vec::new(),
            meta,
        },
        Kind::Sessions => SaveBatch {
            ended: Vec::new(),
            usage: UsageBatch::default(),
            sessions: sessions.to_vec(),
            clients: Vec::new(),
            meta,
        },
        Kind::SessionsAndClients => SaveBatch {
            ended: Vec::new(),
            usage: UsageBatch::default(),
            sessions: sessions.to_vec(),
            clients: clients(),
            meta,
        },
        Kind::WithUsage => {
            let hour = Utc::now().timestamp().div_euclid(HOUR_SECS) * HOUR_SECS;
            // As the daemon's periodic save: with the retention, so the cut (nothing to fold
            // here) is in the time.
            let mut usage = UsageBatch {
                retention: Some(Retention {
                    hourly_days: HOURLY_DAYS,
                    daily_days: 400,
                    now: Utc::now(),
                }),
                ..UsageBatch::default()
            };
            for (&(id, _), n) in sessions.iter().zip(0..) {
                usage.add(
                    UsageKey {
                        hour_start_secs: hour,
                        mac: mac(n),
                        session_id: Some(id),
                    },
                    counts(n),
                );
            }
            SaveBatch {
                ended: Vec::new(),
                usage,
                sessions: sessions.to_vec(),
                clients: clients(),
                meta,
            }
        }
    }
}

/// A started session with data left, as a running one is.
fn running(n: u32) -> SessionData {
    let created_at = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
    SessionData {
        provider: "voucher".to_owned(),
        kind: SessionType::TimeOrData,
        time_secs: 86_400,
        data_mb: 2_048.0,
        time_cons: u64::from(n % 3_600),
        data_cons: f64::from(n % 1_000) / 7.0,
        started_at: Some(created_at + TimeDelta::milliseconds(i64::from(n))),
        exp_days: Some(30),
        down_mbits: 10,
        up_mbits: 5,
        use_global_speed: false,
        created_at,
    }
}

fn mac(n: u32) -> MacAddr {
    let mut octets = [0x02, 0x00, 0, 0, 0, 0];
    octets[2..].copy_from_slice(&n.to_be_bytes());
    MacAddr(octets)
}

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    sorted[sorted.len() / 2]
}

/// `10000` as `10,000`.
fn thousands(n: u32) -> String {
    let digits = n.to_string();
    let mut text = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            text.push(',');
        }
        text.push(digit);
    }
    text
}

fn ms(duration: Duration) -> String {
    format!("{:.2}", duration.as_secs_f64() * 1_000.0)
}

fn print_table(samples: &[Vec<Duration>], options: &Options) {
    println!(
        "Saving running sessions in one batch through the store thread (SQLite WAL, the \
         batch's commit synced to disk), median of {} runs (min, max beside it).",
        options.runs
    );
    println!();
    println!("| batch | median ms | min ms | max ms | ms above empty |");
    println!("|---|---:|---:|---:|---:|");
    let empty = median(&samples[0]);
    for (kind, samples) in Kind::ALL.into_iter().zip(samples) {
        let median = median(samples);
        let min = samples.iter().min().copied().unwrap_or_default();
        let max = samples.iter().max().copied().unwrap_or_default();
        println!(
            "| {} | {} | {} | {} | {} |",
            kind.label(options.sessions),
            ms(median),
            ms(min),
            ms(max),
            ms(median.saturating_sub(empty)),
        );
    }
    let full = median(&samples[2]);
    println!();
    println!(
        "Target: {} running sessions in one batch in ≤ {} ms: {}.",
        thousands(options.sessions),
        TARGET.as_millis(),
        if full <= TARGET { "met" } else { "NOT met" }
    );
}
