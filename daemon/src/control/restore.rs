//! Start-up: takes over what a previous run left. Sessions and client states come from the
//! store. Whether the kernel's pinned maps are still the ones the store's counter baselines
//! refer to decides what was used meanwhile:
//! - same boot, same maps (the daemon crashed or was restarted): the kernel kept counting and
//!   enforcing, so the traffic since the last save is billed from the counters — before
//!   anything is decided or granted again, so a session that ran out meanwhile ends and its
//!   successor starts with what is really left — and a session the kernel kept running is
//!   credited the time since the last save;
//! - otherwise (a reboot, or the kernel state was removed): nothing is credited for the gap —
//!   the box's downtime is never billed — and running clients are resumed.
//!
//! Side effects: reads the counters and grants, writes `CONFIG` (the maps' epoch), grants,
//! and a save.

use std::{collections::BTreeMap, time::Duration};

use hotspotd_common::{Grant, MacKey, NO_DEADLINE, UNLIMITED_BYTES};

use chrono::TimeDelta;

use super::{Control, ControlError, apply::KERNEL_DEADLINE_SLACK};
use crate::{
    accounting::Clocks,
    clock::{self, Reading, WallClock},
    mac::MacAddr,
    sessions::SessionData,
    sessions::engine::{ClientState, RestoredClient, SessionId},
    store::{Loaded, SavedMeta, StoredClient, StoredSession},
};

/// Where the kernel says which boot this is.
const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

impl Control {
    pub(super) async fn restore(&mut self) -> Result<(), ControlError> {
        std::fs::read_to_string(BOOT_ID_PATH)
            .unwrap_or_default()
            .trim()
            .clone_into(&mut self.boot_id);
        self.kernel_epoch = self.kernel.epoch()?;
        let Loaded {
            sessions,
            clients,
            meta,
            vouchers,
            trials,
        } = self.store.load_all();
        self.vouchers.load(vouchers);
        self.index_devices();
        self.load_trials(trials);
        let mut sessions = self.set_aside_out_of_range(sessions);
        let moved = self.continue_clock(meta.as_ref(), &mut sessions);
        let now = self.now();
        let jiffies = self.kernel.jiffies()?;

        self.table
            .restore_totals(clients.iter().map(|client| (client.mac, client.totals)));
        // The history counted up to these totals in the previous run.
        self.saving.usage_marks.seed(
            clients.iter().map(|client| (client.mac, client.totals)),
            now,
        );
        let survived = meta.as_ref().is_some_and(|meta| {
            meta.kernel_epoch == self.kernel_epoch && meta.boot_id == self.boot_id
        });
        let passed = if survived {
            let mut passed = self.passed_since_save(&clients, jiffies, now.wall)?;
            // What the devices sharing a voucher passed is billed to its session.
            let members: Vec<_> = passed
                .keys()
                .filter_map(|mac| Some((*mac, self.sharing.holder_of(*mac)?)))
                .collect();
            for (member, holder) in members {
                let bytes = passed.remove(&member).unwrap_or(0);
                *passed.entry(holder).or_insert(0) += bytes;
            }
            passed
        } else {
            BTreeMap::new()
        };
        // Read after the counters, so each budget is at least as spent as they say.
        let kernel_grants: BTreeMap<_, _> = self.kernel.grants()?.into_iter().collect();
        tracing::info!(
            sessions = sessions.len(),
            clients = clients.len(),
            kernel_state_kept = survived,
            "restoring sessions"
        );
        let meanwhile = Meanwhile {
            survived,
            now_mono: now.mono,
            last_save_mono_ns: meta.as_ref().map(|meta| meta.saved_at_mono_ns),
            jiffies,
            hz: self.hz,
            passed,
            kernel_grants: &kernel_grants,
            sessions: &sessions,
            bytes_per_mb: self.config.accounting.bytes_per_mb,
        };
        // Devices on vouchers' slots are not the engine's: their rows keep their counters,
        // and what they passed is in their holder's bill above.
        let restored = clients
            .iter()
            .filter(|client| self.sharing.holder_of(client.mac).is_none())
            .map(|client| meanwhile.client(client))
            .collect();
        let effects = self.engine.restore(sessions, restored, now);
        if survived {
            self.hold_kernel_grants(&kernel_grants, &clients);
            self.adopt_member_classes(&kernel_grants);
        }
        self.apply(effects, now).await;
        self.held_grants.clear();
        self.saving.unsaved_sessions.extend(moved);

        // Grants of clients the store does not know as running (a crash between a grant and
        // its save) would let them through for free.
        // Devices sharing a voucher follow their holder below.
        for mac in kernel_grants.keys() {
            if self.engine.client_state((*mac).into()) != ClientState::Connected
                && self.sharing.holder_of((*mac).into()).is_none()
            {
                self.kernel.remove_grant(*mac)?;
            }
        }
        let holders: std::collections::BTreeSet<_> = kernel_grants
            .keys()
            .filter_map(|mac| self.sharing.holder_of((*mac).into()))
            .collect();
        for holder in holders {
            self.follow_holder(holder);
        }
        // Before the save below lets go of the sessions that ended while hotspotd was away:
        // their RADIUS Stop is sent from what the engine still holds of them.
        self.open_radius();
        // Every client's row anew: a row this run does not rewrite must not keep a baseline
        // of the counters of another boot or of maps gone since.
        self.save_all();
        Ok(())
    }
}

impl Control {
    /// Keeps the stored sessions the rules can work on, and sets aside (in the store, not
    /// loaded, shown by `/v1/status`) any with a value out of range — written by hand or by
    /// another program into the database — so that no record can stop the daemon from
    /// starting.
    fn set_aside_out_of_range(&mut self, sessions: Vec<StoredSession>) -> Vec<StoredSession> {
        let (usable, out_of_range): (Vec<_>, Vec<_>) = sessions
            .into_iter()
            .partition(|stored| stored.data.check_ranges().is_ok());
        for stored in out_of_range {
            let reason = stored
                .data
                .check_ranges()
                .err()
                .map(|error| error.to_string())
                .unwrap_or_default();
            tracing::error!(
                id = stored.id,
                mac = %stored.mac,
                %reason,
                "a stored session is out of range and was set aside: it stays in the database but is not served; correct or remove the row (hotspotctl status lists it)"
            );
            self.set_aside.push(crate::views::SetAsideView {
                id: stored.id,
                mac: stored.mac,
                reason,
            });
        }
        usable
    }

    /// Continues the daemon's wall clock from the last save (see `crate::clock`). If the
    /// system clock stepped while the daemon was down, or was set since a reboot, the stored
    /// sessions' moments move with it before anything is decided on them; returns those
    /// that moved.
    fn continue_clock(
        &mut self,
        meta: Option<&SavedMeta>,
        sessions: &mut [StoredSession],
    ) -> Vec<SessionId> {
        let saved = meta.map(|meta| clock::Saved {
            wall: meta.saved_at_wall,
            mono: Duration::from_nanos(meta.saved_at_mono_ns),
            ahead: TimeDelta::nanoseconds(meta.clock_ahead_ns),
            same_boot: meta.boot_id == self.boot_id,
        });
        let (clock, step) = WallClock::start(Reading::now(), saved);
        self.clock = clock;
        let Some(step) = step else {
            return Vec::new();
        };
        let moved: Vec<SessionId> = sessions
            .iter_mut()
            .filter_map(|stored| stored.data.follow_step(&step).then_some(stored.id))
            .collect();
        tracing::warn!(
            by_secs = step.by.num_seconds(),
            only_after = ?step.after,
            sessions = moved.len(),
            "the wall clock stepped while hotspotd was down; the sessions' start and sale times move with it"
        );
        moved
    }

    /// Billable bytes the kernel let through since the last save, per client; from here on
    /// the client table counts from this reading.
    fn passed_since_save(
        &mut self,
        clients: &[StoredClient],
        jiffies: u64,
        wall: chrono::DateTime<chrono::Utc>,
    ) -> Result<BTreeMap<MacAddr, u64>, ControlError> {
        self.table
            .restore_baselines(clients.iter().map(|client| (client.mac, client.baseline)));
        let read_at = std::time::Instant::now();
        let mut readings = self.kernel.usage()?;
        // Clients without room in `USAGE` carry nothing billable; what `SEEN` holds now
        // counts as counted (its baselines are not saved).
        self.table.restore_seen(&self.kernel.seen()?);
        let clocks = Clocks {
            jiffies,
            hz: self.hz,
            wall,
            read_at,
        };
        Ok(self
            .table
            .apply(&mut readings, clocks)
            .into_iter()
            .map(|(mac, delta)| (mac, delta.up_bytes + delta.down_bytes))
            .collect())
    }

    /// Keeps in place the grants of sessions the kernel ran all along, adopting their
    /// classes (see `held_grants`).
    fn hold_kernel_grants(
        &mut self,
        kernel_grants: &BTreeMap<MacKey, Grant>,
        clients: &[StoredClient],
    ) {
        for client in clients {
            if client.state != ClientState::Connected {
                continue;
            }
            let Some(grant) = kernel_grants.get(&client.mac.key()) else {
                continue;
            };
            if Some(grant.session_id) == client.session_id
                && self
                    .speed
                    .adopt(client.mac, (grant.class_down, grant.class_up), None)
            {
                self.held_grants.insert(client.mac, grant.session_id);
            }
        }
    }
}

/// What happened while the daemon was down, as far as the kernel tells.
struct Meanwhile<'a> {
    /// The kernel's maps are the ones the last save's baselines refer to.
    survived: bool,
    /// `CLOCK_MONOTONIC` now.
    now_mono: Duration,
    /// `CLOCK_MONOTONIC` at the last save, for a client row of an older release that has no
    /// time of its own.
    last_save_mono_ns: Option<u64>,
    jiffies: u64,
    hz: u32,
    /// Billable bytes each client passed since the last save.
    passed: BTreeMap<MacAddr, u64>,
    kernel_grants: &'a BTreeMap<MacKey, Grant>,
    sessions: &'a [StoredSession],
    bytes_per_mb: u64,
}

impl Meanwhile<'_> {
    /// `CLOCK_MONOTONIC` since the client's row (and its running session's record) was
    /// saved: a change of state saves only the clients it changed, so each row has its own.
    fn downtime(&self, client: &StoredClient) -> Duration {
        let saved_ns = Some(client.saved_at_mono_ns)
            .filter(|ns| *ns != 0)
            .or(self.last_save_mono_ns);
        saved_ns.map_or(Duration::ZERO, |ns| {
            self.now_mono.saturating_sub(Duration::from_nanos(ns))
        })
    }

    /// A stored client as the engine takes it back, with the time and traffic the kernel
    /// let it use meanwhile.
    fn client(&self, client: &StoredClient) -> RestoredClient {
        let pause_reason = client
            .pause_reason
            .filter(|_| client.state == ClientState::Paused);
        let grant = self.kernel_grants.get(&client.mac.key());
        // The kernel ran it all along only if its grant is still there.
        let kept_running = grant.filter(|grant| {
            client.state == ClientState::Connected && Some(grant.session_id) == client.session_id
        });
        let state = client.state;
        let credit = match kept_running {
            Some(grant) if self.survived => {
                let data = self
                    .sessions
                    .iter()
                    .find(|stored| stored.id == grant.session_id)
                    .map(|stored| &stored.data);
                kept_running_credit(grant, data, self.downtime(client), self.jiffies, self.hz)
            }
            _ => Duration::ZERO,
        };
        RestoredClient {
            mac: client.mac,
            state,
            session_id: client.session_id,
            pause_reason,
            credit,
            billed: billed_to(
                client,
                self.passed.get(&client.mac).copied().unwrap_or(0),
                grant,
                self.sessions,
                self.bytes_per_mb,
            ),
        }
    }
}

/// Which sessions the `passed` bytes a client's counters moved since the last save went to.
/// Normally all to the session the store says it was running. If the kernel's grant names
/// another of its sessions, the daemon granted that one after the last save (a chain, or a
/// connect) and died before saving: that session gets what its grant spent, the stored one
/// the rest.
fn billed_to(
    client: &StoredClient,
    passed: u64,
    grant: Option<&Grant>,
    sessions: &[StoredSession],
    bytes_per_mb: u64,
) -> Vec<(SessionId, u64)> {
    if passed == 0 {
        return Vec::new();
    }
    let newer = grant.filter(|grant| Some(grant.session_id) != client.session_id);
    let Some(grant) = newer else {
        return client
            .session_id
            .map(|id| (id, passed))
            .into_iter()
            .collect();
    };
    let granted = sessions
        .iter()
        .find(|stored| stored.id == grant.session_id && stored.mac == client.mac)
        .and_then(|stored| {
            let data = &stored.data;
            data.bytes_left(data.data_cons_bytes(bytes_per_mb), bytes_per_mb)
        })
        .filter(|_| grant.bytes_left != UNLIMITED_BYTES);
    let spent = match (granted, client.session_id) {
        // The stored session's data went on until the new grant; what the grant spent is
        // its budget then, less what is left of it (a budget overspent by dropped packets
        // is bounded by what passed).
        (Some(granted), Some(_)) => {
            let left = u64::try_from(grant.bytes_left.max(0)).unwrap_or(0);
            granted.saturating_sub(left).min(passed)
        }
        // The client ran nothing else since the last save.
        (_, None) => passed,
        // A grant that does not count data tells nothing about the split.
        (None, Some(_)) => 0,
    };
    [(grant.session_id, spent)]
        .into_iter()
        .chain(client.session_id.map(|id| (id, passed - spent)))
        .filter(|(_, bytes)| *bytes > 0)
        .collect()
}

/// How far beyond the time since the last save a credit read from the kernel's deadline may
/// go: the fraction of a second not yet in `time_cons`, plus the moments between the last
/// credit and the save.
const CARRY_AT_MOST: Duration = Duration::from_millis(1_500);

/// The running time a session the kernel kept running used since the last save. The
/// kernel's deadline is the truth (rule 5): what the session had left at the save, less what
/// the deadline leaves now, also counts the fraction of a second that the saved whole
/// seconds leave out — otherwise lost at every crash. A deadline that does not fit the time
/// since the save (set by expiry rather than time, or none) gives way to that time.
fn kept_running_credit(
    grant: &Grant,
    data: Option<&SessionData>,
    downtime: Duration,
    jiffies: u64,
    hz: u32,
) -> Duration {
    let Some(time_left_secs) = data.and_then(SessionData::time_left_secs) else {
        return downtime;
    };
    if grant.deadline_jiffies == NO_DEADLINE || hz == 0 {
        return downtime;
    }
    let ticks_left = grant.deadline_jiffies.saturating_sub(jiffies);
    let tick = Duration::from_nanos(1_000_000_000 / u64::from(hz));
    // Every deadline was set `KERNEL_DEADLINE_SLACK` and a tick late (apply.rs); without
    // them the rest rounds down to whole ticks, so the credit is never more than was used.
    let kernel_left = Duration::from_nanos(
        u64::try_from(u128::from(ticks_left) * 1_000_000_000 / u128::from(hz)).unwrap_or(u64::MAX),
    )
    .saturating_sub(KERNEL_DEADLINE_SLACK + tick);
    let credit = Duration::from_secs(time_left_secs).saturating_sub(kernel_left);
    if credit + tick * 2 >= downtime && credit <= downtime + CARRY_AT_MOST {
        credit.max(downtime)
    } else {
        downtime
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::sessions::{SessionType, data::example};

    const HZ: u32 = 250;
    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

    fn stored(id: SessionId, kind: SessionType, data_cons: f64) -> StoredSession {
        let mut data = example(kind, DateTime::from_timestamp(1_800_000_000, 0).unwrap());
        data.data_mb = 10.0;
        data.data_cons = data_cons;
        data.time_secs = 60;
        data.time_cons = 20;
        StoredSession { id, mac: MAC, data }
    }

    fn client(session_id: Option<SessionId>) -> StoredClient {
        StoredClient {
            mac: MAC,
            state: ClientState::Connected,
            pause_reason: None,
            session_id,
            baseline: hotspotd_common::Usage::default(),
            totals: crate::accounting::Totals::default(),
            saved_at_mono_ns: 0,
        }
    }

    #[test]
    fn each_client_is_credited_from_its_own_save() {
        let grants = BTreeMap::new();
        let meanwhile = Meanwhile {
            survived: true,
            now_mono: Duration::from_secs(100),
            last_save_mono_ns: Some(90_000_000_000),
            jiffies: 0,
            hz: HZ,
            passed: BTreeMap::new(),
            kernel_grants: &grants,
            sessions: &[],
            bytes_per_mb: 1_000_000,
        };
        // Saved with the last periodic save at 60 s; another client's sale was saved at 90 s.
        let mut saved_alone = client(Some(1));
        saved_alone.saved_at_mono_ns = 60_000_000_000;
        assert_eq!(meanwhile.downtime(&saved_alone), Duration::from_secs(40));
        // A row of an older release has no time of its own: the last save's stands for it.
        assert_eq!(
            meanwhile.downtime(&client(Some(1))),
            Duration::from_secs(10)
        );
    }

    /// A deadline set as apply.rs sets it, `run_for` after `at` jiffies.
    fn deadline(at: u64, run_for: Duration) -> u64 {
        let ticks = (run_for + KERNEL_DEADLINE_SLACK).as_nanos() * u128::from(HZ) / 1_000_000_000;
        at + u64::try_from(ticks).unwrap() + 2
    }

    #[test]
    fn the_kernels_deadline_gives_back_the_carried_fraction() {
        let session = stored(1, SessionType::Time, 0.0);
        // 40 s were left with 0.7 s carried: the grant ran 39.3 s. The save was 0.5 s before
        // the crash, the restart 2 s after it (500 jiffies).
        let grant = Grant::new(
            1,
            UNLIMITED_BYTES,
            deadline(10_000, Duration::from_millis(39_300)),
        );
        let downtime = Duration::from_millis(2_500);
        let credit = kept_running_credit(&grant, Some(&session.data), downtime, 10_000 + 625, HZ);
        // 0.7 s carried + 2.5 s, rounded down to whole ticks (4 ms here).
        assert!(
            credit <= Duration::from_millis(3_200) && credit >= Duration::from_millis(3_190),
            "{credit:?}"
        );
    }

    #[test]
    fn a_deadline_that_does_not_fit_gives_way_to_the_downtime() {
        let session = stored(1, SessionType::Time, 0.0);
        let downtime = Duration::from_secs(2);
        // Cut by expiry in 10 s, long before the 40 s left.
        let expiring = Grant::new(
            1,
            UNLIMITED_BYTES,
            deadline(10_000, Duration::from_secs(10)),
        );
        assert_eq!(
            kept_running_credit(&expiring, Some(&session.data), downtime, 10_000, HZ),
            downtime
        );
        let data_only = Grant::new(1, 5_000, NO_DEADLINE);
        let data = stored(1, SessionType::Data, 0.0);
        assert_eq!(
            kept_running_credit(&data_only, Some(&data.data), downtime, 10_000, HZ),
            downtime
        );
    }

    #[test]
    fn traffic_since_the_save_goes_to_the_sessions_that_carried_it() {
        let sessions = [
            stored(1, SessionType::Data, 9.0),
            stored(2, SessionType::Data, 0.0),
        ];
        // The kernel still runs the stored session: everything is its.
        let same = Grant::new(1, 100, NO_DEADLINE);
        assert_eq!(
            billed_to(&client(Some(1)), 5_000, Some(&same), &sessions, 1_000_000),
            vec![(1, 5_000)]
        );
        // Session 1 ran out after the save and 2 took over, spending 3,000 of its 10 MB.
        let chained = Grant::new(2, 10_000_000 - 3_000, NO_DEADLINE);
        assert_eq!(
            billed_to(
                &client(Some(1)),
                5_000,
                Some(&chained),
                &sessions,
                1_000_000
            ),
            vec![(2, 3_000), (1, 2_000)]
        );
        // Connected after the save, from nothing.
        assert_eq!(
            billed_to(&client(None), 5_000, Some(&chained), &sessions, 1_000_000),
            vec![(2, 5_000)]
        );
        assert_eq!(
            billed_to(&client(Some(1)), 0, Some(&chained), &sessions, 1_000_000),
            vec![]
        );
    }
}
