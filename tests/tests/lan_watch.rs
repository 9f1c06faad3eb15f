//! End to end: what hotspotd notices on the LAN beside the sessions. Two devices using one MAC
//! (a clone) make the bridge move it between ports: an event, a metric and one log line. A
//! client flooding the box with neighbour solicitations from random addresses overflows the
//! kernel's neighbour table: a warning naming the sysctl, and a metric. Needs root.

use std::{net::Ipv6Addr, time::Duration};

use anyhow::{Context as _, Result, ensure};
use hotspotd_tests::{
    CLIENT_IFACE, Daemon, FrameSender, GATEWAY_LAN_V4, GATEWAY_LAN_V6, LAN_IFACE, Lan,
    frames::{self, ETH_P_IPV6, XorShift, mac_of},
    wait_for,
};

/// Frames the clone test sends, in turn from the owner's port and the clone's.
const FRAMES: usize = 21;

/// A client the test sells a session to and pauses, until its events show the stream is
/// connected (it carries events from when it is opened).
const PROBE_MAC: &str = "02:ff:00:00:00:02";

#[test]
fn a_cloned_mac_moving_between_ports_is_an_event_a_metric_and_one_log_line() -> Result<()> {
    let lan = Lan::new(2)?;
    let (owner, clone) = (&lan.clients[0], &lan.clients[1]);
    let daemon = Daemon::start(&lan, &[])?;
    let (mut follower, lines) = daemon.follow_events(PROBE_MAC)?;

    // The second device takes the first one's MAC, as a clone riding on its session would.
    clone
        .netns
        .ip(&["link", "set", CLIENT_IFACE, "address", &owner.mac])?;
    let mac = mac_of(&owner.mac)?;
    let hello = |ip: std::net::Ipv4Addr| {
        frames::padded(frames::ethernet(
            frames::BROADCAST_MAC,
            mac,
            &[],
            frames::ETH_P_ARP,
            &frames::arp_request(mac, ip.octets(), GATEWAY_LAN_V4.octets()),
        ))
    };
    let senders = [
        (
            FrameSender::open(&owner.netns, CLIENT_IFACE)?,
            hello(owner.ipv4),
        ),
        (
            FrameSender::open(&clone.netns, CLIENT_IFACE)?,
            hello(clone.ipv4),
        ),
    ];
    // Owner, clone, owner, ...: the bridge learns the MAC behind the other port each time.
    for turn in 0..FRAMES {
        let (sender, frame) = &senders[turn % 2];
        sender.send(frame)?;
        std::thread::sleep(Duration::from_millis(20));
    }
    let expected_moves = f64::from(u32::try_from(FRAMES - 1)?);

    let mac_moved = |line: String| {
        serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .filter(|event| event["event"] == "mac_moved" && event["mac"] == owner.mac.as_str())
    };
    let mut moved = Vec::new();
    let arrived = wait_for(Duration::from_secs(5), || {
        moved.extend(std::iter::from_fn(|| lines.try_recv().ok()).filter_map(mac_moved));
        !moved.is_empty()
    });
    ensure!(
        arrived,
        "no mac_moved event for {}; log:\n{}",
        owner.mac,
        daemon.log()
    );
    let first = &moved[0];
    ensure!(
        first["from_port"] == owner.port.as_str()
            && first["to_port"] == clone.port.as_str()
            && first["moves"] == 1
            && first["at"].is_string(),
        "the event names the MAC's old and new port: {first}"
    );
    let counted = wait_for(Duration::from_secs(5), || {
        daemon
            .metric("hotspotd_mac_moves_total")
            .is_ok_and(|value| value >= Some(expected_moves))
    });
    ensure!(
        counted,
        "every move is counted: {:?} of {expected_moves}",
        daemon.metric("hotspotd_mac_moves_total")?
    );
    // One event and one log line for the flapping, not one per move.
    std::thread::sleep(Duration::from_millis(300));
    moved.extend(std::iter::from_fn(|| lines.try_recv().ok()).filter_map(mac_moved));
    ensure!(moved.len() == 1, "one event for the flapping: {moved:?}");
    let log = daemon.log();
    let lines_about: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("WARN") && line.contains(&format!("MAC {} moved", owner.mac)))
        .collect();
    ensure!(
        lines_about.len() == 1
            && lines_about[0].contains(&format!("from LAN port {} to {}", owner.port, clone.port)),
        "one log line names the MAC and both ports: {lines_about:#?}"
    );
    follower.kill()?;
    follower.wait()?;
    Ok(())
}

/// The kernel's IPv6 neighbour table limit: one table for every namespace of the machine,
/// set only in the first one, so the test floods past it rather than lowering it for every
/// other test running meanwhile.
fn ipv6_table_limit() -> Result<u64> {
    let path = "/proc/sys/net/ipv6/neigh/default/gc_thresh3";
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("read {path}"))?
        .trim()
        .parse()?)
}

#[test]
fn a_neighbour_solicitation_flood_overflows_the_table_and_is_warned_about() -> Result<()> {
    let limit = ipv6_table_limit()?;
    ensure!(
        limit <= 16_384,
        "net.ipv6.neigh.default.gc_thresh3 is {limit} on this machine: flooding past it would \
         take too long; run the test where it is at most 16384"
    );
    let lan = Lan::new(1)?;
    let attacker = &lan.clients[0];
    let daemon = Daemon::start(&lan, &[])?;
    let overflows = r#"hotspotd_neighbour_table_overflows_total{family="ipv6"}"#;
    let read = wait_for(Duration::from_secs(10), || {
        daemon.metric(overflows).is_ok_and(|value| value.is_some())
    });
    ensure!(
        read,
        "the IPv6 table is read at start; log:\n{}",
        daemon.log()
    );
    let before = daemon.metric(overflows)?.unwrap_or_default();
    let small_table_warned = daemon
        .log()
        .contains(&format!("net.ipv6.neigh.default.gc_thresh3 is {limit}:"));
    ensure!(
        small_table_warned == (limit < 4_096),
        "a table below 4096 entries is warned about at start, a larger one is not ({limit}); \
         log:\n{}",
        daemon.log()
    );

    // Solicitations for the gateway's address from random addresses of the LAN's prefix:
    // each makes an entry, until the table is full. Entries younger than 5 s cannot be
    // collected, so past the limit (with room for entries others collect) every one is
    // refused.
    let sender = FrameSender::open(&attacker.netns, CLIENT_IFACE)?;
    let (own_mac, gateway_mac) = (mac_of(&attacker.mac)?, mac_of(lan.bridge_mac())?);
    let mut rng = XorShift::new(16);
    let flood = limit + 400;
    for _ in 0..flood {
        let host = u128::from(rng.next_u64()) | 1;
        let source = Ipv6Addr::from((u128::from(attacker.ipv6) & !u128::from(u64::MAX)) | host);
        let solicitation = frames::neighbour_solicitation(
            own_mac,
            source.octets(),
            GATEWAY_LAN_V6.octets(),
            GATEWAY_LAN_V6.octets(),
        );
        sender.send(&frames::ethernet(
            gateway_mac,
            own_mac,
            &[],
            ETH_P_IPV6,
            &solicitation,
        ))?;
    }
    // The table is the whole machine's: empty what the flood put in at once, so other tests
    // running meanwhile can make entries again. The kernel's count of refusals stays.
    std::thread::sleep(Duration::from_millis(200));
    lan.gateway
        .ip(&["-6", "neigh", "flush", "dev", LAN_IFACE])?;

    let warned = |log: &str| {
        log.lines().any(|line| {
            line.contains("WARN")
                && line.contains("IPv6 neighbour table overflowed")
                && line.contains("raise net.ipv6.neigh.default.gc_thresh3")
        })
    };
    let noticed = wait_for(Duration::from_secs(15), || warned(&daemon.log()));
    ensure!(
        noticed,
        "the overflow is warned about within 15 s; log:\n{}",
        daemon.log()
    );
    let after = daemon.metric(overflows)?.unwrap_or_default();
    ensure!(
        after > before,
        "the metric counts the refused entries: {before} before, {after} after {flood} \
         solicitations"
    );
    Ok(())
}
