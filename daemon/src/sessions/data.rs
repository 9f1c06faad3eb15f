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
    #[error(
        "a data session has no time limit, so time_secs must be 0 (got {time_secs}); leave out --time-secs, or sell a time_or_data session"
    )]
    TimeOnData { time_secs: u64 },
    #[error("time_cons must be at most {MAX_TIME_SECS} (100 years) (got {time_cons})")]
    TimeConsTooLong { time_cons: u64 },
    #[error(
        "data_cons must be at most {MAX_DATA_CONS_MB} (twice the largest session) (got {data_cons})"
    )]
    DataConsTooLarge { data_cons: String },
    #[error("{field} must lie between the years 1770 and 2170 (got {at})")]
    MomentOutOfRange { field: &'static str, at: String },
}

/// A session past this many years would overflow wall-clock arithmetic; nobody sells one.
const MAX_TIME_SECS: u64 = 100 * 365 * 86_400;
/// The most data one session sells: a petabyte of the default MB. Beyond that a number is a
/// mistake or an attempt at "unlimited", which a time session says plainly.
const MAX_DATA_MB: f64 = 1e9;
/// The most a session can have consumed: a used-up session ends one packet past its data,
/// so the bound on what is consumed must lie above [`MAX_DATA_MB`], or the largest session,
/// once used up, would be set aside at the next start.
const MAX_DATA_CONS_MB: f64 = 2.0 * MAX_DATA_MB;
/// The longest validity after the start, like [`MAX_TIME_SECS`].
const MAX_EXP_DAYS: u32 = 100 * 365;
/// Longest provider name accepted.
const MAX_PROVIDER_LEN: usize = 64;

impl SessionData {
    /// Checks the rules a new session must meet (sessions.md rule 10 and the field meanings):
    /// every range of [`Self::check_ranges`], and what a sale must say.
    pub fn validate(&self) -> Result<(), InvalidSession> {
        self.check_ranges()?;
        let kind = self.kind.name();
        if self.kind.counts_time() && self.time_secs == 0 {
            return Err(InvalidSession::NoTime { kind });
        }
        if self.kind == SessionType::Data && self.time_secs != 0 {
            return Err(InvalidSession::TimeOnData {
                time_secs: self.time_secs,
            });
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

    /// Checks that every field is in the range the arithmetic on sessions is defined for, so
    /// that no rule can overflow or panic on this record. Every record passes this, whether
    /// sold now or read back from a store: a stored record that fails it is set aside at
    /// start, never loaded. (A stored record of an older release may break a sale rule of
    /// [`Self::validate`] and still be served, such as a data session with `time_secs`.)
    pub fn check_ranges(&self) -> Result<(), InvalidSession> {
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
        if self.time_cons > MAX_TIME_SECS {
            return Err(InvalidSession::TimeConsTooLong {
                time_cons: self.time_cons,
            });
        }
        if self.data_cons > MAX_DATA_CONS_MB {
            return Err(InvalidSession::DataConsTooLarge {
                data_cons: format!("{:e}", self.data_cons),
            });
        }
        for (field, at) in [
            ("created_at", Some(self.created_at)),
            ("started_at", self.started_at),
        ] {
            if let Some(at) = at.filter(|at| !moment_in_range(*at)) {
                return Err(InvalidSession::MomentOutOfRange {
                    field,
                    at: at.to_rfc3339(),
                });
            }
        }
        Ok(())
    }

    /// The data the session sells, in whole bytes: `data_mb × bytes_per_mb`, rounded up (a
    /// fraction of a byte still allows one), saturating. The kernel's budget and "consumed"
    /// are both decided against this one number.
    #[must_use]
    pub fn data_bytes(&self, bytes_per_mb: u64) -> u64 {
        mb_to_bytes(self.data_mb, bytes_per_mb, f64::ceil)
    }

    /// `data_cons` in whole bytes. The engine counts consumption in whole bytes and writes
    /// `data_cons` as that count over `bytes_per_mb`; the nearest integer gives the count back
    /// exactly for every count below 2^51 bytes (2 PB), far beyond the largest session.
    #[must_use]
    pub fn data_cons_bytes(&self, bytes_per_mb: u64) -> u64 {
        mb_to_bytes(self.data_cons, bytes_per_mb, f64::round)
    }

    /// Sets `data_cons` from a count of whole bytes (see [`Self::data_cons_bytes`]).
    pub fn set_data_cons_bytes(&mut self, bytes: u64, bytes_per_mb: u64) {
        #[expect(
            clippy::cast_precision_loss,
            reason = "MB are fractional by definition"
        )]
        let mb = bytes as f64 / bytes_per_mb.max(1) as f64;
        self.data_cons = mb;
    }

    /// Rule 1, decided in whole numbers: time sessions end when `time_cons >= time_secs`,
    /// data sessions when `data_cons_bytes >= data_bytes` (consumed and sold data in bytes of
    /// `bytes_per_mb`), `time_or_data` on either. In bytes, because a sum of per-poll MB in
    /// floating point can land one step under `data_mb` after the kernel spent the budget to
    /// the byte, and the session would never end.
    #[must_use]
    pub fn is_consumed(&self, data_cons_bytes: u64, bytes_per_mb: u64) -> bool {
        let time_out = self.time_cons >= self.time_secs;
        let data_out = data_cons_bytes >= self.data_bytes(bytes_per_mb);
        match self.kind {
            SessionType::Time => time_out,
            SessionType::Data => data_out,
            SessionType::TimeOrData => time_out || data_out,
        }
    }

    /// Rule 4: a started session with `exp_days` expires at
    /// `started_at + exp_days × 86400 s + time_secs s`, where `time_secs` counts only for the
    /// types that sell time (a data session has none); one never started never expires.
    /// Saturates: a moment past what the clock can name never comes, like no expiry.
    #[must_use]
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        let started_at = self.started_at?;
        let days = self.exp_days?;
        let time_secs = if self.kind.counts_time() {
            self.time_secs
        } else {
            0
        };
        let valid = TimeDelta::try_days(i64::from(days))?
            .checked_add(&TimeDelta::try_seconds(i64::try_from(time_secs).ok()?)?)?;
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

    /// Bytes left to use (types 1 and 2) after `data_cons_bytes` consumed: the sold
    /// [`Self::data_bytes`] less them, never negative; `None` when data does not count.
    #[must_use]
    pub fn bytes_left(&self, data_cons_bytes: u64, bytes_per_mb: u64) -> Option<u64> {
        self.kind.counts_data().then(|| {
            self.data_bytes(bytes_per_mb)
                .saturating_sub(data_cons_bytes)
        })
    }
}

/// `mb` MB of `bytes_per_mb` bytes, made whole by `whole`; saturating: NaN and negatives give
/// 0, what exceeds `u64` gives `u64::MAX`.
fn mb_to_bytes(mb: f64, bytes_per_mb: u64, whole: fn(f64) -> f64) -> u64 {
    #[expect(
        clippy::cast_precision_loss,
        reason = "exact for every bytes_per_mb below 2^53; a larger one is no MB anyone sells"
    )]
    let bytes = whole(mb * bytes_per_mb as f64);
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a float-to-int cast saturates, which is the clamping wanted"
    )]
    let bytes = bytes as u64;
    bytes
}

/// Whether `at` lies within 200 years of 1970 (a box without a clock starts there), where
/// adding any valid session's time and expiry stays far inside what `chrono` can name.
fn moment_in_range(at: DateTime<Utc>) -> bool {
    const LIMIT_SECS: i64 = 200 * 365 * 86_400;
    (-LIMIT_SECS..=LIMIT_SECS).contains(&at.timestamp())
}

/// A session for tests: an hour (unless it sells data only) and 500 MB at 5/2 Mbit/s, sold by
/// `cli`, never started.
#[cfg(test)]
pub(crate) fn example(kind: SessionType, created_at: DateTime<Utc>) -> SessionData {
    SessionData {
        provider: "cli".to_owned(),
        kind,
        time_secs: if kind.counts_time() { 3_600 } else { 0 },
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

    /// Whether `data` is consumed with its `data_cons` as the engine would count it.
    fn consumed(data: &SessionData) -> bool {
        data.is_consumed(data.data_cons_bytes(MB), MB)
    }

    const MB: u64 = 1_000_000;

    #[test]
    fn consumed_follows_the_type() {
        let mut time = session(SessionType::Time);
        time.data_cons = 1_000.0;
        assert!(!consumed(&time), "data does not end a time session");
        time.time_cons = 3_600;
        assert!(consumed(&time));

        let mut data = session(SessionType::Data);
        data.time_cons = 10_000;
        assert!(!consumed(&data), "time does not end a data session");
        data.data_cons = 500.0;
        assert!(consumed(&data));

        let mut either = session(SessionType::TimeOrData);
        either.data_cons = 500.0;
        assert!(consumed(&either), "data alone ends time_or_data");
        let mut either = session(SessionType::TimeOrData);
        either.time_cons = 3_600;
        assert!(consumed(&either), "time alone ends time_or_data");
    }

    #[test]
    fn consumed_is_decided_in_whole_bytes() {
        // Per-poll MB added as floats land one step under 5 MB: 4.999999999999999.
        let polls = [2_187_000_u64, 147_000, 2_364_000, 302_000];
        #[expect(
            clippy::cast_precision_loss,
            reason = "the float sum the bug came from"
        )]
        let float_sum: f64 = polls.iter().map(|bytes| *bytes as f64 / 1e6).sum();
        assert!(float_sum < 5.0, "the float sum falls short: {float_sum}");

        let mut data = session(SessionType::Data);
        data.data_mb = 5.0;
        let mut bytes = 0;
        for poll in polls {
            bytes += poll;
            data.set_data_cons_bytes(bytes, MB);
        }
        assert_eq!(data.data_cons_bytes(MB), 5_000_000);
        assert_eq!(data.bytes_left(bytes, MB), Some(0));
        assert!(data.is_consumed(bytes, MB));
        assert!(
            !data.is_consumed(bytes - 1, MB),
            "one byte short is not consumed"
        );
        assert_eq!(data.bytes_left(bytes - 1, MB), Some(1));
    }

    #[test]
    fn data_cons_gives_back_the_bytes_it_was_set_from() {
        // Every count a session can reach at the default MB and at a binary one, and the
        // counts around every power of two up to 2^51.
        let mut counts: Vec<u64> = (0..20_000).chain(999_990..1_000_010).collect();
        for shift in 0..=51 {
            let power = 1_u64 << shift;
            counts.extend([power.saturating_sub(1), power, power + 1]);
        }
        counts.push(1_000_000_000_000_000); // the largest session at the default MB
        let mut data = session(SessionType::Data);
        for bytes_per_mb in [1, 1_000, 1_000_000, 1_048_576] {
            for bytes in &counts {
                data.set_data_cons_bytes(*bytes, bytes_per_mb);
                assert_eq!(
                    data.data_cons_bytes(bytes_per_mb),
                    *bytes,
                    "{bytes} at {bytes_per_mb}"
                );
            }
        }
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
    fn a_data_session_has_no_time_in_its_expiry_and_sells_none() {
        let start = DateTime::from_timestamp(1_800_000_000, 0).expect("valid");
        let mut data = session(SessionType::Data);
        data.exp_days = Some(1);
        data.started_at = Some(start);
        // A record of an older release may carry time_secs: it is ignored.
        data.time_secs = 3_600;
        assert_eq!(data.expires_at(), Some(start + TimeDelta::days(1)));
        assert_eq!(
            data.validate(),
            Err(InvalidSession::TimeOnData { time_secs: 3_600 })
        );
        assert_eq!(data.check_ranges(), Ok(()), "a stored one is still served");
        data.time_secs = 0;
        assert_eq!(data.validate(), Ok(()));
    }

    #[test]
    fn every_range_holds_its_edge_and_refuses_one_past_it() {
        const LIMIT_SECS: i64 = 200 * 365 * 86_400;
        let at = |secs| DateTime::from_timestamp(secs, 0).expect("valid");
        for edge in [-LIMIT_SECS, LIMIT_SECS] {
            let mut data = session(SessionType::Time);
            data.started_at = Some(at(edge));
            data.created_at = at(edge);
            assert_eq!(data.check_ranges(), Ok(()), "{edge} s is in range");
            data.started_at = Some(at(edge + edge.signum()));
            assert!(
                matches!(
                    data.check_ranges(),
                    Err(InvalidSession::MomentOutOfRange {
                        field: "started_at",
                        ..
                    })
                ),
                "one second past {edge} s is not"
            );
        }
        let mut time = session(SessionType::Time);
        time.time_secs = MAX_TIME_SECS;
        time.time_cons = MAX_TIME_SECS;
        assert_eq!(time.check_ranges(), Ok(()));
        time.time_cons = MAX_TIME_SECS + 1;
        assert!(time.check_ranges().is_err());
        let mut data = session(SessionType::Data);
        data.data_cons = MAX_DATA_CONS_MB;
        assert_eq!(data.check_ranges(), Ok(()));
        data.data_cons = MAX_DATA_CONS_MB.next_up();
        assert!(data.check_ranges().is_err());
    }

    #[test]
    fn the_largest_session_used_up_one_packet_past_its_end_is_still_in_range() {
        let mut data = session(SessionType::Data);
        data.data_mb = MAX_DATA_MB;
        data.set_data_cons_bytes(data.data_bytes(MB) + 1_500, MB);
        assert!(data.data_cons > MAX_DATA_MB);
        assert_eq!(data.check_ranges(), Ok(()));
        assert!(data.is_consumed(data.data_cons_bytes(MB), MB));
    }

    #[test]
    fn no_field_value_panics_the_rules() {
        // The whole domain's edges of every field the arithmetic touches, combined.
        let times = [
            0,
            1,
            3_600,
            MAX_TIME_SECS,
            MAX_TIME_SECS + 1,
            i64::MAX as u64,
            u64::MAX,
        ];
        let mbs = [
            0.0,
            0.1,
            1e9,
            1e9 + 1.0,
            f64::MAX,
            f64::INFINITY,
            f64::NAN,
            -1.0,
        ];
        let days = [None, Some(0), Some(1), Some(MAX_EXP_DAYS), Some(u32::MAX)];
        let moments = [
            DateTime::<Utc>::MIN_UTC,
            DateTime::from_timestamp(0, 0).expect("valid"),
            DateTime::from_timestamp(1_800_000_000, 0).expect("valid"),
            DateTime::<Utc>::MAX_UTC,
        ];
        let bytes_per_mb = [1, 1_000_000, u64::MAX];
        for kind in [
            SessionType::Time,
            SessionType::Data,
            SessionType::TimeOrData,
        ] {
            for time in times {
                for mb in mbs {
                    for exp_days in days {
                        for at in moments {
                            let mut data = session(kind);
                            data.time_secs = time;
                            data.time_cons = time;
                            data.data_mb = mb;
                            data.data_cons = mb;
                            data.exp_days = exp_days;
                            data.started_at = Some(at);
                            data.created_at = at;
                            let _ = data.validate();
                            let ranged = data.check_ranges().is_ok();
                            let expiry = data.expires_at();
                            let _ = data.is_expired(at);
                            let _ = data.time_left_secs();
                            for per_mb in bytes_per_mb {
                                let cons = data.data_cons_bytes(per_mb);
                                let _ = data.is_consumed(cons, per_mb);
                                let _ = data.bytes_left(cons, per_mb);
                                data.clone().set_data_cons_bytes(u64::MAX, per_mb);
                            }
                            if ranged && exp_days.is_some() {
                                assert!(expiry.is_some(), "a valid record always has its expiry");
                            }
                        }
                    }
                }
            }
        }
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
        assert_eq!(data.bytes_left(0, MB), Some(5_000_000));
        data.data_mb = 4.999_999_5;
        assert_eq!(
            data.bytes_left(4_999_999, MB),
            Some(1),
            "half a byte allows one"
        );
        assert_eq!(data.bytes_left(6_000_000, MB), Some(0));
        assert_eq!(session(SessionType::Time).bytes_left(0, MB), None);
        assert_eq!(session(SessionType::Data).time_left_secs(), None);
    }
}
