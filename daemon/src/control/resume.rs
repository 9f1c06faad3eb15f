//! The built-in portal's resume cookie (docs/vouchers.md, "A returning device"): after a code
//! is redeemed on the portal, the browser keeps `<voucher id>.<tag>`, the tag an HMAC of the id
//! under the voucher key (`VoucherKey::resume_tag`), so the device, back with another MAC, can
//! redeem the same voucher in one tap without the code. A cookie names one voucher and cannot
//! be made without the key; it redeems through the same path as a typed code, throttled the
//! same way. Side effects: those of redeeming.

use subtle::ConstantTimeEq as _;

use super::{Control, RedeemError, vouchers::VoucherBook};
use crate::{
    mac::MacAddr,
    sessions::engine::Now,
    views::{ClientView, Remaining},
    vouchers::{VoucherId, VoucherState},
};

/// How long a browser keeps the cookie at most; less when the voucher's session expires
/// sooner.
pub const RESUME_COOKIE_MAX_SECS: u64 = 30 * 86_400;

/// How the portal redeems: a typed code, or the browser's resume cookie.
#[derive(Clone, Debug)]
pub enum RedeemBy {
    Code(String),
    Cookie(String),
}

/// A redemption on the portal: the client, and the cookie that remembers its voucher.
#[derive(Clone, Debug)]
pub struct Redeemed {
    pub client: ClientView,
    /// `None` for a RADIUS login: no voucher of this box to remember.
    pub cookie: Option<ResumeCookie>,
}

/// The resume cookie's value and how long the browser should keep it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumeCookie {
    pub value: String,
    pub max_age_secs: u64,
}

/// What the landing page offers a device whose browser holds a valid resume cookie: what is
/// left of its voucher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResumeOffer {
    pub remaining: Remaining,
}

/// The voucher a cookie value names, if its tag is the key's for that id.
fn voucher_of(book: &VoucherBook, value: &str) -> Option<VoucherId> {
    let (id, tag) = value.split_once('.')?;
    let id: VoucherId = id.parse().ok()?;
    let tag = hex_decode(tag)?;
    let good: bool = book.key().resume_tag(id).ct_eq(&tag).into();
    (good && book.get(id).is_some()).then_some(id)
}

fn hex_decode(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut bytes = [0_u8; 32];
    for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(bytes)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(64), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

impl Control {
    /// Redeems on the portal, by code or by cookie (both through `redeem_voucher`), and hands
    /// back the cookie that remembers the voucher. A cookie that names no voucher counts as a
    /// wrong code.
    pub(super) async fn portal_redeem(
        &mut self,
        mac: MacAddr,
        by: RedeemBy,
    ) -> Result<Redeemed, RedeemError> {
        let id = match &by {
            RedeemBy::Code(code) => self.find_voucher(mac, |book| book.find_code(code))?,
            RedeemBy::Cookie(value) => self.find_voucher(mac, |book| voucher_of(book, value))?,
        };
        let client = self.redeem_voucher(mac, id).await?;
        let now = self.now();
        Ok(Redeemed {
            client,
            cookie: Some(self.resume_cookie(id, now)),
        })
    }

    /// What the landing page offers for a cookie: `None` unless it names a voucher that can
    /// still be used (unused, or in use with time or data left).
    pub(super) fn resume_offer(&mut self, value: &str) -> Option<ResumeOffer> {
        let id = voucher_of(&self.vouchers, value)?;
        let voucher = self.vouchers.get(id)?.clone();
        let now = self.now();
        match self.voucher_state(&voucher, now) {
            VoucherState::Unused => Some(ResumeOffer {
                remaining: left_of(&voucher.plan, self.config.accounting.bytes_per_mb),
            }),
            VoucherState::InUse => {
                let session = self.engine.session(voucher.session_id?)?;
                Some(ResumeOffer {
                    remaining: left_of(&session.data, self.config.accounting.bytes_per_mb),
                })
            }
            VoucherState::UsedUp | VoucherState::Expired | VoucherState::Revoked => None,
        }
    }

    /// The cookie of voucher `id`: kept until its session expires, at most
    /// [`RESUME_COOKIE_MAX_SECS`].
    fn resume_cookie(&self, id: VoucherId, now: Now) -> ResumeCookie {
        let expires = self
            .vouchers
            .get(id)
            .and_then(|voucher| voucher.session_id)
            .and_then(|session| self.engine.session(session))
            .and_then(|session| session.data.expires_at());
        let max_age_secs = expires.map_or(RESUME_COOKIE_MAX_SECS, |at| {
            u64::try_from((at - now.wall).num_seconds())
                .unwrap_or(0)
                .min(RESUME_COOKIE_MAX_SECS)
        });
        ResumeCookie {
            value: format!("{id}.{}", hex(&self.vouchers.key().resume_tag(id))),
            max_age_secs,
        }
    }
}

/// A session's time and data left, as its record says.
fn left_of(data: &crate::sessions::SessionData, bytes_per_mb: u64) -> Remaining {
    Remaining {
        seconds: data.time_left_secs(),
        bytes: data.bytes_left(data.data_cons_bytes(bytes_per_mb), bytes_per_mb),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vouchers::VoucherKey;

    #[test]
    fn a_cookie_names_its_voucher_under_its_key_only() -> std::io::Result<()> {
        let key = VoucherKey::random()?;
        let tag = key.resume_tag(17);
        assert_eq!(hex_decode(&hex(&tag)), Some(tag));
        assert_ne!(tag, key.resume_tag(18), "another voucher, another tag");
        assert_ne!(tag, VoucherKey::random()?.resume_tag(17), "another key");
        assert_ne!(tag, key.hash("17"), "not a code's hash");
        assert_eq!(hex_decode("zz"), None);
        assert_eq!(hex_decode(&"g".repeat(64)), None);
        Ok(())
    }
}
