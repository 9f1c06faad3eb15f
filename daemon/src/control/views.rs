//! What the API shows, built from the control task's state: clients (traffic from the client
//! table, state from the engine), sessions, status (with the store's health). Read-only.

use super::Control;
use crate::{
    accounting::ClientRecord,
    mac::MacAddr,
    sessions::engine::{Now, SessionId},
    views::{ClientFilter, ClientPage, ClientView, SessionView, StatusView},
};

impl Control {
    /// The clients `filter` asks for, in MAC order, and how many match in all. Only the page's
    /// clients get a view built; the others are only matched (state, MAC and addresses).
    pub(super) fn client_page(&self, filter: &ClientFilter) -> ClientPage {
        let limit = filter.limit.unwrap_or(usize::MAX);
        let mut total = 0;
        let mut clients = Vec::new();
        for mac in self.client_macs() {
            if !self.client_matches(mac, filter) {
                continue;
            }
            if total >= filter.offset && clients.len() < limit {
                clients.push(self.client_view(mac));
            }
            total += 1;
        }
        ClientPage { total, clients }
    }

    fn client_matches(&self, mac: MacAddr, filter: &ClientFilter) -> bool {
        if let Some(state) = filter.state
            && self.engine.client_state(self.runs_as(mac).0) != state
        {
            return false;
        }
        let Some(search) = &filter.search else {
            return true;
        };
        mac.to_string().contains(search.as_str())
            || self.table.record(mac).is_some_and(|record| {
                record
                    .ips
                    .iter()
                    .any(|ip| ip.to_string().contains(search.as_str()))
            })
    }

    /// Every client: seen by the kernel, holding a session, or sharing a voucher's.
    fn client_macs(&self) -> std::collections::BTreeSet<MacAddr> {
        let mut macs: std::collections::BTreeSet<MacAddr> =
            self.table.records().map(|record| record.mac).collect();
        macs.extend(self.engine.clients().map(|(mac, _, _)| mac));
        macs.extend(self.sharing.members());
        macs
    }

    /// The client, if the kernel has seen it, it holds a session or shares a voucher's (what
    /// a listing shows).
    pub(super) fn known_client_view(&self, mac: MacAddr) -> Option<ClientView> {
        let known = self.table.record(mac).is_some()
            || self.engine.client(mac).is_some()
            || self.sharing.holder_of(mac).is_some();
        known.then(|| self.client_view(mac))
    }

    /// How many clients a listing shows, counted without building the list.
    fn client_count(&self) -> usize {
        self.telemetry.client_count(|| {
            let unseen_members = self
                .sharing
                .members()
                .filter(|mac| {
                    self.table.record(*mac).is_none() && self.engine.client(*mac).is_none()
                })
                .count();
            union_len(
                self.table.records().map(|record| record.mac),
                self.engine.clients().map(|(mac, _, _)| mac),
            ) + unseen_members
        })
    }

    pub(super) fn client_view(&self, mac: MacAddr) -> ClientView {
        let record = self.table.record(mac);
        let totals = record.map(|record| record.totals).unwrap_or_default();
        let (runs, shares_with) = self.runs_as(mac);
        let speed = self.engine.speed_of(runs);
        ClientView {
            mac,
            ips: record
                .map(|record| record.ips.iter().copied().collect())
                .unwrap_or_default(),
            state: self.engine.client_state(runs),
            session_id: self.engine.running_session(runs),
            up_bytes: totals.up_bytes,
            down_bytes: totals.down_bytes,
            up_packets: totals.up_packets,
            down_packets: totals.down_packets,
            local_bytes: totals.local_bytes,
            dropped_bytes: totals.dropped_bytes,
            dropped_packets: totals.dropped_packets,
            last_seen: record.and_then(|record: &ClientRecord| record.last_seen),
            down_mbits: speed.map(|(down, _)| down),
            up_mbits: speed.map(|(_, up)| up),
            address_conflicts: self.lan.addresses.conflicts_of(mac).cloned().collect(),
            shares_with,
        }
    }

    /// Whose session the client runs: its own, or, for a device sharing a voucher, its
    /// holder's while the holder runs the voucher's session (then also the holder).
    fn runs_as(&self, mac: MacAddr) -> (MacAddr, Option<MacAddr>) {
        let shares_with = self.sharing.holder_of(mac).filter(|holder| {
            let running = self.engine.running_session(*holder);
            running.is_some() && running == self.sharing.session_of(*holder)
        });
        (shares_with.unwrap_or(mac), shares_with)
    }

    pub(super) fn session_views(&self, mac: Option<MacAddr>, now: Now) -> Vec<SessionView> {
        let ids: Vec<SessionId> = match mac {
            Some(mac) => self
                .engine
                .sessions_of(mac)
                .map(|session| session.id)
                .collect(),
            None => self.engine.sessions().map(|session| session.id).collect(),
        };
        let mut views: Vec<SessionView> = ids
            .into_iter()
            .filter_map(|id| self.session_view(id, now))
            .collect();
        // Let go of by the engine, not yet written as ended: the most recently ended, so
        // after the held ones and before the file's history.
        let mut pending = self.store.ended_pending();
        pending.sort_by_key(|(session, _, at)| std::cmp::Reverse((*at, session.id)));
        views.extend(
            pending
                .into_iter()
                .filter(|(session, _, _)| mac.is_none_or(|mac| session.mac == mac))
                .map(|(session, end, at)| SessionView {
                    session,
                    state: end.state(),
                    ended_at: chrono::DateTime::from_timestamp(at, 0),
                }),
        );
        views
    }

    pub(super) fn session_view(&self, id: SessionId, now: Now) -> Option<SessionView> {
        let session = self.engine.session(id)?;
        let state = self.engine.state_of(id, now)?;
        Some(SessionView {
            session: session.clone(),
            state,
            ended_at: None,
        })
    }

    pub(super) fn metrics_snapshot(
        &self,
        now: Now,
        per_client: bool,
    ) -> crate::telemetry::Snapshot {
        let mut by_state = std::collections::BTreeMap::new();
        for session in self.engine.sessions() {
            if let Some(state) = self.engine.state_of(session.id, now) {
                // Keyed by name: the states have no order of their own.
                by_state.entry(format!("{state:?}")).or_insert((state, 0)).1 += 1;
            }
        }
        let storage = self.store.health();
        crate::telemetry::Snapshot {
            clients: if per_client {
                self.client_page(&ClientFilter::default()).clients
            } else {
                Vec::new()
            },
            sessions_by_state: by_state.into_values().collect(),
            kernel: self.telemetry.kernel,
            last_poll_seconds: self.telemetry.last_poll.as_secs_f64(),
            last_save_seconds: storage.last_save_ms / 1_000.0,
            storage,
            poll_durations: self.telemetry.poll_durations.clone(),
            save_durations: self.store.save_durations(),
            maps: self.map_fill(),
            alerts: self.alerts.read(),
            trials: self.trial_counts(),
            garden: self.garden_view(),
            spare_classes: self.speed.spare_classes(),
            clients_awaiting_classes: self.speed.awaiting_classes(),
            unindexed_clients: self.kernel.unindexed_clients(),
        }
    }

    /// How full each of the kernel's per-client maps was at the last poll.
    pub(super) fn map_fill(&self) -> Vec<crate::telemetry::MapFill> {
        use crate::telemetry::MapFill;
        use hotspotd_common::{MAX_ADDRESSES, MAX_CLIENTS, MAX_SEEN};
        vec![
            MapFill {
                map: "usage",
                entries: self.telemetry.usage_entries,
                capacity: MAX_CLIENTS,
            },
            MapFill {
                map: "seen",
                entries: self.telemetry.seen_entries,
                capacity: MAX_SEEN,
            },
            MapFill {
                map: "grants",
                entries: self.kernel.grant_count(),
                capacity: MAX_CLIENTS,
            },
            MapFill {
                map: "addresses",
                entries: self.telemetry.address_entries,
                capacity: MAX_ADDRESSES,
            },
        ]
    }

    pub(super) fn status_view(&self) -> StatusView {
        let storage = self.store.health();
        StatusView {
            last_save_ms: storage.last_save_ms,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            lan_interface: self.config.network.lan_interface.clone(),
            clients: self.client_count(),
            sessions: self.engine.held(),
            last_poll_ms: self.telemetry.last_poll.as_secs_f64() * 1_000.0,
            kernel: self.telemetry.kernel,
            storage,
            kernel_maps: self
                .map_fill()
                .into_iter()
                .map(|fill| crate::views::MapFillView {
                    map: fill.map.to_owned(),
                    entries: fill.entries,
                    capacity: fill.capacity,
                    full: fill.is_full(),
                })
                .collect(),
            sessions_set_aside: self.set_aside.clone(),
        }
    }
}

/// The number of distinct items in two ascending sequences, in one merging pass.
fn union_len<T: Ord>(a: impl Iterator<Item = T>, b: impl Iterator<Item = T>) -> usize {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    let mut count = 0;
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => return count,
            (Some(x), Some(y)) => match x.cmp(y) {
                std::cmp::Ordering::Less => {
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    a.next();
                    b.next();
                }
            },
            (Some(_), None) => {
                a.next();
            }
            (None, Some(_)) => {
                b.next();
            }
        }
        count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::union_len;

    #[test]
    fn the_union_counts_shared_items_once() {
        assert_eq!(
            union_len([1, 3, 5].into_iter(), [2, 3, 6, 7].into_iter()),
            6
        );
        assert_eq!(union_len([1, 2].into_iter(), std::iter::empty()), 2);
        assert_eq!(union_len(std::iter::empty(), [4].into_iter()), 1);
        assert_eq!(union_len([1, 2].into_iter(), [1, 2].into_iter()), 2);
        assert_eq!(union_len(std::iter::empty::<u8>(), std::iter::empty()), 0);
    }
}
