//! What the control task measures of its own work, for `/metrics` and `/v1/status`: how long
//! each poll took, the kernel's counters and how full each per-client map was at the last
//! reading, and how many clients there are. Written by the poll; read by the views
//! (`views.rs`), which build the documents from it.

use std::{cell::Cell, time::Duration};

use crate::{bpf::KernelStats, histogram::Histogram};

#[derive(Default)]
pub(super) struct Telemetry {
    /// The kernel's counters (drops by reason, passes) at the last poll.
    pub(super) kernel: KernelStats,
    pub(super) last_poll: Duration,
    /// Every poll's duration (every save's is the store's).
    pub(super) poll_durations: Histogram,
    /// Entries in `USAGE`, `SEEN` and `ADDRESSES` at the last poll.
    pub(super) usage_entries: usize,
    pub(super) seen_entries: usize,
    pub(super) address_entries: usize,
    /// How many clients `/v1/status` counts, once counted: forgotten by every poll and by
    /// every command that adds or removes a session (nothing else adds or removes a client),
    /// so a status request costs a count of every client at most once a poll.
    client_count: Cell<Option<usize>>,
}

impl Telemetry {
    /// A poll took `took`, from the reading's start to its accounting's end.
    pub(super) fn poll_took(&mut self, took: Duration) {
        self.last_poll = took;
        self.poll_durations.observe(took);
    }

    /// Clients may have come or gone: the next count counts them again.
    pub(super) fn clients_changed(&self) {
        self.client_count.set(None);
    }

    /// The number of clients, counted by `count` only when it is not known.
    pub(super) fn client_count(&self, count: impl FnOnce() -> usize) -> usize {
        if let Some(known) = self.client_count.get() {
            return known;
        }
        let counted = count();
        self.client_count.set(Some(counted));
        counted
    }
}
