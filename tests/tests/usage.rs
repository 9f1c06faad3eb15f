//! End to end: the usage history and the sales (docs/usage.md). Clients on a namespace LAN
//! are sold sessions with prices and send known traffic; `hotspotctl usage` and `sales` (and
//! their CSV) show exactly those bytes and prices, per client and per session, and a restart
//! neither loses nor counts them twice. Needs root (namespaces, eBPF); CI runs as root.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use anyhow::{Context as _, Result, ensure};
use hotspotd_tests::http::{Answer, exchange, request};
use hotspotd_tests::{Daemon, INTERNET_V4, Lan, UdpEcho, ip_bytes_udp, udp_ping_pong, wait_for};
use serde_json::Value;

/// Saves every second, so the history shows traffic soon.
const ENV: &[(&str, &str)] = &[
    ("HOTSPOTD__STORE__SAVE_INTERVAL_SECS", "1"),
    ("HOTSPOTD__SALES__CURRENCY", "EUR"),
];

/// Sums of a client's history rows: up bytes, down bytes, connected seconds.
fn sums(rows: &Value) -> (u64, u64, u64) {
    rows.as_array()
        .into_iter()
        .flatten()
        .fold((0, 0, 0), |(up, down, secs), row| {
            (
                up + row["up_bytes"].as_u64().unwrap_or(0),
                down + row["down_bytes"].as_u64().unwrap_or(0),
                secs + row["connected_secs"].as_u64().unwrap_or(0),
            )
        })
}

/// Waits until the history of `mac` adds up to `bytes` each way and to at least `secs`.
fn wait_for_usage(daemon: &Daemon, mac: &str, bytes: u64, secs: u64) -> Result<Value> {
    let mut last = Value::Null;
    let held = wait_for(Duration::from_secs(10), || {
        last = daemon
            .ctl_json(&["usage", "--mac", mac, "--per-session"])
            .unwrap_or(Value::Null);
        let (up, down, connected) = sums(&last);
        up == bytes && down == bytes && connected >= secs
    });
    ensure!(
        held,
        "the history of {mac} never showed {bytes} bytes each way and {secs} s: {last:#}"
    );
    Ok(last)
}

#[test]
fn usage_and_sales_are_kept_exactly_and_survive_a_restart() -> Result<()> {
    let lan = Lan::new(2)?;
    let mut daemon = Daemon::start(&lan, ENV)?;
    let echo = UdpEcho::start(&lan.internet, SocketAddr::new(IpAddr::V4(INTERNET_V4), 0))?;
    let (first, second) = (&lan.clients[0], &lan.clients[1]);
    let sold = daemon.add_session(
        &first.mac,
        &[
            "--type",
            "time",
            "--time-secs",
            "3600",
            "--global-speed",
            "--connect",
            "--price",
            "2.50",
        ],
    )?;
    let first_id = sold["id"].as_i64().context("a session id")?;
    let sold = daemon.add_session(
        &second.mac,
        &[
            "--type",
            "data",
            "--data-mb",
            "100",
            "--global-speed",
            "--connect",
            "--provider",
            "portal",
            "--price",
            "0.125",
        ],
    )?;
    let second_id = sold["id"].as_i64().context("a session id")?;
    // A price that is not one is refused with the way to write it, and sells nothing.
    let refused = daemon.ctl(&[
        "session",
        "add",
        "--mac",
        &first.mac,
        "--type",
        "time",
        "--time-secs",
        "60",
        "--price",
        "2,50",
    ])?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    ensure!(
        !refused.status.success() && stderr.contains("like 2.50"),
        "a bad price: {stderr}"
    );

    udp_ping_pong(&first.netns, echo.addr(), 700, 9)?;
    udp_ping_pong(&second.netns, echo.addr(), 300, 4)?;
    let first_bytes = ip_bytes_udp(700, false) * 9;
    let second_bytes = ip_bytes_udp(300, false) * 4;
    // Connected for a few saves: the seconds count too.
    std::thread::sleep(Duration::from_secs(3));
    let rows = wait_for_usage(&daemon, &first.mac, first_bytes, 2)?;
    ensure!(
        rows.as_array()
            .into_iter()
            .flatten()
            .all(|row| row["session_id"] == first_id),
        "every byte of the first client under its session {first_id}: {rows:#}"
    );
    wait_for_usage(&daemon, &second.mac, second_bytes, 1)?;

    check_sales(&daemon, second_id, &second.mac)?;
    let csv = daemon.ctl(&["usage", "--by", "day", "--csv"])?;
    let csv = String::from_utf8_lossy(&csv.stdout).into_owned();
    ensure!(
        csv.lines().next() == Some("start,mac,session_id,up_bytes,down_bytes,connected_secs")
            && csv.contains(&format!(",{},,{first_bytes},{first_bytes},", first.mac)),
        "usage CSV, per client by day: {csv}"
    );

    // A crash and a restart carry on: the history and the totals are saved in one transaction,
    // so nothing is lost and nothing counted twice.
    daemon.kill()?;
    daemon.restart(&lan)?;
    udp_ping_pong(&first.netns, echo.addr(), 100, 2)?;
    let more = first_bytes + ip_bytes_udp(100, false) * 2;
    wait_for_usage(&daemon, &first.mac, more, 2)?;
    std::thread::sleep(Duration::from_secs(2));
    let (up, down, _) = sums(&daemon.ctl_json(&["usage", "--mac", &first.mac])?);
    ensure!(
        (up, down) == (more, more),
        "after the restart and two more saves: {up}/{down}, not {more}"
    );
    let sales = daemon.ctl_json(&["sales"])?;
    ensure!(
        sales["count"] == 2,
        "the sales survive the restart: {sales:#}"
    );

    bad_queries_are_refused(&daemon)
}

/// The two sales of the test: providers, prices and their exact sum, as JSON, CSV and a table.
fn check_sales(daemon: &Daemon, second_id: i64, second_mac: &str) -> Result<()> {
    let table = daemon.ctl(&["sales"])?;
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    ensure!(table.contains("2 sales, 2.625 EUR"), "sales table: {table}");
    let sales = daemon.ctl_json(&["sales", "--since", "1h"])?;
    ensure!(sales["count"] == 2, "two sales: {sales:#}");
    ensure!(
        sales["totals"]["EUR"] == "2.625",
        "2.50 + 0.125 EUR, exactly: {sales:#}"
    );
    let providers: Vec<(&str, &str)> = sales["sales"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|sale| Some((sale["provider"].as_str()?, sale["price"].as_str()?)))
        .collect();
    ensure!(
        providers == [("cli", "2.50"), ("portal", "0.125")],
        "{sales:#}"
    );
    let csv = daemon.ctl(&["sales", "--csv", "--provider", "portal"])?;
    let csv = String::from_utf8_lossy(&csv.stdout).into_owned();
    ensure!(
        csv.starts_with("sold_at,session_id,mac,provider,type,time_secs,data_mb,price,currency\n")
            && csv.contains(&format!(
                ",{second_id},{second_mac},\"portal\",data,0,100,0.125,EUR
"
            ))
            && csv.lines().count() == 2,
        "sales CSV: {csv}"
    );
    Ok(())
}

fn bad_queries_are_refused(daemon: &Daemon) -> Result<()> {
    // Bad queries are refused with what to write.
    for (args, says) in [
        (&["usage", "--since", "yesterday"][..], "RFC 3339"),
        (&["usage", "--limit", "0"][..], "1 to 100000"),
        (&["sales", "--until", "5y"][..], "span back"),
    ] {
        let output = daemon.ctl(args)?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        ensure!(
            !output.status.success() && stderr.contains(says),
            "{args:?}: {stderr}"
        );
    }
    Ok(())
}

fn api(daemon: &Daemon, method: &str, path: &str, body: Option<&Value>) -> Result<Answer> {
    let body = body.map(Value::to_string).unwrap_or_default();
    exchange(
        daemon.socket(),
        &request(
            method,
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        ),
    )
}

#[test]
fn vouchers_and_the_api_sell_with_prices_and_the_api_reads_them() -> Result<()> {
    let lan = Lan::new(2)?;
    let daemon = Daemon::start(&lan, ENV)?;
    let (first, second) = (&lan.clients[0], &lan.clients[1]);
    let created = daemon.ctl_json(&[
        "voucher",
        "create",
        "--count",
        "1",
        "--type",
        "time",
        "--time-secs",
        "600",
        "--global-speed",
        "--price",
        "1.75",
    ])?;
    let voucher = &created[0];
    ensure!(
        voucher["price"] == "1.75",
        "the voucher keeps its price: {voucher:#}"
    );
    let code = voucher["code"].as_str().context("a code")?;
    let redeemed = api(
        &daemon,
        "POST",
        "/v1/vouchers/redeem",
        Some(&serde_json::json!({ "mac": first.mac, "code": code })),
    )?;
    ensure!(redeemed.status == 200, "{redeemed:?}");
    // A JSON number is read from its decimal text: 3.5, not 3.4999….
    let sold = api(
        &daemon,
        "POST",
        "/v1/sessions",
        Some(&serde_json::json!({
            "mac": second.mac, "type": "time", "time_secs": 60, "use_global_speed": true,
            "price": 3.5
        })),
    )?;
    ensure!(sold.status == 201, "{sold:?}");
    let bad = api(
        &daemon,
        "POST",
        "/v1/sessions",
        Some(&serde_json::json!({
            "mac": second.mac, "type": "time", "time_secs": 60, "use_global_speed": true,
            "price": -1
        })),
    )?;
    ensure!(
        bad.status == 400 && bad.body.contains("like 2.50"),
        "{bad:?}"
    );

    let sales = api(&daemon, "GET", "/v1/sales", None)?;
    let sales = sales.json().context("sales are JSON")?;
    ensure!(
        sales["count"] == 2 && sales["totals"]["EUR"] == "5.25",
        "1.75 + 3.50 EUR: {sales:#}"
    );
    let providers: Vec<&str> = sales["sales"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|sale| sale["provider"].as_str())
        .collect();
    ensure!(providers == ["voucher", "api"], "{sales:#}");
    let csv = api(
        &daemon,
        "GET",
        "/v1/sales?format=csv&provider=voucher",
        None,
    )?;
    ensure!(
        csv.status == 200
            && csv
                .headers
                .to_ascii_lowercase()
                .contains("content-type: text/csv")
            && csv.body.lines().count() == 2
            && csv.body.contains(",1.75,EUR"),
        "{csv:?}"
    );
    for (path, says) in [
        ("/v1/usage?by=week", "hour or day"),
        ("/v1/usage?per=device", "per=client or per=session"),
        ("/v1/usage?format=xml", "format=json or format=csv"),
        ("/v1/usage?mac=ff:ff:ff:ff:ff:ff", "multicast"),
        ("/v1/sales?limit=100001", "1 to 100000"),
        ("/v1/sales?currency=EUR", "takes mac, provider"),
    ] {
        let answer = api(&daemon, "GET", path, None)?;
        ensure!(
            answer.status == 400 && answer.body.contains(says),
            "{path}: {answer:?}"
        );
    }
    Ok(())
}

/// A client's walled-garden traffic before it pays is free (`local_bytes`): the history counts
/// none of it, neither under the client nor under the session it is sold afterwards, which
/// gets exactly what passed after the sale.
#[test]
fn garden_traffic_before_a_sale_is_not_in_the_history() -> Result<()> {
    let lan = Lan::new(1)?;
    let garden = INTERNET_V4.to_string();
    let env = [
        ENV,
        &[("HOTSPOTD__NETWORK__WALLED_GARDEN", garden.as_str())],
    ]
    .concat();
    let daemon = Daemon::start(&lan, &env)?;
    let echo = UdpEcho::start(&lan.internet, SocketAddr::new(IpAddr::V4(INTERNET_V4), 0))?;
    let client = &lan.clients[0];
    udp_ping_pong(&client.netns, echo.addr(), 500, 6)?;
    let free = ip_bytes_udp(500, false) * 6;
    let local = || {
        daemon
            .client(&client.mac)
            .ok()
            .and_then(|view| view["local_bytes"].as_u64())
    };
    ensure!(
        wait_for(Duration::from_secs(5), || local() >= Some(2 * free)),
        "the garden traffic is free: {:?} local bytes of {free} each way",
        local()
    );
    // Saved at least once while the client has no session.
    std::thread::sleep(Duration::from_millis(2_500));
    let sold = daemon.add_session(
        &client.mac,
        &[
            "--type",
            "time",
            "--time-secs",
            "3600",
            "--global-speed",
            "--connect",
        ],
    )?;
    let id = sold["id"].as_i64().context("a session id")?;
    let rows = wait_for_usage(&daemon, &client.mac, 0, 1)?;
    ensure!(
        rows.as_array().into_iter().flatten().all(|row| {
            row["session_id"].as_i64() == Some(id) && row["up_bytes"] == 0 && row["down_bytes"] == 0
        }),
        "no garden bytes in the history, before or after the sale: {rows:#}"
    );
    Ok(())
}
