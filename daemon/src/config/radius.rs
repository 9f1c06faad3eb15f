//! `[radius]`: hotspotd as a RADIUS client (docs/radius.md). Pure.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[radius]`. Empty `auth_server`: RADIUS off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RadiusConfig {
    /// `host:port` of the first server asked for logins; empty: RADIUS off.
    pub auth_server: String,
    /// Servers asked in turn when the one before does not answer (failover).
    pub auth_servers: Vec<String>,
    /// `host:port` accounting goes to; empty: the auth server's host, port 1813.
    pub acct_server: String,
    pub acct_servers: Vec<String>,
    /// The shared secret of every server (their `clients.conf`).
    pub secret: String,
    /// NAS-Identifier; empty: the box's host name.
    pub nas_identifier: String,
    /// How long one try waits for an answer.
    pub timeout_ms: u64,
    /// Tries after the first, per server, before the next server is asked.
    pub retries: u64,
    /// The session an Access-Accept without Session-Timeout or a data limit sells, seconds.
    pub default_time_secs: u64,
    /// UDP port of the CoA/Disconnect listener (RFC 5176); 0: none.
    pub coa_port: u16,
    /// When no server answers a login: 0 refuses it (the default); more lets the code in for
    /// that many seconds, unchecked, accounted to the server once it is back.
    pub away_grant_secs: u64,
    /// A new device is logged in by its MAC (User-Name and User-Password
    /// `AA-BB-CC-DD-EE-FF`) when it first sends, before it needs the portal.
    pub mac_auth: bool,
}

impl Default for RadiusConfig {
    fn default() -> Self {
        Self {
            auth_server: String::new(),
            auth_servers: Vec::new(),
            acct_server: String::new(),
            acct_servers: Vec::new(),
            secret: String::new(),
            nas_identifier: String::new(),
            timeout_ms: 2_000,
            retries: 2,
            default_time_secs: 3_600,
            coa_port: 3_799,
            away_grant_secs: 0,
            mac_auth: false,
        }
    }
}

impl RadiusConfig {
    /// Whether RADIUS is on.
    #[must_use]
    pub fn enabled(&self) -> bool {
        !self.auth_server.is_empty()
    }

    /// The auth servers in the order they are asked.
    #[must_use]
    pub fn auth_servers(&self) -> Vec<String> {
        std::iter::once(&self.auth_server)
            .chain(&self.auth_servers)
            .filter(|server| !server.is_empty())
            .cloned()
            .collect()
    }

    /// The accounting servers in the order they are asked: `acct_server` and `acct_servers`,
    /// or else each auth server's host at port 1813.
    #[must_use]
    pub fn acct_servers(&self) -> Vec<String> {
        let given: Vec<String> = std::iter::once(&self.acct_server)
            .chain(&self.acct_servers)
            .filter(|server| !server.is_empty())
            .cloned()
            .collect();
        if !given.is_empty() {
            return given;
        }
        self.auth_servers()
            .iter()
            .filter_map(|server| server.rsplit_once(':'))
            .map(|(host, _)| format!("{host}:1813"))
            .collect()
    }

    #[must_use]
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// NAS-Identifier: the configured one, else the host name.
    #[must_use]
    pub fn nas_identifier(&self) -> String {
        if !self.nas_identifier.is_empty() {
            return self.nas_identifier.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .ok()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "hotspotd".to_owned())
    }

    /// What is wrong with the section, as `(key, message)`.
    pub(super) fn check(&self) -> Result<(), (&'static str, String)> {
        for (key, servers) in [
            ("radius.auth_server", vec![self.auth_server.clone()]),
            ("radius.auth_servers", self.auth_servers.clone()),
            ("radius.acct_server", vec![self.acct_server.clone()]),
            ("radius.acct_servers", self.acct_servers.clone()),
        ] {
            for server in servers.iter().filter(|server| !server.is_empty()) {
                let port = server.rsplit_once(':').and_then(|(host, port)| {
                    (!host.is_empty())
                        .then(|| port.parse::<u16>().ok())
                        .flatten()
                });
                if port.is_none_or(|port| port == 0) {
                    return Err((
                        key,
                        format!(
                            "must be host:port like 192.0.2.10:1812 or radius.example.com:1812 (got {server:?})"
                        ),
                    ));
                }
            }
        }
        for (key, value) in [
            (super::keys::RADIUS_TIMEOUT_MS, self.timeout_ms),
            (super::keys::RADIUS_RETRIES, self.retries),
            (
                super::keys::RADIUS_DEFAULT_TIME_SECS,
                self.default_time_secs,
            ),
            (super::keys::RADIUS_AWAY_GRANT_SECS, self.away_grant_secs),
        ] {
            key.check(i128::from(value))
                .map_err(|message| (key.path, message))?;
        }
        if !self.auth_servers.is_empty() && self.auth_server.is_empty() {
            return Err((
                "radius.auth_servers",
                "lists servers to fail over to: set radius.auth_server, the first one, too"
                    .to_owned(),
            ));
        }
        if self.enabled() && self.secret.is_empty() {
            return Err((
                "radius.secret",
                "must be set when radius.auth_server is: the shared secret of the server's clients.conf"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}
