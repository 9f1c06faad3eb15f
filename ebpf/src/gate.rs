//! The gate: decides whether a client's billable packet may pass. A client passes only while
//! its session runs (its entry in `CLIENTS` names a budget in `BUDGETS`) and within that
//! budget: bytes left and a deadline, both held here in the kernel so enforcement is exact
//! and does not wait for the daemon. Several clients (the devices of one voucher) may draw
//! on one budget. A client without a running session reaches only the walled garden.

use core::intrinsics::{AtomicOrdering, atomic_or, atomic_xadd, atomic_xsub};

use aya_ebpf::{helpers::generated::bpf_jiffies64, maps::lpm_trie::Key, programs::TcContext};
use hotspotd_common::{
    Budget, ClientSlots, GardenPorts, GateEvent, NO_BUDGET, NO_DEADLINE, UNLIMITED_BYTES,
    gate_event, grant_flag, stat,
};

use crate::{
    BUDGETS, EVENTS, WALLED_GARDEN, count_stat,
    packet::{self, Direction, Frame},
};

/// What happens to a billable packet. Field-less, like every enum here (BTF).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within a running session: passes and is billed.
    Billable,
    /// No session, but the destination is in the walled garden: passes, never billed.
    Garden,
    /// Dropped (the reason is counted in `STATS`).
    Drop,
}

/// The gate's decision, and the HTB class (`skb->priority`) a billable packet goes to: the
/// grant's download or upload class, 0 for none.
pub struct Decision {
    pub verdict: Verdict,
    pub class: u32,
}

const fn decided(verdict: Verdict) -> Decision {
    Decision { verdict, class: 0 }
}

#[inline(always)]
pub fn verdict(
    ctx: &TcContext,
    frame: &Frame,
    direction: Direction,
    slots: Option<ClientSlots>,
) -> Decision {
    let budget = match slots {
        Some(slots) if slots.budget != NO_BUDGET => BUDGETS.get_ptr_mut(slots.budget),
        _ => None,
    };
    let (Some(grant), Some(slots)) = (budget, slots) else {
        if in_walled_garden(ctx, frame, direction) {
            return decided(Verdict::Garden);
        }
        count_stat(stat::DROPPED_NO_SESSION);
        return decided(Verdict::Drop);
    };
    // SAFETY: a successful lookup of an array element, which lives as long as the map; the
    // daemon reuses a budget's slot only after a quarantine no program outlasts.
    match unsafe { within_grant(grant, frame) } {
        Verdict::Billable => Decision {
            verdict: Verdict::Billable,
            class: match direction {
                Direction::Up => slots.class_up,
                Direction::Down => slots.class_down,
            },
        },
        // A client whose session ran out still reaches the garden (the portal, the payment
        // page), also while the daemon is down and has not removed the spent grant.
        Verdict::Drop if in_walled_garden(ctx, frame, direction) => decided(Verdict::Garden),
        verdict => decided(verdict),
    }
}

/// Checks the deadline, then spends the packet's bytes from the budget.
///
/// The budget is spent with one atomic fetch-and-add, so two CPUs cannot both take the last
/// bytes: a packet passes only if the budget was positive before it, which lets through at
/// most one packet beyond the budget. The packet that spends the last bytes tells the daemon
/// at once, so it can start the next session before the client notices.
///
/// A GSO packet stands for many wire packets, so it must fit whole. It is checked against a
/// plain read first and only then spent: subtracting first and giving back would let another
/// CPU see a budget that looks spent for a moment. If the budget shrank in between (a race),
/// the bytes are given back and the packet dropped; TCP resends smaller.
#[inline(always)]
unsafe fn within_grant(grant: *mut Budget, frame: &Frame) -> Verdict {
    // SAFETY: the block is the whole function. The caller passes `grant` from a successful
    // map lookup, so it points at a live map value; its fields are naturally aligned, as the
    // atomic intrinsics need.
    unsafe {
        if (*grant).deadline_jiffies != NO_DEADLINE && bpf_jiffies64() >= (*grant).deadline_jiffies
        {
            report_once(
                grant,
                frame,
                grant_flag::DEADLINE_REPORTED,
                gate_event::DEADLINE_PASSED,
            );
            count_stat(stat::DROPPED_DEADLINE);
            return Verdict::Drop;
        }
        let left = (*grant).bytes_left;
        if left == UNLIMITED_BYTES {
            return Verdict::Billable;
        }
        let bytes = frame.ip_bytes.cast_signed();
        if frame.segments > 1 && left < bytes {
            return over_budget(grant, frame, left <= 0);
        }
        // SeqCst: LLVM lowers a relaxed fetch-sub whose result is used to a plain XADD that
        // returns nothing (BPF ISA < v3); SeqCst yields BPF_FETCH, which the kernel supports.
        let before = atomic_xsub::<i64, i64, { AtomicOrdering::SeqCst }>(
            &raw mut (*grant).bytes_left,
            bytes,
        );
        if before > 0 && (frame.segments == 1 || before >= bytes) {
            if before <= bytes {
                report_once(
                    grant,
                    frame,
                    grant_flag::BUDGET_REPORTED,
                    gate_event::BUDGET_SPENT,
                );
            }
            return Verdict::Billable;
        }
        if before > 0 {
            // A GSO packet that lost a race for the last bytes: give them back.
            atomic_xadd::<i64, i64, { AtomicOrdering::SeqCst }>(
                &raw mut (*grant).bytes_left,
                bytes,
            );
        }
        over_budget(grant, frame, before <= 0)
    }
}

/// Drops a packet the budget cannot carry; `spent` says the budget is gone (not just too
/// small for this GSO packet), which the daemon hears about once.
#[inline(always)]
unsafe fn over_budget(grant: *mut Budget, frame: &Frame, spent: bool) -> Verdict {
    if spent {
        // SAFETY: as in `within_grant`.
        unsafe {
            report_once(
                grant,
                frame,
                grant_flag::BUDGET_REPORTED,
                gate_event::BUDGET_SPENT,
            );
        }
    }
    count_stat(stat::DROPPED_BUDGET);
    Verdict::Drop
}

/// Tells the daemon, once per budget (whichever of its clients crosses first), that it ran out (or is running out), so it can start the
/// next session at once instead of at its next poll.
#[inline(always)]
unsafe fn report_once(grant: *mut Budget, frame: &Frame, flag: u64, kind: u32) {
    // SAFETY: as in `within_grant`.
    unsafe {
        let before =
            atomic_or::<u64, u64, { AtomicOrdering::SeqCst }>(&raw mut (*grant).flags, flag);
        if before & flag != 0 {
            return;
        }
        let event = GateEvent::new(frame.client, (*grant).session_id, kind);
        if EVENTS.output::<GateEvent>(&event, 0).is_err() {
            count_stat(stat::EVENTS_LOST);
        }
    }
}

/// Whether the remote end is a configured walled-garden destination (longest prefix match)
/// with an allowed port, or an address learned for one of its host names (`garden.rs`).
#[inline(always)]
fn in_walled_garden(ctx: &TcContext, frame: &Frame, direction: Direction) -> bool {
    let key = Key::new(128, frame.remote.addr);
    if let Some(ports) = WALLED_GARDEN.get(&key)
        && ports_allow(ports, ctx, frame, direction)
    {
        return true;
    }
    crate::garden::learned_allows(ctx, frame, direction)
}

/// Whether the packet's remote port is one of `ports`.
#[inline(always)]
pub(crate) fn ports_allow(
    ports: &GardenPorts,
    ctx: &TcContext,
    frame: &Frame,
    direction: Direction,
) -> bool {
    if ports.any_port != 0 {
        return true;
    }
    let port = packet::remote_port(ctx, frame, direction);
    if port == 0 {
        return false;
    }
    let count = usize::from(ports.count);
    for (i, allowed) in ports.ports.iter().enumerate() {
        if i >= count {
            break;
        }
        if *allowed == port {
            return true;
        }
    }
    false
}
