//! Which keys a running daemon takes from a new configuration (SIGHUP) and which wait for a
//! restart. Every field of every section is named below without `..`, so a key added to
//! [`Config`] does not compile until it is sorted into one or the other: none can be left out
//! of the reload's report by forgetting it. Pure.

use super::{
    AccountingConfig, ApiConfig, Config, EventsConfig, KernelConfig, NetworkConfig, PortalConfig,
    RadiusConfig, SessionsConfig, SpeedConfig, StoreConfig,
};

/// A new configuration as a running daemon applies it.
#[derive(Debug, PartialEq, Eq)]
pub struct Reloaded {
    /// The new values of the keys applied while running, the running values of the others:
    /// what the daemon then runs with and reports.
    pub config: Config,
    /// The keys whose new value differs from the running one and is not applied until
    /// hotspotd restarts, as `section.key`, in the order of the configuration file.
    pub needs_restart: Vec<&'static str>,
}

impl Config {
    /// What a running daemon (with `self`) makes of `new`. Applied while running: the walled
    /// garden, `[speed]`, `[accounting]`, `[sessions]`, `store.save_interval_secs`,
    /// `[vouchers]` (new codes only), `[history]` (the next save), `[sales]` (the next sale) and the `portal.trial_*` keys (the next trial). Read only at start: the interfaces (the programs and
    /// trees hang on them), the database path, every `[api]` key (the listeners and the token are set up once), the pin folder,
    /// and `[events]` (the hook task is started with its program and timeout).
    #[must_use]
    pub fn reload_from(&self, new: &Self) -> Reloaded {
        let Self {
            network,
            speed,
            accounting,
            sessions,
            store,
            api,
            kernel,
            events,
            portal,
            vouchers,
            history,
            sales,
            radius,
        } = new;
        let mut restart = Restart {
            keys: Vec::new(),
            running: self,
        };
        let config = Self {
            network: restart.network(network),
            speed: live_speed(speed),
            accounting: live_accounting(accounting),
            sessions: live_sessions(sessions),
            store: restart.store(store),
            api: restart.api(api),
            kernel: restart.kernel(kernel),
            events: restart.events(events),
            portal: restart.portal(portal),
            // Only new codes' length: applied whole.
            vouchers: vouchers.clone(),
            // Applied at the next save and the next sale.
            history: history.clone(),
            sales: sales.clone(),
            radius: restart.radius(radius),
        };
        Reloaded {
            config,
            needs_restart: restart.keys,
        }
    }
}

/// `[speed]`, applied whole.
fn live_speed(new: &SpeedConfig) -> SpeedConfig {
    let SpeedConfig {
        global_down_mbits,
        global_up_mbits,
        classes_ready,
    } = *new;
    SpeedConfig {
        global_down_mbits,
        global_up_mbits,
        classes_ready,
    }
}

/// `[accounting]`, applied whole.
fn live_accounting(new: &AccountingConfig) -> AccountingConfig {
    let AccountingConfig {
        poll_interval_ms,
        bytes_per_mb,
    } = *new;
    AccountingConfig {
        poll_interval_ms,
        bytes_per_mb,
    }
}

/// `[sessions]`, applied whole.
fn live_sessions(new: &SessionsConfig) -> SessionsConfig {
    let SessionsConfig {
        queue_order,
        idle_pause_secs,
    } = *new;
    SessionsConfig {
        queue_order,
        idle_pause_secs,
    }
}

/// Collects the restart-only keys whose value changed.
struct Restart<'a> {
    keys: Vec<&'static str>,
    running: &'a Config,
}

impl Restart<'_> {
    /// The running value of a key read only at start; `key` is noted if `new` differs.
    fn keep<T: PartialEq + Clone>(
        &mut self,
        key: &'static str,
        new: &T,
        running: impl FnOnce(&Config) -> &T,
    ) -> T {
        let running = running(self.running);
        if new != running {
            self.keys.push(key);
        }
        running.clone()
    }

    /// `[radius]`: read at start (the servers' accounting queue and the logins in flight
    /// hold them).
    fn radius(&mut self, new: &RadiusConfig) -> RadiusConfig {
        let RadiusConfig {
            auth_server,
            auth_servers,
            acct_server,
            acct_servers,
            secret,
            nas_identifier,
            timeout_ms,
            retries,
            default_time_secs,
            coa_port,
            away_grant_secs,
            mac_auth,
        } = new;
        RadiusConfig {
            auth_server: self.keep("radius.auth_server", auth_server, |c| &c.radius.auth_server),
            auth_servers: self.keep("radius.auth_servers", auth_servers, |c| {
                &c.radius.auth_servers
            }),
            acct_server: self.keep("radius.acct_server", acct_server, |c| &c.radius.acct_server),
            acct_servers: self.keep("radius.acct_servers", acct_servers, |c| {
                &c.radius.acct_servers
            }),
            secret: self.keep("radius.secret", secret, |c| &c.radius.secret),
            nas_identifier: self.keep("radius.nas_identifier", nas_identifier, |c| {
                &c.radius.nas_identifier
            }),
            timeout_ms: self.keep("radius.timeout_ms", timeout_ms, |c| &c.radius.timeout_ms),
            retries: self.keep("radius.retries", retries, |c| &c.radius.retries),
            default_time_secs: self.keep("radius.default_time_secs", default_time_secs, |c| {
                &c.radius.default_time_secs
            }),
            coa_port: self.keep("radius.coa_port", coa_port, |c| &c.radius.coa_port),
            away_grant_secs: self.keep("radius.away_grant_secs", away_grant_secs, |c| {
                &c.radius.away_grant_secs
            }),
            mac_auth: self.keep("radius.mac_auth", mac_auth, |c| &c.radius.mac_auth),
        }
    }

    fn network(&mut self, new: &NetworkConfig) -> NetworkConfig {
        let NetworkConfig {
            lan_interface,
            ifb_interface,
            walled_garden,
            local_services,
            garden_ttl_floor_secs,
            garden_ttl_cap_secs,
        } = new;
        NetworkConfig {
            lan_interface: self.keep("network.lan_interface", lan_interface, |c| {
                &c.network.lan_interface
            }),
            ifb_interface: self.keep("network.ifb_interface", ifb_interface, |c| {
                &c.network.ifb_interface
            }),
            walled_garden: walled_garden.clone(),
            // Written to the kernel at every poll.
            local_services: local_services.clone(),
            // Applied to the next answers learned.
            garden_ttl_floor_secs: *garden_ttl_floor_secs,
            garden_ttl_cap_secs: *garden_ttl_cap_secs,
        }
    }

    fn store(&mut self, new: &StoreConfig) -> StoreConfig {
        let StoreConfig {
            sqlite_path,
            save_interval_secs,
        } = new;
        StoreConfig {
            sqlite_path: self.keep("store.sqlite_path", sqlite_path, |c| &c.store.sqlite_path),
            save_interval_secs: *save_interval_secs,
        }
    }

    fn api(&mut self, new: &ApiConfig) -> ApiConfig {
        let ApiConfig {
            socket,
            tcp_listen,
            token_file,
            allow_non_loopback,
        } = new;
        ApiConfig {
            socket: self.keep("api.socket", socket, |c| &c.api.socket),
            tcp_listen: self.keep("api.tcp_listen", tcp_listen, |c| &c.api.tcp_listen),
            token_file: self.keep("api.token_file", token_file, |c| &c.api.token_file),
            allow_non_loopback: self.keep("api.allow_non_loopback", allow_non_loopback, |c| {
                &c.api.allow_non_loopback
            }),
        }
    }

    fn kernel(&mut self, new: &KernelConfig) -> KernelConfig {
        let KernelConfig { pin_dir } = new;
        KernelConfig {
            pin_dir: self.keep("kernel.pin_dir", pin_dir, |c| &c.kernel.pin_dir),
        }
    }

    fn portal(&mut self, new: &PortalConfig) -> PortalConfig {
        let PortalConfig {
            mode,
            listen_port,
            url,
            venue_info_url,
            redirect_dns,
            theme_dir,
            tls_cert,
            tls_key,
            tls_port,
            hostname,
            api_url,
            trial_secs,
            trial_down_mbits,
            trial_up_mbits,
            trial_reset_secs,
        } = new;
        // A renewed pair (the same files rewritten, or new paths) is served from the next
        // handshake; HTTPS turned on or off needs its listener opened or closed at start.
        let https_stays_on = self.running.portal.tls_enabled() && new.tls_enabled();
        let (tls_cert, tls_key) = if https_stays_on {
            (tls_cert.clone(), tls_key.clone())
        } else {
            (
                self.keep("portal.tls_cert", tls_cert, |c| &c.portal.tls_cert),
                self.keep("portal.tls_key", tls_key, |c| &c.portal.tls_key),
            )
        };
        PortalConfig {
            // The listeners are bound at start.
            mode: self.keep("portal.mode", mode, |c| &c.portal.mode),
            listen_port: self.keep("portal.listen_port", listen_port, |c| &c.portal.listen_port),
            // Read at every request.
            url: url.clone(),
            venue_info_url: venue_info_url.clone(),
            // Written to the kernel at every poll.
            redirect_dns: *redirect_dns,
            // Read once at start, with the CSRF key and the listener.
            theme_dir: self.keep("portal.theme_dir", theme_dir, |c| &c.portal.theme_dir),
            tls_cert,
            tls_key,
            tls_port: self.keep("portal.tls_port", tls_port, |c| &c.portal.tls_port),
            // Read by every `GET /v1/portal/dhcp-options`.
            hostname: hostname.clone(),
            api_url: api_url.clone(),
            // Read at every trial and every landing page.
            trial_secs: *trial_secs,
            trial_down_mbits: *trial_down_mbits,
            trial_up_mbits: *trial_up_mbits,
            trial_reset_secs: *trial_reset_secs,
        }
    }

    fn events(&mut self, new: &EventsConfig) -> EventsConfig {
        let EventsConfig {
            exec,
            exec_timeout_ms,
        } = new;
        EventsConfig {
            exec: self.keep("events.exec", exec, |c| &c.events.exec),
            exec_timeout_ms: self.keep("events.exec_timeout_ms", exec_timeout_ms, |c| {
                &c.events.exec_timeout_ms
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::super::keys::KEYS;
    use super::*;

    /// The keys applied while running, as the module doc lists them.
    const LIVE: &[&str] = &[
        "network.walled_garden",
        "network.local_services",
        "network.garden_ttl_floor_secs",
        "network.garden_ttl_cap_secs",
        "speed.global_down_mbits",
        "speed.global_up_mbits",
        "speed.classes_ready",
        "accounting.poll_interval_ms",
        "accounting.bytes_per_mb",
        "sessions.queue_order",
        "sessions.idle_pause_secs",
        "store.save_interval_secs",
        "portal.url",
        "portal.venue_info_url",
        "portal.redirect_dns",
        "portal.hostname",
        "portal.api_url",
        "portal.trial_secs",
        "portal.trial_down_mbits",
        "portal.trial_up_mbits",
        "portal.trial_reset_secs",
        "vouchers.code_length",
        "history.hourly_days",
        "history.daily_days",
        "sales.currency",
    ];

    /// Another value of the same kind as `value`.
    fn changed(value: &Value) -> Value {
        match value {
            Value::String(text) if text == "oldest_first" => "newest_first".into(),
            Value::String(text) if text == "builtin" => "off".into(),
            Value::String(text) => format!("{text}x").into(),
            Value::Number(number) => (number.as_u64().unwrap_or(0) + 1).into(),
            Value::Bool(flag) => (!flag).into(),
            // A list the key takes: of walled-garden entries or of local services.
            Value::Array(items) if items.iter().any(|item| item.as_str() == Some("icmp")) => {
                vec!["tcp/22"].into()
            }
            Value::Array(_) => vec!["10.0.0.0/8"].into(),
            other => panic!("no key holds {other}"),
        }
    }

    #[test]
    fn every_key_is_applied_or_named() {
        let running = Config::default();
        let defaults = serde_json::to_value(&running).expect("serialises");
        for key in KEYS.iter().map(|key| key.path()) {
            let (section, name) = key.split_once('.').expect("section.key");
            let mut edited = defaults.clone();
            let field = &mut edited[section][name];
            *field = changed(field);
            let new: Config = serde_json::from_value(edited).expect("deserialises");
            let reloaded = running.reload_from(&new);
            if LIVE.contains(&key) {
                assert_eq!(reloaded.config, new, "{key} is applied");
                assert!(reloaded.needs_restart.is_empty(), "{key}");
            } else {
                assert_eq!(reloaded.config, running, "{key} keeps its running value");
                assert_eq!(reloaded.needs_restart, [key]);
            }
        }
    }

    #[test]
    fn a_renewed_certificate_is_applied_but_https_on_or_off_waits_for_a_restart() {
        let with_tls = |cert: &str, key: &str| {
            let mut config = Config::default();
            config.portal.tls_cert = cert.into();
            config.portal.tls_key = key.into();
            config
        };
        let running = with_tls("/etc/le/old/fullchain.pem", "/etc/le/old/privkey.pem");
        let renewed = with_tls("/etc/le/new/fullchain.pem", "/etc/le/new/privkey.pem");
        let reloaded = running.reload_from(&renewed);
        assert_eq!(reloaded.config, renewed, "new paths are served");
        assert!(reloaded.needs_restart.is_empty());

        let off = Config::default();
        let reloaded = running.reload_from(&off);
        assert_eq!(reloaded.config, running, "HTTPS stays on until a restart");
        assert_eq!(
            reloaded.needs_restart,
            ["portal.tls_cert", "portal.tls_key"]
        );
        let reloaded = off.reload_from(&running);
        assert_eq!(reloaded.config, off, "and off");
        assert_eq!(
            reloaded.needs_restart,
            ["portal.tls_cert", "portal.tls_key"]
        );
    }

    #[test]
    fn an_unchanged_configuration_names_nothing() {
        let running = Config::default();
        let reloaded = running.reload_from(&running.clone());
        assert_eq!(reloaded.config, running);
        assert!(reloaded.needs_restart.is_empty());
    }
}
