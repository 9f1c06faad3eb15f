//! `hotspotctl`: the operator's command line. Talks to a running hotspotd over its API socket;
//! prints tables for people and, with `--json` anywhere on the line, one JSON document.
#![expect(clippy::print_stdout, reason = "printing is this binary's job")]

mod table;
mod vouchers;

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};
use hotspotd::{
    api::{ClientView, SessionView, StatusView},
    client::{ApiClient, ClientError},
    control::VoucherView,
    mac::MacAddr,
    sessions::SessionType,
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
    /// Every client: addresses, state, session and traffic.
    Clients {
        /// Only the client the kernel saw send from this address (what a portal asks); an
        /// error if none did, or if it moved between two devices in the last minute.
        #[arg(long, value_parser = parse_ip, conflicts_with_all = ["search", "state", "offset", "limit"])]
        ip: Option<std::net::IpAddr>,
        /// Only clients whose MAC or one of whose addresses contains this text (hex digits,
        /// ':' and '.').
        #[arg(long, value_parser = parse_search)]
        search: Option<String>,
        /// Only clients in this state.
        #[arg(long, value_parser = ["connected", "paused", "disconnected"])]
        state: Option<String>,
        /// Skip this many of the matching clients (in MAC order).
        #[arg(long)]
        offset: Option<usize>,
        /// Show at most this many (1 to 1000).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1000))]
        limit: Option<u16>,
    },
    /// Sessions with what they allow, what is used and their state: the live ones first, then
    /// those that ended, most recent first (kept `history.daily_days`).
    Sessions {
        /// Only this client's.
        #[arg(long, value_parser = parse_mac)]
        mac: Option<MacAddr>,
        /// Only sessions in this state; `live`: available, running or paused; `ended`:
        /// consumed or expired.
        #[arg(long, value_parser = ["available", "running", "paused", "consumed", "expired", "live", "ended"])]
        state: Option<String>,
        /// Skip this many of the matching sessions.
        #[arg(long)]
        offset: Option<u64>,
        /// Show at most this many (1 to 100000; 1000 when not given).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        limit: Option<u32>,
    },
    /// Add or remove a session.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Vouchers: codes, without the codes themselves (only their hashes are kept), state and
    /// devices.
    Vouchers,
    /// Create or revoke vouchers.
    #[command(subcommand)]
    Voucher(VoucherCommand),
    /// The walled garden's host names: the addresses learned for each from the box's DNS
    /// answers, when they expire, and the bytes clients without a session sent there.
    Garden,
    /// Start or resume the client's session (an error if it has none left).
    Connect {
        #[arg(long, value_parser = parse_mac)]
        mac: MacAddr,
    },
    /// Freeze the client's session and block its traffic; `connect` resumes.
    Pause {
        #[arg(long, value_parser = parse_mac)]
        mac: MacAddr,
    },
    /// The daemon's version, interface and kernel counters.
    Status,
    /// Follow what happens (sessions started, consumed, clients connected…) until Ctrl-C;
    /// with --json, one JSON object per line.
    Events,
    /// The captive portal as phones find it.
    #[command(subcommand)]
    Portal(PortalCommand),
    /// What clients moved and how long they were connected, by hour or day (docs/usage.md).
    Usage {
        /// Only this client's.
        #[arg(long, value_parser = parse_mac)]
        mac: Option<MacAddr>,
        /// Only this session's.
        #[arg(long, allow_negative_numbers = true)]
        session: Option<i64>,
        /// From this time on: RFC 3339, a date (2026-12-01) or a span back (24h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Before this time, written like --since.
        #[arg(long)]
        until: Option<String>,
        /// hour or day.
        #[arg(long, default_value = "hour", value_parser = ["hour", "day"])]
        by: String,
        /// One row per session instead of per client.
        #[arg(long)]
        per_session: bool,
        #[command(flatten)]
        page: Page,
        /// Print CSV.
        #[arg(long)]
        csv: bool,
    },
    /// Sessions sold: when, to whom, by whom, the plan and the price, with the totals.
    Sales {
        /// From this time on: RFC 3339, a date (2026-12-01) or a span back (24h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Before this time, written like --since.
        #[arg(long)]
        until: Option<String>,
        /// Only this client's.
        #[arg(long, value_parser = parse_mac)]
        mac: Option<MacAddr>,
        /// Only those sold by this provider (cli, api, voucher, trial…).
        #[arg(long)]
        provider: Option<String>,
        #[command(flatten)]
        page: Page,
        /// Print CSV.
        #[arg(long)]
        csv: bool,
    },
}

/// Which page of a long listing.
#[derive(Args)]
struct Page {
    /// At most this many rows (1 to 100000; 1000 without it).
    #[arg(long)]
    limit: Option<u32>,
    /// Skip this many rows first.
    #[arg(long)]
    offset: Option<u64>,
}

#[derive(Subcommand)]
enum PortalCommand {
    /// The DHCP and router-advertisement lines that tell phones where the captive-portal API
    /// is (RFC 8910: DHCPv4 option 114, DHCPv6 option 103, RA option 37), for the running
    /// configuration; paste them into the DHCP/RA server's configuration.
    DhcpOptions {
        /// dnsmasq (dhcp-option lines), odhcpd (OpenWrt uci commands), radvd
        /// (`AdvCaptivePortalAPI`) or raw (one option and its URI a line).
        #[arg(long, default_value = "dnsmasq", value_parser = hotspotd::portal::rfc8910::Format::NAMES.to_vec())]
        format: String,
    },
}

#[derive(Subcommand)]
enum SessionCommand {
    /// Sell a session to a client; prints it with its id.
    Add(AddSession),
    /// Delete a session (a running one ends; the client goes on with its next).
    Remove {
        #[arg(long, allow_negative_numbers = true)]
        id: i64,
    },
}

#[derive(Subcommand)]
enum VoucherCommand {
    /// Create vouchers; prints each with its code, shown this once (save them with --csv or
    /// --print).
    Create(CreateVouchers),
    /// Revoke a voucher: it can no longer be redeemed, and a device using it is cut off.
    Revoke {
        /// The voucher's code (case, spaces and dashes do not matter).
        #[arg(long, conflicts_with = "id", required_unless_present = "id")]
        code: Option<String>,
        /// The voucher's id, as `hotspotctl vouchers` lists it.
        #[arg(long)]
        id: Option<i64>,
    },
}

#[derive(Args)]
struct CreateVouchers {
    /// How many (1 to 10,000).
    #[arg(long, allow_negative_numbers = true)]
    count: u32,
    #[command(flatten)]
    plan: PlanFlags,
    /// How many devices may use one voucher at a time (stored; one for now).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    max_devices: u32,
    /// After this date (YYYY-MM-DD, to the end of the day UTC, or an RFC 3339 time) an
    /// unused voucher can no longer be redeemed.
    #[arg(long)]
    valid_until: Option<String>,
    /// Also write the codes and their plan to this CSV file (mode 0600).
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Also write a printable HTML page of cards (A4, 3 x 8 a page) to this file (mode 0600).
    #[arg(long, value_name = "FILE")]
    print: Option<PathBuf>,
    /// What each voucher's session is sold for, in the daemon's `sales.currency` (like 2.50).
    #[arg(long)]
    price: Option<String>,
}

#[derive(Args)]
struct AddSession {
    #[arg(long, value_parser = parse_mac)]
    mac: MacAddr,
    #[command(flatten)]
    plan: PlanFlags,
    /// Who sells it (a plugin, a voucher system).
    #[arg(long, default_value = "cli")]
    provider: String,
    /// Start it (or the client's current one) at once.
    #[arg(long)]
    connect: bool,
    /// What it was sold for, in the daemon's `sales.currency` (like 2.50).
    #[arg(long)]
    price: Option<String>,
}

/// What a session sells, as `session add` and `voucher create` take it.
#[derive(Args)]
struct PlanFlags {
    /// time, data or time_or_data (or 0, 1, 2).
    #[arg(long = "type", value_parser = parse_type)]
    kind: SessionType,
    /// Seconds of connected time (time, time_or_data).
    // Negative numbers reach the parser, which says why they are wrong, rather than being
    // taken for an unknown option.
    #[arg(long, allow_negative_numbers = true)]
    time_secs: Option<u64>,
    /// Megabytes of traffic, up and down together (data, time_or_data).
    #[arg(long, value_parser = parse_megabytes, allow_negative_numbers = true)]
    data_mb: Option<f64>,
    /// Valid for this many days after it starts (plus its time); never expires without it.
    #[arg(long, allow_negative_numbers = true)]
    exp_days: Option<u32>,
    /// Download limit, Mbit/s.
    #[arg(long, allow_negative_numbers = true)]
    down_mbits: Option<i32>,
    /// Upload limit, Mbit/s.
    #[arg(long, allow_negative_numbers = true)]
    up_mbits: Option<i32>,
    /// Use the global speed limits instead of --down-mbits/--up-mbits.
    #[arg(long)]
    global_speed: bool,
}

impl PlanFlags {
    /// The session fields of the API's requests.
    fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        let serde_json::Value::Object(fields) = serde_json::json!({
            "type": self.kind,
            "time_secs": self.time_secs.unwrap_or(0),
            "data_mb": self.data_mb.unwrap_or(0.0),
            "exp_days": self.exp_days,
            "down_mbits": self.down_mbits.unwrap_or(0),
            "up_mbits": self.up_mbits.unwrap_or(0),
            "use_global_speed": self.global_speed,
        }) else {
            return serde_json::Map::new();
        };
        fields
    }
}

fn parse_mac(text: &str) -> Result<MacAddr, String> {
    text.parse()
        .map_err(|error: hotspotd::mac::ParseMacError| error.to_string())
}

fn parse_ip(text: &str) -> Result<std::net::IpAddr, String> {
    text.parse().map_err(|_| {
        format!("'{text}' is not an IPv4 or IPv6 address: write it like 192.0.2.10 or 2001:db8::10")
    })
}

fn parse_type(text: &str) -> Result<SessionType, String> {
    text.parse()
        .map_err(|error: hotspotd::sessions::data::UnknownSessionType| error.to_string())
}

fn parse_megabytes(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(mb) if mb.is_finite() && mb > 0.0 => Ok(mb),
        _ => Err(format!(
            "'{text}' is not a number of megabytes > 0, like 500 or 1.5"
        )),
    }
}

fn main() -> ExitCode {
    // Like other command-line tools, end quietly when the reader goes away
    // (`hotspotctl clients | head`): Rust ignores SIGPIPE, and println! then panics.
    // SAFETY: restoring the default disposition of one signal before any thread exists.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        )
    };
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!(
                "hotspotctl: cannot start: {}",
                hotspotd::text::chain(&error)
            );
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // The whole chain: the error names what failed, its sources say why.
        Err(error) => {
            eprintln!("hotspotctl: {}", hotspotd::text::chain(&error));
            ExitCode::FAILURE
        }
    }
}

/// Prints `--help` and `--version` as clap does; any other mistake on the command line as
/// one sentence on stderr (clap's own report adds the usage and a blank-line layout), with
/// clap's exit status 2.
fn usage_error(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => error.exit(),
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprintln!(
                "hotspotctl: {}",
                missing_command(&error.render().to_string())
            );
        }
        _ => eprintln!("hotspotctl: {}", one_sentence(&error.render().to_string())),
    }
    ExitCode::from(2)
}

/// What clap's help for a command that needs a subcommand comes down to: which command, and
/// the subcommands it takes.
fn missing_command(help: &str) -> String {
    let usage = help
        .lines()
        .find_map(|line| line.trim().strip_prefix("Usage: "))
        .unwrap_or("hotspotctl <COMMAND>");
    let command = usage
        .split(" <COMMAND>")
        .next()
        .unwrap_or("hotspotctl")
        .replace(" [OPTIONS]", "");
    let subcommands: Vec<&str> = help
        .lines()
        .skip_while(|line| line.trim() != "Commands:")
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .collect();
    format!(
        "'{command}' needs a command: {} (see '{command} --help')",
        subcommands.join(", ")
    )
}

/// clap's report (`error: …`, indented items and tips, `Usage: …`, a pointer to `--help`) as
/// one line: the error, its items after a colon, its tips after a semicolon.
fn one_sentence(report: &str) -> String {
    let mut lines = report
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .take_while(|line| !line.starts_with("Usage:"))
        .filter(|line| !line.starts_with("For more information"));
    let head = lines.next().unwrap_or("the command line is not valid");
    let mut sentence = head.trim_start_matches("error: ").to_owned();
    let (tips, items): (Vec<&str>, Vec<&str>) = lines.partition(|line| line.starts_with("tip:"));
    if !items.is_empty() {
        sentence = format!("{}: {}", sentence.trim_end_matches(':'), items.join(", "));
    }
    for tip in tips {
        sentence = format!("{sentence}; {tip}");
    }
    hotspotd::text::bounded(format!("{sentence} (see 'hotspotctl --help')"))
}

/// A piece of a MAC or an address, as `GET /v1/clients?search=` takes it.
fn parse_search(text: &str) -> Result<String, String> {
    hotspotd::views::client_search(text)
}

/// `GET /v1/clients` with the flags of `hotspotctl clients` as its query.
fn clients_path(
    ip: Option<std::net::IpAddr>,
    search: Option<&str>,
    state: Option<&str>,
    offset: Option<usize>,
    limit: Option<u16>,
) -> String {
    if let Some(ip) = ip {
        return format!("/v1/clients?ip={ip}");
    }
    // Each value is checked to need no escaping (`parse_search`, the parsers of the others).
    with_query(
        "/v1/clients",
        [
            search.map(|search| format!("search={search}")),
            state.map(|state| format!("state={state}")),
            offset.map(|offset| format!("offset={offset}")),
            limit.map(|limit| format!("limit={limit}")),
        ],
    )
}

/// `path` with the parameters given, `name=value` each, none of which needs escaping.
fn with_query<const N: usize>(path: &str, parameters: [Option<String>; N]) -> String {
    let query: Vec<String> = parameters.into_iter().flatten().collect();
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

/// `hotspotctl sessions`: a page of `GET /v1/sessions`, and on stderr how to page on when
/// more match.
async fn list_sessions(
    cli: &Cli,
    api: &ApiClient,
    mac: Option<MacAddr>,
    state: Option<&str>,
    offset: Option<u64>,
    limit: Option<u32>,
) -> Result<(), ClientError> {
    // Each value is checked to need no escaping (by its parser).
    let path = with_query(
        "/v1/sessions",
        [
            mac.map(|mac| format!("mac={mac}")),
            state.map(|state| format!("state={state}")),
            offset.map(|offset| format!("offset={offset}")),
            limit.map(|limit| format!("limit={limit}")),
        ],
    );
    let (sessions, total): (Vec<SessionView>, _) = api.get_page(&path).await?;
    show(cli, &sessions, table::sessions);
    let shown = offset.unwrap_or(0) + sessions.len() as u64;
    if let Some(total) = total.filter(|total| shown < *total) {
        eprintln!(
            "{shown} of {total} shown: page on with --offset {shown}, or narrow with --mac or --state"
        );
    }
    Ok(())
}

async fn execute(cli: &Cli) -> Result<(), ClientError> {
    let api = ApiClient::new(&cli.socket);
    match &cli.command {
        Command::Clients {
            ip,
            search,
            state,
            offset,
            limit,
        } => {
            let path = clients_path(*ip, search.as_deref(), state.as_deref(), *offset, *limit);
            let clients: Vec<ClientView> = api.get(&path).await?;
            show(cli, &clients, table::clients);
        }
        Command::Sessions {
            mac,
            state,
            offset,
            limit,
        } => list_sessions(cli, &api, *mac, state.as_deref(), *offset, *limit).await?,
        Command::Session(SessionCommand::Add(add)) => {
            let mut body = add.plan.json();
            body.insert("mac".to_owned(), serde_json::json!(add.mac));
            body.insert("provider".to_owned(), serde_json::json!(add.provider));
            body.insert("connect".to_owned(), serde_json::json!(add.connect));
            // `null` when not given: no price.
            body.insert("price".to_owned(), serde_json::json!(add.price));
            let session: SessionView = api
                .post("/v1/sessions", &serde_json::Value::Object(body))
                .await?;
            show(cli, std::slice::from_ref(&session), table::sessions);
        }
        Command::Session(SessionCommand::Remove { id }) => {
            api.delete(&format!("/v1/sessions/{id}")).await?;
            if cli.json {
                println!("{}", serde_json::json!({ "removed": id }));
            } else {
                println!("session {id} removed");
            }
        }
        Command::Vouchers => {
            let vouchers: Vec<VoucherView> = api.get("/v1/vouchers").await?;
            show(cli, &vouchers, vouchers::table);
        }
        Command::Voucher(command) => voucher(cli, &api, command).await?,
        Command::Garden => {
            let garden: serde_json::Value = api.get("/v1/garden").await?;
            if cli.json {
                print_json(&garden);
            } else {
                table::garden(&garden);
            }
        }
        Command::Connect { mac } => client_action(cli, &api, mac, "connect").await?,
        Command::Pause { mac } => client_action(cli, &api, mac, "pause").await?,
        Command::Events => {
            let json = cli.json;
            api.stream_lines("/v1/events", |line| {
                if json {
                    println!("{line}");
                } else {
                    println!("{}", table::event(line));
                }
            })
            .await?;
        }
        Command::Portal(PortalCommand::DhcpOptions { format }) => {
            let options: serde_json::Value = api
                .get(&format!("/v1/portal/dhcp-options?format={format}"))
                .await?;
            if cli.json {
                print_json(&options);
            } else {
                // The text ends with its last line's newline.
                print!("{}", options["text"].as_str().unwrap_or_default());
            }
        }
        Command::Usage { .. } | Command::Sales { .. } => report(cli, &api).await?,
        Command::Status => {
            let status: StatusView = api.get("/v1/status").await?;
            if cli.json {
                print_json(&status);
            } else {
                table::status(&status);
            }
        }
    }
    Ok(())
}

/// `hotspotctl connect|pause`: the client as it is after the action.
async fn client_action(
    cli: &Cli,
    api: &ApiClient,
    mac: &MacAddr,
    action: &str,
) -> Result<(), ClientError> {
    let client: ClientView = api
        .post(
            &format!("/v1/clients/{mac}/{action}"),
            &serde_json::json!({}),
        )
        .await?;
    show(cli, std::slice::from_ref(&client), table::clients);
    Ok(())
}

/// `hotspotctl usage|sales`: the query from the flags.
async fn report(cli: &Cli, api: &ApiClient) -> Result<(), ClientError> {
    match &cli.command {
        Command::Usage {
            mac,
            session,
            since,
            until,
            by,
            per_session,
            page,
            csv,
        } => {
            let mut query = vec![("by", by.clone())];
            query.extend(mac.map(|mac| ("mac", mac.to_string())));
            query.extend(session.map(|id| ("session", id.to_string())));
            query.extend(since.clone().map(|since| ("since", since)));
            query.extend(until.clone().map(|until| ("until", until)));
            if *per_session {
                query.push(("per", "session".to_owned()));
            }
            page.add(&mut query);
            history(cli, api, "/v1/usage", query, *csv, table::usage).await?;
        }
        Command::Sales {
            since,
            until,
            mac,
            provider,
            page,
            csv,
        } => {
            let mut query = Vec::new();
            query.extend(mac.map(|mac| ("mac", mac.to_string())));
            query.extend(provider.clone().map(|provider| ("provider", provider)));
            query.extend(since.clone().map(|since| ("since", since)));
            query.extend(until.clone().map(|until| ("until", until)));
            page.add(&mut query);
            history(cli, api, "/v1/sales", query, *csv, table::sales).await?;
        }
        _ => {}
    }
    Ok(())
}

impl Page {
    fn add(&self, query: &mut Vec<(&'static str, String)>) {
        query.extend(self.limit.map(|limit| ("limit", limit.to_string())));
        query.extend(self.offset.map(|offset| ("offset", offset.to_string())));
    }
}

/// `hotspotctl usage|sales`: CSV as the daemon writes it, JSON, or a table.
async fn history(
    cli: &Cli,
    api: &ApiClient,
    path: &str,
    mut query: Vec<(&'static str, String)>,
    csv: bool,
    table: fn(&serde_json::Value),
) -> Result<(), ClientError> {
    if csv {
        query.push(("format", "csv".to_owned()));
    }
    let encoded: Vec<String> = query
        .iter()
        .map(|(key, value)| format!("{key}={}", percent_encode(value)))
        .collect();
    let path = format!("{path}?{}", encoded.join("&"));
    if csv {
        print!("{}", api.get_text(&path).await?);
        return Ok(());
    }
    let answer: serde_json::Value = api.get(&path).await?;
    if cli.json {
        print_json(&answer);
    } else {
        table(&answer);
    }
    Ok(())
}

/// A query value with everything but unreserved characters percent-encoded.
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

/// `hotspotctl voucher create|revoke`.
async fn voucher(cli: &Cli, api: &ApiClient, command: &VoucherCommand) -> Result<(), ClientError> {
    match command {
        VoucherCommand::Create(create) => {
            let mut body = create.plan.json();
            body.insert("count".to_owned(), serde_json::json!(create.count));
            body.insert(
                "max_devices".to_owned(),
                serde_json::json!(create.max_devices),
            );
            body.insert(
                "valid_until".to_owned(),
                serde_json::json!(create.valid_until),
            );
            body.insert("price".to_owned(), serde_json::json!(create.price));
            let created: Vec<VoucherView> = api
                .post("/v1/vouchers", &serde_json::Value::Object(body))
                .await?;
            if cli.json {
                print_json(&created);
            } else {
                vouchers::table(&created);
            }
            if let Some(path) = &create.csv {
                vouchers::write_private(path, &vouchers::csv(&created))?;
            }
            if let Some(path) = &create.print {
                vouchers::write_private(path, &vouchers::cards(&created))?;
            }
        }
        VoucherCommand::Revoke { code, id } => {
            let voucher: VoucherView = match (code, id) {
                (_, Some(id)) => {
                    api.post(&format!("/v1/vouchers/{id}/revoke"), &serde_json::json!({}))
                        .await?
                }
                (code, None) => {
                    api.post(
                        "/v1/vouchers/revoke",
                        &serde_json::json!({ "code": code.as_deref().unwrap_or_default() }),
                    )
                    .await?
                }
            };
            show(cli, std::slice::from_ref(&voucher), vouchers::table);
        }
    }
    Ok(())
}

/// Prints rows as a table, or as one JSON document: an array for listings, the object itself
/// for a command about one thing.
fn show<T: serde::Serialize>(cli: &Cli, rows: &[T], table: fn(&[T])) {
    if !cli.json {
        table(rows);
        return;
    }
    match &cli.command {
        Command::Clients { .. } | Command::Sessions { .. } | Command::Vouchers => {
            print_json(&rows);
        }
        _ => match rows.first() {
            Some(row) => print_json(row),
            None => print_json(&rows),
        },
    }
}

fn print_json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(error) => eprintln!("hotspotctl: cannot print JSON: {error}"),
    }
}
