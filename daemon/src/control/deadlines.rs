//! When each running session with a deadline ends, by client, and which end comes first. The
//! control task asks for the first one every time it waits for work (a poll, a command), so
//! that answer comes from an ordered index instead of a scan of every client. Pure.

use std::collections::{BTreeMap, BTreeSet};

use tokio::time::Instant;

use crate::mac::MacAddr;

#[derive(Debug, Default)]
pub(super) struct Deadlines {
    by_client: BTreeMap<MacAddr, Instant>,
    /// The same deadlines in time order.
    by_time: BTreeSet<(Instant, MacAddr)>,
}

impl Deadlines {
    /// Sets (or moves) `mac`'s deadline to `at`.
    pub(super) fn set(&mut self, mac: MacAddr, at: Instant) {
        if let Some(old) = self.by_client.insert(mac, at) {
            self.by_time.remove(&(old, mac));
        }
        self.by_time.insert((at, mac));
    }

    pub(super) fn remove(&mut self, mac: MacAddr) {
        if let Some(old) = self.by_client.remove(&mac) {
            self.by_time.remove(&(old, mac));
        }
    }

    /// The first deadline, if any.
    pub(super) fn first(&self) -> Option<Instant> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// Forgets every deadline at or before `now`.
    pub(super) fn remove_passed(&mut self, now: Instant) {
        while let Some(&(at, mac)) = self.by_time.first()
            && at <= now
        {
            self.by_time.pop_first();
            self.by_client.remove(&mac);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    #[test]
    fn the_first_deadline_follows_sets_and_removals() {
        let now = Instant::now();
        let mut deadlines = Deadlines::default();
        assert_eq!(deadlines.first(), None);
        deadlines.set(A, now + Duration::from_secs(5));
        deadlines.set(B, now + Duration::from_secs(3));
        assert_eq!(deadlines.first(), Some(now + Duration::from_secs(3)));
        // Moving B's deadline later makes A's the first; its old one is gone.
        deadlines.set(B, now + Duration::from_secs(9));
        assert_eq!(deadlines.first(), Some(now + Duration::from_secs(5)));
        deadlines.remove(A);
        assert_eq!(deadlines.first(), Some(now + Duration::from_secs(9)));
        deadlines.remove(A);
        deadlines.remove(B);
        assert_eq!(deadlines.first(), None);
    }

    #[test]
    fn passed_deadlines_are_forgotten_and_later_ones_kept() {
        let now = Instant::now();
        let mut deadlines = Deadlines::default();
        deadlines.set(A, now);
        deadlines.set(B, now + Duration::from_secs(1));
        deadlines.remove_passed(now);
        assert_eq!(deadlines.first(), Some(now + Duration::from_secs(1)));
        // A's entry is gone from both indexes: setting it again is a fresh deadline.
        deadlines.set(A, now + Duration::from_secs(2));
        deadlines.remove(B);
        assert_eq!(deadlines.first(), Some(now + Duration::from_secs(2)));
    }
}
