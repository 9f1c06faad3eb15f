//! `SessionData`, the record of one session sold to a client, field for field the seed's Go
//! struct (see `shared/docs/sessions.md`), and the rules that make one valid. Pure data.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::clock::Step;

/// What a session sells. The numbers are part of the API and the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum SessionType {
    /// `time_secs` of connected time.
    Time = 0,
    /// `data_mb` of billable traffic.
    Data = 1,
    /// Whichever of the two runs out first.
    TimeOrData = 2,
}

impl SessionType {
    /// Whether `time_cons` moves for this type (rule 2).
    #[must_use]
    pub const fn counts_time(self) -> bool {
        matches!(self, Self::Time | Self::TimeOrData)
    }

    /// Whether `data_cons` moves for this type (rule 2).
    #[must_use]
    pub const fn counts_data(self) -> bool {
        matches!(self, Self::Data | Self::TimeOrData)
    }

    /// The name `hotspotctl` takes: `time`, `data`, `time_or_data`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Time => "time",
            Self::Data => "data",
            Self::TimeOrData => "time_or_data",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown session type {0}: use 0 (time), 1 (data) or 2 (time_or_data)")]
pub struct UnknownSessionType(pub String);

impl TryFrom<u8> for SessionType {
    type Error = UnknownSessionType;

    fn try_from(value: u8) -> Result<Self, Self::Error> {
        match value {
            0 => Ok(Self::Time),
            1 => Ok(Self::Data),
            2 => Ok(Self::TimeOrData),
            other => Err(UnknownSessionType(other.to_string())),
        }
    }
}

impl std::str::FromStr for SessionType {
    type Err = UnknownSessionType;

    /// Accepts the names and the numbers.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "time" | "0" => Ok(Self::Time),
            "data" | "1" => Ok(Self::Data),
            "time_or_data" | "2" => Ok(Self::TimeOrData),
            other => Err(UnknownSessionType(format!("'{other}'"))),
        }
    }
}

impl Serialize for SessionType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(*self as u8)
    }
}

impl<'de> Deserialize<'de> for SessionType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = u8::deserialize(deserializer)?;
        Self::try_from(value).map_err(serde::de::Error::custom)
    }
}

/// One session, as the seed's `SessionData`: no identity of its own (the source that holds it
/// has the id and the client).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionData {
    /// Who created it: a plugin, a voucher system, `"cli"`.
    pub provider: String,
    #[serde(rename = "type")]
    pub kind: SessionType,
    /// Total time allowed, seconds (types 0 and 2).
    pub time_secs: u64,
    /// Total data allowed, MB of `accounting.bytes_per_mb` bytes (types 1 and 2).
    pub data_mb: f64,
    /// Seconds consumed (types 0 and 2).
    pub time_cons: u64,
    /// MB consumed (types 1 and 2).
    pub data_cons: f64,
    /// When it first ran; `None` = never started. Set once; it moves only with a step of the
    /// wall clock, to go on naming the same instant (`crate::clock`).
    pub started_at: Option<DateTime<Utc>>,
    /// Valid for this many days after it started (plus `time_secs`); `None` = never expires.
    pub exp_days: Option<u32>,
    /// Client download limit, Mbit/s (ignored with `use_global_speed`).
    pub down_mbits: i32,
    /// Client upload limit, Mbit/s (ignored with `use_global_speed`).
    pub up_mbits: i32,
    /// Use `speed.global_down_mbits`/`global_up_mbits` instead of the two above.
    pub use_global_speed: bool,
    pub created_at: DateTime<Utc>,
}

/// Why a [`SessionData`] cannot be sold; each message is one sentence for the operator.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidSession {
    #[error("a {kind} session needs time_secs > 0 (--time-secs)")]
    NoTime { kind: &'static str },
    #[error("a {kind} session needs data_mb > 0 (--data-mb)")]
    NoData { kind: &'static str },
    #[error("{field} must be a finite number >= 0 (got {value})")]
    NotANumber { field: &'static str, value: String },
    #[error(
        "down_mbits and up_mbits must be > 0 (got {down_mbits} and {up_mbits}); set them or use the global speed (--global-speed)"
    )]
    NoSpeed { down_mbits: i32, up_mbits: i32 },
    #[error("exp_days must be > 0 or absent (got 0)")]
    ZeroExpiry,
    #[error("time_cons ({time_cons}) must not exceed time_secs ({time_secs})")]
    TimeOverrun { time_cons: u64, time_secs: u64 },
    #[error("provider must be 1 to 64 characters (got {len})")]
    Provider { len: usize },
    #[error(
        "provider must not contain control characters (got one at character {at}): they would reach the operator's terminal"
    )]
    ProviderControl { at: usize },
    #[error(
        "time_secs must be at most {MAX_TIME_SECS} (100 years), whatever the type (got {time_secs})"
    )]
    TimeTooLong { time_secs: u64 },
    #[error(
        "data_mb must be at most {MAX_DATA_MB} (a petabyte); sell a time session for unlimited data (got {data_mb})"
    )]
    DataTooLarge { data_mb: String },
    #[error("exp_days must be at most {MAX_EXP_DAYS} (100 years) (got {exp_days})")]
    ExpiryTooLong { exp_days: u32 },
    #[error(
        "down_mbits and up_mbits must not be negative, whatever use_global_speed says (got {down_mbits} and {up_mbits})"
    )]
    NegativeSpeed { down_mbits: i32, up_mbits: i32 },
}

/// A session past this many years would overflow wall-clock arithmetic; nobody sells one.
const MAX_TIME_SECS: u64 = 100 * 365 * 86_400;
/// The most data one session sells: a petabyte of the default MB. Beyond that a number is a
/// mistake or an attempt at "unlimited", which a time session says plainly.
const MAX_DATA_MB: f64 = 1e9;
/// The longest validity after the start, like [`MAX_TIME_SECS`].
const MAX_EXP_DAYS: u32 = 100 * 365;
/// Longest provider name accepted.
const MAX_PROVIDER_LEN: usize = 64;

impl SessionData {
    /// Checks the rules a new session must meet (sessions.md rule 10 and the field meanings).
    pub fn validate(&self) -> Result<(), InvalidSession> {
        let kind = self.kind.name();
        let len = self.provider.chars().count();
        if len == 0 || len > MAX_PROVIDER_LEN {
            return Err(InvalidSession::Provider { len });
        }
        // `hotspotctl sessions` prints it in a table: an escape sequence would be obeyed.
        if let Some(at) = self.provider.chars().position(char::is_control) {
            return Err(InvalidSession::ProviderControl { at });
        }
        for (field, value) in [("data_mb", self.data_mb), ("data_cons", self.data_cons)] {
            if !value.is_finite() || value < 0.0 {
                return Err(InvalidSession::NotANumber {
                    field,
                    value: value.to_string(),
                });
            }
        }
        // Checked for every type: a limit the type ignores is still stored (as an SQLite
        // integer) and shown, and a number no session could mean is a mistake.
        if self.time_secs > MAX_TIME_SECS {
            return Err(InvalidSession::TimeTooLong {
                time_secs: self.time_secs,
            });
        }
        if self.data_mb > MAX_DATA_MB {
            // Scientific notation: `Display` would print all 309 digits of 1e308.
            return Err(InvalidSession::DataTooLarge {
                data_mb: format!("{:e}", self.data_mb),
            });
        }
        if let Some(exp_days) = self.exp_days.filter(|days| *days > MAX_EXP_DAYS) {
            return Err(InvalidSession::ExpiryTooLong { exp_days });
        }
        if self.down_mbits < 0 || self.up_mbits < 0 {
            return Err(InvalidSession::NegativeSpeed {
                down_mbits: self.down_mbits,
                up_mbits: self.up_mbits,
            });
        }
        if self.kind.counts_time() && self.time_secs == 0 {
            return Err(InvalidSession::NoTime { kind });
        }
        if self.kind.counts_data() && self.data_mb <= 0.0 {
            return Err(InvalidSession::NoData { kind });
        }
        if !self.use_global_speed && (self.down_mbits <= 0 || self.up_mbits <= 0) {
            return Err(InvalidSession::NoSpeed {
                down_mbits: self.down_mbits,
                up_mbits: self.up_mbits,
            });
        }
        if self.exp_days == Some(0) {
            return Err(InvalidSession::ZeroExpiry);
        }
        if self.kind.counts_time() && self.time_cons > self.time_secs {
            return Err(InvalidSession::TimeOverrun {
                time_cons: self.time_cons,
                time_secs: self.time_secs,
            });
        }
        Ok(())
    }

    /// Rule 1: time sessions end when `time_cons >= time_secs`, data sessions when
    /// `data_cons >= data_mb`, `time_or_data` on either.
    #[must_use]
    pub fn is_consumed(&self) -> bool {
        let time_out = self.time_cons >= self.time_secs;
        let data_out = self.data_cons >= self.data_mb;
        match self.kind {
            SessionType::Time => time_out,
            SessionType::Data => data_out,
            SessionType::TimeOrData => time_out || data_out,
        }
    }

    /// Rule 4: a started session with `exp_days` expires at
    /// `started_at + exp_days × 86400 s + time_secs s`; one never started never expires.
    #[must_use]
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        let started_at = self.started_at?;
        let days = self.exp_days?;
        let valid = TimeDelta::days(i64::from(days))
            + TimeDelta::seconds(i64::try_from(self.time_secs).unwrap_or(i64::MAX / 2_000));
        started_at.checked_add_signed(valid)
    }

    #[must_use]
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at().is_some_and(|at| now >= at)
    }

    /// Moves `started_at` and `created_at` with a step of the daemon's wall clock, where the
    /// step covers them (`crate::clock`), so they name the same instants; whether either
    /// moved.
    pub fn follow_step(&mut self, step: &Step) -> bool {
        let started_at = self.started_at.and_then(|at| step.moved(at));
        let created_at = step.moved(self.created_at);
        if started_at.is_some() {
            self.started_at = started_at;
        }
        if let Some(at) = created_at {
            self.created_at = at;
        }
        started_at.is_some() || created_at.is_some()
    }

    /// Seconds left to run (types 0 and 2); `None` when time does not count.
    #[must_use]
    pub fn time_left_secs(&self) -> Option<u64> {
        self.kind
            .counts_time()
            .then(|| self.time_secs.saturating_sub(self.time_cons))
    }

    /// Bytes left to use (types 1 and 2), rounded up so a fraction of a byte still allows
    /// one; `None` when data does not count.
    #[must_use]
    pub fn bytes_left(&self, bytes_per_mb: u64) -> Option<u64> {
        self.kind.counts_data().then(|| {
            #[expect(clippy::cast_precision_loss, reason = "bytes_per_mb is far below 2^52")]
            let left = (self.data_mb - self.data_cons) * bytes_per_mb as f64;
            // `as` saturates: NaN and negatives become 0, huge values u64::MAX.
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "a float-to-int cast saturates, which is the clamping wanted"
            )]
            let left = left.ceil().max(0.0) as u64;
            left
        })
    }
}

/// A session for tests: an hour and 500 MB at 5/2 Mbit/s, sold by `cli`, never started.
#[cfg(test)]
pub(crate) fn example(kind: SessionType, created_at: DateTime<Utc>) -> SessionData {
    SessionData {
        provider: "cli".to_owned(),
        kind,
        time_secs: 3_600,
        data_mb: 500.0,
        time_cons: 0,
        data_cons: 0.0,
        started_at: None,
        exp_days: None,
        down_mbits: 5,
        up_mbits: 2,
        use_global_speed: false,
        created_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(kind: SessionType) -> SessionData {
        example(
            kind,
            DateTime::from_timestamp(1_800_000_000, 0).expect("valid"),
        )
    }

    #[test]
    fn type_numbers_are_the_contract() {
        assert_eq!(SessionType::Time as u8, 0);
        assert_eq!(SessionType::Data as u8, 1);
        assert_eq!(SessionType::TimeOrData as u8, 2);
        assert_eq!("time_or_data".parse(), Ok(SessionType::TimeOrData));
        assert_eq!("1".parse(), Ok(SessionType::Data));
        assert!("hours".parse::<SessionType>().is_err());
        assert!(SessionType::try_from(3).is_err());
        let json = serde_json::to_value(session(SessionType::Data)).expect("serialises");
        assert_eq!(json["type"], 1);
    }

    #[test]
    fn consumed_follows_the_type() {
        let mut time = session(SessionType::Time);
        time.data_cons = 1_000.0;
        assert!(!time.is_consumed(), "data does not end a time session");
        time.time_cons = 3_600;
        assert!(time.is_consumed());

        let mut data = session(SessionType::Data);
        data.time_cons = 10_000;
        assert!(!data.is_consumed(), "time does not end a data session");
        data.data_cons = 500.0;
        assert!(data.is_consumed());

        let mut either = session(SessionType::TimeOrData);
        either.data_cons = 500.0;
        assert!(either.is_consumed(), "data alone ends time_or_data");
        let mut either = session(SessionType::TimeOrData);
        either.time_cons = 3_600;
        assert!(either.is_consumed(), "time alone ends time_or_data");
    }

    #[test]
    fn expiry_is_start_plus_days_plus_time() {
        let mut data = session(SessionType::Time);
        data.exp_days = Some(2);
        assert_eq!(data.expires_at(), None, "never started, never expires");
        let start = DateTime::from_timestamp(1_800_000_000, 0).expect("valid");
        data.started_at = Some(start);
        let at = data.expires_at().expect("expires");
        assert_eq!(at, start + TimeDelta::days(2) + TimeDelta::seconds(3_600));
        assert!(!data.is_expired(at - TimeDelta::seconds(1)));
        assert!(data.is_expired(at));
        data.exp_days = None;
        assert_eq!(data.expires_at(), None);
    }

    #[test]
    fn validation_names_what_is_wrong() {
        let mut data = session(SessionType::Data);
        data.data_mb = 0.0;
        assert!(
            data.validate()
                .unwrap_err()
                .to_string()
                .contains("--data-mb")
        );
        data.data_mb = f64::NAN;
        assert!(data.validate().unwrap_err().to_string().contains("finite"));
        data.data_mb = -1.0;
        assert!(data.validate().is_err());

        let mut time = session(SessionType::Time);
        time.time_secs = 0;
        assert!(
            time.validate()
                .unwrap_err()
                .to_string()
                .contains("--time-secs")
        );

        let mut speed = session(SessionType::Time);
        speed.down_mbits = 0;
        assert!(
            speed
                .validate()
                .unwrap_err()
                .to_string()
                .contains("--global-speed")
        );
        speed.use_global_speed = true;
        assert_eq!(speed.validate(), Ok(()));

        let mut expiry = session(SessionType::Time);
        expiry.exp_days = Some(0);
        assert!(expiry.validate().is_err());

        let mut provider = session(SessionType::Time);
        provider.provider = String::new();
        assert!(provider.validate().is_err());
        assert_eq!(session(SessionType::TimeOrData).validate(), Ok(()));
    }

    #[test]
    fn limits_a_type_ignores_are_still_sane() {
        // A data session with an absurd time would be refused by SQLite, not by the rules.
        let mut data = session(SessionType::Data);
        data.time_secs = u64::MAX;
        assert_eq!(
            data.validate(),
            Err(InvalidSession::TimeTooLong {
                time_secs: u64::MAX
            })
        );
        let mut time = session(SessionType::Time);
        time.data_mb = 1e308;
        assert!(
            time.validate()
                .unwrap_err()
                .to_string()
                .contains("petabyte")
        );
        let mut expiry = session(SessionType::Time);
        expiry.exp_days = Some(u32::MAX);
        assert!(
            expiry
                .validate()
                .unwrap_err()
                .to_string()
                .contains("100 years")
        );
        let mut speed = session(SessionType::Time);
        speed.use_global_speed = true;
        speed.down_mbits = -1;
        assert!(
            speed
                .validate()
                .unwrap_err()
                .to_string()
                .contains("negative")
        );
        speed.down_mbits = 0;
        assert_eq!(
            speed.validate(),
            Ok(()),
            "0 with the global speed is what the CLI sends"
        );
    }

    #[test]
    fn bytes_left_rounds_up_and_never_goes_negative() {
        let mut data = session(SessionType::Data);
        data.data_mb = 5.0;
        assert_eq!(data.bytes_left(1_000_000), Some(5_000_000));
        data.data_cons = 4.999_999_5;
        assert_eq!(data.bytes_left(1_000_000), Some(1));
        data.data_cons = 6.0;
        assert_eq!(data.bytes_left(1_000_000), Some(0));
        assert_eq!(session(SessionType::Time).bytes_left(1_000_000), None);
        assert_eq!(session(SessionType::Data).time_left_secs(), None);
    }
}
