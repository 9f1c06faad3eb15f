//! Wrong API tokens per source. After [`MAX_FAILURES`] refused tokens from one source within
//! [`WINDOW`], that source is refused for [`BLOCK`] without its token being looked at, so
//! guessing a 32-character token costs a minute per ten guesses, and the log and `/metrics` show
//! who tries. A source is an IPv4 address or an IPv6 /64, the block one host picks its
//! addresses from. Pure: the caller passes the time.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr},
    time::{Duration, Instant},
};

/// Refused tokens a source may send within [`WINDOW`]; the next request is refused unread.
pub const MAX_FAILURES: u32 = 10;
/// The span [`MAX_FAILURES`] are counted over, from a source's first refusal in it.
pub const WINDOW: Duration = Duration::from_mins(1);
/// How long a source that sent [`MAX_FAILURES`] is refused.
pub const BLOCK: Duration = Duration::from_mins(1);
/// Sources remembered at once. The listener is on loopback unless the operator allowed more,
/// so a handful is usual; the cap bounds the memory a spread of IPv6 /64s can take.
const MAX_SOURCES: usize = 4_096;

/// What one refused token means for its source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The source's first in this window: worth a line in the log.
    First,
    /// Counted, nothing to say yet.
    Again,
    /// The source has now sent `failures` within the window and is refused for [`BLOCK`].
    Blocked { failures: u32 },
}

/// The sources that sent wrong tokens lately.
#[derive(Debug, Default)]
pub struct Throttle {
    sources: HashMap<IpAddr, Record>,
}

#[derive(Clone, Copy, Debug)]
struct Record {
    window_start: Instant,
    failures: u32,
    blocked_until: Option<Instant>,
}

impl Throttle {
    /// How long `address` is still refused, if it is.
    pub fn blocked(&self, address: IpAddr, now: Instant) -> Option<Duration> {
        let until = self.sources.get(&source(address))?.blocked_until?;
        (now < until).then(|| until - now)
    }

    /// Counts a refused token from `address`.
    pub fn refused(&mut self, address: IpAddr, now: Instant) -> Refusal {
        let key = source(address);
        if !self.sources.contains_key(&key) && self.sources.len() >= MAX_SOURCES {
            self.forget_one(now);
        }
        let record = self.sources.entry(key).or_insert(Record {
            window_start: now,
            failures: 0,
            blocked_until: None,
        });
        if now.duration_since(record.window_start) >= WINDOW
            || record.blocked_until.is_some_and(|until| now >= until)
        {
            *record = Record {
                window_start: now,
                failures: 0,
                blocked_until: None,
            };
        }
        record.failures += 1;
        match record.failures {
            1 => Refusal::First,
            failures if failures >= MAX_FAILURES && record.blocked_until.is_none() => {
                record.blocked_until = Some(now + BLOCK);
                Refusal::Blocked { failures }
            }
            _ => Refusal::Again,
        }
    }

    /// Makes room: every source with nothing left to count, else the one counted longest
    /// ago that is not blocked (a block is what an attacker would like to see forgotten).
    fn forget_one(&mut self, now: Instant) {
        let blocked = |record: &Record| record.blocked_until.is_some_and(|until| now < until);
        self.sources.retain(|_, record| {
            now.duration_since(record.window_start) < WINDOW || blocked(record)
        });
        if self.sources.len() >= MAX_SOURCES
            && let Some(oldest) = self
                .sources
                .iter()
                .min_by_key(|(_, record)| (blocked(record), record.window_start))
                .map(|(key, _)| *key)
        {
            self.sources.remove(&oldest);
        }
    }
}

/// The source `address` counts under: itself for IPv4 (also when mapped into IPv6), its /64
/// for IPv6.
fn source(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !u128::from(u64::MAX);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 @ IpAddr::V4(_) => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn ten_refusals_in_a_window_block_the_source_for_a_while() {
        let mut throttle = Throttle::default();
        let start = Instant::now();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(throttle.refused(LOOPBACK, start), Refusal::First);
        for second in 1..MAX_FAILURES - 1 {
            let now = start + Duration::from_secs(u64::from(second));
            assert_eq!(throttle.refused(LOOPBACK, now), Refusal::Again);
            assert_eq!(throttle.blocked(LOOPBACK, now), None);
        }
        let tenth = start + Duration::from_secs(50);
        assert_eq!(
            throttle.refused(LOOPBACK, tenth),
            Refusal::Blocked { failures: 10 }
        );
        assert_eq!(throttle.blocked(LOOPBACK, tenth), Some(BLOCK));
        assert_eq!(
            throttle.blocked(LOOPBACK, tenth + Duration::from_secs(59)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(throttle.blocked(other, tenth), None, "others are not");
        assert_eq!(throttle.blocked(LOOPBACK, tenth + BLOCK), None);
        // After the block, counting starts again.
        assert_eq!(throttle.refused(LOOPBACK, tenth + BLOCK), Refusal::First);
    }

    #[test]
    fn refusals_spread_beyond_the_window_do_not_block() {
        let mut throttle = Throttle::default();
        let start = Instant::now();
        for minute in 0..30 {
            for second in 0..MAX_FAILURES - 1 {
                let now = start + WINDOW * minute + Duration::from_secs(u64::from(second));
                throttle.refused(LOOPBACK, now);
                assert_eq!(throttle.blocked(LOOPBACK, now), None);
            }
        }
    }

    #[test]
    fn an_ipv6_host_counts_as_its_64() {
        let mut throttle = Throttle::default();
        let now = Instant::now();
        for host in 0..MAX_FAILURES {
            let address: IpAddr = format!("2001:db8:1:2::{:x}", host + 1).parse().unwrap();
            throttle.refused(address, now);
        }
        let sibling: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        let stranger: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(throttle.blocked(sibling, now).is_some());
        assert!(throttle.blocked(stranger, now).is_none());
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        throttle.refused(mapped, now);
        assert_eq!(throttle.sources.get(&LOOPBACK).map(|r| r.failures), Some(1));
    }

    #[test]
    fn memory_stays_bounded_and_blocks_outlive_idle_sources() {
        let mut throttle = Throttle::default();
        let start = Instant::now();
        for _ in 0..MAX_FAILURES {
            throttle.refused(LOOPBACK, start);
        }
        let later = start + Duration::from_secs(30);
        for index in 0..u32::try_from(MAX_SOURCES).unwrap() * 2 {
            throttle.refused(IpAddr::V4(index.into()), later);
        }
        assert_eq!(throttle.sources.len(), MAX_SOURCES);
        assert!(throttle.blocked(LOOPBACK, later).is_some());
    }
}
