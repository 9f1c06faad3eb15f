//! End to end: who can reach the API. The Unix socket is mode 0660 and another user cannot
//! connect to it; the TCP listener answers every endpoint without the right bearer token with
//! 401 and a body that says nothing else; and nothing on the LAN side reaches any socket the
//! daemon listens on, not even a packet forged to the box's loopback address from a client
//! whose session runs. Needs root (namespaces, eBPF, other uids).

use std::collections::BTreeSet;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use hotspotd_tests::frames::{
    ETH_P_IPV4, ETH_P_IPV6, IPPROTO_TCP, Ipv4Shape, ethernet, internet_checksum, ipv4_routable,
    ipv6, mac_of,
};
use hotspotd_tests::http::{Answer, exchange_on, request};
use hotspotd_tests::{
    CLIENT_IFACE, Client, Daemon, FrameCapture, FrameSender, GATEWAY_LAN_V4, GATEWAY_LAN_V6, Lan,
    hotspotctl_bin, tcp_connect_from, wait_for,
};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const TCP_PORT: u16 = 8097;
/// `portal.listen_port`'s default: the portal's listener, on the LAN on purpose.
const PORTAL_PORT: u16 = 2050;
/// `nobody` and `nogroup` on Debian.
const OTHER_UID: u32 = 65_534;
const OTHER_GID: u32 = 65_534;

#[test]
fn another_user_cannot_reach_the_socket() -> Result<()> {
    let lan = Lan::new(1)?;
    // A folder anyone may traverse, so only the socket's own mode keeps others out.
    let dir = tempfile::Builder::new()
        .prefix("hotspotd-access-")
        .tempdir()?;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
    let socket = dir.path().join("api.sock");
    let socket_text = socket.to_str().context("a UTF-8 path")?;
    let daemon = Daemon::start(&lan, &[("HOTSPOTD__API__SOCKET", socket_text)])?;
    ensure!(daemon.socket() == socket, "the daemon serves {socket_text}");
    let mode = fs::metadata(&socket)?.permissions().mode() & 0o777;
    ensure!(
        mode == 0o660,
        "the socket is owner and group only: {mode:o}"
    );

    // hotspotctl, copied where the other user can run it.
    let ctl = dir.path().join("hotspotctl");
    fs::copy(hotspotctl_bin(), &ctl)?;
    let run_as = |uid: Option<u32>| -> Result<std::process::Output> {
        let mut command = Command::new(&ctl);
        command.args(["--socket", socket_text, "status", "--json"]);
        if let Some(uid) = uid {
            command.uid(uid).gid(OTHER_GID);
        }
        Ok(command.output()?)
    };
    let owner = run_as(None)?;
    ensure!(
        owner.status.success(),
        "the owner reaches it: {}",
        String::from_utf8_lossy(&owner.stderr)
    );
    let other = run_as(Some(OTHER_UID))?;
    let stderr = String::from_utf8_lossy(&other.stderr);
    ensure!(
        !other.status.success() && stderr.contains("Permission denied"),
        "uid {OTHER_UID} must be refused by the socket's mode: {} {stderr}",
        other.status
    );
    ensure!(
        other.stdout.is_empty(),
        "nothing printed for uid {OTHER_UID}"
    );
    Ok(())
}

/// A daemon that also serves the API on loopback TCP, with [`TOKEN`] in a file of the
/// returned folder.
fn start_with_tcp(lan: &Lan) -> Result<(Daemon, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let token_file = dir.path().join("token");
    fs::write(&token_file, format!("{TOKEN}\n"))?;
    let address = format!("127.0.0.1:{TCP_PORT}");
    let daemon = Daemon::start(
        lan,
        &[
            ("HOTSPOTD__API__TCP_LISTEN", address.as_str()),
            (
                "HOTSPOTD__API__TOKEN_FILE",
                token_file.to_str().context("a UTF-8 path")?,
            ),
        ],
    )?;
    Ok((daemon, dir))
}

/// Checks a refusal says 401 `unauthorized` and nothing else: no client, token or version.
fn check_refused(answer: &Answer, what: &str, client: &Client) -> Result<()> {
    let json = answer.json().unwrap_or_default();
    ensure!(
        answer.status == 401 && json["error"]["code"] == "unauthorized",
        "{what}: {} {}",
        answer.status,
        answer.body
    );
    ensure!(
        json.as_object().map(serde_json::Map::len) == Some(1)
            && json["error"].as_object().map(serde_json::Map::len) == Some(2),
        "{what}: more than the error: {}",
        answer.body
    );
    for secret in [client.mac.as_str(), TOKEN, "0.1.0", "hotspotd_"] {
        ensure!(
            !answer.body.contains(secret) && !answer.headers.contains(secret),
            "{what} leaks {secret:?}: {} {}",
            answer.headers,
            answer.body
        );
    }
    Ok(())
}

/// One request to the TCP listener from inside the gateway (whose loopback it is).
fn tcp(lan: &Lan, raw: Vec<u8>) -> Result<Answer> {
    tcp_from(lan, Ipv4Addr::LOCALHOST, raw)
}

/// [`tcp`] from the loopback address `source`: the listener refuses an address that sent 10
/// wrong tokens (`api_tcp.rs` tests that), so a test of many sends each from its own.
fn tcp_from(lan: &Lan, source: Ipv4Addr, raw: Vec<u8>) -> Result<Answer> {
    lan.gateway.run(move || -> Result<Answer> {
        let mut stream =
            tcp_connect_from(source, SocketAddrV4::new(Ipv4Addr::LOCALHOST, TCP_PORT))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        exchange_on(&mut stream, &raw)
    })?
}

#[test]
fn tcp_without_the_token_gets_401_and_nothing_else() -> Result<()> {
    let lan = Lan::new(1)?;
    let client = &lan.clients[0];
    let (daemon, _token_dir) = start_with_tcp(&lan)?;
    daemon.add_session(
        &client.mac,
        &["--type", "time", "--time-secs", "60", "--global-speed"],
    )?;
    let before = daemon.ctl_json(&["sessions"])?;

    let session = format!(
        "{{\"mac\":\"{}\",\"type\":0,\"time_secs\":60,\"use_global_speed\":true,\"connect\":true}}",
        client.mac
    );
    let connect = format!("/v1/clients/{}/connect", client.mac);
    let endpoints: Vec<(&str, &str, &[u8])> = vec![
        ("GET", "/v1/clients", b""),
        ("GET", "/v1/sessions", b""),
        ("POST", "/v1/sessions", session.as_bytes()),
        ("DELETE", "/v1/sessions/1", b""),
        ("POST", connect.as_str(), b"{}"),
        ("GET", "/v1/status", b""),
        ("GET", "/v1/events", b""),
        ("GET", "/metrics", b""),
        ("GET", "/no/such/path", b""),
        ("PUT", "/v1/status", b""),
    ];
    let bearer = format!("Bearer {TOKEN}");
    let wrong: Vec<(&str, String)> = vec![
        ("no Authorization", String::new()),
        (
            "another token",
            "Bearer ffffffffffffffffffffffffffffffff".to_owned(),
        ),
        (
            "a prefix of the token",
            "Bearer 0123456789abcdef".to_owned(),
        ),
        ("the token and more", format!("{bearer}0")),
        ("an empty bearer", "Bearer ".to_owned()),
        ("the token without the scheme", TOKEN.to_owned()),
        ("the token as Basic", format!("Basic {TOKEN}")),
        ("the token in lower-case scheme", format!("bearer {TOKEN}")),
    ];
    let mut refused = 0;
    for (method, path, body) in &endpoints {
        for (what, authorization) in &wrong {
            let mut headers = vec![("Content-Type", "application/json")];
            if !authorization.is_empty() {
                headers.push(("Authorization", authorization.as_str()));
            }
            refused += 1;
            let source = Ipv4Addr::new(127, 0, 1, u8::try_from(refused)?);
            let answer = tcp_from(&lan, source, request(method, path, &headers, body))?;
            check_refused(&answer, &format!("{method} {path} with {what}"), client)?;
        }
    }
    // The token in the query string is no token either.
    let answer = tcp(
        &lan,
        request("GET", &format!("/v1/clients?token={TOKEN}"), &[], b""),
    )?;
    ensure!(
        answer.status == 401,
        "a token in the query: {}",
        answer.status
    );
    ensure!(
        daemon.ctl_json(&["sessions"])? == before,
        "refused requests changed the sessions"
    );
    // And with the token, the same listener works.
    let answer = tcp(
        &lan,
        request("GET", "/v1/status", &[("Authorization", &bearer)], b""),
    )?;
    ensure!(
        answer.status == 200,
        "with the token: {} {}",
        answer.status,
        answer.body
    );
    eprintln!("{refused} requests without the right token: all 401, nothing else");
    Ok(())
}

/// The TCP ports `pid` listens on, with their addresses, from /proc: its socket inodes
/// matched against its namespace's TCP tables (LISTEN) and UDP tables (any bound socket).
fn listening(pid: u32) -> Result<Vec<(String, SocketAddr)>> {
    let mut inodes = BTreeSet::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Ok(target) = fs::read_link(entry?.path()) else {
            continue;
        };
        let target = target.to_string_lossy().into_owned();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|rest| rest.strip_suffix(']'))
        {
            inodes.insert(inode.to_owned());
        }
    }
    let mut found = Vec::new();
    for table in ["tcp", "tcp6", "udp", "udp6"] {
        let text = fs::read_to_string(format!("/proc/{pid}/net/{table}"))?;
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let listens = table.starts_with("udp") || *state == "0A";
            if listens && inodes.contains(*inode) {
                found.push((table.to_owned(), parse_proc_address(local)?));
            }
        }
    }
    Ok(found)
}

/// `0100007F:1FA1` (or 32 hex digits for IPv6), as /proc/net/tcp writes an address.
fn parse_proc_address(text: &str) -> Result<SocketAddr> {
    let (addr, port) = text.split_once(':').context("address:port")?;
    let port = u16::from_str_radix(port, 16)?;
    let words: Vec<u32> = (0..addr.len() / 8)
        .map(|i| u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16))
        .collect::<Result<_, _>>()?;
    // Each 32-bit word is in the host's (little-endian) byte order.
    let bytes: Vec<u8> = words.iter().flat_map(|word| word.to_le_bytes()).collect();
    let ip = match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes.as_slice())?),
        16 => IpAddr::from(<[u8; 16]>::try_from(bytes.as_slice())?),
        n => anyhow::bail!("a {n}-byte address in /proc"),
    };
    Ok(SocketAddr::new(ip, port))
}

/// A TCP SYN from `src_port` to `dst_port` with a valid checksum over `pseudo` (the
/// pseudo-header of its IP packet), so a stack that gets it answers.
fn syn(pseudo: &[u8], src_port: u16, dst_port: u16) -> Vec<u8> {
    const SYN: u8 = 0x02;
    let mut segment = Vec::with_capacity(20);
    segment.extend_from_slice(&src_port.to_be_bytes());
    segment.extend_from_slice(&dst_port.to_be_bytes());
    segment.extend_from_slice(&7u32.to_be_bytes()); // sequence number
    segment.extend_from_slice(&0u32.to_be_bytes());
    segment.extend_from_slice(&[5 << 4, SYN]);
    segment.extend_from_slice(&64_240u16.to_be_bytes());
    segment.extend_from_slice(&[0, 0, 0, 0]);
    let checksum = internet_checksum(&[pseudo, &segment].concat());
    segment[16..18].copy_from_slice(&checksum.to_be_bytes());
    segment
}

fn syn_v4(src: [u8; 4], dst: [u8; 4], src_port: u16, dst_port: u16) -> Vec<u8> {
    let pseudo = [&src[..], &dst, &[0, IPPROTO_TCP, 0, 20]].concat();
    let segment = syn(&pseudo, src_port, dst_port);
    ipv4_routable(src, dst, IPPROTO_TCP, &Ipv4Shape::default(), &segment)
}

fn syn_v6(src: [u8; 16], dst: [u8; 16], src_port: u16, dst_port: u16) -> Vec<u8> {
    let pseudo = [&src[..], &dst, &[0, 0, 0, 20, 0, 0, 0, IPPROTO_TCP]].concat();
    ipv6(src, dst, IPPROTO_TCP, &syn(&pseudo, src_port, dst_port))
}

/// Source ports of TCP segments from port `from` that `capture` saw, IPv4 or IPv6.
fn answers_from(capture: &FrameCapture, from: u16) -> BTreeSet<u16> {
    capture
        .frames()
        .iter()
        .filter_map(|frame| {
            let ether_type = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
            let l4 = match ether_type {
                ETH_P_IPV4 if frame.get(23) == Some(&IPPROTO_TCP) => {
                    14 + usize::from(frame.get(14)? & 0x0f) * 4
                }
                ETH_P_IPV6 if frame.get(20) == Some(&IPPROTO_TCP) => 14 + 40,
                _ => return None,
            };
            let ports = frame.get(l4..l4 + 4)?;
            (u16::from_be_bytes([ports[0], ports[1]]) == from)
                .then(|| u16::from_be_bytes([ports[2], ports[3]]))
        })
        .collect()
}

#[test]
fn the_lan_side_never_reaches_the_api() -> Result<()> {
    let lan = Lan::new(1)?;
    let client = &lan.clients[0];
    let (daemon, _token_dir) = start_with_tcp(&lan)?;
    // With a running session the gate lets the client's packets by: only the kernel and the
    // daemon's binding keep it out.
    daemon.connect_for_an_hour(&client.mac)?;

    // The portal listens on the LAN by design (portal.rs): it answers the RFC 8908 API about
    // the asking client and nothing of the API; checked here, then left out.
    let portal = SocketAddr::new(IpAddr::from(GATEWAY_LAN_V4), PORTAL_PORT);
    let answer = client.netns.run(move || -> Result<Answer> {
        let mut stream = TcpStream::connect_timeout(&portal, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        exchange_on(&mut stream, &request("GET", "/v1/clients", &[], b""))
    })??;
    ensure!(
        answer.status == 404,
        "the portal answered the API: {answer:?}"
    );
    let sockets: Vec<(String, SocketAddr)> = listening(daemon.pid())?
        .into_iter()
        .filter(|(_, address)| address.port() != PORTAL_PORT)
        .collect();
    ensure!(
        sockets
            .iter()
            .any(|(_, address)| address.port() == TCP_PORT),
        "the daemon listens on {TCP_PORT}: {sockets:?}"
    );
    for (table, address) in &sockets {
        ensure!(
            address.ip().is_loopback(),
            "the daemon listens on {table} {address}, which is not loopback"
        );
    }
    for (_, address) in &sockets {
        for ip in [IpAddr::from(GATEWAY_LAN_V4), IpAddr::from(GATEWAY_LAN_V6)] {
            let target = SocketAddr::new(ip, address.port());
            let reached = client
                .netns
                .run(move || TcpStream::connect_timeout(&target, Duration::from_secs(2)).is_ok())?;
            ensure!(!reached, "a client connected to {target}");
        }
    }
    forged_loopback_syns_get_no_answer(&lan, client, &daemon)?;
    Ok(())
}

/// Frames from the client to the gateway's MAC carrying SYNs to the API port at the box's
/// loopback addresses get no answer at all; the same SYN to the LAN address gets a reset,
/// which proves the crafted SYN is one the box answers.
fn forged_loopback_syns_get_no_answer(lan: &Lan, client: &Client, daemon: &Daemon) -> Result<()> {
    const CONTROL_PORT: u16 = 50_001;
    const LOOPBACK_V4_PORT: u16 = 50_002;
    const LOOPBACK_V6_PORT: u16 = 50_003;
    let capture = FrameCapture::start(&client.netns, CLIENT_IFACE)?;
    let link = FrameSender::open(&client.netns, CLIENT_IFACE)?;
    let (gateway, own) = (mac_of(lan.bridge_mac())?, mac_of(&client.mac)?);
    let v4 = client.ipv4.octets();
    let v6 = client.ipv6.octets();
    link.send(&ethernet(
        gateway,
        own,
        &[],
        ETH_P_IPV4,
        &syn_v4(v4, GATEWAY_LAN_V4.octets(), CONTROL_PORT, TCP_PORT),
    ))?;
    link.send(&ethernet(
        gateway,
        own,
        &[],
        ETH_P_IPV4,
        &syn_v4(v4, Ipv4Addr::LOCALHOST.octets(), LOOPBACK_V4_PORT, TCP_PORT),
    ))?;
    link.send(&ethernet(
        gateway,
        own,
        &[],
        ETH_P_IPV6,
        &syn_v6(v6, Ipv6Addr::LOCALHOST.octets(), LOOPBACK_V6_PORT, TCP_PORT),
    ))?;
    let answered = wait_for(Duration::from_secs(5), || {
        answers_from(&capture, TCP_PORT).contains(&CONTROL_PORT)
    });
    ensure!(answered, "the control SYN to the LAN address got no reset");
    std::thread::sleep(Duration::from_secs(1));
    let answers = answers_from(&capture, TCP_PORT);
    ensure!(
        answers == BTreeSet::from([CONTROL_PORT]),
        "a SYN to the box's loopback from the LAN was answered: {answers:?}"
    );
    let status = daemon.ctl_json(&["status"])?;
    ensure!(status["version"].is_string(), "the daemon still answers");
    Ok(())
}
