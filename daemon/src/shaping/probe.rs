//! What this kernel offers for shaping, found out rather than assumed: the packet scheduler's
//! tick (`/proc/net/psched`, read-only) and whether `fq_codel` exists (the shaper tries to
//! install one as a leaf; this module reads the outcome). No side effects of its own.

use super::{Leaf, RequestError, htb::PschedClock};

const PSCHED_PATH: &str = "/proc/net/psched";

/// The kernel's psched clock, or the one every current kernel has when the file cannot be
/// read or parsed (with a warning, since bursts would then be off by the ratio).
pub(crate) fn psched_clock() -> PschedClock {
    match std::fs::read_to_string(PSCHED_PATH) {
        Ok(text) => PschedClock::parse(&text).unwrap_or_else(|| {
            tracing::warn!(path = PSCHED_PATH, %text, "unreadable psched clock; assuming 64 ns ticks");
            PschedClock::KERNEL_DEFAULT
        }),
        Err(error) => {
            tracing::warn!(path = PSCHED_PATH, error = %crate::text::chain(&error), "no psched clock; assuming 64 ns ticks");
            PschedClock::KERNEL_DEFAULT
        }
    }
}

/// The leaf kind, from the result of installing an `fq_codel` leaf under a class that needs
/// a leaf anyway: if the kernel refused (it has no `fq_codel`), that class keeps what it had
/// and the answer is pfifo. Logs which.
pub(crate) fn leaf(iface: &str, attempt: &Result<(), RequestError>) -> Leaf {
    match attempt {
        Ok(()) => {
            tracing::info!(%iface, "shaping leaves use fq_codel");
            Leaf::FqCodel
        }
        Err(error) => {
            tracing::info!(%iface, %error, "this kernel has no fq_codel; shaping leaves use pfifo");
            Leaf::Pfifo
        }
    }
}
