//! End to end: SIGHUP makes a running hotspotd apply a changed configuration file without
//! dropping its sessions, and a broken file changes nothing. Needs root.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use anyhow::{Context as _, Result, ensure};
use hotspotd_tests::{Daemon, INTERNET_V4, Lan, UdpEcho, udp_echoes, wait_for, workspace_root};

/// How long one echo may take; the namespaces answer in well under a millisecond.
const ECHO_WAIT: Duration = Duration::from_millis(300);

/// The repository's configuration with `walled_garden` set to `garden`.
fn config_with_garden(garden: &str) -> Result<String> {
    let shipped = std::fs::read_to_string(workspace_root().join("config.toml"))?;
    ensure!(
        shipped.contains("walled_garden = []"),
        "config.toml has no 'walled_garden = []' line"
    );
    Ok(shipped.replace("walled_garden = []", &format!("walled_garden = [{garden}]")))
}

#[test]
fn sighup_applies_a_new_walled_garden_and_keeps_sessions() -> Result<()> {
    let lan = Lan::new(2)?;
    let (portal_client, paying_client) = (&lan.clients[0], &lan.clients[1]);
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("config.toml");
    std::fs::write(&config, config_with_garden("")?)?;
    let daemon = Daemon::start_with_config(&lan, &config, &[])?;
    daemon.add_session(
        &paying_client.mac,
        &[
            "--type",
            "time",
            "--time-secs",
            "600",
            "--global-speed",
            "--connect",
        ],
    )?;
    let echo = UdpEcho::start(&lan.internet, SocketAddr::new(IpAddr::V4(INTERNET_V4), 0))?;
    ensure!(
        udp_echoes(&portal_client.netns, echo.addr(), 100, 3, ECHO_WAIT)? == 0,
        "without a session, the internet host is out of reach"
    );

    // The operator adds the "internet" host (say, a payment provider) to the walled garden.
    std::fs::write(&config, config_with_garden("\"198.51.100.1\"")?)?;
    daemon.reload()?;
    let reachable = wait_for(Duration::from_secs(5), || {
        udp_echoes(&portal_client.netns, echo.addr(), 100, 1, ECHO_WAIT)
            .is_ok_and(|echoes| echoes == 1)
    });
    ensure!(
        reachable,
        "after SIGHUP the walled garden includes 198.51.100.1; log:\n{}",
        daemon.log()
    );
    let client = daemon.client(&paying_client.mac)?;
    ensure!(
        client["state"] == "connected",
        "the running session survived the reload: {client}"
    );

    // A broken file is refused; the running configuration stays.
    std::fs::write(&config, "[network]\nlan_interface = 5\nbogus = true\n")?;
    daemon.reload()?;
    let refused = wait_for(Duration::from_secs(5), || {
        daemon.log().contains("keeping the running configuration")
    });
    ensure!(
        refused,
        "the broken file is reported; log:\n{}",
        daemon.log()
    );
    ensure!(
        udp_echoes(&portal_client.netns, echo.addr(), 100, 3, ECHO_WAIT)? == 3,
        "the garden of the last good configuration still holds"
    );
    let status = daemon.stop().context("stop")?;
    ensure!(status.success(), "hotspotd exits cleanly after reloads");
    Ok(())
}
