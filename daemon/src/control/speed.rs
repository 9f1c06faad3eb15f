//! Speed limits of running sessions: each connected client gets an HTB class minor, its
//! session's rates go into the desired trees, and its grant names the classes so the eBPF
//! programs put its packets there (`skb->priority`). A client's minor is the one freed most
//! recently, whose class the shaper kept parked (`shaping/pool.rs`), so a sale usually
//! changes an existing class instead of creating one. Side effects: [`SpeedPlan::apply`]
//! hands the changed classes to the shaper.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use tokio::time::Instant;

use super::Control;
use crate::{
    config::Config,
    mac::MacAddr,
    shaping::{
        Desired, FIRST_CLIENT_MINOR, IFB_HANDLE, LAN_HANDLE, LAST_CLIENT_MINOR, Rates, Shaper,
        ShapingError,
    },
};

/// kbit/s in one Mbit/s, as tc counts (1 kbit = 1000 bit).
const KBIT_PER_MBIT: u64 = 1_000;

/// The class minors in use, by client; a freed minor is reused before a new one is taken.
#[derive(Debug, Default)]
pub(super) struct Classes {
    by_mac: BTreeMap<MacAddr, u16>,
    freed: Vec<u16>,
    /// The lowest minor never handed out (0 = none yet).
    next: u16,
}

/// The HTB classes of one client: download on the LAN interface, upload on the IFB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ClientClasses {
    pub minor: u16,
    pub down: u32,
    pub up: u32,
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
            minor
        };
        Some(ClientClasses {
            minor,
            down: u32::from(LAN_HANDLE) << 16 | u32::from(minor),
            up: u32::from(IFB_HANDLE) << 16 | u32::from(minor),
        })
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
        self.freed.push(minor);
        Some(minor)
    }
}

/// What the trees should hold: each client's class pair and rates, and the global caps, with
/// what changed since the shaper last applied it. Pure.
#[derive(Debug)]
pub(super) struct Plan {
    desired: Desired,
    classes: Classes,
    /// Minors whose desired rates changed since the last apply.
    changed: BTreeSet<u16>,
    /// The global caps changed since the last apply: every class is gone over.
    global_changed: bool,
}

impl Plan {
    fn new(config: &Config) -> Self {
        Self {
            desired: desired(config),
            classes: Classes::default(),
            changed: BTreeSet::new(),
            global_changed: false,
        }
    }

    /// `mac` runs at `rates` from now on: its classes (allocated if it has none), or `None`
    /// when every minor is taken (then it runs in the default class, under the global cap).
    fn run_at(&mut self, mac: MacAddr, rates: Rates) -> Option<ClientClasses> {
        let classes = self.classes.of(mac)?;
        if self.desired.clients.insert(classes.minor, rates) != Some(rates) {
            self.changed.insert(classes.minor);
        }
        Some(classes)
    }

    /// `mac` runs no session: its classes are freed (parked by the shaper at the next apply).
    fn stop(&mut self, mac: MacAddr) {
        if let Some(minor) = self.classes.release(mac) {
            self.desired.clients.remove(&minor);
            self.changed.insert(minor);
        }
    }

    /// Takes over the classes a previous run gave `mac` (see [`Classes::adopt`]), at `rates`
    /// when given; the trees hold them already, so nothing is marked changed.
    fn adopt(
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
        }
        true
    }

    fn set_global(&mut self, global: Rates) {
        if self.desired.global != global {
            self.desired.global = global;
            self.global_changed = true;
        }
    }

    /// The minors changed since the last call, to apply; `None` when nothing changed. After a
    /// change of the global caps, possibly none (the shaper sees that change for itself).
    fn take_changes(&mut self) -> Option<BTreeSet<u16>> {
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
    fn reconcile(&mut self, wanted: &BTreeMap<MacAddr, Rates>) -> usize {
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

/// The speed plan's one owner: the [`Plan`] and the shaper that makes the kernel's trees so
/// (desired → diff → apply). The rest of the task says what a client runs at
/// ([`SpeedPlan::run_at`], [`SpeedPlan::stop`]) and when to apply ([`SpeedPlan::apply`]);
/// [`Control::reconcile_speeds`] recomputes the plan from the engine's state now and then and
/// mends any difference.
pub(super) struct SpeedPlan {
    plan: Plan,
    shaper: Shaper,
    /// The trees are not at the desired state (an apply or a rebuild failed): `links.rs`
    /// rebuilds them at every interface check until it works.
    broken: bool,
    /// When the plan was last recomputed from the engine.
    reconciled_at: Instant,
}

impl SpeedPlan {
    pub(super) fn new(shaper: Shaper, config: &Config) -> Self {
        Self {
            plan: Plan::new(config),
            shaper,
            broken: false,
            reconciled_at: Instant::now(),
        }
    }

    /// See [`Plan::run_at`].
    pub(super) fn run_at(&mut self, mac: MacAddr, rates: Rates) -> Option<ClientClasses> {
        self.plan.run_at(mac, rates)
    }

    /// See [`Plan::stop`].
    pub(super) fn stop(&mut self, mac: MacAddr) {
        self.plan.stop(mac);
    }

    /// The classes `mac` has, allocating a pair if it has none.
    pub(super) fn classes_of(&mut self, mac: MacAddr) -> Option<ClientClasses> {
        self.plan.classes.of(mac)
    }

    /// See [`Plan::adopt`].
    pub(super) fn adopt(
        &mut self,
        mac: MacAddr,
        classes: (u32, u32),
        rates: Option<Rates>,
    ) -> bool {
        self.plan.adopt(mac, classes, rates)
    }

    /// New global caps and spare-class target (a reload); applied with the next apply.
    pub(super) fn configure(&mut self, config: &Config) {
        self.plan.set_global(global(config));
        self.shaper.set_classes_ready(classes_ready(config));
    }

    /// Brings the classes changed since the last apply to the desired state (every class
    /// after a change of the global caps, which the shaper sees for itself). On failure (a
    /// tree changed behind hotspotd's back, say) the trees are rebuilt at the next interface
    /// check (`links.rs`), which logs once; what did go in stays.
    pub(super) async fn apply(&mut self) {
        let Some(changed) = self.plan.take_changes() else {
            return;
        };
        if let Err(error) = self
            .shaper
            .apply_changed(&self.plan.desired, &changed)
            .await
        {
            if !self.broken {
                tracing::error!(error = %crate::text::chain(&error), "speed limits could not all be applied; rebuilding the trees");
            }
            self.broken = true;
        }
    }

    /// Makes the trees anew on `lan` and `ifb` (taking over whichever tree is still there) at
    /// the desired state, and keeps the new shaper. On failure the plan stays broken.
    pub(super) async fn rebuild(
        &mut self,
        lan: &str,
        ifb: &str,
        config: &Config,
    ) -> Result<(), ShapingError> {
        let desired = &self.plan.desired;
        let rebuilt = match Shaper::setup(lan, ifb, desired.global).await {
            Ok(mut shaper) => shaper.apply(desired).await.map(|()| shaper),
            Err(error) => Err(error),
        };
        match rebuilt {
            Ok(shaper) => {
                self.shaper = shaper;
                self.shaper.set_classes_ready(classes_ready(config));
                self.broken = false;
                Ok(())
            }
            Err(error) => {
                self.broken = true;
                Err(error)
            }
        }
    }

    /// See [`Plan::reconcile`].
    fn reconcile(&mut self, wanted: &BTreeMap<MacAddr, Rates>) -> usize {
        self.reconciled_at = Instant::now();
        self.plan.reconcile(wanted)
    }

    /// Whether the plan is due to be recomputed from the engine ([`RECONCILE_EVERY`]).
    fn reconcile_due(&self) -> bool {
        self.reconciled_at.elapsed() >= RECONCILE_EVERY
    }

    pub(super) fn is_broken(&self) -> bool {
        self.broken
    }

    /// Clients with classes of their own.
    pub(super) fn client_count(&self) -> usize {
        self.plan.desired.clients.len()
    }

    pub(super) fn shaper(&self) -> &Shaper {
        &self.shaper
    }

    pub(super) fn shaper_mut(&mut self) -> &mut Shaper {
        &mut self.shaper
    }

    pub(super) fn into_shaper(self) -> Shaper {
        self.shaper
    }
}

/// How often the speed plan is recomputed from the engine's state, to mend what a missed
/// change would leave (O(clients), so not at every poll).
const RECONCILE_EVERY: Duration = Duration::from_secs(30);

impl Control {
    /// Recomputes the speed plan from the engine when it is due, and applies what that
    /// mended. Every connected client that runs a session is wanted at its session's speed,
    /// and so is each device sharing a voucher whose holder runs that voucher's session.
    pub(super) async fn reconcile_speeds(&mut self) {
        if !self.speed.reconcile_due() {
            return;
        }
        let mut wanted = BTreeMap::new();
        for (mac, _, running) in self.engine.clients() {
            if running.is_some()
                && self.engine.running_session(mac) == running
                && let Some((down, up)) = self.engine.speed_of(mac)
            {
                let rates = rates(down, up);
                wanted.insert(mac, rates);
                if self.sharing.session_of(mac) == running {
                    for member in self.sharing.members_of(mac) {
                        wanted.insert(member, rates);
                    }
                }
            }
        }
        let mended = self.speed.reconcile(&wanted);
        if mended > 0 {
            tracing::warn!(
                clients = mended,
                "the speed plan differed from the sessions' speeds; mended"
            );
        }
        self.speed.apply().await;
    }
}

/// Mbit/s to kbit/s for the trees.
#[must_use]
pub(super) fn rates(down_mbits: u32, up_mbits: u32) -> Rates {
    Rates {
        down_kbit: u64::from(down_mbits) * KBIT_PER_MBIT,
        up_kbit: u64::from(up_mbits) * KBIT_PER_MBIT,
    }
}

/// The global caps of `config`, as the trees take them.
#[must_use]
pub fn global(config: &Config) -> Rates {
    rates(config.speed.global_down_mbits, config.speed.global_up_mbits)
}

/// How many spare class pairs `config` wants made ahead of need.
#[must_use]
pub fn classes_ready(config: &Config) -> usize {
    usize::try_from(config.speed.classes_ready).unwrap_or(usize::MAX)
}

/// An empty desired state at `config`'s global caps.
#[must_use]
pub(super) fn desired(config: &Config) -> Desired {
    Desired {
        global: global(config),
        clients: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_plan_marks_what_changed_and_an_adopted_class_is_not_a_change() {
        let mut plan = Plan::new(&Config::default());
        assert_eq!(plan.take_changes(), None);
        let a = plan.run_at(A, rates(5, 2)).expect("a minor");
        assert_eq!(plan.take_changes(), Some(BTreeSet::from([a.minor])));
        plan.run_at(A, rates(5, 2));
        assert_eq!(plan.take_changes(), None, "the same rates are no change");
        assert!(plan.adopt(B, (0x0001_0009, 0x0002_0009), Some(rates(1, 1))));
        assert_eq!(
            plan.take_changes(),
            None,
            "the trees hold an adopted class already"
        );
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
        let mut plan = Plan::new(&Config::default());
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

    #[test]
    fn megabits_become_kilobits() {
        assert_eq!(
            rates(5, 2),
            Rates {
                down_kbit: 5_000,
                up_kbit: 2_000
            }
        );
    }
}
