//! End to end: the API over loopback TCP answers only with the bearer token of
//! `api.token_file`, and a source that keeps sending wrong ones is refused for a while; a
//! non-loopback address is refused unless the configuration says so; the Unix socket keeps
//! its mode 0660. Needs root.

use std::{
    io::{Read as _, Write as _},
    net::Ipv4Addr,
    os::unix::fs::PermissionsExt as _,
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, Result, ensure};
use hotspotd_tests::{Daemon, Lan, hotspotd_bin, tcp_connect_from, workspace_root};

/// Wrong tokens one source may send before it is refused unread (api/throttle.rs).
const MAX_WRONG_TOKENS: usize = 10;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const ADDRESS: &str = "127.0.0.1:8099";

/// One HTTP/1.1 request from inside `lan.gateway` (the daemon's loopback is that namespace's);
/// returns the status code and the body.
fn request(lan: &Lan, path: &str, token: Option<&str>) -> Result<(u16, String)> {
    let answer = request_from(lan, Ipv4Addr::LOCALHOST, path, token)?;
    Ok((answer.status, answer.body))
}

/// An answer: status code, header lines, body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

/// [`request`] from the loopback address `source` (any of 127.0.0.0/8): a client on
/// another address of the box, as far as the daemon can tell.
fn request_from(lan: &Lan, source: Ipv4Addr, path: &str, token: Option<&str>) -> Result<Answer> {
    let authorization = token.map_or_else(String::new, |token| {
        format!("Authorization: Bearer {token}\r\n")
    });
    let text = format!(
        "GET {path} HTTP/1.1\r\nHost: hotspotd\r\nConnection: close\r\n{authorization}\r\n"
    );
    lan.gateway.run(move || -> Result<Answer> {
        let mut stream = tcp_connect_from(source, ADDRESS.parse()?)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(text.as_bytes())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .context("an HTTP status line")?;
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        Ok(Answer {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        })
    })?
}

/// A daemon with the TCP listener on, its token in a file of the returned folder (kept
/// while the daemon runs).
fn start_with_token(lan: &Lan) -> Result<(Daemon, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n"))?;
    let token_path = token_file.to_str().context("a UTF-8 path")?;
    let daemon = Daemon::start(
        lan,
        &[
            ("HOTSPOTD__API__TCP_LISTEN", ADDRESS),
            ("HOTSPOTD__API__TOKEN_FILE", token_path),
        ],
    )?;
    Ok((daemon, dir))
}

#[test]
fn tcp_needs_the_token_and_the_socket_is_group_only() -> Result<()> {
    let lan = Lan::new(1)?;
    let (daemon, _token_dir) = start_with_token(&lan)?;

    let (status, body) = request(&lan, "/v1/clients", None)?;
    ensure!(
        status == 401 && body.contains("\"unauthorized\""),
        "no token: {status} {body}"
    );
    let (status, body) = request(&lan, "/v1/clients", Some("not-the-token-at-all-0000000000"))?;
    ensure!(status == 401, "a wrong token: {status} {body}");
    let (status, body) = request(&lan, "/metrics", Some("0123"))?;
    ensure!(status == 401, "a prefix of the token: {status} {body}");
    let (status, body) = request(&lan, "/v1/clients", Some(TOKEN))?;
    ensure!(
        status == 200 && body.trim_start().starts_with('['),
        "the token: {status} {body}"
    );
    let (status, body) = request(&lan, "/metrics", Some(TOKEN))?;
    ensure!(
        status == 200 && body.contains("hotspotd_build_info"),
        "metrics: {status}"
    );

    let mode = std::fs::metadata(daemon.socket())?.permissions().mode() & 0o777;
    ensure!(
        mode == 0o660,
        "the socket is owner and group only: {mode:o}"
    );
    Ok(())
}

#[test]
fn wrong_tokens_get_their_source_refused_a_while_and_no_one_else() -> Result<()> {
    let lan = Lan::new(1)?;
    let (daemon, _token_dir) = start_with_token(&lan)?;
    let guesser = Ipv4Addr::LOCALHOST;
    let portal = Ipv4Addr::new(127, 0, 0, 2);

    for guess in 0..MAX_WRONG_TOKENS {
        let wrong = format!("{guess:032}");
        let answer = request_from(&lan, guesser, "/v1/clients", Some(&wrong))?;
        ensure!(answer.status == 401, "guess {guess}: {}", answer.status);
    }
    // Now even the right token is refused from there, without a look at it.
    let answer = request_from(&lan, guesser, "/v1/clients", Some(TOKEN))?;
    let retry_after: Option<u64> = answer
        .head
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("retry-after:")
                .map(str::to_owned)
        })
        .and_then(|value| value.trim().parse().ok());
    ensure!(
        answer.status == 429
            && answer.body.contains("\"too_many_wrong_tokens\"")
            && retry_after.is_some_and(|secs| (1..=60).contains(&secs)),
        "the guesser is refused for a while: {} {retry_after:?}\n{}\n{}",
        answer.status,
        answer.head,
        answer.body
    );
    // Another address with the token is served, and its own wrong token is only a 401.
    let answer = request_from(&lan, portal, "/v1/clients", Some(TOKEN))?;
    ensure!(
        answer.status == 200,
        "the portal is served: {}",
        answer.status
    );
    let answer = request_from(&lan, portal, "/v1/clients", Some("0000"))?;
    ensure!(answer.status == 401, "the portal's typo: {}", answer.status);

    // The log names the guesser once for its first refusal and once for its block, not once
    // per guess.
    let log = daemon.log();
    let about_guesser: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("WARN") && line.contains("127.0.0.1"))
        .collect();
    ensure!(
        about_guesser.len() == 2
            && about_guesser[1].contains(&format!("sent {MAX_WRONG_TOKENS} TCP API requests")),
        "two lines about 127.0.0.1, the second with the count: {about_guesser:#?}"
    );
    let answer = request_from(&lan, portal, "/metrics", Some(TOKEN))?;
    let samples = hotspotd::metrics::parse(&answer.body).map_err(anyhow::Error::msg)?;
    let value = |series: &str| samples.iter().find(|(s, _)| s == series).map(|(_, v)| *v);
    ensure!(
        value(r#"hotspotd_api_refusals_total{why="wrong_token"}"#) == Some(11.0)
            && value(r#"hotspotd_api_refusals_total{why="rate_limited"}"#) == Some(1.0),
        "metrics count 10 + 1 wrong tokens and 1 refused unread:\n{}",
        answer.body
    );
    Ok(())
}

#[test]
fn a_non_loopback_tcp_address_is_refused_unless_allowed() -> Result<()> {
    let check = |extra: &[(&str, &str)]| -> Result<(bool, String)> {
        let output = Command::new(hotspotd_bin())
            .args(["--check-config", "--config"])
            .arg(workspace_root().join("config.toml"))
            .env("HOTSPOTD__API__TCP_LISTEN", "192.0.2.1:8080")
            .env("HOTSPOTD__API__TOKEN_FILE", "/etc/hotspotd/token")
            .envs(extra.iter().copied())
            .output()?;
        Ok((
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ))
    };
    let (ok, stderr) = check(&[])?;
    ensure!(
        !ok && stderr.contains("not a loopback address"),
        "refused: {stderr}"
    );
    let (ok, stderr) = check(&[("HOTSPOTD__API__ALLOW_NON_LOOPBACK", "true")])?;
    ensure!(ok, "allowed explicitly: {stderr}");
    Ok(())
}
