//! hotspotd's tc programs on the LAN interface. `lan_ingress` sees what clients send (upload),
//! `lan_egress` what they receive (download). Each parses the frame, finds the client by MAC,
//! lets the gate decide on every packet but those with the box's free client services and
//! the LAN's multicast (`gate.rs`), and adds the packet to the client's per-CPU counters:
//! billable, local or dropped. Accounting
//! fails open: a frame that cannot be parsed is passed on and counted in `STATS`; the gate is
//! the one place that drops.
#![no_std]
#![no_main]
// Atomic fetch-and-add: the BPF target has no compare-and-swap, so core's atomic types lack
// fetch_add; the intrinsic lowers to BPF's atomic instructions.
#![feature(core_intrinsics)]
#![expect(internal_features, reason = "core_intrinsics, see above")]
#![expect(
    clippy::cast_possible_truncation,
    reason = "offsets and lengths are bounded by the packet size"
)]
#![expect(
    clippy::inline_always,
    reason = "BPF: every helper is inlined into its program, so the verifier sees one function \
              with the packet bounds it proved, and no BPF-to-BPF call limits apply"
)]

mod garden;
mod gate;
mod packet;
mod portal;

use aya_ebpf::{
    bindings::{BPF_NOEXIST, TC_ACT_OK, TC_ACT_SHOT, TC_ACT_UNSPEC},
    helpers::generated::{bpf_jiffies64, bpf_redirect},
    macros::{classifier, map},
    maps::{
        Array, HashMap, LpmTrie, LruHashMap, LruPerCpuHashMap, PerCpuArray, PerCpuHashMap,
        ProgramArray, RingBuf, SockMap,
    },
    programs::TcContext,
};
use gate::Verdict;
use hotspotd_common::{
    AddressOwner, Budget, CLIENT_INDEX_LEN, CLIENT_INDEX_PROBES, ClientSlots, DnsFlow,
    EVENTS_BYTES, GardenPorts, IFB_BY_FILTER, INDEX_EMPTY, IndexEntry, IpKey, LOCAL_TABLE_LEN,
    LocalTable, MAX_ADDRESSES, MAX_CLIENTS, MAX_DNS_REDIRECTS, MAX_GARDEN_ENTRIES, MAX_LOCAL_ADDRS,
    MAX_SEEN, MacKey, TO_IFB_TAG, Usage, config_word, front_door, index_home, index_info,
    index_key, local_filter_v4, local_filter_v6, stat,
};
use packet::{Direction, Frame, FrameKind};

#[map(name = "CLIENTS")]
static CLIENTS: HashMap<MacKey, ClientSlots> = HashMap::pinned(MAX_CLIENTS, 0);

#[map(name = "CLIENT_INDEX")]
static CLIENT_INDEX: Array<IndexEntry> = Array::pinned(CLIENT_INDEX_LEN, 0);

#[map(name = "CLIENT_INDEX_INFO")]
static CLIENT_INDEX_INFO: Array<u64> = Array::pinned(index_info::COUNT, 0);

#[map(name = "USAGE")]
static USAGE: PerCpuArray<Usage> = PerCpuArray::pinned(MAX_CLIENTS, 0);

#[map(name = "BUDGETS")]
static BUDGETS: Array<Budget> = Array::pinned(MAX_CLIENTS, 0);

#[map(name = "SEEN")]
static SEEN: LruPerCpuHashMap<MacKey, Usage> = LruPerCpuHashMap::pinned(MAX_SEEN, 0);

#[map(name = "ADDRESSES")]
static ADDRESSES: LruHashMap<IpKey, AddressOwner> = LruHashMap::pinned(MAX_ADDRESSES, 0);

#[map(name = "LOCAL_ADDRS")]
static LOCAL_ADDRS: HashMap<IpKey, u32> = HashMap::pinned(MAX_LOCAL_ADDRS, 0);

#[map(name = "LOCAL_TABLE")]
static LOCAL_TABLE: Array<LocalTable> = Array::pinned(2, 0);

#[map(name = "CONFIG")]
static CONFIG: Array<u32> = Array::pinned(config_word::COUNT, 0);

#[map(name = "CLOCK")]
static CLOCK: Array<u64> = Array::with_max_entries(1, 0);

// LPM tries must be created with BPF_F_NO_PREALLOC.
#[map(name = "WALLED_GARDEN")]
static WALLED_GARDEN: LpmTrie<[u8; 16], GardenPorts> =
    LpmTrie::pinned(MAX_GARDEN_ENTRIES, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::pinned(EVENTS_BYTES, 0);

#[map(name = "STATS")]
static STATS: PerCpuArray<u64> = PerCpuArray::pinned(stat::COUNT, 0);

#[map(name = "BOX_RESOLVER")]
static BOX_RESOLVER: Array<IpKey> = Array::pinned(2, 0);

#[map(name = "DNS_REDIRECTS")]
static DNS_REDIRECTS: LruHashMap<DnsFlow, IpKey> = LruHashMap::pinned(MAX_DNS_REDIRECTS, 0);

#[map(name = "FRONT_DOOR")]
static FRONT_DOOR: ProgramArray = ProgramArray::with_max_entries(front_door::COUNT, 0);

#[map(name = "PORTAL_SOCKETS")]
static PORTAL_SOCKETS: SockMap = SockMap::with_max_entries(2, 0);

/// Client upload: frames the LAN interface receives.
#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "#[classifier] requires the context by value"
)]
pub fn lan_ingress(ctx: TcContext) -> i32 {
    // Whatever the layers below left in the control block must not read as the tag for the
    // filter behind this one (`lan_ingress_to_ifb`).
    // SAFETY: tc programs may write `cb`; `skb` is the context pointer.
    unsafe { (*ctx.skb.skb).cb[0] = 0 };
    // A packet the IFB hands back after upload shaping has been through here already: the IFB
    // re-injects it with itself as the ingress interface.
    let ifb = config_value(config_word::IFB_IFINDEX) & !IFB_BY_FILTER;
    // SAFETY: `skb` is the context pointer the kernel passed to the program.
    if ifb != 0 && unsafe { (*ctx.skb.skb).ingress_ifindex } == ifb {
        return TC_ACT_UNSPEC;
    }
    handle(&ctx, Direction::Up)
}

/// The classic filter behind `lan_ingress` on kernels without TCX (see [`IFB_BY_FILTER`]):
/// -1 ("matched": the filter's mirred action redirects the packet into the IFB) for an upload
/// `lan_ingress` tagged, 0 ("no match": on to the next filter, or passed) for anything else.
#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "#[classifier] requires the context by value"
)]
pub fn lan_ingress_to_ifb(ctx: TcContext) -> i32 {
    // SAFETY: tc programs may read and write `cb`; `skb` is the context pointer.
    unsafe {
        if (*ctx.skb.skb).cb[0] == TO_IFB_TAG {
            (*ctx.skb.skb).cb[0] = 0;
            return -1;
        }
    }
    0
}

/// Client download: frames the LAN interface sends.
#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "#[classifier] requires the context by value"
)]
pub fn lan_egress(ctx: TcContext) -> i32 {
    handle(&ctx, Direction::Down)
}

/// Does nothing: the baseline the benchmarks measure the programs against.
#[classifier]
pub fn bench_empty(_ctx: TcContext) -> i32 {
    TC_ACT_OK
}

/// The floor any per-client accounting pays, for the benchmarks to measure the programs
/// against: the source MAC's counters in a per-CPU hash map, one lookup, two adds. Never
/// attached; its map takes no memory until the benchmark fills it.
#[map(name = "BENCH_COUNTERS")]
static BENCH_COUNTERS: PerCpuHashMap<MacKey, [u64; 2]> =
    PerCpuHashMap::with_max_entries(MAX_CLIENTS, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "#[classifier] requires the context by value"
)]
pub fn bench_reference(ctx: TcContext) -> i32 {
    if let Some(source) = packet::source_mac(&ctx)
        && let Some(counters) = BENCH_COUNTERS.get_ptr_mut(MacKey::new(source))
    {
        // SAFETY: per-CPU value from a successful lookup, see `account`.
        unsafe {
            (*counters)[0] += u64::from(ctx.len());
            (*counters)[1] += 1;
        }
    }
    TC_ACT_OK
}

#[inline(always)]
fn handle(ctx: &TcContext, direction: Direction) -> i32 {
    packet::make_headers_linear(ctx);
    let frame = packet::parse(ctx, direction);
    // The one lookup by MAC: it names the client's counters, its budget and its classes.
    let slots = if frame.kind == FrameKind::Ip {
        slots_of(&frame.client)
    } else {
        None
    };
    let mut htb_class = 0;
    let class = match frame.kind {
        FrameKind::Ip if frame.group || is_free_service(ctx, &frame, direction) => {
            // DNS with the box's resolver: what redirected queries need (`portal.rs`).
            if frame.box_end {
                match direction {
                    // A program of its own, for the same reason as `lan_ingress_steer`;
                    // if the call fails, the packet passes as it is.
                    // SAFETY: a tail call with the context the kernel passed.
                    Direction::Up => unsafe { FRONT_DOOR.tail_call(ctx, front_door::TO_BOX) },
                    Direction::Down => {
                        garden::copy_answer(ctx, &frame);
                        portal::answer_as_resolver(ctx, &frame);
                    }
                }
            }
            Class::Local
        }
        FrameKind::Ip if direction == Direction::Down && portal::is_answer(ctx) => Class::Local,
        FrameKind::Ip => {
            let decision = gate::verdict(ctx, &frame, direction, slots);
            htb_class = decision.class;
            match decision.verdict {
                Verdict::Billable => Class::Billable,
                Verdict::Garden => Class::Local,
                Verdict::Drop => {
                    if direction == Direction::Up && portal::may_steer(&frame) {
                        // An unpaid client's web traffic and DNS may go to the box instead:
                        // `lan_ingress_steer` decides, counts and acts. A program of its own,
                        // so its code weighs nothing on the path paying clients take; if the
                        // call fails, the packet is dropped.
                        // SAFETY: a tail call with the context the kernel passed.
                        unsafe { FRONT_DOOR.tail_call(ctx, front_door::STEER) };
                    }
                    Class::Dropped
                }
            }
        }
        FrameKind::NonIp => {
            // ARP and neighbour discovery must work without a session; the stack routes
            // nothing that is not IP, so these pass.
            count_stat(stat::NON_IP_PACKETS);
            return TC_ACT_UNSPEC;
        }
        FrameKind::Malformed => {
            // The stack drops IP it cannot parse; nothing is billed for it.
            count_stat(stat::MALFORMED_PACKETS);
            return TC_ACT_UNSPEC;
        }
        FrameKind::GroupSource => {
            // Whatever it carries, nobody can have paid for it; counted with the drops of
            // clients without a session, since none can hold one under a group address.
            count_stat(stat::DROPPED_NO_SESSION);
            return TC_ACT_SHOT;
        }
        FrameKind::GroupDestination => {
            count_stat(stat::DROPPED_GROUP_DESTINATION);
            return TC_ACT_SHOT;
        }
        FrameKind::NotClient => return TC_ACT_UNSPEC,
    };
    let first_this_tick = account(&frame, direction, class, slots);
    if direction == Direction::Up && (class != Class::Billable || first_this_tick) {
        bind_address(&frame);
    }
    if class == Class::Dropped {
        return TC_ACT_SHOT;
    }
    if htb_class != 0 {
        return shape(ctx, direction, htb_class);
    }
    // TCX_NEXT: let any program attached after us, then the qdisc, decide.
    TC_ACT_UNSPEC
}

/// What a client sends to the box's free services, tail-called from `lan_ingress`: counted
/// like any (local), and a DNS query to the box's resolver ends the redirect of its flow an
/// earlier redirected query left (`portal::forget_redirect`).
#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "#[classifier] requires the context by value"
)]
pub fn lan_ingress_to_box(ctx: TcContext) -> i32 {
    let frame = packet::parse(&ctx, Direction::Up);
    if frame.kind != FrameKind::Ip {
        return TC_ACT_UNSPEC;
    }
    portal::forget_redirect(&ctx, &frame);
    account(&frame, Direction::Up, Class::Local, slots_of(&frame.client));
    bind_address(&frame);
    TC_ACT_UNSPEC
}

/// An unpaid client's TCP or UDP packet that the gate refused, tail-called from
/// `lan_ingress`: web traffic and DNS the front door handles (`portal.rs`) are counted as the
/// client's traffic with the box and handed on as the front door says; the rest is dropped,
/// as it would have been.
#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "#[classifier] requires the context by value"
)]
pub fn lan_ingress_steer(ctx: TcContext) -> i32 {
    let frame = packet::parse(&ctx, Direction::Up);
    if frame.kind != FrameKind::Ip {
        return TC_ACT_SHOT;
    }
    let (class, action) = match portal::steer(&ctx, &frame) {
        Some(action) => (Class::Local, action),
        None => (Class::Dropped, TC_ACT_SHOT),
    };
    account(&frame, Direction::Up, class, slots_of(&frame.client));
    bind_address(&frame);
    action
}

/// Sends a client's packet to its HTB class: `skb->priority` names the class, which HTB
/// reads without filters. Downloads meet the LAN interface's HTB on the way out; uploads are
/// redirected into the IFB, whose HTB shapes them before it hands them back.
#[inline(always)]
fn shape(ctx: &TcContext, direction: Direction, htb_class: u32) -> i32 {
    // SAFETY: tc programs may write `priority`; `skb` is the context pointer.
    unsafe { (*ctx.skb.skb).priority = htb_class };
    match direction {
        Direction::Down => TC_ACT_UNSPEC,
        Direction::Up => {
            let word = config_value(config_word::IFB_IFINDEX);
            let ifb = word & !IFB_BY_FILTER;
            if ifb == 0 {
                return TC_ACT_UNSPEC;
            }
            if word & IFB_BY_FILTER != 0 {
                // The filter behind this one redirects it (`lan_ingress_to_ifb`).
                // SAFETY: tc programs may write `cb`; `skb` is the context pointer.
                unsafe { (*ctx.skb.skb).cb[0] = TO_IFB_TAG };
                return TC_ACT_UNSPEC;
            }
            // SAFETY: a plain helper call; an invalid ifindex makes it return TC_ACT_SHOT.
            unsafe { bpf_redirect(ifb, 0) as i32 }
        }
    }
}

/// A word of `CONFIG` (0 if unset).
#[inline(always)]
fn config_value(index: u32) -> u32 {
    CONFIG.get(index).copied().unwrap_or(0)
}

/// Which counters a client's IP packet goes to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Billable,
    Local,
    Dropped,
}

/// Reads the kernel's jiffies into `CLOCK`, for the daemon to turn `last_seen_jiffies` into
/// wall time. Never attached: the daemon runs it with `BPF_PROG_TEST_RUN`.
#[classifier]
pub fn clock_probe(_ctx: TcContext) -> i32 {
    if let Some(now) = CLOCK.get_ptr_mut(0) {
        // SAFETY: a successful lookup of an array element.
        unsafe { *now = bpf_jiffies64() };
    }
    TC_ACT_OK
}

/// Whether the other end is the box and the packet is for (or from) one of its free client
/// services: what every client may use without a session, never billed.
#[inline(always)]
fn is_free_service(ctx: &TcContext, frame: &Frame, direction: Direction) -> bool {
    if !frame.box_end {
        return false;
    }
    let Some(table) = local_table() else {
        return false;
    };
    packet::is_local_service(ctx, frame, direction, table)
}

/// Records that the client sends from its source address, and when the address last moved
/// to another MAC: what the daemon shows as the client's addresses, and how the portal
/// knows whose request it answers. For every packet a client sends to the box or while it
/// has no grant; of a paying client's internet traffic, only its first packet in each jiffy
/// on a CPU, which keeps its addresses known and spares the lookup on the rest.
#[inline(always)]
fn bind_address(frame: &Frame) {
    if !frame.has_source {
        return;
    }
    // SAFETY: jiffies are a plain read.
    let now = unsafe { bpf_jiffies64() };
    if let Some(owner) = ADDRESSES.get_ptr_mut(frame.source) {
        // SAFETY: a successful lookup; two CPUs writing one entry at once (two MACs sending
        // from one address in the same instant) may mix their fields, and either way the
        // entry says the address moved.
        unsafe {
            let owner = &mut *owner;
            if owner.mac != frame.client {
                owner.previous = owner.mac;
                owner.mac = frame.client;
                owner.moved_jiffies = now;
            }
            // Written only when it changes: most packets leave the cache line alone.
            if owner.seen_jiffies != now {
                owner.seen_jiffies = now;
            }
        }
        return;
    }
    let owner = AddressOwner {
        mac: frame.client,
        previous: MacKey::new([0; 6]),
        seen_jiffies: now,
        moved_jiffies: 0,
    };
    // The LRU map makes room itself; a failure leaves the address unbound, which the daemon
    // shows as unknown.
    let _ = ADDRESSES.insert(frame.source, owner, 0);
}

/// The box's addresses in use now: the slot of `LOCAL_TABLE` that `CONFIG` points at.
#[inline(always)]
fn local_table() -> Option<&'static LocalTable> {
    let slot = config_value(config_word::LOCAL_TABLE_SLOT) & 1;
    LOCAL_TABLE.get(slot)
}

/// Whether the IPv4 address is the box's: the table's filter first (most addresses are not,
/// and one bit says so), then the inline table, the hash map only when the box has more
/// addresses than the table holds (a hash lookup costs ~35 ns per packet).
#[inline(always)]
pub(crate) fn is_local_v4(addr: [u8; 4]) -> bool {
    let Some(table) = local_table() else {
        return false;
    };
    if table.filter != 0 && table.filter & local_filter_v4(addr) == 0 {
        return false;
    }
    for i in 0..LOCAL_TABLE_LEN {
        if i as u32 >= table.v4_count {
            break;
        }
        if table.v4[i] == addr {
            return true;
        }
    }
    // SAFETY: the value is only tested for presence, never read.
    table.overflow != 0 && unsafe { LOCAL_ADDRS.get(IpKey::from_v4(addr)).is_some() }
}

/// IPv6 counterpart of [`is_local_v4`].
#[inline(always)]
pub(crate) fn is_local_v6(addr: &[u8; 16]) -> bool {
    let Some(table) = local_table() else {
        return false;
    };
    if table.filter != 0 && table.filter & local_filter_v6(addr) == 0 {
        return false;
    }
    for i in 0..LOCAL_TABLE_LEN {
        if i as u32 >= table.v6_count {
            break;
        }
        if table.v6[i] == *addr {
            return true;
        }
    }
    // SAFETY: the value is only tested for presence, never read.
    table.overflow != 0 && unsafe { LOCAL_ADDRS.get(IpKey::from_v6(*addr)).is_some() }
}

/// The client's slots, if the daemon keeps room for it: found in `CLIENT_INDEX`, walking
/// from the client's home entry until its key or an empty entry; in `CLIENTS` only when the
/// index lacks some client.
#[inline(always)]
fn slots_of(client: &MacKey) -> Option<ClientSlots> {
    let key = index_key(client);
    let multiplier = index_info_word(index_info::MULTIPLIER);
    let home = index_home(key, multiplier);
    for probe in 0..CLIENT_INDEX_PROBES {
        let Some(entry) = CLIENT_INDEX.get((home + probe) & (CLIENT_INDEX_LEN - 1)) else {
            break;
        };
        if entry.key == key {
            return Some(entry.slots);
        }
        if entry.key == INDEX_EMPTY {
            break;
        }
    }
    if index_info_word(index_info::UNINDEXED) == 0 {
        return None;
    }
    // SAFETY: a lookup whose value is copied out at once; the daemon replaces entries whole.
    unsafe { CLIENTS.get(client).copied() }
}

/// A word of `CLIENT_INDEX_INFO` (0 if unset).
#[inline(always)]
fn index_info_word(index: u32) -> u64 {
    CLIENT_INDEX_INFO.get(index).copied().unwrap_or(0)
}

/// Adds the packet to the client's counters; returns whether it is the client's first packet
/// in this jiffy on this CPU (or its counters could not be found).
#[inline(always)]
fn account(packet: &Frame, direction: Direction, class: Class, slots: Option<ClientSlots>) -> bool {
    let Some(usage) = usage_of(&packet.client, slots) else {
        count_stat(stat::UNTRACKED_PACKETS);
        return true;
    };
    // SAFETY: a per-CPU map value is only touched by this CPU with preemption off, so plain
    // read-modify-write is race free; the pointer came from a successful lookup.
    unsafe {
        let usage = &mut *usage;
        match (direction, class) {
            (Direction::Up, Class::Billable) => {
                usage.up_bytes += packet.ip_bytes;
                usage.up_packets += packet.segments;
            }
            (Direction::Down, Class::Billable) => {
                usage.down_bytes += packet.ip_bytes;
                usage.down_packets += packet.segments;
            }
            (Direction::Up, Class::Local) => usage.up_local_bytes += packet.ip_bytes,
            (Direction::Down, Class::Local) => usage.down_local_bytes += packet.ip_bytes,
            (Direction::Up, Class::Dropped) => {
                usage.up_dropped_bytes += packet.ip_bytes;
                usage.dropped_packets += packet.segments;
            }
            (Direction::Down, Class::Dropped) => {
                usage.down_dropped_bytes += packet.ip_bytes;
                usage.dropped_packets += packet.segments;
            }
        }
        let now = bpf_jiffies64();
        let first_this_tick = usage.last_seen_jiffies != now;
        usage.last_seen_jiffies = now;
        first_this_tick
    }
}

/// The client's counters on this CPU: those the daemon made room for in `USAGE` (every
/// client with a grant), else its entry in `SEEN`, created at its first packet.
#[inline(always)]
fn usage_of(client: &MacKey, slots: Option<ClientSlots>) -> Option<*mut Usage> {
    if let Some(slots) = slots {
        return USAGE.get_ptr_mut(slots.counters);
    }
    if let Some(usage) = SEEN.get_ptr_mut(client) {
        return Some(usage);
    }
    // EEXIST means another CPU created it first, which is as good; a full LRU map evicts its
    // least recently used entry to make room.
    let _ = SEEN.insert(client, Usage::default(), u64::from(BPF_NOEXIST));
    SEEN.get_ptr_mut(client)
}

#[inline(always)]
pub(crate) fn count_stat(index: u32) {
    if let Some(counter) = STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU value, see `account`.
        unsafe { *counter += 1 };
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: the verifier rejects any program that could reach a panic, so this never runs.
    unsafe { core::hint::unreachable_unchecked() }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
