//! Who sends from each address: the clients' addresses as the kernel saw them in what each
//! client sent (`ADDRESSES`), not as the neighbour table says (which any client can write with
//! one ARP packet). An address that moved from one MAC to another recently is a conflict: the
//! API names no owner for it, so a portal cannot sell one client's payment to another that
//! claims its address. Pure: the caller reads the map and the clock.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::Duration,
};

use chrono::TimeDelta;
use hotspotd_common::{AddressOwner, IpKey};

use crate::{accounting::Clocks, mac::MacAddr, net::ip_of_key};

/// How long an address that moved between MACs stays in conflict: the API names no owner for
/// it, and both clients show it. Long enough that a spoofer who sends once cannot time a
/// portal's lookup between two of its packets; short enough that an address reused by DHCP
/// for another device after its lease is served again within minutes.
pub const CONFLICT_FOR: Duration = Duration::from_mins(1);
/// How long a move is shown among a client's conflicts.
pub const CONFLICT_SHOWN_FOR: Duration = Duration::from_mins(10);

/// An address that moved from one MAC to another (one of the API's documents).
pub use crate::views::AddressMove;

/// The owner of an address, as the API answers a portal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Nobody the kernel remembers has sent from it.
    Unknown,
    /// This MAC, and no other in the last [`CONFLICT_FOR`].
    Client(MacAddr),
    /// It moved between MACs moments ago: no answer can be trusted.
    Conflict(AddressMove),
}

/// The kernel's `ADDRESSES`, as of the last reading, and the moves seen.
#[derive(Debug, Default)]
pub struct AddressBook {
    /// The jiffies of each address's last move already reported, so each is reported once.
    reported: BTreeMap<IpKey, u64>,
    /// Moves within the last [`CONFLICT_SHOWN_FOR`], oldest first.
    moves: Vec<AddressMove>,
    /// Whether a reading was taken: moves found in the first are shown, not reported anew.
    read_once: bool,
}

impl AddressBook {
    /// Takes a reading of `ADDRESSES`: returns every (MAC, address) pair, in order, and the
    /// moves not reported before (none from the first reading, whose moves predate this
    /// run but are still shown).
    pub fn update(
        &mut self,
        readings: &[(IpKey, AddressOwner)],
        clock: Clocks,
    ) -> (Vec<(MacAddr, IpAddr)>, Vec<AddressMove>) {
        let mut pairs = Vec::with_capacity(readings.len());
        let mut fresh = Vec::new();
        let shown_since = clock.jiffies_ago(CONFLICT_SHOWN_FOR);
        for (key, owner) in readings {
            let ip = ip_of_key(*key);
            pairs.push((MacAddr::from(owner.mac), ip));
            let moved = owner.moved_jiffies;
            if moved == 0 || moved < shown_since {
                continue;
            }
            if self.reported.get(key) == Some(&moved) {
                continue;
            }
            self.reported.insert(*key, moved);
            let change = AddressMove {
                ip,
                from: MacAddr::from(owner.previous),
                to: MacAddr::from(owner.mac),
                at: clock.wall_time_of(moved),
            };
            self.moves.push(change.clone());
            if self.read_once {
                fresh.push(change);
            }
        }
        self.read_once = true;
        let horizon = clock.wall - TimeDelta::from_std(CONFLICT_SHOWN_FOR).unwrap_or_default();
        self.moves.retain(|change| change.at >= horizon);
        self.moves.sort_by_key(|change| change.at);
        // Moves are rare: most readings have none to forget.
        if !self.reported.is_empty() {
            let remembered: BTreeSet<IpKey> = readings.iter().map(|(key, _)| *key).collect();
            self.reported.retain(|key, _| remembered.contains(key));
        }
        pairs.sort_unstable();
        (pairs, fresh)
    }

    /// Moves that involve `mac`, within the last [`CONFLICT_SHOWN_FOR`], oldest first.
    pub fn conflicts_of(&self, mac: MacAddr) -> impl Iterator<Item = &AddressMove> {
        self.moves
            .iter()
            .filter(move |change| change.from == mac || change.to == mac)
    }
}

/// Who owns `owner`'s address (`None`: the kernel remembers nobody) at `clock`.
#[must_use]
pub fn owner_of(ip: IpAddr, owner: Option<AddressOwner>, clock: Clocks) -> Owner {
    let Some(owner) = owner else {
        return Owner::Unknown;
    };
    let conflict_since = clock.jiffies_ago(CONFLICT_FOR);
    if owner.moved_jiffies != 0 && owner.moved_jiffies >= conflict_since {
        return Owner::Conflict(AddressMove {
            ip,
            from: MacAddr::from(owner.previous),
            to: MacAddr::from(owner.mac),
            at: clock.wall_time_of(owner.moved_jiffies),
        });
    }
    Owner::Client(MacAddr::from(owner.mac))
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use hotspotd_common::MacKey;

    use super::*;
    use crate::net::ip_key;

    const HZ: u32 = 250;
    const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

    /// The clocks at `jiffies`: wall time moves with them.
    fn clock(jiffies: u64) -> Clocks {
        let seconds = i64::try_from(jiffies / u64::from(HZ)).expect("small");
        Clocks {
            jiffies,
            hz: HZ,
            wall: DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("valid"),
            read_at: std::time::Instant::now(),
        }
    }

    fn owner(mac: [u8; 6], previous: [u8; 6], moved_jiffies: u64) -> AddressOwner {
        AddressOwner {
            mac: MacKey::new(mac),
            previous: MacKey::new(previous),
            seen_jiffies: moved_jiffies,
            moved_jiffies,
        }
    }

    fn key(ip: &str) -> IpKey {
        ip_key(ip.parse().expect("valid address"))
    }

    #[test]
    fn a_move_is_reported_once_and_shown_for_both_clients() {
        let mut book = AddressBook::default();
        let ip = key("192.0.2.10");
        let quiet = [(ip, owner(A, [0; 6], 0))];
        let (bound, first) = book.update(&quiet, clock(100_000));
        assert_eq!(bound.len(), 1);
        assert!(first.is_empty());

        let claimed = [(ip, owner(B, A, 100_100))];
        let (pairs, moves) = book.update(&claimed, clock(100_200));
        assert_eq!(pairs, vec![(MacAddr::from(MacKey::new(B)), ip_of_key(ip))]);
        assert_eq!(moves.len(), 1);
        assert_eq!(
            (moves[0].from, moves[0].to),
            (MacAddr::from(MacKey::new(A)), MacAddr::from(MacKey::new(B)))
        );
        let (_, again) = book.update(&claimed, clock(100_300));
        assert!(again.is_empty(), "reported once");
        assert_eq!(book.conflicts_of(MacAddr::from(MacKey::new(A))).count(), 1);
        assert_eq!(book.conflicts_of(MacAddr::from(MacKey::new(B))).count(), 1);

        let later = 100_100 + u64::from(HZ) * 601;
        book.update(&claimed, clock(later));
        assert_eq!(book.conflicts_of(MacAddr::from(MacKey::new(A))).count(), 0);
    }

    #[test]
    fn an_address_that_moved_moments_ago_has_no_owner() {
        let ip: IpAddr = "192.0.2.10".parse().expect("valid");
        let now = 1_000_000;
        assert_eq!(owner_of(ip, None, clock(now)), Owner::Unknown);
        assert_eq!(
            owner_of(ip, Some(owner(A, [0; 6], 0)), clock(now)),
            Owner::Client(MacAddr::from(MacKey::new(A)))
        );
        let just_moved = owner(B, A, now - u64::from(HZ) * 59);
        assert!(matches!(
            owner_of(ip, Some(just_moved), clock(now)),
            Owner::Conflict(_)
        ));
        let settled = owner(B, A, now - u64::from(HZ) * 61);
        assert_eq!(
            owner_of(ip, Some(settled), clock(now)),
            Owner::Client(MacAddr::from(MacKey::new(B)))
        );
    }
}
