//! Loads hotspotd's eBPF programs, attaches them to the LAN interface and gives typed access to
//! their maps.

/// The compiled eBPF object (programs `lan_ingress`, `lan_egress`, `bench_empty`; maps in
/// `hotspotd_common`), built by `build.rs`.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/hotspotd-ebpf"));
