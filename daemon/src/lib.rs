//! `hotspotd`: per-client traffic accounting for WiFi hotspots. `run` wires the parts together
//! and is what the `hotspotd` binary calls, so tests can run the daemon with their own
//! shutdown signal. The data path, stage by stage (docs/architecture.md):
//!
//! | stage | module |
//! |---|---|
//! | packet → gate, budget, count, class | the `ebpf` crate; maps and attach in [`bpf`] |
//! | kernel counters → a poll's reading | `control::reader`, [`bpf`], [`netlink`] |
//! | reading → per-client deltas and totals | [`accounting`] |
//! | deltas → consumed time and data, what runs next | [`sessions`] (the engine, pure) |
//! | decisions → kernel budgets | `control::apply` |
//! | decisions → tc classes | `control::speed`, [`shaping`] |
//! | decisions → saves | `control::save` → [`store`] (through `store::SessionStore`) |
//! | decisions → events | [`events`] |
//! | saves → usage history and sales | `control::history` → `store::usage` |
//! | codes and usage ↔ RADIUS servers | `control::radius` → [`radius`] |
//! | state → API, `hotspotctl`, `/metrics` | `control::views` builds the [`views`]; [`api`], [`metrics`] serve them |
//! | the LAN beside the sessions (MAC moves, neighbour tables) → log, events, `/metrics` | [`watch`], counted in [`alerts`] |

pub mod accounting;
pub mod addresses;
pub mod alerts;
pub mod api;
pub mod bpf;
pub mod captive;
pub mod client;
pub mod clock;
pub mod config;
pub mod control;
pub mod dashboard;
#[cfg(test)]
mod error_chains;
pub mod events;
pub mod garden;
pub mod histogram;
pub mod mac;
pub mod metrics;
pub mod net;
pub mod netlink;
mod notify;
pub mod portal;
pub mod price;
pub mod radius;
mod run;
pub mod sessions;
pub mod shaping;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod theme;
pub mod tls_files;
pub mod trials;
pub mod views;
pub mod voucher_sheet;
pub mod vouchers;
pub mod watch;

pub use run::{ReleaseError, RunError, release, run, run_reloadable};
