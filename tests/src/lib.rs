//! Test harness for hotspotd's end-to-end tests: per-test network namespaces (a gateway with
//! the LAN bridge, simulated clients, an "internet" behind the WAN), traffic generators with
//! exact byte counts, raw frame injection and capture, a DHCP client that reads what a server
//! offers (`dhcp`), a handle on a running daemon, filesystems to break under it, and a headless
//! Chromium driven over the `DevTools` protocol (`browser`). Needs root; creates and deletes
//! namespaces, veths and
//! bridges, pin folders under /sys/fs/bpf, mounts and loop devices.
//!
//! Everything a test builds is removed on drop, also while unwinding from a failed assertion,
//! and names are unique per process and per call, so tests run in parallel.

pub mod browser;
pub mod crowd;
mod daemon;
pub mod dhcp;
mod disks;
pub mod frames;
mod goodput;
pub mod http;
mod lan;
mod netns;
pub mod portal;
pub mod process;
pub mod radius;
mod raw;
pub mod tc;
pub mod tls;
mod traffic;
pub mod units;

use std::time::{Duration, Instant};

pub use crowd::{Crowd, CrowdSender};
pub use daemon::{Daemon, hotspotctl_bin, hotspotd_bin, workspace_root};
pub use disks::{Ext4Disk, Tmpfs};
pub use goodput::{Read, TcpMeter, largest_read_gap, mbits_between, mbits_per_second, tcp_push};
pub use lan::{
    CLIENT_IFACE, Client, GATEWAY_LAN_V4, GATEWAY_LAN_V6, GATEWAY_WAN_V4, GATEWAY_WAN_V6,
    INTERNET_IFACE, INTERNET_V4, INTERNET_V6, LAN_IFACE, LAN_PREFIX_V4, LAN_PREFIX_V6, Lan,
    MAX_CLIENTS, WAN_IFACE, WAN_PREFIX_V4, WAN_PREFIX_V6,
};
pub use netns::Netns;
pub use raw::{FrameCapture, FrameSender};
pub use traffic::{
    Arrival, TcpSink, TcpSource, UdpEcho, UdpSink, UdpStream, ip_bytes_udp, largest_gap,
    lost_datagrams, tcp_connect_from, tcp_receive, tcp_send, udp_blast, udp_echoes, udp_ping_pong,
};

/// Polls `condition` until it returns true or `timeout` passes; returns whether it became
/// true. Starts polling fast and backs off, so quick conditions cost little and slow ones do
/// not spin.
pub fn wait_for(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        if condition() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// How many times slower than natively the tests run: `$HOTSPOTD_TEST_SLOWDOWN` (a whole
/// number, default 1). The kernel matrix (scripts/kernel-matrix.sh) sets it in its QEMU guests,
/// whose software emulation is several times slower, so waits for one packet's round trip,
/// traffic meant to outrun a budget and the wait for the daemon to start are stretched by it;
/// nothing else changes.
#[must_use]
pub fn slowdown() -> u32 {
    std::env::var("HOTSPOTD_TEST_SLOWDOWN")
        .ok()
        .and_then(|value| value.parse::<u32>().ok())
        .filter(|&factor| factor >= 1)
        .unwrap_or(1)
}
