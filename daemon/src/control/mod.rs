//! The one task that owns the daemon's mutable state — the kernel's maps, the client table, the
//! session engine, and the owners beside them (the speed plan, what is unsaved, the LAN watch,
//! telemetry; docs/architecture.md, "Who owns what") — and takes poll ticks, gate events and
//! API commands in turn, so nothing needs a lock. The data path: kernel counters → deltas
//! (`accounting`) → the engine → its effects on the kernel (grants), the trees (`speed`), the
//! store (saves) and the log (events). Side effects: reads the eBPF maps and the neighbour
//! table every `accounting.poll_interval_ms` on the thread of `reader` (so the task answers the
//! API meanwhile), the box's addresses when netlink says they changed (`links`), writes grants
//! and those addresses to the kernel, saves sessions.

mod addresses;
mod apply;
mod captive;
mod commands;
mod deadlines;
mod devices;
mod garden;
mod history;
mod links;
mod portal;
mod radius;
mod reader;
mod reload;
mod restore;
mod resume;
mod save;
mod speed;
mod telemetry;
mod trials;
mod views;
mod vouchers;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::mpsc,
    time::{Instant, MissedTickBehavior},
};
use tokio_util::sync::CancellationToken;

pub use crate::trials::TrialError;
pub use crate::vouchers::RedeemError;
pub use commands::{ClientAt, Command, CommandError, Commands, ControlGone, channel};
pub use resume::{RedeemBy, Redeemed, ResumeCookie, ResumeOffer};
pub use speed::{classes_ready, global as global_rates};
pub use vouchers::{NewVouchers, VoucherError, VoucherRef, VoucherView};

use hotspotd_common::Usage;

use crate::{
    accounting::{ClientTable, Clocks, CounterMap},
    alerts::Alerts,
    bpf::{BpfError, Kernel},
    clock::{Reading, Step, WallClock},
    config::Config,
    events::Events,
    mac::MacAddr,
    netlink::{NeighbourReader, Netlink, NetlinkError},
    sessions::engine::{Effect, Engine, Now, SessionId},
    shaping::Shaper,
    store::{SessionStore, StoreError},
};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Bpf(#[from] BpfError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot watch the kernel's gate events")]
    Events(#[source] std::io::Error),
    #[error(transparent)]
    Read(#[from] reader::ReadError),
    #[error("cannot start the thread that reads the kernel's counters")]
    ReaderThread(#[source] std::io::Error),
    #[error("the control task's channels were taken by an earlier run")]
    Channels,
}

/// What the control task is given to own.
pub struct Parts {
    pub kernel: Kernel,
    pub netlink: Netlink,
    pub lan_ifindex: u32,
    /// The kernel's `HZ`.
    pub hz: u32,
    /// Where the sessions live (SQLite, or any other [`SessionStore`]).
    pub store: Arc<dyn SessionStore>,
    pub events: Events,
    /// What the watchers beside the sessions counted, for `/metrics`.
    pub alerts: Arc<Alerts>,
    pub shaper: Shaper,
    /// What voucher codes are kept under (`crate::vouchers`).
    pub voucher_key: crate::vouchers::VoucherKey,
}

/// The daemon's state and its one owner.
pub struct Control {
    config: Arc<Config>,
    kernel: Kernel,
    netlink: Netlink,
    /// The LAN interface's index, followed when it is recreated (`links.rs`); the reader
    /// reads its neighbour table.
    lan_ifindex: u32,
    table: ClientTable,
    engine: Engine,
    store: Arc<dyn SessionStore>,
    /// The kernel's `HZ`, to turn durations into the programs' jiffies.
    hz: u32,
    /// Which pinned maps the counter baselines refer to (see `restore`).
    kernel_epoch: u64,
    boot_id: String,
    /// What the store has not been given yet, and what the next save measures from.
    saving: save::Saving,
    /// When each running session with a deadline ends: the task wakes then and chains to
    /// the next session before the kernel cuts the client off.
    deadlines: deadlines::Deadlines,
    /// Where the engine's events go: the API's stream, `events.exec`.
    events: Events,
    /// What the watchers beside the sessions counted (MAC moves, refused API tokens,
    /// neighbour tables), shown with the metrics.
    alerts: Arc<Alerts>,
    /// What the box keeps of the LAN poll by poll: addresses, counter room, warnings.
    lan: addresses::LanWatch,
    /// Speed limits: which client has which classes, what the trees should hold, the shaper.
    speed: speed::SpeedPlan,
    /// What the interface checks found, and when the box's addresses were last read (see
    /// `links.rs`).
    links: links::LinkWatch,
    /// During the restore only: the running sessions whose grant the kernel still holds from
    /// the previous run, in the classes this run adopted. Those grants stay as they are —
    /// their budget and deadline are the exact ones — where rewriting them would race with
    /// the packets passing meanwhile.
    held_grants: BTreeMap<MacAddr, SessionId>,
    /// The daemon's wall clock (see `crate::clock`); continued from the last save at restore.
    clock: WallClock,
    /// Reads the counters and the neighbour table for each poll, on a thread of its own.
    reader: reader::Reader,
    /// Where the reader's readings arrive; taken by `run`.
    readings: Option<mpsc::Receiver<reader::Read>>,
    /// A poll was asked for while a reading was in flight: one more follows it, so what
    /// asked (a gate event, a deadline) sees counters read after it.
    poll_again: bool,
    /// What the polls measured, for `/metrics` and `/v1/status`.
    telemetry: telemetry::Telemetry,
    /// Stored sessions not loaded at start because a value was out of range (`restore`).
    set_aside: Vec<crate::views::SetAsideView>,
    /// Every voucher, loaded at restore.
    vouchers: vouchers::VoucherBook,
    /// The devices sharing vouchers, indexed from `vouchers`.
    sharing: devices::Sharing,
    /// Devices whose voucher moved to another device lately, for their landing page.
    moved_away: devices::MovedAway,
    /// Who had a free trial when, loaded at restore (`trials.rs`).
    trials: trials::Trials,
    /// The walled garden's host names and the addresses learned for them (`garden.rs`).
    garden: crate::garden::Garden,
    /// RADIUS logins in flight and the sessions RADIUS sold (`radius.rs`).
    radius: radius::Radius,
}

impl Control {
    /// Restores the sessions from the store and reconciles the kernel's grants with them
    /// (see `restore.rs`), before the programs are attached.
    pub async fn start(config: Arc<Config>, parts: Parts) -> Result<Self, ControlError> {
        let Parts {
            kernel,
            netlink,
            lan_ifindex,
            hz,
            store,
            events,
            alerts,
            shaper,
            voucher_key,
        } = parts;
        let config_for_garden = Arc::clone(&config);
        let engine = Engine::new(config.engine());
        let neighbours = NeighbourReader::open()
            .map_err(|source| ControlError::Netlink(NetlinkError::Open(source)))?;
        let maps = reader::MapReaders {
            usage: kernel.usage_reader()?,
            seen: kernel.seen_reader()?,
            addresses: kernel.address_reader()?,
        };
        let (reader, readings) =
            reader::Reader::spawn(maps, neighbours).map_err(ControlError::ReaderThread)?;
        let speed = speed::SpeedPlan::new(shaper, &config);
        let mut control = Self {
            config,
            kernel,
            netlink,
            lan_ifindex,
            table: ClientTable::default(),
            engine,
            store,
            hz,
            kernel_epoch: 0,
            boot_id: String::new(),
            saving: save::Saving::new(),
            deadlines: deadlines::Deadlines::default(),
            events,
            alerts,
            lan: addresses::LanWatch::default(),
            speed,
            links: links::LinkWatch::default(),
            held_grants: BTreeMap::new(),
            clock: WallClock::start(Reading::now(), None).0,
            reader,
            readings: Some(readings),
            poll_again: false,
            telemetry: telemetry::Telemetry::default(),
            set_aside: Vec::new(),
            vouchers: vouchers::VoucherBook::new(voucher_key),
            sharing: devices::Sharing::default(),
            moved_away: devices::MovedAway::default(),
            trials: trials::Trials::default(),
            garden: crate::garden::Garden::new(&config_for_garden),
            radius: radius::Radius::default(),
        };
        control.restore().await?;
        control.start_garden();
        Ok(control)
    }

    /// Reads both clocks the engine works with: `mono` is `CLOCK_MONOTONIC`, absolute, so a
    /// restarted daemon can compare it with the reading of its last save (same boot only);
    /// `wall` is the daemon's wall clock. A step of the system clock since the last reading
    /// moves the sessions' recorded moments first (see `crate::clock`), so that nothing the
    /// engine then decides is decided on a jumped clock.
    fn now(&mut self) -> Now {
        let reading = Reading::now();
        let (wall, step) = self.clock.read(reading);
        if let Some(step) = step {
            self.follow_step(step);
        }
        Now {
            mono: reading.mono,
            wall,
        }
    }

    /// Moves the sessions' recorded moments with a step of the wall clock; they are saved
    /// with the next save.
    fn follow_step(&mut self, step: Step) {
        let effects = self.engine.shift_wall(step);
        tracing::warn!(
            by_secs = step.by.num_seconds(),
            only_after = ?step.after,
            sessions = effects.len(),
            "the wall clock stepped; the sessions' start and sale times move with it, so their expiry counts the time that really passed"
        );
        for effect in effects {
            if let Effect::Save(id) = effect {
                self.saving.unsaved_sessions.insert(id);
            }
        }
    }

    /// The kernel, to attach the programs once the state is restored.
    pub fn kernel_mut(&mut self) -> &mut Kernel {
        &mut self.kernel
    }

    /// Runs until `shutdown`, then takes a last reading, saves everything, lets the shaper's
    /// worker finish and hands the kernel back.
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        shutdown: CancellationToken,
    ) -> Result<Kernel, ControlError> {
        let ring = self.kernel.take_events()?;
        // SAFETY: the ring owns its map's fd, which stays open and the same for as long as
        // the ring (now inside the AsyncFd) lives.
        let mut events = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|error| ControlError::Events(error.into_parts().1))?;
        let answers = self.kernel.take_garden_answers()?;
        // SAFETY: as for the events above.
        let mut answers = unsafe { AsyncFd::register_with_interest(answers, Interest::READABLE) }
            .map_err(|error| ControlError::Events(error.into_parts().1))?;
        let mut readings = self.readings.take().ok_or(ControlError::Channels)?;
        let mut shaper_reports = self.speed.take_reports().ok_or(ControlError::Channels)?;
        let mut logins = self.radius.take_answers().ok_or(ControlError::Channels)?;
        let mut coas = self.radius.take_coa().ok_or(ControlError::Channels)?;
        let mut period = self.config.poll_interval();
        let mut ticks = poll_ticks(period);
        let mut link_checks = poll_ticks(links::CHECK_INTERVAL);
        let mut link_changes = links::watch();
        loop {
            let next_deadline = self.deadlines.first();
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(read) = readings.recv() => self.take_read(read).await,
                Some(report) = shaper_reports.recv() => self.shaper_reported(report),
                () = sleep_until(next_deadline) => {
                    self.poll();
                    // A deadline the poll does not replace has been dealt with; a past one left
                    // in place would wake the loop again at once.
                    self.deadlines.remove_passed(Instant::now());
                }
                ready = events.readable_mut() => {
                    // A budget or deadline ran out: account now, so the next session starts
                    // at once rather than at the next tick.
                    if let Ok(mut guard) = ready {
                        drain(guard.get_inner_mut());
                        guard.clear_ready();
                    }
                    self.poll();
                }
                tick = ticks.tick() => {
                    self.expire_garden();
                    self.reconcile_speeds();
                    let late = tick.elapsed();
                    if late > period {
                        tracing::warn!(late_ms = late.as_millis(), "poll ran late; ticks were skipped");
                    }
                    self.poll();
                }
                Some(()) = links::changed(link_changes.as_mut()) => {
                    self.check_links().await;
                    self.sync_box_addresses().await;
                }
                _ = link_checks.tick() => self.check_links().await,
                Some(answer) = logins.recv() => self.finish_login(answer).await,
                Some(request) = coas.recv() => self.handle_coa(request).await,
                Some(command) = commands.recv() => {
                    self.handle(command).await;
                    // A reload may have changed the poll interval.
                    if self.config.poll_interval() != period {
                        period = self.config.poll_interval();
                        ticks = poll_ticks(period);
                    }
                }
                ready = answers.readable_mut() => {
                    // DNS answers of the box's resolver: the garden learns its names' addresses
                    // before the client, which has the same answer, connects. Last, so a flood of
                    // answers cannot hold up the polls and the API (`learn_garden` takes turns).
                    if let Ok(mut guard) = ready
                        && !self.learn_garden(guard.get_inner_mut())
                    {
                        guard.clear_ready();
                    }
                }
            }
        }
        // The last reading is taken after everything before the shutdown: the one in flight
        // is accounted first.
        self.poll_again = false;
        for fresh in [false, true] {
            if fresh && !self.start_reading() {
                break;
            }
            while self.reader.in_flight() {
                let Some(read) = readings.recv().await else {
                    break;
                };
                self.take_read(read).await;
            }
        }
        self.save_all();
        self.speed.finish().await;
        Ok(self.kernel)
    }

    /// Asks the reader for a poll's reading; accounting follows when it arrives. One asked
    /// for while a reading is in flight follows that one.
    fn poll(&mut self) {
        if self.reader.in_flight() {
            self.poll_again = true;
        } else {
            self.start_reading();
        }
    }

    /// Returns whether a reading started. The neighbour table is read from the LAN interface
    /// as it is now, and not at all while it is missing (`links.rs`).
    fn start_reading(&mut self) -> bool {
        let neighbours_of = (!self.links.lan_missing).then_some(self.lan_ifindex);
        let with_addresses = self
            .lan
            .addresses_read_at
            .is_none_or(|read| read.elapsed() >= ADDRESSES_EVERY);
        if with_addresses {
            self.lan.addresses_read_at = Some(Instant::now());
        }
        match self.reader.start(neighbours_of, with_addresses) {
            Ok(started) => started,
            Err(error) => {
                tracing::error!(error = %crate::text::chain(&error), "cannot read the kernel's counters");
                false
            }
        }
    }

    /// Carries out what the reader read: counters are accounted (then what needs saving is
    /// saved), the neighbour table becomes the clients' addresses.
    async fn take_read(&mut self, read: reader::Read) {
        match read {
            reader::Read::Counters(mut counters) => {
                let result = match std::mem::replace(&mut counters.result, Ok(())) {
                    Ok(()) => self.account(&mut counters).await,
                    Err(error) => Err(error.into()),
                };
                if let Err(error) = result {
                    tracing::warn!(error = %crate::text::chain(&error), "reading the kernel's counters failed; retrying next poll");
                }
                self.telemetry.poll_took(counters.started.elapsed());
                self.reader.recycle(reader::Read::Counters(counters));
                if std::mem::take(&mut self.poll_again) {
                    self.poll();
                }
                if self.saving.last_full.elapsed() >= self.config.save_interval()
                    || self.has_unsaved()
                {
                    self.save();
                }
            }
            reader::Read::Neighbours(mut neighbours) => {
                if let Err(error) = std::mem::replace(&mut neighbours.result, Ok(())) {
                    tracing::warn!(error = %crate::text::chain(&error), "reading the neighbour table failed; retrying next poll");
                }
                self.report_poisoned(&neighbours.poisoned);
                self.reader.recycle(reader::Read::Neighbours(neighbours));
            }
        }
    }

    /// Turns a reading of the counters into per-client totals and feeds what moved to the engine; then lets
    /// time pass in the engine and carries out what it decided.
    async fn account(&mut self, counters: &mut reader::Counters) -> Result<(), ControlError> {
        if self.links.box_addresses_due() {
            self.sync_box_addresses().await;
        }
        self.telemetry.usage_entries = counters.usage.len();
        self.telemetry.seen_entries = counters.seen.len();
        self.telemetry.address_entries = counters.addresses.len();
        let now = self.now();
        let clocks = Clocks {
            jiffies: self.kernel.jiffies()?,
            hz: self.hz,
            wall: now.wall,
            read_at: counters.started.into_std(),
        };
        // A delta is reported only when a counter moved: every client in it was active.
        let paid = self.table.apply(&mut counters.usage, clocks);
        let seen = self
            .table
            .apply_map(CounterMap::Seen, &mut counters.seen, clocks);
        self.mac_logins(&seen);
        let mut traffic = billable_by_mac(&paid, &seen);
        self.sharing.fold(&mut traffic);
        let mut effects = self.engine.traffic_sorted(&traffic, now);
        let engine = &self.engine;
        if self.table.forget_gone(|mac| engine.client(mac).is_some()) > 0 {
            self.telemetry.clients_changed();
        }
        // The reading may have brought new clients.
        self.telemetry.clients_changed();
        effects.extend(self.engine.tick(now));
        self.apply(effects, now).await;
        self.radius_interims(now);
        self.release_counters(&counters.usage);
        if counters.with_addresses {
            self.learn_addresses(&counters.addresses, clocks, now);
        }
        self.warn_if_seen_full();

        self.telemetry.kernel = self.kernel.stats()?;
        Ok(())
    }
}

/// Each client's billable bytes (up + down) of a poll, from the deltas of both counter maps
/// (each in MAC order), in MAC order, each MAC once.
fn billable_by_mac(paid: &[(MacAddr, Usage)], seen: &[(MacAddr, Usage)]) -> Vec<(MacAddr, u64)> {
    let mut traffic: Vec<(MacAddr, u64)> = Vec::with_capacity(paid.len() + seen.len());
    let (mut paid, mut seen) = (paid.iter().peekable(), seen.iter().peekable());
    loop {
        let next = match (paid.peek(), seen.peek()) {
            (Some(a), Some(b)) if a.0 <= b.0 => paid.next(),
            (Some(_) | None, Some(_)) => seen.next(),
            (Some(_), None) => paid.next(),
            (None, None) => break,
        };
        let Some((mac, delta)) = next else { break };
        let bytes = delta.up_bytes + delta.down_bytes;
        match traffic.last_mut() {
            Some((last, total)) if last == mac => *total += bytes,
            _ => traffic.push((*mac, bytes)),
        }
    }
    traffic
}

/// How often a poll reads `ADDRESSES`: the clients' addresses and their moves shown by the
/// API are this old at most (a portal's `?ip=` lookup reads the kernel at once). At 10,000
/// clients the read and the merge cost several milliseconds, too much for every poll.
const ADDRESSES_EVERY: Duration = Duration::from_secs(2);

/// Poll ticks every `period`; a late tick is skipped, not made up in a burst.
fn poll_ticks(period: Duration) -> tokio::time::Interval {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    ticks
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Empties the gate-event ring. The events only say "account now"; the poll that follows
/// reads what happened from the counters.
fn drain(events: &mut RingBuf<MapData>) {
    while events.next().is_some() {}
}
