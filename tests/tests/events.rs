//! End to end: the event stream (`hotspotctl events`) and `events.exec` tell a session's whole
//! life in order, and a hook that hangs or fails never slows the daemon. Needs root.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use hotspotd_tests::{Daemon, Lan, wait_for};

/// Writes an executable shell script.
fn script(path: &Path, body: &str) -> Result<()> {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// The `event` names of `lines` that concern `mac`, in order.
fn names_for(lines: &[serde_json::Value], mac: &str) -> Vec<String> {
    lines
        .iter()
        .filter(|line| line["mac"] == mac)
        .filter_map(|line| line["event"].as_str().map(str::to_owned))
        .collect()
}

/// A client the tests never send traffic for: its events only prove the stream is connected.
const PROBE_MAC: &str = "02:ff:00:00:00:01";

#[test]
fn a_sessions_life_is_told_in_order_on_the_stream_and_to_the_hook() -> Result<()> {
    let lan = Lan::new(1)?;
    let mac = lan.clients[0].mac.clone();
    let dir = tempfile::tempdir()?;
    let hook = dir.path().join("hook.sh");
    let log = dir.path().join("events.ndjson");
    script(&hook, &format!("cat >> {}", log.display()))?;
    let hook_path = hook.to_str().context("a UTF-8 path")?;
    let daemon = Daemon::start(&lan, &[("HOTSPOTD__EVENTS__EXEC", hook_path)])?;

    // Follow the stream the way an operator would.
    let (mut follower, lines_rx) = daemon.follow_events(PROBE_MAC)?;

    daemon.add_session(
        &mac,
        &[
            "--type",
            "time",
            "--time-secs",
            "2",
            "--global-speed",
            "--connect",
        ],
    )?;
    daemon.ctl_json(&["pause", "--mac", &mac])?;
    daemon.ctl_json(&["connect", "--mac", &mac])?;
    let expected = [
        "session_started",
        "client_connected",
        "session_paused",
        "session_resumed",
        "session_consumed",
        "client_disconnected",
    ];
    let mut lines = Vec::new();
    let told = wait_for(Duration::from_secs(10), || {
        while let Ok(line) = lines_rx.try_recv() {
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) {
                lines.push(value);
            }
        }
        names_for(&lines, &mac).len() >= expected.len()
    });
    let _ = follower.kill();
    ensure!(
        told,
        "the stream told {:?}; log:\n{}",
        names_for(&lines, &mac),
        daemon.log()
    );
    ensure!(
        names_for(&lines, &mac) == expected,
        "in order: {:?}",
        names_for(&lines, &mac)
    );
    ensure!(
        lines.iter().all(|line| line["at"].is_string()),
        "every event has its time"
    );

    let hooked = wait_for(Duration::from_secs(5), || {
        std::fs::read_to_string(&log).is_ok_and(|text| text.lines().count() >= expected.len())
    });
    ensure!(hooked, "the hook ran once per event");
    let hooked: Vec<serde_json::Value> = std::fs::read_to_string(&log)?
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let mut hooked_names = names_for(&hooked, &mac);
    let mut expected_sorted = expected.map(str::to_owned).to_vec();
    // Hooks run in parallel, so their order is not the stream's; every event is there.
    hooked_names.sort();
    expected_sorted.sort();
    ensure!(
        hooked_names == expected_sorted,
        "the hook saw {hooked_names:?}"
    );
    Ok(())
}

#[test]
fn a_hanging_or_failing_hook_does_not_slow_the_daemon() -> Result<()> {
    let lan = Lan::new(1)?;
    let mac = lan.clients[0].mac.clone();
    let dir = tempfile::tempdir()?;
    let hook = dir.path().join("hang.sh");
    // Reads nothing, never ends (killed after the timeout), and fails if it ever does.
    script(&hook, "sleep 600; exit 1")?;
    let hook_path = hook.to_str().context("a UTF-8 path")?;
    let daemon = Daemon::start(
        &lan,
        &[
            ("HOTSPOTD__EVENTS__EXEC", hook_path),
            ("HOTSPOTD__EVENTS__EXEC_TIMEOUT_MS", "60000"),
        ],
    )?;
    // Each round makes two to four events; far more than the hooks that may run at once.
    let started = Instant::now();
    for _ in 0..15 {
        daemon.add_session(
            &mac,
            &[
                "--type",
                "time",
                "--time-secs",
                "60",
                "--global-speed",
                "--connect",
            ],
        )?;
        daemon.ctl_json(&["pause", "--mac", &mac])?;
        daemon.ctl_json(&["connect", "--mac", &mac])?;
    }
    let took = started.elapsed();
    // 45 commands, each a process start and an fsync'ed save: well under a second each when
    // nothing waits for the hooks; a daemon waiting for them would take minutes.
    ensure!(
        took < Duration::from_secs(20),
        "45 commands took {took:?} with hooks hanging"
    );
    let sessions = daemon.sessions()?;
    ensure!(
        sessions.len() == 15,
        "every session was sold: {}",
        sessions.len()
    );
    Ok(())
}

#[test]
fn a_follower_of_the_stream_does_not_hold_up_a_stop() -> Result<()> {
    let lan = Lan::new(1)?;
    let daemon = Daemon::start(&lan, &[])?;
    let (mut follower, _lines) = daemon.follow_events(PROBE_MAC)?;
    let started = Instant::now();
    let status = daemon.stop()?;
    let took = started.elapsed();
    let _ = follower.kill();
    ensure!(
        status.success(),
        "hotspotd exits cleanly with a follower attached"
    );
    ensure!(took < Duration::from_secs(5), "the stop took {took:?}");
    let ended = wait_for(Duration::from_secs(5), || {
        follower.try_wait().is_ok_and(|s| s.is_some())
    });
    ensure!(ended, "the follower sees the stream end");
    Ok(())
}
