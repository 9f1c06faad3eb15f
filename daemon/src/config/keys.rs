//! The key table: every section and key the configuration accepts, the checks its raw merged
//! values pass before serde sees them, and where each value came from. Pure; no I/O.

use std::collections::HashMap;

use config::{Value, ValueKind};

use super::{ConfigError, LocalService, PortalMode, QueueOrder, WalledGardenEntry};

/// Where each value came from, so that an error names the variable or file the user must fix.
pub(super) struct Origins {
    /// The file as given, or what to name when there is none.
    pub(super) fallback: String,
    /// Dotted key (`speed.global_down_mbits`) → the variable that set it.
    pub(super) env: HashMap<String, String>,
}

impl Origins {
    pub(super) fn of(&self, key: &str) -> String {
        match self.env.get(key) {
            Some(name) => format!("environment variable {name}"),
            None => self.fallback.clone(),
        }
    }
}

/// The sections, in the order of `Config`.
pub(super) const SECTIONS: &[&str] = &[
    "network",
    "speed",
    "accounting",
    "sessions",
    "store",
    "api",
    "kernel",
    "events",
    "portal",
    "vouchers",
    "history",
    "sales",
    "radius",
];

/// Every key, and the kind of value it takes. The merged values are checked against this before
/// serde sees them, so that a wrong value is reported in the user's terms rather than serde's.
pub(super) const KEYS: &[Key] = &[
    Key::Text("network.lan_interface"),
    Key::Text("network.ifb_interface"),
    Key::WalledGarden("network.walled_garden"),
    Key::LocalServices("network.local_services"),
    Key::Int(GARDEN_TTL_FLOOR_SECS),
    Key::Int(GARDEN_TTL_CAP_SECS),
    Key::Int(GLOBAL_DOWN_MBITS),
    Key::Int(GLOBAL_UP_MBITS),
    Key::Int(CLASSES_READY),
    Key::Int(POLL_INTERVAL_MS),
    Key::Int(BYTES_PER_MB),
    Key::Choice("sessions.queue_order", QueueOrder::NAMES),
    Key::Int(IDLE_PAUSE_SECS),
    Key::Text("store.sqlite_path"),
    Key::Int(SAVE_INTERVAL_SECS),
    Key::Text("api.socket"),
    Key::Text("api.tcp_listen"),
    Key::Text("api.token_file"),
    Key::Bool("api.allow_non_loopback"),
    Key::Text("kernel.pin_dir"),
    Key::Text("events.exec"),
    Key::Int(EXEC_TIMEOUT_MS),
    Key::Choice("portal.mode", PortalMode::NAMES),
    Key::Int(PORTAL_LISTEN_PORT),
    Key::Text("portal.url"),
    Key::Text("portal.venue_info_url"),
    Key::Bool("portal.redirect_dns"),
    Key::Text("portal.theme_dir"),
    Key::Text("portal.tls_cert"),
    Key::Text("portal.tls_key"),
    Key::Int(PORTAL_TLS_PORT),
    Key::Text("portal.hostname"),
    Key::Text("portal.api_url"),
    Key::Int(VOUCHER_CODE_LENGTH),
    Key::Int(TRIAL_SECS),
    Key::Int(TRIAL_DOWN_MBITS),
    Key::Int(TRIAL_UP_MBITS),
    Key::Int(TRIAL_RESET_SECS),
    Key::Int(HOURLY_DAYS),
    Key::Int(DAILY_DAYS),
    Key::Text("sales.currency"),
    Key::Text("radius.auth_server"),
    Key::Texts("radius.auth_servers"),
    Key::Text("radius.acct_server"),
    Key::Texts("radius.acct_servers"),
    Key::Text("radius.secret"),
    Key::Text("radius.nas_identifier"),
    Key::Int(RADIUS_TIMEOUT_MS),
    Key::Int(RADIUS_RETRIES),
    Key::Int(RADIUS_DEFAULT_TIME_SECS),
    Key::Int(RADIUS_COA_PORT),
    Key::Int(RADIUS_AWAY_GRANT_SECS),
    Key::Bool("radius.mac_auth"),
];

/// How long an address learned for a walled-garden host name stays open at least, and at
/// most, whatever TTL its answer gave (`crate::garden`).
pub(super) const GARDEN_TTL_FLOOR_SECS: IntKey =
    IntKey::between("network.garden_ttl_floor_secs", 1, 86_400);
pub(super) const GARDEN_TTL_CAP_SECS: IntKey =
    IntKey::between("network.garden_ttl_cap_secs", 1, 604_800);
pub(super) const GLOBAL_DOWN_MBITS: IntKey =
    IntKey::at_least("speed.global_down_mbits", 1, u32::MAX as u64);
pub(super) const GLOBAL_UP_MBITS: IntKey =
    IntKey::at_least("speed.global_up_mbits", 1, u32::MAX as u64);
/// At most one spare per client minor (`shaping::tree`: 2 ..= 0xfffd).
pub(super) const CLASSES_READY: IntKey = IntKey::between("speed.classes_ready", 0, 65_532);
pub(super) const POLL_INTERVAL_MS: IntKey =
    IntKey::between("accounting.poll_interval_ms", 10, 60_000);
pub(super) const BYTES_PER_MB: IntKey = IntKey::at_least("accounting.bytes_per_mb", 1, u64::MAX);
pub(super) const IDLE_PAUSE_SECS: IntKey =
    IntKey::at_least("sessions.idle_pause_secs", 0, u64::MAX);
pub(super) const SAVE_INTERVAL_SECS: IntKey =
    IntKey::between("store.save_interval_secs", 1, 86_400);
pub(super) const EXEC_TIMEOUT_MS: IntKey = IntKey::between("events.exec_timeout_ms", 100, 600_000);
pub(super) const PORTAL_LISTEN_PORT: IntKey = IntKey::between("portal.listen_port", 1, 65_535);
pub(super) const PORTAL_TLS_PORT: IntKey = IntKey::between("portal.tls_port", 1, 65_535);
/// At least 40 bits of randomness; at most what the portal's form takes.
pub(super) const VOUCHER_CODE_LENGTH: IntKey = IntKey::between(
    "vouchers.code_length",
    crate::vouchers::code::MIN_CODE_LENGTH as u64,
    crate::vouchers::code::MAX_CODE_LENGTH as u64,
);

/// A free trial of up to a day; 0: none.
pub(super) const TRIAL_SECS: IntKey = IntKey::between("portal.trial_secs", 0, 86_400);
/// A session's speed is an i32 (`SessionData::down_mbits`); 0: the global speed.
pub(super) const TRIAL_DOWN_MBITS: IntKey =
    IntKey::between("portal.trial_down_mbits", 0, i32::MAX as u64);
pub(super) const TRIAL_UP_MBITS: IntKey =
    IntKey::between("portal.trial_up_mbits", 0, i32::MAX as u64);
/// A minute to a year.
pub(super) const TRIAL_RESET_SECS: IntKey =
    IntKey::between("portal.trial_reset_secs", 60, 31_536_000);

/// Up to ten years of hours and of days (docs/usage.md).
pub(super) const HOURLY_DAYS: IntKey = IntKey::between("history.hourly_days", 1, 3_660);
pub(super) const DAILY_DAYS: IntKey = IntKey::between("history.daily_days", 1, 3_660);
/// One try's wait for a RADIUS server: 100 ms to a minute.
pub(super) const RADIUS_TIMEOUT_MS: IntKey = IntKey::between("radius.timeout_ms", 100, 60_000);
/// 0: no listener for change-of-authorization requests.
pub(super) const RADIUS_COA_PORT: IntKey = IntKey::between("radius.coa_port", 0, 65_535);
/// 0 (refuse) to a day.
pub(super) const RADIUS_AWAY_GRANT_SECS: IntKey =
    IntKey::between("radius.away_grant_secs", 0, 86_400);
pub(super) const RADIUS_RETRIES: IntKey = IntKey::between("radius.retries", 0, 10);
/// A minute to a year.
pub(super) const RADIUS_DEFAULT_TIME_SECS: IntKey =
    IntKey::between("radius.default_time_secs", 60, 31_536_000);

#[derive(Clone, Copy, Debug)]
pub(super) enum Key {
    /// A list of strings.
    Texts(&'static str),
    /// A string: an interface name or a path.
    Text(&'static str),
    Int(IntKey),
    /// One of the given strings.
    Choice(&'static str, &'static [&'static str]),
    /// A list of walled-garden entries.
    WalledGarden(&'static str),
    /// A list of the box's client services.
    LocalServices(&'static str),
    /// `true` or `false`.
    Bool(&'static str),
}

/// An integer key: the values it allows, and the largest its Rust type holds.
#[derive(Clone, Copy, Debug)]
pub(super) struct IntKey {
    pub(super) path: &'static str,
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

    pub(super) fn check(self, value: i128) -> Result<(), String> {
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
    pub(super) fn path(self) -> &'static str {
        match self {
            Self::Text(path)
            | Self::Texts(path)
            | Self::Choice(path, _)
            | Self::WalledGarden(path)
            | Self::LocalServices(path)
            | Self::Bool(path) => path,
            Self::Int(key) => key.path,
        }
    }

    /// Whether `value` has the kind this key takes (and for numbers, choices and entries,
    /// an allowed value); the error says what is allowed and what was got.
    fn check(self, value: &Value) -> Result<(), String> {
        match (self, &value.kind) {
            (Self::Text(_), ValueKind::String(_)) | (Self::Bool(_), ValueKind::Boolean(_)) => {
                Ok(())
            }
            (Self::Bool(_), _) => Err(format!("must be true or false (got {})", shown(value))),
            (Self::Texts(_), ValueKind::Array(items)) => items.iter().try_for_each(|item| {
                if matches!(item.kind, ValueKind::String(_)) {
                    Ok(())
                } else {
                    Err(format!(
                        "must be a list of strings (got {} in it)",
                        shown(item)
                    ))
                }
            }),
            (Self::Texts(_), _) => Err(format!(
                "must be a list of strings like [\"192.0.2.11:1812\"] (got {})",
                shown(value)
            )),
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
                             192.0.2.1:443, [2001:db8::/32]:443, pay.example.com or \
                             *.example.com:443"
                        )
                    })
            }),
            (Self::LocalServices(_), ValueKind::Array(items)) => {
                items.iter().try_for_each(|item| {
                    let ValueKind::String(text) = &item.kind else {
                        return Err(format!(
                            "must be a list of strings (got {} in it)",
                            shown(item)
                        ));
                    };
                    text.parse::<LocalService>()
                        .map(drop)
                        .map_err(|error| format!("has an invalid entry {text:?}: {error}"))
                })
            }
            (Self::LocalServices(_), _) => Err(format!(
                "must be a list of strings like [\"icmp\", \"udp/53\", \"tcp/2050\"] (got {})",
                shown(value)
            )),
            (Self::WalledGarden(_), _) => Err(format!(
                "must be a list of strings like [\"10.0.0.0/8\", \"[2001:db8::/32]:443\", \
                 \"pay.example.com\"] (got {})",
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
        ValueKind::String(text) => printable(text),
        ValueKind::Table(_) => "a table".to_owned(),
        ValueKind::Array(_) => "a list".to_owned(),
    }
}

/// Longest text quoted whole in an error; the rest is an echo of the file.
const MAX_QUOTED_CHARS: usize = 64;

/// `text` quoted and escaped as Rust writes strings (so no control character reaches the
/// terminal), its first characters only when it is long.
fn printable(text: &str) -> String {
    let chars = text.chars().count();
    if chars <= MAX_QUOTED_CHARS {
        return format!("{text:?}");
    }
    let head: String = text.chars().take(MAX_QUOTED_CHARS).collect();
    format!("{head:?}… ({chars} characters)")
}

/// A section or key name as the user wrote it, for "unknown key '…'": control characters
/// escaped, a long one shortened.
fn name_shown(name: &str) -> String {
    crate::text::tidy(name)
}

/// Rejects unknown sections and keys, and values of the wrong kind or out of range.
pub(super) fn check_values(root: &Value, origins: &Origins) -> Result<(), ConfigError> {
    let ValueKind::Table(sections) = &root.kind else {
        return Ok(());
    };
    let mut sections: Vec<_> = sections.iter().collect();
    sections.sort_by_key(|(name, _)| *name);
    for (name, section) in sections {
        let Some(&section_name) = SECTIONS.iter().find(|known| **known == name.as_str()) else {
            return Err(ConfigError::UnknownSection {
                origin: origins.of(name),
                section: name_shown(name),
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
                    key: name_shown(&path),
                    allowed: keys_of(section_name),
                });
            };
            spec.check(value).map_err(|message| ConfigError::Invalid {
                origin: origins.of(spec.path()),
                key: spec.path(),
                message: crate::text::tidy(&message),
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
