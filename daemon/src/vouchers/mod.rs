//! Vouchers: codes sold on paper that carry a session (docs/vouchers.md). What a code is
//! ([`code`]), how it is kept (an HMAC under a key that lives in its own file, not in the
//! database, so a dump of the database alone redeems nothing), and a voucher's state. Side
//! effects: [`VoucherKey::load_or_create`] reads, or creates (mode 0600), the key file.

pub mod code;

use std::{
    io::{Read as _, Write as _},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::{
    mac::MacAddr,
    sessions::engine::SessionId,
    sessions::{
        SessionData,
        engine::{SessionEnd, SessionState},
    },
};

pub use code::{
    ALPHABET, DEFAULT_CODE_LENGTH, MAX_CODE_LENGTH, MIN_CODE_LENGTH, entropy_bits, new_code,
    normalise,
};

/// A voucher's identity: never reused, shown by `hotspotctl vouchers` (codes are not kept).
pub type VoucherId = i64;

/// The most vouchers one request creates.
pub const MAX_BATCH: u32 = 10_000;

/// The key codes are kept under: HMAC-SHA-256 of a code with it is what the database holds.
#[derive(Clone)]
pub struct VoucherKey([u8; 32]);

impl std::fmt::Debug for VoucherKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VoucherKey(..)")
    }
}

/// Why the voucher key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "cannot read or create the voucher key {path} (check that hotspotd may read and write its folder; without it no voucher can be redeemed)"
    )]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the voucher key {path} is {len} bytes, not 32: it was changed by something else; restore it from a backup (moving it away makes every unused voucher unredeemable)"
    )]
    Length { path: PathBuf, len: usize },
}

impl VoucherKey {
    /// Where the key of the database at `sqlite_path` lives: beside it, `<file>.voucher-key`.
    #[must_use]
    pub fn path_for(sqlite_path: &Path) -> PathBuf {
        let mut name = sqlite_path.as_os_str().to_owned();
        name.push(".voucher-key");
        PathBuf::from(name)
    }

    /// Reads the key at `path`, or makes a new random one there (mode 0600) when there is
    /// none. A key made anew while the database holds unused vouchers makes them
    /// unredeemable: the caller warns.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                let key = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| KeyError::Length {
                    path: path.to_owned(),
                    len: bytes.len(),
                })?;
                Ok((Self(key), false))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::random().map_err(io)?;
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(io)?;
                file.write_all(&key.0).map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok((key, true))
            }
            Err(error) => Err(io(error)),
        }
    }

    /// A new random key (tests, and a store kept in memory).
    pub fn random() -> std::io::Result<Self> {
        let mut key = [0; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
        Ok(Self(key))
    }

    /// What the database keeps of a normalised `code`.
    #[must_use]
    pub fn hash(&self, code: &str) -> [u8; 32] {
        // HMAC takes a key of any length: `new_from_slice` cannot fail.
        let Ok(mut hmac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return [0; 32];
        };
        hmac.update(b"hotspotd voucher ");
        hmac.update(code.as_bytes());
        hmac.finalize().into_bytes().into()
    }

    /// The tag of the portal's resume cookie for voucher `id` (docs/vouchers.md): an HMAC
    /// under the same key, in a domain of its own (a code's input is "hotspotd voucher " and
    /// capitals and digits), so no cookie is a code's hash or another voucher's cookie.
    #[must_use]
    pub fn resume_tag(&self, id: VoucherId) -> [u8; 32] {
        let Ok(mut hmac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return [0; 32];
        };
        hmac.update(b"hotspotd resume cookie\0");
        hmac.update(&id.to_be_bytes());
        hmac.finalize().into_bytes().into()
    }
}

/// What the database says of a voucher; the state shown ([`VoucherState`]) also depends on
/// its session and the date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Unused,
    /// Redeemed: its session is `Voucher::session_id`.
    InUse,
    Revoked,
}

impl Stage {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Unused => "unused",
            Self::InUse => "in_use",
            Self::Revoked => "revoked",
        }
    }

    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Unused, Self::InUse, Self::Revoked]
            .into_iter()
            .find(|stage| stage.name() == name)
    }
}

/// A voucher's state as `hotspotctl vouchers` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VoucherState {
    Unused,
    InUse,
    UsedUp,
    Expired,
    Revoked,
}

/// One voucher as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Voucher {
    pub id: VoucherId,
    /// [`VoucherKey::hash`] of its code.
    pub code_hash: [u8; 32],
    /// The session it sells: a record as `session add` takes it, provider `"voucher"`.
    pub plan: SessionData,
    /// How many devices may use it at once (docs/vouchers.md, "Device slots").
    pub max_devices: u32,
    /// After this instant an unused voucher can no longer be redeemed.
    pub valid_until: Option<DateTime<Utc>>,
    pub stage: Stage,
    /// The device that holds its session: the first to redeem it, or the last it moved to.
    pub mac: Option<MacAddr>,
    /// The other devices using it now, drawing on the session of `mac`; at most
    /// `max_devices - 1`.
    pub devices: Vec<MacAddr>,
    /// The session it became; `None` before, or once the session is gone.
    pub session_id: Option<SessionId>,
    pub created_at: DateTime<Utc>,
    pub redeemed_at: Option<DateTime<Utc>>,
    /// What its session is sold for (the sale's price, docs/usage.md); `None`: no price.
    pub price: Option<crate::price::Price>,
    /// How its session ended, once it did: the session then leaves the daemon's memory (and
    /// later the database), the voucher's state stays.
    pub session_end: Option<crate::sessions::engine::SessionEnd>,
}

impl Voucher {
    /// Its state at `now`, given what the engine says of its session (`None`: gone: ended,
    /// then [`Self::session_end`] says how, or removed).
    #[must_use]
    pub fn state(&self, session: Option<SessionState>, now: DateTime<Utc>) -> VoucherState {
        let session = session.or_else(|| self.session_end.map(SessionEnd::state));
        match self.stage {
            Stage::Revoked => VoucherState::Revoked,
            Stage::Unused if self.valid_until.is_some_and(|until| now > until) => {
                VoucherState::Expired
            }
            Stage::Unused => VoucherState::Unused,
            Stage::InUse => match session {
                Some(SessionState::Available | SessionState::Running | SessionState::Paused) => {
                    VoucherState::InUse
                }
                Some(SessionState::Expired) => VoucherState::Expired,
                Some(SessionState::Consumed) | None => VoucherState::UsedUp,
            },
        }
    }
}

/// Why a code bought nothing; each message is what the portal's page says.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RedeemError {
    #[error("no voucher has this code")]
    UnknownCode,
    #[error("this voucher was revoked")]
    Revoked,
    #[error("this voucher has expired")]
    Expired,
    #[error("this voucher is used up")]
    UsedUp,
    #[error(
        "this device is running a session of its own; enter the code again when it ends, or pause it first"
    )]
    OwnSession,
    #[error("too many wrong codes from this device; try again in {retry_secs} s")]
    Throttled { retry_secs: u64 },
    #[error("the voucher's session could not be sold: {0}")]
    Failed(String),
    /// The code is no local voucher and the RADIUS server refused it (docs/radius.md).
    #[error("the RADIUS server refused this code{}", message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Rejected { message: Option<String> },
    /// The code is no local voucher and no RADIUS server answered: new logins wait for one.
    #[error(
        "no RADIUS server answered, so the code cannot be checked; try again when one does: {0}"
    )]
    ServerAway(String),
}

impl RedeemError {
    /// The API's error code (docs/api.md).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownCode => "unknown_code",
            Self::Revoked => "voucher_revoked",
            Self::Expired => "voucher_expired",
            Self::UsedUp => "voucher_used_up",
            Self::OwnSession => "has_session",
            Self::Throttled { .. } => "too_many_attempts",
            Self::Failed(_) => "session_failed",
            Self::Rejected { .. } => "code_rejected",
            Self::ServerAway(_) => "radius_unreachable",
        }
    }
}

/// Wrong codes one device may enter in [`GUESS_WINDOW`] before it is refused.
pub const WRONG_CODES_PER_DEVICE: usize = 5;
/// Wrong codes all devices together may enter in [`GUESS_WINDOW`]: a guesser that changes its
/// MAC for every try is held to this. At 100 a minute, finding one of 10,000 unused codes of
/// the default length (49.5 bits) takes on average 2^49.5 / 10,000 / 100 minutes: 1.5 million
/// years.
pub const WRONG_CODES_IN_ALL: usize = 100;
/// The window both limits count in; a refused device may try again when the oldest wrong
/// code in it is this old.
pub const GUESS_WINDOW: std::time::Duration = std::time::Duration::from_mins(1);

/// The wrong codes of the last [`GUESS_WINDOW`], per device and in all: what throttles
/// guessing. In memory only: a restart forgets them, which a guesser cannot cause.
#[derive(Debug, Default)]
pub struct Guesses {
    by_mac: std::collections::HashMap<MacAddr, std::collections::VecDeque<std::time::Instant>>,
    all: std::collections::VecDeque<std::time::Instant>,
}

/// Whose limit refused a code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Throttle {
    Device { retry_secs: u64 },
    Everyone { retry_secs: u64 },
}

impl Throttle {
    #[must_use]
    pub fn retry_secs(self) -> u64 {
        match self {
            Self::Device { retry_secs } | Self::Everyone { retry_secs } => retry_secs,
        }
    }
}

impl Guesses {
    /// Whether `mac` may try a code at `now`; if not, whose limit and for how long.
    pub fn check(&mut self, mac: MacAddr, now: std::time::Instant) -> Result<(), Throttle> {
        self.forget_before(now);
        let retry = |oldest: Option<&std::time::Instant>| {
            oldest.map_or(1, |oldest| {
                (*oldest + GUESS_WINDOW)
                    .saturating_duration_since(now)
                    .as_secs()
                    .max(1)
            })
        };
        if let Some(wrong) = self.by_mac.get(&mac)
            && wrong.len() >= WRONG_CODES_PER_DEVICE
        {
            return Err(Throttle::Device {
                retry_secs: retry(wrong.front()),
            });
        }
        if self.all.len() >= WRONG_CODES_IN_ALL {
            return Err(Throttle::Everyone {
                retry_secs: retry(self.all.front()),
            });
        }
        Ok(())
    }

    /// Counts a wrong code from `mac` at `now`.
    pub fn wrong(&mut self, mac: MacAddr, now: std::time::Instant) {
        self.by_mac.entry(mac).or_default().push_back(now);
        self.all.push_back(now);
    }

    /// Drops what is older than the window; at most [`WRONG_CODES_IN_ALL`] devices are held.
    fn forget_before(&mut self, now: std::time::Instant) {
        let fresh = |at: &std::time::Instant| now.saturating_duration_since(*at) < GUESS_WINDOW;
        while self.all.front().is_some_and(|at| !fresh(at)) {
            self.all.pop_front();
        }
        self.by_mac.retain(|_, wrong| {
            while wrong.front().is_some_and(|at| !fresh(at)) {
                wrong.pop_front();
            }
            !wrong.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::data::SessionType;

    fn voucher(stage: Stage, valid_until: Option<DateTime<Utc>>) -> Voucher {
        let now = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).expect("valid");
        Voucher {
            session_end: None,
            price: None,
            id: 1,
            code_hash: [0; 32],
            plan: SessionData {
                provider: "voucher".to_owned(),
                kind: SessionType::Time,
                time_secs: 60,
                data_mb: 0.0,
                time_cons: 0,
                data_cons: 0.0,
                started_at: None,
                exp_days: None,
                down_mbits: 1,
                up_mbits: 1,
                use_global_speed: false,
                created_at: now,
            },
            max_devices: 1,
            devices: Vec::new(),
            valid_until,
            stage,
            mac: None,
            session_id: None,
            created_at: now,
            redeemed_at: None,
        }
    }

    #[test]
    fn codes_use_the_alphabet_at_the_length_asked() -> std::io::Result<()> {
        for &c in b"0O1IL" {
            assert!(!ALPHABET.contains(&c), "{} is a look-alike", char::from(c));
        }
        for length in [MIN_CODE_LENGTH, 10, MAX_CODE_LENGTH] {
            let code = new_code(length)?;
            assert_eq!(code.len(), length);
            assert!(code.bytes().all(|c| ALPHABET.contains(&c)), "{code}");
        }
        assert!(entropy_bits(MIN_CODE_LENGTH) >= 40.0);
        assert!(entropy_bits(MIN_CODE_LENGTH - 1) < 40.0);
        assert!(entropy_bits(DEFAULT_CODE_LENGTH) > 49.0);
        Ok(())
    }

    #[test]
    fn every_character_is_drawn_about_as_often() -> std::io::Result<()> {
        let mut counts = [0_u32; 31];
        let draws = 62_000;
        for c in new_code(draws)?.bytes() {
            counts[ALPHABET
                .iter()
                .position(|&a| a == c)
                .expect("in the alphabet")] += 1;
        }
        // Expected 2,000 each; a standard deviation is about 44.
        for (i, count) in counts.iter().enumerate() {
            assert!(
                (1_700..2_300).contains(count),
                "{} drawn {count} times",
                char::from(ALPHABET[i])
            );
        }
        // 10,000 codes of the default length never repeat.
        let codes: std::collections::HashSet<_> = (0..10_000)
            .map(|_| new_code(DEFAULT_CODE_LENGTH))
            .collect::<Result<_, _>>()?;
        assert_eq!(codes.len(), 10_000);
        Ok(())
    }

    #[test]
    fn typed_codes_are_normalised() {
        assert_eq!(normalise(" abcd-efgh 23 ").as_deref(), Some("ABCDEFGH23"));
        assert_eq!(normalise("ABCD EFGH").as_deref(), Some("ABCDEFGH"));
        assert_eq!(normalise("ABC0"), None, "0 is never in a code");
        assert_eq!(normalise("abc!"), None);
        assert_eq!(normalise(" - "), None);
        assert_eq!(normalise(&"A".repeat(33)), None);
    }

    #[test]
    fn a_code_hashes_to_the_same_under_its_key_only() -> std::io::Result<()> {
        let key = VoucherKey::random()?;
        assert_eq!(key.hash("ABCDEFGH2"), key.hash("ABCDEFGH2"));
        assert_ne!(key.hash("ABCDEFGH2"), key.hash("ABCDEFGH3"));
        assert_ne!(
            key.hash("ABCDEFGH2"),
            VoucherKey::random()?.hash("ABCDEFGH2")
        );
        Ok(())
    }

    #[test]
    fn the_key_is_kept_in_its_own_private_file() -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir()?;
        let path = VoucherKey::path_for(&dir.path().join("sessions.db"));
        assert!(path.ends_with("sessions.db.voucher-key"));
        let (key, created) = VoucherKey::load_or_create(&path)?;
        assert!(created);
        assert_eq!(
            std::fs::metadata(&path)?.permissions().mode() & 0o777,
            0o600
        );
        let (again, created) = VoucherKey::load_or_create(&path)?;
        assert!(!created);
        assert_eq!(key.hash("ABC"), again.hash("ABC"));
        std::fs::write(&path, b"short")?;
        assert!(matches!(
            VoucherKey::load_or_create(&path),
            Err(KeyError::Length { len: 5, .. })
        ));
        Ok(())
    }

    #[test]
    fn wrong_codes_are_throttled_per_device_and_in_all() {
        let start = std::time::Instant::now();
        let device = |n: u8| MacAddr([2, 0, 0, 0, 0, n]);
        let mut guesses = Guesses::default();
        for _ in 0..WRONG_CODES_PER_DEVICE {
            assert_eq!(guesses.check(device(1), start), Ok(()));
            guesses.wrong(device(1), start);
        }
        assert_eq!(
            guesses.check(device(1), start + std::time::Duration::from_secs(20)),
            Err(Throttle::Device { retry_secs: 40 })
        );
        // Another device is not held back by this one.
        assert_eq!(guesses.check(device(2), start), Ok(()));
        // Once the window has passed, the device may try again.
        assert_eq!(guesses.check(device(1), start + GUESS_WINDOW), Ok(()));

        // A guesser changing its MAC for every try meets the limit of all devices.
        let mut guesses = Guesses::default();
        for n in 0..WRONG_CODES_IN_ALL {
            let mac = MacAddr([2, 0, 0, 0, 1, u8::try_from(n % 256).unwrap_or(0)]);
            assert_eq!(guesses.check(mac, start), Ok(()), "try {n}");
            guesses.wrong(mac, start);
        }
        assert_eq!(
            guesses.check(device(9), start),
            Err(Throttle::Everyone { retry_secs: 60 })
        );
        assert_eq!(guesses.check(device(9), start + GUESS_WINDOW), Ok(()));
        assert!(guesses.by_mac.is_empty(), "forgotten");
    }

    #[test]
    fn the_state_follows_the_stage_the_session_and_the_date() {
        let now = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).expect("valid");
        let past = now - chrono::Duration::days(1);
        let future = now + chrono::Duration::days(1);
        let state = |stage, until, session| voucher(stage, until).state(session, now);
        assert_eq!(state(Stage::Unused, None, None), VoucherState::Unused);
        assert_eq!(
            state(Stage::Unused, Some(future), None),
            VoucherState::Unused
        );
        assert_eq!(
            state(Stage::Unused, Some(past), None),
            VoucherState::Expired
        );
        for running in [
            SessionState::Available,
            SessionState::Running,
            SessionState::Paused,
        ] {
            // Redeemed before its date: the date no longer matters.
            assert_eq!(
                state(Stage::InUse, Some(past), Some(running)),
                VoucherState::InUse
            );
        }
        assert_eq!(
            state(Stage::InUse, None, Some(SessionState::Consumed)),
            VoucherState::UsedUp
        );
        assert_eq!(state(Stage::InUse, None, None), VoucherState::UsedUp);
        assert_eq!(
            state(Stage::InUse, None, Some(SessionState::Expired)),
            VoucherState::Expired
        );
        assert_eq!(
            state(Stage::Revoked, Some(past), Some(SessionState::Running)),
            VoucherState::Revoked
        );
        assert_eq!(Stage::from_name("in_use"), Some(Stage::InUse));
        assert_eq!(Stage::from_name("used_up"), None);
    }

    #[test]
    fn a_voucher_whose_session_ended_and_left_memory_says_how_it_ended() {
        let now = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).expect("valid");
        for (end, shown) in [
            (SessionEnd::Expired, VoucherState::Expired),
            (SessionEnd::Consumed, VoucherState::UsedUp),
        ] {
            let voucher = Voucher {
                session_end: Some(end),
                session_id: Some(7),
                ..voucher(Stage::InUse, None)
            };
            assert_eq!(voucher.state(None, now), shown, "{end:?}");
        }
    }
}
