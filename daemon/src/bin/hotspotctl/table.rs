//! `hotspotctl`'s tables for people: aligned columns, bytes in decimal units (as operators
//! sell them), times in UTC.
#![expect(clippy::print_stdout, reason = "printing is this module's job")]

use chrono::{DateTime, Utc};
use hotspotd::{
    api::{ClientView, SessionView, StatusView},
    store::{StorageState, StoreHealth},
};

pub fn clients(clients: &[ClientView]) {
    let rows: Vec<Vec<String>> = clients
        .iter()
        .map(|client| {
            let ips: Vec<String> = client.ips.iter().map(ToString::to_string).collect();
            vec![
                client.mac.to_string(),
                if ips.is_empty() {
                    "-".to_owned()
                } else {
                    ips.join(",")
                },
                snake(&client.state),
                client
                    .session_id
                    .map_or_else(|| "-".to_owned(), |id| id.to_string()),
                human_bytes(client.up_bytes),
                human_bytes(client.down_bytes),
                human_bytes(client.local_bytes),
                human_bytes(client.dropped_bytes),
                speed(client.down_mbits, client.up_mbits),
                client.last_seen.map_or_else(|| "-".to_owned(), utc),
            ]
        })
        .collect();
    print_table(
        &[
            "MAC",
            "IPS",
            "STATE",
            "SESSION",
            "UP",
            "DOWN",
            "LOCAL",
            "DROPPED",
            "SPEED DOWN/UP",
            "LAST SEEN",
        ],
        &rows,
        "(no clients seen yet)",
    );
}

/// A client's limits, `5/2 Mbit/s`; `-` without a running session.
fn speed(down_mbits: Option<u32>, up_mbits: Option<u32>) -> String {
    match (down_mbits, up_mbits) {
        (Some(down), Some(up)) => format!("{down}/{up} Mbit/s"),
        _ => "-".to_owned(),
    }
}

pub fn sessions(sessions: &[SessionView]) {
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|view| {
            let data = &view.session.data;
            let time = if data.kind.counts_time() {
                format!("{}/{} s", data.time_cons, data.time_secs)
            } else {
                "-".to_owned()
            };
            let volume = if data.kind.counts_data() {
                format!("{:.3}/{} MB", data.data_cons, data.data_mb)
            } else {
                "-".to_owned()
            };
            let speed = if data.use_global_speed {
                "global".to_owned()
            } else {
                format!("{}/{} Mbit/s", data.down_mbits, data.up_mbits)
            };
            vec![
                view.session.id.to_string(),
                view.session.mac.to_string(),
                data.kind.name().to_owned(),
                snake(&view.state),
                time,
                volume,
                speed,
                data.expires_at().map_or_else(|| "-".to_owned(), utc),
                data.provider.clone(),
            ]
        })
        .collect();
    print_table(
        &[
            "ID", "MAC", "TYPE", "STATE", "TIME", "DATA", "SPEED", "EXPIRES", "PROVIDER",
        ],
        &rows,
        "(no sessions)",
    );
}

pub fn status(status: &StatusView) {
    println!("hotspotd {} on {}", status.version, status.lan_interface);
    println!("clients:                 {}", status.clients);
    println!("sessions:                {}", status.sessions);
    println!("last poll:               {:.2} ms", status.last_poll_ms);
    println!("last save:               {:.2} ms", status.last_save_ms);
    println!(
        "dropped, no session:     {}",
        status.kernel.dropped_no_session_packets
    );
    println!(
        "dropped, data spent:     {}",
        status.kernel.dropped_budget_packets
    );
    println!(
        "dropped, time over:      {}",
        status.kernel.dropped_deadline_packets
    );
    println!(
        "malformed packets:       {}",
        status.kernel.malformed_packets
    );
    println!(
        "untracked packets:       {}",
        status.kernel.untracked_packets
    );
    println!("non-IP frames:           {}", status.kernel.non_ip_packets);
    println!(
        "dropped, group MAC:      {}",
        status.kernel.dropped_group_destination_packets
    );
    for fill in &status.kernel_maps {
        let full = if fill.full { " FULL" } else { "" };
        println!(
            "kernel table {:<10} {}/{}{full}",
            format!("{}:", fill.map),
            fill.entries,
            fill.capacity
        );
    }
    storage(&status.storage);
    for set_aside in &status.sessions_set_aside {
        println!(
            "set aside:               session {} of {}: {}",
            set_aside.id, set_aside.mac, set_aside.reason
        );
    }
}

/// The store's health: one line when saves work, what waits and why when they fail.
fn storage(health: &StoreHealth) {
    let path = health.path.display();
    match health.state {
        StorageState::Ok => {
            let saved = health.last_saved.map_or_else(
                || "nothing saved yet".to_owned(),
                |at| format!("last saved {}", utc(at)),
            );
            println!("storage:                 ok ({path}, {saved})");
        }
        StorageState::Degraded => {
            let since = health.since.map_or_else(|| "-".to_owned(), utc);
            println!("storage:                 DEGRADED since {since}: saves to {path} fail");
            println!(
                "  last error:            {}",
                health.error.as_deref().unwrap_or("-")
            );
            println!(
                "  pending saves:         {} sessions, kept in memory (enforcement and accounting go on)",
                health.pending_saves
            );
            let next = health.next_retry.map_or_else(|| "-".to_owned(), utc);
            println!(
                "  next retry:            {next} (failed attempts: {})",
                health.failed_attempts
            );
        }
    }
}

/// One event line for people: `TIME  EVENT  key=value …`.
pub fn event(line: &str) -> String {
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(line) else {
        return line.to_owned();
    };
    let at = fields.get("at").and_then(|at| at.as_str()).unwrap_or("-");
    let name = fields
        .get("event")
        .and_then(|name| name.as_str())
        .unwrap_or("?");
    let rest: Vec<String> = fields
        .iter()
        .filter(|(key, _)| *key != "at" && *key != "event")
        .map(|(key, value)| match value.as_str() {
            Some(text) => format!("{key}={text}"),
            None => format!("{key}={value}"),
        })
        .collect();
    format!("{at}  {name:<20}  {}", rest.join(" "))
}

/// `hotspotctl garden`: one row per name and learned address.
pub fn garden(garden: &serde_json::Value) {
    let mut rows = Vec::new();
    for name in garden["names"].as_array().into_iter().flatten() {
        let pattern = name["name"].as_str().unwrap_or("-");
        let port = name["port"]
            .as_u64()
            .map_or_else(|| "any".to_owned(), |port| port.to_string());
        let bytes = human_bytes(name["unpaid_bytes"].as_u64().unwrap_or(0));
        let addresses = name["addresses"].as_array().cloned().unwrap_or_default();
        if addresses.is_empty() {
            rows.push(vec![
                pattern.to_owned(),
                port.clone(),
                "-".to_owned(),
                "-".to_owned(),
                bytes.clone(),
            ]);
        }
        for address in addresses {
            rows.push(vec![
                pattern.to_owned(),
                port.clone(),
                address["address"].as_str().unwrap_or("-").to_owned(),
                address["expires_at"].as_str().unwrap_or("-").to_owned(),
                bytes.clone(),
            ]);
        }
    }
    print_table(
        &["NAME", "PORT", "ADDRESS", "EXPIRES", "UNPAID"],
        &rows,
        "no host names in network.walled_garden",
    );
    println!(
        "{} of {} learned addresses in use",
        garden["learned"].as_u64().unwrap_or(0),
        garden["capacity"].as_u64().unwrap_or(0)
    );
}

pub fn print_table(header: &[&str], rows: &[Vec<String>], empty: &str) {
    let mut widths: Vec<usize> = header.iter().map(|title| title.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let padded: Vec<String> = cells
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    if rows.is_empty() {
        println!("{empty}");
    }
}

/// An enum's API name (`connected`, `time_or_data`…), from its serde form.
pub fn snake(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default()
}

pub fn utc(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Bytes in decimal units (1 MB = 1,000,000 bytes).
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    #[expect(
        clippy::cast_precision_loss,
        reason = "three significant digits are shown"
    )]
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

/// `hotspotctl usage`: one row per period and client (or session), bytes exact.
pub fn usage(rows: &serde_json::Value) {
    let text = |row: &serde_json::Value, key: &str| match &row[key] {
        serde_json::Value::Null => "-".to_owned(),
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let rows: Vec<Vec<String>> = rows
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| {
            vec![
                text(row, "start"),
                text(row, "mac"),
                text(row, "session_id"),
                text(row, "up_bytes"),
                text(row, "down_bytes"),
                text(row, "connected_secs"),
            ]
        })
        .collect();
    print_table(
        &[
            "START",
            "MAC",
            "SESSION",
            "UP_BYTES",
            "DOWN_BYTES",
            "CONNECTED_SECS",
        ],
        &rows,
        "no usage in that period",
    );
}

/// `hotspotctl sales`: one row per sale, then the count and the totals per currency.
pub fn sales(report: &serde_json::Value) {
    let text = |row: &serde_json::Value, key: &str| match &row[key] {
        serde_json::Value::Null => "-".to_owned(),
        serde_json::Value::String(text) if text.is_empty() => "-".to_owned(),
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let rows: Vec<Vec<String>> = report["sales"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|sale| {
            vec![
                text(sale, "sold_at"),
                text(sale, "session_id"),
                text(sale, "mac"),
                text(sale, "provider"),
                sale["type"]
                    .as_u64()
                    .and_then(|kind| u8::try_from(kind).ok())
                    .and_then(|kind| hotspotd::sessions::SessionType::try_from(kind).ok())
                    .map_or_else(|| "-".to_owned(), |kind| kind.name().to_owned()),
                text(sale, "price"),
                text(sale, "currency"),
            ]
        })
        .collect();
    print_table(
        &[
            "SOLD_AT", "SESSION", "MAC", "PROVIDER", "TYPE", "PRICE", "CURRENCY",
        ],
        &rows,
        "no sales in that period",
    );
    let totals: Vec<String> = report["totals"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(currency, sum)| {
            let sum = sum.as_str().unwrap_or("-");
            if currency.is_empty() {
                sum.to_owned()
            } else {
                format!("{sum} {currency}")
            }
        })
        .collect();
    println!(
        "{} sales{}",
        report["count"].as_u64().unwrap_or(0),
        if totals.is_empty() {
            String::new()
        } else {
            format!(", {}", totals.join(", "))
        }
    );
}
