//! End to end in a real browser: what the landing page offers besides the voucher form. Headless
//! Chromium in a client namespace opens a web address on the internet, is sent to the built-in
//! portal, and takes the free trial with its button (docs/trials.md); a browser that holds the
//! resume cookie of a voucher redeemed on another device's page is offered "Resume my voucher"
//! on the landing page it reaches by that cross-site redirect (docs/portal.md, "The resume
//! cookie": why it is `SameSite=Lax`). Phone screenshots go to target/portal-screenshots/.
//! Needs root and Chromium (bootstrap installs it).

use std::path::PathBuf;

use anyhow::{Context as _, Result, ensure};
use hotspotd_tests::browser::{Browser, PHONE};
use hotspotd_tests::{Daemon, GATEWAY_LAN_V4, INTERNET_V4, Lan, workspace_root};
use serde_json::json;

/// The built-in portal, as `portal.url` names it by default.
fn portal_url() -> String {
    format!("http://{GATEWAY_LAN_V4}:2050/")
}

fn screenshots() -> PathBuf {
    workspace_root().join("target").join("portal-screenshots")
}

#[test]
fn a_phone_takes_its_free_trial_from_the_landing_page() -> Result<()> {
    let lan = Lan::new(1)?;
    let client = &lan.clients[0];
    let daemon = Daemon::start(
        &lan,
        &[
            ("HOTSPOTD__PORTAL__TRIAL_SECS", "300"),
            ("HOTSPOTD__PORTAL__TRIAL_DOWN_MBITS", "1"),
            ("HOTSPOTD__PORTAL__TRIAL_UP_MBITS", "1"),
        ],
    )?;
    let mut browser = Browser::launch(&client.netns)?;
    browser.resize(PHONE)?;
    browser.open(&format!("http://{INTERNET_V4}/"))?;
    let url = browser.url()?;
    ensure!(url == portal_url(), "ended on {url}, not the portal");
    let text = browser.text()?;
    ensure!(
        text.contains("Free trial") && text.contains("Try it free for 5 min"),
        "{text}"
    );
    browser.screenshot(&screenshots().join("landing-trial-phone.png"))?;

    browser.click("#trial-button")?;
    let text = browser.text()?;
    ensure!(
        text.contains("You are online") && text.contains("1 Mbit/s down"),
        "{text}"
    );
    let sessions = daemon.ctl_json(&["sessions", "--mac", &client.mac])?;
    ensure!(sessions[0]["provider"] == "trial", "{sessions}");
    Ok(())
}

#[test]
fn a_browser_holding_a_resume_cookie_is_offered_its_voucher_after_the_redirect() -> Result<()> {
    let lan = Lan::new(2)?;
    let (first, second) = (&lan.clients[0], &lan.clients[1]);
    let daemon = Daemon::start(&lan, &[])?;
    let created = daemon.ctl_json(&[
        "voucher",
        "create",
        "--count",
        "1",
        "--type",
        "time",
        "--time-secs",
        "3600",
        "--global-speed",
    ])?;
    let code = created[0]["code"].as_str().context("a code")?.to_owned();

    // The first browser redeems the code on the form, and keeps the cookie.
    let cookie = {
        let mut browser = Browser::launch(&first.netns)?;
        browser.open(&portal_url())?;
        browser.evaluate(&format!(
            "document.querySelector('input[name=code]').value = '{code}'"
        ))?;
        browser.click("#redeem")?;
        let text = browser.text()?;
        ensure!(text.contains("You are online"), "{text}");
        let cookies = browser.call("Network.getCookies", &json!({ "urls": [portal_url()] }))?;
        let cookie = cookies["cookies"]
            .as_array()
            .and_then(|cookies| {
                cookies
                    .iter()
                    .find(|cookie| cookie["name"] == "hotspotd_voucher")
            })
            .cloned()
            .with_context(|| format!("no resume cookie: {cookies}"))?;
        ensure!(
            cookie["httpOnly"] == true && cookie["sameSite"] == "Lax" && cookie["path"] == "/",
            "{cookie}"
        );
        ensure!(
            browser.evaluate("document.cookie")?.as_str() == Some(""),
            "a script can read the cookie"
        );
        cookie
    };

    // The same browser profile on another device (as a phone with a new MAC): the redirect
    // from any web address lands on a page that offers the voucher.
    let mut browser = Browser::launch(&second.netns)?;
    browser.resize(PHONE)?;
    browser.call(
        "Network.setCookie",
        &json!({
            "name": cookie["name"],
            "value": cookie["value"],
            "url": portal_url(),
            "httpOnly": true,
            "sameSite": "Lax",
        }),
    )?;
    browser.open(&format!("http://{INTERNET_V4}/"))?;
    let text = browser.text()?;
    ensure!(
        text.contains("Welcome back") && text.contains("Resume my voucher"),
        "{text}"
    );
    browser.screenshot(&screenshots().join("landing-resume-phone.png"))?;
    // One tap: the voucher (one device slot) moves to this device, and the first is cut off.
    browser.click("#resume-voucher")?;
    let text = browser.text()?;
    ensure!(text.contains("You are online"), "{text}");
    ensure!(
        daemon.client(&second.mac)?["state"] == "connected"
            && daemon.client(&first.mac)?["state"] != "connected",
        "the voucher did not move"
    );
    // The first device, cut off, is told why on its landing page.
    let mut left = Browser::launch(&first.netns)?;
    left.resize(PHONE)?;
    left.open(&format!("http://{INTERNET_V4}/"))?;
    let text = left.text()?;
    ensure!(
        text.contains("Your voucher moved") && text.contains("now in use on another device"),
        "{text}"
    );
    left.screenshot(&screenshots().join("landing-moved-phone.png"))?;
    Ok(())
}
