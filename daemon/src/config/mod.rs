//! Configuration: built-in defaults, then the TOML file, then `HOTSPOTD__SECTION__KEY`
//! environment variables, checked into typed sections. Reads the file and the environment, and
//! the portal's certificate and key when they are set (to check that they load and match),
//! nothing else; every mistake is reported as one sentence naming its key and where it came from.

mod keys;
mod live;
mod local_services;
mod radius;
mod walled_garden;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::Duration,
};

use config::{Environment, File, FileFormat};
use serde::{Deserialize, Serialize};

use crate::sessions::engine::EngineConfig;

/// Defined with the rules that follow it; a key of `[sessions]`.
pub use crate::sessions::engine::QueueOrder;
use keys::{
    BYTES_PER_MB, CLASSES_READY, DAILY_DAYS, EXEC_TIMEOUT_MS, GLOBAL_DOWN_MBITS, GLOBAL_UP_MBITS,
    HOURLY_DAYS, IDLE_PAUSE_SECS, KEYS, Key, Origins, POLL_INTERVAL_MS, PORTAL_LISTEN_PORT,
    PORTAL_TLS_PORT, SAVE_INTERVAL_SECS, TRIAL_DOWN_MBITS, TRIAL_RESET_SECS, TRIAL_SECS,
    TRIAL_UP_MBITS, VOUCHER_CODE_LENGTH, check_values,
};
pub use live::Reloaded;
pub use local_services::{LocalService, LocalServiceError};
pub use radius::RadiusConfig;
pub use walled_garden::{GardenName, GardenNet, IpNet, WalledGardenEntry, WalledGardenError};

/// Where `hotspotd` looks for its configuration when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/hotspotd/config.toml";

/// Environment variables named `HOTSPOTD__SECTION__KEY` override the file.
pub const ENV_PREFIX: &str = "HOTSPOTD";
/// Between the prefix, the section and the key of an environment variable's name.
pub const ENV_SEPARATOR: &str = "__";

/// What an error names as the origin of a value when there is no file and no variable to name.
const NO_FILE_ORIGIN: &str = "defaults/environment";

/// The whole configuration. Every section and key has a default (interface.md), so an empty
/// file is a valid one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub network: NetworkConfig,
    pub speed: SpeedConfig,
    pub accounting: AccountingConfig,
    pub sessions: SessionsConfig,
    pub store: StoreConfig,
    pub api: ApiConfig,
    pub kernel: KernelConfig,
    pub events: EventsConfig,
    pub portal: PortalConfig,
    pub vouchers: VouchersConfig,
    pub history: HistoryConfig,
    pub sales: SalesConfig,
    pub radius: RadiusConfig,
}

/// `[network]`: where the clients are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Interface the clients are on.
    pub lan_interface: String,
    /// IFB device that upload shaping redirects the LAN's ingress to; created if missing.
    pub ifb_interface: String,
    /// Extra destinations reachable without a session.
    pub walled_garden: Vec<WalledGardenEntry>,
    /// The box's client services: all a client without a session reaches on the box, and
    /// never billed. Anything else a client has with the box is gated and billed.
    pub local_services: Vec<LocalService>,
    /// How long an address learned for a walled-garden host name stays open at least, and
    /// at most, whatever TTL the DNS answer gave it.
    pub garden_ttl_floor_secs: u32,
    pub garden_ttl_cap_secs: u32,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            lan_interface: "br-lan".to_owned(),
            ifb_interface: "ifb-hotspot".to_owned(),
            walled_garden: Vec::new(),
            local_services: LocalService::defaults(),
            garden_ttl_floor_secs: 60,
            garden_ttl_cap_secs: 86_400,
        }
    }
}

/// `[speed]`: the caps shared by all clients, in Mbit/s (10^6 bit/s).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpeedConfig {
    pub global_down_mbits: u32,
    pub global_up_mbits: u32,
    /// Spare client class pairs kept made ahead of demand (`shaping/pool.rs`): a sale takes one
    /// by a class change instead of creating classes, whose kernel cost grows with the classes
    /// already there. Set to the box's peak of clients and a crowd never waits for it.
    pub classes_ready: u32,
}

impl Default for SpeedConfig {
    fn default() -> Self {
        Self {
            global_down_mbits: 100,
            global_up_mbits: 100,
            classes_ready: 64,
        }
    }
}

/// `[accounting]`: how counters are read and what a megabyte is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountingConfig {
    /// How often the kernel counters are read.
    pub poll_interval_ms: u64,
    /// Bytes in one MB of a session's `data_mb`.
    pub bytes_per_mb: u64,
}

impl Default for AccountingConfig {
    fn default() -> Self {
        Self {
            poll_interval_ms: 1000,
            bytes_per_mb: 1_000_000,
        }
    }
}

/// `[sessions]`: how a client's sessions follow each other.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionsConfig {
    /// Which of a client's waiting sessions starts when the running one is used up.
    pub queue_order: QueueOrder,
    /// Pause a running session after this many seconds without traffic; 0 = never.
    pub idle_pause_secs: u64,
}

/// `[store]`: where sessions are saved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    pub sqlite_path: PathBuf,
    /// How often usage is written to the database; at shutdown it is written regardless.
    pub save_interval_secs: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            sqlite_path: PathBuf::from("/var/lib/hotspotd/sessions.db"),
            save_interval_secs: 30,
        }
    }
}

/// `[api]`: where portals and `hotspotctl` reach the daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Unix socket of the API.
    pub socket: PathBuf,
    /// Also serve the API over TCP at this address (`127.0.0.1:8080`); empty = socket only.
    pub tcp_listen: String,
    /// A file holding the bearer token every TCP request must carry; required with
    /// `tcp_listen`.
    pub token_file: PathBuf,
    /// Allow `tcp_listen` on an address that is not loopback.
    pub allow_non_loopback: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/run/hotspotd/hotspotd.sock"),
            tcp_listen: String::new(),
            token_file: PathBuf::new(),
            allow_non_loopback: false,
        }
    }
}

impl ApiConfig {
    /// The TCP address to serve on, if any (checked by `validate`).
    #[must_use]
    pub fn tcp_address(&self) -> Option<std::net::SocketAddr> {
        self.tcp_listen.parse().ok()
    }
}

/// `[kernel]`: where the eBPF side lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KernelConfig {
    /// Directory on a BPF filesystem where the maps are pinned, so counters outlive a crash.
    pub pin_dir: PathBuf,
}

impl Default for KernelConfig {
    fn default() -> Self {
        Self {
            pin_dir: PathBuf::from("/sys/fs/bpf/hotspotd"),
        }
    }
}

/// `[portal]`: the front door: the built-in portal's pages and the RFC 8908 captive-portal API,
/// served on the LAN, and what DHCP and router advertisements tell phones of it (RFC 8910).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PortalConfig {
    /// `builtin`: hotspotd's portal; `external`: the operator's at `url`; `off`: none, and no
    /// listener.
    pub mode: PortalMode,
    /// TCP port of hotspotd's portal listener on the LAN interface (IPv4 and IPv6).
    pub listen_port: u16,
    /// Where clients are sent; empty: `http://<the box's address the client reached>:<port>/`.
    pub url: String,
    /// A page about the venue, given to phones by the RFC 8908 API; empty: none.
    pub venue_info_url: String,
    /// An unpaid client's DNS to any resolver is answered by the box's resolver.
    pub redirect_dns: bool,
    /// A folder with the built-in portal's `style.css`, `logo.svg`/`logo.png` and
    /// `strings.toml`, each replacing the built-in one; empty: the built-in theme.
    pub theme_dir: PathBuf,
    /// PEM certificate chain (the portal's own first) for HTTPS; empty with `tls_key`: no
    /// HTTPS. Read again on SIGHUP, so a renewed certificate is served without a restart.
    pub tls_cert: PathBuf,
    /// PEM private key of `tls_cert`'s first certificate.
    pub tls_key: PathBuf,
    /// TCP port of the portal's HTTPS listener on the LAN interface (IPv4 and IPv6).
    pub tls_port: u16,
    /// The box's name in the RFC 8910 API URI: a DNS name the LAN's resolver gives the box's
    /// LAN address and, with HTTPS, that the certificate covers; empty: the LAN address.
    pub hostname: String,
    /// The RFC 8908 API URI DHCP and router advertisements carry (RFC 8910); empty: derived
    /// from the built-in portal (`crate::portal::rfc8910`).
    pub api_url: String,
    /// A free trial's length (docs/trials.md): one per device per `trial_reset_secs`, offered
    /// on the landing page and by `POST /v1/trial`; 0: no trial.
    pub trial_secs: u64,
    /// A trial's speed, Mbit/s; both 0: the global speed.
    pub trial_down_mbits: u64,
    pub trial_up_mbits: u64,
    /// How long after its trial a device may have another.
    pub trial_reset_secs: u64,
}

impl PortalConfig {
    /// Whether unpaid clients' DNS goes to the box's resolver: asked for, and a portal to
    /// send them to (`off` keeps the plain gate).
    #[must_use]
    pub fn redirects_dns(&self) -> bool {
        self.redirect_dns && self.mode != PortalMode::Off
    }

    /// Whether the portal serves HTTPS: both `tls_cert` and `tls_key` are set.
    #[must_use]
    pub fn tls_enabled(&self) -> bool {
        !self.tls_cert.as_os_str().is_empty() && !self.tls_key.as_os_str().is_empty()
    }
}

impl Default for PortalConfig {
    fn default() -> Self {
        Self {
            mode: PortalMode::Builtin,
            listen_port: 2050,
            url: String::new(),
            venue_info_url: String::new(),
            redirect_dns: true,
            theme_dir: PathBuf::new(),
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            tls_port: 443,
            hostname: String::new(),
            api_url: String::new(),
            trial_secs: 0,
            trial_down_mbits: 0,
            trial_up_mbits: 0,
            trial_reset_secs: 86_400,
        }
    }
}

/// `[vouchers]`: the codes sold on paper (docs/vouchers.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VouchersConfig {
    /// Characters in a new code, of an alphabet of 31 (4.95 bits each): 9 to 32; the default
    /// 10 is 49.5 bits. Codes already printed keep their length.
    pub code_length: u64,
}

impl Default for VouchersConfig {
    fn default() -> Self {
        Self {
            code_length: crate::vouchers::code::DEFAULT_CODE_LENGTH as u64,
        }
    }
}

/// `[history]`: how long the usage history is kept (docs/usage.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// Days of usage kept by the hour; older hours are folded into days.
    pub hourly_days: u32,
    /// Days of usage kept by the day, of sales and of ended sessions; older ones are deleted.
    pub daily_days: u32,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            hourly_days: 14,
            daily_days: 400,
        }
    }
}

/// `[sales]`: what prices are in (docs/usage.md).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SalesConfig {
    /// The ISO 4217 code of prices (`EUR`, `KES`); empty: none named.
    pub currency: String,
}

/// Whose portal clients are sent to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortalMode {
    #[default]
    Builtin,
    External,
    Off,
}

impl PortalMode {
    /// The names the configuration accepts, as serde spells them.
    const NAMES: &[&str] = &["builtin", "external", "off"];
}

/// `[events]`: telling others what happens (sessions started, consumed, clients connected…).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// A program run once per event with the event as one JSON object on stdin; empty = none.
    pub exec: String,
    /// How long it may run before it is killed.
    pub exec_timeout_ms: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            exec: String::new(),
            exec_timeout_ms: 5_000,
        }
    }
}

impl EventsConfig {
    #[must_use]
    pub fn exec_timeout(&self) -> Duration {
        Duration::from_millis(self.exec_timeout_ms)
    }
}

/// What went wrong loading the configuration. Each displays as one sentence that starts with
/// where the value came from: the file, or the environment variable that set it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read; pass --config with an existing file", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: is not UTF-8 text from byte {valid_up_to} on; a TOML file must be UTF-8: save it as such", path.display()
    )]
    NotUtf8 { path: PathBuf, valid_up_to: usize },
    /// `portal.theme_dir` names a folder the portal cannot use.
    #[error("{origin}: portal.theme_dir names a theme the portal cannot use")]
    Theme {
        origin: String,
        source: crate::theme::ThemeError,
    },
    /// The file is not TOML; `message` says where (line, column) and what was expected.
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{origin}: unknown section '{section}' (allowed: {})", allowed.join(", "))]
    UnknownSection {
        origin: String,
        section: String,
        allowed: Vec<&'static str>,
    },
    #[error("{origin}: unknown key '{key}' (allowed: {})", allowed.join(", "))]
    UnknownKey {
        origin: String,
        key: String,
        allowed: Vec<&'static str>,
    },
    /// A key holds a value it does not allow; `message` says what is allowed and what was got.
    #[error("{origin}: {key} {message}")]
    Invalid {
        origin: String,
        key: &'static str,
        message: String,
    },
    #[error("environment variable {name} is not valid UTF-8")]
    NotUnicode { name: String },
    /// The portal's certificate or key is missing, unreadable, not PEM, or not a pair.
    #[error("{origin}: {error}")]
    Tls {
        origin: String,
        #[source]
        error: crate::tls_files::TlsFilesError,
    },
    /// The `config` crate failed in a way the checks above did not foresee.
    #[error("{origin}")]
    Merge {
        origin: String,
        source: config::ConfigError,
    },
}

impl Config {
    /// The session engine's part of the configuration.
    #[must_use]
    pub fn engine(&self) -> EngineConfig {
        EngineConfig {
            bytes_per_mb: self.accounting.bytes_per_mb,
            queue_order: self.sessions.queue_order,
            idle_pause: (self.sessions.idle_pause_secs > 0)
                .then(|| Duration::from_secs(self.sessions.idle_pause_secs)),
            global_down_mbits: self.speed.global_down_mbits,
            global_up_mbits: self.speed.global_up_mbits,
        }
    }

    /// Loads the built-in defaults, then the file at `path` (which must exist) if given, then
    /// the `HOTSPOTD__SECTION__KEY` environment variables, and validates the result.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(path, environment()?)
    }

    /// [`Config::load`] with the environment given instead of read from the process, so tests
    /// never touch the process environment. Variables without the `HOTSPOTD__` prefix are ignored.
    pub fn load_from(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(name, _)| env_key(name).is_some())
            .collect();
        let origins = Origins {
            fallback: path.map_or_else(|| NO_FILE_ORIGIN.to_owned(), |p| p.display().to_string()),
            env: env
                .keys()
                .filter_map(|name| Some((env_key(name)?, name.clone())))
                .collect(),
        };
        let merge = |source| ConfigError::Merge {
            origin: origins.fallback.clone(),
            source,
        };

        let mut builder = config::Config::builder();
        if let Some(path) = path {
            let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            let text = String::from_utf8(bytes).map_err(|error| ConfigError::NotUtf8 {
                path: path.to_owned(),
                valid_up_to: error.utf8_error().valid_up_to(),
            })?;
            builder = builder.add_source(File::from_str(&text, FileFormat::Toml));
        }
        // try_parsing turns "100" into a number for the numeric keys; the text keys are then
        // set again from the raw variables, so an interface called "1234" or "nan" stays text.
        builder = builder.add_source(
            Environment::with_prefix(ENV_PREFIX)
                .separator(ENV_SEPARATOR)
                .try_parsing(true)
                .source(Some(env.clone())),
        );
        for (name, raw) in &env {
            let key = env_key(name);
            match KEYS.iter().find(|spec| Some(spec.path()) == key.as_deref()) {
                Some(Key::Text(path)) => {
                    builder = builder.set_override(*path, raw.as_str()).map_err(merge)?;
                }
                Some(Key::WalledGarden(path) | Key::LocalServices(path)) => {
                    builder = builder
                        .set_override(*path, split_list(raw))
                        .map_err(merge)?;
                }
                _ => {}
            }
        }
        let merged = builder.build().map_err(|error| match (error, path) {
            (config::ConfigError::FileParse { cause, .. }, Some(path)) => ConfigError::Parse {
                path: path.to_owned(),
                message: crate::text::tidy(&toml_message(&cause.to_string())),
            },
            (error, _) => merge(error),
        })?;

        check_values(&merged.cache, &origins)?;
        let config: Self = merged.try_deserialize().map_err(merge)?;
        config.check(&origins)?;
        config.check_history(&origins)?;
        // Read now, so --check-config and a reload report a broken theme; the portal reads it
        // again at start.
        crate::theme::Theme::load(&config.portal.theme_dir).map_err(|source| {
            ConfigError::Theme {
                origin: origins.of("portal.theme_dir"),
                source,
            }
        })?;
        Ok(config)
    }

    /// Checks the rules that types cannot express: ranges, interface names, distinct interfaces,
    /// paths. [`Config::load`] already did this; it is for a `Config` built in code.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let origins = Origins {
            fallback: "configuration".to_owned(),
            env: HashMap::new(),
        };
        self.check(&origins)?;
        self.check_history(&origins)
    }

    /// How often the kernel counters are read.
    #[must_use]
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.accounting.poll_interval_ms)
    }

    /// How often usage is saved to the database.
    #[must_use]
    pub fn save_interval(&self) -> Duration {
        Duration::from_secs(self.store.save_interval_secs)
    }

    /// After how long without traffic a running session is paused; `None` = never.
    #[must_use]
    pub fn idle_pause(&self) -> Option<Duration> {
        (self.sessions.idle_pause_secs > 0)
            .then(|| Duration::from_secs(self.sessions.idle_pause_secs))
    }

    /// The portal's URLs are web addresses a phone can open, and `external` names one.
    fn check_portal(&self) -> Result<(), (&'static str, String)> {
        let portal = &self.portal;
        for (key, url) in [
            ("portal.url", &portal.url),
            ("portal.venue_info_url", &portal.venue_info_url),
        ] {
            let web = url.starts_with("http://") || url.starts_with("https://");
            if !url.is_empty() && (!web || url.chars().any(char::is_whitespace)) {
                return Err((
                    key,
                    format!(
                        "must be empty or an http:// or https:// address without spaces (got {url:?})"
                    ),
                ));
            }
        }
        if !portal.api_url.is_empty() {
            check_api_url(&portal.api_url).map_err(|message| ("portal.api_url", message))?;
        }
        if !portal.hostname.is_empty() && !is_dns_name(&portal.hostname) {
            return Err((
                "portal.hostname",
                format!(
                    "must be empty or a DNS name like portal.example.net: letters, digits, '-' \
                     and '.', no scheme or port, at most 253 characters (got {:?})",
                    portal.hostname
                ),
            ));
        }
        if portal.mode == PortalMode::External && portal.url.is_empty() {
            return Err((
                "portal.url",
                "must name the operator's portal when portal.mode = \"external\"".to_owned(),
            ));
        }
        if portal.listen_port == 0 {
            return Err((
                "portal.listen_port",
                "must be a port from 1 to 65535".to_owned(),
            ));
        }
        for (key, value) in [
            (TRIAL_SECS, portal.trial_secs),
            (TRIAL_DOWN_MBITS, portal.trial_down_mbits),
            (TRIAL_UP_MBITS, portal.trial_up_mbits),
            (TRIAL_RESET_SECS, portal.trial_reset_secs),
        ] {
            key.check(i128::from(value))
                .map_err(|message| (key.path, message))?;
        }
        if (portal.trial_down_mbits == 0) != (portal.trial_up_mbits == 0) {
            return Err((
                "portal.trial_up_mbits",
                format!(
                    "and portal.trial_down_mbits must both be 0 (a trial at the global speed) or \
                     both be set (got {} down, {} up)",
                    portal.trial_down_mbits, portal.trial_up_mbits
                ),
            ));
        }
        if portal.trial_secs > portal.trial_reset_secs {
            return Err((
                "portal.trial_reset_secs",
                format!(
                    "must be at least portal.trial_secs ({}): a device would get its next free \
                     trial before the last one ended (got {})",
                    portal.trial_secs, portal.trial_reset_secs
                ),
            ));
        }
        if portal.tls_enabled() && portal.tls_port == portal.listen_port {
            return Err((
                "portal.tls_port",
                format!(
                    "must differ from portal.listen_port (both are {}): HTTPS and plain HTTP \
                     each need their own port",
                    portal.tls_port
                ),
            ));
        }
        Ok(())
    }

    /// The lists the kernel holds in tables of a fixed size: a longer one is a mistake,
    /// refused before it stalls a start; and the walled garden's TTL bounds in order.
    fn check_list_lengths(&self) -> Result<(), (&'static str, String)> {
        if self.network.garden_ttl_floor_secs > self.network.garden_ttl_cap_secs {
            return Err((
                "network.garden_ttl_floor_secs",
                format!(
                    "must not be above network.garden_ttl_cap_secs ({} > {})",
                    self.network.garden_ttl_floor_secs, self.network.garden_ttl_cap_secs
                ),
            ));
        }
        // The daemon merges walled-garden entries in quadratic time, too.
        let garden_len = self.network.walled_garden.len();
        let max_garden = hotspotd_common::MAX_GARDEN_ENTRIES as usize;
        if garden_len > max_garden {
            return Err((
                "network.walled_garden",
                format!("may have at most {max_garden} entries (got {garden_len})"),
            ));
        }
        let names = self
            .network
            .walled_garden
            .iter()
            .filter(|entry| entry.name().is_some())
            .count();
        let max_names = hotspotd_common::MAX_GARDEN_NAMES as usize;
        if names > max_names {
            return Err((
                "network.walled_garden",
                format!("may have at most {max_names} host names (got {names})"),
            ));
        }
        let ports = self
            .network
            .local_services
            .iter()
            .filter(|service| **service != LocalService::Icmp)
            .count();
        let max_ports = hotspotd_common::LOCAL_SERVICES_LEN;
        if ports > max_ports {
            return Err((
                "network.local_services",
                format!("may name at most {max_ports} ports (got {ports})"),
            ));
        }
        Ok(())
    }

    /// `[history]` and `[sales]` beyond their ranges: a currency code, and hours kept no
    /// longer than days.
    fn check_history(&self, origins: &Origins) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            origin: origins.of(key),
            key,
            message: crate::text::tidy(&message),
        };
        let currency = &self.sales.currency;
        if !currency.is_empty()
            && (currency.len() != 3 || !currency.bytes().all(|byte| byte.is_ascii_uppercase()))
        {
            return Err(invalid(
                "sales.currency",
                format!(
                    "must be an ISO 4217 code of three capital letters like EUR or KES, or empty (got {currency:?})"
                ),
            ));
        }
        if self.history.hourly_days > self.history.daily_days {
            return Err(invalid(
                "history.hourly_days",
                format!(
                    "must not be more than history.daily_days ({}): days are kept by the hour first, then by the day",
                    self.history.daily_days
                ),
            ));
        }
        Ok(())
    }

    /// `api.tcp_listen`: an address, on loopback unless the operator says otherwise, and
    /// with a token file.
    fn check_tcp_listen(&self) -> Result<(), (&'static str, String)> {
        if !self.api.tcp_listen.is_empty() {
            let Ok(address) = self.api.tcp_listen.parse::<std::net::SocketAddr>() else {
                return Err((
                    "api.tcp_listen",
                    format!(
                        "must be an address and port like 127.0.0.1:8080 or [::1]:8080 (got {:?})",
                        self.api.tcp_listen
                    ),
                ));
            };
            if !address.ip().is_loopback() && !self.api.allow_non_loopback {
                return Err((
                    "api.tcp_listen",
                    format!(
                        "{address} is not a loopback address, so the LAN could reach the API: \
                         use 127.0.0.1 or ::1, or set api.allow_non_loopback = true if you mean it"
                    ),
                ));
            }
            if self.api.token_file.as_os_str().is_empty() {
                return Err((
                    "api.token_file",
                    "must name the file with the bearer token when api.tcp_listen is set"
                        .to_owned(),
                ));
            }
        }
        Ok(())
    }

    fn check(&self, origins: &Origins) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            origin: origins.of(key),
            key,
            // Messages quote the value, which can be long or hold control characters.
            message: crate::text::tidy(&message),
        };
        let network = &self.network;
        for (key, name) in [
            ("network.lan_interface", &network.lan_interface),
            ("network.ifb_interface", &network.ifb_interface),
        ] {
            check_interface_name(name).map_err(|message| invalid(key, message))?;
        }
        if network.lan_interface == network.ifb_interface {
            // Blame the one the environment changed, if only one was: that is the typo.
            let (key, other) = match (
                origins.env.contains_key("network.lan_interface"),
                origins.env.contains_key("network.ifb_interface"),
            ) {
                (true, false) => ("network.lan_interface", "network.ifb_interface"),
                _ => ("network.ifb_interface", "network.lan_interface"),
            };
            return Err(invalid(
                key,
                format!(
                    "must differ from {other} (both are {:?})",
                    network.lan_interface
                ),
            ));
        }
        for (key, value) in [
            (GLOBAL_DOWN_MBITS, u64::from(self.speed.global_down_mbits)),
            (GLOBAL_UP_MBITS, u64::from(self.speed.global_up_mbits)),
            (CLASSES_READY, u64::from(self.speed.classes_ready)),
            (POLL_INTERVAL_MS, self.accounting.poll_interval_ms),
            (BYTES_PER_MB, self.accounting.bytes_per_mb),
            (IDLE_PAUSE_SECS, self.sessions.idle_pause_secs),
            (SAVE_INTERVAL_SECS, self.store.save_interval_secs),
            (EXEC_TIMEOUT_MS, self.events.exec_timeout_ms),
            (PORTAL_LISTEN_PORT, u64::from(self.portal.listen_port)),
            (PORTAL_TLS_PORT, u64::from(self.portal.tls_port)),
            (VOUCHER_CODE_LENGTH, self.vouchers.code_length),
            (HOURLY_DAYS, u64::from(self.history.hourly_days)),
            (DAILY_DAYS, u64::from(self.history.daily_days)),
        ] {
            key.check(i128::from(value))
                .map_err(|message| invalid(key.path, message))?;
        }
        for (key, path) in [
            ("store.sqlite_path", &self.store.sqlite_path),
            ("api.socket", &self.api.socket),
            ("kernel.pin_dir", &self.kernel.pin_dir),
        ] {
            if path.as_os_str().is_empty() {
                return Err(invalid(key, "must not be empty".to_owned()));
            }
        }
        self.check_tcp_listen()
            .map_err(|(key, message)| invalid(key, message))?;
        self.check_list_lengths()
            .map_err(|(key, message)| invalid(key, message))?;
        self.check_portal()
            .and_then(|()| self.radius.check())
            .map_err(|(key, message)| invalid(key, message))?;
        let socket_len = self.api.socket.as_os_str().len();
        if socket_len > MAX_SOCKET_PATH_BYTES {
            return Err(invalid(
                "api.socket",
                format!(
                    "must be at most {MAX_SOCKET_PATH_BYTES} bytes long, the limit of a Unix \
                     socket path (got {socket_len} bytes)"
                ),
            ));
        }
        // Last: it reads the two files, and every cheaper mistake is reported first.
        crate::tls_files::check(&self.portal.tls_cert, &self.portal.tls_key).map_err(|error| {
            ConfigError::Tls {
                origin: origins.of(error.key()),
                error,
            }
        })?;
        Ok(())
    }
}

/// The longest URI DHCPv4 option 114 carries: an option's length is one byte (RFC 8910).
pub const MAX_API_URL_BYTES: usize = 255;

/// `portal.api_url`: an http(s) URI that fits DHCPv4 option 114 and that DHCP servers' files
/// can quote: none of the characters RFC 3986 leaves out of URIs (space, `"`, `\`, control).
fn check_api_url(url: &str) -> Result<(), String> {
    let web = url.starts_with("http://") || url.starts_with("https://");
    let unquotable = url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\' || c == '\'');
    if !web || unquotable {
        return Err(format!(
            "must be empty or an http:// or https:// address without spaces, quotes or \
             backslashes (got {url:?})"
        ));
    }
    if url.len() > MAX_API_URL_BYTES {
        return Err(format!(
            "must be at most {MAX_API_URL_BYTES} bytes, all DHCPv4 option 114 carries (got {} \
             bytes)",
            url.len()
        ));
    }
    Ok(())
}

/// A host name as DNS has it (RFC 1123): dot-separated labels of 1 to 63 letters, digits and
/// hyphens, not starting or ending with a hyphen; 253 characters at most; not all digits and
/// dots (that is an IPv4 address, which needs no name).
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    (1..=253).contains(&name.len())
        && name.split('.').all(label_ok)
        && !name.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// `sockaddr_un.sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH_BYTES: usize = 107;

/// The kernel's `dev_valid_name`: at most `IFNAMSIZ - 1` = 15 bytes, not "." or "..", and
/// no '/', ':' (alias syntax) or whitespace. NUL is refused too: the name is passed as a C string.
fn check_interface_name(name: &str) -> Result<(), String> {
    let valid = (1..=15).contains(&name.len())
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace());
    if valid {
        Ok(())
    } else {
        Err(format!(
            "must be a Linux interface name: 1 to 15 bytes, not \".\" or \"..\", without '/', ':' \
             or whitespace (got {name:?})"
        ))
    }
}

/// The process's `HOTSPOTD__*` variables.
fn environment() -> Result<Vec<(String, String)>, ConfigError> {
    std::env::vars_os()
        .filter_map(|(name, value)| {
            // A name that is not UTF-8 names none of our keys.
            let name = name
                .into_string()
                .ok()
                .filter(|name| env_key(name).is_some())?;
            Some(match value.into_string() {
                Ok(value) => Ok((name, value)),
                Err(_) => Err(ConfigError::NotUnicode { name }),
            })
        })
        .collect()
}

/// `HOTSPOTD__SPEED__GLOBAL_DOWN_MBITS` → `speed.global_down_mbits`, as `config` maps it (in
/// any case); `None` for a variable that is not ours.
fn env_key(name: &str) -> Option<String> {
    let (prefix, rest) = name.split_at_checked(ENV_PREFIX.len())?;
    let rest = rest.strip_prefix(ENV_SEPARATOR)?;
    prefix
        .eq_ignore_ascii_case(ENV_PREFIX)
        .then(|| rest.to_lowercase().replace(ENV_SEPARATOR, "."))
}

/// A list in one variable: comma-separated, spaces ignored, empty = no entries.
fn split_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The TOML parser's multi-line report (position, source excerpt, message) as one line:
/// `invalid TOML at line 2, column 21: string values must be quoted`.
fn toml_message(report: &str) -> String {
    let mut lines = report.lines();
    let position = lines
        .next()
        .and_then(|first| first.strip_prefix("TOML parse error at "));
    let message: Vec<&str> = lines
        .map(str::trim)
        .filter(|line| {
            // The excerpt's lines are "  |", "2 | text" and "  |   ^".
            let after_number = line
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start();
            !line.is_empty() && !after_number.starts_with('|')
        })
        .collect();
    match position {
        Some(position) => format!("invalid TOML at {position}: {}", message.join("; ")),
        None => format!(
            "invalid TOML: {}",
            report.lines().collect::<Vec<_>>().join("; ")
        ),
    }
}

#[cfg(test)]
mod tests;
