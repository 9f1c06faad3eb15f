//! hotspotd's main job on a machine with no hotspot: a LAN of three simulated clients in
//! network namespaces, hotspotd on the gateway with the repository's `config.toml`, real
//! traffic, and the clients table as the kernel counts it. Everything is removed at the end,
//! also on Ctrl-C. Run through `scripts/demo.sh`, which builds the binaries first.
#![expect(
    clippy::print_stdout,
    reason = "the demo talks to the person running it"
)]

use std::{
    net::{IpAddr, SocketAddr},
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use hotspotd_tests::{
    Daemon, GATEWAY_LAN_V4, INTERNET_V4, INTERNET_V6, LAN_IFACE, Lan, Netns, TcpSink, UdpEcho,
    hotspotctl_bin, tcp_send, udp_ping_pong,
};

/// How long traffic runs, and how often the table is shown.
const DURATION: Duration = Duration::from_secs(10);
const REFRESH: Duration = Duration::from_secs(2);

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn main() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the demo builds network namespaces and loads eBPF programs: run it as root");
    }
    // Ctrl-C ends the demo early but still runs every cleanup (namespaces, daemon, pins).
    let handler = nix::sys::signal::SigHandler::Handler(on_interrupt);
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { nix::sys::signal::signal(nix::sys::signal::Signal::SIGINT, handler) }
        .context("install the Ctrl-C handler")?;

    println!("Building a LAN: a gateway ({LAN_IFACE}), three clients, an internet behind it…");
    let lan = Lan::new(3)?;
    for (client, role) in lan.clients.iter().zip(ROLES) {
        println!(
            "  client {}  {}  {}  — {}",
            client.mac, client.ipv4, client.ipv6, role.describe
        );
    }
    println!("Starting hotspotd on the gateway with config.toml…");
    let daemon = Daemon::start(&lan, &[("HOTSPOTD__ACCOUNTING__POLL_INTERVAL_MS", "500")])?;
    let internet_v4 = UdpEcho::start(&lan.internet, SocketAddr::new(IpAddr::V4(INTERNET_V4), 0))?;
    let internet_v6 = UdpEcho::start(&lan.internet, SocketAddr::new(IpAddr::V6(INTERNET_V6), 0))?;
    let uploads = TcpSink::start(&lan.internet, SocketAddr::new(IpAddr::V4(INTERNET_V4), 0))?;
    let portal = UdpEcho::start(&lan.gateway, SocketAddr::new(IpAddr::V4(GATEWAY_LAN_V4), 0))?;
    let targets = Targets {
        internet_v4: internet_v4.addr(),
        internet_v6: internet_v6.addr(),
        uploads: uploads.addr(),
        portal: portal.addr(),
    };

    // The clients' traffic runs on scoped threads that borrow their namespaces, while this
    // thread shows the table; leaving the scope joins them.
    let running = AtomicBool::new(true);
    thread::scope(|scope| -> Result<()> {
        for (client, role) in lan.clients.iter().zip(ROLES) {
            let running = &running;
            scope.spawn(move || {
                while running.load(Ordering::SeqCst) {
                    if let Err(error) = (role.work)(&client.netns, targets) {
                        eprintln!("demo: traffic from {} failed: {error:#}", client.mac);
                        return;
                    }
                }
            });
        }
        let started = Instant::now();
        let shown = (|| {
            while started.elapsed() < DURATION && !STOP.load(Ordering::SeqCst) {
                thread::sleep(REFRESH);
                println!(
                    "\n── hotspotctl clients, {:>2} s into the demo ──",
                    started.elapsed().as_secs()
                );
                show_clients(&daemon)?;
            }
            Ok(())
        })();
        running.store(false, Ordering::SeqCst);
        shown
    })?;

    println!("\nStopping hotspotd (SIGTERM): it detaches its programs and removes its pins.");
    let status = daemon.stop()?;
    println!("hotspotd exited: {status}. Removing the namespaces.");
    drop(lan);
    println!(
        "\nUP/DOWN are billable bytes (IP headers included) between a client and the internet;\n\
         LOCAL is traffic with the box itself (portal, DNS, DHCP), never billed."
    );
    Ok(())
}

fn show_clients(daemon: &Daemon) -> Result<()> {
    let output = Command::new(hotspotctl_bin())
        .arg("--socket")
        .arg(daemon.socket())
        .arg("clients")
        .output()
        .context("run hotspotctl")?;
    print!("{}", String::from_utf8_lossy(&output.stdout));
    if !output.status.success() {
        bail!(
            "hotspotctl failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Where the simulated clients send their traffic.
#[derive(Clone, Copy)]
struct Targets {
    internet_v4: SocketAddr,
    internet_v6: SocketAddr,
    uploads: SocketAddr,
    portal: SocketAddr,
}

/// What one simulated client does, over and over.
struct Role {
    describe: &'static str,
    work: fn(&Netns, Targets) -> Result<()>,
}

const ROLES: [Role; 3] = [
    Role {
        describe: "streams video over IPv4 (steady download and upload)",
        work: |netns, targets| {
            udp_ping_pong(netns, targets.internet_v4, 1_400, 40)?;
            thread::sleep(Duration::from_millis(100));
            Ok(())
        },
    },
    Role {
        describe: "uploads photos over TCP and browses over IPv6",
        work: |netns, targets| {
            tcp_send(netns, targets.uploads, 500_000)?;
            udp_ping_pong(netns, targets.internet_v6, 600, 10)?;
            thread::sleep(Duration::from_millis(500));
            Ok(())
        },
    },
    Role {
        describe: "only talks to the captive portal on the gateway (local, not billed)",
        work: |netns, targets| {
            udp_ping_pong(netns, targets.portal, 300, 5)?;
            thread::sleep(Duration::from_millis(300));
            Ok(())
        },
    },
];
