//! Types shared by hotspotd's eBPF programs and its daemon: map names, capacities, keys and
//! values. Everything here is `#[repr(C)]`, fixed-width and explicitly padded, because the
//! kernel and userspace read the same bytes; each size is asserted at compile time.
#![no_std]

use core::mem::size_of;

/// Pinned maps live under this bpffs folder by default; the daemon's `kernel.pin_dir` moves it.
/// The layout version is part of the path so a daemon never reuses maps of another layout.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/hotspotd";
/// Bumped whenever a map's key, value or meaning changes.
pub const MAP_LAYOUT_VERSION: u32 = 1;

/// Per-client counters: `PerCpuHashMap<MacKey, Usage>`, written by the kernel only.
pub const MAP_USAGE: &str = "USAGE";
/// The box's first addresses of each family, compared inline: `Array<LocalTable>` of two
/// slots, written by the daemon (the slot not in use, then [`config_word::LOCAL_TABLE_SLOT`]
/// flips), so a packet never sees a half-written table.
pub const MAP_LOCAL_TABLE: &str = "LOCAL_TABLE";
/// All of the box's addresses: `HashMap<IpKey, u32>`, written by the daemon only. Consulted
/// only when the box has more addresses than [`LocalTable`] holds.
pub const MAP_LOCAL_ADDRS: &str = "LOCAL_ADDRS";
/// Words the daemon sets for the programs: `Array<u32>`, indexed by [`config_word`].
pub const MAP_CONFIG: &str = "CONFIG";
/// Where [`CLOCK_PROBE`] leaves the kernel's clock: `Array<u64>` of one entry.
pub const MAP_CLOCK: &str = "CLOCK";
/// A program the daemon runs with `BPF_PROG_TEST_RUN` to read the kernel's jiffies, the clock
/// the programs stamp packets with (a plain load, where a `ktime` helper costs ~18 ns).
pub const CLOCK_PROBE: &str = "clock_probe";
/// Global counters of what could not be accounted to a client: `PerCpuArray<u64>`.
pub const MAP_STATS: &str = "STATS";

/// Clients the kernel tracks at once. A hotspot box serves hundreds to a few thousand.
pub const MAX_CLIENTS: u32 = 16_384;
/// Addresses of the box itself (every interface, IPv4 and IPv6).
pub const MAX_LOCAL_ADDRS: u32 = 1_024;
/// Addresses of each family that [`LocalTable`] holds.
pub const LOCAL_TABLE_LEN: usize = 16;

/// Indexes into [`MAP_CONFIG`].
pub mod config_word {
    /// Which slot (0 or 1) of [`super::MAP_LOCAL_TABLE`] is current.
    pub const LOCAL_TABLE_SLOT: u32 = 0;
    /// Number of entries.
    pub const COUNT: u32 = 4;
}

/// Indexes into [`MAP_STATS`].
pub mod stat {
    /// An IP packet whose header is truncated or inconsistent: never billed.
    pub const MALFORMED_PACKETS: u32 = 0;
    /// A client packet not counted because [`super::MAP_USAGE`] was full.
    pub const UNTRACKED_PACKETS: u32 = 1;
    /// Frames that are not IPv4 or IPv6 (ARP, LLDP, …): never billed.
    pub const NON_IP_PACKETS: u32 = 2;
    /// Number of entries.
    pub const COUNT: u32 = 3;
}

/// A client's MAC address, padded to 8 bytes so the key has no implicit padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacKey {
    pub addr: [u8; 6],
    _pad: [u8; 2],
}
const _: () = assert!(size_of::<MacKey>() == 8);

impl MacKey {
    #[must_use]
    pub const fn new(addr: [u8; 6]) -> Self {
        Self { addr, _pad: [0; 2] }
    }
}

/// An IPv4 or IPv6 address as 16 bytes; IPv4 is stored IPv4-mapped (`::ffff:a.b.c.d`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpKey {
    pub addr: [u8; 16],
}
const _: () = assert!(size_of::<IpKey>() == 16);

impl IpKey {
    #[must_use]
    pub const fn from_v4(octets: [u8; 4]) -> Self {
        let mut addr = [0u8; 16];
        addr[10] = 0xff;
        addr[11] = 0xff;
        addr[12] = octets[0];
        addr[13] = octets[1];
        addr[14] = octets[2];
        addr[15] = octets[3];
        Self { addr }
    }

    #[must_use]
    pub const fn from_v6(octets: [u8; 16]) -> Self {
        Self { addr: octets }
    }
}

/// One client's counters on one CPU. Only the kernel writes them and they only grow;
/// userspace sums the CPUs and takes deltas. Bytes are IP-level: IP header included,
/// Ethernet (and VLAN tags) excluded, a GSO packet counted as the segments it becomes.
///
/// "Up" is from the client (LAN ingress), "down" is to the client (LAN egress).
/// "Billable" is traffic between the client and anything but the box itself; "local" is
/// traffic with the box's own addresses, multicast and broadcast.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub up_bytes: u64,
    pub up_packets: u64,
    pub down_bytes: u64,
    pub down_packets: u64,
    pub up_local_bytes: u64,
    pub down_local_bytes: u64,
    pub up_dropped_bytes: u64,
    pub down_dropped_bytes: u64,
    pub dropped_packets: u64,
    /// The kernel's jiffies at the last frame from or to the client.
    pub last_seen_jiffies: u64,
}
const _: () = assert!(size_of::<Usage>() == 80);

impl Usage {
    /// Adds another CPU's counters to this one (`last_seen_jiffies` takes the latest).
    #[must_use]
    pub const fn merged(self, other: &Self) -> Self {
        Self {
            up_bytes: self.up_bytes.wrapping_add(other.up_bytes),
            up_packets: self.up_packets.wrapping_add(other.up_packets),
            down_bytes: self.down_bytes.wrapping_add(other.down_bytes),
            down_packets: self.down_packets.wrapping_add(other.down_packets),
            up_local_bytes: self.up_local_bytes.wrapping_add(other.up_local_bytes),
            down_local_bytes: self.down_local_bytes.wrapping_add(other.down_local_bytes),
            up_dropped_bytes: self.up_dropped_bytes.wrapping_add(other.up_dropped_bytes),
            down_dropped_bytes: self
                .down_dropped_bytes
                .wrapping_add(other.down_dropped_bytes),
            dropped_packets: self.dropped_packets.wrapping_add(other.dropped_packets),
            last_seen_jiffies: if self.last_seen_jiffies > other.last_seen_jiffies {
                self.last_seen_jiffies
            } else {
                other.last_seen_jiffies
            },
        }
    }
}

/// Value of [`MAP_LOCAL_ADDRS`]: present means "this address is the box".
pub const LOCAL_ADDR_PRESENT: u32 = 1;

/// The box's addresses as the programs compare them: raw network-order bytes, IPv4 in the
/// first `v4_count` entries of `v4`, IPv6 in the first `v6_count` of `v6`. `overflow != 0`
/// means the box has more and [`MAP_LOCAL_ADDRS`] must be asked too.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalTable {
    pub v4: [[u8; 4]; LOCAL_TABLE_LEN],
    pub v6: [[u8; 16]; LOCAL_TABLE_LEN],
    pub v4_count: u32,
    pub v6_count: u32,
    pub overflow: u32,
    _pad: u32,
}
const _: () = assert!(size_of::<LocalTable>() == 4 * 16 + 16 * 16 + 16);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: every type here is `#[repr(C)]`, `Copy`, made only of integers and byte arrays,
    // with padding written out, so any bit pattern is valid and none is uninitialised.
    unsafe impl aya::Pod for super::MacKey {}
    unsafe impl aya::Pod for super::IpKey {}
    unsafe impl aya::Pod for super::Usage {}
    unsafe impl aya::Pod for super::LocalTable {}
}
