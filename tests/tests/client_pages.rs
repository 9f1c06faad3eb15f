//! End to end: `GET /v1/clients` a page at a time (`search`, `state`, `offset`, `limit`, and the
//! number that match in `X-Total-Count`), and `hotspotctl clients` with the same flags: what a
//! dashboard at 10,000 clients needs instead of the whole list. Needs root.

use std::time::Duration;

use anyhow::{Result, ensure};
use hotspotd_tests::{
    Daemon, GATEWAY_LAN_V4, Lan,
    http::{Answer, exchange, listing, request},
    wait_for,
};
use serde_json::Value;

/// Clients that hold a session without having sent anything: listed all the same.
const HOLDERS: [&str; 5] = [
    "02:00:00:00:00:01",
    "02:00:00:00:00:02",
    "02:00:00:00:00:03",
    "02:00:00:00:00:04",
    "02:00:00:00:00:05",
];

fn get(daemon: &Daemon, target: &str) -> Result<Answer> {
    exchange(daemon.socket(), &request("GET", target, &[], b""))
}

/// The page's MACs and the total the header gives.
fn page(daemon: &Daemon, target: &str) -> Result<(Vec<String>, usize)> {
    let (rows, total) = listing(daemon.socket(), target)?;
    let macs = rows
        .iter()
        .filter_map(|client| Some(client["mac"].as_str()?.to_owned()))
        .collect();
    Ok((macs, usize::try_from(total)?))
}

/// Five clients sold a session (the first two connected) and one that sent to the box.
fn holders_and_a_sender(daemon: &Daemon, lan: &Lan) -> Result<()> {
    for mac in HOLDERS {
        let added = daemon.ctl(&[
            "session",
            "add",
            "--mac",
            mac,
            "--type",
            "time",
            "--time-secs",
            "3600",
            "--global-speed",
        ])?;
        ensure!(added.status.success(), "{added:?}");
    }
    for mac in &HOLDERS[..2] {
        let connected = daemon.ctl(&["connect", "--mac", mac])?;
        ensure!(connected.status.success(), "{connected:?}");
    }
    // The LAN's client sends to the box: seen, with its addresses.
    let sender = &lan.clients[0];
    sender.netns.run(|| -> Result<()> {
        let socket = std::net::UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, 0))?;
        socket.send_to(b"hello", (GATEWAY_LAN_V4, 9))?;
        Ok(())
    })??;
    let sender_row = |daemon: &Daemon| -> Option<Value> {
        let answer = get(daemon, &format!("/v1/clients/{}", sender.mac)).ok()?;
        answer.json()
    };
    ensure!(
        wait_for(Duration::from_secs(10), || sender_row(daemon).is_some_and(
            |row| row["ips"]
                .as_array()
                .is_some_and(|ips| ips.iter().any(|ip| *ip == sender.ipv4.to_string()))
        )),
        "the sender is listed with its address: {:?}",
        sender_row(daemon)
    );
    Ok(())
}

#[test]
fn clients_come_a_page_at_a_time_with_search_state_and_the_total() -> Result<()> {
    let lan = Lan::new(1)?;
    let daemon = Daemon::start(&lan, &[])?;
    holders_and_a_sender(&daemon, &lan)?;
    let sender = &lan.clients[0];
    // Pages in MAC order, which together are the whole list.
    let (all, total) = page(&daemon, "/v1/clients")?;
    ensure!(total == 6 && all.len() == 6 && all.is_sorted(), "{all:?}");
    let mut paged = Vec::new();
    for offset in [0, 2, 4] {
        let (macs, total) = page(&daemon, &format!("/v1/clients?offset={offset}&limit=2"))?;
        ensure!(
            macs.len() == 2 && total == 6,
            "offset {offset}: {macs:?} of {total}"
        );
        paged.extend(macs);
    }
    ensure!(paged == all, "the pages {paged:?} are the list {all:?}");
    let (past_the_end, total) = page(&daemon, "/v1/clients?offset=6&limit=10")?;
    ensure!(past_the_end.is_empty() && total == 6, "{past_the_end:?}");

    // Filters: the total counts what matches, not the page.
    let (connected, total) = page(&daemon, "/v1/clients?state=connected&limit=1")?;
    ensure!(
        connected == [HOLDERS[0]] && total == 2,
        "{connected:?} of {total}"
    );
    let (holders, total) = page(&daemon, "/v1/clients?search=02:00:00:00:00:0")?;
    ensure!(holders == HOLDERS && total == 5, "{holders:?}");
    let (by_address, total) = page(&daemon, &format!("/v1/clients?search={}", sender.ipv4))?;
    ensure!(
        by_address == [sender.mac.clone()] && total == 1,
        "{by_address:?}"
    );
    let (by_case, _) = page(
        &daemon,
        &format!("/v1/clients?search={}", sender.mac.to_uppercase()),
    )?;
    ensure!(
        by_case == [sender.mac.clone()],
        "search ignores case: {by_case:?}"
    );

    // Wrong parameters: 400 with a sentence naming the parameter; nothing else happens.
    for (target, says) in [
        ("/v1/clients?limit=0", "limit"),
        ("/v1/clients?limit=1001", "limit"),
        ("/v1/clients?offset=-1", "offset"),
        ("/v1/clients?state=gone", "state"),
        ("/v1/clients?search=zz", "search"),
        ("/v1/clients?search=", "search"),
    ] {
        let answer = get(&daemon, target)?;
        let body: Value = answer.json().unwrap_or_default();
        ensure!(
            answer.status == 400
                && body["error"]["code"] == "bad_request"
                && body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(says)),
            "{target}: {answer:?}"
        );
    }

    // hotspotctl clients takes the same.
    let listed = daemon.ctl_json(&[
        "clients",
        "--state",
        "connected",
        "--offset",
        "1",
        "--limit",
        "1",
    ])?;
    ensure!(
        listed
            .as_array()
            .is_some_and(|rows| rows.len() == 1 && rows[0]["mac"] == HOLDERS[1]),
        "{listed}"
    );
    let refused = daemon.ctl(&["clients", "--search", "not-a-mac"])?;
    ensure!(
        !refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("search"),
        "{refused:?}"
    );
    Ok(())
}
