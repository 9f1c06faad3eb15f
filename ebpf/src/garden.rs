//! The walled garden's host names in the kernel. The daemon learns the addresses of the
//! configured names from the DNS answers the box's own resolver sends to clients, which
//! [`copy_answer`] hands it through `GARDEN_ANSWERS`; it writes what it learned into
//! `GARDEN_LEARNED`, which [`learned_allows`] consults for clients without a running session
//! once the configured prefixes (`WALLED_GARDEN`) have missed.
//!
//! Only answers the box itself sent are copied: the download program's `box_end` is true
//! only for packets without an ingress interface (made by the box's stack), never for a
//! forwarded packet, whatever source address it claims. So a client's forged answer — to
//! itself, to another client, or from a resolver of its own — is never learned.

use aya_ebpf::{
    helpers::generated::{bpf_ringbuf_output, bpf_skb_load_bytes},
    macros::map,
    maps::{HashMap, PerCpuArray, RingBuf},
    programs::TcContext,
};
use hotspotd_common::{
    GARDEN_ANSWER_MAX_LEN, GARDEN_ANSWERS_BYTES, GardenAnswerHeader, GardenLearned, IpKey,
    MAX_GARDEN_LEARNED, MAX_GARDEN_NAMES, config_word,
};

use crate::{
    config_value,
    packet::{Direction, Frame, IPPROTO_UDP, ptr_at},
};

const DNS_PORT: u16 = 53;
const UDP_HDR_LEN: u32 = 8;
const HEADER_LEN: usize = core::mem::size_of::<GardenAnswerHeader>();

#[map(name = "GARDEN_LEARNED")]
static GARDEN_LEARNED: HashMap<IpKey, GardenLearned> = HashMap::pinned(MAX_GARDEN_LEARNED, 0);

#[map(name = "GARDEN_ANSWERS")]
static GARDEN_ANSWERS: RingBuf = RingBuf::with_byte_size(GARDEN_ANSWERS_BYTES, 0);

#[map(name = "GARDEN_BYTES")]
static GARDEN_BYTES: PerCpuArray<u64> = PerCpuArray::pinned(MAX_GARDEN_NAMES, 0);

/// Room for the payload in [`GARDEN_SCRATCH`]: a power of two above [`GARDEN_ANSWER_MAX_LEN`],
/// so that a length masked with `SCRATCH_PAYLOAD - 1` fits whatever the verifier knows of it.
const SCRATCH_PAYLOAD: usize = 2048;
const _: () = assert!(SCRATCH_PAYLOAD >= GARDEN_ANSWER_MAX_LEN as usize);

/// Where an answer is put together before it goes into the ring whole: the BPF stack is too
/// small for it. One per CPU, used only with preemption off, so no two packets share it.
#[map(name = "GARDEN_SCRATCH")]
static GARDEN_SCRATCH: PerCpuArray<[u8; HEADER_LEN + SCRATCH_PAYLOAD]> =
    PerCpuArray::with_max_entries(1, 0);

/// Copies a DNS answer the box sent to a client (UDP from port 53) into `GARDEN_ANSWERS`,
/// at most [`GARDEN_ANSWER_MAX_LEN`] bytes of it, when the garden has names. Called for what
/// the box sends to clients from its free services; anything else returns at once. A full
/// ring loses the answer (the client's next lookup brings it again).
#[inline(always)]
pub fn copy_answer(ctx: &TcContext, frame: &Frame) {
    if frame.proto != IPPROTO_UDP
        || !frame.box_end
        || frame.group
        || config_value(config_word::GARDEN_NAMES) == 0
    {
        return;
    }
    let l4 = usize::from(frame.l4_offset);
    let Some(udp) = ptr_at::<[u8; 6]>(ctx, l4) else {
        return;
    };
    // SAFETY: bounds checked by ptr_at.
    let udp = unsafe { *udp };
    if u16::from_be_bytes([udp[0], udp[1]]) != DNS_PORT {
        return;
    }
    let payload_at = l4 as u32 + UDP_HDR_LEN;
    let claimed = u32::from(u16::from_be_bytes([udp[4], udp[5]])).saturating_sub(UDP_HDR_LEN);
    let present = ctx.len().saturating_sub(payload_at);
    let len = claimed.min(present).min(GARDEN_ANSWER_MAX_LEN);
    // The DNS header alone is 12 bytes: anything shorter holds no answer.
    if len < 12 {
        return;
    }
    let Some(scratch) = GARDEN_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let header = GardenAnswerHeader::new(len);
    // SAFETY: `scratch` is this CPU's value from a successful lookup, HEADER_LEN +
    // SCRATCH_PAYLOAD bytes long; the header fills its first HEADER_LEN bytes, the payload at
    // most the rest (`len` is 1..=SCRATCH_PAYLOAD in a form every verifier tracks, see
    // below); the ring copies HEADER_LEN + len of them.
    unsafe {
        let base = scratch.cast::<u8>();
        core::ptr::write_unaligned(base.cast::<GardenAnswerHeader>(), header);
        // `len` is 12..=GARDEN_ANSWER_MAX_LEN here, but the verifier must see it too, in the
        // register the helpers get. LLVM spills `len` to the stack before a comparison, and
        // older verifiers (Debian 12's 6.1 among them) neither keep the bounds of a scalar
        // spilled unbounded nor narrow a spilled copy when the register is compared
        // ("R4 min value is negative"). So the bounds come from arithmetic on a value LLVM
        // cannot reason about (a volatile read): `((len - 1) & (SCRATCH_PAYLOAD - 1)) + 1`
        // is `len` for every length here and 1..=SCRATCH_PAYLOAD for any value, and a spill
        // of a bounded scalar keeps its bounds.
        let len = u64::from(len);
        let len = ((core::ptr::read_volatile(&raw const len).wrapping_sub(1))
            & (SCRATCH_PAYLOAD as u64 - 1))
            + 1;
        if bpf_skb_load_bytes(
            ctx.skb.skb.cast(),
            payload_at,
            base.add(HEADER_LEN).cast(),
            len as u32,
        ) != 0
        {
            return;
        }
        // The ring is a `#[repr(transparent)]` map definition, whose address is the map as
        // the helpers take it. A full ring refuses the record.
        let _ = bpf_ringbuf_output(
            (&raw const GARDEN_ANSWERS).cast_mut().cast(),
            base.cast(),
            HEADER_LEN as u64 + len,
            0,
        );
    }
}

/// Whether the remote end is an address learned for one of the garden's names, with an
/// allowed port. What a client sends there is added to that name's bytes.
#[inline(always)]
pub fn learned_allows(ctx: &TcContext, frame: &Frame, direction: Direction) -> bool {
    let Some(learned) = GARDEN_LEARNED.get_ptr(frame.remote) else {
        return false;
    };
    // SAFETY: a successful lookup; the daemon replaces entries whole, and a deleted one lives
    // until an RCU grace period after.
    let learned = unsafe { *learned };
    if !crate::gate::ports_allow(&learned.ports, ctx, frame, direction) {
        return false;
    }
    if direction == Direction::Up
        && let Some(bytes) = GARDEN_BYTES.get_ptr_mut(learned.name_index)
    {
        // SAFETY: per-CPU value, see `account` in main.rs.
        unsafe { *bytes += frame.ip_bytes };
    }
    true
}
