//! End to end: the API over loopback TCP answers only with the bearer token of
//! `api.token_file`; a non-loopback address is refused unless the configuration says so; the
//! Unix socket keeps its mode 0660. Needs root.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    os::unix::fs::PermissionsExt as _,
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, Result, ensure};
use hotspotd_tests::{Daemon, Lan, hotspotd_bin, workspace_root};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const ADDRESS: &str = "127.0.0.1:8099";

/// One HTTP/1.1 request from inside `lan.gateway` (the daemon's loopback is that namespace's);
/// returns the status code and the body.
fn request(lan: &Lan, path: &str, token: Option<&str>) -> Result<(u16, String)> {
    let authorization = token.map_or_else(String::new, |token| {
        format!("Authorization: Bearer {token}\r\n")
    });
    let text = format!(
        "GET {path} HTTP/1.1\r\nHost: hotspotd\r\nConnection: close\r\n{authorization}\r\n"
    );
    lan.gateway.run(move || -> Result<(u16, String)> {
        let address: SocketAddr = ADDRESS.parse()?;
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(text.as_bytes())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .context("an HTTP status line")?;
        let body = answer
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        Ok((status, body))
    })?
}

#[test]
fn tcp_needs_the_token_and_the_socket_is_group_only() -> Result<()> {
    let lan = Lan::new(1)?;
    let dir = tempfile::tempdir()?;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n"))?;
    let token_path = token_file.to_str().context("a UTF-8 path")?;
    let daemon = Daemon::start(
        &lan,
        &[
            ("HOTSPOTD__API__TCP_LISTEN", ADDRESS),
            ("HOTSPOTD__API__TOKEN_FILE", token_path),
        ],
    )?;

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
