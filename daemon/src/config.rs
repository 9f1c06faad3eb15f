//! Configuration: built-in defaults, then the TOML file, then `HOTSPOTD__SECTION__KEY`
//! environment variables, checked into typed sections. Reads the file and the environment,
//! nothing else; every mistake is reported as one sentence naming its key and where it came from.

use std::{
    collections::HashMap,
    fmt,
    net::IpAddr,
    num::NonZeroU16,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use config::{Environment, File, FileFormat, Value, ValueKind};
use serde::{Deserialize, Serialize};

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
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            lan_interface: "br-lan".to_owned(),
            ifb_interface: "ifb-hotspot".to_owned(),
            walled_garden: Vec::new(),
        }
    }
}

/// `[speed]`: the caps shared by all clients, in Mbit/s (10^6 bit/s).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpeedConfig {
    pub global_down_mbits: u32,
    pub global_up_mbits: u32,
}

impl Default for SpeedConfig {
    fn default() -> Self {
        Self {
            global_down_mbits: 100,
            global_up_mbits: 100,
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

/// Which waiting session a client uses next.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueOrder {
    #[default]
    OldestFirst,
    NewestFirst,
}

impl QueueOrder {
    /// The names the configuration accepts, as serde spells them.
    const NAMES: &[&str] = &["oldest_first", "newest_first"];
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
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/run/hotspotd/hotspotd.sock"),
        }
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

/// What went wrong loading the configuration. Each displays as one sentence that starts with
/// where the value came from: the file, or the environment variable that set it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}; pass --config with an existing file", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
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
    /// The `config` crate failed in a way the checks above did not foresee.
    #[error("{origin}: {source}")]
    Merge {
        origin: String,
        source: config::ConfigError,
    },
}

impl Config {
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
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
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
                Some(Key::WalledGarden(path)) => {
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
                message: toml_message(&cause.to_string()),
            },
            (error, _) => merge(error),
        })?;

        check_values(&merged.cache, &origins)?;
        let config: Self = merged.try_deserialize().map_err(merge)?;
        config.check(&origins)?;
        Ok(config)
    }

    /// Checks the rules that types cannot express: ranges, interface names, distinct interfaces,
    /// paths. [`Config::load`] already did this; it is for a `Config` built in code.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check(&Origins {
            fallback: "configuration".to_owned(),
            env: HashMap::new(),
        })
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

    fn check(&self, origins: &Origins) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            origin: origins.of(key),
            key,
            message,
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
            (POLL_INTERVAL_MS, self.accounting.poll_interval_ms),
            (BYTES_PER_MB, self.accounting.bytes_per_mb),
            (IDLE_PAUSE_SECS, self.sessions.idle_pause_secs),
            (SAVE_INTERVAL_SECS, self.store.save_interval_secs),
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
        Ok(())
    }
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

/// An IPv4 or IPv6 network in CIDR form, `10.0.0.0/8` or `2001:db8::/32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix_len: u8,
}

impl IpNet {
    /// The network `addr/prefix_len`; the address must have no bits set past the prefix.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<Self, WalledGardenError> {
        let max = max_prefix_len(addr);
        if prefix_len > max {
            return Err(WalledGardenError::PrefixLen {
                prefix_len: prefix_len.to_string(),
                max_prefix_len: max,
            });
        }
        let network = mask(addr, prefix_len);
        if network != addr {
            return Err(WalledGardenError::HostBits {
                network: Self {
                    addr: network,
                    prefix_len,
                },
            });
        }
        Ok(Self { addr, prefix_len })
    }

    #[must_use]
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    #[must_use]
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for IpNet {
    type Err = WalledGardenError;

    /// `10.0.0.0/8`, `2001:db8::/32`, or a bare address meaning that one host.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (addr, prefix_len) = match text.split_once('/') {
            Some((addr, prefix_len)) => (addr, Some(prefix_len)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| WalledGardenError::Addr {
            addr: addr.to_owned(),
        })?;
        let max = max_prefix_len(addr);
        let prefix_len = match prefix_len {
            None => max,
            Some(text) => text.parse().map_err(|_| WalledGardenError::PrefixLen {
                prefix_len: text.to_owned(),
                max_prefix_len: max,
            })?,
        };
        Self::new(addr, prefix_len)
    }
}

fn max_prefix_len(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// `addr` with every bit past the first `prefix_len` cleared; `prefix_len` is in range.
fn mask(addr: IpAddr, prefix_len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix_len))
                .unwrap_or(0);
            IpAddr::V4((bits & mask).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix_len))
                .unwrap_or(0);
            IpAddr::V6((bits & mask).into())
        }
    }
}

/// One `network.walled_garden` entry: a network, and optionally the one port reachable there.
/// Written `10.0.0.0/8`, `192.0.2.1:443`, `2001:db8::/32` or, with a port, `[2001:db8::/32]:443`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WalledGardenEntry {
    pub net: IpNet,
    /// TCP/UDP destination port; `None` = every port.
    pub port: Option<NonZeroU16>,
}

/// Why a walled-garden entry was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WalledGardenError {
    #[error("'{addr}' is not an IPv4 or IPv6 address")]
    Addr { addr: String },
    #[error("the prefix length must be a number from 0 to {max_prefix_len} (got '{prefix_len}')")]
    PrefixLen {
        prefix_len: String,
        max_prefix_len: u8,
    },
    #[error("the address has bits set past the prefix; did you mean {network}?")]
    HostBits { network: IpNet },
    #[error("the port must be a number from 1 to 65535 (got '{port}')")]
    Port { port: String },
    #[error("has a '[' without its ']'")]
    Bracket,
}

impl fmt::Display for WalledGardenEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.port, self.net.addr) {
            (None, _) => write!(f, "{}", self.net),
            (Some(port), IpAddr::V4(_)) => write!(f, "{}:{port}", self.net),
            (Some(port), IpAddr::V6(_)) => write!(f, "[{}]:{port}", self.net),
        }
    }
}

impl FromStr for WalledGardenEntry {
    type Err = WalledGardenError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (net, port) = if let Some(rest) = text.strip_prefix('[') {
            let (net, after) = rest.split_once(']').ok_or(WalledGardenError::Bracket)?;
            match after.strip_prefix(':') {
                Some(port) => (net, Some(port)),
                None if after.is_empty() => (net, None),
                None => {
                    return Err(WalledGardenError::Port {
                        port: after.to_owned(),
                    });
                }
            }
        } else if text.matches(':').count() == 1 {
            // One colon can only be IPv4 with a port: IPv6 has at least two, and takes its
            // port in brackets.
            let (net, port) = text.split_once(':').unwrap_or((text, ""));
            (net, Some(port))
        } else {
            (text, None)
        };
        let net = net.parse()?;
        let port = port
            .map(|port| {
                port.parse::<NonZeroU16>()
                    .map_err(|_| WalledGardenError::Port {
                        port: port.to_owned(),
                    })
            })
            .transpose()?;
        Ok(Self { net, port })
    }
}

impl TryFrom<String> for WalledGardenEntry {
    type Error = WalledGardenError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<WalledGardenEntry> for String {
    fn from(entry: WalledGardenEntry) -> Self {
        entry.to_string()
    }
}

/// Where each value came from, so that an error names the variable or file the user must fix.
struct Origins {
    /// The file as given, or what to name when there is none.
    fallback: String,
    /// Dotted key (`speed.global_down_mbits`) → the variable that set it.
    env: HashMap<String, String>,
}

impl Origins {
    fn of(&self, key: &str) -> String {
        match self.env.get(key) {
            Some(name) => format!("environment variable {name}"),
            None => self.fallback.clone(),
        }
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

/// The sections, in the order of `Config`.
const SECTIONS: &[&str] = &[
    "network",
    "speed",
    "accounting",
    "sessions",
    "store",
    "api",
    "kernel",
];

/// Every key, and the kind of value it takes. The merged values are checked against this before
/// serde sees them, so that a wrong value is reported in the user's terms rather than serde's.
const KEYS: &[Key] = &[
    Key::Text("network.lan_interface"),
    Key::Text("network.ifb_interface"),
    Key::WalledGarden("network.walled_garden"),
    Key::Int(GLOBAL_DOWN_MBITS),
    Key::Int(GLOBAL_UP_MBITS),
    Key::Int(POLL_INTERVAL_MS),
    Key::Int(BYTES_PER_MB),
    Key::Choice("sessions.queue_order", QueueOrder::NAMES),
    Key::Int(IDLE_PAUSE_SECS),
    Key::Text("store.sqlite_path"),
    Key::Int(SAVE_INTERVAL_SECS),
    Key::Text("api.socket"),
    Key::Text("kernel.pin_dir"),
];

const GLOBAL_DOWN_MBITS: IntKey = IntKey::at_least("speed.global_down_mbits", 1, u32::MAX as u64);
const GLOBAL_UP_MBITS: IntKey = IntKey::at_least("speed.global_up_mbits", 1, u32::MAX as u64);
const POLL_INTERVAL_MS: IntKey = IntKey::between("accounting.poll_interval_ms", 10, 60_000);
const BYTES_PER_MB: IntKey = IntKey::at_least("accounting.bytes_per_mb", 1, u64::MAX);
const IDLE_PAUSE_SECS: IntKey = IntKey::at_least("sessions.idle_pause_secs", 0, u64::MAX);
const SAVE_INTERVAL_SECS: IntKey = IntKey::between("store.save_interval_secs", 1, 86_400);

#[derive(Clone, Copy, Debug)]
enum Key {
    /// A string: an interface name or a path.
    Text(&'static str),
    Int(IntKey),
    /// One of the given strings.
    Choice(&'static str, &'static [&'static str]),
    /// A list of walled-garden entries.
    WalledGarden(&'static str),
}

/// An integer key: the values it allows, and the largest its Rust type holds.
#[derive(Clone, Copy, Debug)]
struct IntKey {
    path: &'static str,
    min: u64,
    /// `None`: no limit but the type's.
    max: Option<u64>,
    type_max: u64,
}

impl IntKey {
    const fn at_least(path: &'static str, min: u64, type_max: u64) -> Self {
        Self {
            path,
            min,
            max: None,
            type_max,
        }
    }

    /// For a `u64` key.
    const fn between(path: &'static str, min: u64, max: u64) -> Self {
        Self {
            path,
            min,
            max: Some(max),
            type_max: u64::MAX,
        }
    }

    fn check(self, value: i128) -> Result<(), String> {
        let requirement = match self.max {
            Some(max) if !(i128::from(self.min)..=i128::from(max)).contains(&value) => {
                format!("must be between {} and {max}", self.min)
            }
            None if value < i128::from(self.min) => match self.min {
                1 => "must be > 0".to_owned(),
                min => format!("must be >= {min}"),
            },
            _ if value > i128::from(self.type_max) => format!("must be at most {}", self.type_max),
            _ => return Ok(()),
        };
        Err(format!("{requirement} (got {value})"))
    }
}

impl Key {
    fn path(self) -> &'static str {
        match self {
            Self::Text(path) | Self::Choice(path, _) | Self::WalledGarden(path) => path,
            Self::Int(key) => key.path,
        }
    }

    /// Whether `value` has the kind this key takes (and for numbers, choices and entries,
    /// an allowed value); the error says what is allowed and what was got.
    fn check(self, value: &Value) -> Result<(), String> {
        match (self, &value.kind) {
            (Self::Text(_), ValueKind::String(_)) => Ok(()),
            (Self::Text(_), _) => Err(format!("must be a string (got {})", shown(value))),
            (Self::Int(key), kind) => match integer(kind) {
                Some(number) => key.check(number),
                None => Err(format!("must be a whole number (got {})", shown(value))),
            },
            (Self::Choice(_, names), ValueKind::String(name)) if names.contains(&name.as_str()) => {
                Ok(())
            }
            (Self::Choice(_, names), _) => {
                let names: Vec<String> = names.iter().map(|name| format!("{name:?}")).collect();
                Err(format!(
                    "must be {} (got {})",
                    names.join(" or "),
                    shown(value)
                ))
            }
            (Self::WalledGarden(_), ValueKind::Array(items)) => items.iter().try_for_each(|item| {
                let ValueKind::String(text) = &item.kind else {
                    return Err(format!(
                        "must be a list of strings (got {} in it)",
                        shown(item)
                    ));
                };
                text.parse::<WalledGardenEntry>()
                    .map(drop)
                    .map_err(|error| {
                        format!(
                            "has an invalid entry {text:?}: {error}; write 10.0.0.0/8, \
                             192.0.2.1:443 or [2001:db8::/32]:443"
                        )
                    })
            }),
            (Self::WalledGarden(_), _) => Err(format!(
                "must be a list of strings like [\"10.0.0.0/8\", \"[2001:db8::/32]:443\"] \
                 (got {})",
                shown(value)
            )),
        }
    }
}

fn integer(kind: &ValueKind) -> Option<i128> {
    match *kind {
        ValueKind::I64(number) => Some(number.into()),
        ValueKind::I128(number) => Some(number),
        ValueKind::U64(number) => Some(number.into()),
        ValueKind::U128(number) => number.try_into().ok(),
        _ => None,
    }
}

/// A value as the user wrote it, for "(got ...)".
fn shown(value: &Value) -> String {
    match &value.kind {
        ValueKind::Nil => "nothing".to_owned(),
        ValueKind::Boolean(flag) => flag.to_string(),
        ValueKind::I64(number) => number.to_string(),
        ValueKind::I128(number) => number.to_string(),
        ValueKind::U64(number) => number.to_string(),
        ValueKind::U128(number) => number.to_string(),
        // Debug keeps the ".0" that tells 100.0 from 100.
        ValueKind::Float(number) => format!("{number:?}"),
        ValueKind::String(text) => format!("{text:?}"),
        ValueKind::Table(_) => "a table".to_owned(),
        ValueKind::Array(_) => "a list".to_owned(),
    }
}

/// Rejects unknown sections and keys, and values of the wrong kind or out of range.
fn check_values(root: &Value, origins: &Origins) -> Result<(), ConfigError> {
    let ValueKind::Table(sections) = &root.kind else {
        return Ok(());
    };
    let mut sections: Vec<_> = sections.iter().collect();
    sections.sort_by_key(|(name, _)| *name);
    for (name, section) in sections {
        let Some(&section_name) = SECTIONS.iter().find(|known| **known == name.as_str()) else {
            return Err(ConfigError::UnknownSection {
                origin: origins.of(name),
                section: name.clone(),
                allowed: SECTIONS.to_vec(),
            });
        };
        let ValueKind::Table(keys) = &section.kind else {
            return Err(ConfigError::Invalid {
                origin: origins.of(name),
                key: section_name,
                message: format!("must be a table, [{name}] in TOML (got {})", shown(section)),
            });
        };
        let mut keys: Vec<_> = keys.iter().collect();
        keys.sort_by_key(|(key, _)| *key);
        for (key, value) in keys {
            let path = format!("{name}.{key}");
            let Some(spec) = KEYS.iter().find(|spec| spec.path() == path) else {
                return Err(ConfigError::UnknownKey {
                    origin: origins.of(&path),
                    key: path,
                    allowed: keys_of(section_name),
                });
            };
            spec.check(value).map_err(|message| ConfigError::Invalid {
                origin: origins.of(spec.path()),
                key: spec.path(),
                message,
            })?;
        }
    }
    Ok(())
}

/// The key names (without the section) of one section.
fn keys_of(section: &str) -> Vec<&'static str> {
    KEYS.iter()
        .filter_map(|spec| {
            let (owner, key) = spec.path().split_once('.')?;
            (owner == section).then_some(key)
        })
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
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

    /// Loads `toml` as a file named `config.toml` in a temporary directory, with the given
    /// variables; also returns the directory, so that messages can be shown without it.
    fn load_toml_in_dir(
        toml: &str,
        env: &[(&str, &str)],
    ) -> TestResult<(Result<Config, ConfigError>, String)> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("config.toml");
        std::fs::write(&path, toml)?;
        let result = Config::load_from(Some(&path), owned(env));
        Ok((result, format!("{}/", dir.path().display())))
    }

    fn load_toml(toml: &str, env: &[(&str, &str)]) -> TestResult<Config> {
        Ok(load_toml_in_dir(toml, env)?.0?)
    }

    /// The error as the user reads it, with the temporary directory taken out.
    fn error_for(toml: &str, env: &[(&str, &str)]) -> TestResult<String> {
        let (result, dir) = load_toml_in_dir(toml, env)?;
        Ok(refused(result).to_string().replace(&dir, ""))
    }

    fn refused<T: fmt::Debug>(result: Result<T, ConfigError>) -> ConfigError {
        match result {
            Ok(accepted) => panic!("accepted: {accepted:?}"),
            Err(error) => error,
        }
    }

    fn owned(env: &[(&str, &str)]) -> Vec<(String, String)> {
        env.iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn entry(text: &str) -> TestResult<WalledGardenEntry> {
        Ok(text.parse()?)
    }

    #[test]
    fn defaults_are_those_of_interface_md() -> TestResult {
        let config = Config::default();
        assert_eq!(config.network.lan_interface, "br-lan");
        assert_eq!(config.network.ifb_interface, "ifb-hotspot");
        assert!(config.network.walled_garden.is_empty());
        assert_eq!(config.speed.global_down_mbits, 100);
        assert_eq!(config.speed.global_up_mbits, 100);
        assert_eq!(config.accounting.poll_interval_ms, 1000);
        assert_eq!(config.accounting.bytes_per_mb, 1_000_000);
        assert_eq!(config.sessions.queue_order, QueueOrder::OldestFirst);
        assert_eq!(config.sessions.idle_pause_secs, 0);
        assert_eq!(
            config.store.sqlite_path,
            Path::new("/var/lib/hotspotd/sessions.db")
        );
        assert_eq!(config.store.save_interval_secs, 30);
        assert_eq!(config.api.socket, Path::new("/run/hotspotd/hotspotd.sock"));
        assert_eq!(config.kernel.pin_dir, Path::new("/sys/fs/bpf/hotspotd"));
        config.validate()?;
        assert_eq!(config.poll_interval(), Duration::from_secs(1));
        assert_eq!(config.save_interval(), Duration::from_secs(30));
        assert_eq!(config.idle_pause(), None);
        Ok(())
    }

    #[test]
    fn no_file_and_no_variables_give_the_defaults() -> TestResult {
        let config = Config::load_from(None, Vec::new())?;
        assert_eq!(config, Config::default());
        let unrelated = owned(&[
            ("PATH", "/bin"),
            ("HOTSPOTD_SPEED", "x"),
            ("HOTSPOTDX__A", "1"),
        ]);
        assert_eq!(Config::load_from(None, unrelated)?, Config::default());
        Ok(())
    }

    #[test]
    fn empty_file_gives_the_defaults() -> TestResult {
        assert_eq!(load_toml("", &[])?, Config::default());
        assert_eq!(load_toml("[speed]\n[kernel]\n", &[])?, Config::default());
        Ok(())
    }

    #[test]
    fn the_file_overrides_the_defaults_key_by_key() -> TestResult {
        let config = load_toml(
            r#"
            [network]
            lan_interface = "wlan0"
            walled_garden = ["10.0.0.0/8", "192.0.2.1:443", "2001:db8::/32", "[2001:db8::1]:80"]
            [speed]
            global_down_mbits = 50
            [accounting]
            poll_interval_ms = 250
            [sessions]
            queue_order = "newest_first"
            idle_pause_secs = 90
            [store]
            sqlite_path = "/tmp/sessions.db"
            [kernel]
            pin_dir = "/sys/fs/bpf/test-1"
            "#,
            &[],
        )?;
        let mut expected = Config::default();
        expected.network.lan_interface = "wlan0".to_owned();
        expected.network.walled_garden = vec![
            entry("10.0.0.0/8")?,
            entry("192.0.2.1:443")?,
            entry("2001:db8::/32")?,
            entry("[2001:db8::1]:80")?,
        ];
        expected.speed.global_down_mbits = 50;
        expected.accounting.poll_interval_ms = 250;
        expected.sessions.queue_order = QueueOrder::NewestFirst;
        expected.sessions.idle_pause_secs = 90;
        expected.store.sqlite_path = PathBuf::from("/tmp/sessions.db");
        expected.kernel.pin_dir = PathBuf::from("/sys/fs/bpf/test-1");
        assert_eq!(config, expected);
        assert_eq!(config.poll_interval(), Duration::from_millis(250));
        assert_eq!(config.idle_pause(), Some(Duration::from_secs(90)));
        Ok(())
    }

    #[test]
    fn the_environment_overrides_the_file() -> TestResult {
        let config = load_toml(
            "[network]\nlan_interface = \"wlan0\"\nwalled_garden = [\"10.0.0.0/8\"]\n\
             [accounting]\npoll_interval_ms = 500\n",
            &[
                ("HOTSPOTD__ACCOUNTING__POLL_INTERVAL_MS", "100"),
                ("HOTSPOTD__NETWORK__LAN_INTERFACE", "br-guest"),
                ("HOTSPOTD__SESSIONS__QUEUE_ORDER", "newest_first"),
                ("HOTSPOTD__API__SOCKET", "/tmp/api.sock"),
                ("hotspotd__speed__global_up_mbits", "20"),
            ],
        )?;
        assert_eq!(config.accounting.poll_interval_ms, 100);
        assert_eq!(config.network.lan_interface, "br-guest");
        assert_eq!(config.network.walled_garden, vec![entry("10.0.0.0/8")?]);
        assert_eq!(config.sessions.queue_order, QueueOrder::NewestFirst);
        assert_eq!(config.api.socket, Path::new("/tmp/api.sock"));
        assert_eq!(config.speed.global_up_mbits, 20);
        assert_eq!(config.speed.global_down_mbits, 100);
        Ok(())
    }

    #[test]
    fn text_from_the_environment_stays_text() -> TestResult {
        // try_parsing would make these a number, a float and a boolean.
        for name in ["1234", "1e5", "nan", "true"] {
            let env = owned(&[("HOTSPOTD__NETWORK__LAN_INTERFACE", name)]);
            let config = Config::load_from(None, env)?;
            assert_eq!(config.network.lan_interface, name);
        }
        Ok(())
    }

    #[test]
    fn walled_garden_from_the_environment_is_comma_separated() -> TestResult {
        let env = owned(&[(
            "HOTSPOTD__NETWORK__WALLED_GARDEN",
            "10.0.0.0/8, [2001:db8::/32]:443,192.0.2.7",
        )]);
        let config = Config::load_from(None, env)?;
        assert_eq!(
            config.network.walled_garden,
            vec![
                entry("10.0.0.0/8")?,
                entry("[2001:db8::/32]:443")?,
                entry("192.0.2.7/32")?
            ]
        );
        // An empty variable empties the file's list.
        let config = load_toml(
            "[network]\nwalled_garden = [\"10.0.0.0/8\"]\n",
            &[("HOTSPOTD__NETWORK__WALLED_GARDEN", "")],
        )?;
        assert!(config.network.walled_garden.is_empty());
        Ok(())
    }

    #[test]
    fn each_bad_value_names_its_key_and_what_is_allowed() -> TestResult {
        for (toml, expected) in [
            (
                "[speed]\nglobal_down_mbits = -5",
                "config.toml: speed.global_down_mbits must be > 0 (got -5)",
            ),
            (
                "[speed]\nglobal_up_mbits = 0",
                "config.toml: speed.global_up_mbits must be > 0 (got 0)",
            ),
            (
                "[speed]\nglobal_down_mbits = 5000000000",
                "config.toml: speed.global_down_mbits must be at most 4294967295 (got 5000000000)",
            ),
            (
                "[speed]\nglobal_down_mbits = \"fast\"",
                "config.toml: speed.global_down_mbits must be a whole number (got \"fast\")",
            ),
            (
                "[speed]\nglobal_up_mbits = 1.5",
                "config.toml: speed.global_up_mbits must be a whole number (got 1.5)",
            ),
            (
                "[speed]\nglobal_up_mbits = true",
                "config.toml: speed.global_up_mbits must be a whole number (got true)",
            ),
            (
                "[accounting]\npoll_interval_ms = 5",
                "config.toml: accounting.poll_interval_ms must be between 10 and 60000 (got 5)",
            ),
            (
                "[accounting]\npoll_interval_ms = 60001",
                "config.toml: accounting.poll_interval_ms must be between 10 and 60000 (got 60001)",
            ),
            (
                "[accounting]\nbytes_per_mb = 0",
                "config.toml: accounting.bytes_per_mb must be > 0 (got 0)",
            ),
            (
                "[sessions]\nidle_pause_secs = -1",
                "config.toml: sessions.idle_pause_secs must be >= 0 (got -1)",
            ),
            (
                "[sessions]\nqueue_order = \"random\"",
                "config.toml: sessions.queue_order must be \"oldest_first\" or \"newest_first\" \
                 (got \"random\")",
            ),
            (
                "[sessions]\nqueue_order = 1",
                "config.toml: sessions.queue_order must be \"oldest_first\" or \"newest_first\" \
                 (got 1)",
            ),
            (
                "[store]\nsave_interval_secs = 0",
                "config.toml: store.save_interval_secs must be between 1 and 86400 (got 0)",
            ),
            (
                "[store]\nsave_interval_secs = 86401",
                "config.toml: store.save_interval_secs must be between 1 and 86400 (got 86401)",
            ),
            (
                "[store]\nsqlite_path = \"\"",
                "config.toml: store.sqlite_path must not be empty",
            ),
            (
                "[store]\nsqlite_path = 7",
                "config.toml: store.sqlite_path must be a string (got 7)",
            ),
            (
                "[kernel]\npin_dir = \"\"",
                "config.toml: kernel.pin_dir must not be empty",
            ),
            (
                "[network]\nlan_interface = 5",
                "config.toml: network.lan_interface must be a string (got 5)",
            ),
            (
                "[network]\nifb_interface = \"br-lan\"",
                "config.toml: network.ifb_interface must differ from network.lan_interface \
                 (both are \"br-lan\")",
            ),
            (
                "[network]\nwalled_garden = \"10.0.0.0/8\"",
                "config.toml: network.walled_garden must be a list of strings like \
                 [\"10.0.0.0/8\", \"[2001:db8::/32]:443\"] (got \"10.0.0.0/8\")",
            ),
            (
                "[network]\nwalled_garden = [8]",
                "config.toml: network.walled_garden must be a list of strings (got 8 in it)",
            ),
            (
                "speed = 5",
                "config.toml: speed must be a table, [speed] in TOML (got 5)",
            ),
        ] {
            assert_eq!(error_for(toml, &[])?, expected, "{toml}");
        }
        Ok(())
    }

    #[test]
    fn bad_interface_names_are_refused() -> TestResult {
        for name in [
            "",
            "sixteen-bytes-xx",
            "br/lan",
            "br lan",
            "br:0",
            "br\tlan",
            ".",
            "..",
        ] {
            let toml = format!("[network]\nlan_interface = {name:?}");
            let expected = format!(
                "config.toml: network.lan_interface must be a Linux interface name: 1 to 15 \
                 bytes, not \".\" or \"..\", without '/', ':' or whitespace (got {name:?})"
            );
            assert_eq!(error_for(&toml, &[])?, expected, "{name:?}");
        }
        assert_eq!(
            error_for("[network]\nifb_interface = \"a b\"", &[])?,
            "config.toml: network.ifb_interface must be a Linux interface name: 1 to 15 bytes, \
             not \".\" or \"..\", without '/', ':' or whitespace (got \"a b\")"
        );
        load_toml("[network]\nlan_interface = \"fifteen-bytes-x\"", &[])?;
        Ok(())
    }

    #[test]
    fn bad_walled_garden_entries_are_refused_with_the_reason() -> TestResult {
        let hint = "; write 10.0.0.0/8, 192.0.2.1:443 or [2001:db8::/32]:443";
        for (text, reason) in [
            (
                "10.0.0.0/33",
                "the prefix length must be a number from 0 to 32 (got '33')",
            ),
            (
                "2001:db8::/129",
                "the prefix length must be a number from 0 to 128 (got '129')",
            ),
            (
                "10.0.0.0/x",
                "the prefix length must be a number from 0 to 32 (got 'x')",
            ),
            (
                "10.0.0.0/",
                "the prefix length must be a number from 0 to 32 (got '')",
            ),
            (
                "10.0.0.1/8",
                "the address has bits set past the prefix; did you mean 10.0.0.0/8?",
            ),
            (
                "example.com",
                "'example.com' is not an IPv4 or IPv6 address",
            ),
            ("10.0.0.300", "'10.0.0.300' is not an IPv4 or IPv6 address"),
            ("", "'' is not an IPv4 or IPv6 address"),
            (
                "10.0.0.0/8:0",
                "the port must be a number from 1 to 65535 (got '0')",
            ),
            (
                "10.0.0.0/8:70000",
                "the port must be a number from 1 to 65535 (got '70000')",
            ),
            (
                "10.0.0.0/8:",
                "the port must be a number from 1 to 65535 (got '')",
            ),
            (
                "[2001:db8::/32]443",
                "the port must be a number from 1 to 65535 (got '443')",
            ),
            ("[2001:db8::/32:443", "has a '[' without its ']'"),
            // A port after an IPv6 network needs brackets.
            (
                "2001:db8::/32:443",
                "the prefix length must be a number from 0 to 128 (got '32:443')",
            ),
        ] {
            let toml = format!("[network]\nwalled_garden = [\"10.1.0.0/16\", {text:?}]");
            let expected = format!(
                "config.toml: network.walled_garden has an invalid entry {text:?}: {reason}{hint}"
            );
            assert_eq!(error_for(&toml, &[])?, expected, "{text}");
        }
        Ok(())
    }

    #[test]
    fn walled_garden_entries_parse_and_print_back() -> TestResult {
        let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
        for (text, addr, prefix_len, port, shown) in [
            ("10.0.0.0/8", v4(10, 0, 0, 0), 8, None, "10.0.0.0/8"),
            ("192.0.2.1", v4(192, 0, 2, 1), 32, None, "192.0.2.1/32"),
            (
                "192.0.2.1:443",
                v4(192, 0, 2, 1),
                32,
                Some(443),
                "192.0.2.1/32:443",
            ),
            ("0.0.0.0/0:53", v4(0, 0, 0, 0), 0, Some(53), "0.0.0.0/0:53"),
            (
                "[10.0.0.0/8]:80",
                v4(10, 0, 0, 0),
                8,
                Some(80),
                "10.0.0.0/8:80",
            ),
            (
                "2001:db8::/32",
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0)),
                32,
                None,
                "2001:db8::/32",
            ),
            (
                "2001:db8::1",
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
                128,
                None,
                "2001:db8::1/128",
            ),
            (
                "[2001:db8::/32]:443",
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0)),
                32,
                Some(443),
                "[2001:db8::/32]:443",
            ),
            (
                "[::1]",
                IpAddr::V6(Ipv6Addr::LOCALHOST),
                128,
                None,
                "::1/128",
            ),
        ] {
            let parsed = entry(text)?;
            assert_eq!(parsed.net.addr(), addr, "{text}");
            assert_eq!(parsed.net.prefix_len(), prefix_len, "{text}");
            assert_eq!(parsed.port.map(NonZeroU16::get), port, "{text}");
            assert_eq!(parsed.to_string(), shown, "{text}");
            assert_eq!(entry(shown)?, parsed, "{text}");
        }
        Ok(())
    }

    #[test]
    fn unknown_keys_and_sections_are_refused_with_the_allowed_ones() -> TestResult {
        assert_eq!(
            error_for("[speed]\nglobal_dwn_mbits = 5", &[])?,
            "config.toml: unknown key 'speed.global_dwn_mbits' \
             (allowed: global_down_mbits, global_up_mbits)"
        );
        assert_eq!(
            error_for("[network]\nwalled_gardens = []", &[])?,
            "config.toml: unknown key 'network.walled_gardens' \
             (allowed: lan_interface, ifb_interface, walled_garden)"
        );
        assert_eq!(
            error_for("[sped]\nglobal_down_mbits = 5", &[])?,
            "config.toml: unknown section 'sped' \
             (allowed: network, speed, accounting, sessions, store, api, kernel)"
        );
        assert_eq!(
            error_for("poll_interval_ms = 5", &[])?,
            "config.toml: unknown section 'poll_interval_ms' \
             (allowed: network, speed, accounting, sessions, store, api, kernel)"
        );
        assert_eq!(
            error_for("[Speed]\n", &[])?,
            "config.toml: unknown section 'Speed' \
             (allowed: network, speed, accounting, sessions, store, api, kernel)"
        );
        Ok(())
    }

    #[test]
    fn errors_from_the_environment_name_the_variable() -> TestResult {
        assert_eq!(
            error_for("", &[("HOTSPOTD__SPEED__GLOBAL_DOWN_MBITS", "-5")])?,
            "environment variable HOTSPOTD__SPEED__GLOBAL_DOWN_MBITS: \
             speed.global_down_mbits must be > 0 (got -5)"
        );
        assert_eq!(
            error_for(
                "[accounting]\npoll_interval_ms = 100",
                &[("HOTSPOTD__ACCOUNTING__POLL_INTERVAL_MS", "fast")]
            )?,
            "environment variable HOTSPOTD__ACCOUNTING__POLL_INTERVAL_MS: \
             accounting.poll_interval_ms must be a whole number (got \"fast\")"
        );
        assert_eq!(
            error_for("", &[("HOTSPOTD__SPEED__GLOBAL_DWN_MBITS", "5")])?,
            "environment variable HOTSPOTD__SPEED__GLOBAL_DWN_MBITS: unknown key \
             'speed.global_dwn_mbits' (allowed: global_down_mbits, global_up_mbits)"
        );
        assert_eq!(
            error_for("", &[("HOTSPOTD__NETWORK__LAN_INTERFACE", "ifb-hotspot")])?,
            "environment variable HOTSPOTD__NETWORK__LAN_INTERFACE: \
             network.lan_interface must differ from network.ifb_interface \
             (both are \"ifb-hotspot\")"
        );
        assert_eq!(
            error_for("", &[("HOTSPOTD__NETWORK__IFB_INTERFACE", "br-lan")])?,
            "environment variable HOTSPOTD__NETWORK__IFB_INTERFACE: \
             network.ifb_interface must differ from network.lan_interface (both are \"br-lan\")"
        );
        assert_eq!(
            error_for(
                "",
                &[("HOTSPOTD__NETWORK__WALLED_GARDEN", "10.0.0.0/8,10.0.0.0/40")]
            )?,
            "environment variable HOTSPOTD__NETWORK__WALLED_GARDEN: network.walled_garden has \
             an invalid entry \"10.0.0.0/40\": the prefix length must be a number from 0 to 32 \
             (got '40'); write 10.0.0.0/8, 192.0.2.1:443 or [2001:db8::/32]:443"
        );
        // Without a file, a bad variable still names itself.
        let error = refused(Config::load_from(
            None,
            owned(&[("HOTSPOTD__API__SOCKET", "")]),
        ));
        assert_eq!(
            error.to_string(),
            "environment variable HOTSPOTD__API__SOCKET: api.socket must not be empty"
        );
        Ok(())
    }

    #[test]
    fn a_missing_file_says_to_pass_an_existing_one() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("missing.toml");
        let error = refused(Config::load_from(Some(&path), Vec::new()));
        assert!(
            matches!(&error, ConfigError::Read { path: p, .. } if *p == path),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!(
                "{}: cannot read: No such file or directory (os error 2); pass --config with an \
                 existing file",
                path.display()
            )
        );
        Ok(())
    }

    #[test]
    fn a_toml_syntax_error_is_one_line_with_its_position() -> TestResult {
        assert_eq!(
            error_for("[speed]\nglobal_down_mbits = \n", &[])?,
            "config.toml: invalid TOML at line 2, column 21: string values must be quoted, \
             expected literal string"
        );
        assert_eq!(
            error_for("[speed\n", &[])?,
            "config.toml: invalid TOML at line 1, column 7: unclosed table, expected `]`"
        );
        Ok(())
    }

    #[test]
    fn validate_checks_a_config_built_in_code() -> TestResult {
        let mut config = Config::default();
        config.speed.global_down_mbits = 0;
        let error = refused(config.validate());
        assert!(
            matches!(
                &error,
                ConfigError::Invalid {
                    key: "speed.global_down_mbits",
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "configuration: speed.global_down_mbits must be > 0 (got 0)"
        );

        let mut config = Config::default();
        config.api.socket = PathBuf::from(format!("/run/{}", "s".repeat(103)));
        assert_eq!(
            refused(config.validate()).to_string(),
            "configuration: api.socket must be at most 107 bytes long, the limit of a Unix \
             socket path (got 108 bytes)"
        );
        config.api.socket = PathBuf::from(format!("/run/{}", "s".repeat(102)));
        config.validate()?;

        let mut config = Config::default();
        config.network.lan_interface = "ifb-hotspot".to_owned();
        assert_eq!(
            refused(config.validate()).to_string(),
            "configuration: network.ifb_interface must differ from network.lan_interface \
             (both are \"ifb-hotspot\")"
        );
        Ok(())
    }

    #[test]
    fn the_key_table_matches_the_structs() -> TestResult {
        let json = serde_json::to_value(Config::default())?;
        let mut from_structs = Vec::new();
        let mut sections = Vec::new();
        for (section, keys) in json.as_object().ok_or("a map")? {
            sections.push(section.as_str());
            for key in keys.as_object().ok_or("a map")?.keys() {
                from_structs.push(format!("{section}.{key}"));
            }
        }
        let mut from_table: Vec<String> = KEYS.iter().map(|key| key.path().to_owned()).collect();
        from_structs.sort();
        from_table.sort();
        assert_eq!(from_table, from_structs);
        sections.sort_unstable();
        let mut known = SECTIONS.to_vec();
        known.sort_unstable();
        assert_eq!(known, sections);
        let names = serde_json::to_value([QueueOrder::OldestFirst, QueueOrder::NewestFirst])?;
        assert_eq!(names, serde_json::json!(QueueOrder::NAMES));
        Ok(())
    }
}
