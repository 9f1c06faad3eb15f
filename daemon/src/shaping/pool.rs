//! The pool of spare client classes, and applying a change class by class. Creating an HTB
//! class costs the kernel a walk over every class of its tree (`tc_bind_tclass` → `htb_walk`,
//! under the RTNL lock: ~1.7 ms per class at 10,000 classes on a 2-vCPU box), and deleting
//! one a walk of the global list of tc blocks; changing an existing class skips both. So a
//! class that a client no longer needs is not deleted but *parked* (changed to [`PARKED`])
//! and kept as a spare, and the next client given that minor (the allocator in
//! `control/speed/plan.rs` hands out the most recently freed minor first) gets it by a
//! change. Pure: this module says what to send for a set of minors and what the shaper then
//! knows; the shaper sends it.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    htb::MIN_RATE_KBIT,
    tree::{Desired, DesiredError},
};
use crate::shaping::Rates;

/// The rates a spare class is parked at: the smallest HTB takes, 8 kbit/s each way (with the
/// 32-packet pfifo that goes with it). No client class has them (client limits are whole
/// Mbit/s), so `tc class show` tells spares apart (`ceil 8Kbit`), and a packet that reached
/// a spare by mistake would crawl rather than pass unshaped. A parked class's parameters do
/// not depend on the global rate, so a change of the global rate leaves spares alone.
pub const PARKED: Rates = Rates {
    down_kbit: MIN_RATE_KBIT,
    up_kbit: MIN_RATE_KBIT,
};

/// What the kernel holds and what it should hold for some minors only: the two states to
/// plan between, restricted to those minors.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Part {
    pub(crate) from: Desired,
    pub(crate) to: Desired,
}

/// The part of the trees `minors` covers. A minor the kernel holds (as a client's class or a
/// spare) that `desired` does not want goes to [`PARKED`] when `keep_spares`, else away.
/// Costs O(`minors` × log n).
pub(crate) fn part(
    current: &Desired,
    spare: &BTreeMap<u16, Rates>,
    desired: &Desired,
    minors: &BTreeSet<u16>,
    keep_spares: bool,
) -> Result<Part, DesiredError> {
    let mut from = Desired {
        global: current.global,
        clients: BTreeMap::new(),
    };
    let mut to = Desired {
        global: desired.global,
        clients: BTreeMap::new(),
    };
    for &minor in minors {
        let installed = current
            .clients
            .get(&minor)
            .or_else(|| spare.get(&minor))
            .copied();
        if let Some(rates) = installed {
            from.clients.insert(minor, rates);
        }
        if let Some(rates) = desired.clients.get(&minor) {
            to.clients.insert(minor, *rates);
        } else if installed.is_some() && keep_spares {
            to.clients.insert(minor, PARKED);
        }
    }
    to.validate()?;
    Ok(Part { from, to })
}

/// Puts what the kernel holds for `minors` after a part was applied (`settled`, from
/// `plan::settle`) back into the shaper's two books: the clients' classes (`current`, as
/// `desired` has them) and the spares.
pub(crate) fn split(
    settled: &Desired,
    desired: &Desired,
    minors: &BTreeSet<u16>,
    current: &mut Desired,
    spare: &mut BTreeMap<u16, Rates>,
) {
    current.global = settled.global;
    for &minor in minors {
        let state = settled.clients.get(&minor).copied();
        let (book, other) = if desired.clients.contains_key(&minor) {
            (&mut current.clients, &mut *spare)
        } else {
            (&mut *spare, &mut current.clients)
        };
        other.remove(&minor);
        match state {
            Some(rates) => book.insert(minor, rates),
            None => book.remove(&minor),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GLOBAL: Rates = Rates {
        down_kbit: 100_000,
        up_kbit: 20_000,
    };

    fn rates(down_kbit: u64, up_kbit: u64) -> Rates {
        Rates { down_kbit, up_kbit }
    }

    fn state(clients: &[(u16, Rates)]) -> Desired {
        Desired {
            global: GLOBAL,
            clients: clients.iter().copied().collect(),
        }
    }

    fn minors(list: &[u16]) -> BTreeSet<u16> {
        list.iter().copied().collect()
    }

    #[test]
    fn a_part_covers_only_its_minors_and_parks_what_is_no_longer_wanted() {
        let current = state(&[(2, rates(5000, 1000)), (3, rates(1000, 1000))]);
        let spare = BTreeMap::from([(4, PARKED)]);
        let desired = state(&[(3, rates(1000, 1000)), (4, rates(7000, 7000))]);
        let part = part(&current, &spare, &desired, &minors(&[2, 4, 9]), true).expect("valid");
        assert_eq!(
            part,
            Part {
                from: state(&[(2, rates(5000, 1000)), (4, PARKED)]),
                to: state(&[(2, PARKED), (4, rates(7000, 7000))]),
            },
            "3 is not in the part; 9 is nowhere"
        );
        let exact =
            super::part(&current, &spare, &desired, &minors(&[2, 4]), false).expect("valid");
        assert_eq!(exact.to, state(&[(4, rates(7000, 7000))]), "2 goes away");
    }

    #[test]
    fn a_part_refuses_what_the_kernel_would() {
        let desired = state(&[(2, rates(0, 1000))]);
        assert!(matches!(
            part(&state(&[]), &BTreeMap::new(), &desired, &minors(&[2]), true),
            Err(DesiredError::ZeroClientRate { minor: 2, .. })
        ));
    }

    #[test]
    fn split_sorts_classes_into_clients_and_spares() {
        let mut current = state(&[(2, rates(5000, 1000)), (3, rates(1000, 1000))]);
        let mut spare = BTreeMap::from([(4, PARKED)]);
        let desired = state(&[(3, rates(1000, 1000)), (4, rates(7000, 7000))]);
        // 2 was parked; 4's change failed (0: unknown) but it is the client's now.
        let settled = state(&[(2, PARKED), (4, rates(0, 7000))]);
        split(
            &settled,
            &desired,
            &minors(&[2, 4]),
            &mut current,
            &mut spare,
        );
        assert_eq!(
            current,
            state(&[(3, rates(1000, 1000)), (4, rates(0, 7000))])
        );
        assert_eq!(spare, BTreeMap::from([(2, PARKED)]));
        // Deleted (not kept): gone from both books.
        split(
            &state(&[]),
            &desired,
            &minors(&[2]),
            &mut current,
            &mut spare,
        );
        assert!(spare.is_empty());
    }
}
