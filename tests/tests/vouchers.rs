//! End to end: vouchers. Created with `hotspotctl voucher create` (codes shown once, CSV and
//! printable cards written), redeemed through the built-in portal's form (a plain HTTP POST
//! with the device's CSRF token, as a browser sends it) and through `POST /v1/vouchers/redeem`;
//! the device is connected and its traffic passes (device slots and moves: `device_slots.rs`);
//! a SIGKILL and a start keep every voucher and its state; revoking cuts the device
//! off; an expired, used-up or revoked code gets a page saying so; a device entering wrong
//! codes is throttled, with an event; bad input gets a clear error. Needs root.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use hotspotd_tests::http::{Answer, exchange, request};
use hotspotd_tests::portal::{enter_code, exchange as portal};
use hotspotd_tests::{Client, Daemon, INTERNET_V4, Lan, UdpEcho, udp_echoes, wait_for};
use serde_json::Value;

/// How long the daemon may take to show what it decided on its own.
const SETTLE: Duration = Duration::from_secs(5);
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// The alphabet of codes (docs/vouchers.md).
const ALPHABET: &str = "23456789ABCDEFGHJKMNPQRSTUVWXYZ";

/// Whether `client` gets an echo from the internet: one datagram, 500 ms.
fn reaches_internet(lan: &Lan, client: &Client) -> Result<bool> {
    let echo = UdpEcho::start(&lan.internet, SocketAddr::new(INTERNET_V4.into(), 0))?;
    Ok(udp_echoes(&client.netns, echo.addr(), 64, 1, PROBE_TIMEOUT)? == 1)
}

fn api(daemon: &Daemon, method: &str, path: &str, body: &Value) -> Result<Answer> {
    let body = body.to_string();
    exchange(
        daemon.socket(),
        &request(
            method,
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        ),
    )
}

fn vouchers(daemon: &Daemon) -> Result<Vec<Value>> {
    Ok(daemon
        .ctl_json(&["vouchers"])?
        .as_array()
        .context("an array")?
        .clone())
}

/// The states of every voucher, oldest first.
fn states(daemon: &Daemon) -> Result<Vec<String>> {
    Ok(vouchers(daemon)?
        .iter()
        .map(|voucher| voucher["state"].as_str().unwrap_or_default().to_owned())
        .collect())
}

fn create(daemon: &Daemon, args: &[&str]) -> Result<Vec<Value>> {
    let mut full = vec!["voucher", "create"];
    full.extend_from_slice(args);
    Ok(daemon
        .ctl_json(&full)?
        .as_array()
        .context("an array")?
        .clone())
}

fn code_of(voucher: &Value) -> Result<String> {
    voucher["code"]
        .as_str()
        .map(str::to_owned)
        .context("a code")
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one story: a voucher's life from creation to revocation, with a crash in it"
)]
fn a_voucher_redeemed_on_the_portal_connects_one_device_survives_a_crash_and_revoking_cuts_it_off()
-> Result<()> {
    let lan = Lan::new(2)?;
    let (first, second) = (&lan.clients[0], &lan.clients[1]);
    let mut daemon = Daemon::start(&lan, &[])?;
    let dir = tempfile::tempdir()?;
    let (csv, cards) = (dir.path().join("codes.csv"), dir.path().join("cards.html"));
    let created = create(
        &daemon,
        &[
            "--count",
            "3",
            "--type",
            "time",
            "--time-secs",
            "3600",
            "--global-speed",
            "--csv",
            csv.to_str().context("a path")?,
            "--print",
            cards.to_str().context("a path")?,
        ],
    )?;
    ensure!(created.len() == 3, "{created:?}");
    let codes: Vec<String> = created.iter().map(code_of).collect::<Result<_>>()?;
    for code in &codes {
        ensure!(
            code.len() == 10 && code.chars().all(|c| ALPHABET.contains(c)),
            "code {code}"
        );
    }
    let csv_text = std::fs::read_to_string(&csv)?;
    ensure!(csv_text.lines().count() == 4, "{csv_text}");
    ensure!(
        codes.iter().all(|code| csv_text.contains(code.as_str())),
        "{csv_text}"
    );
    let cards_text = std::fs::read_to_string(&cards)?;
    ensure!(
        cards_text.matches("class=\"card\"").count() == 3 && cards_text.contains("size: A4"),
        "{cards_text}"
    );
    for file in [&csv, &cards] {
        ensure!(
            std::fs::metadata(file)?.permissions().mode() & 0o777 == 0o600,
            "{} is readable by others",
            file.display()
        );
    }
    // The list shows no code: it is not kept.
    let listed = vouchers(&daemon)?;
    ensure!(
        listed.iter().all(|voucher| voucher["code"].is_null()),
        "{listed:?}"
    );
    ensure!(states(&daemon)? == ["unused"; 3], "{listed:?}");
    ensure!(!reaches_internet(&lan, first)?, "online before paying");

    // Typed in lower case with a dash, as a person reads a card.
    let typed = format!("{}-{}", &codes[0][..4], &codes[0][4..]).to_lowercase();
    let answer = enter_code(first, &typed)?;
    ensure!(answer.status == 303, "{answer:?}");
    ensure!(
        daemon.client(&first.mac)?["state"] == "connected",
        "not connected"
    );
    ensure!(reaches_internet(&lan, first)?, "no traffic after redeeming");
    let page = portal(&first.netns, request("GET", "/", &[], b""))?;
    ensure!(page.body.contains("You are online"), "{}", page.body);
    let listed = vouchers(&daemon)?;
    ensure!(
        listed[0]["state"] == "in_use"
            && listed[0]["devices"] == 1
            && listed[0]["mac"] == first.mac.as_str(),
        "{:?}",
        listed[0]
    );
    let session = daemon.session(listed[0]["session_id"].as_i64().context("a session")?)?;
    ensure!(
        session["provider"] == "voucher" && session["mac"] == first.mac.as_str(),
        "{session}"
    );

    // An external portal redeems the second code for the second device through the API.
    let redeemed = api(
        &daemon,
        "POST",
        "/v1/vouchers/redeem",
        &serde_json::json!({ "mac": second.mac, "code": codes[1] }),
    )?;
    ensure!(redeemed.status == 200, "{redeemed:?}");
    ensure!(
        redeemed.json().context("JSON")?["state"] == "connected",
        "{redeemed:?}"
    );
    ensure!(
        reaches_internet(&lan, second)?,
        "no traffic after the API redeemed"
    );

    // A crash and a start keep the vouchers, their states and their devices online.
    let before = vouchers(&daemon)?;
    daemon.kill()?;
    daemon.restart(&lan)?;
    let after = vouchers(&daemon)?;
    ensure!(after == before, "before {before:?}\nafter {after:?}");
    ensure!(
        states(&daemon)? == ["in_use", "in_use", "unused"],
        "{after:?}"
    );
    ensure!(reaches_internet(&lan, first)?, "offline after the restart");
    // The third code still works after the restart: the key was kept.
    let third = api(
        &daemon,
        "POST",
        "/v1/vouchers/redeem",
        &serde_json::json!({ "mac": "02:00:00:00:00:99", "code": codes[2] }),
    )?;
    ensure!(third.status == 200, "{third:?}");

    // Revoking cuts the device off and the code is refused from then on.
    let revoked = daemon.ctl_json(&["voucher", "revoke", "--code", &codes[0]])?;
    ensure!(revoked["state"] == "revoked", "{revoked}");
    ensure!(
        wait_for(SETTLE, || reaches_internet(&lan, first).is_ok_and(|up| !up)),
        "still online after its voucher was revoked"
    );
    let again = enter_code(first, &codes[0])?;
    ensure!(
        again.status == 422 && again.body.contains("cancelled"),
        "{again:?}"
    );
    let unknown = enter_code(first, "ZZZZZZZZZZ")?;
    ensure!(
        unknown.status == 422 && unknown.body.contains("Unknown code"),
        "{unknown:?}"
    );
    ensure!(
        reaches_internet(&lan, second)?,
        "the other voucher's device was cut off"
    );
    Ok(())
}

#[test]
fn expired_and_used_up_vouchers_are_refused_with_a_page_saying_so() -> Result<()> {
    let lan = Lan::new(1)?;
    let client = &lan.clients[0];
    let daemon = Daemon::start(&lan, &[])?;
    let soon = (chrono::Utc::now() + chrono::TimeDelta::seconds(2))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let expiring = create(
        &daemon,
        &[
            "--count",
            "1",
            "--type",
            "time",
            "--time-secs",
            "3600",
            "--global-speed",
            "--valid-until",
            &soon,
        ],
    )?;
    let short = create(
        &daemon,
        &[
            "--count",
            "1",
            "--type",
            "time",
            "--time-secs",
            "2",
            "--global-speed",
        ],
    )?;
    std::thread::sleep(Duration::from_secs(3));
    ensure!(
        states(&daemon)? == ["expired", "unused"],
        "{:?}",
        vouchers(&daemon)?
    );
    let answer = enter_code(client, &code_of(&expiring[0])?)?;
    ensure!(
        answer.status == 422 && answer.body.contains("expired"),
        "{answer:?}"
    );

    let answer = enter_code(client, &code_of(&short[0])?)?;
    ensure!(answer.status == 303, "{answer:?}");
    ensure!(
        wait_for(SETTLE, || states(&daemon)
            .is_ok_and(|states| states == ["expired", "used_up"])),
        "{:?}",
        vouchers(&daemon)?
    );
    let answer = enter_code(client, &code_of(&short[0])?)?;
    ensure!(
        answer.status == 422 && answer.body.contains("used up"),
        "{answer:?}"
    );
    Ok(())
}

#[test]
fn bad_voucher_input_gets_a_clear_error_and_changes_nothing() -> Result<()> {
    let lan = Lan::new(1)?;
    let daemon = Daemon::start(&lan, &[])?;
    let plan = ["--type", "time", "--time-secs", "60", "--global-speed"];
    for (args, wanted) in [
        (vec!["--count", "0"], "count must be 1 to 10000"),
        (vec!["--count", "10001"], "count must be 1 to 10000"),
        (
            vec!["--count", "1", "--max-devices", "0"],
            "max_devices must be 1",
        ),
        (
            vec!["--count", "1", "--valid-until", "2001-01-01"],
            "has passed",
        ),
        (
            vec!["--count", "1", "--valid-until", "soon"],
            "is not a date",
        ),
    ] {
        let mut full = vec!["voucher", "create"];
        full.extend_from_slice(&args);
        full.extend_from_slice(&plan);
        let output = daemon.ctl(&full)?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        ensure!(
            !output.status.success() && stderr.contains(wanted),
            "{args:?}: {stderr}"
        );
    }
    // The session flags are checked as `session add` checks them.
    let output = daemon.ctl(&[
        "voucher",
        "create",
        "--count",
        "1",
        "--type",
        "time",
        "--global-speed",
    ])?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        !output.status.success() && stderr.contains("--time-secs"),
        "{stderr}"
    );
    ensure!(
        vouchers(&daemon)?.is_empty(),
        "a refused batch left vouchers"
    );

    let output = daemon.ctl(&["voucher", "revoke", "--code", "ABCDEFGHJK"])?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        !output.status.success() && stderr.contains("no voucher has this code"),
        "{stderr}"
    );
    for (path, body, status, code) in [
        (
            "/v1/vouchers/42/revoke",
            serde_json::json!({}),
            404,
            "unknown_voucher",
        ),
        (
            "/v1/vouchers/redeem",
            serde_json::json!({ "code": "ABCDEFGHJK" }),
            400,
            "bad_request",
        ),
        (
            "/v1/vouchers/redeem",
            serde_json::json!({ "mac": "02:00:00:00:00:01", "code": "ABCDEFGHJK" }),
            404,
            "unknown_code",
        ),
        (
            "/v1/vouchers",
            serde_json::json!({ "count": 1, "type": "time" }),
            400,
            "invalid_session",
        ),
    ] {
        let answer = api(&daemon, "POST", path, &body)?;
        let json = answer.json().unwrap_or(Value::Null);
        ensure!(
            answer.status == status && json["error"]["code"] == code,
            "{path} {body}: {answer:?}"
        );
    }
    Ok(())
}

#[test]
fn wrong_codes_are_throttled_per_device_with_an_event() -> Result<()> {
    let lan = Lan::new(3)?;
    let (guesser, buyer, probe) = (&lan.clients[0], &lan.clients[1], &lan.clients[2]);
    let daemon = Daemon::start(&lan, &[])?;
    let (mut follower, events) = daemon.follow_events(&probe.mac)?;
    let codes: Vec<String> = create(
        &daemon,
        &[
            "--count",
            "2",
            "--type",
            "time",
            "--time-secs",
            "600",
            "--global-speed",
        ],
    )?
    .iter()
    .map(code_of)
    .collect::<Result<_>>()?;
    // Five wrong codes a minute are told "unknown"; then even a right one is refused.
    for (n, last) in "23456".chars().enumerate() {
        let answer = enter_code(guesser, &format!("ZZZZZZZZZ{last}"))?;
        ensure!(
            answer.status == 422 && answer.body.contains("Unknown code"),
            "try {n}: {answer:?}"
        );
    }
    let refused = enter_code(guesser, &codes[0])?;
    ensure!(
        refused.status == 429 && refused.body.contains("Try again in"),
        "{refused:?}"
    );
    ensure!(
        !reaches_internet(&lan, guesser)?,
        "a throttled device got in"
    );
    ensure!(
        states(&daemon)? == ["unused", "unused"],
        "a refused try used a voucher"
    );
    let event = wait_for(SETTLE, || {
        std::iter::from_fn(|| events.try_recv().ok())
            .any(|line| line.contains("voucher_guessing") && line.contains(&guesser.mac))
    });
    let _ = follower.kill();
    let _ = follower.wait();
    ensure!(event, "no voucher_guessing event");
    // Another device is not held back by the guesser.
    let answer = enter_code(buyer, &codes[1])?;
    ensure!(answer.status == 303, "{answer:?}");
    ensure!(reaches_internet(&lan, buyer)?, "the buyer is offline");
    Ok(())
}
