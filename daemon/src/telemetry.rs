//! What the daemon measures of itself, as the control task collects it in one go: the data
//! `/metrics` renders (`crate::metrics`) and `/v1/status` shows in part. Plain data, so the
//! control task that fills it and the API that renders it need not know each other. Pure.

use crate::{
    alerts::AlertCounts, bpf::KernelStats, histogram::Histogram, sessions::engine::SessionState,
    store::StoreHealth, views::ClientView,
};

/// What `/metrics` shows, read in one go by the control task.
pub struct Snapshot {
    pub clients: Vec<ClientView>,
    pub sessions_by_state: Vec<(SessionState, usize)>,
    pub kernel: KernelStats,
    pub last_poll_seconds: f64,
    pub last_save_seconds: f64,
    pub storage: StoreHealth,
    /// Every poll and every save since the daemon started.
    pub poll_durations: Histogram,
    pub save_durations: Histogram,
    /// Each per-client map's entries and capacity, by its label.
    pub maps: Vec<MapFill>,
    /// What the watchers beside the sessions counted.
    pub alerts: AlertCounts,
    pub trials: TrialCounts,
    /// The walled garden's host names and what was learned for them.
    pub garden: crate::garden::GardenView,
    /// HTB classes made and parked for the next clients (`shaping/pool.rs`).
    pub spare_classes: usize,
    /// Clients whose classes the shaper has not yet put in the trees at their rates: they run
    /// in the default class meanwhile (`control/speed/confirm.rs`).
    pub clients_awaiting_classes: usize,
    /// Clients the programs look up in `CLIENTS` because their window of the client index
    /// is full (`bpf/client_index.rs`).
    pub unindexed_clients: usize,
}

/// Free trials (docs/trials.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrialCounts {
    /// Granted since the daemon started.
    pub granted: u64,
    /// Devices whose last trial is within the reset window: they are refused another.
    pub ledger_entries: usize,
}

/// How full one of the kernel's per-client maps is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MapFill {
    /// `usage`, `seen`, `grants` or `addresses`.
    pub map: &'static str,
    pub entries: usize,
    pub capacity: u32,
}

impl MapFill {
    /// Whether the map is full: within 1 % of its capacity. An LRU map starts evicting a
    /// little before its last entry is taken (each CPU keeps free entries of its own).
    #[must_use]
    pub fn is_full(&self) -> bool {
        self.entries.saturating_mul(100) >= (self.capacity as usize).saturating_mul(99)
    }
}
