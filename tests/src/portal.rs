//! Talking to the built-in portal from a client's namespace, as the client's browser would:
//! a raw HTTP exchange with the portal's listener on the gateway, and entering a code on its
//! form (the page first, for its CSRF token, then the form).

use std::{
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use anyhow::{Context as _, Result};

use crate::{
    Client, GATEWAY_LAN_V4, Netns,
    http::{Answer, exchange_on, request},
};

/// `portal.listen_port`'s default.
pub const PORTAL_PORT: u16 = 2050;

/// Sends `raw` (one HTTP request) to the portal from `netns` and reads the answer.
pub fn exchange(netns: &Netns, raw: Vec<u8>) -> Result<Answer> {
    let target = SocketAddr::new(GATEWAY_LAN_V4.into(), PORTAL_PORT);
    netns.run(move || -> Result<Answer> {
        let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(2))
            .with_context(|| format!("connect to the portal at {target}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        exchange_on(&mut stream, &raw)
    })?
}

/// Enters `code` on the portal's form from `client`, as a browser does.
pub fn enter_code(client: &Client, code: &str) -> Result<Answer> {
    let page = exchange(&client.netns, request("GET", "/", &[], b""))?;
    let (_, rest) = page
        .body
        .split_once("name=\"csrf\" value=\"")
        .context("a CSRF field")?;
    let csrf = rest.split('"').next().unwrap_or_default();
    let body = format!("csrf={csrf}&code={code}");
    exchange(
        &client.netns,
        request(
            "POST",
            "/",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        ),
    )
}
