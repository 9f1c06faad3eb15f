//! The shaping model: what the two HTB trees should hold ([`Desired`]) and the pure diff
//! between two such states ([`diff`]). No side effects; `plan` turns a diff into kernel
//! requests.

use std::{cmp::Ordering, collections::BTreeMap};

/// The lowest class minor a client may get: 1 is the parent class (and 0 the qdisc itself).
pub const FIRST_CLIENT_MINOR: u16 = 2;
/// The highest class minor a client may get: 0xfffe is the default class, 0xffff is never a
/// class (ffff: is the ingress/clsact qdisc's major, and tc reserves the value).
pub const LAST_CLIENT_MINOR: u16 = 0xfffd;

/// A pair of speed limits in kbit/s (1 kbit = 1000 bit, as tc counts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Rates {
    /// Towards the client: shaped on the LAN interface's egress, tree `1:`.
    pub down_kbit: u64,
    /// From the client: shaped on the IFB device's egress, tree `2:`.
    pub up_kbit: u64,
}

impl Rates {
    #[must_use]
    pub fn get(self, direction: Direction) -> u64 {
        match direction {
            Direction::Down => self.down_kbit,
            Direction::Up => self.up_kbit,
        }
    }

    pub fn set(&mut self, direction: Direction, kbit: u64) {
        match direction {
            Direction::Down => self.down_kbit = kbit,
            Direction::Up => self.up_kbit = kbit,
        }
    }
}

/// Which way traffic flows, and so which tree shapes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Down,
    Up,
}

/// What the trees should be: global caps and one class per client, keyed by the class minor
/// (2..=0xfffd; the daemon allocates them and puts `(1 << 16 | minor)` / `(2 << 16 | minor)`
/// in the client's eBPF grant).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Desired {
    pub global: Rates,
    pub clients: BTreeMap<u16, Rates>,
}

/// One step from one desired state to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// New global caps: parent classes `1:1` and `2:1` (and the default classes under them).
    SetGlobal(Rates),
    AddClient(u16, Rates),
    ChangeClient(u16, Rates),
    RemoveClient(u16),
}

/// Why a desired state cannot be installed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DesiredError {
    #[error(
        "the global {direction} limit must be > 0 kbit/s (HTB cannot shape to zero; block \
         traffic in the gate instead)"
    )]
    ZeroGlobal { direction: &'static str },
    #[error(
        "client class {minor:#x} has a {direction} limit of 0 kbit/s; HTB cannot shape to \
         zero (block the client in the gate instead)"
    )]
    ZeroClientRate { minor: u16, direction: &'static str },
    #[error(
        "client class minor {minor:#x} is outside {FIRST_CLIENT_MINOR:#x}..={LAST_CLIENT_MINOR:#x} \
         (1 is the parent class, 0xfffe the default class)"
    )]
    MinorOutOfRange { minor: u16 },
}

fn direction_name(direction: Direction) -> &'static str {
    match direction {
        Direction::Down => "download",
        Direction::Up => "upload",
    }
}

impl Desired {
    /// Checks what the kernel would refuse, before anything is sent.
    pub fn validate(&self) -> Result<(), DesiredError> {
        for direction in [Direction::Down, Direction::Up] {
            if self.global.get(direction) == 0 {
                return Err(DesiredError::ZeroGlobal {
                    direction: direction_name(direction),
                });
            }
        }
        for (&minor, rates) in &self.clients {
            if !(FIRST_CLIENT_MINOR..=LAST_CLIENT_MINOR).contains(&minor) {
                return Err(DesiredError::MinorOutOfRange { minor });
            }
            for direction in [Direction::Down, Direction::Up] {
                if rates.get(direction) == 0 {
                    return Err(DesiredError::ZeroClientRate {
                        minor,
                        direction: direction_name(direction),
                    });
                }
            }
        }
        Ok(())
    }

    /// The state after `change`: the model of what applying it does to the kernel.
    pub fn apply_change(&mut self, change: Change) {
        match change {
            Change::SetGlobal(global) => self.global = global,
            Change::AddClient(minor, rates) | Change::ChangeClient(minor, rates) => {
                self.clients.insert(minor, rates);
            }
            Change::RemoveClient(minor) => {
                self.clients.remove(&minor);
            }
        }
    }
}

/// The changes that turn `current` into `desired`: the global caps first, then removals (so
/// their bandwidth guarantees are gone before new ones arrive), then changes and additions in
/// class order. Empty when the two are equal. One merge pass over both client maps, which are
/// sorted by minor.
#[must_use]
pub fn diff(current: &Desired, desired: &Desired) -> Vec<Change> {
    let mut changes = Vec::new();
    if current.global != desired.global {
        changes.push(Change::SetGlobal(desired.global));
    }
    let mut updates = Vec::new();
    let mut old = current.clients.iter().peekable();
    let mut new = desired.clients.iter().peekable();
    loop {
        match (old.peek(), new.peek()) {
            (None, None) => break,
            (Some(&(&minor, _)), None) => {
                changes.push(Change::RemoveClient(minor));
                old.next();
            }
            (None, Some(&(&minor, &rates))) => {
                updates.push(Change::AddClient(minor, rates));
                new.next();
            }
            (Some(&(&old_minor, old_rates)), Some(&(&new_minor, &new_rates))) => {
                match old_minor.cmp(&new_minor) {
                    Ordering::Less => {
                        changes.push(Change::RemoveClient(old_minor));
                        old.next();
                    }
                    Ordering::Greater => {
                        updates.push(Change::AddClient(new_minor, new_rates));
                        new.next();
                    }
                    Ordering::Equal => {
                        if *old_rates != new_rates {
                            updates.push(Change::ChangeClient(new_minor, new_rates));
                        }
                        old.next();
                        new.next();
                    }
                }
            }
        }
    }
    changes.append(&mut updates);
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(down_kbit: u64, up_kbit: u64) -> Rates {
        Rates { down_kbit, up_kbit }
    }

    fn state(global: Rates, clients: &[(u16, Rates)]) -> Desired {
        Desired {
            global,
            clients: clients.iter().copied().collect(),
        }
    }

    fn applied(mut from: Desired, changes: &[Change]) -> Desired {
        for &change in changes {
            from.apply_change(change);
        }
        from
    }

    #[test]
    fn equal_states_need_no_change() {
        let a = state(rates(100_000, 20_000), &[(2, rates(5000, 1000))]);
        assert!(diff(&a, &a.clone()).is_empty());
        assert!(diff(&Desired::default(), &Desired::default()).is_empty());
    }

    #[test]
    fn additions_changes_and_removals() {
        let global = rates(100_000, 20_000);
        let a = state(global, &[(2, rates(5000, 1000)), (3, rates(2000, 500))]);
        let b = state(global, &[(3, rates(4000, 500)), (7, rates(1000, 1000))]);
        assert_eq!(
            diff(&a, &b),
            vec![
                Change::RemoveClient(2),
                Change::ChangeClient(3, rates(4000, 500)),
                Change::AddClient(7, rates(1000, 1000)),
            ]
        );
    }

    #[test]
    fn a_global_change_comes_first() {
        let a = state(rates(100_000, 20_000), &[(5, rates(5000, 1000))]);
        let b = state(rates(50_000, 20_000), &[]);
        assert_eq!(
            diff(&a, &b),
            vec![
                Change::SetGlobal(rates(50_000, 20_000)),
                Change::RemoveClient(5),
            ]
        );
    }

    #[test]
    fn removals_come_before_additions_whatever_their_minors() {
        let global = rates(100_000, 20_000);
        let a = state(global, &[(9, rates(1, 1))]);
        let b = state(global, &[(2, rates(1, 1))]);
        assert_eq!(
            diff(&a, &b),
            vec![Change::RemoveClient(9), Change::AddClient(2, rates(1, 1))]
        );
    }

    #[test]
    fn applying_the_diff_reaches_the_target_and_then_nothing_is_left() {
        let states = [
            Desired::default(),
            state(rates(100_000, 20_000), &[]),
            state(
                rates(100_000, 20_000),
                &[(2, rates(5000, 1000)), (3, rates(5000, 1000))],
            ),
            state(
                rates(80_000, 20_000),
                &[(3, rates(6000, 1000)), (0xfffd, rates(1, 2))],
            ),
            state(rates(80_000, 10_000), &[(4, rates(6000, 1000))]),
        ];
        for a in &states {
            for b in &states {
                let changes = diff(a, b);
                let reached = applied(a.clone(), &changes);
                assert_eq!(&reached, b, "{a:?} -> {b:?} via {changes:?}");
                assert!(diff(&reached, b).is_empty(), "applying twice changes more");
            }
        }
    }

    #[test]
    fn validation_names_what_the_kernel_would_refuse() {
        let ok = state(rates(100_000, 20_000), &[(2, rates(5000, 1000))]);
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(
            state(rates(0, 20_000), &[]).validate(),
            Err(DesiredError::ZeroGlobal {
                direction: "download"
            })
        );
        assert_eq!(
            state(rates(1, 1), &[(3, rates(5, 0))]).validate(),
            Err(DesiredError::ZeroClientRate {
                minor: 3,
                direction: "upload"
            })
        );
        for minor in [0, 1, 0xfffe, 0xffff] {
            assert_eq!(
                state(rates(1, 1), &[(minor, rates(5, 5))]).validate(),
                Err(DesiredError::MinorOutOfRange { minor })
            );
        }
    }
}
