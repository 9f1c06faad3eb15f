//! hotspotd's tc programs on the LAN interface. `lan_ingress` sees what clients send (upload),
//! `lan_egress` what they receive (download). Each parses the frame, finds the client by MAC
//! and adds the packet to the client's per-CPU counters. They never drop: accounting fails
//! open, and a frame that cannot be parsed is passed on and counted in `STATS`.
#![no_std]
#![no_main]
#![expect(
    clippy::cast_possible_truncation,
    reason = "offsets and lengths are bounded by the packet size"
)]

mod packet;

use aya_ebpf::{
    bindings::{BPF_NOEXIST, TC_ACT_OK, TC_ACT_UNSPEC},
    helpers::generated::bpf_ktime_get_coarse_ns,
    macros::{classifier, map},
    maps::{HashMap, PerCpuArray, PerCpuHashMap},
    programs::TcContext,
};
use hotspotd_common::{IpKey, MAX_CLIENTS, MAX_LOCAL_ADDRS, MacKey, Usage, stat};
use packet::{Direction, Frame, FrameKind};

#[map(name = "USAGE")]
static USAGE: PerCpuHashMap<MacKey, Usage> = PerCpuHashMap::pinned(MAX_CLIENTS, 0);

#[map(name = "LOCAL_ADDRS")]
static LOCAL_ADDRS: HashMap<IpKey, u32> = HashMap::pinned(MAX_LOCAL_ADDRS, 0);

#[map(name = "STATS")]
static STATS: PerCpuArray<u64> = PerCpuArray::pinned(stat::COUNT, 0);

/// Client upload: frames the LAN interface receives.
#[classifier]
pub fn lan_ingress(ctx: TcContext) -> i32 {
    handle(&ctx, Direction::Up)
}

/// Client download: frames the LAN interface sends.
#[classifier]
pub fn lan_egress(ctx: TcContext) -> i32 {
    handle(&ctx, Direction::Down)
}

/// Does nothing: the baseline the benchmarks measure the programs against.
#[classifier]
pub fn bench_empty(_ctx: TcContext) -> i32 {
    TC_ACT_OK as i32
}

#[inline(always)]
fn handle(ctx: &TcContext, direction: Direction) -> i32 {
    packet::make_headers_linear(ctx);
    let frame = packet::parse(ctx, direction);
    match frame.kind {
        FrameKind::Ip => account(&frame, direction),
        FrameKind::NonIp => count_stat(stat::NON_IP_PACKETS),
        FrameKind::Malformed => count_stat(stat::MALFORMED_PACKETS),
        FrameKind::NotClient => {}
    }
    // TCX_NEXT: let any program attached after us, then the qdisc, decide.
    TC_ACT_UNSPEC
}

#[inline(always)]
pub(crate) fn is_local_addr(addr: &IpKey) -> bool {
    // SAFETY: the value is only tested for presence, never read.
    unsafe { LOCAL_ADDRS.get(addr).is_some() }
}

#[inline(always)]
fn account(packet: &Frame, direction: Direction) {
    let Some(usage) = usage_of(&packet.client) else {
        count_stat(stat::UNTRACKED_PACKETS);
        return;
    };
    // SAFETY: a per-CPU map value is only touched by this CPU with preemption off, so plain
    // read-modify-write is race free; the pointer came from a successful lookup.
    unsafe {
        let usage = &mut *usage;
        match (direction, packet.local) {
            (Direction::Up, false) => {
                usage.up_bytes += packet.ip_bytes;
                usage.up_packets += packet.segments;
            }
            (Direction::Down, false) => {
                usage.down_bytes += packet.ip_bytes;
                usage.down_packets += packet.segments;
            }
            (Direction::Up, true) => usage.up_local_bytes += packet.ip_bytes,
            (Direction::Down, true) => usage.down_local_bytes += packet.ip_bytes,
        }
        usage.last_seen_ns = bpf_ktime_get_coarse_ns();
    }
}

/// The client's counters on this CPU, created on its first packet.
#[inline(always)]
fn usage_of(client: &MacKey) -> Option<*mut Usage> {
    if let Some(usage) = USAGE.get_ptr_mut(client) {
        return Some(usage);
    }
    // EEXIST means another CPU created it first, which is as good; ENOSPC means the map is
    // full and the lookup below fails.
    let _ = USAGE.insert(client, Usage::default(), u64::from(BPF_NOEXIST));
    USAGE.get_ptr_mut(client)
}

#[inline(always)]
fn count_stat(index: u32) {
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
