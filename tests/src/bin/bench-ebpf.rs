//! Measures what the accounting programs cost per packet. `BPF_PROG_TEST_RUN` runs
//! `lan_ingress`, `lan_egress`, the empty `bench_empty` and `bench_reference` (the floor of
//! any per-client accounting: one per-CPU hash lookup by MAC, two adds) many times on a
//! 1,514-byte IPv4 TCP frame that is billable (not local) for a client with a running data
//! session (the download as forwarded, not sent by the box), first with 1 such client in the
//! maps, then with 10,000, and prints the medians as a markdown table, each program's cost
//! above the empty one also as a multiple of the reference's. Side effects: loads the eBPF object with its maps
//! pinned in a bpffs folder of its own, removed on exit; attaches nothing. Needs root.
//!
//! Usage: `bench-ebpf [--repeat N] [--runs N]`
#![expect(clippy::print_stdout, reason = "a benchmark prints its results")]

use std::{
    env, fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    process,
};

use anyhow::{Context as _, bail, ensure};
use aya::{
    Ebpf, EbpfLoader,
    maps::PerCpuHashMap,
    programs::{SchedClassifier, TestRun, TestRunOptions},
};
use hotspotd::bpf::EBPF_OBJECT;
use hotspotd_common::{MacKey, Usage};
use hotspotd_tests::frames::{ETH_P_IPV4, IPPROTO_TCP, Mac, client_mac, ethernet, ipv4, tcp};

const USAGE_TEXT: &str = "usage: bench-ebpf [--repeat N] [--runs N]
  --repeat N  runs of the program per measurement (default 1000000)
  --runs N    measurements per program; the median is reported (default 5)";

const EMPTY: &str = "bench_empty";
/// The floor: one per-CPU hash lookup by MAC and two adds (issue 12's reference).
const REFERENCE: &str = "bench_reference";
const INGRESS: &str = "lan_ingress";
const EGRESS: &str = "lan_egress";

/// What the accounting programs return for every frame, `TC_ACT_UNSPEC` (-1).
const TC_ACT_UNSPEC: i32 = -1;

/// A full-size Ethernet frame: 1,500 bytes of IP, as a bulk download or upload sends.
const TCP_PAYLOAD_LEN: usize = 1_460;
const CLIENT_PORT: u16 = 40_000;
const HTTPS_PORT: u16 = 443;
const GATEWAY: Mac = [0x02, 0x00, 0x00, 0x00, 0x00, 0xfe];
const CLIENT_V4: [u8; 4] = Ipv4Addr::new(192, 168, 50, 10).octets();
const REMOTE_V4: [u8; 4] = Ipv4Addr::new(203, 0, 113, 7).octets();
/// A box's addresses: LAN and WAN, IPv4 and IPv6, loopback and link-local.
const LOCAL_ADDRS: [IpAddr; 8] = [
    IpAddr::V4(Ipv4Addr::LOCALHOST),
    IpAddr::V4(Ipv4Addr::new(192, 168, 50, 1)),
    IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)),
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
    IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x50, 0, 0, 0, 0, 1)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 2)),
];
/// Client counts measured, one table block each; the measured client is always among them.
const CLIENT_COUNTS: [u32; 2] = [1, 10_000];

struct Options {
    repeat: u32,
    runs: usize,
}

impl Options {
    fn from_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Self> {
        let mut options = Self {
            repeat: 1_000_000,
            runs: 5,
        };
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .with_context(|| format!("{name} needs a number\n{USAGE_TEXT}"))
            };
            match arg.as_str() {
                "--repeat" => {
                    let repeat = value("--repeat")?;
                    options.repeat = repeat
                        .parse()
                        .with_context(|| format!("--repeat {repeat:?} is not a number"))?;
                }
                "--runs" => {
                    let runs = value("--runs")?;
                    options.runs = runs
                        .parse()
                        .with_context(|| format!("--runs {runs:?} is not a number"))?;
                }
                "-h" | "--help" => {
                    println!("{USAGE_TEXT}");
                    process::exit(0);
                }
                other => bail!("unknown argument {other:?}\n{USAGE_TEXT}"),
            }
        }
        ensure!(options.repeat > 0, "--repeat must be at least 1");
        ensure!(options.runs > 0, "--runs must be at least 1");
        Ok(options)
    }
}

/// A bpffs folder for the benchmark's pinned maps, removed on drop.
struct PinDir {
    path: PathBuf,
}

impl PinDir {
    fn create() -> anyhow::Result<Self> {
        let path = PathBuf::from(format!("/sys/fs/bpf/hotspotd-bench-{}", process::id()));
        fs::create_dir(&path).with_context(|| {
            format!(
                "mkdir {} (needs root and bpffs at /sys/fs/bpf)",
                path.display()
            )
        })?;
        Ok(Self { path })
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        // Unpinning removes the names only; each map goes when its last fd closes.
        if let Err(error) = fs::remove_dir_all(&self.path) {
            eprintln!("removing {}: {error}", self.path.display());
        }
    }
}

/// One row of the table.
struct Row {
    program: &'static str,
    clients: u32,
    ns_per_packet: u128,
    ns_above_empty: u128,
    /// `ns_above_empty` over the reference's, measured beside it.
    times_reference: f64,
}

fn main() -> anyhow::Result<()> {
    let options = Options::from_args(env::args().skip(1))?;
    let pins = PinDir::create()?;
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(&pins.path)
        .load(EBPF_OBJECT)
        .context("load the eBPF object")?;
    for name in [EMPTY, REFERENCE, INGRESS, EGRESS] {
        classifier_mut(&mut ebpf, name)?
            .load()
            .with_context(|| format!("the verifier rejected {name}"))?;
    }
    insert_local_addrs(&mut ebpf)?;

    let client = client_mac(0);
    let up = ipv4(
        CLIENT_V4,
        REMOTE_V4,
        IPPROTO_TCP,
        &tcp(CLIENT_PORT, HTTPS_PORT, TCP_PAYLOAD_LEN),
    );
    let down = ipv4(
        REMOTE_V4,
        CLIENT_V4,
        IPPROTO_TCP,
        &tcp(HTTPS_PORT, CLIENT_PORT, TCP_PAYLOAD_LEN),
    );
    let up_frame = ethernet(GATEWAY, client, &[], ETH_P_IPV4, &up);
    let down_frame = ethernet(client, GATEWAY, &[], ETH_P_IPV4, &down);

    let mut rows = Vec::new();
    let mut table = hotspotd::bpf::ClientTable::load(&mut ebpf).context("read CLIENTS")?;
    let mut clients_inserted = 0;
    for clients in CLIENT_COUNTS {
        while clients_inserted < clients {
            insert_client(&mut ebpf, &mut table, client_mac(clients_inserted))?;
            clients_inserted += 1;
        }
        let before = usage_of(&ebpf, client)?;
        // Round-robin, so that a burst of other load on the machine hits every program alike.
        let programs = [
            (EMPTY, &up_frame),
            (REFERENCE, &up_frame),
            (INGRESS, &up_frame),
            (EGRESS, &down_frame),
        ];
        let mut samples = [const { Vec::new() }; 4];
        for _ in 0..options.runs {
            for ((name, frame), samples) in programs.iter().zip(&mut samples) {
                samples.push(ns_per_run(&ebpf, name, frame, options.repeat)?);
            }
        }
        check_billed(before, usage_of(&ebpf, client)?, &options)?;
        let [empty, reference, ingress, egress] = samples.map(median);
        let floor = reference.saturating_sub(empty).max(1);
        for (program, ns_per_packet) in [
            (EMPTY, empty),
            (REFERENCE, reference),
            (INGRESS, ingress),
            (EGRESS, egress),
        ] {
            let ns_above_empty = ns_per_packet.saturating_sub(empty);
            #[expect(clippy::cast_precision_loss, reason = "nanoseconds of one packet")]
            let times_reference = ns_above_empty as f64 / floor as f64;
            rows.push(Row {
                program,
                clients,
                ns_per_packet,
                ns_above_empty,
                times_reference,
            });
        }
    }

    print_table(&rows, &options, up_frame.len());
    Ok(())
}

fn classifier_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut SchedClassifier> {
    let program = ebpf
        .program_mut(name)
        .with_context(|| format!("no program {name} in the eBPF object"))?;
    program
        .try_into()
        .with_context(|| format!("{name} is not a tc classifier"))
}

fn classifier<'a>(ebpf: &'a Ebpf, name: &str) -> anyhow::Result<&'a SchedClassifier> {
    let program = ebpf
        .program(name)
        .with_context(|| format!("no program {name} in the eBPF object"))?;
    program
        .try_into()
        .with_context(|| format!("{name} is not a tc classifier"))
}

fn insert_local_addrs(ebpf: &mut Ebpf) -> anyhow::Result<()> {
    let addrs = LOCAL_ADDRS.into_iter().map(hotspotd::net::ip_key).collect();
    let services = hotspotd::bpf::LocalServices::of(&hotspotd::config::LocalService::defaults());
    hotspotd::bpf::set_local_addrs(ebpf, &addrs, &services).context("write the local addresses")
}

/// Gives `client` a running data session whose budget never runs out during the benchmark,
/// as the daemon does (room in `USAGE`, then the grant): the gate's full path (grant lookup,
/// deadline check, atomic spend) is measured.
fn insert_client(
    ebpf: &mut Ebpf,
    table: &mut hotspotd::bpf::ClientTable,
    client: Mac,
) -> anyhow::Result<()> {
    let grant = hotspotd_common::Grant::new(1, i64::MAX - 1, hotspotd_common::NO_DEADLINE);
    table
        .set_grant(ebpf, MacKey::new(client), grant)
        .with_context(|| format!("give client {client:02x?} room and a grant"))?;
    let map = ebpf
        .map_mut("BENCH_COUNTERS")
        .context("no BENCH_COUNTERS map")?;
    let mut reference: PerCpuHashMap<_, MacKey, [u64; 2]> = PerCpuHashMap::try_from(map)?;
    let cpus = aya::util::nr_cpus()
        .map_err(|(_, error)| error)
        .context("count the possible CPUs")?;
    let zeros = aya::maps::PerCpuValues::try_from(vec![[0u64; 2]; cpus])?;
    reference
        .insert(MacKey::new(client), zeros, 0)
        .with_context(|| format!("insert client {client:02x?} into BENCH_COUNTERS"))
}

/// The client's counters summed over all CPUs.
fn usage_of(ebpf: &Ebpf, client: Mac) -> anyhow::Result<Usage> {
    hotspotd::bpf::read_usage(ebpf, MacKey::new(client))
        .context("read the client's counters")?
        .context("the client has no counters")
}

/// Runs `program` `repeat` times on `frame`; returns the mean time of one run, in whole ns
/// (what the kernel reports when it repeats).
fn ns_per_run(ebpf: &Ebpf, name: &str, frame: &[u8], repeat: u32) -> anyhow::Result<u128> {
    let context = forwarded_context();
    let result = classifier(ebpf, name)?
        .test_run(TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&context),
            repeat,
            ..TestRunOptions::new()
        })
        .with_context(|| format!("test run of {name}"))?;
    if name == INGRESS || name == EGRESS {
        ensure!(
            result.return_value.cast_signed() == TC_ACT_UNSPEC,
            "{name} returned {} instead of TC_ACT_UNSPEC",
            result.return_value.cast_signed()
        );
    }
    Ok(result.duration.as_nanos())
}

/// `struct __sk_buff` (uapi linux/bpf.h) with `ingress_ifindex` set: a packet that arrived on
/// another interface, as every forwarded download has (one the box makes itself has none).
fn forwarded_context() -> [u8; SK_BUFF_LEN] {
    let mut context = [0u8; SK_BUFF_LEN];
    context[SK_BUFF_INGRESS_IFINDEX..SK_BUFF_INGRESS_IFINDEX + 4]
        .copy_from_slice(&FORWARDED_FROM_IFINDEX.to_ne_bytes());
    context
}

const SK_BUFF_LEN: usize = 192;
const SK_BUFF_INGRESS_IFINDEX: usize = 36;
/// Any interface but the LAN's; the programs only tell 0 (the box) from the rest.
const FORWARDED_FROM_IFINDEX: u32 = 1;

fn median(mut samples: Vec<u128>) -> u128 {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// Checks that every measured run took the billable path, so the numbers are for accounting
/// and not for an early exit.
fn check_billed(before: Usage, after: Usage, options: &Options) -> anyhow::Result<()> {
    let runs = u64::from(options.repeat) * u64::try_from(options.runs)?;
    let up_packets = after.up_packets - before.up_packets;
    let down_packets = after.down_packets - before.down_packets;
    ensure!(
        up_packets == runs && down_packets == runs,
        "expected {runs} billable packets each way, counted {up_packets} up and {down_packets} down"
    );
    Ok(())
}

fn print_table(rows: &[Row], options: &Options, frame_len: usize) {
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "BPF_PROG_TEST_RUN, kernel {}, {frame_len}-byte IPv4 TCP frame (billable), \
         {} local addresses, median of {} runs of {} repeats",
        kernel.trim(),
        LOCAL_ADDRS.len(),
        options.runs,
        options.repeat,
    );
    println!();
    println!("| program | clients | ns/packet | ns above empty | × reference |");
    println!("|---|---:|---:|---:|---:|");
    for row in rows {
        println!(
            "| {} | {} | {} | {} | {:.2} |",
            row.program, row.clients, row.ns_per_packet, row.ns_above_empty, row.times_reference
        );
    }
}
