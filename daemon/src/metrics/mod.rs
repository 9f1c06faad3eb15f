//! Prometheus text exposition of what the daemon knows: per-client traffic and state, sessions
//! by state, the gate's drops by reason, poll and save durations, the store's health, map
//! fill, build info. Pure: renders a [`Snapshot`] the control task takes.

use std::fmt::Write as _;

pub use crate::histogram::{BUCKET_BOUNDS_SECONDS, Histogram};
pub use crate::telemetry::{MapFill, Snapshot, TrialCounts};

use crate::{
    alerts::{AlertCounts, NeighbourTable},
    sessions::engine::ClientState,
    store::StorageState,
};

/// The snapshot in the Prometheus text format (version 0.0.4).
#[must_use]
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    metric(
        &mut out,
        "hotspotd_build_info",
        "gauge",
        "The running hotspotd's version.",
    );
    sample(
        &mut out,
        "hotspotd_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    clients(&mut out, snapshot);
    gate(&mut out, snapshot);
    daemon(&mut out, snapshot);
    alerts(&mut out, &snapshot.alerts);
    trials(&mut out, snapshot.trials);
    let name = "hotspotd_shaping_spare_classes";
    metric(
        &mut out,
        name,
        "gauge",
        "HTB class pairs made and parked for the next clients: a sale takes one by a class change instead of making one.",
    );
    sample(&mut out, name, &[], as_f64(snapshot.spare_classes as u64));
    let name = "hotspotd_shaping_clients_awaiting_classes";
    metric(
        &mut out,
        name,
        "gauge",
        "Clients whose HTB classes the shaper has not yet put in the trees at their rates: they run in the default class, under the global cap, meanwhile. Stays above 0 only while the shaper works through a backlog (a crowd on an empty box, a rebuild).",
    );
    sample(
        &mut out,
        name,
        &[],
        as_f64(snapshot.clients_awaiting_classes as u64),
    );
    let name = "hotspotd_unindexed_clients";
    metric(
        &mut out,
        name,
        "gauge",
        "Clients whose window of the kernel's client index is full: their packets are looked up in CLIENTS, slower, still exact. 0 in practice.",
    );
    sample(
        &mut out,
        name,
        &[],
        as_f64(snapshot.unindexed_clients as u64),
    );
    garden(&mut out, &snapshot.garden);
    out
}

/// The walled garden's host names: addresses learned, bytes sent there unpaid, the answers.
fn garden(out: &mut String, garden: &crate::garden::GardenView) {
    let name = "hotspotd_garden_addresses";
    metric(
        out,
        name,
        "gauge",
        "Addresses learned from the box's DNS answers for each walled-garden host name.",
    );
    for entry in &garden.names {
        sample(
            out,
            name,
            &[("name", &entry.name)],
            as_f64(entry.addresses.len() as u64),
        );
    }
    let name = "hotspotd_garden_unpaid_bytes_total";
    metric(
        out,
        name,
        "counter",
        "Bytes (IP level) clients without a running session sent to each walled-garden host name's learned addresses.",
    );
    for entry in &garden.names {
        sample(
            out,
            name,
            &[("name", &entry.name)],
            as_f64(entry.unpaid_bytes),
        );
    }
    let name = "hotspotd_garden_learned_capacity";
    metric(
        out,
        name,
        "gauge",
        "How many learned walled-garden addresses the kernel's table holds.",
    );
    sample(out, name, &[], f64::from(garden.capacity));
    let name = "hotspotd_garden_answers_total";
    metric(
        out,
        name,
        "counter",
        "DNS answers of the box's resolver the walled garden read, and those that were no well-formed response.",
    );
    sample(
        out,
        name,
        &[("kind", "read")],
        as_f64(garden.counts.answers),
    );
    sample(
        out,
        name,
        &[("kind", "malformed")],
        as_f64(garden.counts.malformed),
    );
    let name = "hotspotd_garden_addresses_removed_total";
    metric(
        out,
        name,
        "counter",
        "Learned walled-garden addresses removed: their TTL ran out, or the oldest made room in a full table.",
    );
    sample(
        out,
        name,
        &[("why", "expired")],
        as_f64(garden.counts.expired),
    );
    sample(
        out,
        name,
        &[("why", "full")],
        as_f64(garden.counts.dropped_full),
    );
}

/// Each client's traffic and state, and sessions by state.
fn clients(out: &mut String, snapshot: &Snapshot) {
    metric(
        out,
        "hotspotd_client_bytes_total",
        "counter",
        "IP-level bytes of each client: billable up and down, local (with the box), dropped by the gate.",
    );
    for client in &snapshot.clients {
        let mac = client.mac.to_string();
        for (kind, bytes) in [
            ("up", client.up_bytes),
            ("down", client.down_bytes),
            ("local", client.local_bytes),
            ("dropped", client.dropped_bytes),
        ] {
            let labels = [("mac", mac.as_str()), ("kind", kind)];
            sample(out, "hotspotd_client_bytes_total", &labels, as_f64(bytes));
        }
    }
    metric(
        out,
        "hotspotd_client_connected",
        "gauge",
        "1 while the client runs a session.",
    );
    for client in &snapshot.clients {
        let connected = if client.state == ClientState::Connected {
            1.0
        } else {
            0.0
        };
        let mac = client.mac.to_string();
        sample(
            out,
            "hotspotd_client_connected",
            &[("mac", &mac)],
            connected,
        );
    }
    metric(
        out,
        "hotspotd_sessions",
        "gauge",
        "Sessions held by state: the live ones, and ended ones until the next save makes them history.",
    );
    for (state, count) in &snapshot.sessions_by_state {
        let name = serde_json::to_value(state)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default();
        sample(
            out,
            "hotspotd_sessions",
            &[("state", &name)],
            as_f64(*count as u64),
        );
    }
}

/// What the kernel dropped or could not account, by reason.
fn gate(out: &mut String, snapshot: &Snapshot) {
    let kernel = &snapshot.kernel;
    metric(
        out,
        "hotspotd_gate_drops_total",
        "counter",
        "Packets the gate dropped, by reason.",
    );
    for (reason, packets) in [
        ("no_session", kernel.dropped_no_session_packets),
        ("data_spent", kernel.dropped_budget_packets),
        ("time_over", kernel.dropped_deadline_packets),
        (
            "group_destination",
            kernel.dropped_group_destination_packets,
        ),
    ] {
        sample(
            out,
            "hotspotd_gate_drops_total",
            &[("reason", reason)],
            as_f64(packets),
        );
    }
    let name = "hotspotd_unaccounted_packets_total";
    metric(
        out,
        name,
        "counter",
        "Frames not billed to a client, by why.",
    );
    for (why, packets) in [
        ("malformed", kernel.malformed_packets),
        ("non_ip", kernel.non_ip_packets),
        ("map_full", kernel.untracked_packets),
    ] {
        sample(out, name, &[("why", why)], as_f64(packets));
    }
    let name = "hotspotd_events_lost_total";
    metric(
        out,
        name,
        "counter",
        "Gate events the kernel's ring could not hold.",
    );
    sample(out, name, &[], as_f64(kernel.events_lost));
}

/// The daemon's own work: poll and save durations, map fill.
fn daemon(out: &mut String, snapshot: &Snapshot) {
    let name = "hotspotd_poll_duration_seconds";
    metric(out, name, "gauge", "How long the last counter poll took.");
    sample(out, name, &[], snapshot.last_poll_seconds);
    let name = "hotspotd_save_duration_seconds";
    metric(out, name, "gauge", "How long the last save to SQLite took.");
    sample(out, name, &[], snapshot.last_save_seconds);
    let storage = &snapshot.storage;
    let name = "hotspotd_store_degraded";
    metric(
        out,
        name,
        "gauge",
        "1 while saves to the database fail: changes are kept in memory and retried.",
    );
    let degraded = if storage.state == StorageState::Degraded {
        1.0
    } else {
        0.0
    };
    sample(out, name, &[], degraded);
    let name = "hotspotd_store_pending_saves";
    metric(
        out,
        name,
        "gauge",
        "Sessions whose latest change is not in the database yet.",
    );
    sample(out, name, &[], as_f64(storage.pending_saves as u64));
    let name = "hotspotd_store_failed_attempts";
    metric(
        out,
        name,
        "gauge",
        "Failed attempts to write the database in a row; 0 while saves work.",
    );
    sample(out, name, &[], f64::from(storage.failed_attempts));
    let name = "hotspotd_poll_seconds";
    metric(out, name, "histogram", "How long each counter poll took.");
    snapshot.poll_durations.render(out, name);
    let name = "hotspotd_save_seconds";
    metric(out, name, "histogram", "How long each save to SQLite took.");
    snapshot.save_durations.render(out, name);
    let name = "hotspotd_map_entries";
    metric(
        out,
        name,
        "gauge",
        "Entries in the kernel's per-client maps.",
    );
    for fill in &snapshot.maps {
        sample(out, name, &[("map", fill.map)], as_f64(fill.entries as u64));
    }
    let name = "hotspotd_map_capacity";
    metric(out, name, "gauge", "Entries each per-client map can hold.");
    for fill in &snapshot.maps {
        sample(out, name, &[("map", fill.map)], f64::from(fill.capacity));
    }
}

/// Free trials: granted, and devices refused another until their window passes.
fn trials(out: &mut String, trials: TrialCounts) {
    let name = "hotspotd_trials_granted_total";
    metric(
        out,
        name,
        "counter",
        "Free trials granted since the daemon started.",
    );
    sample(out, name, &[], as_f64(trials.granted));
    let name = "hotspotd_trial_ledger_entries";
    metric(
        out,
        name,
        "gauge",
        "Devices whose last free trial is within the reset window.",
    );
    sample(out, name, &[], as_f64(trials.ledger_entries as u64));
}

/// Trouble beside the sessions: MAC moves, refused API tokens, the neighbour tables.
fn alerts(out: &mut String, alerts: &AlertCounts) {
    let name = "hotspotd_mac_moves_total";
    metric(
        out,
        name,
        "counter",
        "Times a MAC address the LAN bridge had learned behind one port showed up behind another (a clone, or a roam).",
    );
    sample(out, name, &[], as_f64(alerts.mac_moves));
    let name = "hotspotd_api_refusals_total";
    metric(
        out,
        name,
        "counter",
        "TCP API requests refused: without the right token, or from a source that sent too many of those.",
    );
    for (why, requests) in [
        ("wrong_token", alerts.api_wrong_tokens),
        ("rate_limited", alerts.api_rate_limited),
    ] {
        sample(out, name, &[("why", why)], as_f64(requests));
    }
    let tables = [
        ("ipv4", alerts.neighbours_ipv4),
        ("ipv6", alerts.neighbours_ipv6),
    ];
    let per_family = |out: &mut String, name, value: fn(&NeighbourTable) -> u64| {
        for (family, table) in &tables {
            if let Some(table) = table {
                sample(out, name, &[("family", family)], as_f64(value(table)));
            }
        }
    };
    let name = "hotspotd_neighbour_table_overflows_total";
    metric(
        out,
        name,
        "counter",
        "Times since boot the kernel refused a new neighbour entry because its table was full (raise gc_thresh3).",
    );
    per_family(out, name, |table| table.overflows);
    let name = "hotspotd_neighbour_table_entries";
    metric(
        out,
        name,
        "gauge",
        "Entries in the kernel's neighbour table, every network namespace's together.",
    );
    per_family(out, name, |table| table.entries);
    let name = "hotspotd_neighbour_table_limit";
    metric(
        out,
        name,
        "gauge",
        "Entries the kernel's neighbour table holds at most (gc_thresh3).",
    );
    per_family(out, name, |table| table.limit);
}

#[expect(clippy::cast_precision_loss, reason = "Prometheus values are floats")]
fn as_f64(value: u64) -> f64 {
    value as f64
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        let labels: Vec<String> = labels
            .iter()
            .map(|(key, value)| format!("{key}=\"{}\"", escape(value)))
            .collect();
        let _ = write!(out, "{{{}}}", labels.join(","));
    }
    let _ = writeln!(out, " {value}");
}

/// Label values escape backslash, double quote and newline (the text format's rule).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Checks that `text` is well-formed Prometheus text and returns its samples as
/// (`name{labels}`, value). For tests, here and end to end.
pub fn parse(text: &str) -> Result<Vec<(String, f64)>, String> {
    let mut samples = Vec::new();
    let mut typed = std::collections::BTreeSet::new();
    let mut histograms = std::collections::BTreeSet::new();
    for (number, line) in text.lines().enumerate() {
        let number = number + 1;
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts
                .next()
                .ok_or(format!("line {number}: TYPE without a name"))?;
            match parts.next() {
                Some("histogram") => {
                    histograms.insert(name.to_owned());
                }
                Some("counter" | "gauge" | "summary" | "untyped") => {
                    typed.insert(name.to_owned());
                }
                other => return Err(format!("line {number}: unknown type {other:?}")),
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or(format!("line {number}: no value"))?;
        let value: f64 = value
            .parse()
            .map_err(|_| format!("line {number}: bad value {value:?}"))?;
        let name = series.split('{').next().unwrap_or_default();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            return Err(format!("line {number}: bad metric name {name:?}"));
        }
        // A histogram's samples are its name with `_bucket`, `_sum` or `_count`.
        let histogram_of = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|base| histograms.contains(*base));
        if !typed.contains(name) && histogram_of.is_none() {
            return Err(format!("line {number}: {name} has no TYPE line before it"));
        }
        if series.contains('{') && !series.ends_with('}') {
            return Err(format!("line {number}: unclosed labels"));
        }
        samples.push((series.to_owned(), value));
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        bpf::KernelStats, mac::MacAddr, sessions::engine::SessionState, store::StoreHealth,
        views::ClientView,
    };

    fn snapshot() -> Snapshot {
        Snapshot {
            clients: vec![ClientView {
                mac: MacAddr([2, 0, 0, 0, 0, 1]),
                shares_with: None,
                ips: Vec::new(),
                state: ClientState::Connected,
                session_id: Some(1),
                up_bytes: 1_000,
                down_bytes: 5_000,
                up_packets: 1,
                down_packets: 4,
                local_bytes: 300,
                dropped_bytes: 64,
                dropped_packets: 1,
                last_seen: None,
                down_mbits: Some(5),
                up_mbits: Some(2),
                address_conflicts: Vec::new(),
            }],
            sessions_by_state: vec![(SessionState::Running, 1), (SessionState::Consumed, 2)],
            kernel: KernelStats {
                dropped_budget_packets: 7,
                ..KernelStats::default()
            },
            last_poll_seconds: 0.002,
            last_save_seconds: 0.01,
            storage: StoreHealth {
                state: StorageState::Degraded,
                path: "/var/lib/hotspotd/sessions.db".into(),
                error: Some("database or disk is full".to_owned()),
                since: None,
                pending_saves: 3,
                failed_attempts: 4,
                next_retry: None,
                last_saved: None,
                last_save_ms: 10.0,
            },
            poll_durations: {
                let mut polls = Histogram::default();
                polls.observe(std::time::Duration::from_millis(3));
                polls
            },
            save_durations: Histogram::default(),
            maps: vec![
                MapFill {
                    map: "usage",
                    entries: 1,
                    capacity: 16_384,
                },
                MapFill {
                    map: "grants",
                    entries: 1,
                    capacity: 16_384,
                },
            ],
            alerts: AlertCounts {
                mac_moves: 2,
                api_wrong_tokens: 10,
                api_rate_limited: 3,
                neighbours_ipv4: None,
                neighbours_ipv6: Some(NeighbourTable {
                    entries: 1_024,
                    limit: 1_024,
                    overflows: 276,
                }),
            },
            trials: TrialCounts {
                granted: 4,
                ledger_entries: 3,
            },
            garden: crate::garden::GardenView {
                names: vec![crate::garden::GardenNameView {
                    name: "*.pay.example".to_owned(),
                    port: Some(443),
                    addresses: Vec::new(),
                    unpaid_bytes: 1_234,
                }],
                ..crate::garden::GardenView::default()
            },
            spare_classes: 64,
            clients_awaiting_classes: 3,
            unindexed_clients: 2,
        }
    }

    #[test]
    fn renders_parseable_text_with_the_values() {
        let text = render(&snapshot());
        let samples = parse(&text).expect("well-formed");
        let value = |series: &str| samples.iter().find(|(s, _)| s == series).map(|(_, v)| *v);
        assert_eq!(
            value(r#"hotspotd_garden_unpaid_bytes_total{name="*.pay.example"}"#),
            Some(1_234.0)
        );
        assert_eq!(value("hotspotd_shaping_spare_classes"), Some(64.0));
        assert_eq!(
            value("hotspotd_shaping_clients_awaiting_classes"),
            Some(3.0)
        );
        assert_eq!(value("hotspotd_unindexed_clients"), Some(2.0));
        assert_eq!(
            value(r#"hotspotd_client_bytes_total{mac="02:00:00:00:00:01",kind="down"}"#),
            Some(5_000.0)
        );
        assert_eq!(
            value(r#"hotspotd_client_connected{mac="02:00:00:00:00:01"}"#),
            Some(1.0)
        );
        assert_eq!(value(r#"hotspotd_sessions{state="consumed"}"#), Some(2.0));
        assert_eq!(
            value(r#"hotspotd_gate_drops_total{reason="data_spent"}"#),
            Some(7.0)
        );
        assert_eq!(
            value(r#"hotspotd_map_capacity{map="usage"}"#),
            Some(16_384.0)
        );
        assert_eq!(value("hotspotd_store_degraded"), Some(1.0));
        assert_eq!(value("hotspotd_store_pending_saves"), Some(3.0));
        assert_eq!(value("hotspotd_store_failed_attempts"), Some(4.0));
        assert_eq!(
            value(r#"hotspotd_poll_seconds_bucket{le="0.005"}"#),
            Some(1.0)
        );
        assert_eq!(value("hotspotd_poll_seconds_count"), Some(1.0));
        assert_eq!(value("hotspotd_save_seconds_count"), Some(0.0));
        assert_eq!(value("hotspotd_mac_moves_total"), Some(2.0));
        assert_eq!(value("hotspotd_trials_granted_total"), Some(4.0));
        assert_eq!(value("hotspotd_trial_ledger_entries"), Some(3.0));
        assert_eq!(
            value(r#"hotspotd_api_refusals_total{why="rate_limited"}"#),
            Some(3.0)
        );
        assert_eq!(
            value(r#"hotspotd_neighbour_table_overflows_total{family="ipv6"}"#),
            Some(276.0)
        );
        assert_eq!(
            value(r#"hotspotd_neighbour_table_limit{family="ipv6"}"#),
            Some(1_024.0)
        );
        assert_eq!(
            value(r#"hotspotd_neighbour_table_entries{family="ipv4"}"#),
            None,
            "a table not read yet has no line"
        );
    }

    #[test]
    fn the_parser_refuses_what_prometheus_would() {
        assert!(parse("no_type 1").is_err());
        assert!(parse("# TYPE x gauge\nx{a=\"b\" 1").is_err());
        assert!(parse("# TYPE x gauge\nx one").is_err());
        assert!(parse("# TYPE x bogus\nx 1").is_err());
        assert!(parse("# TYPE x gauge\nx_count 1").is_err());
        assert!(parse("# TYPE x histogram\nx_count 1\nx_bucket{le=\"+Inf\"} 1").is_ok());
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
