//! What the programs counted in `STATS`, as the daemon shows it. Plain data: the API's
//! documents (`crate::views`) carry it without knowing the kernel's maps.

/// Counters of `STATS`, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KernelStats {
    pub malformed_packets: u64,
    pub untracked_packets: u64,
    pub non_ip_packets: u64,
    /// Drops by reason: no running session (outside the walled garden), data budget spent,
    /// deadline passed.
    pub dropped_no_session_packets: u64,
    pub dropped_budget_packets: u64,
    pub dropped_deadline_packets: u64,
    /// Gate events the ring could not hold (the next poll catches up).
    pub events_lost: u64,
    /// Forwarded packets to a group destination MAC (a neighbour entry poisoned with one).
    pub dropped_group_destination_packets: u64,
}
