//! From a diff to kernel operations, and from their results back to the state the kernel
//! holds. Pure: `plan` says which classes and leaves to create, change or delete; `settle`
//! says what is installed once some of those operations failed.

use std::collections::BTreeSet;

use super::{
    DEFAULT_MINOR, IFB_HANDLE, LAN_HANDLE, Leaf, PARENT_MINOR,
    htb::{self, HtbOpt, LeafSpec, PschedClock},
    tree::{Change, Desired, Direction, diff},
};

/// One of the two HTB trees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tree {
    /// `1:` on the LAN interface: download.
    Lan,
    /// `2:` on the IFB device: upload.
    Ifb,
}

impl Tree {
    pub(crate) const BOTH: [Tree; 2] = [Tree::Lan, Tree::Ifb];

    pub(crate) fn major(self) -> u16 {
        match self {
            Tree::Lan => LAN_HANDLE,
            Tree::Ifb => IFB_HANDLE,
        }
    }

    pub(crate) fn direction(self) -> Direction {
        match self {
            Tree::Lan => Direction::Down,
            Tree::Ifb => Direction::Up,
        }
    }
}

/// One kernel operation on one tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// Create or change class `major:minor` (under `major:1`, or under the root for the
    /// parent class itself).
    Class {
        minor: u16,
        opt: HtbOpt,
    },
    DeleteClass {
        minor: u16,
    },
    /// Create or change the qdisc under class `major:minor`.
    Leaf {
        minor: u16,
        spec: LeafSpec,
    },
}

/// What an operation installs, so a failure can be charged to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    Global,
    Client(u16),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Planned {
    pub(crate) tree: Tree,
    pub(crate) owner: Owner,
    pub(crate) op: Op,
}

/// How class parameters are derived: the leaf kind and the kernel's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Params {
    pub(crate) leaf: Leaf,
    pub(crate) clock: PschedClock,
}

impl Params {
    pub(crate) fn client_opt(self, limit_kbit: u64, global_kbit: u64) -> HtbOpt {
        HtbOpt::new(htb::client_class(limit_kbit, global_kbit), self.clock)
    }

    pub(crate) fn parent_opt(self, global_kbit: u64) -> HtbOpt {
        HtbOpt::new(htb::parent_class(global_kbit), self.clock)
    }

    pub(crate) fn default_opt(self, global_kbit: u64) -> HtbOpt {
        HtbOpt::new(htb::default_class(global_kbit), self.clock)
    }

    pub(crate) fn leaf_spec(self, ceil_kbit: u64) -> LeafSpec {
        htb::leaf_spec(self.leaf, ceil_kbit)
    }
}

/// The operations that take the kernel from `current` to `desired`, in the order to send
/// them. A rate of 0 in `current` means "not installed as we would install it" (a failed
/// operation, or a class found at start-up with other parameters): it is always re-sent.
/// A client's guarantee depends on the global rate, so a global change re-derives every
/// client class of that tree, sending only those whose parameters really change.
pub(crate) fn plan(current: &Desired, desired: &Desired, params: Params) -> Vec<Planned> {
    let changes = diff(current, desired);
    if changes.is_empty() {
        return Vec::new();
    }
    let changed_minors: BTreeSet<u16> = changes
        .iter()
        .filter_map(|change| match *change {
            Change::SetGlobal(_) => None,
            Change::AddClient(minor, _)
            | Change::ChangeClient(minor, _)
            | Change::RemoveClient(minor) => Some(minor),
        })
        .collect();
    let mut planned = Vec::new();
    for tree in Tree::BOTH {
        let direction = tree.direction();
        let old_global = current.global.get(direction);
        let new_global = desired.global.get(direction);
        let global_changed = old_global != new_global;
        let mut push = |owner, op| planned.push(Planned { tree, owner, op });
        if global_changed {
            push(
                Owner::Global,
                Op::Class {
                    minor: PARENT_MINOR,
                    opt: params.parent_opt(new_global),
                },
            );
            push(
                Owner::Global,
                Op::Class {
                    minor: DEFAULT_MINOR,
                    opt: params.default_opt(new_global),
                },
            );
            let spec = params.leaf_spec(new_global);
            if old_global == 0 || params.leaf_spec(old_global) != spec {
                push(
                    Owner::Global,
                    Op::Leaf {
                        minor: DEFAULT_MINOR,
                        spec,
                    },
                );
            }
        }
        let all_minors: BTreeSet<u16>;
        let minors = if global_changed {
            all_minors = current
                .clients
                .keys()
                .chain(desired.clients.keys())
                .copied()
                .collect();
            &all_minors
        } else {
            &changed_minors
        };
        for &minor in minors {
            let old = current
                .clients
                .get(&minor)
                .map(|rates| rates.get(direction));
            let Some(new) = desired
                .clients
                .get(&minor)
                .map(|rates| rates.get(direction))
            else {
                if old.is_some() {
                    push(Owner::Client(minor), Op::DeleteClass { minor });
                }
                continue;
            };
            let installed = old.filter(|&kbit| kbit > 0);
            let old_opt = installed
                .filter(|_| old_global > 0)
                .map(|kbit| params.client_opt(kbit, old_global));
            let opt = params.client_opt(new, new_global);
            if old_opt != Some(opt) {
                push(Owner::Client(minor), Op::Class { minor, opt });
            }
            let spec = params.leaf_spec(new);
            if installed.map(|kbit| params.leaf_spec(kbit)) != Some(spec) {
                push(Owner::Client(minor), Op::Leaf { minor, spec });
            }
        }
    }
    planned
}

/// What the kernel holds after `planned` ran with `succeeded` (one flag per operation):
/// `desired`, except that whatever a failed operation was installing is marked unknown (rate
/// 0), and a client whose deletion failed is still there.
pub(crate) fn settle(
    current: &Desired,
    desired: &Desired,
    planned: &[Planned],
    succeeded: &[bool],
) -> Desired {
    let mut settled = desired.clone();
    for (planned, _) in planned
        .iter()
        .zip(succeeded)
        .filter(|(_, succeeded)| !**succeeded)
    {
        let direction = planned.tree.direction();
        match (planned.owner, planned.op) {
            (Owner::Global, _) => settled.global.set(direction, 0),
            (Owner::Client(minor), Op::DeleteClass { .. }) => {
                let old = current
                    .clients
                    .get(&minor)
                    .map_or(0, |rates| rates.get(direction));
                settled
                    .clients
                    .entry(minor)
                    .or_default()
                    .set(direction, old);
            }
            (Owner::Client(minor), Op::Class { .. } | Op::Leaf { .. }) => {
                if let Some(rates) = settled.clients.get_mut(&minor) {
                    rates.set(direction, 0);
                }
            }
        }
    }
    settled
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shaping::Rates;

    const PARAMS: Params = Params {
        leaf: Leaf::Pfifo,
        clock: PschedClock::KERNEL_DEFAULT,
    };

    fn rates(down_kbit: u64, up_kbit: u64) -> Rates {
        Rates { down_kbit, up_kbit }
    }

    fn state(global: Rates, clients: &[(u16, Rates)]) -> Desired {
        Desired {
            global,
            clients: clients.iter().copied().collect(),
        }
    }

    fn ops(planned: &[Planned]) -> Vec<(Tree, &'static str, u16)> {
        planned
            .iter()
            .map(|p| match p.op {
                Op::Class { minor, .. } => (p.tree, "class", minor),
                Op::DeleteClass { minor } => (p.tree, "delete", minor),
                Op::Leaf { minor, .. } => (p.tree, "leaf", minor),
            })
            .collect()
    }

    const GLOBAL: Rates = Rates {
        down_kbit: 100_000,
        up_kbit: 20_000,
    };

    #[test]
    fn nothing_to_do_sends_nothing() {
        let a = state(GLOBAL, &[(2, rates(5000, 1000))]);
        assert!(plan(&a, &a.clone(), PARAMS).is_empty());
    }

    #[test]
    fn a_new_client_gets_a_class_and_a_leaf_in_each_tree() {
        let a = state(GLOBAL, &[]);
        let b = state(GLOBAL, &[(7, rates(5000, 1000))]);
        let planned = plan(&a, &b, PARAMS);
        assert_eq!(
            ops(&planned),
            vec![
                (Tree::Lan, "class", 7),
                (Tree::Lan, "leaf", 7),
                (Tree::Ifb, "class", 7),
                (Tree::Ifb, "leaf", 7),
            ]
        );
        assert_eq!(
            planned[0].op,
            Op::Class {
                minor: 7,
                opt: PARAMS.client_opt(5000, 100_000)
            }
        );
        assert_eq!(
            planned[3].op,
            Op::Leaf {
                minor: 7,
                spec: PARAMS.leaf_spec(1000)
            }
        );
    }

    #[test]
    fn changing_the_upload_limit_touches_only_the_ifb_tree() {
        let a = state(GLOBAL, &[(7, rates(5000, 1000)), (8, rates(1, 1))]);
        let b = state(GLOBAL, &[(7, rates(5000, 900)), (8, rates(1, 1))]);
        // 900 and 1000 kbit/s both get the minimum pfifo, so only the class changes.
        assert_eq!(ops(&plan(&a, &b, PARAMS)), vec![(Tree::Ifb, "class", 7)]);
    }

    #[test]
    fn a_removed_client_loses_both_classes() {
        let a = state(GLOBAL, &[(7, rates(5000, 1000))]);
        let b = state(GLOBAL, &[]);
        assert_eq!(
            ops(&plan(&a, &b, PARAMS)),
            vec![(Tree::Lan, "delete", 7), (Tree::Ifb, "delete", 7)]
        );
    }

    #[test]
    fn a_global_change_re_derives_client_guarantees_in_its_tree_only() {
        let a = state(GLOBAL, &[(2, rates(5000, 1000)), (3, rates(5, 5))]);
        let b = state(
            rates(200_000, 20_000),
            &[(2, rates(5000, 1000)), (3, rates(5, 5))],
        );
        // Client 3's guarantee is its own 5 kbit/s limit either way: nothing to send.
        assert_eq!(
            ops(&plan(&a, &b, PARAMS)),
            vec![
                (Tree::Lan, "class", PARENT_MINOR),
                (Tree::Lan, "class", DEFAULT_MINOR),
                (Tree::Lan, "leaf", DEFAULT_MINOR),
                (Tree::Lan, "class", 2),
            ]
        );
    }

    #[test]
    fn unknown_state_is_re_sent() {
        let desired = state(GLOBAL, &[(2, rates(5000, 1000))]);
        let mut current = desired.clone();
        current.clients.insert(2, rates(5000, 0));
        assert_eq!(
            ops(&plan(&current, &desired, PARAMS)),
            vec![(Tree::Ifb, "class", 2), (Tree::Ifb, "leaf", 2)]
        );
        // An unknown global re-sends the tree's classes, the client's included.
        let mut current = desired.clone();
        current.global.down_kbit = 0;
        assert_eq!(
            ops(&plan(&current, &desired, PARAMS)),
            vec![
                (Tree::Lan, "class", PARENT_MINOR),
                (Tree::Lan, "class", DEFAULT_MINOR),
                (Tree::Lan, "leaf", DEFAULT_MINOR),
                (Tree::Lan, "class", 2),
            ]
        );
    }

    #[test]
    fn settle_keeps_what_failed_unknown_so_the_next_plan_retries_it() {
        let current = state(GLOBAL, &[(5, rates(1000, 1000))]);
        let desired = state(rates(100_000, 30_000), &[(7, rates(5000, 1000))]);
        let planned = plan(&current, &desired, PARAMS);
        assert_eq!(
            ops(&planned),
            vec![
                (Tree::Lan, "delete", 5),
                (Tree::Lan, "class", 7),
                (Tree::Lan, "leaf", 7),
                (Tree::Ifb, "class", PARENT_MINOR),
                (Tree::Ifb, "class", DEFAULT_MINOR),
                (Tree::Ifb, "leaf", DEFAULT_MINOR),
                (Tree::Ifb, "delete", 5),
                (Tree::Ifb, "class", 7),
                (Tree::Ifb, "leaf", 7),
            ]
        );
        // The LAN delete of 5, the LAN leaf of 7 and the IFB parent class fail.
        let succeeded = [false, true, false, false, true, true, true, true, true];
        let settled = settle(&current, &desired, &planned, &succeeded);
        assert_eq!(
            settled,
            state(
                rates(100_000, 0),
                &[(5, rates(1000, 0)), (7, rates(0, 1000))]
            )
        );
        // Retrying sends exactly the failed work again (and re-derives the IFB tree, whose
        // global is unknown).
        assert_eq!(
            ops(&plan(&settled, &desired, PARAMS)),
            vec![
                (Tree::Lan, "delete", 5),
                (Tree::Lan, "class", 7),
                (Tree::Lan, "leaf", 7),
                (Tree::Ifb, "class", PARENT_MINOR),
                (Tree::Ifb, "class", DEFAULT_MINOR),
                (Tree::Ifb, "leaf", DEFAULT_MINOR),
                (Tree::Ifb, "delete", 5),
                (Tree::Ifb, "class", 7),
            ]
        );
        let all_ok = settle(&current, &desired, &planned, &[true; 9]);
        assert_eq!(all_ok, desired);
    }
}
