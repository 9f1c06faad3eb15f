//! End to end: a seeded generator throws thousands of hostile requests at every endpoint of a
//! running daemon — malformed and truncated JSON, wrong types, huge, negative and non-finite
//! numbers, overlong strings, unknown fields, bad and group MACs, bad ids, wrong methods and
//! paths, wrong content types, oversized bodies, and bytes that are not HTTP at all. Every
//! refusal must be a JSON error with a documented code and a sentence; nothing may be accepted
//! that should not be; the daemon keeps serving; and the sessions and clients are exactly as
//! before. Clients that stall half-way are cut off, and connections over the cap wait in the
//! backlog until others close. Needs root (namespaces, eBPF).

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use hotspotd_tests::frames::XorShift;
use hotspotd_tests::http::{Answer, exchange, exchange_on, request};
use hotspotd_tests::{Daemon, Lan};
use serde_json::Value;

const SEED: u64 = 0xbad0_a910_0000_0001;
const PROBES: usize = 5_000;

/// Every code docs/api.md lists.
const DOCUMENTED_CODES: &[&str] = &[
    "bad_request",
    "bad_mac",
    "invalid_session",
    "unknown_session",
    "duplicate_session",
    "no_session_left",
    "not_connected",
    "store_unavailable",
    "shutting_down",
    "not_found",
    "method_not_allowed",
    "unauthorized",
    "body_too_large",
    "request_timeout",
];
/// Codes that would mean the daemon mistook bad input for a failure of its own.
const NEVER_FOR_BAD_INPUT: &[&str] = &["store_unavailable", "duplicate_session", "shutting_down"];

/// A MAC no client has: a session sold to it would show.
const FRESH_MAC: &str = "02:ee:00:00:00:01";
/// The body limit the API documents.
const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// One hostile request and what may come back.
struct Probe {
    what: String,
    raw: Vec<u8>,
    /// A read, or a documented no-op: 2xx is fine and changes nothing.
    harmless: bool,
    /// Not HTTP: the HTTP layer may refuse it before the API sees it, with a bare status or
    /// by closing.
    not_http: bool,
}

impl Probe {
    fn api(what: impl Into<String>, raw: Vec<u8>) -> Self {
        Self {
            what: what.into(),
            raw,
            harmless: false,
            not_http: false,
        }
    }
}

fn pick<'a, T>(rng: &mut XorShift, items: &'a [T]) -> &'a T {
    &items[rng.below(items.len())]
}

/// Values no field of a new session takes, as raw JSON text (some not JSON at all).
const HOSTILE_ANY: &[&str] = &[
    "null",
    "true",
    "[]",
    "{}",
    "\"\"",
    "NaN",
    "Infinity",
    "-Infinity",
    "\"NaN\"",
    "\"Infinity\"",
    "1e309",
    "-1e309",
    "18446744073709551616",
    "-9223372036854775809",
    "[1,2,3]",
    "{\"nested\":{\"deeper\":[1]}}",
    "\"\\u0000\"",
];

/// Hostile values for one field, each invalid for it.
fn hostile_values(field: &str) -> Vec<String> {
    let mut values: Vec<String> = HOSTILE_ANY.iter().map(ToString::to_string).collect();
    let specific: &[&str] = match field {
        "mac" => &[
            "\"zz:zz:zz:zz:zz:zz\"",
            "\"aa:bb:cc:dd:ee\"",
            "\"aa:bb:cc:dd:ee:ff:00\"",
            "\"ff:ff:ff:ff:ff:ff\"",
            "\"01:00:5e:00:00:fb\"",
            "\"00:00:00:00:00:00\"",
            "\"aabbccddeeff\"",
            "\"02:ee:00:00:00:0١\"",
            "42",
        ],
        "type" => &["3", "-1", "256", "1.5", "\"hours\"", "\"TIME\"", "\"\""],
        "time_secs" => &[
            "0",
            "-1",
            "1.5",
            "18446744073709551615",
            "3153600001",
            "1e308",
            "\"60\"",
        ],
        "data_mb" => &[
            "0", "-1", "-0.0", "-1e308", "1e308", "1e300", "\"5\"", "\"1e3\"",
        ],
        "exp_days" => &["0", "-1", "1.5", "4294967296", "4294967295", "\"7\""],
        "down_mbits" | "up_mbits" => &["0", "-1", "-2147483648", "2147483648", "1.5", "\"10\""],
        "use_global_speed" => &["1", "\"true\"", "\"yes\""],
        "provider" => &["\"\"", "42"],
        "connect" => &["1", "\"true\""],
        _ => &[],
    };
    values.extend(specific.iter().map(ToString::to_string));
    match field {
        // Too long: 65 characters, and a megabyte (over the body limit).
        "provider" => {
            values.push(format!("\"{}\"", "p".repeat(65)));
            values.push(format!("\"{}\"", "é".repeat(40_000)));
            values.push(format!("\"{}\"", "x".repeat(1 << 20)));
        }
        "mac" => values.push(format!("\"{}\"", "a".repeat(1 << 20))),
        _ => {}
    }
    // Null is a valid "never expires", any short text a valid provider, true a valid flag.
    match field {
        "exp_days" => values.retain(|value| value != "null"),
        "provider" => values.retain(|value| value != "\"NaN\"" && value != "\"Infinity\""),
        "use_global_speed" | "connect" => values.retain(|value| value != "true"),
        _ => {}
    }
    values
}

/// A valid body of a session for [`FRESH_MAC`], as fields of raw JSON text.
fn valid_session(rng: &mut XorShift) -> Vec<(String, String)> {
    let mut fields = vec![("mac".to_owned(), format!("\"{FRESH_MAC}\""))];
    let extra: &[(&str, &str)] = match rng.below(3) {
        0 => &[("type", "\"time\""), ("time_secs", "60")],
        1 => &[("type", "1"), ("data_mb", "5")],
        _ => &[
            ("type", "\"time_or_data\""),
            ("time_secs", "60"),
            ("data_mb", "5"),
        ],
    };
    fields.extend(
        extra
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned())),
    );
    if rng.one_in(2) {
        fields.push(("use_global_speed".to_owned(), "true".to_owned()));
    } else {
        fields.push(("down_mbits".to_owned(), "10".to_owned()));
        fields.push(("up_mbits".to_owned(), "2".to_owned()));
    }
    fields
}

/// A valid session whose type and speeds use every limit: time, data, down and up.
fn every_limit_applies() -> Vec<(String, String)> {
    [
        ("mac", format!("\"{FRESH_MAC}\"")),
        ("type", "\"time_or_data\"".to_owned()),
        ("time_secs", "60".to_owned()),
        ("data_mb", "5".to_owned()),
        ("down_mbits", "10".to_owned()),
        ("up_mbits", "2".to_owned()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect()
}

fn render(fields: &[(String, String)]) -> String {
    let mut text = String::from("{");
    for (index, (key, value)) in fields.iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        let _ = write!(text, "\"{key}\":{value}");
    }
    text.push('}');
    text
}

/// A body for `POST /v1/sessions` that must be refused: a valid one with one thing broken.
fn hostile_session(rng: &mut XorShift) -> (String, Vec<u8>) {
    let mut fields = valid_session(rng);
    let fields_text = |fields: &[(String, String)]| render(fields).into_bytes();
    match rng.below(10) {
        0..=4 => {
            // One field, present or not, gets a value it does not take.
            let field = *pick(
                rng,
                &[
                    "mac",
                    "type",
                    "time_secs",
                    "data_mb",
                    "exp_days",
                    "down_mbits",
                    "up_mbits",
                    "use_global_speed",
                    "provider",
                    "connect",
                ],
            );
            let values = hostile_values(field);
            let value = pick(rng, &values).clone();
            if matches!(field, "time_secs" | "data_mb" | "down_mbits" | "up_mbits") {
                // A limit is checked only where it applies: a type and speeds that apply all.
                fields = every_limit_applies();
            }
            fields.retain(|(key, _)| key != field);
            fields.push((field.to_owned(), value.clone()));
            let shown: String = value.chars().take(40).collect();
            (
                format!("session with {field} = {shown}"),
                fields_text(&fields),
            )
        }
        5 => {
            let field = *pick(
                rng,
                &[
                    "MAC",
                    "Type",
                    "id",
                    "state",
                    "time_cons",
                    "data_cons",
                    "started_at",
                    "created_at",
                    "mac ",
                    "",
                    "__proto__",
                ],
            );
            fields.push((field.to_owned(), "1".to_owned()));
            (
                format!("session with unknown field {field:?}"),
                fields_text(&fields),
            )
        }
        6 => {
            let required = if rng.one_in(2) { "mac" } else { "type" };
            fields.retain(|(key, _)| key != required);
            (format!("session without {required}"), fields_text(&fields))
        }
        7 => {
            let mut text = fields_text(&fields);
            let keep = rng.below(text.len());
            text.truncate(keep);
            (format!("session truncated to {keep} bytes"), text)
        }
        8 => {
            // The same key twice: serde refuses duplicates.
            fields.push(fields[0].clone());
            (
                "session with a duplicate key".to_owned(),
                fields_text(&fields),
            )
        }
        _ => {
            let junk: &[&[u8]] = &[
                b"",
                b"null",
                b"[]",
                b"42",
                b"\"a string\"",
                b"{",
                b"}",
                b"{\"mac\":}",
                b"\xff\xfe\xfd",
                b"{\"mac\":\"02:ee:00:00:00:01\",\"type\":0,\"time_secs\":60,\"use_global_speed\":true,}",
            ];
            let body = pick(rng, junk).to_vec();
            (
                format!("session body {}", String::from_utf8_lossy(&body)),
                body,
            )
        }
    }
}

/// A MAC-ish path segment that is not a client's MAC, percent-encoded as needed.
fn hostile_mac_segment(rng: &mut XorShift) -> String {
    match rng.below(4) {
        0 => {
            let mut bytes = vec![0u8; 1 + rng.below(24)];
            rng.fill(&mut bytes);
            bytes.iter().fold(String::new(), |mut text, byte| {
                let _ = write!(text, "%{byte:02x}");
                text
            })
        }
        1 => "a".repeat(1 + rng.below(4_096)),
        _ => (*pick(
            rng,
            &[
                "zz:zz:zz:zz:zz:zz",
                "ff:ff:ff:ff:ff:ff",
                "01:00:5e:00:00:fb",
                "00:00:00:00:00:00",
                "aa:bb:cc:dd:ee",
                "aa:bb:cc:dd:ee:ff:00",
                "%20",
                "..",
                "%2e%2e",
                "aa%3abb%3acc%3add%3aee%3aff%3a00",
                "null",
                "-1",
            ],
        ))
        .to_owned(),
    }
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

#[expect(clippy::too_many_lines, reason = "one arm per kind of probe")]
fn probe(rng: &mut XorShift, paused_mac: &str) -> Probe {
    match rng.below(16) {
        0..=5 => {
            let (what, body) = hostile_session(rng);
            Probe::api(what, request("POST", "/v1/sessions", &[JSON], &body))
        }
        6 => {
            // A valid session, but not sent as JSON.
            let body = render(&valid_session(rng));
            let content_type = *pick(
                rng,
                &[
                    None,
                    Some("text/plain"),
                    Some("application/x-www-form-urlencoded"),
                    Some("application/jsonx"),
                    Some("multipart/form-data"),
                ],
            );
            let headers: Vec<(&str, &str)> = content_type
                .map(|value| ("Content-Type", value))
                .into_iter()
                .collect();
            Probe::api(
                format!("valid session as {content_type:?}"),
                request("POST", "/v1/sessions", &headers, body.as_bytes()),
            )
        }
        7 => {
            let size = BODY_LIMIT_BYTES + 1 + rng.below(3 << 20);
            let body = format!(
                "{{\"mac\":\"{FRESH_MAC}\",\"type\":0,\"time_secs\":60,\"use_global_speed\":true,\"provider\":\"{}\"}}",
                "x".repeat(size)
            );
            Probe::api(
                format!("a {size}-byte body"),
                request("POST", "/v1/sessions", &[JSON], body.as_bytes()),
            )
        }
        8 => {
            let action = if rng.one_in(2) { "connect" } else { "pause" };
            let segment = hostile_mac_segment(rng);
            Probe::api(
                format!("{action} {}", segment.chars().take(40).collect::<String>()),
                request(
                    "POST",
                    &format!("/v1/clients/{segment}/{action}"),
                    &[JSON],
                    b"{}",
                ),
            )
        }
        9 => {
            // A well-formed MAC that has no session: connect and pause refuse, change nothing.
            // Pausing the paused client is a documented no-op.
            let (target, harmless) = match rng.below(3) {
                0 => (format!("/v1/clients/{FRESH_MAC}/connect"), false),
                1 => (format!("/v1/clients/{FRESH_MAC}/pause"), false),
                _ => (format!("/v1/clients/{paused_mac}/pause"), true),
            };
            let mut probe = Probe::api(target.clone(), request("POST", &target, &[JSON], b"{}"));
            probe.harmless = harmless;
            probe
        }
        10 => {
            let query = match rng.below(5) {
                0 => format!("?mac={}", hostile_mac_segment(rng)),
                1 => format!("?mac={FRESH_MAC}&mac={FRESH_MAC}"),
                2 => "?mac=".to_owned(),
                3 => format!("?{}=1", pick(rng, &["foo", "MAC", "id", "mac[]", "%ff"])),
                _ => format!("?mac={FRESH_MAC}&limit=0"),
            };
            let target = format!("/v1/sessions{query}");
            Probe::api(target.clone(), request("GET", &target, &[], b""))
        }
        11 => {
            let id = *pick(
                rng,
                &[
                    "-1",
                    "0",
                    "999999999",
                    "9223372036854775807",
                    "9223372036854775808",
                    "-9223372036854775809",
                    "abc",
                    "1.5",
                    "1e3",
                    "%00",
                    "%ff",
                    "0x10",
                    "+5",
                    "%207",
                ],
            );
            let target = format!("/v1/sessions/{id}");
            Probe::api(
                format!("DELETE {target}"),
                request("DELETE", &target, &[], b""),
            )
        }
        12 => {
            let (method, path) = *pick(
                rng,
                &[
                    ("PUT", "/v1/clients"),
                    ("DELETE", "/v1/clients"),
                    ("PATCH", "/v1/sessions"),
                    ("PUT", "/v1/sessions/1"),
                    ("GET", "/v1/sessions/1"),
                    ("GET", "/v1/clients/02:ee:00:00:00:01/connect"),
                    ("DELETE", "/v1/clients/02:ee:00:00:00:01/pause"),
                    ("POST", "/v1/status"),
                    ("POST", "/v1/events"),
                    ("DELETE", "/metrics"),
                    ("OPTIONS", "/v1/sessions"),
                    ("TRACE", "/v1/status"),
                    ("FOO", "/v1/status"),
                ],
            );
            Probe::api(
                format!("{method} {path}"),
                request(method, path, &[JSON], b"{}"),
            )
        }
        13 => {
            let path = *pick(
                rng,
                &[
                    "/",
                    "/v1",
                    "/v2/clients",
                    "/v1/clients/",
                    "/v1/clients//connect",
                    "/v1/sessions/1/2",
                    "/V1/CLIENTS",
                    "/v1/clients/../status",
                    "/metrics/",
                    "/%00",
                    "/v1/%ff",
                ],
            );
            Probe::api(format!("GET {path}"), request("GET", path, &[], b""))
        }
        14 => {
            // Reads, with junk around them: they answer and change nothing.
            let target = *pick(
                rng,
                &[
                    "/v1/clients?x=1",
                    "/v1/status?verbose",
                    "/metrics?format=json",
                    "/v1/sessions",
                ],
            );
            let method = if rng.one_in(2) { "GET" } else { "HEAD" };
            let mut probe = Probe::api(
                format!("{method} {target}"),
                request(method, target, &[JSON], b"{\"ignored\":true}"),
            );
            probe.harmless = true;
            probe
        }
        _ => {
            let raw: Vec<u8> = match rng.below(6) {
                0 => {
                    let mut bytes = vec![0u8; 1 + rng.below(512)];
                    rng.fill(&mut bytes);
                    bytes
                }
                1 => b"GET /v1/status HTTP/9.9\r\n\r\n".to_vec(),
                2 => b"GET /v1/status\r\n\r\n".to_vec(),
                3 => format!(
                    "GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                    "h".repeat(512 * 1024)
                )
                .into_bytes(),
                4 => format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "u".repeat(128 * 1024))
                    .into_bytes(),
                // A chunked body whose chunk size is not hex. (A body shorter than its
                // Content-Length makes the daemon wait: see the test of slow clients.)
                _ => b"POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n".to_vec(),
            };
            Probe {
                what: format!(
                    "not HTTP: {:?}",
                    String::from_utf8_lossy(&raw[..raw.len().min(40)])
                ),
                raw,
                harmless: false,
                not_http: true,
            }
        }
    }
}

/// Checks one answer against what the probe allows; returns the error code, if any.
fn check(probe: &Probe, answer: &Answer) -> Result<Option<String>> {
    let what = &probe.what;
    if (200..300).contains(&answer.status) {
        ensure!(
            probe.harmless,
            "{what}: accepted ({}): {}",
            answer.status,
            answer.body
        );
        return Ok(None);
    }
    let json = answer.json();
    if probe.not_http && json.is_none() {
        // Refused by the HTTP layer before the API: a bare status, or the connection closed.
        ensure!(
            answer.status == 0 || (400..500).contains(&answer.status) || answer.status == 505,
            "{what}: {} {}",
            answer.status,
            answer.body
        );
        return Ok(None);
    }
    let Some(json) = json else {
        bail!(
            "{what}: {} without a JSON body: {:?}",
            answer.status,
            answer.body
        );
    };
    let code = json["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let message = json["error"]["message"].as_str().unwrap_or_default();
    ensure!(
        DOCUMENTED_CODES.contains(&code.as_str()) && !NEVER_FOR_BAD_INPUT.contains(&code.as_str()),
        "{what}: code {code:?} ({}) {message}",
        answer.status
    );
    ensure!(
        message.len() >= 20 && message.len() <= 1_000,
        "{what}: the message should be a sentence of reasonable length: {message:?}"
    );
    ensure!(
        answer.status >= 400,
        "{what}: an error with status {}",
        answer.status
    );
    Ok(Some(code))
}

/// The state a refused request must not change: every session, and each client's state and
/// session (its byte counters move with the LAN's own traffic).
fn state(daemon: &Daemon) -> Result<(Value, Vec<Value>)> {
    let sessions = daemon.ctl_json(&["sessions"])?;
    let clients = daemon
        .ctl_json(&["clients"])?
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| serde_json::json!([row["mac"], row["state"], row["session_id"]]))
        .collect();
    Ok((sessions, clients))
}

#[test]
fn hostile_requests_get_a_json_error_and_change_nothing() -> Result<()> {
    let lan = Lan::new(2)?;
    let daemon = Daemon::start(&lan, &[])?;
    let (waiting, paused) = (&lan.clients[0].mac, &lan.clients[1].mac);
    // One session waiting, one paused: neither moves while the test runs.
    daemon.add_session(
        waiting,
        &["--type", "data", "--data-mb", "5", "--global-speed"],
    )?;
    daemon.connect_for_an_hour(paused)?;
    daemon.ctl_json(&["pause", "--mac", paused])?;
    let before = state(&daemon)?;

    let mut rng = XorShift::new(SEED);
    let mut codes: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    let started = Instant::now();
    for n in 0..PROBES {
        let probe = probe(&mut rng, paused);
        let answer = exchange(daemon.socket(), &probe.raw)
            .map_err(|error| error.context(format!("probe {n}: {}", probe.what)))?;
        let code = check(&probe, &answer).map_err(|error| error.context(format!("probe {n}")))?;
        *codes
            .entry(code.unwrap_or_else(|| answer.status.to_string()))
            .or_default() += 1;
        if n % 500 == 0 {
            let status = exchange(daemon.socket(), &request("GET", "/v1/status", &[], b""))?;
            ensure!(
                status.status == 200,
                "probe {n}: the daemon stopped answering: {status:?}"
            );
        }
    }
    let elapsed = started.elapsed();
    eprintln!("{PROBES} hostile requests in {elapsed:.1?}: {codes:?}");

    let after = state(&daemon)?;
    ensure!(
        after == before,
        "the state changed:\nbefore {before:?}\nafter  {after:?}"
    );
    ensure!(
        daemon.log().lines().all(|line| !line.contains("panicked")),
        "the daemon logged a panic:\n{}",
        daemon.log()
    );
    Ok(())
}

/// The daemon's limits on a request's headers and its body (api/serve.rs).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// The earliest a stalled client may be cut off: the limit, less the test's own delays.
const CUT_OFF_AFTER: Duration = Duration::from_secs(9);

/// Sends `raw` and then nothing more, holding the connection open; returns the answer (status
/// 0 when the daemon just closed) and how long it took.
fn stall(socket: &std::path::Path, raw: &[u8]) -> Result<(Answer, Duration)> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(3 * CLIENT_TIMEOUT))?;
    stream.write_all(raw)?;
    let started = Instant::now();
    let answer = exchange_on(&mut stream, b"")?;
    Ok((answer, started.elapsed()))
}

#[test]
fn a_client_that_stops_half_way_is_cut_off() -> Result<()> {
    let lan = Lan::new(1)?;
    let daemon = Daemon::start(&lan, &[])?;
    let socket = daemon.socket().to_owned();
    // Half the headers; and whole headers with half the body they announce.
    let headers = std::thread::spawn({
        let socket = socket.clone();
        move || stall(&socket, b"GET /v1/status HTTP/1.1\r\nHost: hotspotd\r\n")
    });
    let body = stall(
        &socket,
        b"POST /v1/sessions HTTP/1.1\r\nHost: hotspotd\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"mac\":",
    )?;
    let headers = headers
        .join()
        .map_err(|_| anyhow::anyhow!("the stalling thread panicked"))??;

    let (answer, took) = body;
    ensure!(
        answer
            .json()
            .is_some_and(|json| json["error"]["code"] == "request_timeout")
            && answer.status == 408,
        "half a body: {answer:?}"
    );
    ensure!(
        took >= CUT_OFF_AFTER && took < 2 * CLIENT_TIMEOUT,
        "half a body was cut off after {took:?}"
    );
    let (answer, took) = headers;
    // hyper closes the connection, with a bare 408 or nothing.
    ensure!(
        (answer.status == 0 || answer.status == 408)
            && took >= CUT_OFF_AFTER
            && took < 2 * CLIENT_TIMEOUT,
        "half the headers: {answer:?} after {took:?}"
    );
    let status = exchange(&socket, &request("GET", "/v1/status", &[], b""))?;
    ensure!(status.status == 200, "the daemon still answers: {status:?}");
    eprintln!(
        "half a body: 408 after {:?}; half the headers: closed after {took:?}",
        body.1
    );
    Ok(())
}

/// Connections the API serves at once (docs/api.md, api/serve.rs).
const MAX_CONNECTIONS: usize = 256;

/// Connections the daemon holds on its API socket: its file descriptors that are Unix sockets
/// bound to the socket's path (an accepted connection shares its listener's address), less
/// the listener itself. Connections still in the listen backlog are not the daemon's yet.
fn api_connections(daemon: &Daemon) -> Result<usize> {
    let pid = daemon.pid();
    let path = daemon.socket().to_string_lossy().into_owned();
    // Num RefCount Protocol Flags Type St Inode Path. An accepted socket lives in the
    // network namespace of the client that connected (the test's), the listener in the
    // daemon's: both tables.
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/unix"))?
        + &std::fs::read_to_string("/proc/self/net/unix")?;
    let inodes: std::collections::HashSet<&str> = table
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(7) == Some(&path.as_str())).then(|| fields[6])
        })
        .collect();
    let mut held: usize = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        // A descriptor closed while we look is not held.
        let Ok(link) = std::fs::read_link(entry?.path()) else {
            continue;
        };
        let inode = link
            .to_str()
            .and_then(|link| link.strip_prefix("socket:["))
            .and_then(|link| link.strip_suffix(']'));
        if inode.is_some_and(|inode| inodes.contains(inode)) {
            held += 1;
        }
    }
    Ok(held.saturating_sub(1))
}

/// Polls [`api_connections`] until it stops changing; returns the last count and the most
/// seen on the way.
fn settled_connections(daemon: &Daemon) -> Result<(usize, usize)> {
    let (mut last, mut most) = (api_connections(daemon)?, 0);
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(100));
        let now = api_connections(daemon)?;
        most = most.max(now);
        if now == last && now > 0 {
            break;
        }
        last = now;
    }
    Ok((last, most.max(last)))
}

#[test]
fn connections_over_the_cap_wait_and_are_served_once_others_close() -> Result<()> {
    let lan = Lan::new(1)?;
    let daemon = Daemon::start(&lan, &[])?;
    let socket = daemon.socket().to_owned();
    let status = request("GET", "/v1/status", &[], b"");

    // The cap and more, idle. Quickly: the daemon closes an idle connection after 10 s.
    let mut held = (0..MAX_CONNECTIONS + 32)
        .map(|_| UnixStream::connect(&socket))
        .collect::<std::io::Result<Vec<_>>>()?;
    let (holding, most) = settled_connections(&daemon)?;
    ensure!(
        most <= MAX_CONNECTIONS,
        "the daemon held {most} connections at once, over the cap of {MAX_CONNECTIONS}"
    );
    ensure!(
        holding == MAX_CONNECTIONS,
        "the daemon serves {holding} of {} connections, not the cap of {MAX_CONNECTIONS}",
        held.len()
    );

    // One more waits, unanswered, while the cap is held...
    let mut late = UnixStream::connect(&socket)?;
    late.write_all(&status)?;
    late.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut byte = [0; 1];
    let waited = std::io::Read::read(&mut late, &mut byte);
    ensure!(
        waited
            .as_ref()
            .is_err_and(|error| error.kind() == std::io::ErrorKind::WouldBlock),
        "a connection over the cap was not kept waiting: {waited:?}"
    );
    // ... while a connection being served answers.
    let answer = exchange_on(&mut held[0], &status)?;
    ensure!(answer.status == 200, "a served connection: {answer:?}");

    // Once the others close, the one that waited is answered.
    held.clear();
    late.set_read_timeout(Some(Duration::from_secs(10)))?;
    let answer = exchange_on(&mut late, b"")?;
    ensure!(
        answer.status == 200,
        "the connection that waited: {answer:?}"
    );
    let answer = exchange(&socket, &status)?;
    ensure!(answer.status == 200, "a new connection: {answer:?}");
    let (holding, most) = settled_connections(&daemon)?;
    ensure!(
        most <= MAX_CONNECTIONS && holding == 0,
        "after the clients closed, the daemon still holds {holding} connections"
    );
    Ok(())
}
