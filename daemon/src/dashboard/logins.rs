//! The dashboard's logins: a browser that presented the API token gets a random login id in
//! an `HttpOnly`, `SameSite=Strict` cookie, good for [`LOGIN_LIFETIME`] or until it logs out or
//! the daemon restarts. Its CSRF token is an HMAC of the login id under a per-daemon key: a
//! page of that login carries it, another site's page cannot know it. Side effects: reads
//! /dev/urandom.

use std::{
    collections::HashMap,
    io::Read as _,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

/// The cookie's name.
pub const COOKIE: &str = "hotspotd_dashboard";
/// How long a login lasts: a working day.
pub const LOGIN_LIFETIME: Duration = Duration::from_hours(12);
/// Logins kept at once; a new one beyond it ends the oldest. An operator has a browser or two.
const MAX_LOGINS: usize = 32;

/// The open logins and the key of their CSRF tokens.
pub struct Logins {
    key: [u8; 32],
    open: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for Logins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Logins(..)")
    }
}

fn random_bytes() -> std::io::Result<[u8; 32]> {
    let mut bytes = [0; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

impl Logins {
    /// No logins yet, and a new random CSRF key.
    pub fn random() -> std::io::Result<Self> {
        Ok(Self {
            key: random_bytes()?,
            open: Mutex::default(),
        })
    }

    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        // Only ids and times: one left half-updated by a panic is still usable.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens a login at `now` and returns its id, for the cookie.
    pub fn log_in(&self, now: Instant) -> std::io::Result<String> {
        let id = hex(&random_bytes()?);
        let mut open = self.open();
        open.retain(|_, since| now.saturating_duration_since(*since) < LOGIN_LIFETIME);
        while open.len() >= MAX_LOGINS {
            let oldest = open
                .iter()
                .min_by_key(|(_, since)| **since)
                .map(|(id, _)| id.clone());
            match oldest {
                Some(oldest) => open.remove(&oldest),
                None => break,
            };
        }
        open.insert(id.clone(), now);
        Ok(id)
    }

    /// Whether `id` is an open login at `now`. Ids are compared as map keys: they are 256
    /// random bits, so how long a lookup takes tells a guesser nothing useful.
    pub fn is_open(&self, id: &str, now: Instant) -> bool {
        self.open()
            .get(id)
            .is_some_and(|since| now.saturating_duration_since(*since) < LOGIN_LIFETIME)
    }

    pub fn log_out(&self, id: &str) {
        self.open().remove(id);
    }

    /// The CSRF token of login `id`, as hex.
    #[must_use]
    pub fn csrf(&self, id: &str) -> String {
        // HMAC takes a key of any length: `new_from_slice` cannot fail.
        let Ok(mut hmac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return String::new();
        };
        hmac.update(b"hotspotd dashboard csrf ");
        hmac.update(id.as_bytes());
        hex(&hmac.finalize().into_bytes())
    }

    /// Whether `presented` is login `id`'s CSRF token, compared in constant time.
    #[must_use]
    pub fn csrf_accepts(&self, id: &str, presented: &str) -> bool {
        self.csrf(id).as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

/// The login id in a request's `Cookie` headers, if any.
#[must_use]
pub fn cookie(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then_some(value)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_lasts_its_lifetime_and_its_csrf_token_is_its_own() -> std::io::Result<()> {
        let logins = Logins::random()?;
        let start = Instant::now();
        let id = logins.log_in(start)?;
        let other = logins.log_in(start)?;
        assert_eq!(id.len(), 64);
        assert!(logins.is_open(
            &id,
            start + LOGIN_LIFETIME.saturating_sub(Duration::from_secs(1))
        ));
        assert!(!logins.is_open(&id, start + LOGIN_LIFETIME));
        assert!(!logins.is_open("not-a-login", start));
        let token = logins.csrf(&id);
        assert!(logins.csrf_accepts(&id, &token));
        assert!(!logins.csrf_accepts(&other, &token));
        assert!(!logins.csrf_accepts(&id, ""));
        assert!(!Logins::random()?.csrf_accepts(&id, &token));
        logins.log_out(&id);
        assert!(!logins.is_open(&id, start));
        assert!(logins.is_open(&other, start));
        Ok(())
    }

    #[test]
    fn too_many_logins_end_the_oldest() -> std::io::Result<()> {
        let logins = Logins::random()?;
        let start = Instant::now();
        let first = logins.log_in(start)?;
        for n in 1..=MAX_LOGINS {
            logins.log_in(start + Duration::from_secs(u64::try_from(n).unwrap_or(0)))?;
        }
        assert!(!logins.is_open(&first, start + Duration::from_secs(100)));
        Ok(())
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            axum::http::HeaderValue::from_static("a=1; hotspotd_dashboard=abc; b=2"),
        );
        assert_eq!(cookie(&headers), Some("abc"));
        assert_eq!(cookie(&axum::http::HeaderMap::new()), None);
    }
}
