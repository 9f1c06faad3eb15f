//! End to end: `/metrics` is Prometheus text, and what it counts is what `hotspotctl clients`
//! shows. Needs root.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context as _, Result, ensure};
use hotspotd::{client::ApiClient, metrics};
use hotspotd_tests::{Daemon, INTERNET_V4, Lan, UdpEcho, udp_ping_pong, wait_for};

#[test]
fn metrics_parse_and_match_the_clients_table() -> Result<()> {
    let lan = Lan::new(2)?;
    let daemon = Daemon::start(&lan, &[])?;
    let paying = &lan.clients[0];
    daemon.add_session(
        &paying.mac,
        &[
            "--type",
            "data",
            "--data-mb",
            "100",
            "--global-speed",
            "--connect",
        ],
    )?;
    let echo = UdpEcho::start(&lan.internet, SocketAddr::new(IpAddr::V4(INTERNET_V4), 0))?;
    udp_ping_pong(&paying.netns, echo.addr(), 1_000, 20)?;
    let sent_bytes = 20 * hotspotd_tests::ip_bytes_udp(1_000, false);
    // Counted once the daemon has polled.
    ensure!(
        wait_for(std::time::Duration::from_secs(5), || {
            daemon
                .client(&paying.mac)
                .is_ok_and(|row| row["up_bytes"].as_u64() == Some(sent_bytes))
        }),
        "the traffic is counted"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let text = runtime.block_on(ApiClient::new(daemon.socket()).get_text("/metrics"))?;
    let samples = metrics::parse(&text).map_err(anyhow::Error::msg)?;
    let value = |series: String| {
        samples
            .iter()
            .find(|(name, _)| *name == series)
            .map(|(_, value)| *value)
    };
    let clients = daemon.ctl_json(&["clients"])?;
    for row in clients.as_array().context("clients is an array")? {
        let mac = row["mac"].as_str().context("a mac")?;
        for kind in ["up", "down", "local", "dropped"] {
            let shown = row[format!("{kind}_bytes")]
                .as_u64()
                .context("a byte count")?;
            let series = format!("hotspotd_client_bytes_total{{mac=\"{mac}\",kind=\"{kind}\"}}");
            #[expect(clippy::cast_precision_loss, reason = "small test counts")]
            let shown = shown as f64;
            ensure!(
                value(series.clone()) == Some(shown),
                "{series} is {shown} in clients"
            );
        }
    }
    ensure!(
        value(format!(
            "hotspotd_client_connected{{mac=\"{}\"}}",
            paying.mac
        )) == Some(1.0),
        "the paying client is connected"
    );
    ensure!(
        value("hotspotd_sessions{state=\"running\"}".to_owned()) == Some(1.0),
        "one running session"
    );

    // Without the per-client series: the same text less every `hotspotd_client_*` sample.
    let api = ApiClient::new(daemon.socket());
    let light = runtime.block_on(api.get_text("/metrics?clients=false"))?;
    let light_samples = metrics::parse(&light).map_err(anyhow::Error::msg)?;
    ensure!(
        !light_samples
            .iter()
            .any(|(name, _)| name.starts_with("hotspotd_client_")),
        "per-client series with clients=false: {light}"
    );
    ensure!(
        light_samples.iter().any(
            |(name, value)| name == "hotspotd_sessions{state=\"running\"}"
                && (*value - 1.0).abs() < 0.5
        ),
        "the totals are still there: {light}"
    );
    ensure!(
        runtime
            .block_on(api.get_text("/metrics?clients=true"))?
            .contains("hotspotd_client_bytes_total{"),
        "clients=true keeps them"
    );
    let refused = hotspotd_tests::http::exchange(
        daemon.socket(),
        &hotspotd_tests::http::request("GET", "/metrics?clients=maybe", &[], b""),
    )?;
    ensure!(
        refused.status == 400 && refused.body.contains("clients is true or false"),
        "{refused:?}"
    );
    Ok(())
}
