//! End to end, the walled garden by host name: a real dnsmasq on the gateway answers for test
//! names, and a client without a session that resolved a garden name through it reaches that
//! name's addresses (IPv4 and IPv6) — but not a neighbouring address on the same server, not
//! after the TTL and floor passed without a new answer, not the bare parent of a wildcard —
//! while DNS answers forged on the client side or sent by a resolver other than the box's
//! open nothing; what was learned survives a restart, a reload adds and removes names, an
//! external portal's host is in the garden by itself; and a burst of 10,000 answers a second
//! loses no learned address. Needs root and Debian's `dnsmasq-base` (`scripts/bootstrap.sh`).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use hotspotd::client::ApiClient;
use hotspotd_tests::{
    Daemon, GATEWAY_LAN_V4, GATEWAY_LAN_V6, INTERNET_IFACE, INTERNET_V4, INTERNET_V6, LAN_IFACE,
    Lan, Netns, wait_for, workspace_root,
};

/// The port the "internet" listens on: not 80 or 443, which the front door takes.
const SERVER_PORT: u16 = 8080;
/// `network.garden_ttl_floor_secs` in these tests: dnsmasq answers with a TTL of 1 s.
const FLOOR_SECS: u64 = 3;
const QTYPE_A: u16 = 1;
const QTYPE_AAAA: u16 = 28;

/// The server's other addresses, on the same namespace as [`INTERNET_V4`]: neighbours that
/// must stay closed, and the addresses of the other test names.
const NEIGHBOUR_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const NEIGHBOUR_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);
const SHOP_SUB_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);
const SHOP_BARE_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 4);
const EDGE_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 5);

/// A dnsmasq answering DNS (no DHCP) on the LAN bridge of the gateway namespace with the
/// test names only (no upstream, no hosts file); killed on drop.
struct Dnsmasq {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Dnsmasq {
    fn start(gateway: &Netns) -> Result<Self> {
        Self::start_with(gateway, &[])
    }

    /// [`Dnsmasq::start`] with more options.
    fn start_with(gateway: &Netns, extra: &[&str]) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("hotspotd-garden-dnsmasq-")
            .tempdir()?;
        let log = dir.path().join("dnsmasq.log");
        let child = gateway
            .command("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                &format!("--interface={LAN_IFACE}"),
                "--bind-interfaces",
                "--user=root",
                "--no-resolv",
                "--no-hosts",
                "--log-facility=-",
                "--log-queries",
                // Every answer with a TTL of 1 s: the floor decides how long it stays open.
                "--local-ttl=1",
                &format!("--address=/pay.test/{INTERNET_V4}"),
                &format!("--address=/pay.test/{INTERNET_V6}"),
                &format!("--host-record=a.shop.test,{SHOP_SUB_V4}"),
                &format!("--host-record=shop.test,{SHOP_BARE_V4}"),
                &format!("--host-record=edge.test,{EDGE_V4}"),
                "--cname=checkout.test,edge.test",
            ])
            .args(extra)
            .arg(format!(
                "--pid-file={}",
                dir.path().join("dnsmasq.pid").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("run dnsmasq (Debian's dnsmasq-base; scripts/bootstrap.sh installs it)")?;
        let mut dnsmasq = Self {
            child,
            log,
            _dir: dir,
        };
        std::thread::sleep(Duration::from_millis(300));
        if let Some(status) = dnsmasq.child.try_wait()? {
            bail!("dnsmasq exited ({status}): {}", dnsmasq.log());
        }
        Ok(dnsmasq)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A DNS query for `name` (RFC 1035 4.1), id 0x4242, recursion desired.
fn query(name: &str, qtype: u16) -> Vec<u8> {
    let mut message = vec![0x42, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    message.extend(qname(name));
    message.extend(qtype.to_be_bytes());
    message.extend(1u16.to_be_bytes());
    message
}

fn qname(name: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    for label in name.split('.') {
        bytes.push(u8::try_from(label.len()).unwrap_or(63));
        bytes.extend(label.as_bytes());
    }
    bytes.push(0);
    bytes
}

/// A response to [`query`] answering `name` with `addr` for 3600 s, as a forger writes it.
fn forged_answer(name: &str, addr: IpAddr) -> Vec<u8> {
    let mut message = vec![0x42, 0x42, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    let (qtype, data) = match addr {
        IpAddr::V4(v4) => (QTYPE_A, v4.octets().to_vec()),
        IpAddr::V6(v6) => (QTYPE_AAAA, v6.octets().to_vec()),
    };
    message.extend(qname(name));
    message.extend(qtype.to_be_bytes());
    message.extend(1u16.to_be_bytes());
    // The answer's name: a pointer to the question's.
    message.extend([0xc0, 12]);
    message.extend(qtype.to_be_bytes());
    message.extend(1u16.to_be_bytes());
    message.extend(3600u32.to_be_bytes());
    message.extend(u16::try_from(data.len()).unwrap_or(0).to_be_bytes());
    message.extend(data);
    message
}

/// Asks the resolver at `server` from inside `netns`; returns the answer's bytes.
fn resolve(netns: &Netns, server: SocketAddr, name: &str, qtype: u16) -> Result<Vec<u8>> {
    let message = query(name, qtype);
    let name = name.to_owned();
    netns.run(move || -> Result<Vec<u8>> {
        let bind: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0".parse()?
        } else {
            "[::]:0".parse()?
        };
        let socket = UdpSocket::bind(bind)?;
        socket.set_read_timeout(Some(Duration::from_secs(2)))?;
        socket.send_to(&message, server)?;
        let mut buffer = [0u8; 1500];
        let (len, _) = socket
            .recv_from(&mut buffer)
            .with_context(|| format!("no answer from {server} for {name}"))?;
        Ok(buffer[..len].to_vec())
    })?
}

/// Resolves `name` through the box's dnsmasq and checks the answer carries `addr`.
fn resolve_to(netns: &Netns, name: &str, addr: IpAddr) -> Result<()> {
    let (server, qtype, bytes) = match addr {
        IpAddr::V4(v4) => (
            SocketAddr::from((GATEWAY_LAN_V4, 53)),
            QTYPE_A,
            v4.octets().to_vec(),
        ),
        IpAddr::V6(v6) => (
            SocketAddr::from((GATEWAY_LAN_V6, 53)),
            QTYPE_AAAA,
            v6.octets().to_vec(),
        ),
    };
    let answer = resolve(netns, server, name, qtype)?;
    ensure!(
        answer.windows(bytes.len()).any(|window| window == bytes),
        "the box's answer for {name} does not carry {addr}: {answer:?}"
    );
    Ok(())
}

/// Whether a TCP connection from inside `netns` to `addr`:[`SERVER_PORT`] is accepted.
fn reaches(netns: &Netns, addr: IpAddr) -> bool {
    let target = SocketAddr::new(addr, SERVER_PORT);
    netns
        .run(move || TcpStream::connect_timeout(&target, Duration::from_millis(500)).is_ok())
        .unwrap_or(false)
}

/// The server's listener on every address of the internet namespace, and the extra
/// addresses the tests name.
fn serve(lan: &Lan) -> Result<TcpListener> {
    for (addr, prefix) in [
        (IpAddr::V4(NEIGHBOUR_V4), 24),
        (IpAddr::V4(SHOP_SUB_V4), 24),
        (IpAddr::V4(SHOP_BARE_V4), 24),
        (IpAddr::V4(EDGE_V4), 24),
        (IpAddr::V6(NEIGHBOUR_V6), 64),
    ] {
        lan.internet.ip(&[
            "addr",
            "add",
            &format!("{addr}/{prefix}"),
            "dev",
            INTERNET_IFACE,
            "nodad",
        ])?;
    }
    Ok(lan
        .internet
        .run(|| TcpListener::bind((Ipv6Addr::UNSPECIFIED, SERVER_PORT)))??)
}

fn start(lan: &Lan, garden: &str) -> Result<Daemon> {
    let floor = FLOOR_SECS.to_string();
    Daemon::start(
        lan,
        &[
            ("HOTSPOTD__NETWORK__WALLED_GARDEN", garden),
            ("HOTSPOTD__NETWORK__GARDEN_TTL_FLOOR_SECS", floor.as_str()),
        ],
    )
}

#[test]
fn an_unpaid_client_reaches_the_addresses_the_box_resolved_for_a_garden_name() -> Result<()> {
    let lan = Lan::new(1)?;
    let _listener = serve(&lan)?;
    let dnsmasq = Dnsmasq::start(&lan.gateway)?;
    let daemon = start(&lan, "pay.test,*.shop.test,checkout.test:8080")?;
    let client = &lan.clients[0].netns;
    let (v4, v6) = (IpAddr::V4(INTERNET_V4), IpAddr::V6(INTERNET_V6));

    ensure!(
        !reaches(client, v4) && !reaches(client, v6),
        "nothing is open before an answer"
    );
    resolve_to(client, "pay.test", v4).with_context(|| dnsmasq.log())?;
    resolve_to(client, "pay.test", v6)?;
    for addr in [v4, v6] {
        ensure!(
            wait_for(Duration::from_secs(2), || reaches(client, addr)),
            "pay.test's {addr} is reached after the box's answer: {}",
            daemon.log()
        );
    }
    for neighbour in [IpAddr::V4(NEIGHBOUR_V4), IpAddr::V6(NEIGHBOUR_V6)] {
        ensure!(
            !reaches(client, neighbour),
            "{neighbour}, on the same server, stays closed"
        );
    }

    // Shown with its addresses.
    let garden = daemon.ctl_json(&["garden"])?;
    let pay = garden["names"]
        .as_array()
        .and_then(|names| names.iter().find(|name| name["name"] == "pay.test"))
        .with_context(|| format!("pay.test is listed: {garden}"))?;
    let learned: Vec<&str> = pay["addresses"]
        .as_array()
        .map(|addresses| {
            addresses
                .iter()
                .filter_map(|address| address["address"].as_str())
                .collect()
        })
        .unwrap_or_default();
    ensure!(
        learned == ["198.51.100.1", "2001:db8:2::1"],
        "pay.test's learned addresses: {garden}"
    );
    ensure!(
        pay["unpaid_bytes"].as_u64().is_some_and(|bytes| bytes > 0),
        "the connections' bytes are counted for pay.test: {garden}"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let metrics = runtime.block_on(ApiClient::new(daemon.socket()).get_text("/metrics"))?;
    ensure!(
        metrics.contains("hotspotd_garden_addresses{name=\"pay.test\"} 2"),
        "/metrics counts pay.test's addresses: {metrics}"
    );

    // The TTL (1 s) and the floor pass without a new answer: closed again.
    ensure!(
        wait_for(Duration::from_secs(FLOOR_SECS + 5), || !reaches(client, v4)
            && !reaches(client, v6)),
        "pay.test's addresses close once the floor passed"
    );

    // A wildcard covers the names under it, not the bare parent.
    let shop_sub = IpAddr::V4(SHOP_SUB_V4);
    let shop_bare = IpAddr::V4(SHOP_BARE_V4);
    resolve_to(client, "a.shop.test", shop_sub)?;
    resolve_to(client, "shop.test", shop_bare)?;
    ensure!(
        wait_for(Duration::from_secs(2), || reaches(client, shop_sub)),
        "a.shop.test is under *.shop.test"
    );
    ensure!(
        !reaches(client, shop_bare),
        "shop.test itself is not under *.shop.test"
    );

    // Through a CNAME (checkout.test → edge.test), with the entry's port.
    let edge = IpAddr::V4(EDGE_V4);
    resolve_to(client, "checkout.test", edge)?;
    ensure!(
        wait_for(Duration::from_secs(2), || reaches(client, edge)),
        "checkout.test's canonical name's address is reached: {}",
        dnsmasq.log()
    );
    Ok(())
}

#[test]
fn forged_answers_and_other_resolvers_open_nothing() -> Result<()> {
    let lan = Lan::new(3)?;
    let _listener = serve(&lan)?;
    let _dnsmasq = Dnsmasq::start(&lan.gateway)?;
    let daemon = start(&lan, "pay.test")?;
    let [victim, forger, payer] = [0, 1, 2].map(|i| &lan.clients[i]);
    daemon.connect_for_an_hour(&payer.mac)?;
    let forged_v4 = IpAddr::V4(NEIGHBOUR_V4);
    let forged_v6 = IpAddr::V6(NEIGHBOUR_V6);

    // From a client, from port 53: to itself, to another client, to the box.
    let targets: Vec<SocketAddr> = vec![
        SocketAddr::from((forger.ipv4, 40_000)),
        SocketAddr::from((victim.ipv4, 40_000)),
        SocketAddr::from((victim.ipv6, 40_000)),
        SocketAddr::from((GATEWAY_LAN_V4, 40_000)),
    ];
    let answers = [
        forged_answer("pay.test", forged_v4),
        forged_answer("pay.test", forged_v6),
    ];
    let sent = answers.clone();
    let forger_address_v6 = forger.ipv6;
    forger.netns.run(move || -> Result<()> {
        let v4 = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 53))?;
        let v6 = UdpSocket::bind((forger_address_v6, 53))?;
        for target in targets {
            for answer in &sent {
                let socket = if target.is_ipv4() { &v4 } else { &v6 };
                socket.send_to(answer, target)?;
            }
        }
        Ok(())
    })??;

    // A resolver of its own on the internet: the paying client's queries reach it and its
    // forged answers come back through the box, forwarded; and the same resolver sends them
    // unasked to the client without a session.
    let resolver = lan.internet.run(move || -> Result<UdpSocket> {
        Ok(UdpSocket::bind((IpAddr::V4(INTERNET_V4), 53))?)
    })??;
    let answering = resolver.try_clone()?;
    let answers_for_resolver = answers.clone();
    let own_resolver = std::thread::spawn(move || -> Result<()> {
        answering.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut buffer = [0u8; 512];
        let (_, from) = answering.recv_from(&mut buffer)?;
        for answer in &answers_for_resolver {
            answering.send_to(answer, from)?;
        }
        Ok(())
    });
    let _ = resolve(
        &payer.netns,
        SocketAddr::from((INTERNET_V4, 53)),
        "pay.test",
        QTYPE_A,
    );
    own_resolver
        .join()
        .map_err(|_| anyhow::anyhow!("the resolver thread panicked"))??;
    for answer in &answers {
        resolver.send_to(answer, SocketAddr::from((victim.ipv4, 40_000)))?;
    }

    std::thread::sleep(Duration::from_millis(500));
    for addr in [forged_v4, forged_v6] {
        ensure!(
            !reaches(&victim.netns, addr) && !reaches(&forger.netns, addr),
            "a forged answer opened {addr}: {}",
            daemon.log()
        );
    }
    // The box's own answer, in the same setup, does open pay.test.
    resolve_to(&victim.netns, "pay.test", IpAddr::V4(INTERNET_V4))?;
    ensure!(
        wait_for(Duration::from_secs(2), || reaches(
            &victim.netns,
            IpAddr::V4(INTERNET_V4)
        )),
        "the box's answer opens pay.test"
    );
    ensure!(
        !reaches(&victim.netns, forged_v4),
        "the forged address stays closed"
    );
    Ok(())
}

/// The repository's configuration with `walled_garden` set to `garden`.
fn config_with_garden(garden: &str) -> Result<String> {
    let shipped = std::fs::read_to_string(workspace_root().join("config.toml"))?;
    ensure!(
        shipped.contains("walled_garden = []"),
        "config.toml has no 'walled_garden = []' line"
    );
    Ok(shipped.replace("walled_garden = []", &format!("walled_garden = [{garden}]")))
}

#[test]
fn sighup_adds_and_removes_garden_names() -> Result<()> {
    let lan = Lan::new(1)?;
    let _listener = serve(&lan)?;
    let _dnsmasq = Dnsmasq::start(&lan.gateway)?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("config.toml");
    std::fs::write(&config, config_with_garden("\"other.test\"")?)?;
    let daemon = Daemon::start_with_config(&lan, &config, &[])?;
    let client = &lan.clients[0].netns;
    let pay = IpAddr::V4(INTERNET_V4);

    resolve_to(client, "pay.test", pay)?;
    std::thread::sleep(Duration::from_millis(300));
    ensure!(!reaches(client, pay), "pay.test is not in the garden yet");

    std::fs::write(&config, config_with_garden("\"other.test\", \"pay.test\"")?)?;
    daemon.reload()?;
    ensure!(
        wait_for(Duration::from_secs(5), || daemon
            .ctl_json(&["garden"])
            .is_ok_and(|garden| garden["names"][1]["name"] == "pay.test")),
        "the reload adds pay.test"
    );
    resolve_to(client, "pay.test", pay)?;
    ensure!(
        wait_for(Duration::from_secs(2), || reaches(client, pay)),
        "pay.test is learned after the reload"
    );

    // Its name gone, its address goes, whatever its TTL said.
    std::fs::write(&config, config_with_garden("\"other.test\"")?)?;
    daemon.reload()?;
    ensure!(
        wait_for(Duration::from_secs(5), || !reaches(client, pay)),
        "pay.test's address closes once the name is gone: {}",
        daemon.log()
    );
    Ok(())
}

/// Names of the burst test: `n{i}.burst.test` at 10.77.{i / 250}.{i % 250 + 1}.
const BURST_NAMES: usize = 4_000;
/// Queries of the burst, paced over one second.
const BURST_QUERIES: usize = 10_000;
/// Answers whose learning is timed one by one first.
const TIMED_ANSWERS: usize = 200;

fn burst_addr(index: usize) -> Ipv4Addr {
    let high = u8::try_from(index / 250).unwrap_or(u8::MAX);
    let low = u8::try_from(index % 250 + 1).unwrap_or(u8::MAX);
    Ipv4Addr::new(10, 77, high, low)
}

/// User and system CPU time of process `pid` so far, in clock ticks (`USER_HZ`, 100 a second).
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name (in parentheses, which may hold spaces): utime and
    // stime are the 14th and 15th fields of the line, the 12th and 13th after it.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |at: usize| -> Result<u64> {
        Ok(fields
            .get(at)
            .with_context(|| format!("/proc/{pid}/stat: {stat}"))?
            .parse()?)
    };
    Ok(field(11)? + field(12)?)
}

/// Sends [`BURST_QUERIES`] queries over all burst names, paced over one second; returns how
/// long it took.
fn send_burst(socket: &UdpSocket, server: SocketAddr) -> Result<Duration> {
    let start = std::time::Instant::now();
    for sent in 0..BURST_QUERIES {
        let due = Duration::from_micros(u64::try_from(sent).unwrap_or(0) * 100);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        let name = format!("n{}.burst.test", sent % BURST_NAMES);
        socket.send_to(&query(&name, QTYPE_A), server)?;
    }
    Ok(start.elapsed())
}

/// Reads answers until none comes for the socket's timeout: how many, and the indexes of the
/// burst names that got an address.
fn read_answers(reader: &UdpSocket) -> (usize, std::collections::BTreeSet<usize>) {
    let mut buffer = [0u8; 1500];
    let mut names = std::collections::BTreeSet::new();
    let mut count = 0usize;
    while let Ok(len) = reader.recv(&mut buffer) {
        count += 1;
        // The question's first label, `n{i}`, right after the 12-byte header.
        let label_len = usize::from(buffer[12]);
        if let Some(label) = buffer.get(14..13 + label_len)
            && let Some(index) = std::str::from_utf8(label)
                .ok()
                .and_then(|text| text.parse::<usize>().ok())
            && len > 13 + label_len
            && u16::from_be_bytes([buffer[6], buffer[7]]) > 0
        {
            names.insert(index);
        }
    }
    (count, names)
}

/// How long the daemon takes from a client receiving the box's answer to the address being in
/// the kernel's table, one answer at a time; then 10,000 answers in one second, of which no
/// learned address may be missing. The numbers go to BENCHMARKS.md.
#[test]
fn a_burst_of_answers_loses_no_learned_address() -> Result<()> {
    use aya::maps::{HashMap as BpfHashMap, Map, MapData};
    use hotspotd_common::{GardenLearned, IpKey, MAP_GARDEN_LEARNED, MAP_LAYOUT_VERSION};

    let lan = Lan::new(1)?;
    let dir = tempfile::tempdir()?;
    let hosts = dir.path().join("burst.hosts");
    let mut lines = String::new();
    for i in 0..BURST_NAMES {
        writeln!(lines, "{} n{i}.burst.test", burst_addr(i))?;
    }
    std::fs::write(&hosts, lines)?;
    let dnsmasq = Dnsmasq::start_with(
        &lan.gateway,
        &[&format!("--addn-hosts={}", hosts.display())],
    )?;
    let daemon = Daemon::start(
        &lan,
        &[
            ("HOTSPOTD__NETWORK__WALLED_GARDEN", "*.burst.test"),
            ("HOTSPOTD__NETWORK__GARDEN_TTL_FLOOR_SECS", "600"),
        ],
    )?;
    let path = daemon
        .pin_dir()
        .join(format!("v{MAP_LAYOUT_VERSION}"))
        .join(MAP_GARDEN_LEARNED);
    let learned: BpfHashMap<MapData, IpKey, GardenLearned> =
        BpfHashMap::try_from(Map::from_map_data(MapData::from_pin(&path)?)?)?;
    let is_learned = |addr: Ipv4Addr| learned.get(&IpKey::from_v4(addr.octets()), 0).is_ok();

    // One at a time: the answer is in the client's hands at `received`; the test then polls
    // the kernel's table (it has the other core of two to itself only if the machine is idle).
    let server = SocketAddr::from((GATEWAY_LAN_V4, 53));
    let socket = lan.clients[0]
        .netns
        .run(|| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)))??;
    socket.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut latencies = Vec::with_capacity(TIMED_ANSWERS);
    let mut buffer = [0u8; 1500];
    for index in 0..TIMED_ANSWERS {
        socket.send_to(&query(&format!("n{index}.burst.test"), QTYPE_A), server)?;
        socket
            .recv_from(&mut buffer)
            .with_context(|| format!("no answer for n{index}: {}", dnsmasq.log()))?;
        let received = std::time::Instant::now();
        // Polled without a pause (one lookup is a few microseconds), to time it closely.
        while !is_learned(burst_addr(index)) {
            ensure!(
                received.elapsed() < Duration::from_secs(1),
                "n{index}.burst.test was not learned: {}",
                daemon.log()
            );
        }
        latencies.push(received.elapsed());
    }
    latencies.sort();
    let p50 = latencies[TIMED_ANSWERS / 2];
    let p99 = latencies[TIMED_ANSWERS * 99 / 100];
    eprintln!("answer received → address learned: p50 {p50:?}, p99 {p99:?}");

    // The burst: 10,000 queries in one second over all names, answers read meanwhile.
    let reader = socket.try_clone()?;
    reader.set_read_timeout(Some(Duration::from_millis(1_500)))?;
    let answered = std::thread::spawn(move || read_answers(&reader));
    let cpu_before = cpu_ticks(daemon.pid())?;
    let sending = send_burst(&socket, server)?;
    let (answers, names) = answered
        .join()
        .map_err(|_| anyhow::anyhow!("the reader panicked"))?;
    let cpu_ms = (cpu_ticks(daemon.pid())? - cpu_before) * 10;
    let all_learned = wait_for(Duration::from_secs(3), || {
        names.iter().all(|index| is_learned(burst_addr(*index)))
    });
    let missing: Vec<usize> = names
        .iter()
        .copied()
        .filter(|index| !is_learned(burst_addr(*index)))
        .collect();
    let garden = daemon.ctl_json(&["garden"])?;
    eprintln!(
        "burst: {BURST_QUERIES} queries sent in {sending:?}, {answers} answers for {} names \
         received, learned: {} (of {}) when checked, 1.5 s after the last answer; the \
         daemon's CPU time meanwhile {cpu_ms} ms (polls every 100 ms included); daemon counts {}",
        names.len(),
        names.len() - missing.len(),
        names.len(),
        garden["counts"]
    );
    ensure!(
        all_learned && missing.is_empty(),
        "{} answered names not learned, e.g. {:?}",
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
    ensure!(
        answers >= BURST_QUERIES * 9 / 10 && names.len() == BURST_NAMES,
        "dnsmasq answered {answers} of {BURST_QUERIES}, {} names",
        names.len()
    );
    ensure!(
        garden["counts"]["malformed"] == 0,
        "no answer was malformed: {garden}"
    );
    Ok(())
}

/// `portal.mode = "external"` with `portal.url` on a host name: that host is in the garden by
/// itself, on the URL's port, and nothing else of the server is.
#[test]
fn an_external_portals_host_is_in_the_garden() -> Result<()> {
    let lan = Lan::new(1)?;
    let _listener = serve(&lan)?;
    let _dnsmasq = Dnsmasq::start(&lan.gateway)?;
    let url = format!("http://pay.test:{SERVER_PORT}/login");
    let daemon = Daemon::start(
        &lan,
        &[
            ("HOTSPOTD__PORTAL__MODE", "external"),
            ("HOTSPOTD__PORTAL__URL", url.as_str()),
        ],
    )?;
    let client = &lan.clients[0].netns;
    let portal = IpAddr::V4(INTERNET_V4);
    resolve_to(client, "pay.test", portal)?;
    ensure!(
        wait_for(Duration::from_secs(2), || reaches(client, portal)),
        "the external portal's host is reached without a session: {}",
        daemon.log()
    );
    let garden = daemon.ctl_json(&["garden"])?;
    ensure!(
        garden["names"][0]["name"] == "pay.test"
            && garden["names"][0]["port"] == u64::from(SERVER_PORT),
        "the portal's host is listed with its port: {garden}"
    );
    ensure!(
        !reaches(client, IpAddr::V4(NEIGHBOUR_V4)),
        "the rest of the server stays closed"
    );
    Ok(())
}

/// What was learned is pinned with the gate: it stays open while the daemon restarts, and the
/// new daemon takes it over (for the floor, as it does not know the TTL).
#[test]
fn a_restart_keeps_what_was_learned() -> Result<()> {
    let lan = Lan::new(1)?;
    let _listener = serve(&lan)?;
    let _dnsmasq = Dnsmasq::start(&lan.gateway)?;
    let mut daemon = Daemon::start(
        &lan,
        &[
            ("HOTSPOTD__NETWORK__WALLED_GARDEN", "pay.test"),
            ("HOTSPOTD__NETWORK__GARDEN_TTL_FLOOR_SECS", "30"),
        ],
    )?;
    let client = &lan.clients[0].netns;
    let pay = IpAddr::V4(INTERNET_V4);
    resolve_to(client, "pay.test", pay)?;
    ensure!(
        wait_for(Duration::from_secs(2), || reaches(client, pay)),
        "pay.test is learned"
    );
    daemon.terminate()?;
    ensure!(reaches(client, pay), "open while no daemon runs");
    daemon.restart(&lan)?;
    ensure!(
        reaches(client, pay),
        "open after the restart, without a new answer"
    );
    let garden = daemon.ctl_json(&["garden"])?;
    ensure!(
        garden["names"][0]["addresses"][0]["address"] == "198.51.100.1",
        "the restarted daemon took the address over: {garden}"
    );
    Ok(())
}

/// A client without a session that asks another resolver (a hard-coded public one) is
/// answered by the box's (`portal.redirect_dns`), and that answer opens the garden's name too.
#[test]
fn answers_to_redirected_queries_are_learned() -> Result<()> {
    let lan = Lan::new(1)?;
    let _listener = serve(&lan)?;
    let _dnsmasq = Dnsmasq::start(&lan.gateway)?;
    let daemon = start(&lan, "pay.test")?;
    let client = &lan.clients[0].netns;
    // 198.51.100.1 stands for the public resolver: nothing listens on its port 53.
    let answer = resolve(
        client,
        SocketAddr::from((INTERNET_V4, 53)),
        "pay.test",
        QTYPE_A,
    )?;
    ensure!(
        answer
            .windows(4)
            .any(|window| window == INTERNET_V4.octets()),
        "the box answered the redirected query: {answer:?}"
    );
    ensure!(
        wait_for(Duration::from_secs(2), || reaches(
            client,
            IpAddr::V4(INTERNET_V4)
        )),
        "the redirected answer opened pay.test: {}",
        daemon.log()
    );
    Ok(())
}
