//! `hotspotd`: per-client traffic accounting for WiFi hotspots. The kernel counts every client's
//! bytes on the LAN interface (`bpf`); `accounting` turns the counters into per-client totals;
//! `api` serves them to portals and to `hotspotctl`. `run` wires them together and is what the
//! `hotspotd` binary calls, so tests can run the daemon with their own shutdown signal.

pub mod accounting;
pub mod api;
pub mod bpf;
pub mod client;
pub mod clock;
pub mod config;
pub mod control;
#[cfg(test)]
mod error_chains;
pub mod events;
pub mod mac;
pub mod metrics;
pub mod net;
pub mod netlink;
mod notify;
mod run;
pub mod sessions;
pub mod shaping;
pub mod store;
pub mod text;

pub use run::{ReleaseError, RunError, release, run, run_reloadable};
