//! End to end: the front door steers an unpaid client's web traffic, as a phone's
//! captive-portal check and browser meet it. Plain HTTP to any internet address is answered
//! with a redirect to the portal (IPv4 and IPv6), HTTPS is refused at once with a reset, QUIC
//! and other ports stay dropped, and nothing of it reaches the internet; a paying client's
//! requests reach the real servers untouched. Its DNS to any resolver is answered by the box's
//! resolver, from the address it asked. Needs root.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use hotspotd_tests::http::{Answer, exchange_on, request};
use hotspotd_tests::{
    Daemon, GATEWAY_LAN_V4, GATEWAY_LAN_V6, INTERNET_V4, INTERNET_V6, Lan, Netns, UdpEcho, wait_for,
};

/// How long a dropped connection attempt is given before it counts as dropped.
const DROPPED_AFTER: Duration = Duration::from_secs(2);

/// A server in the internet namespace on `port` (TCP, IPv4 and IPv6) that answers every
/// connection with a fixed HTTP page and counts the connections it saw.
struct InternetServer {
    connections: Arc<AtomicU64>,
}

impl InternetServer {
    fn start(internet: &Netns, port: u16) -> Result<Self> {
        let connections = Arc::new(AtomicU64::new(0));
        for address in [IpAddr::from(INTERNET_V4), IpAddr::from(INTERNET_V6)] {
            let listener =
                internet.run(move || TcpListener::bind(SocketAddr::new(address, port)))??;
            let seen = Arc::clone(&connections);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(mut stream) = stream else { continue };
                    seen.fetch_add(1, Ordering::SeqCst);
                    let mut buffer = [0u8; 1024];
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    let _ = stream.read(&mut buffer);
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\nthe real page",
                    );
                }
            });
        }
        Ok(Self { connections })
    }

    fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A phone's captive-portal check: `GET /generate_204` to `address`, port 80, from `netns`.
fn check(netns: &Netns, address: IpAddr) -> Result<Answer> {
    let target = SocketAddr::new(address, 80);
    netns.run(move || -> Result<Answer> {
        let mut stream = TcpStream::connect_timeout(&target, DROPPED_AFTER)
            .with_context(|| format!("connect to {target}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        exchange_on(
            &mut stream,
            &request(
                "GET",
                "/generate_204",
                &[("Host", "connectivitycheck.gstatic.com")],
                b"",
            ),
        )
    })?
}

/// How a TCP connection attempt from `netns` to `address`:`port` ends, and how fast.
fn connect(netns: &Netns, address: IpAddr, port: u16) -> Result<(std::io::Result<()>, Duration)> {
    let target = SocketAddr::new(address, port);
    netns.run(move || {
        let started = Instant::now();
        let outcome = TcpStream::connect_timeout(&target, DROPPED_AFTER).map(|stream| {
            let _ = stream.shutdown(Shutdown::Both);
        });
        (outcome, started.elapsed())
    })
}

/// hotspotd's policy rules in the gateway (`ip rule`, both families).
fn steering_rules(lan: &Lan) -> Result<usize> {
    let mut rules = 0;
    for family in ["-4", "-6"] {
        let output = lan.gateway.command("ip").args([family, "rule"]).output()?;
        ensure!(output.status.success(), "ip {family} rule: {output:?}");
        rules += String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| line.contains("fwmark 0x68730000") && line.contains("lookup 2050"))
            .count();
    }
    Ok(rules)
}

fn redirected_to(answer: &Answer, portal: &str) -> Result<()> {
    ensure!(
        matches!(answer.status, 302 | 303 | 307 | 511),
        "not a redirect: {answer:?}"
    );
    let location = answer
        .header("location")
        .map(str::to_owned)
        .context("no Location header")?;
    ensure!(
        location == portal,
        "sent to {location}, not {portal}: {answer:?}"
    );
    let headers = answer.headers.to_ascii_lowercase();
    ensure!(
        headers.contains("cache-control: no-store"),
        "cacheable: {answer:?}"
    );
    Ok(())
}

#[test]
fn an_unpaid_phone_is_sent_to_the_portal_and_a_paying_one_reaches_the_internet() -> Result<()> {
    let lan = Lan::new(1)?;
    let client = &lan.clients[0];
    let http = InternetServer::start(&lan.internet, 80)?;
    let https = InternetServer::start(&lan.internet, 443)?;
    let daemon = Daemon::start(&lan, &[])?;

    // Plain HTTP to an internet address: the box answers for it, with the portal at the box's
    // address facing the client, of the family the client used.
    redirected_to(
        &check(&client.netns, INTERNET_V4.into())?,
        "http://192.0.2.1:2050/",
    )?;
    redirected_to(
        &check(&client.netns, INTERNET_V6.into())?,
        "http://[2001:db8:1::1]:2050/",
    )?;
    // Any address: the check's own host is not on this network at all.
    redirected_to(
        &check(&client.netns, "203.0.113.77".parse()?)?,
        "http://192.0.2.1:2050/",
    )?;

    // HTTPS is refused at once, with a reset, not left to time out.
    for address in [IpAddr::from(INTERNET_V4), IpAddr::from(INTERNET_V6)] {
        let (outcome, took) = connect(&client.netns, address, 443)?;
        let error = outcome
            .err()
            .context("an unpaid client's HTTPS connected")?;
        ensure!(
            error.kind() == ErrorKind::ConnectionRefused,
            "HTTPS to {address}: {error} after {took:?}, not refused"
        );
        ensure!(
            took < Duration::from_millis(500),
            "refused only after {took:?}"
        );
    }
    // Other ports stay dropped.
    let (outcome, _) = connect(&client.netns, INTERNET_V4.into(), 8080)?;
    ensure!(
        outcome
            .as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::TimedOut),
        "port 8080: {outcome:?}"
    );
    // QUIC: nothing reaches the internet.
    let quic = lan
        .internet
        .run(|| UdpSocket::bind(SocketAddr::new(INTERNET_V4.into(), 443)))??;
    quic.set_read_timeout(Some(Duration::from_millis(500)))?;
    client.netns.run(|| -> Result<()> {
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        for _ in 0..20 {
            socket.send_to(b"quic initial", SocketAddr::new(INTERNET_V4.into(), 443))?;
        }
        Ok(())
    })??;
    let mut datagram = [0u8; 64];
    ensure!(
        quic.recv_from(&mut datagram).is_err(),
        "a QUIC datagram got through"
    );
    ensure!(
        http.connections() == 0 && https.connections() == 0,
        "an unpaid client reached the internet: {} HTTP, {} HTTPS connections",
        http.connections(),
        https.connections()
    );
    // None of it was billed: it is the portal's, or dropped.
    let billed = daemon.client(&client.mac)?;
    ensure!(
        billed["up_bytes"] == 0 && billed["down_bytes"] == 0,
        "billed: {billed}"
    );

    // Paying: the same requests reach the real servers, untouched.
    daemon.connect_for_an_hour(&client.mac)?;
    for address in [IpAddr::from(INTERNET_V4), IpAddr::from(INTERNET_V6)] {
        let answer = check(&client.netns, address)?;
        ensure!(
            answer.status == 200 && answer.body == "the real page",
            "a paying client's request to {address}: {answer:?}"
        );
        let (outcome, _) = connect(&client.netns, address, 443)?;
        outcome.with_context(|| format!("a paying client's HTTPS to {address}"))?;
    }
    // The servers count a connection when their thread accepts it, a moment after it opened.
    ensure!(
        wait_for(Duration::from_secs(2), || http.connections() == 2
            && https.connections() == 2),
        "the internet saw {} HTTP and {} HTTPS connections, not 2 and 2",
        http.connections(),
        https.connections()
    );
    Ok(())
}

#[test]
fn an_external_portal_gets_the_redirect_and_mode_off_keeps_the_drop() -> Result<()> {
    let lan = Lan::new(1)?;
    let client = &lan.clients[0];
    let url = "https://portal.example.net/login?venue=7";
    let mut daemon = Daemon::start(
        &lan,
        &[
            ("HOTSPOTD__PORTAL__MODE", "external"),
            ("HOTSPOTD__PORTAL__URL", url),
        ],
    )?;
    redirected_to(&check(&client.netns, INTERNET_V4.into())?, url)?;
    redirected_to(&check(&client.netns, INTERNET_V6.into())?, url)?;

    // The policy rules stay over a stop, like the programs; with no daemon's listener to take
    // them, web requests are dropped, never forwarded. `--release` takes the rules away.
    ensure!(steering_rules(&lan)? == 2, "one rule per family");
    daemon.terminate()?;
    ensure!(steering_rules(&lan)? == 2, "a stop removed the rules");
    let (outcome, _) = connect(&client.netns, INTERNET_V4.into(), 80)?;
    ensure!(
        outcome
            .as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::TimedOut),
        "port 80 with no daemon running: {outcome:?}"
    );
    let released = daemon.release(&lan)?;
    ensure!(released.status.success(), "--release: {released:?}");
    ensure!(steering_rules(&lan)? == 0, "--release left the rules");
    drop(daemon);

    // Off: a restart takes the steering away; web requests are dropped like the rest.
    let _daemon = Daemon::start(&lan, &[("HOTSPOTD__PORTAL__MODE", "off")])?;
    for (port, address) in [(80, IpAddr::from(INTERNET_V4)), (443, INTERNET_V6.into())] {
        let (outcome, _) = connect(&client.netns, address, port)?;
        ensure!(
            outcome
                .as_ref()
                .is_err_and(|e| e.kind() == ErrorKind::TimedOut),
            "port {port} with portal.mode = off: {outcome:?}"
        );
    }
    Ok(())
}

/// A DNS query over UDP from `netns` to `resolver`:53 on a connected socket, which takes an
/// answer only from the address it asked, as a stub resolver does; the answer's bytes.
fn ask_udp(netns: &Netns, resolver: IpAddr) -> Result<Vec<u8>> {
    netns.run(move || -> Result<Vec<u8>> {
        let any: IpAddr = if resolver.is_ipv4() {
            "0.0.0.0".parse()?
        } else {
            "::".parse()?
        };
        let socket = UdpSocket::bind(SocketAddr::new(any, 0))?;
        socket.connect(SocketAddr::new(resolver, 53))?;
        socket.set_read_timeout(Some(DROPPED_AFTER))?;
        socket.send(b"\x12\x34 a query")?;
        let mut answer = [0u8; 512];
        let len = socket.recv(&mut answer)?;
        Ok(answer[..len].to_vec())
    })?
}

/// A TCP echo on `address`:53 in `netns`, standing in for the resolver's TCP side.
fn tcp_echo(netns: &Netns, address: IpAddr) -> Result<()> {
    let listener = netns.run(move || TcpListener::bind(SocketAddr::new(address, 53)))??;
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 512];
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            if let Ok(len) = stream.read(&mut buffer) {
                let _ = stream.write_all(&buffer[..len]);
            }
        }
    });
    Ok(())
}

#[test]
fn an_unpaid_phones_dns_to_any_resolver_is_answered_by_the_box() -> Result<()> {
    let lan = Lan::new(1)?;
    let client = &lan.clients[0];
    // The box's resolver: echoes stand in for it, what matters is who answers and from where.
    let _resolver_v4 = UdpEcho::start(&lan.gateway, SocketAddr::new(GATEWAY_LAN_V4.into(), 53))?;
    let _resolver_v6 = UdpEcho::start(&lan.gateway, SocketAddr::new(GATEWAY_LAN_V6.into(), 53))?;
    tcp_echo(&lan.gateway, GATEWAY_LAN_V4.into())?;
    // The internet's resolver, hard-coded in the phone: it must hear nothing.
    let public = lan
        .internet
        .run(|| UdpSocket::bind(SocketAddr::new(INTERNET_V4.into(), 53)))??;
    public.set_read_timeout(Some(Duration::from_millis(300)))?;
    let daemon = Daemon::start(&lan, &[])?;

    for resolver in [IpAddr::from(INTERNET_V4), IpAddr::from(INTERNET_V6)] {
        let answer = ask_udp(&client.netns, resolver)
            .with_context(|| format!("no answer from {resolver} (redirected to the box)"))?;
        ensure!(answer == b"\x12\x34 a query", "answer {answer:?}");
    }
    let target = SocketAddr::new(INTERNET_V4.into(), 53);
    let over_tcp = client.netns.run(move || -> Result<Vec<u8>> {
        let mut stream = TcpStream::connect_timeout(&target, DROPPED_AFTER)?;
        stream.set_read_timeout(Some(DROPPED_AFTER))?;
        stream.write_all(b"a query over TCP")?;
        let mut answer = [0u8; 64];
        let len = stream.read(&mut answer)?;
        Ok(answer[..len].to_vec())
    })??;
    ensure!(over_tcp == b"a query over TCP", "TCP answer {over_tcp:?}");
    let mut datagram = [0u8; 64];
    ensure!(
        public.recv_from(&mut datagram).is_err(),
        "a query reached the internet's resolver"
    );
    let billed = daemon.client(&client.mac)?;
    ensure!(
        billed["up_bytes"] == 0 && billed["down_bytes"] == 0,
        "billed: {billed}"
    );
    daemon.stop()?;

    // portal.redirect_dns = false: the query is dropped like the rest.
    let _daemon = Daemon::start(&lan, &[("HOTSPOTD__PORTAL__REDIRECT_DNS", "false")])?;
    let outcome = ask_udp(&client.netns, INTERNET_V4.into());
    ensure!(
        outcome.is_err(),
        "answered without redirect_dns: {outcome:?}"
    );
    ensure!(
        public.recv_from(&mut datagram).is_err(),
        "a query reached the internet's resolver"
    );
    Ok(())
}
