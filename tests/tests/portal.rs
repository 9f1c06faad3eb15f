//! End to end: the portal listener and its RFC 8908 captive-portal API (`GET /api/captive`),
//! asked from client namespaces over IPv4 and IPv6 as a phone asks: captive without a session,
//! the exact seconds and bytes left with one, nothing from the WAN side. Needs root.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use hotspotd_tests::http::{Answer, exchange_on, request};
use hotspotd_tests::{Daemon, GATEWAY_LAN_V4, GATEWAY_LAN_V6, GATEWAY_WAN_V4, Lan, Netns};
use serde_json::Value;

/// `portal.listen_port`'s default.
const PORTAL_PORT: u16 = 2050;

/// `GET /api/captive` from inside `netns` to the portal at `addr`.
fn ask(netns: &Netns, addr: IpAddr) -> Result<Answer> {
    let target = SocketAddr::new(addr, PORTAL_PORT);
    netns.run(move || -> Result<Answer> {
        let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(2))
            .with_context(|| format!("connect to the portal at {target}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        exchange_on(
            &mut stream,
            &request(
                "GET",
                "/api/captive",
                &[("Accept", "application/captive+json")],
                b"",
            ),
        )
    })?
}

/// The answer as RFC 8908 has it: its media type, not cached, a JSON object.
fn captive_json(answer: &Answer) -> Result<Value> {
    ensure!(answer.status == 200, "status {}: {answer:?}", answer.status);
    let headers = answer.headers.to_ascii_lowercase();
    ensure!(
        headers.contains("content-type: application/captive+json"),
        "media type: {}",
        answer.headers
    );
    ensure!(
        headers.contains("cache-control: private"),
        "caching: {}",
        answer.headers
    );
    answer.json().context("a JSON body")
}

#[test]
fn a_phone_learns_it_is_captive_and_then_exactly_what_it_has_left() -> Result<()> {
    let lan = Lan::new(1)?;
    let client = &lan.clients[0];
    let daemon = Daemon::start(&lan, &[])?;

    // Without a session: captive, sent to the portal at the address it reached.
    let v4 = captive_json(&ask(&client.netns, GATEWAY_LAN_V4.into())?)?;
    ensure!(
        v4["captive"] == true && v4["user-portal-url"] == "http://192.0.2.1:2050/",
        "{v4}"
    );
    ensure!(
        v4.get("seconds-remaining").is_none() && v4.get("bytes-remaining").is_none(),
        "{v4}"
    );
    let v6 = captive_json(&ask(&client.netns, GATEWAY_LAN_V6.into())?)?;
    ensure!(
        v6["captive"] == true && v6["user-portal-url"] == "http://[2001:db8:1::1]:2050/",
        "{v6}"
    );

    // "1 hour or 5 MB": not captive, and what is left is the kernel's to the byte (asking
    // the portal is traffic with the box, never billed).
    daemon.add_session(
        &client.mac,
        &[
            "--type",
            "time_or_data",
            "--time-secs",
            "3600",
            "--data-mb",
            "5",
            "--global-speed",
            "--connect",
        ],
    )?;
    let running = captive_json(&ask(&client.netns, GATEWAY_LAN_V4.into())?)?;
    ensure!(running["captive"] == false, "{running}");
    ensure!(running["bytes-remaining"] == 5_000_000, "{running}");
    let seconds = running["seconds-remaining"]
        .as_u64()
        .context("seconds-remaining")?;
    ensure!(
        (3_590..=3_600).contains(&seconds),
        "seconds-remaining {seconds}: {running}"
    );
    ensure!(running["can-extend-session"] == true, "{running}");

    // The WAN side does not reach the portal.
    let from_wan = lan.internet.run(|| {
        TcpStream::connect_timeout(
            &SocketAddr::new(GATEWAY_WAN_V4.into(), PORTAL_PORT),
            Duration::from_secs(1),
        )
    })?;
    ensure!(from_wan.is_err(), "the portal answered from the WAN side");
    Ok(())
}

#[test]
fn portal_mode_off_opens_no_listener() -> Result<()> {
    let lan = Lan::new(1)?;
    let client = &lan.clients[0];
    let _daemon = Daemon::start(&lan, &[("HOTSPOTD__PORTAL__MODE", "off")])?;
    ensure!(
        ask(&client.netns, GATEWAY_LAN_V4.into()).is_err(),
        "something answered on the portal's port with portal.mode = \"off\""
    );
    Ok(())
}
