//! Which clients' classes are in the trees, pure. The shaper works on a task of its own, so a
//! minor handed to a client has no class at that client's rates until the worker reports the
//! job that brings it: before that the minor's class may be a spare parked at 8 kbit/s, or
//! still at the rates of the client that had it before. So a grant names a client's classes
//! only once they are confirmed ([`Confirmations::named`]); until then the client runs in
//! the default class, under the global cap, for the milliseconds a change takes.

use std::collections::{BTreeMap, BTreeSet};

use super::plan::{ClientClasses, Plan};
use crate::mac::MacAddr;

/// What the worker was sent and what it confirmed.
#[derive(Debug)]
pub(super) struct Confirmations {
    /// The minors whose classes the worker confirmed at rates set while the client that has
    /// them now had them.
    made_for: BTreeMap<u16, MacAddr>,
    /// The minors of the jobs sent and not yet reported: the job's number and the client
    /// that had the minor when it was sent.
    in_flight: BTreeMap<u16, (u64, Option<MacAddr>)>,
    /// A rebuild sent and not yet reported.
    rebuilding: Option<Rebuilding>,
    next_seq: u64,
    /// The trees are not at the desired state (an apply or a rebuild failed): `links.rs`
    /// rebuilds them at every interface check until it works.
    broken: bool,
}

#[derive(Debug)]
struct Rebuilding {
    seq: u64,
    /// The trees were broken before it: its failure is not logged again.
    was_broken: bool,
    /// The clients whose classes it makes, by minor.
    owners: Vec<(u16, MacAddr)>,
    /// A rebuild was asked for while this one was under way (the LAN was recreated): the
    /// trees count as broken after it, so the next interface check rebuilds them again.
    again: bool,
}

/// Classes confirmed for their clients, to be named in their grants.
pub(super) type Confirmed = Vec<(MacAddr, ClientClasses)>;

impl Confirmations {
    pub(super) fn new() -> Self {
        Self {
            made_for: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            rebuilding: None,
            next_seq: 1,
            broken: false,
        }
    }

    /// The classes a grant of `mac` names: its own once confirmed at its rates, else none
    /// (the default class).
    pub(super) fn named(&self, plan: &Plan, mac: MacAddr) -> Option<ClientClasses> {
        let minor = plan.minor_of(mac)?;
        (self.made_for.get(&minor) == Some(&mac)).then(|| ClientClasses::of_minor(minor))
    }

    /// `mac` took over its class `minor` from a previous run: the trees hold it already.
    pub(super) fn adopted(&mut self, minor: u16, mac: MacAddr) {
        self.made_for.insert(minor, mac);
    }

    /// A job bringing `changed` to the plan's state is sent: returns its number. A minor
    /// that changed hands is no longer named until the job is confirmed.
    pub(super) fn sent(&mut self, plan: &Plan, changed: &BTreeSet<u16>) -> u64 {
        let seq = self.take_seq();
        for &minor in changed {
            let owner = plan.owner_of(minor);
            if self.made_for.get(&minor) != owner.as_ref() {
                self.made_for.remove(&minor);
            }
            self.in_flight.insert(minor, (seq, owner));
        }
        seq
    }

    /// The worker reports the jobs up to `seq`: applied, or not all taken. After a failure
    /// nothing is confirmed and the trees are broken: the clients stay in the default class
    /// until a rebuild works. Returns whether they were broken before, and what was
    /// confirmed.
    pub(super) fn applied(&mut self, plan: &Plan, seq: u64, ok: bool) -> (bool, Confirmed) {
        let was_broken = self.broken;
        let done: Vec<u16> = self
            .in_flight
            .iter()
            .filter(|(_, (sent, _))| *sent <= seq)
            .map(|(minor, _)| *minor)
            .collect();
        let mut confirmed = Vec::new();
        for minor in done {
            if let Some((_, Some(owner))) = self.in_flight.remove(&minor)
                && ok
            {
                self.confirm(plan, minor, owner, &mut confirmed);
            }
        }
        if !ok {
            self.broken = true;
        }
        (was_broken, confirmed)
    }

    /// A rebuild of the trees at the plan's state is to be sent: its number, or `None` when
    /// one is under way (then another follows it).
    pub(super) fn rebuild_sent(&mut self, plan: &Plan) -> Option<u64> {
        if let Some(rebuilding) = &mut self.rebuilding {
            rebuilding.again = true;
            return None;
        }
        let seq = self.take_seq();
        self.rebuilding = Some(Rebuilding {
            seq,
            was_broken: self.broken,
            owners: plan.owners().collect(),
            again: false,
        });
        Some(seq)
    }

    /// The worker reports rebuild `seq`: when it worked, every class it made is confirmed.
    /// Returns whether the trees were broken before it, and what was confirmed.
    pub(super) fn rebuilt(&mut self, plan: &Plan, seq: u64, ok: bool) -> (bool, Confirmed) {
        let Some(rebuilding) = self.rebuilding.take_if(|rebuilding| rebuilding.seq == seq) else {
            return (self.broken, Vec::new());
        };
        let mut confirmed = Vec::new();
        if ok {
            self.broken = rebuilding.again;
            self.in_flight.retain(|_, (sent, _)| *sent > seq);
            for (minor, owner) in rebuilding.owners {
                self.confirm(plan, minor, owner, &mut confirmed);
            }
        } else {
            self.broken = true;
        }
        (rebuilding.was_broken, confirmed)
    }

    /// Clients with rates whose classes are not confirmed yet: they run in the default class.
    /// O(clients), for the metrics.
    pub(super) fn awaiting(&self, plan: &Plan) -> usize {
        plan.owners()
            .filter(|(minor, owner)| self.made_for.get(minor) != Some(owner))
            .count()
    }

    pub(super) fn is_broken(&self) -> bool {
        self.broken
    }

    pub(super) fn is_rebuilding(&self) -> bool {
        self.rebuilding.is_some()
    }

    /// `owner`'s class `minor` is in the trees at its rates: named from now on, unless the
    /// minor changed hands or lost its rates meanwhile.
    fn confirm(&mut self, plan: &Plan, minor: u16, owner: MacAddr, confirmed: &mut Confirmed) {
        if plan.owner_of(minor) == Some(owner)
            && plan.wants(minor)
            && self.made_for.get(&minor) != Some(&owner)
        {
            self.made_for.insert(minor, owner);
            confirmed.push((owner, ClientClasses::of_minor(minor)));
        }
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::Config,
        control::speed::{global, rates},
        shaping::Rates,
    };

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
    const FAST: Rates = Rates {
        down_kbit: 10_000,
        up_kbit: 2_000,
    };

    /// Sends what changed, as `SpeedPlan::apply` does; the job's number.
    fn send(plan: &mut Plan, confirmations: &mut Confirmations) -> u64 {
        let changed = plan.take_changes().expect("a change");
        confirmations.sent(plan, &changed)
    }

    /// A plan where A runs at [`FAST`] and the job with its classes is sent, not yet reported.
    fn a_sent() -> (Plan, Confirmations, ClientClasses, u64) {
        let mut plan = Plan::new(global(&Config::default()));
        let mut confirmations = Confirmations::new();
        let a = plan.run_at(A, FAST).expect("a minor");
        let seq = send(&mut plan, &mut confirmations);
        (plan, confirmations, a, seq)
    }

    #[test]
    fn a_grant_names_a_clients_classes_once_the_worker_confirmed_them() {
        let mut plan = Plan::new(global(&Config::default()));
        let mut confirmations = Confirmations::new();
        let a = plan.run_at(A, FAST).expect("a minor");
        assert_eq!(confirmations.named(&plan, A), None, "nothing sent yet");
        assert_eq!(confirmations.awaiting(&plan), 1);
        let seq = send(&mut plan, &mut confirmations);
        assert_eq!(
            confirmations.named(&plan, A),
            None,
            "sent, not yet in the trees: the default class"
        );
        assert_eq!(
            confirmations.applied(&plan, seq, true),
            (false, vec![(A, a)])
        );
        assert_eq!(confirmations.named(&plan, A), Some(a));
        assert_eq!(confirmations.awaiting(&plan), 0);

        // A new speed for the same client: its class stays named while it changes.
        plan.run_at(A, rates(20, 5));
        let seq = send(&mut plan, &mut confirmations);
        assert_eq!(confirmations.named(&plan, A), Some(a));
        assert_eq!(confirmations.applied(&plan, seq, true), (false, vec![]));
        assert_eq!(confirmations.named(&plan, A), Some(a));
    }

    #[test]
    fn a_minor_that_changed_hands_is_named_only_for_the_client_it_was_confirmed_for() {
        let (mut plan, mut confirmations, a, first) = a_sent();
        confirmations.applied(&plan, first, true);

        // A leaves and B gets its minor before the next job: B's grant must not name the
        // class, which holds A's rates until the job is in.
        plan.stop(A);
        let b = plan.run_at(B, rates(1, 1)).expect("a minor");
        assert_eq!(b.minor, a.minor, "the freed minor is reused");
        let second = send(&mut plan, &mut confirmations);
        assert_eq!(confirmations.named(&plan, A), None);
        assert_eq!(confirmations.named(&plan, B), None);
        // A late report of the first job confirms nothing for B.
        assert_eq!(confirmations.applied(&plan, first, true), (false, vec![]));
        assert_eq!(confirmations.named(&plan, B), None);
        assert_eq!(
            confirmations.applied(&plan, second, true),
            (false, vec![(B, b)])
        );
        assert_eq!(confirmations.named(&plan, B), Some(b));
    }

    #[test]
    fn a_failed_apply_names_nothing_until_a_rebuild_works() {
        let (plan, mut confirmations, a, seq) = a_sent();
        assert_eq!(confirmations.applied(&plan, seq, false), (false, vec![]));
        assert!(confirmations.is_broken());
        assert_eq!(confirmations.named(&plan, A), None);

        let rebuild = confirmations.rebuild_sent(&plan).expect("none under way");
        assert!(confirmations.is_rebuilding());
        assert_eq!(confirmations.rebuild_sent(&plan), None, "one at a time");
        // The second ask is served by a rebuild after this one.
        assert_eq!(
            confirmations.rebuilt(&plan, rebuild, true),
            (true, vec![(A, a)])
        );
        assert!(confirmations.is_broken(), "asked again meanwhile");
        assert_eq!(confirmations.named(&plan, A), Some(a));
        let again = confirmations.rebuild_sent(&plan).expect("none under way");
        assert_eq!(confirmations.rebuilt(&plan, again, true), (true, vec![]));
        assert!(!confirmations.is_broken());
    }

    #[test]
    fn a_failed_rebuild_keeps_the_trees_broken() {
        let (plan, mut confirmations, _, _) = a_sent();
        let rebuild = confirmations.rebuild_sent(&plan).expect("none under way");
        assert_eq!(
            confirmations.rebuilt(&plan, rebuild, false),
            (false, vec![])
        );
        assert!(confirmations.is_broken());
        assert!(!confirmations.is_rebuilding());
        assert_eq!(confirmations.named(&plan, A), None);
    }

    #[test]
    fn an_adopted_class_is_named_at_once() {
        let mut plan = Plan::new(global(&Config::default()));
        let mut confirmations = Confirmations::new();
        assert!(plan.adopt(A, (0x0001_0005, 0x0002_0005), Some(FAST)));
        confirmations.adopted(5, A);
        assert_eq!(
            confirmations.named(&plan, A).map(|classes| classes.minor),
            Some(5)
        );
        // Its rates go to the worker, which finds the class as it is: still named.
        send(&mut plan, &mut confirmations);
        assert!(confirmations.named(&plan, A).is_some());
    }
}
