//! `hotspotctl`: the operator's command line. Talks to a running hotspotd over its API socket;
//! prints tables for people and, with `--json` anywhere on the line, one JSON document.
#![expect(clippy::print_stdout, reason = "printing is this binary's job")]

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use hotspotd::{
    api::{ClientView, StatusView},
    client::{ApiClient, ClientError},
};

/// The API socket when `--socket` is not given (the default of `api.socket`).
const DEFAULT_SOCKET: &str = "/run/hotspotd/hotspotd.sock";

#[derive(Parser)]
#[command(version, about = "Operate a running hotspotd")]
struct Cli {
    /// hotspotd's API socket (`api.socket` in its configuration).
    #[arg(long, global = true, value_name = "PATH", default_value = DEFAULT_SOCKET, env = "HOTSPOTCTL_SOCKET")]
    socket: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every client seen on the LAN: addresses, state and traffic.
    Clients,
    /// The daemon's version, interface and kernel counters.
    Status,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("hotspotctl: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hotspotctl: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(cli: &Cli) -> Result<(), ClientError> {
    let api = ApiClient::new(&cli.socket);
    match cli.command {
        Command::Clients => {
            let clients: Vec<ClientView> = api.get("/v1/clients").await?;
            if cli.json {
                print_json(&clients);
            } else {
                print_clients(&clients);
            }
        }
        Command::Status => {
            let status: StatusView = api.get("/v1/status").await?;
            if cli.json {
                print_json(&status);
            } else {
                println!("hotspotd {} on {}", status.version, status.lan_interface);
                println!("clients:            {}", status.clients);
                println!("last poll:          {:.2} ms", status.last_poll_ms);
                println!("malformed packets:  {}", status.kernel.malformed_packets);
                println!("untracked packets:  {}", status.kernel.untracked_packets);
                println!("non-IP frames:      {}", status.kernel.non_ip_packets);
            }
        }
    }
    Ok(())
}

fn print_json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(error) => eprintln!("hotspotctl: cannot print JSON: {error}"),
    }
}

fn print_clients(clients: &[ClientView]) {
    let header = [
        "MAC",
        "IPS",
        "STATE",
        "SESSION",
        "UP",
        "DOWN",
        "LOCAL",
        "DROPPED",
        "LAST SEEN",
    ];
    let rows: Vec<[String; 9]> = clients
        .iter()
        .map(|client| {
            let ips: Vec<String> = client.ips.iter().map(ToString::to_string).collect();
            [
                client.mac.to_string(),
                if ips.is_empty() {
                    "-".to_owned()
                } else {
                    ips.join(",")
                },
                format!("{:?}", client.state).to_lowercase(),
                client
                    .session_id
                    .map_or_else(|| "-".to_owned(), |id| id.to_string()),
                human_bytes(client.up_bytes),
                human_bytes(client.down_bytes),
                human_bytes(client.local_bytes),
                human_bytes(client.dropped_bytes),
                client.last_seen.map_or_else(
                    || "-".to_owned(),
                    |at| at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                ),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: &[&str]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    if rows.is_empty() {
        println!("(no clients seen yet)");
    }
}

/// Bytes in decimal units, as operators sell them (1 MB = 1,000,000 bytes).
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
