//! End to end: free trials (`portal.trial_*`, docs/trials.md). A device takes its trial through
//! the built-in portal's landing page (the button's form, a plain HTTP POST with the device's
//! CSRF token, as a browser sends it) and another through `POST /v1/trial`; each gets a session
//! of provider "trial" and its traffic passes; a second trial within the window is refused
//! with when the next is possible (a page, and `429` with `Retry-After`); after a SIGKILL and a
//! start the ledger still refuses it; `/metrics` counts the trials; SIGHUP turns trials on.
//! Needs root.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use hotspotd_tests::http::{Answer, exchange, request};
use hotspotd_tests::{Client, Daemon, INTERNET_V4, Lan, UdpEcho, udp_echoes};
use serde_json::Value;

const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Five minutes at 5/2 Mbit/s, once a day.
const TRIAL: &[(&str, &str)] = &[
    ("HOTSPOTD__PORTAL__TRIAL_SECS", "300"),
    ("HOTSPOTD__PORTAL__TRIAL_DOWN_MBITS", "5"),
    ("HOTSPOTD__PORTAL__TRIAL_UP_MBITS", "2"),
];

fn portal(client: &Client, raw: Vec<u8>) -> Result<Answer> {
    hotspotd_tests::portal::exchange(&client.netns, raw)
}

/// The landing or status page of `client`.
fn page(client: &Client) -> Result<Answer> {
    portal(client, request("GET", "/", &[], b""))
}

/// Presses the landing page's trial button, as a browser does: the page for its CSRF token,
/// then the form.
fn press_trial(client: &Client) -> Result<Answer> {
    let page = page(client)?;
    let (_, rest) = page
        .body
        .split_once("name=\"csrf\" value=\"")
        .context("a CSRF field")?;
    let csrf = rest.split('"').next().unwrap_or_default();
    portal(
        client,
        request(
            "POST",
            "/trial",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            format!("csrf={csrf}").as_bytes(),
        ),
    )
}

fn ask_trial(daemon: &Daemon, mac: &str) -> Result<Answer> {
    let body = serde_json::json!({ "mac": mac }).to_string();
    exchange(
        daemon.socket(),
        &request(
            "POST",
            "/v1/trial",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        ),
    )
}

fn reaches_internet(lan: &Lan, client: &Client) -> Result<bool> {
    let echo = UdpEcho::start(&lan.internet, SocketAddr::new(INTERNET_V4.into(), 0))?;
    Ok(udp_echoes(&client.netns, echo.addr(), 64, 1, PROBE_TIMEOUT)? == 1)
}

/// The client's sessions, as `hotspotctl sessions --mac` lists them.
fn sessions_of(daemon: &Daemon, mac: &str) -> Result<Vec<Value>> {
    Ok(daemon
        .ctl_json(&["sessions", "--mac", mac])?
        .as_array()
        .context("an array")?
        .clone())
}

/// Ends the client's trial (as if its time ran out) so that it has no session left.
fn end_sessions(daemon: &Daemon, mac: &str) -> Result<()> {
    for session in sessions_of(daemon, mac)? {
        let id = session["id"].as_i64().context("an id")?.to_string();
        daemon.ctl(&["session", "remove", "--id", &id])?;
    }
    ensure!(sessions_of(daemon, mac)?.is_empty(), "sessions left");
    Ok(())
}

/// A counter or gauge of `/metrics` (whole numbers are written without a decimal point).
fn metric(daemon: &Daemon, name: &str) -> Result<u64> {
    let answer = exchange(daemon.socket(), &request("GET", "/metrics", &[], b""))?;
    answer
        .body
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.trim().parse().ok())
        .with_context(|| format!("no {name} in /metrics"))
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one story: two trials, the second refused, across a crash"
)]
fn a_trial_is_given_once_per_window_on_the_page_and_by_the_api_and_a_crash_forgets_nothing()
-> Result<()> {
    let lan = Lan::new(2)?;
    let (walker, external) = (&lan.clients[0], &lan.clients[1]);
    let mut daemon = Daemon::start(&lan, TRIAL)?;

    // The landing page offers the trial; the button connects the device at once.
    let landing = page(walker)?;
    ensure!(
        landing.body.contains("id=\"trial-button\"")
            && landing.body.contains("Try it free for 5 min"),
        "{}",
        landing.body
    );
    ensure!(!reaches_internet(&lan, walker)?, "online before the trial");
    // A form without the device's CSRF token (another page's) gives nothing.
    let forged = portal(
        walker,
        request(
            "POST",
            "/trial",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            b"csrf=0123",
        ),
    )?;
    ensure!(forged.status == 403, "{forged:?}");
    ensure!(
        sessions_of(&daemon, &walker.mac)?.is_empty(),
        "a forged form gave a trial"
    );
    let answer = press_trial(walker)?;
    ensure!(answer.status == 303, "{answer:?}");
    ensure!(
        daemon.client(&walker.mac)?["state"] == "connected",
        "not connected"
    );
    ensure!(reaches_internet(&lan, walker)?, "no traffic in the trial");
    let sessions = sessions_of(&daemon, &walker.mac)?;
    ensure!(
        sessions.len() == 1
            && sessions[0]["provider"] == "trial"
            && sessions[0]["time_secs"] == 300
            && sessions[0]["down_mbits"] == 5
            && sessions[0]["up_mbits"] == 2,
        "{sessions:?}"
    );
    // While it runs, the status page is shown, and the button is refused.
    ensure!(page(walker)?.body.contains("You are online"), "no status");
    let answer = press_trial(walker)?;
    ensure!(
        answer.status == 409 && answer.body.contains("already has a session"),
        "{answer:?}"
    );

    // Its trial over, the device sees when the next one is possible, and is refused one.
    end_sessions(&daemon, &walker.mac)?;
    let landing = page(walker)?;
    ensure!(
        !landing.body.contains("trial-button")
            && landing
                .body
                .contains("has had its free trial. The next one is possible in 24 h"),
        "{}",
        landing.body
    );
    let refused = press_trial(walker)?;
    ensure!(
        refused.status == 429 && refused.body.contains("The next one is possible in"),
        "{refused:?}"
    );
    ensure!(!reaches_internet(&lan, walker)?, "a second trial got in");

    // An external portal asks for the other device's trial.
    let granted = ask_trial(&daemon, &external.mac)?;
    ensure!(granted.status == 200, "{granted:?}");
    ensure!(
        granted.json().context("JSON")?["state"] == "connected",
        "{granted:?}"
    );
    ensure!(
        reaches_internet(&lan, external)?,
        "no traffic after the API"
    );
    let again = ask_trial(&daemon, &external.mac)?;
    ensure!(
        again.status == 409 && again.json().context("JSON")?["error"]["code"] == "has_session",
        "{again:?}"
    );
    end_sessions(&daemon, &external.mac)?;
    let refused = ask_trial(&daemon, &external.mac)?;
    let error = refused.json().context("JSON")?;
    ensure!(
        refused.status == 429 && error["error"]["code"] == "trial_too_soon",
        "{refused:?}"
    );
    let retry: u64 = refused
        .headers
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("retry-after:")
                .map(|value| value.trim().to_owned())
        })
        .and_then(|value| value.parse().ok())
        .context("a Retry-After header")?;
    ensure!((86_000..=86_400).contains(&retry), "Retry-After {retry}");
    ensure!(
        metric(&daemon, "hotspotd_trials_granted_total")? == 2
            && metric(&daemon, "hotspotd_trial_ledger_entries")? == 2,
        "metrics"
    );

    // A SIGKILL and a start: the ledger is on disk, both are still refused.
    daemon.kill()?;
    daemon.restart(&lan)?;
    let refused = ask_trial(&daemon, &external.mac)?;
    ensure!(refused.status == 429, "after the restart: {refused:?}");
    let refused = press_trial(walker)?;
    ensure!(
        refused.status == 429,
        "after the restart, on the page: {refused:?}"
    );
    ensure!(
        !reaches_internet(&lan, walker)? && !reaches_internet(&lan, external)?,
        "a refused device is online"
    );
    ensure!(
        metric(&daemon, "hotspotd_trial_ledger_entries")? == 2,
        "the ledger after the restart"
    );
    // A device that had none still gets one.
    let fresh = ask_trial(&daemon, "02:00:00:00:00:99")?;
    ensure!(fresh.status == 200, "{fresh:?}");
    Ok(())
}

#[test]
fn trials_are_off_by_default_turned_on_by_sighup_and_bad_requests_are_refused() -> Result<()> {
    let lan = Lan::new(1)?;
    let client = &lan.clients[0];
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[portal]\ntrial_secs = 0\n")?;
    let daemon = Daemon::start_with_config(&lan, &config, &[])?;
    ensure!(
        !page(client)?.body.contains("trial-button"),
        "a trial offered while off"
    );
    let off = ask_trial(&daemon, &client.mac)?;
    ensure!(
        off.status == 409 && off.json().context("JSON")?["error"]["code"] == "trial_off",
        "{off:?}"
    );
    let off = press_trial(client)?;
    ensure!(
        off.status == 409 && off.body.contains("no free trial"),
        "{off:?}"
    );
    for (body, code) in [
        (serde_json::json!({}), "bad_request"),
        (serde_json::json!({ "mac": "ff:ff:ff:ff:ff:ff" }), "bad_mac"),
        (
            serde_json::json!({ "mac": client.mac, "secs": 9999 }),
            "bad_request",
        ),
    ] {
        let answer = exchange(
            daemon.socket(),
            &request(
                "POST",
                "/v1/trial",
                &[("Content-Type", "application/json")],
                body.to_string().as_bytes(),
            ),
        )?;
        ensure!(
            answer.status == 400 && answer.json().context("JSON")?["error"]["code"] == code,
            "{body}: {answer:?}"
        );
    }

    std::fs::write(
        &config,
        "[portal]\ntrial_secs = 120\ntrial_reset_secs = 3600\n",
    )?;
    daemon.reload()?;
    ensure!(
        hotspotd_tests::wait_for(Duration::from_secs(5), || page(client)
            .is_ok_and(|page| page.body.contains("Try it free for 2 min"))),
        "no trial after the reload"
    );
    let answer = press_trial(client)?;
    ensure!(answer.status == 303, "{answer:?}");
    ensure!(reaches_internet(&lan, client)?, "no traffic in the trial");
    let sessions = sessions_of(&daemon, &client.mac)?;
    ensure!(
        sessions[0]["use_global_speed"] == true && sessions[0]["time_secs"] == 120,
        "{sessions:?}"
    );
    Ok(())
}
