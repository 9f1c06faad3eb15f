//! Self-test of the namespace harness: forwarding and local traffic on both families, bulk
//! TCP both ways, cleanup on drop and after a panic, and parallel LANs. Needs root.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use anyhow::{Result, anyhow, bail, ensure};
use hotspotd_tests::{
    GATEWAY_LAN_V4, GATEWAY_LAN_V6, INTERNET_V4, INTERNET_V6, Lan, Netns, TcpSink, TcpSource,
    UdpEcho, ip_bytes_udp, tcp_receive, tcp_send, udp_ping_pong,
};

const MEGABYTE: u64 = 1_000_000;

fn names(lan: &Lan) -> Vec<String> {
    lan.namespaces().map(|ns| ns.name().to_owned()).collect()
}

fn assert_gone(names: &[String]) -> Result<()> {
    let existing: HashSet<String> = Netns::list()?.into_iter().collect();
    let left: Vec<&String> = names.iter().filter(|n| existing.contains(*n)).collect();
    ensure!(
        left.is_empty(),
        "namespaces still exist after drop: {left:?}"
    );
    Ok(())
}

#[test]
fn clients_reach_the_internet_and_the_gateway_on_both_families() -> Result<()> {
    let lan = Lan::new(3)?;
    let echoes = [
        UdpEcho::start(&lan.internet, SocketAddr::new(INTERNET_V4.into(), 7))?,
        UdpEcho::start(&lan.internet, SocketAddr::new(INTERNET_V6.into(), 7))?,
        UdpEcho::start(&lan.gateway, SocketAddr::new(GATEWAY_LAN_V4.into(), 7))?,
        UdpEcho::start(&lan.gateway, SocketAddr::new(GATEWAY_LAN_V6.into(), 7))?,
    ];
    for client in &lan.clients {
        for echo in &echoes {
            let round_trips = udp_ping_pong(&client.netns, echo.addr(), 1000, 5)?;
            assert_eq!(round_trips, 5, "{} to {}", client.netns.name(), echo.addr());
        }
    }
    for echo in &echoes {
        assert_eq!(
            echo.received(),
            3 * 5,
            "datagrams echoed by {}",
            echo.addr()
        );
    }

    // Each client is distinct: own MAC, own addresses, and the MAC is what the gateway sees.
    let macs: HashSet<&str> = lan.clients.iter().map(|c| c.mac.as_str()).collect();
    assert_eq!(macs.len(), 3);
    let neighbours = lan.gateway.ip(&["neigh", "show", "dev", "br-lan"])?;
    for client in &lan.clients {
        assert_eq!(client.mac, client.mac.to_lowercase());
        let line = neighbours
            .lines()
            .find(|l| l.starts_with(&format!("{} ", client.ipv4)))
            .ok_or_else(|| anyhow!("gateway has no ARP entry for {}", client.ipv4))?;
        assert!(
            line.contains(&client.mac),
            "{line} should name {}",
            client.mac
        );
    }
    Ok(())
}

#[test]
fn a_closed_port_is_an_error_not_a_retry() -> Result<()> {
    let lan = Lan::new(1)?;
    let nothing_there = SocketAddr::new(INTERNET_V4.into(), 9);
    assert!(udp_ping_pong(&lan.clients[0].netns, nothing_there, 10, 1).is_err());
    Ok(())
}

#[test]
fn tcp_moves_a_megabyte_both_ways_on_both_families() -> Result<()> {
    let lan = Lan::new(1)?;
    let client = &lan.clients[0];
    for ip in [IpAddr::from(INTERNET_V4), IpAddr::from(INTERNET_V6)] {
        let sink = TcpSink::start(&lan.internet, SocketAddr::new(ip, 0))?;
        assert_eq!(tcp_send(&client.netns, sink.addr(), MEGABYTE)?, MEGABYTE);
        assert_eq!(sink.received(), MEGABYTE, "upload to {ip}");

        let source = TcpSource::start(&lan.internet, SocketAddr::new(ip, 0), MEGABYTE)?;
        assert_eq!(
            tcp_receive(&client.netns, source.addr())?,
            MEGABYTE,
            "download from {ip}"
        );
        assert_eq!(source.sent(), MEGABYTE);
    }
    Ok(())
}

#[test]
fn dropping_a_lan_deletes_its_namespaces() -> Result<()> {
    let lan = Lan::new(2)?;
    let names = names(&lan);
    assert_eq!(names.len(), 4);
    let existing = Netns::list()?;
    for name in &names {
        assert!(
            existing.contains(name),
            "{name} should exist while the Lan lives"
        );
    }
    drop(lan);
    assert_gone(&names)
}

#[test]
fn lans_built_in_parallel_do_not_collide() -> Result<()> {
    let builders: Vec<_> = (0..2)
        .map(|_| {
            thread::spawn(|| -> Result<(Vec<String>, Vec<String>)> {
                let lan = Lan::new(2)?;
                for client in &lan.clients {
                    let echo =
                        UdpEcho::start(&lan.internet, SocketAddr::new(INTERNET_V6.into(), 0))?;
                    udp_ping_pong(&client.netns, echo.addr(), 100, 3)?;
                }
                let macs = lan.clients.iter().map(|c| c.mac.clone()).collect();
                Ok((names(&lan), macs))
            })
        })
        .collect();
    let mut all_names = HashSet::new();
    let mut all_macs = HashSet::new();
    let mut built = Vec::new();
    for builder in builders {
        let (names, macs) = builder
            .join()
            .map_err(|_| anyhow!("a LAN builder thread panicked"))??;
        for name in &names {
            assert!(
                all_names.insert(name.clone()),
                "namespace {name} built twice"
            );
        }
        for mac in macs {
            assert!(all_macs.insert(mac.clone()), "MAC {mac} used by two LANs");
        }
        built.extend(names);
    }
    assert_gone(&built)
}

#[test]
fn a_panic_in_a_test_still_cleans_up() -> Result<()> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&seen);
    let outcome = panic::catch_unwind(AssertUnwindSafe(move || {
        let lan = Lan::new(1).map_err(|e| format!("{e:#}"))?;
        *recorded.lock().unwrap_or_else(PoisonError::into_inner) = names(&lan);
        panic!("deliberate failure while a Lan is alive");
        #[expect(
            unreachable_code,
            reason = "the closure's type needs a value after the panic"
        )]
        Ok::<(), String>(())
    }));
    match outcome {
        Err(_) => {}
        Ok(Err(e)) => bail!("building the Lan failed: {e}"),
        Ok(Ok(())) => bail!("the closure should have panicked"),
    }
    let names = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
    ensure!(names.len() == 3, "the Lan was not built: {names:?}");
    assert_gone(&names)
}

#[test]
fn ip_bytes_udp_adds_the_headers() {
    assert_eq!(ip_bytes_udp(1000, false), 1028);
    assert_eq!(ip_bytes_udp(1000, true), 1048);
    assert_eq!(ip_bytes_udp(0, true), 48);
}
