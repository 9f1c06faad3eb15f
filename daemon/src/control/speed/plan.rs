//! The speed plan, pure: which client has which HTB class minor, and what the trees should
//! hold, with what changed since it was last sent to the shaper.

use std::collections::{BTreeMap, BTreeSet};

use crate::{
    mac::MacAddr,
    shaping::{Desired, FIRST_CLIENT_MINOR, IFB_HANDLE, LAN_HANDLE, LAST_CLIENT_MINOR, Rates},
};

/// The class minors in use, by client; a freed minor is reused before a new one is taken.
#[derive(Debug, Default)]
pub(in crate::control) struct Classes {
    by_mac: BTreeMap<MacAddr, u16>,
    /// The same, by minor.
    by_minor: BTreeMap<u16, MacAddr>,
    freed: Vec<u16>,
    /// The lowest minor never handed out (0 = none yet).
    next: u16,
}

/// The HTB classes of one client: download on the LAN interface, upload on the IFB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::control) struct ClientClasses {
    pub minor: u16,
    pub down: u32,
    pub up: u32,
}

impl ClientClasses {
    pub(super) fn of_minor(minor: u16) -> Self {
        Self {
            minor,
            down: u32::from(LAN_HANDLE) << 16 | u32::from(minor),
            up: u32::from(IFB_HANDLE) << 16 | u32::from(minor),
        }
    }
}

impl Classes {
    /// The client's classes, allocating a minor if it has none; `None` when every minor is
    /// taken (then the client runs in the default class, at the global rate).
    pub(super) fn of(&mut self, mac: MacAddr) -> Option<ClientClasses> {
        let minor = if let Some(minor) = self.by_mac.get(&mac) {
            *minor
        } else {
            let minor = self.take()?;
            self.by_mac.insert(mac, minor);
            self.by_minor.insert(minor, mac);
            minor
        };
        Some(ClientClasses::of_minor(minor))
    }

    /// The client that has `minor`.
    fn owner_of(&self, minor: u16) -> Option<MacAddr> {
        self.by_minor.get(&minor).copied()
    }

    /// Takes over the classes a previous run gave `mac`, read from its grant in the kernel,
    /// so that a restart leaves every running client in the class it is in. False, changing
    /// nothing, when they are not classes this daemon hands out or their minor is taken.
    pub(super) fn adopt(&mut self, mac: MacAddr, class_down: u32, class_up: u32) -> bool {
        let Ok(minor) = u16::try_from(class_down & 0xffff) else {
            return false;
        };
        let ours = (
            u32::from(LAN_HANDLE) << 16 | u32::from(minor),
            u32::from(IFB_HANDLE) << 16 | u32::from(minor),
        );
        let first_new = self.next.max(FIRST_CLIENT_MINOR);
        // Below `first_new` a minor is either in use or freed.
        let taken = minor < first_new && !self.freed.contains(&minor);
        if (class_down, class_up) != ours
            || !(FIRST_CLIENT_MINOR..=LAST_CLIENT_MINOR).contains(&minor)
            || taken
            || self.by_mac.contains_key(&mac)
        {
            return false;
        }
        if minor >= first_new {
            self.freed.extend(first_new..minor);
            self.next = minor + 1;
        } else {
            self.freed.retain(|freed| *freed != minor);
        }
        self.by_mac.insert(mac, minor);
        self.by_minor.insert(minor, mac);
        true
    }

    /// A free minor: a freed one first, else the lowest never handed out.
    fn take(&mut self) -> Option<u16> {
        if let Some(minor) = self.freed.pop() {
            return Some(minor);
        }
        let minor = self.next.max(FIRST_CLIENT_MINOR);
        if minor > LAST_CLIENT_MINOR {
            return None;
        }
        self.next = minor + 1;
        Some(minor)
    }

    /// Frees the client's minor, returning it.
    pub(super) fn release(&mut self, mac: MacAddr) -> Option<u16> {
        let minor = self.by_mac.remove(&mac)?;
        self.by_minor.remove(&minor);
        self.freed.push(minor);
        Some(minor)
    }
}

/// What the trees should hold: each client's class pair and rates, and the global caps, with
/// what changed since the shaper last applied it. Pure.
#[derive(Debug)]
pub(in crate::control) struct Plan {
    desired: Desired,
    classes: Classes,
    /// Minors whose desired rates changed since the last apply.
    changed: BTreeSet<u16>,
    /// The global caps changed since the last apply: every class is gone over.
    global_changed: bool,
}

impl Plan {
    /// A plan with no client, at the `global` caps.
    pub(super) fn new(global: Rates) -> Self {
        Self {
            desired: Desired {
                global,
                clients: BTreeMap::new(),
            },
            classes: Classes::default(),
            changed: BTreeSet::new(),
            global_changed: false,
        }
    }

    /// `mac` runs at `rates` from now on: its classes (allocated if it has none), or `None`
    /// when every minor is taken (then it runs in the default class, under the global cap).
    pub(super) fn run_at(&mut self, mac: MacAddr, rates: Rates) -> Option<ClientClasses> {
        let classes = self.classes.of(mac)?;
        if self.desired.clients.insert(classes.minor, rates) != Some(rates) {
            self.changed.insert(classes.minor);
        }
        Some(classes)
    }

    /// What the trees should hold.
    pub(super) fn desired(&self) -> &Desired {
        &self.desired
    }

    /// The classes `mac` has, allocating a pair if it has none.
    pub(super) fn classes_of(&mut self, mac: MacAddr) -> Option<ClientClasses> {
        self.classes.of(mac)
    }

    /// The minor `mac` has, if any.
    pub(super) fn minor_of(&self, mac: MacAddr) -> Option<u16> {
        self.classes.by_mac.get(&mac).copied()
    }

    /// The client that has `minor`.
    pub(super) fn owner_of(&self, minor: u16) -> Option<MacAddr> {
        self.classes.owner_of(minor)
    }

    /// Whether the trees should hold a class for `minor` (its client runs at some rates).
    pub(super) fn wants(&self, minor: u16) -> bool {
        self.desired.clients.contains_key(&minor)
    }

    /// The clients the trees should hold a class for, by minor.
    pub(super) fn owners(&self) -> impl Iterator<Item = (u16, MacAddr)> + '_ {
        self.classes
            .by_minor
            .iter()
            .filter(|(minor, _)| self.wants(**minor))
            .map(|(minor, mac)| (*minor, *mac))
    }

    /// `mac` runs no session: its classes are freed (parked by the shaper at the next apply).
    pub(super) fn stop(&mut self, mac: MacAddr) {
        if let Some(minor) = self.classes.release(mac) {
            self.desired.clients.remove(&minor);
            self.changed.insert(minor);
        }
    }

    /// Takes over the classes a previous run gave `mac` (see [`Classes::adopt`]), at `rates`
    /// when given. The trees hold them already; with rates, the minor is still marked
    /// changed, so the shaper's worker learns what it should hold (and finds nothing to send
    /// when the rates are the ones it read back).
    pub(super) fn adopt(
        &mut self,
        mac: MacAddr,
        (class_down, class_up): (u32, u32),
        rates: Option<Rates>,
    ) -> bool {
        if !self.classes.adopt(mac, class_down, class_up) {
            return false;
        }
        if let (Some(rates), Some(classes)) = (rates, self.classes.of(mac)) {
            self.desired.clients.insert(classes.minor, rates);
            self.changed.insert(classes.minor);
        }
        true
    }

    pub(super) fn set_global(&mut self, global: Rates) {
        if self.desired.global != global {
            self.desired.global = global;
            self.global_changed = true;
        }
    }

    /// The minors changed since the last call, to apply; `None` when nothing changed. After a
    /// change of the global caps, possibly none (the shaper sees that change for itself).
    pub(super) fn take_changes(&mut self) -> Option<BTreeSet<u16>> {
        if self.changed.is_empty() && !self.global_changed {
            return None;
        }
        self.global_changed = false;
        Some(std::mem::take(&mut self.changed))
    }

    /// Recomputes the plan from `wanted`, every client that runs a session at its rates: a
    /// client with classes that is not wanted gets them freed, one whose rates differ gets
    /// the wanted ones. Classes are not handed out here: a client without any runs in the
    /// default class, as its grant says. Returns how many clients were mended, 0 unless a
    /// change was missed on the way.
    pub(super) fn reconcile(&mut self, wanted: &BTreeMap<MacAddr, Rates>) -> usize {
        let unwanted: Vec<MacAddr> = self
            .classes
            .by_mac
            .keys()
            .filter(|mac| !wanted.contains_key(mac))
            .copied()
            .collect();
        let mut mended = unwanted.len();
        for mac in unwanted {
            self.stop(mac);
        }
        for (mac, rates) in wanted {
            if let Some(minor) = self.classes.by_mac.get(mac).copied()
                && self.desired.clients.insert(minor, *rates) != Some(*rates)
            {
                self.changed.insert(minor);
                mended += 1;
            }
        }
        mended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::Config,
        control::speed::{global, rates},
    };

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    #[test]
    fn a_client_keeps_its_classes_and_a_freed_minor_is_reused() {
        let mut classes = Classes::default();
        let a = classes.of(A).expect("a minor");
        assert_eq!((a.minor, a.down, a.up), (2, 0x0001_0002, 0x0002_0002));
        assert_eq!(classes.of(A), Some(a), "the same client, the same classes");
        assert_eq!(classes.of(B).expect("a minor").minor, 3);
        assert_eq!(classes.release(A), Some(2));
        assert_eq!(
            classes
                .of(MacAddr([2, 0, 0, 0, 0, 3]))
                .expect("a minor")
                .minor,
            2
        );
    }

    #[test]
    fn a_restart_adopts_the_classes_of_the_previous_run() {
        let mut classes = Classes::default();
        assert!(classes.adopt(A, 0x0001_0005, 0x0002_0005));
        assert_eq!(classes.of(A).expect("adopted").minor, 5);
        assert!(
            !classes.adopt(B, 0x0001_0005, 0x0002_0005),
            "a minor is not handed out twice"
        );
        assert!(
            !classes.adopt(B, 0x0001_0006, 0x0002_0007),
            "not a pair of ours"
        );
        assert!(!classes.adopt(B, 0, 0), "no classes");
        // The minors skipped over are handed out later, and 5 never again.
        let others: Vec<u16> = (3..=6)
            .map(|n| {
                classes
                    .of(MacAddr([2, 0, 0, 0, 1, n]))
                    .expect("a minor")
                    .minor
            })
            .collect();
        let mut sorted = others.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![2, 3, 4, 6], "{others:?}");
    }

    #[test]
    fn minors_run_out_cleanly() {
        let mut classes = Classes::default();
        let capacity = usize::from(LAST_CLIENT_MINOR - FIRST_CLIENT_MINOR) + 1;
        for n in 0..capacity {
            let [.., a, b, c, d] = u64::try_from(n).expect("fits").to_be_bytes();
            assert!(classes.of(MacAddr([2, 0, a, b, c, d])).is_some());
        }
        assert_eq!(classes.of(MacAddr([2, 9, 9, 9, 9, 9])), None);
    }

    #[test]
    fn the_plan_marks_what_changed_and_an_adopted_class_goes_to_the_worker() {
        let mut plan = Plan::new(global(&Config::default()));
        assert_eq!(plan.take_changes(), None);
        let a = plan.run_at(A, rates(5, 2)).expect("a minor");
        assert_eq!(plan.take_changes(), Some(BTreeSet::from([a.minor])));
        plan.run_at(A, rates(5, 2));
        assert_eq!(plan.take_changes(), None, "the same rates are no change");
        assert!(plan.adopt(B, (0x0001_0009, 0x0002_0009), Some(rates(1, 1))));
        assert_eq!(
            plan.take_changes(),
            Some(BTreeSet::from([9])),
            "the worker learns an adopted class's rates (and sends nothing for it)"
        );
        assert!(plan.adopt(
            MacAddr([2, 0, 0, 0, 0, 7]),
            (0x0001_000a, 0x0002_000a),
            None
        ));
        assert_eq!(plan.take_changes(), None, "no rates, nothing to learn");
        plan.stop(A);
        assert_eq!(plan.take_changes(), Some(BTreeSet::from([a.minor])));
        plan.set_global(rates(1, 1));
        assert_eq!(
            plan.take_changes(),
            Some(BTreeSet::new()),
            "the global caps changed"
        );
    }

    #[test]
    fn the_plan_recomputed_from_the_sessions_mends_what_was_missed() {
        let mut plan = Plan::new(global(&Config::default()));
        let a = plan.run_at(A, rates(5, 2)).expect("a minor");
        let b = plan.run_at(B, rates(3, 3)).expect("a minor");
        plan.take_changes();
        let unchanged = BTreeMap::from([(A, rates(5, 2)), (B, rates(3, 3))]);
        assert_eq!(plan.reconcile(&unchanged), 0);
        assert_eq!(plan.take_changes(), None, "nothing to mend");

        // A missed revocation of B and a missed change of A's speed; C (no classes) runs in
        // the default class as its grant says, so it gets none here.
        let c = MacAddr([2, 0, 0, 0, 0, 3]);
        let wanted = BTreeMap::from([(A, rates(10, 2)), (c, rates(1, 1))]);
        assert_eq!(plan.reconcile(&wanted), 2);
        assert_eq!(
            plan.take_changes(),
            Some(BTreeSet::from([a.minor, b.minor]))
        );
        assert_eq!(plan.desired.clients.get(&a.minor), Some(&rates(10, 2)));
        assert_eq!(plan.desired.clients.get(&b.minor), None);
        assert!(!plan.classes.by_mac.contains_key(&c));
    }
}
