//! Speed limits of running sessions: each connected client gets an HTB class minor, its
//! session's rates go into the desired trees, and its grant names the classes so the eBPF
//! programs put its packets there (`skb->priority`). A client's minor is the one freed most
//! recently, whose class the shaper kept parked (`shaping/pool.rs`), so a sale usually
//! changes an existing class instead of creating one. Side effects: [`SpeedPlan::apply`]
//! hands the changed classes to the shaper's worker; [`Control::name_classes`] writes the
//! classes it confirmed into the clients' entries in `CLIENTS`.

use std::{collections::BTreeMap, time::Duration};

use tokio::{sync::mpsc, time::Instant};

mod confirm;
mod plan;

use confirm::Confirmations;
use plan::ClientClasses;
use plan::Plan;

use super::Control;
use crate::{
    config::Config,
    mac::MacAddr,
    shaping::{Job, Rates, Report, Shaper, ShaperWorker},
};

/// kbit/s in one Mbit/s, as tc counts (1 kbit = 1000 bit).
const KBIT_PER_MBIT: u64 = 1_000;

/// The speed plan's one owner: the [`Plan`], and the shaper's worker that makes the kernel's
/// trees so (desired → diff → apply) on a task of its own (`shaping/worker.rs`), so a slow
/// netlink batch never holds up the control task. The rest of the task says what a client
/// runs at ([`SpeedPlan::run_at`], [`SpeedPlan::stop`]) and when to send the changes
/// ([`SpeedPlan::apply`]); [`Control::shaper_reported`] takes the worker's reports, and
/// [`Control::reconcile_speeds`] recomputes the plan from the engine's state now and then and
/// mends any difference. A grant names a client's classes once the worker confirmed them
/// (`confirm.rs`); [`Control::name_classes`] puts them in when that happens.
pub(super) struct SpeedPlan {
    plan: Plan,
    confirmations: Confirmations,
    worker: ShaperWorker,
    /// Where the worker's reports arrive; taken by `Control::run`.
    reports: Option<mpsc::UnboundedReceiver<Report>>,
    /// The IFB the trees are on, as the last setup or rebuild found it.
    ifb_ifindex: u32,
    classes_ready: usize,
    /// When the plan was last recomputed from the engine.
    reconciled_at: Instant,
}

impl SpeedPlan {
    /// Starts the shaper's worker on `shaper`, whose trees hold no client yet as far as this
    /// run knows (classes a previous run left are adopted, see [`SpeedPlan::adopt`]).
    pub(super) fn new(shaper: Shaper, config: &Config) -> Self {
        let plan = Plan::new(global(config));
        let ifb_ifindex = shaper.ifb_ifindex();
        let (worker, reports) = ShaperWorker::spawn(shaper, plan.desired().clone());
        Self {
            plan,
            confirmations: Confirmations::new(),
            worker,
            reports: Some(reports),
            ifb_ifindex,
            classes_ready: classes_ready(config),
            reconciled_at: Instant::now(),
        }
    }

    /// Where the worker's reports arrive; `None` after the first call.
    pub(super) fn take_reports(&mut self) -> Option<mpsc::UnboundedReceiver<Report>> {
        self.reports.take()
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
        self.plan.classes_of(mac)
    }

    /// The classes a grant of `mac` names: see [`Confirmations::named`].
    pub(super) fn named(&self, mac: MacAddr) -> Option<ClientClasses> {
        self.confirmations.named(&self.plan, mac)
    }

    /// See [`Plan::adopt`]; the trees hold an adopted class, so a grant names it at once.
    pub(super) fn adopt(
        &mut self,
        mac: MacAddr,
        classes: (u32, u32),
        rates: Option<Rates>,
    ) -> bool {
        if !self.plan.adopt(mac, classes, rates) {
            return false;
        }
        if let Some(minor) = self.plan.minor_of(mac) {
            self.confirmations.adopted(minor, mac);
        }
        true
    }

    /// New global caps and spare-class target (a reload); the caps go with the next apply.
    pub(super) fn configure(&mut self, config: &Config) {
        self.plan.set_global(global(config));
        let ready = classes_ready(config);
        if ready != self.classes_ready {
            self.classes_ready = ready;
            self.worker.send(Job::ClassesReady(ready));
        }
    }

    /// Sends the classes changed since the last apply to the worker (every class after a
    /// change of the global caps, which the shaper sees for itself), without waiting for it.
    /// A failure is reported later ([`Control::shaper_reported`]) and the trees are rebuilt
    /// at the next interface check (`links.rs`).
    pub(super) fn apply(&mut self) {
        let Some(changed) = self.plan.take_changes() else {
            return;
        };
        let seq = self.confirmations.sent(&self.plan, &changed);
        let desired = self.plan.desired();
        let minors = changed
            .iter()
            .map(|minor| (*minor, desired.clients.get(minor).copied()))
            .collect();
        self.worker.send(Job::Apply {
            seq,
            global: desired.global,
            minors,
        });
    }

    /// Sends the worker to make the trees anew on `lan` and `ifb` at the desired state,
    /// unless a rebuild is under way (then another follows it). `upload_program` is the
    /// filter's program without TCX (`Kernel::upload_filter_program`, its fd duplicated).
    pub(super) fn rebuild(
        &mut self,
        lan: &str,
        ifb: &str,
        upload_program: Option<(std::os::fd::OwnedFd, &'static str)>,
    ) {
        let Some(seq) = self.confirmations.rebuild_sent(&self.plan) else {
            return;
        };
        self.worker.send(Job::Rebuild {
            seq,
            lan: lan.to_owned(),
            ifb: ifb.to_owned(),
            desired: self.plan.desired().clone(),
            classes_ready: self.classes_ready,
            upload_program,
        });
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

    /// Whether the trees are not at the desired state (an apply or a rebuild failed).
    pub(super) fn is_broken(&self) -> bool {
        self.confirmations.is_broken()
    }

    /// Whether a rebuild was sent and not yet reported.
    pub(super) fn is_rebuilding(&self) -> bool {
        self.confirmations.is_rebuilding()
    }

    /// Clients with classes of their own.
    pub(super) fn client_count(&self) -> usize {
        self.plan.desired().clients.len()
    }

    /// Where uploads are redirected to be shaped.
    pub(super) fn ifb_ifindex(&self) -> u32 {
        self.ifb_ifindex
    }

    /// See [`Confirmations::awaiting`].
    pub(super) fn awaiting_classes(&self) -> usize {
        self.confirmations.awaiting(&self.plan)
    }

    /// Spare classes, as the worker last counted them.
    pub(super) fn spare_classes(&self) -> usize {
        self.worker.spare_classes()
    }

    /// Lets the worker finish the jobs sent (so what was sold is in the trees) and stops it.
    pub(super) async fn finish(self) {
        self.worker.finish().await;
    }
}

/// How often the speed plan is recomputed from the engine's state, to mend what a missed
/// change would leave (O(clients), so not at every poll).
const RECONCILE_EVERY: Duration = Duration::from_secs(30);

impl Control {
    /// Recomputes the speed plan from the engine when it is due, and applies what that
    /// mended. Every connected client that runs a session is wanted at its session's speed,
    /// and so is each device sharing a voucher whose holder runs that voucher's session.
    pub(super) fn reconcile_speeds(&mut self) {
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
        self.speed.apply();
    }

    /// Takes a report of the shaper's worker: the classes it confirmed go into their
    /// clients' entries; a failure marks the trees for a rebuild (`links.rs`); a rebuild's
    /// end points uploads at the new IFB.
    pub(super) fn shaper_reported(&mut self, report: Report) {
        let speed = &mut self.speed;
        match report {
            Report::Applied { seq, result } => {
                let (was_broken, confirmed) =
                    speed
                        .confirmations
                        .applied(&speed.plan, seq, result.is_ok());
                if let Err(error) = &result
                    && !was_broken
                {
                    tracing::error!(error = %crate::text::chain(error), "speed limits could not all be applied; rebuilding the trees");
                }
                self.name_classes(&confirmed);
            }
            Report::Rebuilt { seq, result, took } => {
                let (was_broken, confirmed) =
                    speed
                        .confirmations
                        .rebuilt(&speed.plan, seq, result.is_ok());
                match result {
                    Ok(ifb_ifindex) => {
                        speed.ifb_ifindex = ifb_ifindex;
                        if let Err(error) = self.kernel.set_ifb(ifb_ifindex) {
                            tracing::error!(error = %crate::text::chain(&error), "cannot redirect uploads to the new IFB");
                        }
                        tracing::info!(
                            clients = self.speed.client_count(),
                            took_ms = took.as_millis(),
                            "speed limits rebuilt"
                        );
                        self.name_classes(&confirmed);
                    }
                    Err(error) => {
                        if !was_broken {
                            tracing::error!(error = %crate::text::chain(&error), "cannot rebuild the speed limits; clients pass unshaped until it works, retrying at every interface check");
                        }
                    }
                }
            }
        }
    }

    /// Puts confirmed classes into their clients' entries in the kernel: from the next packet
    /// on, each client is in its own classes. A client without a grant gets them with its
    /// next grant.
    fn name_classes(&mut self, confirmed: &[(MacAddr, ClientClasses)]) {
        for (mac, classes) in confirmed {
            if let Err(error) = self.kernel.set_classes(mac.key(), classes.down, classes.up) {
                tracing::error!(%mac, error = %crate::text::chain(&error), "cannot put the client in its speed classes; it runs in the default class");
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
