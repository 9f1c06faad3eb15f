//! End to end: an attacker on the LAN working through the box's own state (issue 16,
//! docs/reliability.md "An attacker on the LAN"): a neighbour entry pointed at a group MAC, a
//! flood of MACs filling the kernel's tables before a client pays, another client's address
//! claimed to be sold its payment, the box's own services as a tunnel, and WAN packets wearing
//! the box's address. Raw frames from client namespaces, real traffic, real kernel.

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use hotspotd_tests::frames::{
    BROADCAST_MAC, ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, IPPROTO_UDP, Ipv4Shape, Mac, arp_request,
    client_mac, ethernet, internet_checksum, ipv4_routable, ipv6, mac_of, padded, udp,
};
use hotspotd_tests::{
    CLIENT_IFACE, Client, Daemon, FrameCapture, FrameSender, GATEWAY_LAN_V4, GATEWAY_LAN_V6,
    INTERNET_IFACE, LAN_IFACE, Lan, UdpEcho, UdpSink, UdpStream, ip_bytes_udp, udp_ping_pong,
    wait_for,
};
use serde_json::Value;

/// A datagram of the streams here: 1,000 bytes of payload, 1,028 IP bytes.
const PAYLOAD: usize = 1_000;
/// The first MAC of IPv6 multicast, which a neighbour solicitation can claim.
const IPV6_GROUP_MAC: Mac = [0x33, 0x33, 0, 0, 0, 1];
/// How long a poll and a few packets may take to show in `hotspotctl`.
const SHOWN_WITHIN: Duration = Duration::from_secs(5);

/// Keeps sending `frames` from `client`'s link every 50 ms until dropped: an attacker who
/// renews a claim the box would otherwise forget or correct.
struct Repeater {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Repeater {
    fn start(client: &Client, frames: Vec<Vec<u8>>) -> Result<Repeater> {
        let link = FrameSender::open(&client.netns, CLIENT_IFACE)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                for frame in &frames {
                    let _ = link.send(frame);
                }
                thread::sleep(Duration::from_millis(50));
            }
        });
        Ok(Repeater {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Repeater {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An ARP request to the gateway saying `ip` is at `claimed` (sent from `from`'s own MAC).
fn arp_claim(from: Mac, claimed: Mac, ip: [u8; 4]) -> Vec<u8> {
    padded(ethernet(
        BROADCAST_MAC,
        from,
        &[],
        ETH_P_ARP,
        &arp_request(claimed, ip, GATEWAY_LAN_V4.octets()),
    ))
}

/// A neighbour solicitation for the gateway's address from `ip`, saying `ip` is at `claimed`
/// (its source link-layer address option).
fn solicitation_claim(from: Mac, claimed: Mac, ip: Ipv6Addr) -> Vec<u8> {
    const ICMPV6: u8 = 58;
    let target = GATEWAY_LAN_V6.octets();
    // The solicited-node group of the target, and its MAC.
    let mut group = [0u8; 16];
    group[..2].copy_from_slice(&[0xff, 0x02]);
    group[11..13].copy_from_slice(&[0x01, 0xff]);
    group[13..].copy_from_slice(&target[13..]);
    let group_mac = [0x33, 0x33, 0xff, target[13], target[14], target[15]];
    let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&target);
    icmp.extend_from_slice(&[1, 1]);
    icmp.extend_from_slice(&claimed);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&ip.octets());
    pseudo.extend_from_slice(&group);
    pseudo.extend_from_slice(&u32::try_from(icmp.len()).unwrap_or(0).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, ICMPV6]);
    pseudo.extend_from_slice(&icmp);
    icmp[2..4].copy_from_slice(&internet_checksum(&pseudo).to_be_bytes());
    let mut packet = ipv6(ip.octets(), group, ICMPV6, &icmp);
    // Neighbour discovery is only believed with a hop limit of 255 (RFC 4861).
    packet[7] = 255;
    ethernet(group_mac, from, &[], ETH_P_IPV6, &packet)
}

/// `ip neigh show dev br-lan` on the gateway.
fn neighbours(lan: &Lan) -> Result<String> {
    lan.gateway.ip(&["neigh", "show", "dev", LAN_IFACE])
}

/// The kernel counter `name` of `hotspotctl status`.
fn kernel_stat(daemon: &Daemon, name: &str) -> u64 {
    daemon
        .ctl_json(&["status"])
        .ok()
        .and_then(|status| status["kernel"][name].as_u64())
        .unwrap_or(0)
}

#[test]
fn downloads_to_a_client_that_claims_a_group_mac_are_dropped_and_the_claim_undone() -> Result<()> {
    let lan = Lan::new(3)?;
    let [payer, freeloader, bystander] = [0, 1, 2].map(|i| &lan.clients[i]);
    let daemon = Daemon::start(&lan, &[])?;
    daemon.connect_for_an_hour(&payer.mac)?;
    let payer_mac = mac_of(&payer.mac)?;
    let freeloader_mac = mac_of(&freeloader.mac)?;
    let sinks = [payer, freeloader]
        .map(|client| UdpSink::start(&client.netns, SocketAddr::new(client.ipv4.into(), 0)));
    let [payer_sink, freeloader_sink] = sinks;
    let (payer_sink, freeloader_sink) = (payer_sink?, freeloader_sink?);
    let copies = FrameCapture::start(&bystander.netns, CLIENT_IFACE)?;

    // Both claim their own addresses are at the broadcast MAC (IPv4) and at an IPv6 group
    // MAC, over and over, while the internet sends to both.
    let claims = |client: &Client, mac: Mac| -> Result<Repeater> {
        Repeater::start(
            client,
            vec![
                arp_claim(mac, BROADCAST_MAC, client.ipv4.octets()),
                solicitation_claim(mac, IPV6_GROUP_MAC, client.ipv6),
            ],
        )
    };
    let payer_claims = claims(payer, payer_mac)?;
    let freeloader_claims = claims(freeloader, freeloader_mac)?;
    let poisoned = wait_for(Duration::from_secs(3), || {
        neighbours(&lan).is_ok_and(|table| table.contains("ff:ff:ff:ff:ff:ff"))
    });
    ensure!(
        poisoned,
        "the claims never reached the gateway's neighbour table: {}",
        neighbours(&lan)?
    );
    let period = Duration::from_millis(1);
    let length = Duration::from_secs(3);
    let to_payer = UdpStream::start(&lan.internet, payer_sink.addr(), PAYLOAD, period, length)?;
    let to_freeloader = UdpStream::start(
        &lan.internet,
        freeloader_sink.addr(),
        PAYLOAD,
        period,
        length,
    )?;
    ensure!(
        wait_for(length * 2, || to_payer.finished()
            && to_freeloader.finished()),
        "the streams did not end"
    );
    drop((payer_claims, freeloader_claims));
    payer_sink.sync(&lan.gateway)?;
    freeloader_sink.sync(&lan.gateway)?;

    let dropped = kernel_stat(&daemon, "dropped_group_destination_packets");
    eprintln!(
        "sent {} and {}; the payer got {}, the freeloader {}; {dropped} dropped for a group MAC",
        to_payer.sent(),
        to_freeloader.sent(),
        payer_sink.received(),
        freeloader_sink.received()
    );
    ensure!(dropped > 0, "nothing was forwarded to a group MAC");
    ensure!(
        freeloader_sink.received() == 0,
        "the client without a session got {} datagrams",
        freeloader_sink.received()
    );
    // What the payer got was billed, to the byte: nothing passed by the group MAC.
    let received = payer_sink.received_ip_bytes();
    let mut row = Value::Null;
    let billed = wait_for(SHOWN_WITHIN, || {
        row = daemon.client(&payer.mac).unwrap_or(Value::Null);
        row["down_bytes"].as_u64() == Some(received)
    });
    ensure!(billed, "received {received} bytes, billed {row}");
    let leaked = copies
        .frames()
        .iter()
        // The streams' datagrams (the box's own markers, also sent to the group MAC while
        // the entry is poisoned, are the box's and carry nothing of theirs).
        .filter(|frame| {
            frame.len() > 34
                && frame[12..14] == ETH_P_IPV4.to_be_bytes()
                && u64::from(u16::from_be_bytes([frame[16], frame[17]]))
                    == ip_bytes_udp(PAYLOAD, false)
        })
        .filter(|frame| {
            frame[30..34] == payer.ipv4.octets() || frame[30..34] == freeloader.ipv4.octets()
        })
        .count();
    ensure!(
        leaked == 0,
        "another client got {leaked} copies of their downloads"
    );

    // The daemon deleted the poisoned entries and said who claimed them.
    ensure!(
        wait_for(SHOWN_WITHIN, || neighbours(&lan).is_ok_and(|table| {
            !table.contains("ff:ff:ff:ff:ff:ff") && !table.contains("33:33:00:00:00:01")
        })),
        "the poisoned entries stay: {}",
        neighbours(&lan)?
    );
    let log = daemon.log();
    ensure!(
        log.contains("pointed its address at a group MAC") && log.contains(&freeloader.mac),
        "the log does not name the claim and its sender: {log}"
    );
    Ok(())
}

#[test]
fn a_flood_of_macs_leaves_a_new_paying_client_billed_to_the_packet() -> Result<()> {
    let lan = Lan::new(1)?;
    let client = &lan.clients[0];
    let daemon = Daemon::start(&lan, &[])?;
    let gateway = mac_of(lan.bridge_mac())?;
    let link = FrameSender::open(&client.netns, CLIENT_IFACE)?;
    // More made-up MACs than the kernel's table of clients without a session holds.
    let flood = hotspotd_common::MAX_SEEN + 616;
    // With a valid header checksum: the bridge drops IPv4 with a bad one before the box
    // sees it when bridge netfilter is loaded.
    let datagram = ipv4_routable(
        client.ipv4.octets(),
        hotspotd_tests::INTERNET_V4.octets(),
        IPPROTO_UDP,
        &Ipv4Shape::default(),
        &udp(40_000, 9, 18),
    );
    for n in 0..flood {
        link.send(&ethernet(
            gateway,
            client_mac(0x10_0000 + n),
            &[],
            ETH_P_IPV4,
            &datagram,
        ))?;
    }
    let full = wait_for(SHOWN_WITHIN, || {
        daemon.ctl_json(&["status"]).is_ok_and(|status| {
            status["kernel_maps"].as_array().is_some_and(|maps| {
                maps.iter()
                    .any(|map| map["map"] == "seen" && map["full"] == true)
            }) && status["clients"].as_u64() <= Some(u64::from(hotspotd_common::MAX_SEEN) + 1)
        })
    });
    ensure!(
        full,
        "status does not show the full table: {}",
        daemon.status()?
    );
    let status_text = daemon.ctl(&["status"])?;
    ensure!(
        String::from_utf8_lossy(&status_text.stdout).contains("FULL"),
        "hotspotctl status does not say a table is full"
    );
    ensure!(
        daemon
            .log()
            .contains("table of clients without a session is full"),
        "the log does not say the table is full"
    );

    // Now the client pays for 1 MB and downloads 3 MB: it is billed for every byte it got
    // and cut at its budget, one packet over at most.
    let sink = UdpSink::start(&client.netns, SocketAddr::new(client.ipv4.into(), 0))?;
    let session = daemon.add_session(
        &client.mac,
        &[
            "--type",
            "data",
            "--data-mb",
            "1",
            "--global-speed",
            "--connect",
        ],
    )?;
    let stream = UdpStream::start(
        &lan.internet,
        sink.addr(),
        PAYLOAD,
        Duration::from_micros(500),
        Duration::from_secs(2),
    )?;
    ensure!(
        wait_for(Duration::from_secs(5), || stream.finished()),
        "the stream did not end"
    );
    sink.sync(&lan.gateway)?;
    let received = sink.received_ip_bytes();
    let one_datagram = ip_bytes_udp(PAYLOAD, false);
    ensure!(
        received <= 1_000_000 + one_datagram && received + one_datagram > 1_000_000,
        "received {received} bytes of a 1 MB session"
    );
    let id = session["id"].as_i64().context("a session id")?;
    let mut row = Value::Null;
    let billed = wait_for(SHOWN_WITHIN, || {
        row = daemon.client(&client.mac).unwrap_or(Value::Null);
        row["down_bytes"].as_u64() == Some(received)
            && daemon.session(id).is_ok_and(|s| s["state"] == "consumed")
    });
    ensure!(
        billed,
        "received {received} bytes, billed {row}, session {}",
        daemon.session(id)?
    );
    eprintln!(
        "after {flood} made-up MACs: a 1 MB session received {received} bytes, billed {}",
        row["down_bytes"]
    );
    // A connect hands nothing out again.
    ensure!(
        !daemon
            .ctl(&["connect", "--mac", &client.mac])?
            .status
            .success(),
        "a connect after the budget was spent succeeded"
    );
    Ok(())
}

#[test]
fn a_pause_bills_from_the_spent_budget_what_the_counters_lost() -> Result<()> {
    // The last resort: the kernel's budget says what a grant let through, whatever was
    // counted. Here the client's counters are deleted behind the daemon's back after a
    // download (as a full table once lost them); the pause that follows still bills every
    // byte, and a connect does not hand the spent budget out again.
    let lan = Lan::new(1)?;
    let client = &lan.clients[0];
    // No poll during the test: every byte is in the counters the test then deletes.
    let daemon = Daemon::start(&lan, &[("HOTSPOTD__ACCOUNTING__POLL_INTERVAL_MS", "60000")])?;
    let sink = UdpSink::start(&client.netns, SocketAddr::new(client.ipv4.into(), 0))?;
    let session = daemon.add_session(
        &client.mac,
        &[
            "--type",
            "data",
            "--data-mb",
            "5",
            "--global-speed",
            "--connect",
        ],
    )?;
    let id = session["id"].as_i64().context("a session id")?;
    let stream = UdpStream::start(
        &lan.internet,
        sink.addr(),
        PAYLOAD,
        Duration::from_micros(500),
        Duration::from_millis(1_500),
    )?;
    ensure!(
        wait_for(Duration::from_secs(5), || stream.finished()),
        "the stream did not end"
    );
    sink.sync(&lan.gateway)?;
    daemon.lose_counters(mac_of(&client.mac)?)?;
    let received = sink.received_ip_bytes();
    daemon.ctl_json(&["pause", "--mac", &client.mac])?;
    let session = daemon.session(id)?;
    let billed_mb = session["data_cons"].as_f64().context("data_cons")?;
    #[expect(clippy::cast_precision_loss, reason = "bytes of a test download")]
    let received_mb = received as f64 / 1e6;
    eprintln!("received {received} bytes; billed {billed_mb} MB after the counters were lost");
    ensure!(
        (billed_mb - received_mb).abs() < 0.5e-6,
        "received {received} bytes, billed {billed_mb} MB: {session}"
    );
    ensure!(
        daemon.log().contains("billed from the budget"),
        "the log does not say the budget was billed"
    );
    Ok(())
}

#[test]
fn the_portal_gets_no_owner_for_an_address_another_client_claims() -> Result<()> {
    let lan = Lan::new(2)?;
    let [victim, attacker] = [0, 1].map(|i| &lan.clients[i]);
    let daemon = Daemon::start(&lan, &[])?;
    let dns = UdpEcho::start(&lan.gateway, SocketAddr::new(GATEWAY_LAN_V4.into(), 53))?;
    let victim_ip = victim.ipv4.to_string();
    let owner = || daemon.ctl(&["clients", "--ip", &victim_ip, "--json"]);
    let owned_by = |mac: &str| -> bool {
        owner().is_ok_and(|output| {
            serde_json::from_slice::<Value>(&output.stdout).is_ok_and(|rows| rows[0]["mac"] == mac)
        })
    };
    // An address nobody sent from has no owner.
    let nobody = daemon.ctl(&["clients", "--ip", "192.0.2.99"])?;
    ensure!(
        !nobody.status.success()
            && String::from_utf8_lossy(&nobody.stderr).contains("no client has sent from"),
        "an unused address: {nobody:?}"
    );
    // The victim asks the box's resolver something: the box now knows who sends from its
    // address.
    udp_ping_pong(&victim.netns, dns.addr(), 40, 2)?;
    ensure!(
        wait_for(SHOWN_WITHIN, || owned_by(&victim.mac)),
        "the victim's address is not found: {:?}",
        owner()?
    );

    // The attacker poisons the gateway's neighbour table with the victim's address: the
    // portal still finds the victim (the table is not asked), and the attacker is not listed
    // with the victim's address.
    let attacker_mac = mac_of(&attacker.mac)?;
    let link = FrameSender::open(&attacker.netns, CLIENT_IFACE)?;
    let poisoned = wait_for(Duration::from_secs(3), || {
        let _ = link.send(&arp_claim(attacker_mac, attacker_mac, victim.ipv4.octets()));
        thread::sleep(Duration::from_millis(100));
        neighbours(&lan).is_ok_and(|table| {
            table.lines().any(|line| {
                line.starts_with(&format!("{victim_ip} ")) && line.contains(&attacker.mac)
            })
        })
    });
    ensure!(
        poisoned,
        "the claim did not reach the neighbour table: {}",
        neighbours(&lan)?
    );
    thread::sleep(Duration::from_millis(1_500));
    ensure!(owned_by(&victim.mac), "after the ARP claim: {:?}", owner()?);
    let listed = daemon.client(&attacker.mac).unwrap_or(Value::Null);
    ensure!(
        !listed["ips"]
            .to_string()
            .contains(&format!("\"{victim_ip}\"")),
        "the attacker is listed with the victim's address: {listed}"
    );

    // The attacker sends from the victim's address: now two devices claim it, and nobody is
    // named as its owner (a portal would otherwise sell the victim's payment to it).
    let spoofed = ipv4_routable(
        victim.ipv4.octets(),
        GATEWAY_LAN_V4.octets(),
        IPPROTO_UDP,
        &Ipv4Shape::default(),
        &udp(40_000, 53, 20),
    );
    let gateway = mac_of(lan.bridge_mac())?;
    link.send(&ethernet(gateway, attacker_mac, &[], ETH_P_IPV4, &spoofed))?;
    let refused = wait_for(SHOWN_WITHIN, || {
        owner().is_ok_and(|output| {
            !output.status.success()
                && String::from_utf8_lossy(&output.stderr).contains("two devices claim it")
        })
    });
    ensure!(
        refused,
        "the claimed address still has an owner: {:?}",
        owner()?
    );
    for client in [victim, attacker] {
        let mut row = Value::Null;
        let flagged = wait_for(SHOWN_WITHIN, || {
            row = daemon.client(&client.mac).unwrap_or(Value::Null);
            row["address_conflicts"].to_string().contains(&victim_ip)
        });
        ensure!(flagged, "{} does not show the conflict: {row}", client.mac);
    }
    ensure!(
        daemon.log().contains("sent from another client's address"),
        "the log does not say an address moved"
    );
    Ok(())
}

#[test]
fn the_boxs_own_services_are_no_tunnel_and_wan_packets_with_its_address_are_gated() -> Result<()> {
    let lan = Lan::new(2)?;
    let [unpaid, payer] = [0, 1].map(|i| &lan.clients[i]);
    let daemon = Daemon::start(&lan, &[])?;
    // A relay on the box (as a VXLAN endpoint, a proxy or SSH would be), on a port that is
    // not one of the box's free client services.
    let relay = UdpEcho::start(&lan.gateway, SocketAddr::new(GATEWAY_LAN_V4.into(), 4789))?;
    ensure!(
        udp_ping_pong(&unpaid.netns, relay.addr(), 500, 5).is_err(),
        "a client without a session reached the relay on the box"
    );
    ensure!(
        relay.received() == 0,
        "the relay got {} datagrams",
        relay.received()
    );

    // A paying client may use it, and pays for it like for the internet, both ways.
    daemon.connect_for_an_hour(&payer.mac)?;
    udp_ping_pong(&payer.netns, relay.addr(), 500, 20)?;
    let each_way = 20 * ip_bytes_udp(500, false);
    let mut row = Value::Null;
    let billed = wait_for(SHOWN_WITHIN, || {
        row = daemon.client(&payer.mac).unwrap_or(Value::Null);
        row["up_bytes"].as_u64() == Some(each_way) && row["down_bytes"].as_u64() == Some(each_way)
    });
    ensure!(billed, "the relay's traffic was not billed: {row}");

    // From the WAN side, packets carrying the box's own LAN address as their source reach
    // nobody without a session: they are forwarded, not the box's.
    let sink = UdpSink::start(&unpaid.netns, SocketAddr::new(unpaid.ipv6.into(), 0))?;
    let box_v6 = GATEWAY_LAN_V6.to_string();
    lan.internet.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{box_v6}/128"),
        "dev",
        INTERNET_IFACE,
        "nodad",
    ])?;
    let target = sink.addr();
    let sent = lan.internet.run(move || -> io::Result<u32> {
        let socket = UdpSocket::bind(SocketAddr::new(IpAddr::V6(GATEWAY_LAN_V6), 0))?;
        let mut sent = 0;
        for _ in 0..50 {
            if socket.send_to(&[0x5a; 64], target).is_ok() {
                sent += 1;
            }
            thread::sleep(Duration::from_millis(2));
        }
        Ok(sent)
    })??;
    thread::sleep(Duration::from_millis(300));
    ensure!(sent > 0, "nothing could be sent from the box's address");
    ensure!(
        sink.received() == 0,
        "{} of {sent} datagrams with the box's address as source reached a client without a session",
        sink.received()
    );
    Ok(())
}

#[test]
fn a_client_without_a_grant_gives_its_room_in_usage_back() -> Result<()> {
    // A paying client's counters live in USAGE, room the daemon makes before the grant; a
    // poll after its grant goes, the room is given back and the client is counted in SEEN,
    // so USAGE holds only clients with grants (and the few just revoked).
    let lan = Lan::new(1)?;
    let client = &lan.clients[0];
    let mac = mac_of(&client.mac)?;
    let daemon = Daemon::start(&lan, &[])?;
    daemon.connect_for_an_hour(&client.mac)?;
    ensure!(
        daemon
            .kernel_counters(hotspotd_common::MAP_USAGE, mac)?
            .is_some(),
        "no room was made before the grant"
    );
    daemon.ctl_json(&["pause", "--mac", &client.mac])?;
    ensure!(
        wait_for(SHOWN_WITHIN, || daemon
            .kernel_counters(hotspotd_common::MAP_USAGE, mac)
            .is_ok_and(|usage| usage.is_none())),
        "the room in USAGE was not given back after the pause"
    );
    // Its traffic is counted on, in SEEN: a ping to the box.
    let dns = UdpEcho::start(&lan.gateway, SocketAddr::new(GATEWAY_LAN_V4.into(), 53))?;
    udp_ping_pong(&client.netns, dns.addr(), 40, 2)?;
    ensure!(
        daemon
            .kernel_counters(hotspotd_common::MAP_SEEN, mac)?
            .is_some(),
        "the paused client is not counted in SEEN"
    );
    // Connected again, it gets room again.
    daemon.ctl_json(&["connect", "--mac", &client.mac])?;
    ensure!(
        daemon
            .kernel_counters(hotspotd_common::MAP_USAGE, mac)?
            .is_some(),
        "no room was made for the new grant"
    );
    Ok(())
}
