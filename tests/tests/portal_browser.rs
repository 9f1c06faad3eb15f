//! End to end in a real browser: headless Chromium inside a client namespace opens a web
//! address on the internet, as a phone would, and is sent to the built-in portal at the
//! gateway's LAN address. An unpaid device sees the landing page and, submitting a code, "unknown code"; once a session is sold, the status
//! page shows the time and data left, and they fall, without a reload, as the device uses
//! them; pause and resume from the page change the client's state in the API. The run saves
//! phone (360×740) and desktop (1280×800) screenshots under target/portal-screenshots/ (the
//! ones in docs/images/ are from such a run). Needs root and Chromium (bootstrap installs it).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use hotspotd_tests::browser::{Browser, PHONE};
use hotspotd_tests::{
    Daemon, GATEWAY_LAN_V4, INTERNET_V4, Lan, TcpSink, tcp_send, wait_for, workspace_root,
};

/// The built-in portal, as `portal.url` names it by default.
fn portal_url() -> String {
    format!("http://{GATEWAY_LAN_V4}:2050/")
}

/// Where this run's screenshots go.
fn screenshots() -> PathBuf {
    workspace_root().join("target").join("portal-screenshots")
}

/// A number the page keeps in a `data-` attribute of the element `id` (the live values).
fn shown(browser: &mut Browser, id: &str, attribute: &str) -> Result<u64> {
    let value = browser.evaluate(&format!(
        "(document.getElementById('{id}') || {{}}).getAttribute ? document.getElementById('{id}').getAttribute('{attribute}') : null"
    ))?;
    value
        .as_str()
        .and_then(|text| text.parse().ok())
        .with_context(|| {
            format!(
                "no {attribute} on #{id}: {}",
                browser.text().unwrap_or_default()
            )
        })
}

#[test]
fn an_unpaid_phone_lands_on_the_portal_and_its_code_is_unknown() -> Result<()> {
    let lan = Lan::new(1)?;
    let client = &lan.clients[0];
    let _daemon = Daemon::start(&lan, &[])?;
    let mut browser = Browser::launch(&client.netns)?;
    browser.resize(PHONE)?;

    // Any web address: the box answers for it with a redirect to the portal.
    browser.open(&format!("http://{INTERNET_V4}/"))?;
    let url = browser.url()?;
    ensure!(url == portal_url(), "ended on {url}, not the portal");
    let text = browser.text()?;
    ensure!(
        text.contains("Get online") && text.contains("Voucher code"),
        "{text}"
    );
    browser.screenshots(&screenshots(), "landing")?;

    browser.evaluate("document.querySelector('input[name=code]').value = 'wxyz-1234'")?;
    browser.click("#redeem")?;
    let text = browser.text()?;
    ensure!(text.contains("Unknown code"), "{text}");
    browser.screenshots(&screenshots(), "unknown-code")?;
    Ok(())
}

#[test]
fn the_status_page_counts_down_live_and_pauses_and_resumes() -> Result<()> {
    let lan = Lan::new(1)?;
    let client = &lan.clients[0];
    let daemon = Daemon::start(&lan, &[])?;
    daemon.add_session(
        &client.mac,
        &[
            "--type",
            "time_or_data",
            "--time-secs",
            "3600",
            "--data-mb",
            "50",
            "--down-mbits",
            "20",
            "--up-mbits",
            "5",
            "--connect",
        ],
    )?;
    daemon.add_session(
        &client.mac,
        &["--type", "time", "--time-secs", "86400", "--global-speed"],
    )?;
    let mut browser = Browser::launch(&client.netns)?;
    browser.resize(PHONE)?;
    browser.open(&portal_url())?;
    let text = browser.text()?;
    ensure!(
        text.contains("You are online")
            && text.contains("50.00 MB")
            && text.contains("0:59:")
            && text.contains("20 Mbit/s down")
            && text.contains("24:00:00"),
        "{text}"
    );
    browser.screenshots(&screenshots(), "status")?;
    let (seconds, bytes) = (
        shown(&mut browser, "seconds-left", "data-seconds")?,
        shown(&mut browser, "bytes-left", "data-bytes")?,
    );

    // 2 MB to the internet: the page, left open, shows less data and less time.
    let sink = TcpSink::start(&lan.internet, SocketAddr::new(IpAddr::V4(INTERNET_V4), 0))?;
    let sent = tcp_send(&client.netns, sink.addr(), 2_000_000)?;
    ensure!(sent == 2_000_000, "sent {sent}");
    let mut now = (seconds, bytes);
    let fell = wait_for(Duration::from_secs(15), || {
        if let (Ok(s), Ok(b)) = (
            shown(&mut browser, "seconds-left", "data-seconds"),
            shown(&mut browser, "bytes-left", "data-bytes"),
        ) {
            now = (s, b);
        }
        now.0 < seconds && now.1 + 2_000_000 <= bytes
    });
    ensure!(
        fell,
        "the page still shows {now:?} after 2 MB and seconds (was {seconds} s, {bytes} B)"
    );
    let text = browser.text()?;
    ensure!(
        !text.contains("50.00 MB"),
        "the text did not follow: {text}"
    );

    browser.click("#pause")?;
    let text = browser.text()?;
    ensure!(text.contains("Paused") && text.contains("Resume"), "{text}");
    ensure!(
        daemon.client(&client.mac)?["state"] == "paused",
        "the API does not show it paused"
    );
    browser.screenshots(&screenshots(), "paused")?;

    browser.click("#resume")?;
    let text = browser.text()?;
    ensure!(text.contains("You are online"), "{text}");
    ensure!(
        daemon.client(&client.mac)?["state"] == "connected",
        "the API does not show it connected"
    );
    Ok(())
}
