//! CSRF tokens of the portal's forms: HMAC-SHA-256 of the client's MAC under a key drawn at
//! random when the daemon starts. A token is only good for the device it was made for, and
//! only until the daemon restarts (the page is then opened again). Side effects: reads 32
//! bytes of /dev/urandom once.

use std::io::Read as _;

use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use crate::mac::MacAddr;

/// What the tokens are made with; one per daemon.
#[derive(Clone)]
pub struct CsrfKey([u8; 32]);

impl std::fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfKey(..)")
    }
}

impl CsrfKey {
    /// A new random key.
    pub fn random() -> std::io::Result<Self> {
        let mut key = [0; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
        Ok(Self(key))
    }

    /// The token of `mac`'s forms, as hex.
    #[must_use]
    pub fn token(&self, mac: MacAddr) -> String {
        use std::fmt::Write as _;
        // HMAC takes a key of any length: `new_from_slice` cannot fail.
        let Ok(mut hmac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return String::new();
        };
        hmac.update(b"hotspotd portal form ");
        hmac.update(&mac.0);
        hmac.finalize()
            .into_bytes()
            .iter()
            .fold(String::with_capacity(64), |mut hex, byte| {
                let _ = write!(hex, "{byte:02x}");
                hex
            })
    }

    /// Whether `presented` is `mac`'s token, compared in constant time.
    #[must_use]
    pub fn accepts(&self, mac: MacAddr, presented: &str) -> bool {
        self.token(mac)
            .as_bytes()
            .ct_eq(presented.as_bytes())
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_good_for_its_device_and_key_only() -> std::io::Result<()> {
        let key = CsrfKey::random()?;
        let a = MacAddr([2, 0, 0, 0, 0, 1]);
        let b = MacAddr([2, 0, 0, 0, 0, 2]);
        let token = key.token(a);
        assert_eq!(token.len(), 64);
        assert!(key.accepts(a, &token));
        assert!(!key.accepts(b, &token));
        assert!(!key.accepts(a, ""));
        assert!(!key.accepts(a, &token[..63]));
        assert!(!CsrfKey::random()?.accepts(a, &token));
        Ok(())
    }
}
