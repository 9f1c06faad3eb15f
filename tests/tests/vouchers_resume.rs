//! End to end: the built-in portal's resume cookie (docs/portal.md, "The resume cookie"). A code
//! redeemed on the form sets `hotspotd_voucher` (`HttpOnly`, `SameSite=Lax`, `Path=/`, no `Secure`
//! over plain HTTP); with it, the paused device resumes its voucher in one POST; another device's
//! landing page offers "Resume my voucher" for it, and one tap moves the voucher there (one
//! device slot: the first device is cut off); an altered cookie (another voucher's id, a changed tag) is refused, names
//! no other voucher and is dropped; a revoked voucher's cookie is dropped. Plain HTTP requests
//! with the page's CSRF token, as a browser sends them. Needs root.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use hotspotd_tests::http::{Answer, request};
use hotspotd_tests::{Client, Daemon, INTERNET_V4, Lan, UdpEcho, udp_echoes};
use serde_json::Value;

const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

fn portal(client: &Client, raw: Vec<u8>) -> Result<Answer> {
    hotspotd_tests::portal::exchange(&client.netns, raw)
}

/// `client`'s page at `/`, sending `cookie` (a `name=value` pair) if given.
fn page(client: &Client, cookie: Option<&str>) -> Result<Answer> {
    let headers: Vec<(&str, &str)> = cookie.map(|c| ("Cookie", c)).into_iter().collect();
    portal(client, request("GET", "/", &headers, b""))
}

fn csrf_of(page: &Answer) -> Result<String> {
    let (_, rest) = page
        .body
        .split_once("name=\"csrf\" value=\"")
        .context("a CSRF field")?;
    Ok(rest.split('"').next().unwrap_or_default().to_owned())
}

/// Posts a form to `path` from `client` with its token (and `cookie`), as a browser does.
fn post(client: &Client, path: &str, fields: &str, cookie: Option<&str>) -> Result<Answer> {
    let csrf = csrf_of(&page(client, None)?)?;
    let mut headers = vec![FORM];
    if let Some(cookie) = cookie {
        headers.push(("Cookie", cookie));
    }
    let body = format!("csrf={csrf}{fields}");
    portal(client, request("POST", path, &headers, body.as_bytes()))
}

/// The `Set-Cookie` header of an answer, if any.
fn set_cookie(answer: &Answer) -> Option<String> {
    answer.headers.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("set-cookie")
            .then(|| value.trim().to_owned())
    })
}

fn reaches_internet(lan: &Lan, client: &Client) -> Result<bool> {
    let echo = UdpEcho::start(&lan.internet, SocketAddr::new(INTERNET_V4.into(), 0))?;
    Ok(udp_echoes(&client.netns, echo.addr(), 64, 1, PROBE_TIMEOUT)? == 1)
}

fn states(daemon: &Daemon) -> Result<Vec<String>> {
    Ok(daemon
        .ctl_json(&["vouchers"])?
        .as_array()
        .context("an array")?
        .iter()
        .map(|voucher| voucher["state"].as_str().unwrap_or_default().to_owned())
        .collect())
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one story: a cookie set, used, offered elsewhere, forged and ended"
)]
fn a_redeemed_voucher_is_remembered_in_a_cookie_that_resumes_it_and_nothing_else() -> Result<()> {
    let lan = Lan::new(3)?;
    let (phone, other, stranger) = (&lan.clients[0], &lan.clients[1], &lan.clients[2]);
    let daemon = Daemon::start(&lan, &[])?;
    let created = daemon.ctl_json(&[
        "voucher",
        "create",
        "--count",
        "2",
        "--type",
        "time",
        "--time-secs",
        "3600",
        "--global-speed",
    ])?;
    let codes: Vec<String> = created
        .as_array()
        .context("an array")?
        .iter()
        .map(|voucher: &Value| voucher["code"].as_str().unwrap_or_default().to_owned())
        .collect();

    // Redeeming on the form sets the cookie.
    let redeemed = post(phone, "/", &format!("&code={}", codes[0]), None)?;
    ensure!(redeemed.status == 303, "{redeemed:?}");
    let set = set_cookie(&redeemed).context("no Set-Cookie after redeeming")?;
    ensure!(
        set.ends_with("; Max-Age=2592000; Path=/; HttpOnly; SameSite=Lax"),
        "{set}"
    );
    let pair = set.split(';').next().unwrap_or_default().to_owned();
    let (name, value) = pair.split_once('=').context("name=value")?;
    let (id, tag) = value.split_once('.').context("id.tag")?;
    ensure!(
        name == "hotspotd_voucher" && id == "1" && tag.len() == 64,
        "{pair}"
    );
    ensure!(reaches_internet(&lan, phone)?, "offline after redeeming");

    // Paused, the same device resumes its voucher with the cookie alone.
    daemon.ctl(&["pause", "--mac", &phone.mac])?;
    ensure!(!reaches_internet(&lan, phone)?, "online while paused");
    let resumed = post(phone, "/resume-voucher", "", Some(&pair))?;
    ensure!(resumed.status == 303, "{resumed:?}");
    ensure!(
        set_cookie(&resumed).is_some_and(|again| again.starts_with(&pair)),
        "the cookie is set again: {resumed:?}"
    );
    ensure!(
        daemon.client(&phone.mac)?["state"] == "connected",
        "not resumed"
    );
    ensure!(reaches_internet(&lan, phone)?, "offline after resuming");

    // Another device without a session (the same phone with a new MAC, or a second phone)
    // is offered the remembered voucher, but only with the cookie.
    ensure!(
        !page(other, None)?.body.contains("resume-voucher"),
        "offered without a cookie"
    );
    let offered = page(other, Some(&pair))?;
    ensure!(
        offered.body.contains("id=\"resume-voucher\"") && offered.body.contains("Welcome back"),
        "{}",
        offered.body
    );
    // The cookie without the device's CSRF token (a page elsewhere posting the form) does
    // nothing.
    let forged = portal(
        other,
        request(
            "POST",
            "/resume-voucher",
            &[FORM, ("Cookie", &pair)],
            b"csrf=0123",
        ),
    )?;
    ensure!(forged.status == 403, "{forged:?}");
    ensure!(!reaches_internet(&lan, other)?, "the other device got in");

    // An altered cookie: voucher 2's id with voucher 1's tag, a changed tag digit. Neither is
    // offered nor redeems anything, and each is dropped.
    let flipped = if tag.starts_with('0') { "1" } else { "0" };
    for forged in [
        format!("hotspotd_voucher=2.{tag}"),
        format!("hotspotd_voucher=1.{flipped}{}", &tag[1..]),
    ] {
        let landing = page(stranger, Some(&forged))?;
        ensure!(
            !landing.body.contains("resume-voucher")
                && set_cookie(&landing).is_some_and(|drop| drop.contains("Max-Age=0")),
            "{forged}: {landing:?}"
        );
        let refused = post(stranger, "/resume-voucher", "", Some(&forged))?;
        ensure!(
            refused.status == 422 && refused.body.contains("cannot be used any more"),
            "{forged}: {refused:?}"
        );
    }
    ensure!(
        states(&daemon)? == ["in_use", "unused"],
        "a forged cookie redeemed something"
    );
    ensure!(!reaches_internet(&lan, stranger)?, "a forged cookie got in");
    // Without any cookie, the resume form says so.
    let none = post(stranger, "/resume-voucher", "", None)?;
    ensure!(
        none.status == 422 && none.body.contains("cannot be used any more"),
        "{none:?}"
    );

    // One tap with the cookie: the voucher (one device slot) moves to the other device, and
    // the device it left is cut off (docs/vouchers.md, "Device slots").
    let moved = post(other, "/resume-voucher", "", Some(&pair))?;
    ensure!(moved.status == 303, "{moved:?}");
    ensure!(
        reaches_internet(&lan, other)?,
        "offline after resuming on a new MAC"
    );
    ensure!(
        !reaches_internet(&lan, phone)?,
        "the device the voucher left is online"
    );
    ensure!(
        daemon.ctl_json(&["vouchers"])?[0]["mac"] == other.mac.as_str(),
        "the voucher did not move"
    );

    // Revoked, the voucher is no longer offered and the cookie is dropped.
    daemon.ctl_json(&["voucher", "revoke", "--id", "1"])?;
    let landing = page(other, Some(&pair))?;
    ensure!(
        !landing.body.contains("resume-voucher")
            && set_cookie(&landing).is_some_and(|drop| drop.contains("Max-Age=0")),
        "{landing:?}"
    );
    Ok(())
}
