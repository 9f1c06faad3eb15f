//! Benchmark: the time to give clients their speed limits through the shaper (netlink,
//! desired state → diff → apply) against `tc` processes doing the same work, in the same run,
//! in a namespace LAN. One client's limits are a class and a leaf qdisc in each of the two
//! trees (download on the LAN interface, upload on the IFB): the shaper sends those 4
//! requests in one batch; `tc` needs 4 processes (a bare `tc class add` is also shown). Then
//! all clients at once from an empty tree: one apply against one `tc -batch` process.
//! Prints markdown tables. Needs root; creates and deletes namespaces.
//!
//! Usage: `bench-shaping [--clients N]`
#![expect(clippy::print_stdout, reason = "a benchmark prints its results")]

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::Write as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use hotspotd::shaping::{Desired, Rates, Shaper};
use hotspotd_tests::{LAN_IFACE, Lan};

const IFB: &str = "ifb-hotspot";
/// The `tc` runs use their own IFB, created with `ip`, so they never meet the shaper's.
const TC_IFB: &str = "ifb-tc";
/// Issue targets.
const TARGET_ONE_P99: Duration = Duration::from_millis(5);
const TARGET_ALL: Duration = Duration::from_secs(2);

const GLOBAL: Rates = Rates {
    down_kbit: 1_000_000,
    up_kbit: 200_000,
};
const CLIENT: Rates = Rates {
    down_kbit: 5000,
    up_kbit: 1000,
};

fn main() -> Result<()> {
    let mut clients: u16 = 1000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--clients", Some(value)) => clients = value.parse().context("--clients")?,
            _ => bail!("usage: bench-shaping [--clients N] (at most 65532)"),
        }
    }
    ensure!(
        (1..=0xfffc).contains(&clients),
        "--clients must be 1..=65532"
    );
    let lan = Lan::new(1)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let minors: Vec<u16> = (0..clients).map(|i| i + 2).collect();

    // One client per apply, as the daemon does when a client connects.
    let mut shaper = setup(&rt, &lan)?;
    let mut desired = Desired {
        global: GLOBAL,
        clients: BTreeMap::new(),
    };
    let mut netlink_one = Vec::with_capacity(minors.len());
    for &minor in &minors {
        desired.clients.insert(minor, CLIENT);
        let started = Instant::now();
        rt.block_on(shaper.apply(&desired))?;
        netlink_one.push(started.elapsed());
    }
    ensure!(
        count_classes(&lan, LAN_IFACE)? == minors.len() + 2,
        "classes missing"
    );
    let mut netlink_noop = Vec::with_capacity(minors.len());
    for _ in &minors {
        let started = Instant::now();
        rt.block_on(shaper.apply(&desired))?;
        netlink_noop.push(started.elapsed());
    }
    rt.block_on(shaper.teardown())?;

    // The same, with tc processes, from a thread inside the namespace (children inherit it).
    let script = TcScript::new(&minors);
    let (tc_class, tc_client) = lan.gateway.run(move || script.one_by_one())??;

    // All at once from an empty tree.
    let mut shaper = setup(&rt, &lan)?;
    let started = Instant::now();
    rt.block_on(shaper.apply(&desired))?;
    let netlink_all = started.elapsed();
    ensure!(
        count_classes(&lan, IFB)? == minors.len() + 2,
        "classes missing"
    );
    rt.block_on(shaper.teardown())?;
    let script = TcScript::new(&minors);
    let tc_batch_all = lan.gateway.run(move || script.batch())??;

    report(
        minors.len(),
        &mut Samples {
            netlink_one,
            netlink_noop,
            tc_class,
            tc_client,
        },
        netlink_all,
        tc_batch_all,
    );
    Ok(())
}

/// One duration per client.
struct Samples {
    netlink_one: Vec<Duration>,
    netlink_noop: Vec<Duration>,
    tc_class: Vec<Duration>,
    tc_client: Vec<Duration>,
}

fn report(n: usize, samples: &mut Samples, netlink_all: Duration, tc_batch_all: Duration) {
    println!("| one client's limits ({n} clients, one after another) | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|");
    row(
        "hotspotd apply: 4 netlink requests, 1 batch",
        &mut samples.netlink_one,
    );
    row(
        "hotspotd apply, nothing changed (diff only)",
        &mut samples.netlink_noop,
    );
    row("`tc class add` (1 process, 1 class)", &mut samples.tc_class);
    row(
        "`tc` processes, same work (4 processes)",
        &mut samples.tc_client,
    );
    println!();
    println!("| all {n} clients from an empty tree | seconds |");
    println!("|---|---:|");
    println!(
        "| hotspotd apply ({} netlink requests) | {:.3} |",
        4 * n,
        netlink_all.as_secs_f64()
    );
    println!(
        "| `tc -batch` ({} commands, 1 process) | {:.3} |",
        4 * n,
        tc_batch_all.as_secs_f64()
    );
    let p99 = percentile(&mut samples.netlink_one, 99);
    println!();
    println!(
        "Targets: p99 of one client ≤ {} ms: {:.3} ms ({}); {n} clients ≤ {} s: {:.3} s ({}).",
        TARGET_ONE_P99.as_millis(),
        ms(p99),
        if p99 <= TARGET_ONE_P99 {
            "met"
        } else {
            "missed"
        },
        TARGET_ALL.as_secs(),
        netlink_all.as_secs_f64(),
        if netlink_all <= TARGET_ALL {
            "met"
        } else {
            "missed"
        },
    );
}

fn setup(rt: &tokio::runtime::Runtime, lan: &Lan) -> Result<Shaper> {
    let handle = rt.handle().clone();
    Ok(lan
        .gateway
        .run(move || handle.block_on(Shaper::setup(LAN_IFACE, IFB, GLOBAL)))??)
}

fn count_classes(lan: &Lan, dev: &str) -> Result<usize> {
    let output = lan
        .gateway
        .command("tc")
        .args(["class", "show", "dev", dev])
        .output()?;
    ensure!(output.status.success(), "tc class show dev {dev}");
    Ok(String::from_utf8(output.stdout)?.lines().count())
}

/// The tc commands that build what the shaper builds: same roots, classes, parameters and
/// leaves.
struct TcScript {
    setup: Vec<String>,
    clients: Vec<[String; 4]>,
    teardown: Vec<String>,
}

impl TcScript {
    fn new(minors: &[u16]) -> TcScript {
        let class = |dev: &str, major: u16, minor: u16, guarantee: &str, ceil: &str| {
            format!(
                "class add dev {dev} parent {major}:1 classid {major}:{minor:x} htb rate {guarantee} \
                 ceil {ceil} burst 15140 cburst 15140 quantum 6250"
            )
        };
        let leaf = |dev: &str, major: u16, minor: u16| {
            format!("qdisc add dev {dev} parent {major}:{minor:x} pfifo limit 41")
        };
        let mut setup = Vec::new();
        for (dev, major, global) in [(LAN_IFACE, 1, "1gbit"), (TC_IFB, 2, "200mbit")] {
            setup.push(format!(
                "qdisc add dev {dev} root handle {major}: htb default fffe"
            ));
            setup.push(format!(
                "class add dev {dev} parent {major}: classid {major}:1 htb rate {global} ceil {global} \
                 quantum 200000"
            ));
            setup.push(format!(
                "class add dev {dev} parent {major}:1 classid {major}:fffe htb rate 1mbit \
                 ceil {global} quantum 200000"
            ));
            setup.push(format!(
                "qdisc add dev {dev} parent {major}:fffe pfifo limit 1000"
            ));
        }
        let clients = minors
            .iter()
            .map(|&minor| {
                [
                    class(LAN_IFACE, 1, minor, "950kbit", "5mbit"),
                    leaf(LAN_IFACE, 1, minor),
                    class(TC_IFB, 2, minor, "190kbit", "1mbit"),
                    leaf(TC_IFB, 2, minor),
                ]
            })
            .collect();
        let teardown = vec![
            format!("qdisc del dev {LAN_IFACE} root"),
            format!("qdisc del dev {TC_IFB} root"),
        ];
        TcScript {
            setup,
            clients,
            teardown,
        }
    }

    /// Runs in the namespace: per client, times the first `tc class add` alone and the four
    /// processes together.
    fn one_by_one(&self) -> Result<(Vec<Duration>, Vec<Duration>)> {
        ip(&["link", "add", TC_IFB, "type", "ifb"])?;
        ip(&["link", "set", TC_IFB, "up"])?;
        for line in &self.setup {
            tc(line)?;
        }
        let mut class = Vec::with_capacity(self.clients.len());
        let mut client = Vec::with_capacity(self.clients.len());
        for commands in &self.clients {
            let started = Instant::now();
            tc(&commands[0])?;
            class.push(started.elapsed());
            for command in &commands[1..] {
                tc(command)?;
            }
            client.push(started.elapsed());
        }
        for line in &self.teardown {
            tc(line)?;
        }
        Ok((class, client))
    }

    /// Runs in the namespace: every client's commands in one `tc -batch`, after the same
    /// setup. Returns the time of the batch alone.
    fn batch(&self) -> Result<Duration> {
        for line in &self.setup {
            tc(line)?;
        }
        let mut input = String::new();
        for commands in &self.clients {
            for command in commands {
                writeln!(input, "{command}")?;
            }
        }
        let started = Instant::now();
        let mut child = Command::new("tc")
            .args(["-batch", "-"])
            .stdin(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .context("tc stdin")?
            .write_all(input.as_bytes())?;
        ensure!(child.wait()?.success(), "tc -batch failed");
        let elapsed = started.elapsed();
        for line in &self.teardown {
            tc(line)?;
        }
        ip(&["link", "del", TC_IFB])?;
        Ok(elapsed)
    }
}

fn tc(line: &str) -> Result<()> {
    let status = Command::new("tc").args(line.split_whitespace()).status()?;
    ensure!(status.success(), "tc {line}");
    Ok(())
}

fn ip(args: &[&str]) -> Result<()> {
    let status = Command::new("ip").args(args).status()?;
    ensure!(status.success(), "ip {args:?}");
    Ok(())
}

fn percentile(values: &mut [Duration], percent: usize) -> Duration {
    values.sort_unstable();
    let index = (values.len() * percent).div_ceil(100).saturating_sub(1);
    values[index.min(values.len() - 1)]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn row(what: &str, values: &mut [Duration]) {
    let p50 = percentile(values, 50);
    let p99 = percentile(values, 99);
    let max = percentile(values, 100);
    println!(
        "| {what} | {:.3} | {:.3} | {:.3} |",
        ms(p50),
        ms(p99),
        ms(max)
    );
}
