//! hotspotd's main job on a machine with no hotspot: a LAN of three simulated clients in
//! network namespaces, hotspotd on the gateway with the repository's `config.toml`, real
//! traffic, and the life of a session as the operator sees it: clients blocked before they
//! pay, a time session running and its queued data session taking over at its end, a data
//! session cut off at its last byte, a client that only reaches the box's own services.
//! Everything is removed at the end, also on Ctrl-C. Run through `scripts/demo.sh`.
#![expect(
    clippy::print_stdout,
    reason = "the demo talks to the person running it"
)]

use std::{
    net::{IpAddr, SocketAddr, TcpStream},
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use hotspotd_tests::{
    Daemon, GATEWAY_LAN_V4, INTERNET_V4, INTERNET_V6, LAN_IFACE, Lan, Netns, UdpEcho,
    hotspotctl_bin,
    http::{Answer, exchange_on, request},
    udp_ping_pong,
};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// One step of the story: when, what the operator does, and why.
struct Step {
    at: Duration,
    say: &'static str,
    /// `hotspotctl` arguments; `{A}`, `{B}`, `{C}` stand for the clients' MACs.
    command: &'static [&'static str],
    /// A client (0 = A) whose phone checks for a captive portal, as phones do: a plain HTTP
    /// request to the internet, then the RFC 8908 API.
    phone: Option<usize>,
}

const STORY: &[Step] = &[
    Step {
        at: Duration::from_secs(2),
        say: "Nobody has paid: the gate drops the clients' internet traffic (DROPPED grows); \
              the box's own services (its resolver, the portal) stay reachable (LOCAL).",
        command: &["sessions"],
        phone: None,
    },
    Step {
        at: Duration::from_millis(2_500),
        say: "Client C's phone checks for a captive portal: its plain HTTP request to the \
              internet is answered by the box with a redirect to the portal, and the RFC 8908 \
              API (the address phones get by DHCP option 114) says it is captive.",
        command: &[],
        phone: Some(2),
    },
    Step {
        at: Duration::from_secs(3),
        say: "Client A buys 8 seconds at 10/5 Mbit/s, and 3 MB at the global speed (20/10 Mbit/s \
              here) queued behind it: SPEED changes when it takes over.",
        command: &[
            "session",
            "add",
            "--mac",
            "{A}",
            "--type",
            "time",
            "--time-secs",
            "8",
            "--down-mbits",
            "10",
            "--up-mbits",
            "5",
            "--connect",
        ],
        phone: None,
    },
    Step {
        at: Duration::from_secs(3),
        say: "",
        command: &[
            "session",
            "add",
            "--mac",
            "{A}",
            "--type",
            "data",
            "--data-mb",
            "3",
            "--global-speed",
            "--provider",
            "voucher",
        ],
        phone: None,
    },
    Step {
        at: Duration::from_secs(4),
        say: "Client B buys 4 MB.",
        command: &[
            "session",
            "add",
            "--mac",
            "{B}",
            "--type",
            "data",
            "--data-mb",
            "4",
            "--global-speed",
            "--connect",
        ],
        phone: None,
    },
    Step {
        at: Duration::from_secs(5),
        say: "Client A's and B's phones check again: no redirect now, their requests reach the \
              internet; the RFC 8908 API gives A's seconds and B's bytes left, read from the \
              kernel at this moment.",
        command: &[],
        phone: Some(0),
    },
    Step {
        at: Duration::from_secs(5),
        say: "",
        command: &[],
        phone: Some(1),
    },
];

/// When the clients table and sessions are shown.
const SHOW_AT: &[u64] = &[1, 5, 8, 11, 14, 18];
const DURATION: Duration = Duration::from_secs(19);

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
    let names = ["A", "B", "C"];
    let roles = [
        "streams video over IPv4",
        "browses over IPv6",
        "only asks the gateway's resolver, as a phone does before its portal opens",
    ];
    for ((client, name), role) in lan.clients.iter().zip(names).zip(roles) {
        println!(
            "  client {name}  {}  {}  {}  — {role}",
            client.mac, client.ipv4, client.ipv6
        );
    }
    println!("Starting hotspotd on the gateway with config.toml…");
    let mut daemon = Daemon::start(
        &lan,
        &[
            ("HOTSPOTD__ACCOUNTING__POLL_INTERVAL_MS", "250"),
            ("HOTSPOTD__SPEED__GLOBAL_DOWN_MBITS", "20"),
            ("HOTSPOTD__SPEED__GLOBAL_UP_MBITS", "10"),
        ],
    )?;
    let internet_v4 = UdpEcho::start(&lan.internet, SocketAddr::new(IpAddr::V4(INTERNET_V4), 0))?;
    let internet_v6 = UdpEcho::start(&lan.internet, SocketAddr::new(IpAddr::V6(INTERNET_V6), 0))?;
    // On the DNS port: one of the box's free client services (`network.local_services`).
    let resolver = UdpEcho::start(
        &lan.gateway,
        SocketAddr::new(IpAddr::V4(GATEWAY_LAN_V4), 53),
    )?;
    serve_generate_204(&lan.internet)?;
    let targets = [internet_v4.addr(), internet_v6.addr(), resolver.addr()];
    let macs: Vec<&str> = lan
        .clients
        .iter()
        .map(|client| client.mac.as_str())
        .collect();

    // The clients' traffic runs on scoped threads that borrow their namespaces, while this
    // thread tells the story; leaving the scope joins them.
    let running = AtomicBool::new(true);
    thread::scope(|scope| -> Result<()> {
        for (client, target) in lan.clients.iter().zip(targets) {
            let running = &running;
            scope.spawn(move || keep_sending(&client.netns, target, running));
        }
        let told = tell(&daemon, &lan, &macs);
        running.store(false, Ordering::SeqCst);
        told
    })?;

    println!(
        "\nStopping hotspotd (SIGTERM): it saves and leaves the gate in the kernel, as a crash \
         would."
    );
    let status = daemon.terminate()?;
    println!("hotspotd exited: {status}. Releasing the LAN (hotspotd --release).");
    let released = daemon.release(&lan)?;
    print!("{}", String::from_utf8_lossy(&released.stderr));
    drop(daemon);
    println!("Removing the namespaces.");
    drop(lan);
    println!(
        "\nUP/DOWN: billable bytes (IP headers included) between a client and the internet.\n\
         LOCAL: traffic with the box's client services (portal, DNS, DHCP), never billed.\n\
         DROPPED: what the gate stopped: no running session, or its time or data spent."
    );
    Ok(())
}

/// Sends 1,200-byte datagrams to `target` and waits for each echo, until told to stop. While
/// the client has no session the datagrams are dropped and time out; it keeps trying, as a
/// phone does.
fn keep_sending(netns: &Netns, target: SocketAddr, running: &AtomicBool) {
    while running.load(Ordering::SeqCst) {
        if udp_ping_pong(netns, target, 1_200, 20).is_ok() {
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs the story's steps and shows the tables at their times.
fn tell(daemon: &Daemon, lan: &Lan, macs: &[&str]) -> Result<()> {
    let started = Instant::now();
    let mut steps = STORY.iter().peekable();
    let mut shows = SHOW_AT.iter().peekable();
    while started.elapsed() < DURATION && !STOP.load(Ordering::SeqCst) {
        let elapsed = started.elapsed();
        if let Some(step) = steps.next_if(|step| step.at <= elapsed) {
            if !step.say.is_empty() {
                println!("\n▶ {}", step.say);
            }
            if let Some(client) = step.phone {
                check_portal(&lan.clients[client].netns, ["A", "B", "C"][client])?;
                continue;
            }
            let args: Vec<String> = step
                .command
                .iter()
                .map(|arg| match *arg {
                    "{A}" => macs[0].to_owned(),
                    "{B}" => macs[1].to_owned(),
                    "{C}" => macs[2].to_owned(),
                    other => other.to_owned(),
                })
                .collect();
            hotspotctl(daemon, &args)?;
            continue;
        }
        if shows
            .next_if(|at| Duration::from_secs(**at) <= elapsed)
            .is_some()
        {
            println!("\n── {:>2} s ──", elapsed.as_secs());
            hotspotctl(daemon, &["clients".to_owned()])?;
            println!();
            hotspotctl(daemon, &["sessions".to_owned()])?;
            continue;
        }
        thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The internet's answer to a phone's captive-portal check, `204 No Content`, on port 80 of
/// the internet namespace, for as long as the demo runs.
fn serve_generate_204(internet: &Netns) -> Result<()> {
    let listener = internet
        .run(|| std::net::TcpListener::bind(SocketAddr::new(IpAddr::V4(INTERNET_V4), 80)))??;
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut request = [0u8; 1024];
            let _ = std::io::Read::read(&mut stream, &mut request);
            let _ = std::io::Write::write_all(
                &mut stream,
                b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
            );
        }
    });
    Ok(())
}

/// What a phone's captive-portal check meets: a plain HTTP request to an internet address,
/// then the RFC 8908 API on the portal.
fn check_portal(netns: &Netns, name: &str) -> Result<()> {
    let internet = SocketAddr::new(IpAddr::V4(INTERNET_V4), 80);
    let answer = netns.run(move || -> Result<Answer> {
        let mut stream = TcpStream::connect_timeout(&internet, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        exchange_on(&mut stream, &request("GET", "/generate_204", &[], b""))
    })?;
    match answer {
        Ok(answer) => {
            let location = answer
                .headers
                .lines()
                .find(|line| line.to_ascii_lowercase().starts_with("location:"))
                .unwrap_or("");
            println!(
                "  {name}: GET http://{internet}/generate_204 → {} {location}",
                answer.status
            );
        }
        Err(error) => println!("  {name}: GET http://{internet}/generate_204 → {error:#}"),
    }
    let portal = SocketAddr::new(IpAddr::V4(GATEWAY_LAN_V4), 2050);
    let captive = netns.run(move || -> Result<Answer> {
        let mut stream = TcpStream::connect_timeout(&portal, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        exchange_on(
            &mut stream,
            &request(
                "GET",
                "/api/captive",
                &[("Accept", "application/captive+json")],
                b"",
            ),
        )
    })??;
    println!(
        "  {name}: GET http://{portal}/api/captive → {}",
        captive.body.trim()
    );
    Ok(())
}

fn hotspotctl(daemon: &Daemon, args: &[String]) -> Result<()> {
    println!("$ hotspotctl {}", args.join(" "));
    let output = Command::new(hotspotctl_bin())
        .arg("--socket")
        .arg(daemon.socket())
        .args(args)
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
