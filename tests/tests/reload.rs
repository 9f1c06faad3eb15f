//! End to end: SIGHUP makes a running hotspotd apply a changed configuration file (walled
//! garden, global speed caps) without dropping its sessions, and a broken file changes
//! nothing. Needs root.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use anyhow::{Context as _, Result, ensure};
use hotspotd_tests::{
    Daemon, INTERNET_V4, LAN_IFACE, Lan, UdpEcho, tc, udp_echoes, wait_for, workspace_root,
};

/// The IFB the daemon creates (config.toml's default).
const IFB: &str = "ifb-hotspot";
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

/// The repository's configuration with the global caps set to `down`/`up` Mbit/s.
fn config_with_global_speed(down: u32, up: u32) -> Result<String> {
    let shipped = std::fs::read_to_string(workspace_root().join("config.toml"))?;
    ensure!(
        shipped.contains("global_down_mbits = 100") && shipped.contains("global_up_mbits = 100"),
        "config.toml has no 'global_down_mbits = 100' / 'global_up_mbits = 100' lines"
    );
    Ok(shipped
        .replace(
            "global_down_mbits = 100",
            &format!("global_down_mbits = {down}"),
        )
        .replace("global_up_mbits = 100", &format!("global_up_mbits = {up}")))
}

/// The `rate`/`ceil` words of an HTB class as tc prints it, e.g. `("30Mbit", "30Mbit")`.
fn class_rates(lan: &Lan, dev: &str, class: &str) -> Option<(String, String)> {
    let classes = tc::classes(&lan.gateway, dev).ok()?;
    let line = classes.get(class)?;
    Some((
        tc::field(line, "rate")?.to_owned(),
        tc::field(line, "ceil")?.to_owned(),
    ))
}

#[test]
fn sighup_changes_the_global_caps_on_the_htb_classes_and_keeps_sessions() -> Result<()> {
    let lan = Lan::new(1)?;
    let client = &lan.clients[0];
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("config.toml");
    std::fs::write(&config, config_with_global_speed(50, 20)?)?;
    let daemon = Daemon::start_with_config(&lan, &config, &[])?;
    let session = daemon.connect_for_an_hour(&client.mac)?;
    let parent = |dev: &str, class: &str| class_rates(&lan, dev, class);
    ensure!(
        parent(LAN_IFACE, "1:1") == Some(("50Mbit".into(), "50Mbit".into()))
            && parent(IFB, "2:1") == Some(("20Mbit".into(), "20Mbit".into())),
        "the trees start at the configured caps: {:?} {:?}",
        parent(LAN_IFACE, "1:1"),
        parent(IFB, "2:1")
    );

    std::fs::write(&config, config_with_global_speed(30, 10)?)?;
    daemon.reload()?;
    let applied = wait_for(Duration::from_secs(5), || {
        parent(LAN_IFACE, "1:1") == Some(("30Mbit".into(), "30Mbit".into()))
            && parent(IFB, "2:1") == Some(("10Mbit".into(), "10Mbit".into()))
    });
    ensure!(
        applied,
        "after SIGHUP the parents are capped at 30/10 Mbit/s: {:?} {:?}; log:\n{}",
        parent(LAN_IFACE, "1:1"),
        parent(IFB, "2:1"),
        daemon.log()
    );
    // The client at the global speed follows, and keeps its session.
    let ceils = tc::client_ceils(&lan.gateway, LAN_IFACE)?;
    ensure!(
        ceils == ["30Mbit"],
        "the global-speed client's class follows the new cap: {ceils:?}"
    );
    let row = daemon.client(&client.mac)?;
    ensure!(
        row["state"] == "connected"
            && row["session_id"] == session["id"]
            && row["down_mbits"] == 30
            && row["up_mbits"] == 10,
        "the session runs on at the new global speed: {row}"
    );
    Ok(())
}

#[test]
fn sighup_names_each_changed_key_that_needs_a_restart() -> Result<()> {
    let lan = Lan::new(1)?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("config.toml");
    let shipped = config_with_garden("")?;
    std::fs::write(&config, &shipped)?;
    let daemon = Daemon::start_with_config(&lan, &config, &[])?;

    // A hook and its timeout (read at start only) change with the walled garden (applied).
    ensure!(
        shipped.contains("exec = \"\"") && shipped.contains("exec_timeout_ms = 5000"),
        "config.toml has no 'exec = \"\"' / 'exec_timeout_ms = 5000' lines"
    );
    let edited = config_with_garden("\"198.51.100.1\"")?
        .replace("exec = \"\"", "exec = \"/bin/true\"")
        .replace("exec_timeout_ms = 5000", "exec_timeout_ms = 1000");
    std::fs::write(&config, edited)?;
    daemon.reload()?;
    let reloaded = |log: &str| {
        log.lines()
            .find(|line| line.contains("configuration reloaded"))
            .map(str::to_owned)
    };
    let line = wait_for(Duration::from_secs(5), || reloaded(&daemon.log()).is_some())
        .then(|| reloaded(&daemon.log()))
        .flatten()
        .with_context(|| format!("no reload in the log:\n{}", daemon.log()))?;
    ensure!(
        line.contains("WARN")
            && line.contains("except events.exec, events.exec_timeout_ms:")
            && line.contains("restart"),
        "the reload names both keys it did not apply, and only those: {line}"
    );
    Ok(())
}
