//! End to end, RFC 8910: `hotspotctl portal dhcp-options` prints the dnsmasq lines for the
//! running configuration; a real dnsmasq in the gateway namespace, given exactly those lines,
//! hands DHCPv4 option 114 and DHCPv6 option 103 to a client namespace that asks; and the
//! URI each carries answers that client as RFC 8908 says. Also what the command says when
//! there is no URI to give, and that a reload applies `portal.api_url`. Needs root and Debian's `dnsmasq-base` (`scripts/bootstrap.sh`).
//!
//! RA option 37 is not tested against a real daemon: dnsmasq cannot send it, radvd can only
//! from 2.20 on (Debian 12 has 2.19) and odhcpd is not in Debian. Its lines are checked in
//! `portal::rfc8910`'s unit tests.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use hotspotd_tests::dhcp::{self, mac_bytes};
use hotspotd_tests::http::{Answer, exchange, exchange_on, request};
use hotspotd_tests::{CLIENT_IFACE, Daemon, LAN_IFACE, Lan, Netns, wait_for};

/// The URIs the harness's LAN gives the built-in portal: the bridge's addresses, port 2050.
const URI_V4: &str = "http://192.0.2.1:2050/api/captive";
const URI_V6: &str = "http://[2001:db8:1::1]:2050/api/captive";
/// DHCPv4 option 114 and DHCPv6 option 103 (RFC 8910).
const OPTION_CAPTIVE_PORTAL_V4: u8 = 114;
const OPTION_CAPTIVE_PORTAL_V6: u16 = 103;
/// How long dnsmasq may take to answer (it starts, and answers once it is listening).
const DHCP_TIMEOUT: Duration = Duration::from_secs(20);

/// A dnsmasq serving DHCP only (`--port=0`: no DNS) on the LAN bridge of a gateway namespace,
/// from its own configuration file, with its pid and lease files in a folder of its own;
/// killed on drop.
struct Dnsmasq {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Dnsmasq {
    /// Starts dnsmasq in `gateway` with `lines` (what `hotspotctl portal dhcp-options` printed)
    /// plus address ranges on the harness LAN far from its clients' addresses.
    fn start(gateway: &Netns, lines: &str) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("hotspotd-dnsmasq-")
            .tempdir()?;
        let conf = dir.path().join("dnsmasq.conf");
        let ranges = "dhcp-range=192.0.2.200,192.0.2.250,255.255.255.0,1h\n\
                      dhcp-range=2001:db8:1::200,2001:db8:1::2ff,64,1h\n";
        std::fs::write(&conf, format!("{lines}{ranges}"))?;
        let log = dir.path().join("dnsmasq.log");
        let child = gateway
            .command("dnsmasq")
            .arg(format!("--conf-file={}", conf.display()))
            .args([
                "--keep-in-foreground",
                "--port=0",
                &format!("--interface={LAN_IFACE}"),
                "--bind-interfaces",
                // Stays root: the lease file is in a folder only root may write.
                "--user=root",
                "--log-facility=-",
                "--log-dhcp",
                // No echo request before an offer: nothing on the test LAN holds the range.
                "--no-ping",
            ])
            .arg(format!(
                "--pid-file={}",
                dir.path().join("dnsmasq.pid").display()
            ))
            .arg(format!(
                "--dhcp-leasefile={}",
                dir.path().join("dnsmasq.leases").display()
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
        // A configuration dnsmasq refuses ends it at once, with the reason in its log.
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

/// `GET` of an `http://` URI from inside `netns`, as a phone fetches the API.
fn fetch(netns: &Netns, uri: &str) -> Result<Answer> {
    let rest = uri
        .strip_prefix("http://")
        .with_context(|| format!("{uri} is not an http:// URI"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let target: SocketAddr = authority
        .parse()
        .with_context(|| format!("{uri} does not name an address and port"))?;
    let path = path.to_owned();
    netns.run(move || -> Result<Answer> {
        let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(2))
            .with_context(|| format!("connect to {target}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        exchange_on(
            &mut stream,
            &request("GET", &path, &[("Accept", "application/captive+json")], b""),
        )
    })?
}

/// The RFC 8908 answer for a client without a session.
fn ensure_captive(answer: &Answer) -> Result<()> {
    ensure!(answer.status == 200, "status {}: {answer:?}", answer.status);
    ensure!(
        answer
            .headers
            .to_ascii_lowercase()
            .contains("content-type: application/captive+json"),
        "media type: {}",
        answer.headers
    );
    let body = answer.json().context("a JSON body")?;
    ensure!(body["captive"] == true, "{body}");
    Ok(())
}

fn stdout_of(daemon: &Daemon, args: &[&str]) -> Result<String> {
    let output = daemon.ctl(args)?;
    ensure!(
        output.status.success(),
        "hotspotctl {} failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

#[test]
fn dnsmasq_given_the_printed_lines_tells_a_phone_where_the_api_is() -> Result<()> {
    let lan = Lan::new(1)?;
    let client = &lan.clients[0];
    let daemon = Daemon::start(&lan, &[])?;

    let lines = stdout_of(&daemon, &["portal", "dhcp-options", "--format", "dnsmasq"])?;
    for wanted in [
        format!("dhcp-option=tag:{LAN_IFACE},114,\"{URI_V4}\""),
        format!("dhcp-option=tag:{LAN_IFACE},option6:103,\"{URI_V6}\""),
    ] {
        ensure!(
            lines.lines().any(|line| line == wanted),
            "{wanted} in:\n{lines}"
        );
    }
    ensure!(lines.contains("dnsmasq cannot send it"), "{lines}");
    let raw = stdout_of(&daemon, &["portal", "dhcp-options", "--format", "raw"])?;
    ensure!(
        raw == format!(
            "dhcpv4-option-114 {URI_V4}\ndhcpv6-option-103 {URI_V6}\nra-option-37 {URI_V6}\n"
        ),
        "{raw}"
    );
    let json = daemon.ctl_json(&["portal", "dhcp-options"])?;
    ensure!(
        json["format"] == "dnsmasq"
            && json["interface"] == LAN_IFACE
            && json["ipv4_uri"] == URI_V4
            && json["ipv6_uri"] == URI_V6
            && json["text"] == lines.as_str(),
        "{json}"
    );

    let dnsmasq = Dnsmasq::start(&lan.gateway, &lines)?;
    let mac = mac_bytes(&client.mac)?;
    // Subnet mask, router, DNS and the captive portal, as Android asks.
    let offer = dhcp::discover(
        &client.netns,
        CLIENT_IFACE,
        mac,
        &[1, 3, 6, OPTION_CAPTIVE_PORTAL_V4],
        DHCP_TIMEOUT,
    )
    .with_context(|| format!("dnsmasq's log:\n{}", dnsmasq.log()))?;
    let uri = offer
        .options
        .get(&OPTION_CAPTIVE_PORTAL_V4)
        .with_context(|| format!("no option 114 in the offer {offer:?}"))?;
    let uri = String::from_utf8(uri.clone())?;
    ensure!(uri == URI_V4, "option 114 carries {uri:?}");
    ensure_captive(&fetch(&client.netns, &uri)?)?;

    let options = dhcp::information_request(
        &client.netns,
        CLIENT_IFACE,
        mac,
        &[OPTION_CAPTIVE_PORTAL_V6],
        DHCP_TIMEOUT,
    )
    .with_context(|| format!("dnsmasq's log:\n{}", dnsmasq.log()))?;
    let uri = options
        .get(&OPTION_CAPTIVE_PORTAL_V6)
        .with_context(|| format!("no option 103 in the reply {options:?}"))?;
    let uri = String::from_utf8(uri.clone())?;
    ensure!(uri == URI_V6, "option 103 carries {uri:?}");
    ensure_captive(&fetch(&client.netns, &uri)?)?;

    // Without its global IPv6 address the bridge has only a link-local one and a deprecated
    // one, neither of which a phone should be sent to: no IPv6 URI, and the output says why.
    lan.gateway.ip_batch(&[
        format!("addr del 2001:db8:1::1/64 dev {LAN_IFACE}"),
        format!("addr add 2001:db8:1::5/64 dev {LAN_IFACE} nodad preferred_lft 0"),
    ])?;
    let json = daemon.ctl_json(&["portal", "dhcp-options", "--format", "raw"])?;
    ensure!(
        json["ipv4_uri"] == URI_V4
            && json["ipv6_uri"].is_null()
            && json["text"] == format!("dhcpv4-option-114 {URI_V4}\n").as_str(),
        "{json}"
    );
    let lines = stdout_of(&daemon, &["portal", "dhcp-options"])?;
    ensure!(
        !lines.contains("option6:103") && lines.contains("br-lan has no global IPv6 address"),
        "{lines}"
    );
    Ok(())
}

#[test]
fn without_a_uri_to_give_the_command_says_what_to_set_and_a_reload_gives_one() -> Result<()> {
    let lan = Lan::new(0)?;
    let off = Daemon::start(&lan, &[("HOTSPOTD__PORTAL__MODE", "off")])?;
    let output = off.ctl(&["portal", "dhcp-options"])?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.code() == Some(1)
            && stderr.starts_with("hotspotctl: portal.mode is \"off\": there is no portal")
            && output.stdout.is_empty(),
        "{output:?}"
    );
    // The API answers 409 with the same sentence, and refuses a format it does not know.
    let answer = api_get(off.socket(), "/v1/portal/dhcp-options?format=raw")?;
    ensure!(answer.status == 409, "{answer:?}");
    let body = answer.json().context("a JSON error")?;
    ensure!(body["error"]["code"] == "no_portal_api", "{body}");
    let answer = api_get(off.socket(), "/v1/portal/dhcp-options?format=kea")?;
    let body = answer.json().context("a JSON error")?;
    ensure!(
        answer.status == 400
            && body["error"]["message"]
                == "format must be dnsmasq, odhcpd, radvd, raw (got \"kea\")",
        "{answer:?}"
    );
    // Hostile queries: each refused in one sentence, before the mode is looked at.
    let long = format!("?format={}", "a".repeat(10_000));
    for query in [
        "?format=",
        "?format=DNSMASQ",
        "?format=%ff",
        "?format=%00",
        "?format=dnsmasq&format=raw",
        "?foo=1",
        "?format=raw&foo=1",
        long.as_str(),
    ] {
        let answer = api_get(off.socket(), &format!("/v1/portal/dhcp-options{query}"))?;
        let body = answer.json().context("a JSON error")?;
        let message = body["error"]["message"].as_str().unwrap_or_default();
        ensure!(
            answer.status == 400
                && body["error"]["code"] == "bad_request"
                && !message.is_empty()
                && message.len() < 1_000,
            "{query}: {answer:?}"
        );
    }
    drop(off);

    // An external portal: no URI until portal.api_url names its API; a reload applies it.
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("config.toml");
    let external = "[portal]\nmode = \"external\"\nurl = \"https://portal.example.net/\"\n";
    std::fs::write(&config, external)?;
    let daemon = Daemon::start_with_config(&lan, &config, &[])?;
    let output = daemon.ctl(&["portal", "dhcp-options", "--format", "odhcpd"])?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.code() == Some(1) && stderr.contains("set portal.api_url"),
        "{output:?}"
    );
    let api_url = "https://portal.example.net/api/captive";
    std::fs::write(&config, format!("{external}api_url = \"{api_url}\"\n"))?;
    daemon.reload()?;
    let wanted = format!(
        "dhcpv4-option-114 {api_url}\ndhcpv6-option-103 {api_url}\nra-option-37 {api_url}\n"
    );
    let applied = wait_for(Duration::from_secs(10), || {
        stdout_of(&daemon, &["portal", "dhcp-options", "--format", "raw"])
            .is_ok_and(|raw| raw == wanted)
    });
    ensure!(
        applied,
        "the reloaded portal.api_url is not printed: {:?}",
        daemon.ctl(&["portal", "dhcp-options", "--format", "raw"])?
    );
    Ok(())
}

/// `GET path` on the daemon's API socket.
fn api_get(socket: &Path, path: &str) -> Result<Answer> {
    exchange(socket, &request("GET", path, &[], b""))
}
