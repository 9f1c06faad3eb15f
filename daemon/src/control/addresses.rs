//! The box's own state against a LAN attacker, poll by poll: the room each paying client's
//! counters keep in `USAGE` (given back once a client without a grant has been read), the
//! clients' addresses from what they send (`ADDRESSES`, moves reported), the neighbour
//! entries poisoned with group MACs (deleted by the reader, reported here), and `SEEN`
//! filling up. Side effects: deletes `USAGE` entries, logs, sends events.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::Duration,
};

use hotspotd_common::{AddressOwner, IpKey, MAX_SEEN, MacKey, Usage};
use tokio::time::Instant;

use super::{Control, reader::Poisoned};
use crate::{
    accounting::Clocks,
    addresses::{self, Owner},
    events::{LanEvent, LanRecord},
    mac::MacAddr,
    net::ip_key,
    sessions::engine::{ClientState, Now},
};

/// How often one poisoned address is logged at most.
const POISONED_LOG_EVERY: Duration = Duration::from_mins(10);

/// What the box keeps of the LAN poll by poll.
#[derive(Default)]
pub(super) struct LanWatch {
    /// Which MAC sends from each address, and the moves between MACs (`ADDRESSES`).
    pub(super) addresses: crate::addresses::AddressBook,
    /// Clients that had room in `USAGE` but no grant at the last poll: at this poll their
    /// counters were read after their grant went, so their room can be given back.
    pub(super) releasing: BTreeSet<MacAddr>,
    /// When a poll last read `ADDRESSES` (see `ADDRESSES_EVERY`).
    pub(super) addresses_read_at: Option<Instant>,
    /// Once-only warnings: `SEEN` is full; each address whose neighbour entry was poisoned,
    /// with when it was last logged.
    pub(super) seen_full_logged: bool,
    pub(super) poisoned_logged: BTreeMap<IpAddr, Instant>,
}

impl Control {
    /// Gives back the `USAGE` entries of clients that had no grant at the last poll either:
    /// this poll's reading was taken after their grant went, so it holds every byte they
    /// were billed for. What they send from now on is counted in `SEEN`.
    pub(super) fn release_counters(&mut self, usage: &[(MacKey, Usage)]) {
        let mut ungranted = std::collections::BTreeSet::new();
        // Both in MAC order: one walk side by side, no lookup per client (10,000 a poll).
        let mut clients = self.engine.clients().peekable();
        let mut connected = |mac: MacAddr| {
            while clients.next_if(|(known, _, _)| *known < mac).is_some() {}
            clients
                .peek()
                .is_some_and(|(known, state, _)| *known == mac && *state == ClientState::Connected)
        };
        let mut unconnected = Vec::new();
        for (key, _) in usage {
            let mac = MacAddr::from(*key);
            if !connected(mac) {
                unconnected.push(*key);
            }
        }
        // A device sharing a voucher keeps its room while its holder runs the session.
        unconnected.retain(|key| {
            self.sharing
                .holder_of(MacAddr::from(*key))
                .is_none_or(|holder| {
                    self.engine.running_session(holder).is_none()
                        || self.engine.running_session(holder) != self.sharing.session_of(holder)
                })
        });
        for key in unconnected {
            let mac = MacAddr::from(key);
            if !self.lan.releasing.contains(&mac) {
                ungranted.insert(mac);
                continue;
            }
            if let Err(error) = self.kernel.release_counters(key) {
                tracing::warn!(%mac, error = %crate::text::chain(&error), "cannot give back the client's room in USAGE; retrying next poll");
                ungranted.insert(mac);
            }
        }
        self.lan.releasing = ungranted;
    }

    /// Takes a reading of `ADDRESSES`: the clients' addresses, and an event for each address
    /// that moved to another MAC.
    pub(super) fn learn_addresses(
        &mut self,
        readings: &[(IpKey, AddressOwner)],
        clocks: Clocks,
        now: Now,
    ) {
        let (mut pairs, moves) = self.lan.addresses.update(readings, clocks);
        self.table.set_addresses(&mut pairs);
        for change in moves {
            tracing::warn!(
                ip = %change.ip,
                from = %change.from,
                to = %change.to,
                "a client sent from another client's address; the API names no owner for it for a minute"
            );
            self.events.send(LanRecord {
                at: now.wall,
                event: LanEvent::AddressMoved {
                    ip: change.ip,
                    from: change.from,
                    to: change.to,
                },
            });
        }
    }

    /// Who sends from `ip`, as the kernel saw it last, and whether that is in conflict.
    pub(super) fn address_owner(&self, ip: IpAddr) -> Result<Owner, crate::bpf::BpfError> {
        let owner = self.kernel.address_owner(ip_key(ip))?;
        let clocks = Clocks {
            jiffies: self.kernel.jiffies()?,
            hz: self.hz,
            wall: chrono::Utc::now(),
            read_at: std::time::Instant::now(),
        };
        Ok(addresses::owner_of(ip, owner, clocks))
    }

    /// Logs the neighbour entries the reader found pointing an address at a group MAC and
    /// deleted, naming who sends from that address (the one who claimed it, most likely).
    pub(super) fn report_poisoned(&mut self, poisoned: &[Poisoned]) {
        for entry in poisoned {
            let due = self
                .lan
                .poisoned_logged
                .get(&entry.ip)
                .is_none_or(|logged| logged.elapsed() >= POISONED_LOG_EVERY);
            if !due {
                continue;
            }
            self.lan.poisoned_logged.insert(entry.ip, Instant::now());
            let sender = self
                .kernel
                .address_owner(ip_key(entry.ip))
                .ok()
                .flatten()
                .map_or_else(
                    || "unknown".to_owned(),
                    |owner| MacAddr::from(owner.mac).to_string(),
                );
            match &entry.delete_error {
                None => tracing::warn!(
                    ip = %entry.ip,
                    group_mac = %entry.mac,
                    sent_by = sender,
                    "a client pointed its address at a group MAC (an ARP or neighbour discovery claim); the entry was deleted and such frames are dropped"
                ),
                Some(error) => tracing::error!(
                    ip = %entry.ip,
                    group_mac = %entry.mac,
                    sent_by = sender,
                    error = %error,
                    "a client pointed its address at a group MAC and the entry cannot be deleted; such frames are dropped, delete it with 'ip neigh del'"
                ),
            }
        }
        self.lan
            .poisoned_logged
            .retain(|_, logged| logged.elapsed() < POISONED_LOG_EVERY);
    }

    /// Says once when `SEEN` is full: from then on the least recently seen MACs without a
    /// session are forgotten (their counters restart when they come back), which is what a
    /// flood of made-up MACs costs. Paying clients are counted in `USAGE`, unaffected.
    pub(super) fn warn_if_seen_full(&mut self) {
        let seen = crate::telemetry::MapFill {
            map: "seen",
            entries: self.telemetry.seen_entries,
            capacity: MAX_SEEN,
        };
        let full = seen.is_full();
        if full && !self.lan.seen_full_logged {
            tracing::warn!(
                capacity = MAX_SEEN,
                "the kernel's table of clients without a session is full (a flood of MAC addresses?); the least recently seen are forgotten first, paying clients are not affected"
            );
        }
        self.lan.seen_full_logged = full;
    }
}
