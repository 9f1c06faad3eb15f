//! End to end: a voucher's device slots (docs/vouchers.md). Two devices on a voucher of two
//! slots draw on one data budget: what both receive is what the session is billed, to the
//! packet, and the kernel cuts both at its end. A voucher whose slots are all in use, entered
//! on another device, moves there: the device it leaves is blocked at once, the new one goes
//! on with the exact remainder, and a SIGKILL and a start keep it so. Needs root.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use hotspotd_tests::http::{Answer, exchange, exchange_on, request};
use hotspotd_tests::{
    Client, Daemon, GATEWAY_LAN_V4, INTERNET_V4, Lan, UdpEcho, UdpSink, UdpStream, udp_echoes,
    wait_for,
};
use serde_json::{Value, json};

const PAYLOAD: usize = 1_000;
const SETTLE: Duration = Duration::from_secs(5);
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// The built-in portal's page as `client` sees it.
fn portal_page(client: &Client) -> Result<String> {
    let target = SocketAddr::new(GATEWAY_LAN_V4.into(), 2050);
    let answer = client.netns.run(move || -> Result<Answer> {
        let mut stream = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(2))
            .with_context(|| format!("connect to the portal at {target}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        exchange_on(&mut stream, &request("GET", "/", &[], b""))
    })??;
    Ok(answer.body)
}

fn redeem(daemon: &Daemon, client: &Client, code: &str) -> Result<Answer> {
    let body = json!({ "mac": client.mac, "code": code }).to_string();
    exchange(
        daemon.socket(),
        &request(
            "POST",
            "/v1/vouchers/redeem",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        ),
    )
}

/// `answer` is a 409 with the error `code` and a message that says `reason`.
fn refused_for(answer: &Answer, code: &str, reason: &str) -> Result<()> {
    let body = answer.json().unwrap_or_default();
    ensure!(
        answer.status == 409 && body["error"]["code"] == code,
        "{answer:?}"
    );
    let message = body["error"]["message"].as_str().unwrap_or_default();
    ensure!(message.contains(reason), "the reason is said: {message:?}");
    Ok(())
}

/// One data voucher of `mb` MB for `devices` devices; its code.
fn data_voucher(daemon: &Daemon, mb: &str, devices: &str) -> Result<String> {
    let created = daemon.ctl_json(&[
        "voucher",
        "create",
        "--count",
        "1",
        "--type",
        "data",
        "--data-mb",
        mb,
        "--global-speed",
        "--max-devices",
        devices,
    ])?;
    created[0]["code"]
        .as_str()
        .map(str::to_owned)
        .context("a code")
}

fn voucher(daemon: &Daemon) -> Result<Value> {
    Ok(daemon.ctl_json(&["vouchers"])?[0].clone())
}

fn reaches_internet(lan: &Lan, client: &Client) -> Result<bool> {
    let echo = UdpEcho::start(&lan.internet, SocketAddr::new(INTERNET_V4.into(), 0))?;
    Ok(udp_echoes(&client.netns, echo.addr(), 64, 1, PROBE_TIMEOUT)? == 1)
}

fn data_cons_bytes(session: &Value) -> Result<f64> {
    Ok(session["data_cons"].as_f64().context("data_cons")? * 1e6)
}

/// Sends `bytes` of 1,000-byte datagrams from the internet to `sink`, over `over`.
fn stream_to(lan: &Lan, sink: &UdpSink, bytes: u64, over: Duration) -> Result<UdpStream> {
    let count = u32::try_from(bytes / 1_000).context("a count")?;
    UdpStream::start(
        &lan.internet,
        sink.addr(),
        PAYLOAD,
        over / count.max(1),
        over,
    )
}

#[test]
fn two_devices_share_one_data_budget_to_the_packet() -> Result<()> {
    let lan = Lan::new(3)?;
    let (first, second, third) = (&lan.clients[0], &lan.clients[1], &lan.clients[2]);
    let daemon = Daemon::start(&lan, &[])?;
    let code = data_voucher(&daemon, "3", "2")?;
    for client in [first, second] {
        let answer = redeem(&daemon, client, &code)?;
        ensure!(answer.status == 200, "{answer:?}");
        ensure!(
            answer.json().context("JSON")?["state"] == "connected",
            "{answer:?}"
        );
    }
    let listed = voucher(&daemon)?;
    ensure!(
        listed["devices"] == 2
            && listed["mac"] == first.mac.as_str()
            && listed["device_macs"] == json!([second.mac]),
        "{listed}"
    );
    let shared = daemon.client(&second.mac)?;
    ensure!(
        shared["state"] == "connected"
            && shared["shares_with"] == first.mac.as_str()
            && shared["session_id"] == listed["session_id"],
        "{shared}"
    );
    // The device on the slot sees the session it shares on the portal, and pausing from it
    // pauses the voucher for both; resuming from it brings both back.
    let page = portal_page(second)?;
    ensure!(
        page.contains("You are online") && page.contains("3.00 MB"),
        "{page}"
    );
    daemon.ctl_json(&["pause", "--mac", &second.mac])?;
    ensure!(
        daemon.client(&first.mac)?["state"] == "paused"
            && !reaches_internet(&lan, first)?
            && !reaches_internet(&lan, second)?,
        "pausing one device of a voucher pauses the voucher"
    );
    daemon.ctl_json(&["connect", "--mac", &second.mac])?;
    ensure!(
        reaches_internet(&lan, first)? && reaches_internet(&lan, second)?,
        "resumed from the device on the slot"
    );
    // Both download at once, 2.5 MB each over 2.5 s: more than the 3 MB they share.
    let sinks = [
        UdpSink::start(&first.netns, SocketAddr::new(first.ipv4.into(), 0))?,
        UdpSink::start(&second.netns, SocketAddr::new(second.ipv4.into(), 0))?,
    ];
    let streams = sinks
        .iter()
        .map(|sink| stream_to(&lan, sink, 2_500_000, Duration::from_millis(2_500)))
        .collect::<Result<Vec<_>>>()?;
    ensure!(
        wait_for(Duration::from_secs(8), || streams
            .iter()
            .all(UdpStream::finished)),
        "the streams did not end"
    );
    for sink in &sinks {
        sink.sync(&lan.gateway)?;
    }
    let received: Vec<u64> = sinks.iter().map(UdpSink::received_ip_bytes).collect();
    // And the two echo probes after the resume, 184 IP bytes each (64-byte payloads).
    let total: u64 = received.iter().sum::<u64>() + 2 * 184;
    eprintln!("received {received:?}, {total} bytes with the probes, of a 3,000,000-byte budget");
    ensure!(
        received.iter().all(|bytes| *bytes > 500_000),
        "both devices used the budget: {received:?}"
    );
    ensure!(
        (3_000_000..=3_000_000 + 2 * 1_028).contains(&total),
        "the devices received {total} bytes of a 3 MB voucher: at most one packet over each"
    );
    let id = listed["session_id"].as_i64().context("a session")?;
    ensure!(
        wait_for(SETTLE, || daemon
            .session(id)
            .is_ok_and(|session| session["state"] == "consumed")),
        "the shared session was not consumed"
    );
    let session = daemon.session(id)?;
    #[expect(clippy::cast_precision_loss, reason = "bytes of a test download")]
    let arrived = total as f64;
    ensure!(
        (data_cons_bytes(&session)? - arrived).abs() < 0.5,
        "billed {} bytes, {total} arrived: {session}",
        data_cons_bytes(&session)?
    );
    for client in [first, second] {
        ensure!(
            !reaches_internet(&lan, client)?,
            "{} still online after the budget",
            client.mac
        );
    }
    // Used up: a third device is refused, with a reason.
    refused_for(
        &redeem(&daemon, third, &code)?,
        "voucher_used_up",
        "used up",
    )?;
    ensure!(!reaches_internet(&lan, third)?, "the third device got in");
    Ok(())
}

#[test]
fn a_full_voucher_moves_to_a_new_device_with_the_exact_remainder() -> Result<()> {
    let lan = Lan::new(3)?;
    let (first, second, third) = (&lan.clients[0], &lan.clients[1], &lan.clients[2]);
    let mut daemon = Daemon::start(&lan, &[])?;
    let code = data_voucher(&daemon, "5", "1")?;
    ensure!(redeem(&daemon, first, &code)?.status == 200, "first redeem");
    // The first device downloads without a break, a datagram a millisecond, while the
    // voucher moves.
    let sink = UdpSink::start(&first.netns, SocketAddr::new(first.ipv4.into(), 0))?;
    let stream = UdpStream::start(
        &lan.internet,
        sink.addr(),
        PAYLOAD,
        Duration::from_millis(1),
        Duration::from_secs(3),
    )?;
    std::thread::sleep(Duration::from_millis(1_500));

    // The same code on another device: the voucher moves there at once.
    let answer = redeem(&daemon, second, &code)?;
    let moved_at = Instant::now();
    ensure!(answer.status == 200, "{answer:?}");
    let listed = voucher(&daemon)?;
    let id = listed["session_id"].as_i64().context("a session")?;
    let session = daemon.session(id)?;
    ensure!(
        wait_for(Duration::from_secs(5), || stream.finished()),
        "the stream did not end"
    );
    sink.sync(&lan.gateway)?;
    let used = sink.received_ip_bytes();
    let last = sink
        .arrivals()
        .iter()
        .filter(|arrival| arrival.len == PAYLOAD)
        .map(|arrival| arrival.at)
        .max()
        .context("the first device received something")?;
    eprintln!(
        "the first device received {used} bytes; its last datagram {:?} after the move returned",
        last.saturating_duration_since(moved_at)
    );
    ensure!(
        last <= moved_at + Duration::from_millis(100),
        "the device the voucher left received datagrams {:?} after the move",
        last - moved_at
    );
    ensure!(
        listed["mac"] == second.mac.as_str() && listed["devices"] == 1,
        "{listed}"
    );
    #[expect(clippy::cast_precision_loss, reason = "bytes of a test download")]
    let used_f = used as f64;
    ensure!(
        session["mac"] == second.mac.as_str() && (data_cons_bytes(&session)? - used_f).abs() < 0.5,
        "the session moved with exactly what the first device used ({used} bytes): {session}"
    );
    ensure!(
        !reaches_internet(&lan, first)?,
        "the device the voucher left is still online"
    );
    ensure!(reaches_internet(&lan, second)?, "the new device is offline");
    ensure!(
        daemon.log().contains("moved to a new device"),
        "the move is not logged"
    );
    let page = portal_page(first)?;
    ensure!(
        page.contains("id=\"voucher-moved\"") && page.contains("in use on another device"),
        "the device the voucher left is not told: {page}"
    );

    // A crash and a start keep the move.
    daemon.kill()?;
    daemon.restart(&lan)?;
    ensure!(
        wait_for(SETTLE, || reaches_internet(&lan, second).unwrap_or(false)),
        "the new device is offline after the restart: {}",
        daemon.log()
    );
    ensure!(
        !reaches_internet(&lan, first)?,
        "the old device is online after the restart"
    );
    ensure!(
        voucher(&daemon)?["mac"] == second.mac.as_str(),
        "after the restart"
    );

    // And it moves on: the third device takes it with what is left, nothing billed twice.
    let before = data_cons_bytes(&daemon.session(id)?)?;
    ensure!(redeem(&daemon, third, &code)?.status == 200, "third redeem");
    ensure!(
        !reaches_internet(&lan, second)?,
        "the second device is still online"
    );
    ensure!(
        reaches_internet(&lan, third)?,
        "the third device is offline"
    );
    let after = daemon.session(id)?;
    ensure!(
        after["mac"] == third.mac.as_str() && data_cons_bytes(&after)? - before < 1_000.0,
        "only the probes were billed in between: {before} → {after}"
    );
    Ok(())
}

#[test]
fn devices_sharing_a_voucher_are_billed_to_the_byte_across_a_crash() -> Result<()> {
    let lan = Lan::new(2)?;
    let (first, second) = (&lan.clients[0], &lan.clients[1]);
    // A full save every second, so the crash comes after saves that billed part of the
    // download (and saved each device's counters as billed).
    let mut daemon = Daemon::start(&lan, &[("HOTSPOTD__STORE__SAVE_INTERVAL_SECS", "1")])?;
    let code = data_voucher(&daemon, "20", "2")?;
    for client in [first, second] {
        ensure!(redeem(&daemon, client, &code)?.status == 200, "redeem");
    }
    let sinks = [
        UdpSink::start(&first.netns, SocketAddr::new(first.ipv4.into(), 0))?,
        UdpSink::start(&second.netns, SocketAddr::new(second.ipv4.into(), 0))?,
    ];
    // 1.5 MB each over 4 s; the daemon is killed 2.5 s in, after polls and a save have
    // billed part of it, and started again: the kernel keeps both on the shared budget
    // meanwhile, and the start bills what passed since the save, no more, no less.
    let streams = sinks
        .iter()
        .map(|sink| stream_to(&lan, sink, 1_500_000, Duration::from_secs(4)))
        .collect::<Result<Vec<_>>>()?;
    std::thread::sleep(Duration::from_millis(2_500));
    daemon.kill()?;
    std::thread::sleep(Duration::from_millis(500));
    daemon.restart(&lan)?;
    ensure!(
        wait_for(Duration::from_secs(8), || streams
            .iter()
            .all(UdpStream::finished)),
        "the streams did not end"
    );
    for sink in &sinks {
        sink.sync(&lan.gateway)?;
    }
    let received: Vec<u64> = sinks.iter().map(UdpSink::received_ip_bytes).collect();
    let total: u64 = received.iter().sum();
    let sent: u64 = streams.iter().map(UdpStream::sent).sum();
    eprintln!("received {received:?} = {total} bytes of {sent} datagrams sent, across a SIGKILL");
    ensure!(
        received.iter().all(|bytes| *bytes > 1_000_000),
        "the devices were cut off across the restart: {received:?}"
    );
    let listed = voucher(&daemon)?;
    ensure!(
        listed["devices"] == 2 && listed["device_macs"] == json!([second.mac]),
        "the devices survive the crash: {listed}"
    );
    let id = listed["session_id"].as_i64().context("a session")?;
    #[expect(clippy::cast_precision_loss, reason = "bytes of a test download")]
    let arrived = total as f64;
    ensure!(
        wait_for(SETTLE, || daemon
            .session(id)
            .is_ok_and(|session| data_cons_bytes(&session)
                .is_ok_and(|billed| (billed - arrived).abs() < 0.5))),
        "billed {:?}, {total} bytes arrived",
        daemon.session(id)?["data_cons"]
    );
    Ok(())
}

#[test]
fn a_device_runs_one_session_and_shares_one_voucher_at_a_time() -> Result<()> {
    let lan = Lan::new(3)?;
    let (holder, member, busy) = (&lan.clients[0], &lan.clients[1], &lan.clients[2]);
    let daemon = Daemon::start(&lan, &[])?;
    let code = data_voucher(&daemon, "20", "3")?;
    for client in [holder, member] {
        ensure!(redeem(&daemon, client, &code)?.status == 200, "redeem");
    }
    // A device running a session of its own cannot take a slot as well: it would run two.
    daemon.add_session(
        &busy.mac,
        &[
            "--type",
            "time",
            "--time-secs",
            "3600",
            "--global-speed",
            "--connect",
        ],
    )?;
    refused_for(&redeem(&daemon, busy, &code)?, "has_session", "session")?;
    ensure!(
        voucher(&daemon)?["devices"] == 2,
        "the busy device took a slot"
    );

    // A device on a slot that is sold a session of its own leaves the slot: from then on its
    // traffic is its own session's.
    let own = daemon.add_session(
        &member.mac,
        &[
            "--type",
            "time",
            "--time-secs",
            "600",
            "--global-speed",
            "--connect",
        ],
    )?;
    let listed = voucher(&daemon)?;
    ensure!(
        listed["devices"] == 1 && listed["device_macs"] == json!([]),
        "the device did not leave the slot: {listed}"
    );
    let view = daemon.client(&member.mac)?;
    ensure!(
        view["state"] == "connected"
            && view["session_id"] == own["id"]
            && view.get("shares_with").is_none(),
        "{view}"
    );
    ensure!(
        reaches_internet(&lan, member)? && reaches_internet(&lan, holder)?,
        "both online, each on its own session"
    );
    Ok(())
}
