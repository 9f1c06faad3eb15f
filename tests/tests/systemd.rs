//! End to end: hotspotd as systemd runs it. The unit's capability set is what the daemon needs,
//! found by running the real daemon with exactly that set (it starts, serves `hotspotctl
//! clients` and the portal over HTTPS on port 443, counts traffic, grants a session, takes
//! over its pinned state after a crash) and
//! with each capability removed (it fails); `systemctl restart` (SIGTERM, then a start with the
//! same capabilities) under traffic lets no client without a session through; the daemon speaks the `sd_notify` protocol
//! (`READY=1`, watchdog pings, `STOPPING=1`) to a socket of the test's own; and the unit passes
//! `systemd-analyze verify` and keeps its sandbox score.
//!
//! This machine's PID 1 need not be systemd, so nothing here starts the unit itself: the daemon
//! runs under `setpriv` with the unit's capabilities, and under `NOTIFY_SOCKET` set as systemd
//! would set it. Needs root (namespaces, eBPF), `setpriv`, `prlimit` (util-linux) and
//! `systemd-analyze` (systemd); CI runs as root and `scripts/bootstrap.sh` installs them.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::IoSliceMut,
    net::{IpAddr, SocketAddr},
    os::{fd::AsRawFd, unix::net::UnixDatagram},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use hotspotd_tests::{
    Daemon, GATEWAY_LAN_V4, INTERNET_V4, Lan, UdpEcho, UdpSink, UdpStream, hotspotd_bin,
    http::request,
    ip_bytes_udp,
    tls::{TestCert, exchange_tls},
    udp_ping_pong,
    units::said_of_hotspotd,
    wait_for, workspace_root,
};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt::PassCred};

/// How long the daemon may take to show traffic: a few 100 ms polls.
const SETTLE: Duration = Duration::from_secs(5);
/// The smallest `RLIMIT_MEMLOCK` a box may give the service (the kernel's old default; systemd
/// sets 8 MiB). The daemon runs under it, so a map that still counted against it would fail.
const MEMLOCK_BYTES: u64 = 64 * 1024;

fn unit_path() -> PathBuf {
    workspace_root().join("systemd").join("hotspotd.service")
}

/// Every value of `key=` in the unit, split on white space, in order.
fn unit_values(key: &str) -> Result<Vec<String>> {
    let path = unit_path();
    let text = fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let prefix = format!("{key}=");
    Ok(text
        .lines()
        .filter_map(|line| line.trim().strip_prefix(&prefix))
        .flat_map(str::split_whitespace)
        .map(str::to_owned)
        .collect())
}

/// The unit's capabilities: its bounding set, which its ambient set must equal (root's uid gets
/// the bounding set; the ambient set keeps them should a drop-in add `User=`).
fn unit_capabilities() -> Result<Vec<String>> {
    let bounding = unit_values("CapabilityBoundingSet")?;
    let ambient = unit_values("AmbientCapabilities")?;
    ensure!(!bounding.is_empty(), "the unit sets CapabilityBoundingSet=");
    ensure!(
        bounding.iter().collect::<BTreeSet<_>>() == ambient.iter().collect::<BTreeSet<_>>(),
        "CapabilityBoundingSet= {bounding:?} and AmbientCapabilities= {ambient:?} differ"
    );
    Ok(bounding)
}

/// `prlimit ... setpriv ...`: runs the daemon as the unit does, with root's uid, no new
/// privileges, and exactly `caps` (e.g. `CAP_BPF`) in every capability set, the bounding set
/// included, so nothing can bring another one back.
fn with_exactly(caps: &[String]) -> Result<Vec<String>> {
    let mut set = String::from("-all");
    for cap in caps {
        let name = cap
            .strip_prefix("CAP_")
            .with_context(|| format!("{cap} is a capability name"))?;
        set.push_str(",+");
        set.push_str(&name.to_lowercase());
    }
    Ok(vec![
        "prlimit".into(),
        format!("--memlock={MEMLOCK_BYTES}:{MEMLOCK_BYTES}"),
        "setpriv".into(),
        "--no-new-privs".into(),
        format!("--inh-caps={set}"),
        format!("--ambient-caps={set}"),
        format!("--bounding-set={set}"),
        "--".into(),
    ])
}

/// The capability bits of `caps`, as /proc/PID/status shows them.
fn capability_mask(caps: &[String]) -> Result<u64> {
    // From linux/capability.h: the set, and what a unit for an eBPF daemon might add.
    const NUMBERS: [(&str, u32); 8] = [
        ("CAP_DAC_OVERRIDE", 1),
        ("CAP_DAC_READ_SEARCH", 2),
        ("CAP_NET_BIND_SERVICE", 10),
        ("CAP_NET_ADMIN", 12),
        ("CAP_SYS_ADMIN", 21),
        ("CAP_SYS_RESOURCE", 24),
        ("CAP_PERFMON", 38),
        ("CAP_BPF", 39),
    ];
    caps.iter().try_fold(0, |mask, cap| {
        let (_, bit) = NUMBERS
            .iter()
            .find(|(name, _)| name == cap)
            .with_context(|| format!("add {cap}'s number to this test"))?;
        Ok(mask | 1 << bit)
    })
}

/// The value of `field:` in /proc/PID/status.
fn proc_status(pid: u32, field: &str) -> Result<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(|value| value.trim().to_owned())
        .with_context(|| format!("/proc/{pid}/status has {field}"))
}

/// The portal's HTTPS as a box with a certificate serves it: on `portal.tls_port`'s default,
/// 443, which takes `CAP_NET_BIND_SERVICE`. Every daemon here serves it, so the unit's set is
/// found with HTTPS on.
struct Https {
    dir: tempfile::TempDir,
    cert: TestCert,
}

impl Https {
    fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let cert = TestCert::new(&["192.0.2.1"])?;
        cert.write(dir.path(), "portal")?;
        Ok(Self { dir, cert })
    }

    /// The daemon's variables for it.
    fn env(&self) -> Result<Vec<(&'static str, String)>> {
        let path = |name: &str| -> Result<String> {
            let path = self.dir.path().join(name);
            path.to_str()
                .map(str::to_owned)
                .context("a UTF-8 temporary path")
        };
        Ok(vec![
            ("HOTSPOTD__PORTAL__TLS_CERT", path("portal.pem")?),
            ("HOTSPOTD__PORTAL__TLS_KEY", path("portal.key")?),
        ])
    }

    /// Whether the portal answers a client over HTTPS.
    fn answers(&self, lan: &Lan) -> Result<()> {
        let trusted = self.cert.der.clone();
        let answer = lan.clients[0].netns.run(move || {
            exchange_tls(
                SocketAddr::new(GATEWAY_LAN_V4.into(), 443),
                &trusted,
                &request("GET", "/api/captive", &[], b""),
            )
        })??;
        ensure!(
            answer.answer.status == 200,
            "HTTPS answered {:?}",
            answer.answer
        );
        Ok(())
    }
}

/// Starts the daemon with exactly `caps`, serving HTTPS with `https`, and `wrapper_head`
/// (a tracer) before the capability wrapper.
fn start_with(lan: &Lan, caps: &[String], https: &Https) -> Result<Daemon> {
    start_traced(lan, caps, https, &[])
}

fn start_traced(
    lan: &Lan,
    caps: &[String],
    https: &Https,
    wrapper_head: &[String],
) -> Result<Daemon> {
    let mut wrapper = wrapper_head.to_vec();
    wrapper.extend(with_exactly(caps)?);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let env = https.env()?;
    let env: Vec<(&str, &str)> = env
        .iter()
        .map(|(key, value)| (*key, value.as_str()))
        .collect();
    Daemon::start_wrapped(lan, &env, &wrapper)
}

/// What the service has to do on a box: serve `hotspotctl clients` and the portal over HTTPS,
/// sell a client a session so the gate lets it through, count its bytes, take over its pinned
/// state after a crash, and stop cleanly. Fails at the first thing that does not work, saying
/// which.
fn does_its_job(lan: &Lan, daemon: &mut Daemon, https: &Https) -> Result<()> {
    let table = daemon.ctl(&["clients"])?;
    ensure!(
        table.status.success(),
        "hotspotctl clients failed: {}",
        String::from_utf8_lossy(&table.stderr)
    );

    https.answers(lan).context("the portal over HTTPS")?;

    let client = &lan.clients[0];
    daemon.connect_for_an_hour(&client.mac)?;

    let echo = UdpEcho::start(&lan.internet, SocketAddr::new(IpAddr::V4(INTERNET_V4), 0))?;
    let (payload, count) = (500, 10);
    let per_round = ip_bytes_udp(payload, false) * count as u64;
    let mut expected = 0;
    for run in ["first run", "run after a crash"] {
        let echoed = udp_ping_pong(&client.netns, echo.addr(), payload, count)
            .with_context(|| format!("{run}: the gate lets the client with a session through"))?;
        ensure!(
            echoed == count,
            "{run}: {echoed} of {count} datagrams came back"
        );
        expected += per_round;
        let mut row = serde_json::Value::Null;
        let counted = wait_for(SETTLE, || {
            row = daemon
                .ctl_json(&["clients"])
                .ok()
                .and_then(|table| {
                    table
                        .as_array()?
                        .iter()
                        .find(|row| row["mac"] == client.mac.as_str())
                        .cloned()
                })
                .unwrap_or_default();
            row["up_bytes"] == expected && row["down_bytes"] == expected
        });
        ensure!(
            counted,
            "{run}: {expected} bytes each way are counted: {row}"
        );
        if run == "first run" {
            // SIGKILL leaves the maps and links pinned; the next start takes them over.
            daemon.kill()?;
            daemon
                .restart(lan)
                .context("restart on the state a crash left")?;
        }
    }
    Ok(())
}

#[test]
fn the_daemon_does_its_job_with_exactly_the_units_capabilities() -> Result<()> {
    let caps = unit_capabilities()?;
    let lan = Lan::new(1)?;
    let https = Https::new()?;
    let mut daemon = start_with(&lan, &caps, &https)?;

    // The wrapper really took everything else away, so what follows proves the set enough.
    let mask = capability_mask(&caps)?;
    for field in ["CapEff", "CapPrm", "CapBnd", "CapAmb"] {
        let value = proc_status(daemon.pid(), field)?;
        ensure!(
            u64::from_str_radix(&value, 16)? == mask,
            "{field} of the daemon is {value}, not {mask:016x} ({caps:?})"
        );
    }
    let limits = fs::read_to_string(format!("/proc/{}/limits", daemon.pid()))?;
    ensure!(
        limits
            .lines()
            .any(|line| line.starts_with("Max locked memory")
                && line.split_whitespace().nth(3) == Some(&MEMLOCK_BYTES.to_string())),
        "the daemon runs under RLIMIT_MEMLOCK {MEMLOCK_BYTES}:\n{limits}"
    );

    does_its_job(&lan, &mut daemon, &https).with_context(|| format!("log:\n{}", daemon.log()))?;
    let status = daemon.stop()?;
    ensure!(
        status.success(),
        "hotspotd exits cleanly on SIGTERM: {status}"
    );
    Ok(())
}

/// `systemctl restart hotspotd` as the unit does it: SIGTERM, wait for the exit, start again
/// with the unit's capabilities. A client without a session knocks every 2 ms all along and
/// gets nothing through; the paying client is served before and after.
#[test]
fn systemctl_restart_under_traffic_keeps_the_gate_closed() -> Result<()> {
    let caps = unit_capabilities()?;
    let lan = Lan::new(2)?;
    lan.pin_neighbors()?;
    let https = Https::new()?;
    let mut daemon = start_with(&lan, &caps, &https)?;
    let paying = &lan.clients[0];
    daemon.connect_for_an_hour(&paying.mac)?;
    let echo = UdpEcho::start(&lan.internet, SocketAddr::new(IpAddr::V4(INTERNET_V4), 0))?;
    let knocked = UdpSink::start(&lan.internet, SocketAddr::new(IpAddr::V4(INTERNET_V4), 0))?;
    let knocks = UdpStream::start(
        &lan.clients[1].netns,
        knocked.addr(),
        100,
        Duration::from_millis(2),
        Duration::from_mins(1),
    )?;
    let count = 10;
    for run in ["before the restart", "after the restart"] {
        let echoed = udp_ping_pong(&paying.netns, echo.addr(), 500, count)
            .with_context(|| format!("{run}: the paying client gets through"))?;
        ensure!(echoed == count, "{run}: {echoed} of {count} came back");
        if run == "before the restart" {
            let status = daemon.terminate()?;
            ensure!(
                status.success(),
                "hotspotd exits cleanly on SIGTERM: {status}; log:\n{}",
                daemon.log()
            );
            daemon
                .restart(&lan)
                .context("the start half of the restart")?;
        }
    }
    let sent = knocks.sent();
    drop(knocks);
    knocked.sync(&lan.internet)?;
    eprintln!(
        "across the restart the client without a session got {} of {sent} datagrams through",
        knocked.received()
    );
    ensure!(
        knocked.received() == 0,
        "the client without a session got {} of {sent} datagrams through across the restart",
        knocked.received()
    );
    Ok(())
}

#[test]
fn the_daemon_fails_without_any_one_of_the_units_capabilities() -> Result<()> {
    let caps = unit_capabilities()?;
    let outcomes: Vec<(String, Result<()>)> = std::thread::scope(|scope| {
        let runs: Vec<_> = caps
            .iter()
            .map(|missing| {
                let fewer: Vec<String> = caps.iter().filter(|c| *c != missing).cloned().collect();
                let run = scope.spawn(move || -> Result<()> {
                    let lan = Lan::new(1)?;
                    let https = Https::new()?;
                    let mut daemon = start_with(&lan, &fewer, &https)?;
                    does_its_job(&lan, &mut daemon, &https)
                });
                (missing.clone(), run)
            })
            .collect();
        runs.into_iter()
            .map(|(missing, run)| {
                let outcome = run
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("the run panicked")));
                (missing, outcome)
            })
            .collect()
    });
    let mut unneeded = Vec::new();
    for (missing, outcome) in outcomes {
        let Err(error) = outcome else {
            unneeded.push(missing);
            continue;
        };
        // The daemon's own account of what broke, else the test's.
        let error = format!("{error:#}");
        let reason = error
            .lines()
            .find(|line| line.contains("ERROR"))
            .unwrap_or_else(|| error.lines().next().unwrap_or_default());
        eprintln!("without {missing}: {reason}");
        // EPERM or EACCES: it failed for want of the capability, not for a broken run.
        ensure!(
            ["(os error 1)", "(os error 13)"]
                .iter()
                .any(|errno| error.contains(errno)),
            "without {missing} hotspotd failed, but not on a permission check:\n{error}"
        );
    }
    // Capabilities only add, so no smaller set works either. (CAP_SYS_ADMIN, for one, would
    // stand in for each of the others, and this fails.)
    ensure!(
        unneeded.is_empty(),
        "hotspotd does its whole job without each of {unneeded:?} in turn: the unit's set is \
         not the smallest"
    );
    Ok(())
}

/// The system calls a filter of the unit allows: `SystemCallFilter=` names and `@groups`,
/// the groups expanded as this machine's systemd defines them.
fn allowed_syscalls(filter: &[String]) -> Result<BTreeSet<String>> {
    let output = Command::new("systemd-analyze")
        .arg("syscall-filter")
        .output()
        .context("run systemd-analyze (apt-get install systemd; scripts/bootstrap.sh does)")?;
    ensure!(
        output.status.success(),
        "systemd-analyze syscall-filter failed"
    );
    // "@group" at the line start, then its members indented, "# comments" among them.
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut group = None;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let item = line.trim();
        if item.is_empty() || item.starts_with('#') {
            continue;
        }
        if line.starts_with('@') {
            group = Some(item.to_owned());
        } else if let Some(group) = &group {
            groups
                .entry(group.clone())
                .or_default()
                .push(item.to_owned());
        }
    }
    let mut allowed = BTreeSet::new();
    let mut pending: Vec<String> = filter.to_vec();
    let mut seen = BTreeSet::new();
    while let Some(item) = pending.pop() {
        if !item.starts_with('@') {
            allowed.insert(item);
        } else if seen.insert(item.clone()) {
            let members = groups
                .get(&item)
                .with_context(|| format!("systemd knows no group {item}"))?;
            pending.extend(members.iter().cloned());
        }
    }
    Ok(allowed)
}

/// The system calls in an `strace -f` log from the daemon's own `execve` on (the wrappers'
/// calls before it are not the daemon's: systemd applies the filter only to that exec), and
/// the address families of the sockets among them.
fn traced_calls(trace: &str, bin: &Path) -> Result<(BTreeSet<String>, BTreeSet<String>)> {
    let exec = format!("execve(\"{}\"", bin.display());
    let start = trace
        .lines()
        .position(|line| line.contains(&exec))
        .with_context(|| format!("the trace shows {exec}"))?;
    let (mut calls, mut families) = (BTreeSet::new(), BTreeSet::new());
    for line in trace.lines().skip(start) {
        // "PID  name(args..." ; "<... name resumed>" repeats a call already counted.
        let Some(call) = line.split_whitespace().nth(1) else {
            continue;
        };
        let Some((name, args)) = call.split_once('(') else {
            continue;
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            continue;
        }
        calls.insert(name.to_owned());
        if name == "socket" {
            families.insert(args.trim_end_matches(',').to_owned());
        }
    }
    Ok((calls, families))
}

#[test]
fn the_units_sandbox_allows_every_call_and_socket_the_daemon_makes() -> Result<()> {
    let caps = unit_capabilities()?;
    let dir = tempfile::tempdir()?;
    let trace_path = dir.path().join("trace");
    let trace_arg = trace_path.to_str().context("temporary path is UTF-8")?;
    // -D: the tracer runs as a grandchild, so the daemon keeps the pid the harness signals.
    let tracer: Vec<String> = ["strace", "-f", "-D", "-qq", "-o", trace_arg]
        .map(str::to_owned)
        .to_vec();
    let lan = Lan::new(1)?;
    let https = Https::new()?;
    let mut daemon = start_traced(&lan, &caps, &https, &tracer)
        .context("start hotspotd under strace (apt-get install strace; bootstrap.sh does)")?;
    does_its_job(&lan, &mut daemon, &https).with_context(|| format!("log:\n{}", daemon.log()))?;
    let status = daemon.stop()?;
    ensure!(
        status.success(),
        "hotspotd exits cleanly on SIGTERM: {status}"
    );
    // The tracer writes its last lines after the daemon is gone.
    let mut trace = String::new();
    wait_for(Duration::from_secs(5), || {
        trace = fs::read_to_string(&trace_path).unwrap_or_default();
        trace.contains("+++ exited with")
    });

    let (calls, families) = traced_calls(&trace, &hotspotd_bin())?;
    let allowed = allowed_syscalls(&unit_values("SystemCallFilter")?)?;
    let denied: Vec<&String> = calls.difference(&allowed).collect();
    ensure!(
        denied.is_empty(),
        "SystemCallFilter= would deny {denied:?}, which the daemon calls"
    );
    let address_families: BTreeSet<String> = unit_values("RestrictAddressFamilies")?
        .into_iter()
        .collect();
    let refused: Vec<&String> = families.difference(&address_families).collect();
    ensure!(
        refused.is_empty(),
        "RestrictAddressFamilies= would refuse {refused:?}, which the daemon opens"
    );
    // The daemon was traced at all: a trace that missed it would pass anything.
    ensure!(
        calls.contains("bpf") && families.contains("AF_NETLINK"),
        "the trace shows the daemon's bpf(2) calls and its netlink socket: {calls:?}"
    );
    Ok(())
}

/// One `sd_notify` message and the pid that sent it (from `SO_PASSCRED`: systemd's
/// `NotifyAccess=main` drops messages from any other process).
#[derive(Debug)]
struct Notification {
    text: String,
    pid: i32,
    at: Instant,
}

/// Receives every message `socket` gets until `until` says stop or `timeout` passes.
fn receive(
    socket: &UnixDatagram,
    timeout: Duration,
    mut until: impl FnMut(&[Notification]) -> bool,
) -> Result<Vec<Notification>> {
    let deadline = Instant::now() + timeout;
    let mut received = Vec::new();
    while !until(&received) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        socket.set_read_timeout(Some(left))?;
        let mut buffer = [0u8; 4096];
        let mut space = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
        let mut iov = [IoSliceMut::new(&mut buffer)];
        let message = match recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        ) {
            Ok(message) => message,
            Err(nix::errno::Errno::EAGAIN) => break,
            // A signal for this process (other tests' children exiting) landed on this thread.
            Err(nix::errno::Errno::EINTR) => continue,
            Err(error) => return Err(error).context("receive on the notify socket"),
        };
        let pid = message
            .cmsgs()?
            .find_map(|cmsg| match cmsg {
                ControlMessageOwned::ScmCredentials(creds) => Some(creds.pid()),
                _ => None,
            })
            .unwrap_or(0);
        let len = message.bytes;
        received.push(Notification {
            text: String::from_utf8_lossy(&buffer[..len])
                .trim_end()
                .to_owned(),
            pid,
            at: Instant::now(),
        });
    }
    Ok(received)
}

#[test]
fn the_daemon_speaks_sd_notify_ready_watchdog_stopping() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path)?;
    setsockopt(&socket, PassCred, &true)?;
    let lan = Lan::new(1)?;
    let notify_socket = path.to_str().context("temporary path is UTF-8")?;
    // 2 s: pings every second. WATCHDOG_PID is left out, so the daemon takes the watchdog as
    // its own, as it does when systemd starts it directly.
    let daemon = Daemon::start(
        &lan,
        &[
            ("NOTIFY_SOCKET", notify_socket),
            ("WATCHDOG_USEC", "2000000"),
        ],
    )?;
    let pid = i32::try_from(daemon.pid())?;

    let pings = |messages: &[Notification]| {
        messages
            .iter()
            .filter(|message| message.text == "WATCHDOG=1")
            .count()
    };
    let started = receive(&socket, Duration::from_secs(3), |messages| {
        pings(messages) >= 2
    })?;
    let texts: Vec<&str> = started.iter().map(|m| m.text.as_str()).collect();
    ensure!(
        texts.first() == Some(&"READY=1"),
        "READY=1 comes first: {texts:?}\nlog:\n{}",
        daemon.log()
    );
    ensure!(
        pings(&started) >= 2,
        "two watchdog pings within 3 s of a 2 s watchdog: {texts:?}"
    );
    ensure!(
        texts[1..].iter().all(|text| *text == "WATCHDOG=1"),
        "only pings while serving: {texts:?}"
    );
    let ping_times: Vec<Instant> = started
        .iter()
        .filter(|message| message.text == "WATCHDOG=1")
        .map(|message| message.at)
        .collect();
    for pair in ping_times.windows(2) {
        // Every half of WATCHDOG_USEC (1 s): never a flood, and even a ping made late by a
        // loaded machine beats the 2 s timeout. (A tick delayed under load is followed by one
        // on schedule, so the gap can be well under 1 s.)
        let gap = pair[1] - pair[0];
        ensure!(
            gap > Duration::from_millis(250) && gap < Duration::from_secs(2),
            "pings every ~1 s: {gap:?} between two"
        );
    }

    let log = daemon.log();
    let status = daemon.stop()?;
    ensure!(
        status.success(),
        "hotspotd exits cleanly on SIGTERM: {status}"
    );
    let stopping = receive(&socket, Duration::from_millis(200), |_| false)?;
    let texts: Vec<&str> = stopping.iter().map(|m| m.text.as_str()).collect();
    ensure!(
        texts.last() == Some(&"STOPPING=1"),
        "STOPPING=1 is the last word after SIGTERM: {texts:?}\nlog:\n{log}"
    );
    for message in started.iter().chain(&stopping) {
        ensure!(
            message.pid == pid,
            "{:?} came from pid {}, not the daemon's {pid}",
            message.text,
            message.pid
        );
    }
    Ok(())
}

/// The unit as installed, but starting the binary under test: `systemd-analyze verify` checks
/// that `ExecStart=` exists and is executable.
fn unit_for_the_built_binary(dir: &Path) -> Result<PathBuf> {
    let unit = fs::read_to_string(unit_path())?;
    let installed = "ExecStart=/usr/bin/hotspotd ";
    ensure!(
        unit.contains(installed),
        "the unit starts /usr/bin/hotspotd, where the package puts it"
    );
    let bin = hotspotd_bin();
    ensure!(bin.is_file(), "{} is built", bin.display());
    let path = dir.join("hotspotd.service");
    fs::write(
        &path,
        unit.replace(installed, &format!("ExecStart={} ", bin.display())),
    )?;
    Ok(path)
}

fn systemd_analyze(args: &[&str], unit: &Path) -> Result<std::process::Output> {
    Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
        .context("run systemd-analyze (apt-get install systemd; scripts/bootstrap.sh does)")
}

#[test]
fn the_unit_passes_systemd_analyze_verify_and_keeps_its_sandbox() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let unit = unit_for_the_built_binary(dir.path())?;

    // verify exits 0 even for an unknown key or a bad value; it only warns, so no output about
    // hotspotd's unit is the pass (other units' files are loaded too: tests/src/units.rs).
    let verify = systemd_analyze(&["verify", "--man=no"], &unit)?;
    let said = said_of_hotspotd(&verify.stdout, &verify.stderr);
    ensure!(
        verify.status.success() && said.is_empty(),
        "systemd-analyze verify ({}):\n{}",
        verify.status,
        said.join("\n")
    );

    // The exposure score today is 2.4 of 10 ("OK"): 1.9 until the portal's listener on the
    // LAN needed IP sockets (and so no `IPAddressDeny=any`), 2.3 until its HTTPS on port 443
    // needed CAP_NET_BIND_SERVICE ("elevated networking privileges", 0.1). A change that
    // weakens the sandbox past 2.4 fails here rather than going unnoticed.
    let security = systemd_analyze(
        &["security", "--offline=true", "--threshold=24", "--no-pager"],
        &unit,
    )?;
    if !security.status.success() {
        bail!(
            "systemd-analyze security: the unit's exposure rose above 2.4:\n{}",
            String::from_utf8_lossy(&security.stdout)
        );
    }
    Ok(())
}
