//! `BPF_PROG_TEST_RUN` tests of the tc programs `lan_ingress` (client upload) and `lan_egress`
//! (client download): crafted frames go in; the verdict, the client counters in `USAGE`, the
//! global `STATS`, the budgets in `BUDGETS` and the events in `EVENTS` come out; and the
//! daemon's batch reader against the real maps. Each test loads
//! its own copy of the object with its maps pinned in a fresh bpffs folder, which is removed
//! when the test ends; nothing is attached to an interface.
//! Needs root (`CAP_BPF`, `CAP_NET_ADMIN`) and bpffs at /sys/fs/bpf.
#![expect(clippy::expect_used, reason = "a test reports failure by panicking")]

mod accounting;
mod batch;
mod client_index;
mod front_door;
mod fuzz;
mod garden;
mod gate;
mod harness;
mod lan_attacks;
mod shaping;
mod shared;
