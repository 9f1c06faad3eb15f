//! End to end: hotspotd as a RADIUS client of a real `FreeRADIUS` (Debian's `freeradius`,
//! started by the test in a network namespace of its own with exactly the files of
//! docs/radius/, its SQL module on SQLite and its `sqlcounter`). A code that is no local
//! voucher is sent as an Access-Request; an Access-Accept connects the device with the data the
//! server granted; a reject and an unreachable server give the portal and the API a clear
//! answer; a dead first server fails over to the next. The server is `hotspotd_tests::radius`'s.
//! Needs root and `freeradius` (scripts/bootstrap.sh installs it).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use hotspotd_tests::http::{Answer, exchange, request};
use hotspotd_tests::portal::enter_code;
use hotspotd_tests::radius::{FreeRadius, SECRET, config_with_radius};
use hotspotd_tests::{
    Client, Daemon, GATEWAY_LAN_V4, INTERNET_V4, Lan, Netns, UdpEcho, udp_echoes,
};
use serde_json::Value;

const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

fn redeem(daemon: &Daemon, mac: &str, code: &str) -> Result<Answer> {
    let body = serde_json::json!({ "mac": mac, "code": code }).to_string();
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

fn reaches_internet(lan: &Lan, client: &Client) -> Result<bool> {
    let echo = UdpEcho::start(&lan.internet, SocketAddr::new(INTERNET_V4.into(), 0))?;
    Ok(udp_echoes(&client.netns, echo.addr(), 64, 1, PROBE_TIMEOUT)? == 1)
}

/// The session `mac` runs, from `hotspotctl`.
fn running_session(daemon: &Daemon, mac: &str) -> Result<Value> {
    let client = daemon.client(mac)?;
    let id = client["session_id"]
        .as_i64()
        .with_context(|| format!("{mac} runs no session: {client}"))?;
    daemon.session(id)
}

#[test]
fn codes_log_in_through_freeradius_with_failover_rejects_and_an_absent_server() -> Result<()> {
    let lan = Lan::new(3)?;
    let mut radius = FreeRadius::start()?;
    let server = radius.link(&lan)?;
    radius.add_code(
        "RADDATA5MB",
        &[("Hotspotd-Max-Total-Octets", "5000000")],
        &[],
    )?;
    radius.add_code(
        "RADTIME600",
        &[],
        &[
            ("Session-Timeout", "600"),
            ("WISPr-Bandwidth-Max-Down", "8000000"),
            ("WISPr-Bandwidth-Max-Up", "2000000"),
            ("Acct-Interim-Interval", "60"),
        ],
    )?;
    let dir = tempfile::tempdir()?;
    // The first server does not exist (nothing listens there): every login fails over.
    let config = config_with_radius(
        dir.path(),
        &[format!("{server}:1819"), format!("{server}:1812")],
        300,
    )?;
    let daemon = Daemon::start_with_config(&lan, &config, &[])?;
    let (first, second, third) = (&lan.clients[0], &lan.clients[1], &lan.clients[2]);
    ensure!(!reaches_internet(&lan, first)?, "unpaid traffic passes");

    // A code the server does not know: a page saying so, and the device stays blocked.
    let refused = enter_code(first, "NOSUCHCODE")?;
    ensure!(refused.status == 403, "{refused:?}");
    ensure!(
        refused.body.contains("This code was not accepted"),
        "{}",
        refused.body
    );
    ensure!(
        !reaches_internet(&lan, first)?,
        "a rejected code let traffic through"
    );

    // The server's code on the portal: connected at once with the 5 MB the server granted.
    let accepted = enter_code(first, "raddata5mb")?;
    ensure!(accepted.status == 303, "{accepted:?}\n{}", radius.log());
    let session = running_session(&daemon, &first.mac)?;
    ensure!(session["provider"] == "radius", "{session}");
    ensure!(session["type"] == 1, "a data session: {session}");
    ensure!(session["data_mb"] == 5.0, "{session}");
    ensure!(
        reaches_internet(&lan, first)?,
        "no traffic after the RADIUS login"
    );

    // Through the API, for an external portal: time and speed from the reply attributes.
    let answer = redeem(&daemon, &second.mac, "RADTIME600")?;
    ensure!(answer.status == 200, "{answer:?}");
    ensure!(
        answer.json().context("JSON")?["state"] == "connected",
        "{answer:?}"
    );
    let session = running_session(&daemon, &second.mac)?;
    ensure!(
        session["type"] == 0 && session["time_secs"] == 600,
        "{session}"
    );
    ensure!(
        session["down_mbits"] == 8
            && session["up_mbits"] == 2
            && session["use_global_speed"] == false,
        "{session}"
    );
    let rejected = redeem(&daemon, &third.mac, "WRONGCODE")?;
    ensure!(rejected.status == 403, "{rejected:?}");
    ensure!(
        rejected.json().context("JSON")?["error"]["code"] == "code_rejected",
        "{rejected:?}"
    );

    server_away(&lan, &daemon, &mut radius)
}

/// The server goes away: new logins get a clear answer, running sessions go on, and the
/// control task answers meanwhile; back, it logs in again.
fn server_away(lan: &Lan, daemon: &Daemon, radius: &mut FreeRadius) -> Result<()> {
    let (first, second, third) = (&lan.clients[0], &lan.clients[1], &lan.clients[2]);
    radius.stop()?;
    let away = redeem(daemon, &third.mac, "RADTIME600")?;
    ensure!(away.status == 503, "{away:?}");
    ensure!(
        away.json().context("JSON")?["error"]["code"] == "radius_unreachable",
        "{away:?}"
    );
    let page = enter_code(third, "RADTIME600")?;
    ensure!(page.status == 503, "{page:?}");
    ensure!(
        page.body.contains("cannot reach its login server"),
        "{}",
        page.body
    );
    ensure!(
        reaches_internet(lan, first)?,
        "a running session stopped with the server"
    );
    ensure!(
        reaches_internet(lan, second)?,
        "a running session stopped with the server"
    );
    ensure!(
        !reaches_internet(lan, third)?,
        "a device without login passes"
    );
    // And the status answers meanwhile: logins never hold up the control task.
    let started = Instant::now();
    let waiting = std::thread::spawn({
        let socket = daemon.socket().to_owned();
        let mac = third.mac.clone();
        move || {
            let body = serde_json::json!({ "mac": mac, "code": "RADTIME600" }).to_string();
            exchange(
                &socket,
                &request(
                    "POST",
                    "/v1/vouchers/redeem",
                    &[("Content-Type", "application/json")],
                    body.as_bytes(),
                ),
            )
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    daemon.status()?;
    ensure!(
        started.elapsed() < Duration::from_millis(600),
        "the status waited for a login: {:?}",
        started.elapsed()
    );
    let away = waiting
        .join()
        .map_err(|_| anyhow::anyhow!("login thread"))??;
    ensure!(away.status == 503, "{away:?}");

    // Back, it answers again.
    radius.run()?;
    let answer = redeem(daemon, &third.mac, "RADTIME600")?;
    ensure!(answer.status == 200, "{answer:?}");
    Ok(())
}

/// A radacct row: input and output octets, session time, whether stopped, terminate cause.
type AcctRow = (i64, i64, i64, bool, String);

/// radacct's row of `user`.
fn radacct(radius: &FreeRadius, user: &str) -> Result<Option<AcctRow>> {
    let db = radius.db()?;
    let mut statement = db.prepare(
        "SELECT acctinputoctets, acctoutputoctets, acctsessiontime, acctstoptime IS NOT NULL, acctterminatecause
         FROM radacct WHERE username = ?1",
    )?;
    let mut rows = statement.query_map([user], |row| {
        Ok((
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
        ))
    })?;
    Ok(rows.next().transpose()?)
}

/// Requests waiting in hotspotd's spool.
fn spooled(daemon: &Daemon) -> Result<i64> {
    let path = daemon
        .socket()
        .parent()
        .context("the socket's folder")?
        .join("hotspotd.sqlite");
    let db = rusqlite::Connection::open(path)?;
    Ok(db.query_row("SELECT COUNT(*) FROM radius_spool", [], |row| row.get(0))?)
}

#[test]
fn accounting_waits_on_disk_across_a_crash_and_arrives_exact() -> Result<()> {
    let lan = Lan::new(1)?;
    lan.pin_neighbors()?;
    let mut radius = FreeRadius::start()?;
    let server = radius.link(&lan)?;
    radius.add_code(
        "RADACCT5MB",
        &[("Hotspotd-Max-Total-Octets", "5000000")],
        &[("Acct-Interim-Interval", "1")],
    )?;
    let dir = tempfile::tempdir()?;
    let config = config_with_radius(dir.path(), &[format!("{server}:1812")], 300)?;
    let mut daemon = Daemon::start_with_config(&lan, &config, &[])?;
    let client = &lan.clients[0];
    let answer = redeem(&daemon, &client.mac, "RADACCT5MB")?;
    ensure!(answer.status == 200, "{answer:?}");
    let echo = UdpEcho::start(&lan.internet, SocketAddr::new(INTERNET_V4.into(), 0))?;
    ensure!(udp_echoes(&client.netns, echo.addr(), 1000, 200, PROBE_TIMEOUT)? == 200);
    // Start, then interim updates with what passed.
    let arrived = hotspotd_tests::wait_for(Duration::from_secs(10), || {
        radacct(&radius, "RADACCT5MB").is_ok_and(|row| row.is_some_and(|row| row.0 > 200_000))
    });
    ensure!(
        arrived,
        "no interim update reached radacct: {:?}\n{}",
        radacct(&radius, "RADACCT5MB"),
        daemon.log()
    );

    // The server goes away: what follows waits in the spool, on disk.
    radius.stop()?;
    ensure!(udp_echoes(&client.netns, echo.addr(), 1000, 300, PROBE_TIMEOUT)? == 300);
    std::thread::sleep(Duration::from_millis(1500));
    // What hotspotd counted, read while the client still runs its session: the traffic
    // stopped 1.5 s (15 polls) ago. After the removal the client holds nothing, so the
    // listing drops it once its counters' room is given back, two polls later.
    let view = daemon.client(&client.mac)?;
    let (up, down) = (
        view["up_bytes"].as_i64().context("up_bytes")?,
        view["down_bytes"].as_i64().context("down_bytes")?,
    );
    daemon.ctl(&[
        "session",
        "remove",
        "--id",
        &running_session(&daemon, &client.mac)?["id"].to_string(),
    ])?;
    ensure!(
        hotspotd_tests::wait_for(Duration::from_secs(5), || spooled(&daemon)
            .is_ok_and(|n| n >= 2)),
        "nothing waits in the spool: {:?}",
        spooled(&daemon)
    );

    // hotspotd dies with it all unsent; the server comes back; so does hotspotd.
    daemon.kill()?;
    radius.run()?;
    daemon.restart(&lan)?;
    let delivered = hotspotd_tests::wait_for(Duration::from_secs(20), || {
        spooled(&daemon).is_ok_and(|n| n == 0)
            && radacct(&radius, "RADACCT5MB").is_ok_and(|row| row.is_some_and(|row| row.3))
    });
    ensure!(
        delivered,
        "the spool was not delivered: {:?} {:?}\n{}",
        spooled(&daemon),
        radacct(&radius, "RADACCT5MB"),
        daemon.log()
    );
    let (input, output, session_time, _, cause) =
        radacct(&radius, "RADACCT5MB")?.context("a radacct row")?;
    ensure!(
        (input, output) == (up, down),
        "radacct holds {input} up, {output} down; hotspotd counted {up} up, {down} down"
    );
    ensure!(cause == "Admin-Reset", "{cause}");
    ensure!(session_time >= 1, "{session_time}");
    Ok(())
}

/// radacct's row of `user` on box `nas`: (input, output, stopped).
fn radacct_on(radius: &FreeRadius, user: &str, nas: &str) -> Result<Option<(i64, i64, bool)>> {
    let db = radius.db()?;
    let mut statement = db.prepare(
        "SELECT acctinputoctets, acctoutputoctets, acctstoptime IS NOT NULL
         FROM radacct WHERE username = ?1 AND nasidentifier = ?2",
    )?;
    let mut rows = statement.query_map([user, nas], |row| {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
    })?;
    Ok(rows.next().transpose()?)
}

/// What `client` passed through `daemon`: up + down bytes, as hotspotd counted them.
fn passed(daemon: &Daemon, client: &Client) -> Result<i64> {
    let view = daemon.client(&client.mac)?;
    Ok(view["up_bytes"].as_i64().context("up_bytes")?
        + view["down_bytes"].as_i64().context("down_bytes")?)
}

/// Roaming: one code, two boxes, one `FreeRADIUS`. 3 MB of a 5 MB code on box A; on box B the
/// server grants exactly what is left, and the kernel there lets through exactly that (at most
/// one packet more); radacct holds, per box, exactly what that box counted.
#[test]
fn a_code_roams_between_two_boxes_with_exactly_what_is_left() -> Result<()> {
    const ALLOWANCE: i64 = 5_000_000;
    const PAYLOAD: usize = 1000;
    let (lan_a, lan_b) = (Lan::new(1)?, Lan::new(1)?);
    lan_a.pin_neighbors()?;
    lan_b.pin_neighbors()?;
    let mut radius = FreeRadius::start()?;
    let server_a = radius.link(&lan_a)?;
    let server_b = radius.link(&lan_b)?;
    radius.add_code(
        "ROAMING5MB",
        &[("Hotspotd-Max-Total-Octets", "5000000")],
        &[],
    )?;
    let dir_a = tempfile::tempdir()?;
    let dir_b = tempfile::tempdir()?;
    let config = |dir: &Path, server: Ipv4Addr, nas: &str| -> Result<PathBuf> {
        let path = config_with_radius(dir, &[format!("{server}:1812")], 1000)?;
        let text = std::fs::read_to_string(&path)?.replace(
            "nas_identifier = \"\"",
            &format!("nas_identifier = {nas:?}"),
        );
        std::fs::write(&path, text)?;
        Ok(path)
    };
    let box_a = Daemon::start_with_config(&lan_a, &config(dir_a.path(), server_a, "box-a")?, &[])?;
    let box_b = Daemon::start_with_config(&lan_b, &config(dir_b.path(), server_b, "box-b")?, &[])?;
    let (phone_a, phone_b) = (&lan_a.clients[0], &lan_b.clients[0]);

    // About 3 MB on box A, then the operator ends the session there (its Stop goes out).
    let answer = redeem(&box_a, &phone_a.mac, "ROAMING5MB")?;
    ensure!(answer.status == 200, "{answer:?}");
    let echo_a = UdpEcho::start(&lan_a.internet, SocketAddr::new(INTERNET_V4.into(), 0))?;
    ensure!(udp_echoes(&phone_a.netns, echo_a.addr(), PAYLOAD, 1450, PROBE_TIMEOUT)? == 1450);
    std::thread::sleep(Duration::from_millis(300));
    let id = running_session(&box_a, &phone_a.mac)?["id"].to_string();
    box_a.ctl(&["session", "remove", "--id", &id])?;
    let used_a = passed(&box_a, phone_a)?;
    ensure!((2_900_000..3_100_000).contains(&used_a), "{used_a}");
    ensure!(
        hotspotd_tests::wait_for(Duration::from_secs(10), || {
            radacct_on(&radius, "ROAMING5MB", "box-a").is_ok_and(|row| row.is_some_and(|row| row.2))
        }),
        "box A's Stop did not arrive\n{}",
        box_a.log()
    );
    let (input, output, _) = radacct_on(&radius, "ROAMING5MB", "box-a")?.context("box A's row")?;
    ensure!(
        input + output == used_a,
        "radacct: {input} + {output}; box A counted {used_a}"
    );

    // On box B the server grants what is left, and the kernel lets exactly that through.
    let answer = redeem(&box_b, &phone_b.mac, "ROAMING5MB")?;
    ensure!(answer.status == 200, "{answer:?}");
    let left = ALLOWANCE - used_a;
    let session = running_session(&box_b, &phone_b.mac)?;
    #[expect(clippy::cast_precision_loss, reason = "below 2^53")]
    let granted_mb = left as f64 / 1e6;
    ensure!(
        session["data_mb"].as_f64() == Some(granted_mb),
        "{session}, {left} left"
    );
    let echo_b = UdpEcho::start(&lan_b.internet, SocketAddr::new(INTERNET_V4.into(), 0))?;
    let mut echoed = 0;
    while udp_echoes(
        &phone_b.netns,
        echo_b.addr(),
        PAYLOAD,
        1,
        Duration::from_millis(200),
    )? == 1
    {
        echoed += 1;
        ensure!(echoed < 3000, "box B never stopped the code");
    }
    ensure!(
        hotspotd_tests::wait_for(Duration::from_secs(10), || {
            radacct_on(&radius, "ROAMING5MB", "box-b").is_ok_and(|row| row.is_some_and(|row| row.2))
        }),
        "box B's Stop did not arrive\n{}",
        box_b.log()
    );
    let used_b = passed(&box_b, phone_b)?;
    // The kernel lets through at most one packet beyond the budget (1028 bytes here).
    ensure!(
        (left..=left + 1028).contains(&used_b),
        "box B passed {used_b} with {left} left"
    );
    let (input, output, _) = radacct_on(&radius, "ROAMING5MB", "box-b")?.context("box B's row")?;
    ensure!(
        input + output == used_b,
        "radacct: {input} + {output}; box B counted {used_b}"
    );
    // And the code is used up everywhere: a third login is refused.
    let again = redeem(&box_a, &phone_a.mac, "ROAMING5MB")?;
    ensure!(again.status == 403, "{again:?}");
    Ok(())
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A CoA-Request of our own making, signed with `secret`, sent from `netns` to `to`; the
/// answer's code, if any came in a second.
fn raw_coa(netns: &Netns, to: SocketAddr, bytes: Vec<u8>) -> Result<Option<u8>> {
    netns.run(move || -> Result<Option<u8>> {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
        socket.set_read_timeout(Some(Duration::from_secs(1)))?;
        socket.send_to(&bytes, to)?;
        let mut buffer = [0_u8; 4096];
        Ok(socket.recv(&mut buffer).ok().map(|_| buffer[0]))
    })?
}

fn coa_bytes(user: &str, event_timestamp: i64, secret: &str) -> Result<Vec<u8>> {
    use hotspotd::radius::{codec, dict};
    let packet = codec::Packet {
        code: dict::COA_REQUEST,
        identifier: 7,
        authenticator: [0; 16],
        attributes: vec![
            codec::Attribute::text(dict::USER_NAME, user),
            codec::Attribute::integer(dict::EVENT_TIMESTAMP, u32::try_from(event_timestamp)?),
            codec::Attribute::integer(dict::SESSION_TIMEOUT, 7200),
        ],
    };
    Ok(codec::encode_signed_request(
        packet,
        secret.as_bytes(),
        true,
    )?)
}

/// RFC 5176 from a real server (`radclient`): a CoA-Request tops a running session up and
/// changes its speed, and the kernel's grant follows at once (the new data limit holds to the
/// packet); a Disconnect-Request ends one (its Stop says Admin-Reset). A wrong secret, a
/// stale Event-Timestamp, a replay and a request from an address that is no server are dropped.
#[test]
fn coa_changes_and_disconnect_ends_sessions_and_forgeries_and_replays_are_dropped() -> Result<()> {
    let lan = Lan::new(2)?;
    lan.pin_neighbors()?;
    let mut radius = FreeRadius::start()?;
    let server = radius.link(&lan)?;
    radius.add_code("COATIME600", &[], &[("Session-Timeout", "600")])?;
    radius.add_code("DISCONNECT", &[], &[("Session-Timeout", "600")])?;
    let dir = tempfile::tempdir()?;
    let config = config_with_radius(dir.path(), &[format!("{server}:1812")], 1000)?;
    let daemon = Daemon::start_with_config(&lan, &config, &[])?;
    let box_at = "10.99.1.2:3799";
    let (phone, other) = (&lan.clients[0], &lan.clients[1]);
    ensure!(redeem(&daemon, &phone.mac, "COATIME600")?.status == 200);
    ensure!(redeem(&daemon, &other.mac, "DISCONNECT")?.status == 200);

    // A wrong secret: dropped, nothing changes.
    let forged = radius.radclient(
        box_at,
        "coa",
        "not-the-secret",
        &format!(
            "User-Name = COATIME600\nSession-Timeout = 9999\nEvent-Timestamp = {}\n",
            unix_now()
        ),
    )?;
    ensure!(!forged.contains("Received CoA"), "{forged}");
    ensure!(running_session(&daemon, &phone.mac)?["time_secs"] == 600);

    // The server's CoA: 500 kB more from now, 5/1 Mbit/s, an hour.
    let answer = radius.radclient(
        box_at,
        "coa",
        SECRET,
        &format!(
            "User-Name = COATIME600\nSession-Timeout = 3600\nChilliSpot-Max-Total-Octets = 500000\n\
             WISPr-Bandwidth-Max-Down = 5000000\nWISPr-Bandwidth-Max-Up = 1000000\nEvent-Timestamp = {}\n",
            unix_now()
        ),
    )?;
    ensure!(
        answer.contains("Received CoA-ACK"),
        "{answer}\n{}",
        daemon.log()
    );
    let session = running_session(&daemon, &phone.mac)?;
    ensure!(session["type"] == 2, "time or data now: {session}");
    ensure!(
        session["data_mb"] == 0.5 && session["down_mbits"] == 5 && session["up_mbits"] == 1,
        "{session}"
    );
    let time_secs = session["time_secs"].as_i64().context("time_secs")?;
    ensure!((3600..3610).contains(&time_secs), "{session}");
    // The kernel holds the new budget at once: 500 kB and not a packet more.
    let before = passed(&daemon, phone)?;
    let echo = UdpEcho::start(&lan.internet, SocketAddr::new(INTERNET_V4.into(), 0))?;
    let mut echoed = 0;
    while udp_echoes(
        &phone.netns,
        echo.addr(),
        1000,
        1,
        Duration::from_millis(200),
    )? == 1
    {
        echoed += 1;
        ensure!(echoed < 1000, "the CoA's data limit did not hold");
    }
    std::thread::sleep(Duration::from_millis(300));
    let used = passed(&daemon, phone)? - before;
    ensure!(
        (500_000..=501_028).contains(&used),
        "passed {used} of a 500000-byte top-up"
    );

    dropped_requests(&radius, other)?;

    // Disconnect: the session ends, the device is blocked, its Stop says why.
    ensure!(
        reaches_internet(&lan, other)?,
        "the second device is not online"
    );
    let answer = radius.radclient(
        box_at,
        "disconnect",
        SECRET,
        &format!("User-Name = DISCONNECT\nEvent-Timestamp = {}\n", unix_now()),
    )?;
    ensure!(answer.contains("Received Disconnect-ACK"), "{answer}");
    ensure!(
        !reaches_internet(&lan, other)?,
        "a disconnected device passes"
    );
    ensure!(
        hotspotd_tests::wait_for(Duration::from_secs(10), || {
            radacct(&radius, "DISCONNECT")
                .is_ok_and(|row| row.is_some_and(|row| row.3 && row.4 == "Admin-Reset"))
        }),
        "no Stop for the disconnected session: {:?}",
        radacct(&radius, "DISCONNECT")
    );
    // And one for no session here is refused.
    let answer = radius.radclient(
        box_at,
        "disconnect",
        SECRET,
        &format!("User-Name = NOBODY\nEvent-Timestamp = {}\n", unix_now()),
    )?;
    ensure!(answer.contains("Received Disconnect-NAK"), "{answer}");
    Ok(())
}

/// Replays and stale requests are dropped; a request from a client is no server's.
fn dropped_requests(radius: &FreeRadius, other: &Client) -> Result<()> {
    let to: SocketAddr = "10.99.1.2:3799".parse()?;
    let fresh = coa_bytes("DISCONNECT", unix_now(), SECRET)?;
    ensure!(raw_coa(&radius.netns, to, fresh.clone())? == Some(hotspotd::radius::dict::COA_ACK));
    ensure!(
        raw_coa(&radius.netns, to, fresh)?.is_none(),
        "a replay was answered"
    );
    let stale = coa_bytes("DISCONNECT", unix_now() - 1000, SECRET)?;
    ensure!(
        raw_coa(&radius.netns, to, stale)?.is_none(),
        "a stale request was answered"
    );
    let from_lan = SocketAddr::new(GATEWAY_LAN_V4.into(), 3799);
    let by_client = coa_bytes("DISCONNECT", unix_now(), SECRET)?;
    ensure!(
        raw_coa(&other.netns, from_lan, by_client)?.is_none(),
        "a client's request was answered"
    );

    Ok(())
}

/// `radius.away_grant_secs`: while no server answers, a code is let in for that long, and the
/// server hears of the session (its Start waited in the spool) once it is back.
#[test]
fn an_absent_server_can_be_set_to_let_codes_in_for_a_while() -> Result<()> {
    let lan = Lan::new(1)?;
    let mut radius = FreeRadius::start()?;
    let server = radius.link(&lan)?;
    radius.stop()?;
    let dir = tempfile::tempdir()?;
    let path = config_with_radius(dir.path(), &[format!("{server}:1812")], 200)?;
    let text =
        std::fs::read_to_string(&path)?.replace("away_grant_secs = 0", "away_grant_secs = 120");
    std::fs::write(&path, text)?;
    let daemon = Daemon::start_with_config(&lan, &path, &[])?;
    let phone = &lan.clients[0];
    let answer = redeem(&daemon, &phone.mac, "ANYCODE")?;
    ensure!(answer.status == 200, "{answer:?}");
    let session = running_session(&daemon, &phone.mac)?;
    ensure!(
        session["type"] == 0 && session["time_secs"] == 120,
        "{session}"
    );
    ensure!(reaches_internet(&lan, phone)?, "the code was not let in");
    radius.run()?;
    ensure!(
        hotspotd_tests::wait_for(Duration::from_secs(20), || {
            radacct(&radius, "ANYCODE").is_ok_and(|row| row.is_some())
        }),
        "the server never heard of the session\n{}",
        daemon.log()
    );
    Ok(())
}

/// `radius.mac_auth`: a device the server knows by its MAC is connected when it first sends,
/// without the portal; one it does not know is left to the portal.
#[test]
fn a_device_the_server_knows_by_its_mac_is_let_in_without_the_portal() -> Result<()> {
    let lan = Lan::new(2)?;
    let mut radius = FreeRadius::start()?;
    let server = radius.link(&lan)?;
    let (known, unknown) = (&lan.clients[0], &lan.clients[1]);
    let station = known.mac.replace(':', "-").to_ascii_uppercase();
    radius.add_code(&station, &[], &[("Session-Timeout", "900")])?;
    let dir = tempfile::tempdir()?;
    let path = config_with_radius(dir.path(), &[format!("{server}:1812")], 500)?;
    let text = std::fs::read_to_string(&path)?.replace("mac_auth = false", "mac_auth = true");
    std::fs::write(&path, text)?;
    let daemon = Daemon::start_with_config(&lan, &path, &[])?;
    ensure!(
        hotspotd_tests::wait_for(Duration::from_secs(10), || reaches_internet(&lan, known)
            .unwrap_or(false)),
        "the known device was not let in\n{}",
        daemon.log()
    );
    let session = running_session(&daemon, &known.mac)?;
    ensure!(
        session["provider"] == "radius" && session["time_secs"] == 900,
        "{session}"
    );
    for _ in 0..5 {
        ensure!(
            !reaches_internet(&lan, unknown)?,
            "an unknown device was let in"
        );
    }
    ensure!(daemon.client(&unknown.mac)?["session_id"].is_null());
    Ok(())
}

/// A session used up while hotspotd was down (the kernel enforced its budget meanwhile) gets
/// its Stop when hotspotd is back, with every byte the kernel counted.
#[test]
fn a_session_used_up_while_hotspotd_was_down_gets_its_stop() -> Result<()> {
    let lan = Lan::new(1)?;
    lan.pin_neighbors()?;
    let mut radius = FreeRadius::start()?;
    let server = radius.link(&lan)?;
    radius.add_code(
        "DOWNTIME300K",
        &[("Hotspotd-Max-Total-Octets", "300000")],
        &[],
    )?;
    let dir = tempfile::tempdir()?;
    // A loaded machine's FreeRADIUS can take longer than 500 ms over its SQL: a reply that
    // comes after the timeout goes to a closed socket, and the retry waits on the backoff.
    let config = config_with_radius(dir.path(), &[format!("{server}:1812")], 2_000)?;
    let mut daemon = Daemon::start_with_config(&lan, &config, &[])?;
    let phone = &lan.clients[0];
    ensure!(redeem(&daemon, &phone.mac, "DOWNTIME300K")?.status == 200);
    ensure!(
        hotspotd_tests::wait_for(Duration::from_secs(5), || radacct(&radius, "DOWNTIME300K")
            .is_ok_and(|row| row.is_some())),
        "no Start"
    );
    daemon.kill()?;
    let echo = UdpEcho::start(&lan.internet, SocketAddr::new(INTERNET_V4.into(), 0))?;
    let mut echoed = 0;
    while udp_echoes(
        &phone.netns,
        echo.addr(),
        1000,
        1,
        Duration::from_millis(200),
    )? == 1
    {
        echoed += 1;
        ensure!(
            echoed < 1000,
            "the kernel did not hold the budget while hotspotd was down"
        );
    }
    daemon.restart(&lan)?;
    ensure!(
        // The spool retries on a backoff (1, 2, 4, 8 s) if the server is slow to answer.
        hotspotd_tests::wait_for(Duration::from_secs(40), || radacct(&radius, "DOWNTIME300K")
            .is_ok_and(|row| row.is_some_and(|row| row.3))),
        "no Stop after the restart: {:?}\n{}\nFreeRADIUS:\n{}",
        radacct(&radius, "DOWNTIME300K"),
        daemon.log(),
        radius.log()
    );
    let (input, output, _, _, cause) = radacct(&radius, "DOWNTIME300K")?.context("a row")?;
    let counted = passed(&daemon, phone)?;
    ensure!(
        input + output == counted,
        "radacct {input} + {output}; hotspotd counted {counted}"
    );
    ensure!((300_000..=301_028).contains(&counted), "{counted}");
    ensure!(cause == "Session-Timeout", "{cause}");
    Ok(())
}

/// How many Access-Accepts the server logged for `user` (radiusd.conf logs `auth = yes`).
fn logins_of(radius: &FreeRadius, user: &str) -> usize {
    radius.log().matches(&format!("Login OK: [{user}]")).count()
}

/// The sessions `hotspotctl sessions` lists for `mac`.
fn sessions_of(daemon: &Daemon, mac: &str) -> Result<Vec<Value>> {
    Ok(daemon
        .sessions()?
        .into_iter()
        .filter(|session| session["mac"] == mac)
        .collect())
}

/// A device that enters again the code of the RADIUS session it holds here (paused, on the
/// portal or through the API) is connected to that same session: no second Access-Request and
/// no second session, which the server would grant from what the first had reported so far.
/// Its budget is in the kernel, so this works with the server away too.
#[test]
fn entering_a_held_code_again_resumes_its_session_without_a_second_login() -> Result<()> {
    let lan = Lan::new(1)?;
    let mut radius = FreeRadius::start()?;
    let server = radius.link(&lan)?;
    radius.add_code(
        "RESUME5MB",
        &[("Hotspotd-Max-Total-Octets", "5000000")],
        &[],
    )?;
    let dir = tempfile::tempdir()?;
    let config = config_with_radius(dir.path(), &[format!("{server}:1812")], 300)?;
    let daemon = Daemon::start_with_config(&lan, &config, &[])?;
    let phone = &lan.clients[0];
    ensure!(redeem(&daemon, &phone.mac, "RESUME5MB")?.status == 200);
    let id = running_session(&daemon, &phone.mac)?["id"].clone();
    ensure!(reaches_internet(&lan, phone)?, "no traffic after the login");
    ensure!(logins_of(&radius, "RESUME5MB") == 1, "{}", radius.log());

    // Paused, the code again on the portal: the same session runs again.
    daemon.ctl_json(&["pause", "--mac", &phone.mac])?;
    ensure!(!reaches_internet(&lan, phone)?, "a paused device passes");
    let again = enter_code(phone, "RESUME5MB")?;
    ensure!(again.status == 303, "{again:?}");
    ensure!(
        running_session(&daemon, &phone.mac)?["id"] == id,
        "another session runs: {:?}",
        sessions_of(&daemon, &phone.mac)
    );
    ensure!(reaches_internet(&lan, phone)?, "not connected again");
    let held = sessions_of(&daemon, &phone.mac)?;
    ensure!(held.len() == 1, "a second session was sold: {held:?}");
    ensure!(
        logins_of(&radius, "RESUME5MB") == 1,
        "the server was asked again:\n{}",
        radius.log()
    );

    // Paused again, the server away, the code through the API: connected, nothing asked.
    daemon.ctl_json(&["pause", "--mac", &phone.mac])?;
    radius.stop()?;
    let answer = redeem(&daemon, &phone.mac, "RESUME5MB")?;
    ensure!(answer.status == 200, "{answer:?}");
    ensure!(
        answer.json().context("JSON")?["state"] == "connected",
        "{answer:?}"
    );
    ensure!(running_session(&daemon, &phone.mac)?["id"] == id);
    ensure!(reaches_internet(&lan, phone)?, "not connected again");
    let held = sessions_of(&daemon, &phone.mac)?;
    ensure!(held.len() == 1, "a second session was sold: {held:?}");
    Ok(())
}

/// The text of docs/radius.md between the first `start` after `after` and the next `end`.
fn doc_part(doc: &str, after: &str, start: &str, end: &str) -> Result<String> {
    let (_, rest) = doc
        .split_once(after)
        .with_context(|| format!("docs/radius.md has no {after:?}"))?;
    let (_, rest) = rest
        .split_once(start)
        .with_context(|| format!("docs/radius.md has no {start:?} after {after:?}"))?;
    let (part, _) = rest
        .split_once(end)
        .with_context(|| format!("docs/radius.md has no {end:?} after {after:?}"))?;
    Ok(part.to_owned())
}

/// The shipped config.toml with each `key = value` line of `block` in place of that key's line
/// in its `[radius]` table.
fn shipped_config_with(block: &str) -> Result<String> {
    let shipped = std::fs::read_to_string(hotspotd_tests::workspace_root().join("config.toml"))?;
    let mut config = String::new();
    let mut table = "";
    let mut used = 0;
    let settings: Vec<&str> = block.lines().filter(|line| line.contains(" = ")).collect();
    for line in shipped.lines() {
        if line.starts_with('[') {
            table = line;
        }
        let key = line.split(" = ").next().unwrap_or_default();
        let given = settings
            .iter()
            .find(|setting| table == "[radius]" && setting.split(" = ").next() == Some(key));
        if let Some(setting) = given {
            used += 1;
            config.push_str(setting);
        } else {
            config.push_str(line);
        }
        config.push('\n');
    }
    ensure!(
        used == settings.len(),
        "config.toml's [radius] lacks a key of the docs' block:\n{block}"
    );
    Ok(config)
}

/// docs/radius.md as an operator follows it (the server's files are docs/radius/, run as
/// `FreeRadius` runs them): its code with 5 MB (the SQL as written) logs in on a box set up
/// with its `[radius]` block (the server's address and the secret of clients.conf in place of
/// the examples), and its `radclient` command (the box's address and the server's folder in
/// place of the examples) gives the session an hour.
#[test]
fn docs_radius_md_works_as_written() -> Result<()> {
    let doc = std::fs::read_to_string(hotspotd_tests::workspace_root().join("docs/radius.md"))?;
    let lan = Lan::new(1)?;
    let mut radius = FreeRadius::start()?;
    let server = radius.link(&lan)?;
    let sql = doc_part(&doc, "A code with 5 MB", "<<'SQL'\n", "\nSQL\n")?;
    radius.db()?.execute_batch(&sql)?;

    let block = doc_part(&doc, "On each box:", "```toml\n", "```")?;
    ensure!(block.starts_with("[radius]\n"), "{block}");
    let block = block
        .replace("10.0.0.5", &server.to_string())
        .replace("the secret of clients.conf", SECRET);
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("config.toml");
    std::fs::write(&config, shipped_config_with(&block)?)?;
    let daemon = Daemon::start_with_config(&lan, &config, &[])?;
    let phone = &lan.clients[0];
    let answer = redeem(&daemon, &phone.mac, "K7M2Q9XR4T")?;
    ensure!(answer.status == 200, "{answer:?}\n{}", radius.log());
    let session = running_session(&daemon, &phone.mac)?;
    ensure!(
        session["type"] == 1 && session["data_mb"] == 5.0,
        "{session}"
    );

    let command = doc_part(&doc, "## Change of authorization", "```sh\n", "```")?;
    let box_address = "10.99.1.2";
    ensure!(
        server.to_string() == "10.99.1.1",
        "the box is {box_address}"
    );
    let command = command
        .replace(
            "/etc/freeradius/hotspotd",
            &radius.dir().display().to_string(),
        )
        .replace("10.0.0.20", box_address)
        .replace("'the secret'", &format!("'{SECRET}'"));
    let output = radius
        .netns
        .command("sh")
        .args(["-c", &command])
        .output()
        .context("run the docs' radclient command")?;
    ensure!(
        output.status.success(),
        "{command}\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let session = running_session(&daemon, &phone.mac)?;
    let time_secs = session["time_secs"].as_i64().context("time_secs")?;
    ensure!(
        session["type"] == 2 && (3600..3610).contains(&time_secs),
        "the docs' CoA did not give an hour: {session}"
    );
    Ok(())
}
