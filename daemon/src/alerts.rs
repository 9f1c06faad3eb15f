//! Counts of trouble noticed beside the sessions — a MAC address moving between bridge ports,
//! requests refused for their API token, the kernel's neighbour tables overflowing — kept by
//! whichever task notices it and read by `/metrics`. Shared as `Arc<Alerts>`; each change is a
//! few additions under a lock nobody holds for longer.

use std::sync::{Mutex, PoisonError};

/// The shared counts.
#[derive(Debug, Default)]
pub struct Alerts(Mutex<AlertCounts>);

impl Alerts {
    /// Changes the counts.
    pub fn update(&self, change: impl FnOnce(&mut AlertCounts)) {
        // A panic elsewhere while holding the lock leaves counts, not broken invariants.
        change(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// The counts as they are now.
    #[must_use]
    pub fn read(&self) -> AlertCounts {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Everything counted since the daemon started (the neighbour tables: as the kernel reports
/// them, since it booted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AlertCounts {
    /// Times a MAC address the LAN bridge had learned behind one port showed up behind another.
    pub mac_moves: u64,
    /// TCP API requests refused for a missing or wrong token.
    pub api_wrong_tokens: u64,
    /// TCP API requests refused without a look at their token, their source having sent too
    /// many wrong ones.
    pub api_rate_limited: u64,
    /// The kernel's IPv4 (ARP) neighbour table; `None` until first read.
    pub neighbours_ipv4: Option<NeighbourTable>,
    /// The kernel's IPv6 (neighbour discovery) table.
    pub neighbours_ipv6: Option<NeighbourTable>,
}

/// One of the kernel's neighbour tables, shared by every network namespace of the box.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NeighbourTable {
    /// Entries in it now.
    pub entries: u64,
    /// Entries it holds at most (`gc_thresh3`).
    pub limit: u64,
    /// Times since boot a new entry was refused because the table was full
    /// (`ndts_table_fulls`).
    pub overflows: u64,
}
