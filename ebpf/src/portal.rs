//! The front door in the kernel: what becomes of an unpaid client's web traffic, which the
//! gate would drop. Only packets the gate has already refused come here, so a paying client's
//! packets never do.
//!
//! - Plain HTTP (TCP 80, to any address but the box's) is handed to the daemon's redirect
//!   listener, which answers every request with a redirect to the portal: the connection's
//!   first packet (the SYN) is assigned to the listener's socket (`bpf_sk_assign`), and every
//!   packet of it is marked ([`PORTAL_MARK`]) so a policy rule routes it to the box's own
//!   stack instead of forwarding it. The kernel then finds the connection's socket itself.
//! - HTTPS (TCP 443) connection attempts are answered at once with a TCP reset, built here from
//!   the SYN and sent back out of the interface, so a browser fails fast instead of waiting for
//!   a handshake that never comes.
//! - DNS (UDP and TCP 53) to any resolver goes to the box's resolver when the daemon names
//!   one (`portal.redirect_dns`): the destination address is rewritten, and the answer's
//!   source rewritten back to the resolver the client asked, so a phone with a hard-coded
//!   8.8.8.8 still resolves the names it needs to reach the portal.
//! - QUIC (UDP 443) and everything else stay dropped: browsers fall back to TCP.
//!
//! The portal's answers leave through the download program, which lets packets carrying
//! [`PORTAL_MARK`] through unbilled (`is_answer`).

use aya_ebpf::{
    bindings::{
        BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, BPF_F_RECOMPUTE_CSUM, TC_ACT_OK, TC_ACT_SHOT,
    },
    cty::c_void,
    helpers::generated::{
        bpf_csum_diff, bpf_l3_csum_replace, bpf_l4_csum_replace, bpf_map_lookup_elem, bpf_redirect,
        bpf_sk_assign, bpf_sk_release, bpf_skb_change_tail, bpf_skb_load_bytes,
        bpf_skb_store_bytes,
    },
    programs::TcContext,
};
use hotspotd_common::{DnsFlow, IpKey, PORTAL_MARK, config_word};

use crate::{
    BOX_RESOLVER, DNS_REDIRECTS, PORTAL_SOCKETS, config_value,
    packet::{Family, Frame, IPPROTO_TCP, IPPROTO_UDP, network_layer, ptr_at},
};

const DNS_PORT: u16 = 53;
const HTTP_PORT: u16 = 80;
const HTTPS_PORT: u16 = 443;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;
/// A TCP header without options: all a reset carries.
const TCP_HDR_LEN: usize = 20;
const IPV4_HDR_LEN: usize = 20;
const IPV6_HDR_LEN: usize = 40;
/// Where the checksums are: in the IPv4 header, the TCP header and the UDP header.
const IPV4_CHECK_AT: u32 = 10;
const TCP_CHECK_AT: u32 = 16;
const UDP_CHECK_AT: u32 = 6;
/// The hop limit of the resets: what Linux sends its own packets with.
const REPLY_TTL: u8 = 64;

/// What to do with an unpaid client's packet the gate refused: `Some(action)` for the tc
/// action when it is web traffic or DNS the box handles, `None` when it stays dropped. Runs in
/// `lan_ingress_steer`, which the upload program tail-calls for such packets.
#[inline(always)]
pub fn steer(ctx: &TcContext, frame: &Frame) -> Option<i32> {
    if frame.box_end {
        return None;
    }
    let l4 = usize::from(frame.l4_offset);
    match frame.proto {
        IPPROTO_TCP => {
            let header = ptr_at::<[u8; 14]>(ctx, l4)?;
            // SAFETY: bounds checked by ptr_at.
            let (client_port, port, flags) = unsafe {
                let header = &*header;
                (
                    u16::from_be_bytes([header[0], header[1]]),
                    u16::from_be_bytes([header[2], header[3]]),
                    header[13],
                )
            };
            if port == DNS_PORT {
                return to_box_resolver(ctx, frame, client_port);
            }
            if config_value(config_word::PORTAL_STEERING) == 0 {
                return None;
            }
            match port {
                HTTP_PORT => Some(to_redirect_listener(ctx, flags)),
                HTTPS_PORT => Some(refuse(ctx, l4, flags)),
                _ => None,
            }
        }
        IPPROTO_UDP => {
            let ports = ptr_at::<[u8; 4]>(ctx, l4)?;
            // SAFETY: bounds checked by ptr_at.
            let ports = unsafe { *ports };
            if u16::from_be_bytes([ports[2], ports[3]]) != DNS_PORT {
                return None;
            }
            to_box_resolver(ctx, frame, u16::from_be_bytes([ports[0], ports[1]]))
        }
        _ => None,
    }
}

/// Sends an unpaid client's DNS query, to whichever resolver it names, to the box's resolver
/// (`portal.redirect_dns`), remembering the resolver it named so the answer can come back from
/// it ([`answer_as_resolver`]). `None` when the box has no resolver address of the family.
#[inline(always)]
fn to_box_resolver(ctx: &TcContext, frame: &Frame, client_port: u16) -> Option<i32> {
    let (l3, family) = network_layer(ctx)?;
    let index: u32 = match family {
        Family::V4 => 0,
        Family::V6 => 1,
    };
    let resolver = *BOX_RESOLVER.get(index)?;
    if resolver.addr == [0; 16] {
        return None;
    }
    let flow = DnsFlow::new(frame.source, client_port, frame.proto);
    // A full map makes room itself (LRU); a failure leaves the answer unmatched, and the
    // client's stub asks again.
    let _ = DNS_REDIRECTS.insert(flow, frame.remote, 0);
    let at = Layers { l3, family };
    Some(
        match rewrite_address(ctx, frame, at, End::Destination, &frame.remote, &resolver) {
            Some(()) => TC_ACT_OK,
            None => TC_ACT_SHOT,
        },
    )
}

/// Gives the box's DNS answer to a redirected query the address of the resolver the client
/// asked; anything else from the box passes as it is.
#[inline(always)]
pub fn answer_as_resolver(ctx: &TcContext, frame: &Frame) {
    let Some((l3, family)) = network_layer(ctx) else {
        return;
    };
    let at = Layers { l3, family };
    let Some((client, client_port)) = dns_flow_of_answer(ctx, frame, at) else {
        return;
    };
    let flow = DnsFlow::new(client, client_port, frame.proto);
    let Some(resolver) = DNS_REDIRECTS.get_ptr(flow) else {
        return;
    };
    // SAFETY: a successful lookup; the entry lives until an RCU grace period after deletion.
    let resolver = unsafe { *resolver };
    // A failure leaves the answer from the box's address, which the client's stub ignores
    // and asks again: nothing passes that should not.
    let _ = rewrite_address(ctx, frame, at, End::Source, &frame.source, &resolver);
}

/// A client asking the box's resolver itself ends any redirect of the same flow an earlier
/// query left (its port used again), so that answer keeps the box's address.
#[inline(always)]
pub fn forget_redirect(ctx: &TcContext, frame: &Frame) {
    if frame.proto != IPPROTO_TCP && frame.proto != IPPROTO_UDP {
        return;
    }
    let Some(ports) = ptr_at::<[u8; 4]>(ctx, usize::from(frame.l4_offset)) else {
        return;
    };
    // SAFETY: bounds checked by ptr_at.
    let ports = unsafe { *ports };
    if u16::from_be_bytes([ports[2], ports[3]]) != DNS_PORT {
        return;
    }
    let flow = DnsFlow::new(
        frame.source,
        u16::from_be_bytes([ports[0], ports[1]]),
        frame.proto,
    );
    let _ = DNS_REDIRECTS.remove(flow);
}

/// The client's address and port of a DNS answer the box sends (source port 53).
#[inline(always)]
fn dns_flow_of_answer(ctx: &TcContext, frame: &Frame, at: Layers) -> Option<(IpKey, u16)> {
    if frame.proto != IPPROTO_TCP && frame.proto != IPPROTO_UDP {
        return None;
    }
    let ports = ptr_at::<[u8; 4]>(ctx, usize::from(frame.l4_offset))?;
    // SAFETY: bounds checked by ptr_at.
    let ports = unsafe { *ports };
    if u16::from_be_bytes([ports[0], ports[1]]) != DNS_PORT {
        return None;
    }
    let l3 = at.l3;
    let client = match at.family {
        // SAFETY: bounds checked by ptr_at.
        Family::V4 => IpKey::from_v4(unsafe { *ptr_at::<[u8; 4]>(ctx, l3 + 16)? }),
        // SAFETY: bounds checked by ptr_at.
        Family::V6 => IpKey::from_v6(unsafe { *ptr_at::<[u8; 16]>(ctx, l3 + 24)? }),
    };
    Some((client, u16::from_be_bytes([ports[2], ports[3]])))
}

/// Where a packet's IP header is, and its version ([`network_layer`]).
#[derive(Clone, Copy)]
struct Layers {
    l3: usize,
    family: Family,
}

/// Which address of a packet [`rewrite_address`] changes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Source,
    Destination,
}

/// Replaces the source or destination address `old` of a TCP or UDP packet with `new`, and
/// updates the checksums that cover it (IPv4's header, the transport's pseudo-header)
/// incrementally, which is right whether the checksum is complete or left to offload.
#[inline(always)]
fn rewrite_address(
    ctx: &TcContext,
    frame: &Frame,
    at: Layers,
    end: End,
    old: &IpKey,
    new: &IpKey,
) -> Option<()> {
    let l3 = at.l3 as u32;
    let udp = frame.proto != IPPROTO_TCP;
    let check_at = u32::from(frame.l4_offset) + if udp { UDP_CHECK_AT } else { TCP_CHECK_AT };
    // An IPv4 UDP checksum of 0 means none, and must stay 0.
    let mangled = if udp {
        u64::from(BPF_F_MARK_MANGLED_0)
    } else {
        0
    };
    let pseudo = u64::from(BPF_F_PSEUDO_HDR);
    let skb = ctx.skb.skb.cast();
    // SAFETY: plain helper calls on the context's skb; the address buffers are 4 or 16 bytes
    // of the keys, as the lengths say.
    unsafe {
        match at.family {
            Family::V4 => {
                let at = l3 + if end == End::Destination { 16 } else { 12 };
                let old =
                    u32::from_ne_bytes([old.addr[12], old.addr[13], old.addr[14], old.addr[15]]);
                let new_bytes = [new.addr[12], new.addr[13], new.addr[14], new.addr[15]];
                let new = u32::from_ne_bytes(new_bytes);
                if bpf_l3_csum_replace(skb, l3 + IPV4_CHECK_AT, u64::from(old), u64::from(new), 4)
                    != 0
                    || bpf_l4_csum_replace(
                        skb,
                        check_at,
                        u64::from(old),
                        u64::from(new),
                        pseudo | mangled | 4,
                    ) != 0
                {
                    return None;
                }
                store(ctx, at as usize, &new_bytes)
            }
            Family::V6 => {
                let at = l3 + if end == End::Destination { 24 } else { 8 };
                let mut from = old.addr;
                let mut to = new.addr;
                let diff =
                    bpf_csum_diff(from.as_mut_ptr().cast(), 16, to.as_mut_ptr().cast(), 16, 0);
                if diff < 0
                    || bpf_l4_csum_replace(skb, check_at, 0, diff.cast_unsigned(), pseudo | mangled)
                        != 0
                {
                    return None;
                }
                store(ctx, at as usize, &to)
            }
        }
    }
}

/// Whether an unpaid client's refused packet is one the front door may take: TCP or UDP to
/// an address that is not the box's. The rest is dropped without the tail call.
#[inline(always)]
pub fn may_steer(frame: &Frame) -> bool {
    (frame.proto == IPPROTO_TCP || frame.proto == IPPROTO_UDP) && !frame.box_end
}

/// Whether a packet leaving for a client is one of the portal's answers (the redirect
/// listener's, or a reset built by [`steer`]), which passes where the gate would drop it.
#[inline(always)]
pub fn is_answer(ctx: &TcContext) -> bool {
    // SAFETY: `skb` is the context pointer the kernel passed to the program.
    unsafe { (*ctx.skb.skb).mark == PORTAL_MARK }
}

/// Marks the packet for the box's stack and, if it opens a connection, assigns it to the
/// redirect listener of its family. Later packets of the connection find their socket by the
/// kernel's own lookup; a SYN that finds no listener (the daemon is stopped) is dropped.
#[inline(always)]
fn to_redirect_listener(ctx: &TcContext, flags: u8) -> i32 {
    // SAFETY: tc programs may write `mark`; `skb` is the context pointer.
    unsafe { (*ctx.skb.skb).mark = PORTAL_MARK };
    if flags & (TCP_SYN | TCP_ACK) != TCP_SYN {
        return TC_ACT_OK;
    }
    let Some((_, family)) = network_layer(ctx) else {
        return TC_ACT_SHOT;
    };
    let index: u32 = match family {
        Family::V4 => 0,
        Family::V6 => 1,
    };
    // SAFETY: `PORTAL_SOCKETS` is a `#[repr(transparent)]` map definition, whose address is
    // the map as the helpers take it; a sockmap lookup returns a referenced socket or null.
    let socket = unsafe {
        bpf_map_lookup_elem(
            (&raw const PORTAL_SOCKETS).cast_mut().cast::<c_void>(),
            (&raw const index).cast::<c_void>(),
        )
    };
    if socket.is_null() {
        return TC_ACT_SHOT;
    }
    // SAFETY: `socket` is the referenced socket from the lookup, released right after; the
    // assignment takes its own reference.
    let assigned = unsafe {
        let assigned = bpf_sk_assign(ctx.skb.skb.cast(), socket, 0);
        bpf_sk_release(socket);
        assigned
    };
    if assigned == 0 {
        TC_ACT_OK
    } else {
        TC_ACT_SHOT
    }
}

/// Turns an HTTPS SYN into the reset that refuses it and sends it back to the client; any
/// other packet of such a connection is dropped.
#[inline(always)]
fn refuse(ctx: &TcContext, l4: usize, flags: u8) -> i32 {
    if flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) != TCP_SYN {
        return TC_ACT_SHOT;
    }
    let built = match network_layer(ctx) {
        Some((_, Family::V4)) => reset_v4(ctx, l4),
        Some((_, Family::V6)) => reset_v6(ctx, l4),
        None => None,
    };
    if built.is_none() {
        return TC_ACT_SHOT;
    }
    // SAFETY: tc programs may write `mark` and read `ifindex`; `skb` is the context pointer.
    let ifindex = unsafe {
        (*ctx.skb.skb).mark = PORTAL_MARK;
        (*ctx.skb.skb).ifindex
    };
    // SAFETY: a plain helper call: out of the interface the SYN came in on.
    unsafe { bpf_redirect(ifindex, 0) as i32 }
}

/// Rewrites an IPv4 SYN (no IP options) at `l4` into its reset: addresses and ports swapped,
/// RST+ACK acknowledging the SYN, the options cut off, both checksums computed whole.
#[inline(always)]
fn reset_v4(ctx: &TcContext, l4: usize) -> Option<()> {
    let l3 = l4.checked_sub(IPV4_HDR_LEN)?;
    let mut ip = [0u8; IPV4_HDR_LEN];
    load(ctx, l3, &mut ip)?;
    if ip[0] != 0x45 {
        return None;
    }
    let mut tcp = [0u8; TCP_HDR_LEN];
    load(ctx, l4, &mut tcp)?;
    for i in 0..4 {
        ip.swap(12 + i, 16 + i);
    }
    ip[1] = 0;
    ip[2..4].copy_from_slice(&((IPV4_HDR_LEN + TCP_HDR_LEN) as u16).to_be_bytes());
    // Identification 0 with don't-fragment, as Linux sends its resets.
    ip[4..8].copy_from_slice(&[0, 0, 0x40, 0]);
    ip[8] = REPLY_TTL;
    ip[10] = 0;
    ip[11] = 0;
    let ip_check = fold(sum_words(&ip, 0));
    ip[10..12].copy_from_slice(&ip_check.to_be_bytes());
    let reset = reset_header(&tcp);
    // The pseudo-header: both addresses, the protocol and the TCP length.
    let pseudo = sum_words(&ip[12..20], u32::from(IPPROTO_TCP) + TCP_HDR_LEN as u32);
    let reset = with_checksum(reset, pseudo);
    send_back(ctx, l3, &ip, l4, &reset)
}

/// IPv6 counterpart of [`reset_v4`]; the TCP header must follow the IPv6 header directly.
#[inline(always)]
fn reset_v6(ctx: &TcContext, l4: usize) -> Option<()> {
    let l3 = l4.checked_sub(IPV6_HDR_LEN)?;
    let mut ip = [0u8; IPV6_HDR_LEN];
    load(ctx, l3, &mut ip)?;
    if ip[0] >> 4 != 6 || ip[6] != IPPROTO_TCP {
        return None;
    }
    let mut tcp = [0u8; TCP_HDR_LEN];
    load(ctx, l4, &mut tcp)?;
    for i in 0..16 {
        ip.swap(8 + i, 24 + i);
    }
    // Version 6, no traffic class or flow label.
    ip[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
    ip[4..6].copy_from_slice(&(TCP_HDR_LEN as u16).to_be_bytes());
    ip[7] = REPLY_TTL;
    let reset = reset_header(&tcp);
    let pseudo = sum_words(&ip[8..40], u32::from(IPPROTO_TCP) + TCP_HDR_LEN as u32);
    let reset = with_checksum(reset, pseudo);
    send_back(ctx, l3, &ip, l4, &reset)
}

/// The reset answering the SYN `syn`: ports swapped, sequence 0, acknowledging the SYN's
/// sequence number plus one (RFC 9293 3.10.7.1), no window, no options, checksum 0.
#[inline(always)]
fn reset_header(syn: &[u8; TCP_HDR_LEN]) -> [u8; TCP_HDR_LEN] {
    let mut reset = [0u8; TCP_HDR_LEN];
    reset[0..2].copy_from_slice(&syn[2..4]);
    reset[2..4].copy_from_slice(&syn[0..2]);
    let sequence = u32::from_be_bytes([syn[4], syn[5], syn[6], syn[7]]);
    reset[8..12].copy_from_slice(&sequence.wrapping_add(1).to_be_bytes());
    reset[12] = (TCP_HDR_LEN as u8 / 4) << 4;
    reset[13] = TCP_RST | TCP_ACK;
    reset
}

#[inline(always)]
fn with_checksum(mut tcp: [u8; TCP_HDR_LEN], pseudo_sum: u32) -> [u8; TCP_HDR_LEN] {
    let check = fold(sum_words(&tcp, pseudo_sum));
    tcp[16..18].copy_from_slice(&check.to_be_bytes());
    tcp
}

/// Swaps the Ethernet addresses, cuts the packet after the new TCP header and writes the new
/// IP and TCP headers over the old.
#[inline(always)]
fn send_back(
    ctx: &TcContext,
    l3: usize,
    ip: &[u8],
    l4: usize,
    tcp: &[u8; TCP_HDR_LEN],
) -> Option<()> {
    let mut macs = [0u8; 12];
    load(ctx, 0, &mut macs)?;
    for i in 0..6 {
        macs.swap(i, 6 + i);
    }
    // SAFETY: plain helper calls on the context's skb with stack buffers of the given lengths.
    unsafe {
        if bpf_skb_change_tail(ctx.skb.skb.cast(), (l4 + TCP_HDR_LEN) as u32, 0) != 0 {
            return None;
        }
        store(ctx, 0, &macs)?;
        store(ctx, l3, ip)?;
        store(ctx, l4, tcp)?;
    }
    Some(())
}

#[inline(always)]
fn load(ctx: &TcContext, offset: usize, into: &mut [u8]) -> Option<()> {
    // SAFETY: the helper writes at most `into.len()` bytes into `into`.
    let loaded = unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb.cast(),
            offset as u32,
            into.as_mut_ptr().cast(),
            into.len() as u32,
        )
    };
    (loaded == 0).then_some(())
}

/// # Safety
/// None beyond the helper's: it reads `from.len()` bytes of `from`.
#[inline(always)]
unsafe fn store(ctx: &TcContext, offset: usize, from: &[u8]) -> Option<()> {
    // SAFETY: see the function's contract. The flag keeps a receive checksum the skb may carry
    // (CHECKSUM_COMPLETE) in step with the new bytes.
    let stored = unsafe {
        bpf_skb_store_bytes(
            ctx.skb.skb.cast(),
            offset as u32,
            from.as_ptr().cast(),
            from.len() as u32,
            u64::from(BPF_F_RECOMPUTE_CSUM),
        )
    };
    (stored == 0).then_some(())
}

/// Adds `bytes` (an even number of them) to `sum` as big-endian 16-bit words.
#[inline(always)]
fn sum_words(bytes: &[u8], mut sum: u32) -> u32 {
    let mut i = 0;
    while i + 1 < bytes.len() {
        sum += u32::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
        i += 2;
    }
    sum
}

/// The Internet checksum (RFC 1071) of a one's-complement sum.
#[inline(always)]
fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}
