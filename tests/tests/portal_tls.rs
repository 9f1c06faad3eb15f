//! End to end: the portal over HTTPS (`portal.tls_cert`, `portal.tls_key`, `portal.tls_port`).
//! A client namespace asks `https://<gateway>:443/api/captive` over IPv4 and IPv6 with a TLS
//! client that trusts only the test's self-signed certificate, and gets the RFC 8908 answer
//! the plain listener gives; the WAN side gets nothing; garbage instead of a `ClientHello` and a
//! client that never finishes its handshake hurt nobody; SIGHUP serves a renewed certificate
//! from the next connection and keeps the old one when the new pair is bad; a taken port stops
//! the start with a sentence naming it; and `hotspotd --check-config` refuses every broken
//! pair with a sentence naming the key and the file. Needs root (the check-config test does not).

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use hotspotd_tests::{
    Daemon, GATEWAY_LAN_V4, GATEWAY_LAN_V6, GATEWAY_WAN_V4, Lan, Netns, hotspotd_bin,
    http::request,
    tls::{TestCert, TlsAnswer, exchange_tls},
    wait_for,
};
use rustls::pki_types::CertificateDer;
use serde_json::Value;

/// `portal.tls_port`'s default.
const TLS_PORT: u16 = 443;
/// `portal.listen_port`'s default.
const PLAIN_PORT: u16 = 2050;
/// The names the test certificates are for: the gateway's LAN addresses, as a client that
/// connects by address checks them.
const NAMES: &[&str] = &["portal.hotspot.test", "192.0.2.1", "2001:db8:1::1"];

/// The daemon's environment for HTTPS with the pair at `cert` and `key`.
fn tls_env<'a>(cert: &'a Path, key: &'a Path) -> Result<[(&'static str, &'a str); 2]> {
    Ok([
        (
            "HOTSPOTD__PORTAL__TLS_CERT",
            cert.to_str().context("a UTF-8 path")?,
        ),
        (
            "HOTSPOTD__PORTAL__TLS_KEY",
            key.to_str().context("a UTF-8 path")?,
        ),
    ])
}

/// `GET /api/captive` over HTTPS from inside `netns` to port 443 of `addr`, trusting only
/// `trusted`.
fn ask_tls(netns: &Netns, addr: IpAddr, trusted: &CertificateDer<'static>) -> Result<TlsAnswer> {
    let trusted = trusted.clone();
    netns.run(move || {
        exchange_tls(
            SocketAddr::new(addr, TLS_PORT),
            &trusted,
            &request(
                "GET",
                "/api/captive",
                &[("Accept", "application/captive+json")],
                b"",
            ),
        )
    })?
}

/// The RFC 8908 answer: its media type, not cached, a JSON object saying the client is
/// captive.
fn captive(answer: &TlsAnswer) -> Result<Value> {
    let answer = &answer.answer;
    ensure!(answer.status == 200, "status {}: {answer:?}", answer.status);
    let headers = answer.headers.to_ascii_lowercase();
    ensure!(
        headers.contains("content-type: application/captive+json")
            && headers.contains("cache-control: private"),
        "headers: {}",
        answer.headers
    );
    let json = answer.json().context("a JSON body")?;
    ensure!(json["captive"] == true, "{json}");
    Ok(json)
}

#[test]
fn https_serves_the_rfc_8908_api_on_the_lan_over_ipv4_and_ipv6() -> Result<()> {
    let lan = Lan::new(1)?;
    let client = &lan.clients[0];
    let dir = tempfile::tempdir()?;
    let cert = TestCert::new(NAMES)?;
    let (cert_path, key_path) = cert.write(dir.path(), "portal")?;
    let _daemon = Daemon::start(&lan, &tls_env(&cert_path, &key_path)?)?;

    // Sent to the portal over HTTPS, at the address it asked.
    for (addr, portal) in [
        (IpAddr::from(GATEWAY_LAN_V4), "https://192.0.2.1/"),
        (IpAddr::from(GATEWAY_LAN_V6), "https://[2001:db8:1::1]/"),
    ] {
        let answer =
            ask_tls(&client.netns, addr, &cert.der).with_context(|| format!("HTTPS to {addr}"))?;
        ensure!(
            answer.served == cert.der,
            "{addr} served another certificate"
        );
        let json = captive(&answer)?;
        ensure!(json["user-portal-url"] == portal, "{json}");
    }

    // The same router on both: plain HTTP answers the same document, with the plain portal.
    let plain = client.netns.run(|| -> Result<Value> {
        let mut stream = TcpStream::connect_timeout(
            &SocketAddr::new(GATEWAY_LAN_V4.into(), PLAIN_PORT),
            Duration::from_secs(2),
        )?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let answer = hotspotd_tests::http::exchange_on(
            &mut stream,
            &request("GET", "/api/captive", &[], b""),
        )?;
        answer.json().context("a JSON body")
    })??;
    let mut over_tls = captive(&ask_tls(&client.netns, GATEWAY_LAN_V4.into(), &cert.der)?)?;
    over_tls["user-portal-url"] = "http://192.0.2.1:2050/".into();
    ensure!(
        plain == over_tls,
        "HTTP {plain} and HTTPS {over_tls} differ"
    );

    // The WAN side does not reach the HTTPS listener.
    let from_wan = lan.internet.run(|| {
        TcpStream::connect_timeout(
            &SocketAddr::new(GATEWAY_WAN_V4.into(), TLS_PORT),
            Duration::from_secs(1),
        )
    })?;
    ensure!(
        from_wan.is_err(),
        "the portal's HTTPS answered from the WAN side"
    );
    Ok(())
}

#[test]
fn garbage_and_a_silent_client_do_not_hurt_the_https_listener() -> Result<()> {
    let lan = Lan::new(1)?;
    let client = &lan.clients[0];
    let dir = tempfile::tempdir()?;
    let cert = TestCert::new(NAMES)?;
    let (cert_path, key_path) = cert.write(dir.path(), "portal")?;
    let daemon = Daemon::start(&lan, &tls_env(&cert_path, &key_path)?)?;
    let target = SocketAddr::new(GATEWAY_LAN_V4.into(), TLS_PORT);

    // A client that connects and says nothing: the handshake's time limit closes it.
    let silent = client.netns.run(move || TcpStream::connect(target))??;
    // Plain HTTP, and bytes that are no TLS record at all, instead of a ClientHello.
    for garbage in [
        request("GET", "/api/captive", &[], b""),
        vec![0x16, 0x03, 0x01, 0xff, 0xff, 0, 1, 2, 3],
        (0..=255).collect::<Vec<u8>>(),
    ] {
        let answered = client.netns.run(move || -> Result<Vec<u8>> {
            let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(2))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(&garbage)?;
            let mut answer = Vec::new();
            // The daemon may answer with a TLS alert, then closes; a reset is a close too.
            let _ = stream.read_to_end(&mut answer);
            Ok(answer)
        })??;
        ensure!(
            !answered.starts_with(b"HTTP/"),
            "plain HTTP answered on the HTTPS port: {:?}",
            String::from_utf8_lossy(&answered)
        );
    }
    // A good request after them, while the silent one still waits.
    captive(&ask_tls(&client.netns, GATEWAY_LAN_V4.into(), &cert.der)?)?;
    daemon
        .status()
        .with_context(|| format!("hotspotd still answers its API; log:\n{}", daemon.log()))?;

    let started = Instant::now();
    let mut silent = silent;
    silent.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut byte = [0; 1];
    let closed = silent.read(&mut byte);
    let waited = started.elapsed();
    ensure!(
        matches!(closed, Ok(0)) || closed.is_err(),
        "the silent client got {closed:?}"
    );
    ensure!(
        waited < Duration::from_secs(15),
        "a client that never sent a ClientHello kept its connection {waited:?}"
    );
    captive(&ask_tls(&client.netns, GATEWAY_LAN_V4.into(), &cert.der)?)?;
    Ok(())
}

#[test]
fn sighup_serves_a_renewed_certificate_and_keeps_it_when_the_next_pair_is_bad() -> Result<()> {
    let lan = Lan::new(1)?;
    let client = &lan.clients[0];
    let dir = tempfile::tempdir()?;
    let old = TestCert::new(NAMES)?;
    let (cert_path, key_path) = old.write(dir.path(), "portal")?;
    let daemon = Daemon::start(&lan, &tls_env(&cert_path, &key_path)?)?;
    ensure!(ask_tls(&client.netns, GATEWAY_LAN_V4.into(), &old.der)?.served == old.der);

    // The ACME client renews: new files at the same paths, then `systemctl reload`.
    let renewed = TestCert::new(NAMES)?;
    renewed.write(dir.path(), "portal")?;
    daemon.reload()?;
    let mut seen = None;
    let served_renewed = wait_for(Duration::from_secs(5), || {
        seen = ask_tls(&client.netns, GATEWAY_LAN_V4.into(), &renewed.der)
            .ok()
            .map(|answer| answer.served);
        seen.as_ref() == Some(&renewed.der)
    });
    ensure!(
        served_renewed,
        "after SIGHUP the portal still serves the old certificate; log:\n{}",
        daemon.log()
    );
    ensure!(
        ask_tls(&client.netns, GATEWAY_LAN_V4.into(), &old.der).is_err(),
        "the old certificate is still served to some connections"
    );

    // A broken renewal: the certificate rewritten, the key of another. Refused, and the
    // renewed pair still served.
    let other = TestCert::new(NAMES)?;
    std::fs::write(&key_path, &other.key_pem)?;
    daemon.reload()?;
    let refused = wait_for(Duration::from_secs(5), || {
        daemon.log().contains("does not belong to the certificate")
    });
    ensure!(
        refused,
        "the bad pair is not refused in the log:\n{}",
        daemon.log()
    );
    ensure!(
        daemon.log().contains("keeping the running configuration"),
        "the log does not say the running pair is kept:\n{}",
        daemon.log()
    );
    let answer = ask_tls(&client.netns, GATEWAY_LAN_V4.into(), &renewed.der)?;
    ensure!(
        answer.served == renewed.der,
        "the renewed certificate is no longer served"
    );
    captive(&answer)?;
    Ok(())
}

#[test]
fn a_taken_https_port_stops_the_start_naming_it() -> Result<()> {
    let lan = Lan::new(1)?;
    let dir = tempfile::tempdir()?;
    let cert = TestCert::new(NAMES)?;
    let (cert_path, key_path) = cert.write(dir.path(), "portal")?;
    // Something else on the box holds 8443 already (a web server, another daemon).
    let _taken = lan
        .gateway
        .run(|| TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], 8443))))??;
    let mut env = tls_env(&cert_path, &key_path)?.to_vec();
    env.push(("HOTSPOTD__PORTAL__TLS_PORT", "8443"));
    let (status, log) = Daemon::start_expecting_exit(&lan, &env)?;
    ensure!(!status.success(), "hotspotd started: {log}");
    ensure!(
        log.contains("port 8443 (portal.tls_port, HTTPS): set portal.tls_port to a free port"),
        "the refusal does not name the port and what to do:\n{log}"
    );
    Ok(())
}

/// `hotspotd --check-config` on a file holding `portal` as its `[portal]` section: whether it
/// passed, and its one line of output.
fn check_config(dir: &Path, portal: &str) -> Result<(bool, String)> {
    let path = dir.join("config.toml");
    std::fs::write(&path, format!("[portal]\n{portal}\n"))?;
    let output = Command::new(hotspotd_bin())
        .args(["--check-config", "--config"])
        .arg(&path)
        .env_remove("HOTSPOTD__PORTAL__TLS_CERT")
        .env_remove("HOTSPOTD__PORTAL__TLS_KEY")
        .output()
        .context("run hotspotd --check-config")?;
    let said = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    ensure!(said.lines().count() == 1, "more than one line: {said}");
    Ok((output.status.success(), said))
}

/// A `[portal]` section with the pair at `cert` and `key`.
fn pair(cert: &Path, key: &Path) -> String {
    format!(
        "tls_cert = {:?}\ntls_key = {:?}",
        cert.display().to_string(),
        key.display().to_string()
    )
}

#[test]
fn check_config_refuses_a_broken_certificate_or_key_saying_which_and_why() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let cert = TestCert::new(NAMES)?;
    let (cert_path, key_path) = cert.write(root, "portal")?;
    let other = TestCert::new(NAMES)?;
    let (_, other_key) = other.write(root, "other")?;
    let not_pem = root.join("notes.txt");
    std::fs::write(&not_pem, "this is not a certificate\n")?;
    let broken_pem = root.join("broken.pem");
    std::fs::write(
        &broken_pem,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n",
    )?;
    let missing = root.join("missing.pem");

    let (passed, said) = check_config(root, &pair(&cert_path, &key_path))?;
    ensure!(passed, "a good pair is refused: {said}");

    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "the key of another certificate",
            pair(&cert_path, &other_key),
            &[
                "portal.tls_key",
                "does not belong to the certificate",
                "portal.tls_cert",
            ],
        ),
        (
            "a file that does not exist",
            pair(&missing, &key_path),
            &[
                "portal.tls_cert",
                "missing.pem",
                "cannot read the file",
                "No such file",
            ],
        ),
        (
            "a folder",
            pair(&cert_path, root),
            &["portal.tls_key", "cannot read the file"],
        ),
        (
            "a text file as the certificate",
            pair(&not_pem, &key_path),
            &[
                "portal.tls_cert",
                "notes.txt",
                "holds no certificate",
                "fullchain.pem",
            ],
        ),
        (
            "a text file as the key",
            pair(&cert_path, &not_pem),
            &["portal.tls_key", "holds no private key", "privkey.pem"],
        ),
        (
            "the certificate as the key",
            pair(&cert_path, &cert_path),
            &["portal.tls_key", "holds no private key"],
        ),
        (
            "PEM that is broken",
            pair(&broken_pem, &key_path),
            &["portal.tls_cert", "broken.pem", "is not valid PEM"],
        ),
        (
            "only the certificate",
            format!("tls_cert = {:?}", cert_path.display().to_string()),
            &["portal.tls_cert and portal.tls_key go together"],
        ),
        (
            "only the key",
            format!("tls_key = {:?}", key_path.display().to_string()),
            &["portal.tls_key", "go together"],
        ),
        (
            "the plain port",
            format!("{}\ntls_port = 2050", pair(&cert_path, &key_path)),
            &["portal.tls_port must differ from portal.listen_port"],
        ),
    ];
    for (what, portal, expected) in cases {
        let (passed, said) = check_config(root, &portal)?;
        if passed {
            bail!("{what}: --check-config passed ({said})");
        }
        ensure!(
            said.starts_with(&format!("hotspotd: {}", root.join("config.toml").display())),
            "{what}: the refusal does not start with the file: {said}"
        );
        for words in expected {
            ensure!(
                said.contains(words),
                "{what}: {said:?} does not say {words:?}"
            );
        }
    }
    Ok(())
}
