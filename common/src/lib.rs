//! Types shared by hotspotd's eBPF programs and its daemon: map names, capacities, keys and
//! values. Everything here is `#[repr(C)]`, fixed-width and explicitly padded, because the
//! kernel and userspace read the same bytes; each size is asserted at compile time.
#![no_std]

use core::mem::size_of;

/// Pinned maps live under this bpffs folder by default; the daemon's `kernel.pin_dir` moves it.
/// The layout version is part of the path so a daemon never reuses maps of another layout.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/hotspotd";
/// Bumped whenever a map's key, value or meaning changes.
pub const MAP_LAYOUT_VERSION: u32 = 3;

/// The clients the daemon keeps room for, every client with a grant among them:
/// `HashMap<MacKey, ClientSlots>`, written by the daemon only. One lookup by source (upload)
/// or destination (download) MAC names everything a packet needs: the client's counters in
/// [`MAP_USAGE`], the budget it draws on in [`MAP_BUDGETS`] (shared by the devices of one
/// voucher) and its HTB classes. A client's entry is made before its first grant and deleted
/// after its last reading without one, so a paying client's billing never depends on free
/// room in a table that other traffic can fill. The programs find these entries through
/// [`MAP_CLIENT_INDEX`]; this map is the list the daemon and its readers walk.
pub const MAP_CLIENTS: &str = "CLIENTS";
/// The index the programs find a client's [`ClientSlots`] by: `Array<IndexEntry>` of
/// [`CLIENT_INDEX_LEN`] entries, an open-addressed hash table of the clients in
/// [`MAP_CLIENTS`] that only the daemon writes. A client's entry is within
/// [`CLIENT_INDEX_PROBES`] entries of its home ([`index_home`]); a lookup walks from there and
/// stops at an empty entry. Array lookups are inlined by the verifier, so a packet pays a
/// multiplication and a compare or two where a hash map's lookup is a call that hashes the
/// key (about 27 ns against 5 ns, measured with `bench-ebpf`). A client the index has no room
/// for within its window stays in [`MAP_CLIENTS`] only, and the programs look there when a
/// lookup misses while [`index_info::UNINDEXED`] is not zero.
pub const MAP_CLIENT_INDEX: &str = "CLIENT_INDEX";
/// The index's hash multiplier and the count of clients it lacks: `Array<u64>`, see
/// [`index_info`].
pub const MAP_CLIENT_INDEX_INFO: &str = "CLIENT_INDEX_INFO";
/// Counters of the clients in [`MAP_CLIENTS`]: `PerCpuArray<Usage>`, indexed by
/// `ClientSlots::counters`. The kernel only counts into them; the daemon zeroes a slot before
/// it gives it to a client, and reuses a released slot only after a quarantine that outlasts
/// any program still holding its index.
pub const MAP_USAGE: &str = "USAGE";
/// Running sessions' budgets: `Array<Budget>`, indexed by `ClientSlots::budget`, written by
/// the daemon; the programs decrement `bytes_left` and set `flags`. Several clients (the
/// devices of one voucher) may name one budget: what all of them pass is spent from it.
pub const MAP_BUDGETS: &str = "BUDGETS";
/// Counters of every other MAC the programs see: `LruPerCpuHashMap<MacKey, Usage>`, entries
/// created by the kernel at a MAC's first frame. When it is full the least recently seen
/// entry makes way, so a flood of made-up MACs costs only their own counters.
pub const MAP_SEEN: &str = "SEEN";
/// Which MAC sends from each address: `LruHashMap<IpKey, AddressOwner>`, written by the
/// upload program from the source MAC and source address of what clients send to the box and
/// of clients without a grant (a paying client's internet traffic skips it: one lookup less
/// per packet, and nothing the portal identifies a client by passes that way).
pub const MAP_ADDRESSES: &str = "ADDRESSES";
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
/// Extra destinations clients without a session may reach (`network.walled_garden`):
/// `LpmTrie<[u8; 16], GardenPorts>`, IPv4 IPv4-mapped (prefix + 96).
pub const MAP_WALLED_GARDEN: &str = "WALLED_GARDEN";
/// Budget and deadline crossings, for the daemon to chain sessions at once: `RingBuf` of
/// [`GateEvent`].
pub const MAP_EVENTS: &str = "EVENTS";
/// Global counters of what could not be accounted to a client: `PerCpuArray<u64>`.
pub const MAP_STATS: &str = "STATS";
/// The portal's redirect listeners, IPv4 at index 0 and IPv6 at 1: `SockMap`, filled by the
/// daemon at start and not pinned, so a stopped daemon's sockets leave it (and its clients'
/// web requests are dropped, as with `portal.mode = "off"`, until the next start).
pub const MAP_PORTAL_SOCKETS: &str = "PORTAL_SOCKETS";

/// The box's resolver, where an unpaid client's DNS to any resolver is sent
/// (`portal.redirect_dns`): `Array<IpKey>`, the LAN interface's IPv4 address at index 0 and
/// its IPv6 address at 1, written by the daemon; all-zero: that family's DNS is not redirected.
/// Pinned, like the rest of the gate's state.
pub const MAP_BOX_RESOLVER: &str = "BOX_RESOLVER";
/// The redirected DNS flows: `LruHashMap<DnsFlow, IpKey>`, the resolver each client's query
/// was addressed to, so the box's answer goes back from that address (a stub resolver drops
/// answers from any other). Written by the upload program; the least recently used flow
/// makes way when it is full.
pub const MAP_DNS_REDIRECTS: &str = "DNS_REDIRECTS";
/// Entries of [`MAP_DNS_REDIRECTS`]: the queries of a few thousand unpaid clients in flight.
pub const MAX_DNS_REDIRECTS: u32 = 8_192;

/// The front door's programs, tail-called by the upload program for an unpaid client's
/// refused packets and for what clients send to the box: `ProgramArray`, indexed by [`front_door`], filled by the daemon when it loads the
/// programs, not pinned.
pub const MAP_FRONT_DOOR: &str = "FRONT_DOOR";
/// The programs at [`front_door::STEER`] and [`front_door::TO_BOX`].
pub const PROGRAM_INGRESS_STEER: &str = "lan_ingress_steer";
pub const PROGRAM_INGRESS_TO_BOX: &str = "lan_ingress_to_box";
/// The classic (not direct-action) filter behind `lan_ingress` on kernels without TCX: it
/// matches the uploads `lan_ingress` tagged for the IFB, and the filter's mirred action
/// redirects them there ([`IFB_BY_FILTER`]).
pub const PROGRAM_INGRESS_TO_IFB: &str = "lan_ingress_to_ifb";

/// Set in the [`config_word::IFB_IFINDEX`] word (an ifindex is below 2^31): uploads reach the
/// IFB through a mirred action rather than `bpf_redirect`. Linux before 6.6 has no TCX, and
/// its IFB drops what `bpf_redirect` hands it (the packet is not marked redirected, which only
/// `act_mirred` does there): Debian 12's 6.1 lost every shaped upload. `lan_ingress` then tags
/// the packet ([`TO_IFB_TAG`] in `cb[0]`) and hands it on; the filter behind it matches the
/// tag and its action redirects.
pub const IFB_BY_FILTER: u32 = 1 << 31;
/// What `lan_ingress` writes in `skb->cb[0]` for the filter behind it (0 otherwise): "hotI".
pub const TO_IFB_TAG: u32 = 0x686f_7449;

/// Indexes into [`MAP_FRONT_DOOR`].
pub mod front_door {
    /// `lan_ingress_steer`: web traffic and DNS of a client without a running session.
    pub const STEER: u32 = 0;
    /// `lan_ingress_to_box`: what a client sends to the box's free services.
    pub const TO_BOX: u32 = 1;
    /// Number of entries.
    pub const COUNT: u32 = 2;
}

/// The packet mark (`skb->mark`) of the portal's traffic: set by the upload program on an
/// unpaid client's packets it steers to the box (a policy rule routes them to the box's own
/// stack), and on the portal's answers, which the download program lets through unbilled
/// where the gate would drop them. Clients cannot set a mark; only the box's own
/// configuration can. Its low 16 bits are clear, out of the way of firewall marks that use
/// them (multi-WAN routing, for one).
pub const PORTAL_MARK: u32 = 0x6873_0000;

/// Clients the kernel tracks at once. A hotspot box serves hundreds to a few thousand.
pub const MAX_CLIENTS: u32 = 16_384;
/// Entries of [`MAP_SEEN`]: MACs without room in [`MAP_CLIENTS`].
pub const MAX_SEEN: u32 = 16_384;
/// Entries of [`MAP_ADDRESSES`]: a phone has an IPv4, a link-local and one or two global IPv6
/// addresses.
pub const MAX_ADDRESSES: u32 = 65_536;
/// `(protocol, port)` pairs of the box's client services [`LocalTable`] holds.
pub const LOCAL_SERVICES_LEN: usize = 32;
/// Addresses of the box itself (every interface, IPv4 and IPv6).
pub const MAX_LOCAL_ADDRS: u32 = 1_024;
/// Walled-garden prefixes.
pub const MAX_GARDEN_ENTRIES: u32 = 1_024;
/// Size of [`MAP_EVENTS`]: room for thousands of events between two reads.
pub const EVENTS_BYTES: u32 = 256 * 1024;
/// Addresses of each family that [`LocalTable`] holds.
pub const LOCAL_TABLE_LEN: usize = 16;

/// Entries of [`MAP_CLIENT_INDEX`]: four per client the kernel tracks, so a lookup rarely walks
/// past its home entry. A power of two.
pub const CLIENT_INDEX_LEN: u32 = 4 * MAX_CLIENTS;
const _: () = assert!(CLIENT_INDEX_LEN.is_power_of_two());
/// How far from its home a client's entry may be in [`MAP_CLIENT_INDEX`]: the most entries
/// a lookup reads.
pub const CLIENT_INDEX_PROBES: u32 = 16;

/// Indexes into [`MAP_CLIENT_INDEX_INFO`].
pub mod index_info {
    /// The odd multiplier of [`super::index_home`], random per set of maps so nobody outside
    /// the box can pick MACs that crowd one window; 0 until the daemon sets it.
    pub const MULTIPLIER: u32 = 0;
    /// How many clients of [`super::MAP_CLIENTS`] the index has no entry for.
    pub const UNINDEXED: u32 = 1;
    /// Number of entries.
    pub const COUNT: u32 = 2;
}

/// An entry of [`MAP_CLIENT_INDEX`]: `key` is [`index_key`] of the client's MAC for an entry
/// in use, [`INDEX_EMPTY`] for one never used (a lookup stops there), [`INDEX_VACATED`] for
/// one given up or being filled (a lookup walks past it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexEntry {
    pub key: u64,
    pub slots: ClientSlots,
}
const _: () = assert!(size_of::<IndexEntry>() == 24);

/// [`IndexEntry::key`] of an entry never used.
pub const INDEX_EMPTY: u64 = 0;
/// [`IndexEntry::key`] of an entry given up, or being filled: the tag byte says so, and no
/// MAC's [`index_key`] has it.
pub const INDEX_VACATED: u64 = 2 << 48;
/// The tag byte of an entry in use.
const INDEX_IN_USE: u64 = 1 << 48;

/// The key a client's entry in [`MAP_CLIENT_INDEX`] holds: its MAC in the low six bytes and a
/// tag saying the entry is in use, one word the programs compare in one instruction.
#[expect(
    clippy::inline_always,
    reason = "run for every packet by the eBPF programs, where a call would cost more than the body"
)]
#[inline(always)]
#[must_use]
pub const fn index_key(mac: &MacKey) -> u64 {
    let a = mac.addr;
    u64::from_le_bytes([a[0], a[1], a[2], a[3], a[4], a[5], 0, 0]) | INDEX_IN_USE
}

/// The entry of [`MAP_CLIENT_INDEX`] a lookup of `key` starts at: multiply-shift hashing
/// with the odd `multiplier` ([`index_info::MULTIPLIER`]).
#[expect(
    clippy::inline_always,
    reason = "run for every packet by the eBPF programs, where a call would cost more than the body"
)]
#[inline(always)]
#[must_use]
#[expect(
    clippy::cast_possible_truncation,
    reason = "the shift leaves as many bits as the index has entries"
)]
pub const fn index_home(key: u64, multiplier: u64) -> u32 {
    (key.wrapping_mul(multiplier | 1) >> (64 - CLIENT_INDEX_LEN.trailing_zeros())) as u32
}

/// Indexes into [`MAP_CONFIG`].
pub mod config_word {
    /// Which slot (0 or 1) of [`super::MAP_LOCAL_TABLE`] is current.
    pub const LOCAL_TABLE_SLOT: u32 = 0;
    /// A random non-zero id the daemon gives the maps when it creates them, so a restarted
    /// daemon knows whether the counters it saved baselines of are still the same ones.
    pub const EPOCH: u32 = 1;
    /// The IFB device uploads are redirected into for shaping; 0 = no upload shaping.
    pub const IFB_IFINDEX: u32 = 2;
    /// 1: an unpaid client's web traffic goes to the portal (plain HTTP to the redirect
    /// listener, HTTPS connections refused with a reset); 0: dropped like the rest.
    pub const PORTAL_STEERING: u32 = 3;
    /// 1: `network.walled_garden` names host names, so the download program copies the box's
    /// DNS answers to [`super::MAP_GARDEN_ANSWERS`]; 0: it copies nothing.
    pub const GARDEN_NAMES: u32 = 4;
    /// Number of entries.
    pub const COUNT: u32 = 5;
}

/// Indexes into [`MAP_STATS`].
pub mod stat {
    /// An IP packet whose header is truncated or inconsistent: never billed.
    pub const MALFORMED_PACKETS: u32 = 0;
    /// A client packet not counted because [`super::MAP_SEEN`] could not take its MAC.
    pub const UNTRACKED_PACKETS: u32 = 1;
    /// Frames that are not IPv4 or IPv6 (ARP, LLDP, …): never billed.
    pub const NON_IP_PACKETS: u32 = 2;
    /// Packets dropped because their client has no running session (not in the garden), and
    /// frames from a group (multicast or broadcast) source MAC, which no session can belong to.
    pub const DROPPED_NO_SESSION: u32 = 3;
    /// Packets dropped because the session's data budget was spent.
    pub const DROPPED_BUDGET: u32 = 4;
    /// Packets dropped because the session's deadline had passed.
    pub const DROPPED_DEADLINE: u32 = 5;
    /// Gate events lost because `EVENTS` was full (the daemon's poll catches up).
    pub const EVENTS_LOST: u32 = 6;
    /// Forwarded packets to a group (multicast or broadcast) destination MAC: a neighbour
    /// entry that an attacker pointed at a group address would hand every station a copy,
    /// with no one client to gate, bill or shape it as; dropped.
    pub const DROPPED_GROUP_DESTINATION: u32 = 7;
    /// Number of entries.
    pub const COUNT: u32 = 8;
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

/// The slots of a client the daemon keeps room for (value of [`MAP_CLIENTS`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientSlots {
    /// Its counters: an index into [`MAP_USAGE`].
    pub counters: u32,
    /// The budget it draws on: an index into [`MAP_BUDGETS`]; [`NO_BUDGET`] while it has no
    /// running session (it reaches only the walled garden).
    pub budget: u32,
    /// `skb->priority` (HTB class) for the client's download and upload; 0 = none.
    pub class_down: u32,
    pub class_up: u32,
}
const _: () = assert!(size_of::<ClientSlots>() == 16);

/// `ClientSlots::budget` of a client without a running session.
pub const NO_BUDGET: u32 = u32::MAX;

/// A running session's budget in the kernel (value of [`MAP_BUDGETS`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Billable bytes (up + down) the session may still pass; the programs subtract every
    /// packet atomically and drop once it is spent. [`UNLIMITED_BYTES`] for time-only sessions.
    pub bytes_left: i64,
    /// Jiffies at which the session must stop; [`NO_DEADLINE`] for data-only sessions.
    pub deadline_jiffies: u64,
    /// The session this budget belongs to, echoed in [`GateEvent`]s.
    pub session_id: i64,
    /// [`grant_flag`] bits the programs set, once each. 64 bits: BPF before ISA v3 has no
    /// 32-bit atomic OR.
    pub flags: u64,
}
const _: () = assert!(size_of::<Budget>() == 32);

/// A client's grant as the daemon reads and writes it: its budget (perhaps shared) and its
/// own classes. Never a map value: [`MAP_CLIENTS`] and [`MAP_BUDGETS`] hold its parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// See [`Budget`].
    pub bytes_left: i64,
    pub deadline_jiffies: u64,
    pub session_id: i64,
    /// See [`ClientSlots`].
    pub class_down: u32,
    pub class_up: u32,
    /// See [`Budget`].
    pub flags: u64,
}

/// `Grant::bytes_left` of a session whose data does not count.
pub const UNLIMITED_BYTES: i64 = i64::MAX;
/// `Grant::deadline_jiffies` of a session whose time does not count.
pub const NO_DEADLINE: u64 = u64::MAX;

impl Grant {
    #[must_use]
    pub const fn new(session_id: i64, bytes_left: i64, deadline_jiffies: u64) -> Self {
        Self {
            bytes_left,
            deadline_jiffies,
            session_id,
            class_down: 0,
            class_up: 0,
            flags: 0,
        }
    }

    /// The budget part, as [`MAP_BUDGETS`] holds it.
    #[must_use]
    pub const fn budget(&self) -> Budget {
        Budget {
            bytes_left: self.bytes_left,
            deadline_jiffies: self.deadline_jiffies,
            session_id: self.session_id,
            flags: self.flags,
        }
    }

    /// A client's grant from its budget and its classes.
    #[must_use]
    pub const fn of(budget: &Budget, slots: &ClientSlots) -> Self {
        Self {
            bytes_left: budget.bytes_left,
            deadline_jiffies: budget.deadline_jiffies,
            session_id: budget.session_id,
            class_down: slots.class_down,
            class_up: slots.class_up,
            flags: budget.flags,
        }
    }
}

/// Bits of `Grant::flags`: which crossing was already reported, so each is sent once.
pub mod grant_flag {
    pub const BUDGET_REPORTED: u64 = 1;
    pub const DEADLINE_REPORTED: u64 = 2;
}

/// Ports of a walled-garden prefix (value of [`MAP_WALLED_GARDEN`]), host byte order.
/// `any_port != 0` allows every port; otherwise the first `count` of `ports`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GardenPorts {
    pub ports: [u16; GARDEN_PORTS],
    pub count: u16,
    pub any_port: u16,
}
/// Ports one walled-garden prefix can name.
pub const GARDEN_PORTS: usize = 14;
const _: () = assert!(size_of::<GardenPorts>() == 32);

/// Why the programs wrote a [`GateEvent`].
pub mod gate_event {
    /// The session's data budget is spent.
    pub const BUDGET_SPENT: u32 = 1;
    /// The session's deadline passed.
    pub const DEADLINE_PASSED: u32 = 2;
}

/// A record of [`MAP_EVENTS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GateEvent {
    pub session_id: i64,
    pub client: MacKey,
    /// One of [`gate_event`].
    pub kind: u32,
    _pad: u32,
}
const _: () = assert!(size_of::<GateEvent>() == 24);

impl GateEvent {
    #[must_use]
    pub const fn new(client: MacKey, session_id: i64, kind: u32) -> Self {
        Self {
            session_id,
            client,
            kind,
            _pad: 0,
        }
    }
}

/// Value of [`MAP_LOCAL_ADDRS`]: present means "this address is the box".
pub const LOCAL_ADDR_PRESENT: u32 = 1;

/// The box's addresses as the programs compare them: raw network-order bytes, IPv4 in the
/// first `v4_count` entries of `v4`, IPv6 in the first `v6_count` of `v6`. `overflow != 0`
/// means the box has more and [`MAP_LOCAL_ADDRS`] must be asked too.
///
/// And the box's client services (`network.local_services`): what a client may reach on the
/// box without a session and is never billed for, as [`local_service`] words in the first
/// `service_count` of `services`; `control != 0` adds ICMP (v4 and v6) and IGMP. Anything else
/// a client has with the box is gated and billed like internet traffic.
///
/// `filter` has the bit [`local_filter_v4`] or [`local_filter_v6`] gives each of the box's
/// addresses set (all of them, those beyond the table too): an address whose bit is clear is
/// not the box's, which spares nearly every packet to the internet the walk through the
/// table. 0 means no filter (a table written before it existed): walk.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalTable {
    pub v4: [[u8; 4]; LOCAL_TABLE_LEN],
    pub v6: [[u8; 16]; LOCAL_TABLE_LEN],
    pub v4_count: u32,
    pub v6_count: u32,
    pub overflow: u32,
    pub service_count: u32,
    pub services: [u32; LOCAL_SERVICES_LEN],
    pub control: u32,
    pub filter: u32,
}
const _: () =
    assert!(size_of::<LocalTable>() == 4 * 16 + 16 * 16 + 16 + 4 * LOCAL_SERVICES_LEN + 8);

/// The bit of [`LocalTable::filter`] for an IPv4 address (network-order bytes).
#[expect(
    clippy::inline_always,
    reason = "run for every packet by the eBPF programs, where a call would cost more than the body"
)]
#[inline(always)]
#[must_use]
pub const fn local_filter_v4(addr: [u8; 4]) -> u32 {
    local_filter_bit(u32::from_ne_bytes(addr))
}

/// The bit of [`LocalTable::filter`] for an IPv6 address.
#[expect(
    clippy::inline_always,
    reason = "run for every packet by the eBPF programs, where a call would cost more than the body"
)]
#[inline(always)]
#[must_use]
pub const fn local_filter_v6(addr: &[u8; 16]) -> u32 {
    // The last four bytes: where the box's addresses differ (interface ids, or the ::1 of a
    // prefix), read as one word.
    local_filter_bit(u32::from_ne_bytes([addr[12], addr[13], addr[14], addr[15]]))
}

/// One of 32 bits for a word: multiply-shift, whose top five bits mix every input bit.
#[expect(
    clippy::inline_always,
    reason = "run for every packet by the eBPF programs, where a call would cost more than the body"
)]
#[inline(always)]
const fn local_filter_bit(word: u32) -> u32 {
    1 << (word.wrapping_mul(0x9e37_79b1) >> 27)
}

/// A box service as [`LocalTable::services`] holds it: the IP protocol number above the port.
#[must_use]
pub const fn local_service(protocol: u8, port: u16) -> u32 {
    ((protocol as u32) << 16) | port as u32
}

/// Who sends from an address (value of [`MAP_ADDRESSES`]), as the upload program last saw it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddressOwner {
    /// The source MAC of the latest packet from the address.
    pub mac: MacKey,
    /// The MAC that sent from it before `mac` did; all-zero if none.
    pub previous: MacKey,
    /// Jiffies of the latest packet.
    pub seen_jiffies: u64,
    /// Jiffies at which `mac` took the address over from `previous`; 0 if it never moved.
    pub moved_jiffies: u64,
}
const _: () = assert!(size_of::<AddressOwner>() == 32);

/// One client's DNS flow (key of [`MAP_DNS_REDIRECTS`]): its address and port, and TCP or UDP.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsFlow {
    pub client: IpKey,
    pub port: u16,
    pub proto: u8,
    _pad: [u8; 5],
}
const _: () = assert!(size_of::<DnsFlow>() == 24);

impl DnsFlow {
    #[must_use]
    pub const fn new(client: IpKey, port: u16, proto: u8) -> Self {
        Self {
            client,
            port,
            proto,
            _pad: [0; 5],
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    //! `aya::Pod` for the map types: aya copies them to and from the kernel as raw bytes, so
    //! every type here is `#[repr(C)]`, `Copy`, made only of integers and byte arrays, with
    //! any padding written out as a `_pad` field and its size asserted: any bit pattern is a
    //! valid value and no byte is uninitialised.

    // SAFETY: `#[repr(C)]` 6 bytes of address and an explicit 2-byte `_pad` (8, asserted).
    unsafe impl aya::Pod for super::MacKey {}
    // SAFETY: `#[repr(C)]` 16 + 2 + 1 bytes and an explicit 5-byte `_pad` (24, asserted).
    unsafe impl aya::Pod for super::DnsFlow {}
    // SAFETY: `#[repr(C)]` one `[u8; 16]`, no padding (16, asserted).
    unsafe impl aya::Pod for super::IpKey {}
    // SAFETY: `#[repr(C)]` ten `u64` counters, no padding (80, asserted).
    unsafe impl aya::Pod for super::Usage {}
    // SAFETY: `#[repr(C)]` byte arrays and `u32`s, the last an explicit `_pad` (asserted).
    unsafe impl aya::Pod for super::LocalTable {}
    // SAFETY: `#[repr(C)]` `i64` and `u64` fields, no padding (32, asserted); its flags are a
    // `u64`, not a `bool`, so every value is valid.
    unsafe impl aya::Pod for super::Budget {}
    // SAFETY: `#[repr(C)]` four `u32`, no padding (16, asserted).
    unsafe impl aya::Pod for super::ClientSlots {}
    // SAFETY: `#[repr(C)]` a `u64` and a `ClientSlots` (itself `Pod`), no padding (size asserted).
    unsafe impl aya::Pod for super::IndexEntry {}
    // SAFETY: `#[repr(C)]` sixteen `u16`, no padding (32, asserted).
    unsafe impl aya::Pod for super::GardenPorts {}
    // SAFETY: `#[repr(C)]` an `i64`, a `MacKey` (itself `Pod`), a `u32` and an explicit `u32`
    // `_pad` (24, asserted).
    unsafe impl aya::Pod for super::GateEvent {}
    // SAFETY: `#[repr(C)]` two `MacKey`s (themselves `Pod`) and two `u64`, no padding (32,
    // asserted).
    unsafe impl aya::Pod for super::AddressOwner {}
    // SAFETY: `#[repr(C)]` a `GardenPorts` (itself `Pod`) and two `u32`, no padding (40,
    // asserted).
    unsafe impl aya::Pod for super::GardenLearned {}
}

/// Addresses learned from the box's DNS answers for the walled garden's host names
/// (`network.walled_garden`): `HashMap<IpKey, GardenLearned>`, written and expired by the
/// daemon only; the gate consults it after [`MAP_WALLED_GARDEN`] misses. Pinned like the rest
/// of the gate's state, so learned addresses stay open while the daemon restarts.
pub const MAP_GARDEN_LEARNED: &str = "GARDEN_LEARNED";
/// Entries of [`MAP_GARDEN_LEARNED`]: a big CDN answer holds dozens of addresses, a few
/// hundred names thousands. At the limit the daemon drops the oldest learned address first.
pub const MAX_GARDEN_LEARNED: u32 = 8_192;
/// The box's DNS answers to clients, copied for the daemon to learn the garden's addresses
/// from: `RingBuf` of a [`GardenAnswerHeader`] followed by the DNS message (UDP payload),
/// at most [`GARDEN_ANSWER_MAX_LEN`] bytes of it. Not pinned: only a running daemon reads it.
pub const MAP_GARDEN_ANSWERS: &str = "GARDEN_ANSWERS";
/// Size of [`MAP_GARDEN_ANSWERS`]: a typical answer takes a few hundred bytes, so thousands
/// of answers between two reads of the daemon.
pub const GARDEN_ANSWERS_BYTES: u32 = 1024 * 1024;
/// The longest DNS answer copied: EDNS's recommended UDP payload size (DNS flag day 2020);
/// longer answers are copied truncated, and the daemon learns what the whole records hold.
pub const GARDEN_ANSWER_MAX_LEN: u32 = 1_232;
/// Bytes clients without a running session sent to learned garden addresses, per name:
/// `PerCpuArray<u64>` indexed by [`GardenLearned::name_index`], written by the gate.
pub const MAP_GARDEN_BYTES: &str = "GARDEN_BYTES";
/// Host names and wildcards `network.walled_garden` may hold (the size of
/// [`MAP_GARDEN_BYTES`]).
pub const MAX_GARDEN_NAMES: u32 = 256;

/// A learned walled-garden address (value of [`MAP_GARDEN_LEARNED`]): the ports allowed
/// there (those of every configured name it was learned for) and the index of the first such
/// name, for the bytes counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GardenLearned {
    pub ports: GardenPorts,
    pub name_index: u32,
    _pad: u32,
}
const _: () = assert!(size_of::<GardenLearned>() == 40);

impl GardenLearned {
    #[must_use]
    pub const fn new(ports: GardenPorts, name_index: u32) -> Self {
        Self {
            ports,
            name_index,
            _pad: 0,
        }
    }
}

/// The start of a [`MAP_GARDEN_ANSWERS`] record: how many bytes of DNS message follow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GardenAnswerHeader {
    pub len: u32,
    _pad: u32,
}
const _: () = assert!(size_of::<GardenAnswerHeader>() == 8);

impl GardenAnswerHeader {
    #[must_use]
    pub const fn new(len: u32) -> Self {
        Self { len, _pad: 0 }
    }
}
