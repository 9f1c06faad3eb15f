//! What an Access-Accept (or a CoA-Request) grants, read from its attributes (docs/radius.md
//! lists them): time from Session-Timeout, data from ChilliSpot/CoovaChilli-Max-Total-Octets
//! (+ Gigawords) or Mikrotik-Total-Limit (+ Gigawords), speed from WISPr-Bandwidth-Max-Down/Up,
//! and Acct-Interim-Interval and Idle-Timeout. Pure.

use chrono::{DateTime, Utc};

use super::{codec::Packet, dict};
use crate::sessions::{SessionData, SessionType};

/// What a server granted. `None`: the packet did not say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grant {
    pub time_secs: Option<u64>,
    pub data_bytes: Option<u64>,
    /// bit/s, as `WISPr` says them.
    pub down_bps: Option<u64>,
    pub up_bps: Option<u64>,
    pub interim_secs: Option<u32>,
    pub idle_secs: Option<u32>,
    /// Reply-Message, shown to the customer on a reject.
    pub message: Option<String>,
}

impl Grant {
    /// Reads the attributes of `packet`. Where two vendors' data limits are both given, the
    /// smaller holds.
    #[must_use]
    pub fn of(packet: &Packet) -> Self {
        let chilli = packet
            .vendor_integer(dict::VENDOR_CHILLISPOT, dict::CHILLISPOT_MAX_TOTAL_OCTETS)
            .map(|low| {
                let high = packet
                    .vendor_integer(
                        dict::VENDOR_CHILLISPOT,
                        dict::CHILLISPOT_MAX_TOTAL_GIGAWORDS,
                    )
                    .unwrap_or(0);
                (u64::from(high) << 32) | u64::from(low)
            });
        let mikrotik = packet
            .vendor_integer(dict::VENDOR_MIKROTIK, dict::MIKROTIK_TOTAL_LIMIT)
            .map(|low| {
                let high = packet
                    .vendor_integer(dict::VENDOR_MIKROTIK, dict::MIKROTIK_TOTAL_LIMIT_GIGAWORDS)
                    .unwrap_or(0);
                (u64::from(high) << 32) | u64::from(low)
            });
        let data_bytes = match (chilli, mikrotik) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Self {
            time_secs: packet.integer(dict::SESSION_TIMEOUT).map(u64::from),
            data_bytes,
            down_bps: packet
                .vendor_integer(dict::VENDOR_WISPR, dict::WISPR_BANDWIDTH_MAX_DOWN)
                .map(u64::from),
            up_bps: packet
                .vendor_integer(dict::VENDOR_WISPR, dict::WISPR_BANDWIDTH_MAX_UP)
                .map(u64::from),
            interim_secs: packet
                .integer(dict::ACCT_INTERIM_INTERVAL)
                .filter(|secs| *secs > 0),
            idle_secs: packet.integer(dict::IDLE_TIMEOUT).filter(|secs| *secs > 0),
            message: packet
                .get(dict::REPLY_MESSAGE)
                .map(|text| crate::text::tidy(&String::from_utf8_lossy(text))),
        }
    }

    /// The session this grant sells: time, data, or whichever runs out first; with neither,
    /// `default_time_secs` of time. Speeds in whole Mbit/s, rounded up (a server's 512 kbit/s
    /// is 1 Mbit/s: the kernel's classes are set in Mbit/s); without them, the global speed.
    #[must_use]
    pub fn plan(
        &self,
        default_time_secs: u64,
        bytes_per_mb: u64,
        now: DateTime<Utc>,
    ) -> SessionData {
        let time_secs = self.time_secs.filter(|secs| *secs > 0);
        let data_bytes = self.data_bytes.filter(|bytes| *bytes > 0);
        let (kind, time_secs) = match (time_secs, data_bytes) {
            (Some(secs), Some(_)) => (SessionType::TimeOrData, secs),
            (None, Some(_)) => (SessionType::Data, 0),
            (Some(secs), None) => (SessionType::Time, secs),
            (None, None) => (SessionType::Time, default_time_secs),
        };
        #[expect(
            clippy::cast_precision_loss,
            reason = "MB as the session record keeps them; bytes_left() turns them back exactly below 2^53"
        )]
        let data_mb = data_bytes.map_or(0.0, |bytes| bytes as f64 / bytes_per_mb as f64);
        let mbits = |bps: Option<u64>| {
            bps.filter(|bps| *bps > 0)
                .map(|bps| i32::try_from(bps.div_ceil(1_000_000)).unwrap_or(i32::MAX))
        };
        let (down, up) = (mbits(self.down_bps), mbits(self.up_bps));
        SessionData {
            provider: "radius".to_owned(),
            kind,
            time_secs,
            data_mb,
            time_cons: 0,
            data_cons: 0.0,
            started_at: None,
            exp_days: None,
            down_mbits: down.unwrap_or(0),
            up_mbits: up.unwrap_or(0),
            use_global_speed: down.is_none() || up.is_none(),
            created_at: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radius::codec::Attribute;

    fn accept(attributes: Vec<Attribute>) -> Packet {
        Packet {
            code: dict::ACCESS_ACCEPT,
            identifier: 0,
            authenticator: [0; 16],
            attributes,
        }
    }

    #[test]
    fn an_accept_becomes_a_plan() {
        let now = Utc::now();
        let packet = accept(vec![
            Attribute::integer(dict::SESSION_TIMEOUT, 3600),
            Attribute::vendor(
                dict::VENDOR_CHILLISPOT,
                dict::CHILLISPOT_MAX_TOTAL_OCTETS,
                &705_032_704_u32.to_be_bytes(),
            ),
            Attribute::vendor(
                dict::VENDOR_CHILLISPOT,
                dict::CHILLISPOT_MAX_TOTAL_GIGAWORDS,
                &1_u32.to_be_bytes(),
            ),
            Attribute::vendor(
                dict::VENDOR_WISPR,
                dict::WISPR_BANDWIDTH_MAX_DOWN,
                &10_000_000_u32.to_be_bytes(),
            ),
            Attribute::vendor(
                dict::VENDOR_WISPR,
                dict::WISPR_BANDWIDTH_MAX_UP,
                &512_000_u32.to_be_bytes(),
            ),
            Attribute::integer(dict::ACCT_INTERIM_INTERVAL, 60),
            Attribute::integer(dict::IDLE_TIMEOUT, 300),
        ]);
        let grant = Grant::of(&packet);
        assert_eq!(
            grant.data_bytes,
            Some(5_000_000_000),
            "gigawords are the high 32 bits"
        );
        assert_eq!(grant.interim_secs, Some(60));
        assert_eq!(grant.idle_secs, Some(300));
        let plan = grant.plan(3600, 1_000_000, now);
        assert_eq!(plan.kind, SessionType::TimeOrData);
        assert_eq!(plan.time_secs, 3600);
        assert!((plan.data_mb - 5_000.0).abs() < f64::EPSILON);
        assert_eq!((plan.down_mbits, plan.up_mbits), (10, 1));
        assert!(!plan.use_global_speed);
        assert_eq!(plan.provider, "radius");
        plan.validate().expect("a valid session");
    }

    #[test]
    fn mikrotik_limits_data_and_the_smaller_limit_holds() {
        let now = Utc::now();
        let mikrotik = Attribute::vendor(
            dict::VENDOR_MIKROTIK,
            dict::MIKROTIK_TOTAL_LIMIT,
            &5_000_000_u32.to_be_bytes(),
        );
        let plan = Grant::of(&accept(vec![mikrotik.clone()])).plan(3600, 1_000_000, now);
        assert_eq!(plan.kind, SessionType::Data);
        assert_eq!(plan.time_secs, 0);
        assert!((plan.data_mb - 5.0).abs() < f64::EPSILON);
        assert!(plan.use_global_speed);
        plan.validate().expect("a valid session");
        let both = Grant::of(&accept(vec![
            mikrotik,
            Attribute::vendor(
                dict::VENDOR_CHILLISPOT,
                dict::CHILLISPOT_MAX_TOTAL_OCTETS,
                &2_000_000_u32.to_be_bytes(),
            ),
        ]));
        assert_eq!(both.data_bytes, Some(2_000_000));
    }

    #[test]
    fn an_accept_without_limits_sells_the_default_time() {
        let plan = Grant::of(&accept(vec![])).plan(900, 1_000_000, Utc::now());
        assert_eq!((plan.kind, plan.time_secs), (SessionType::Time, 900));
        plan.validate().expect("a valid session");
    }
}
