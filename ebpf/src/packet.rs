//! Parses one frame at the LAN interface into what accounting needs: which client it belongs
//! to, how many IP-level bytes it carries and whether the other end is the box itself.
//! Direct packet access only (`data`/`data_end`); nothing here writes to the packet.

use core::mem::size_of;

use aya_ebpf::{helpers::generated::bpf_skb_pull_data, programs::TcContext};
use hotspotd_common::{IpKey, LOCAL_SERVICES_LEN, LocalTable, MacKey, local_service};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    vlan::VlanHdr,
};

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_IGMP: u8 = 2;
pub(crate) const IPPROTO_TCP: u8 = 6;
pub(crate) const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;
/// IPv6 hop-by-hop options and routing header: a routing header (alone or behind hop-by-hop
/// options) can send a packet addressed to the box on to another address.
const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ROUTING: u8 = 43;
const UDP_HDR_LEN: u32 = 8;
/// The fragment offset bits of IPv4's flags-and-offset field.
const IPV4_FRAGMENT_OFFSET: u16 = 0x1fff;
/// Where the `EtherType` is in an Ethernet header, and in a VLAN tag.
const ETHER_TYPE_AT: usize = 12;
const VLAN_ETHER_TYPE_AT: usize = 2;
/// 802.1ad outer + 802.1Q inner: QinQ is as deep as access networks go.
const MAX_VLAN_TAGS: usize = 2;
/// Enough linear bytes for Ethernet + two tags + IPv6 + a TCP header with options.
const HEADERS_MAX_LEN: u32 = 14 + 2 * 4 + 40 + 60;

/// Which way a frame crosses the LAN interface, seen from the client.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client: LAN ingress. The client is the source MAC.
    Up,
    /// To the client: LAN egress. The client is the destination MAC.
    Down,
}

/// What a frame is, for accounting. A field-less enum on purpose: BTF cannot describe Rust
/// enums that carry data, and the kernel would reject the object's BTF.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// Not a frame to one client: sent by the box to a group, or too short for Ethernet.
    NotClient,
    /// Forwarded to a group (multicast or broadcast) destination MAC on egress: every station
    /// would get a copy and none can be gated, billed or shaped for it. The box forwards
    /// nothing to a group unless its neighbour table was poisoned with a group MAC.
    GroupDestination,
    /// From a group (multicast or broadcast) source address on ingress. No station sends
    /// from one (IEEE 802), so no client and no session can be behind it.
    GroupSource,
    /// ARP, LLDP and other non-IP frames: never billed.
    NonIp,
    /// An IP header that is truncated or inconsistent: never billed.
    Malformed,
    /// An IP packet of a client, described by the other fields of [`Frame`].
    Ip,
}

/// The IP version of a packet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// A parsed frame.
pub struct Frame {
    pub kind: FrameKind,
    pub client: MacKey,
    /// IP header included, Ethernet excluded; a GSO packet as the sum of its segments.
    pub ip_bytes: u64,
    /// Segments this packet becomes on the wire (1 unless GSO).
    pub segments: u64,
    /// The other end is the box: going up, addressed to one of the box's addresses; going
    /// down, sent by the box itself (not forwarded). Only its client services are free.
    pub box_end: bool,
    /// Addressed to a group (multicast or broadcast): it never leaves the LAN.
    pub group: bool,
    /// The other end: destination going up, source going down.
    pub remote: IpKey,
    /// The source address.
    pub source: IpKey,
    /// Going up, the source is an address a client can hold (not unspecified, not a group).
    pub has_source: bool,
    /// The IP protocol (IPv6: the first next header) and where its header starts, so the
    /// walled-garden check can read a port; only clients without a session need it.
    pub proto: u8,
    /// At most 14 + 2 × 4 + 60; a `u8` keeps the verifier's bound on it small.
    pub l4_offset: u8,
}

impl Frame {
    const fn of(kind: FrameKind) -> Self {
        Self {
            kind,
            client: MacKey::new([0; 6]),
            ip_bytes: 0,
            segments: 0,
            box_end: false,
            group: false,
            remote: IpKey { addr: [0; 16] },
            source: IpKey { addr: [0; 16] },
            has_source: false,
            proto: 0,
            l4_offset: 0,
        }
    }
}

/// The IP layer of a packet; `ip_bytes == 0` marks a malformed header (no valid IP packet
/// is empty), which keeps this a plain struct for the same BTF reason as [`FrameKind`].
struct IpLayer {
    ip_bytes: u64,
    segments: u32,
    /// The other end is one of the box's own addresses.
    remote_is_local: bool,
    /// The remote address is multicast or broadcast.
    group: bool,
    remote: IpKey,
    source: IpKey,
    /// The source is an address a client can hold: not unspecified, not a group.
    has_source: bool,
    proto: u8,
    l4_offset: u8,
}

const NO_ADDRESS: IpKey = IpKey { addr: [0; 16] };

const MALFORMED: IpLayer = IpLayer {
    ip_bytes: 0,
    segments: 0,
    remote_is_local: false,
    group: false,
    remote: NO_ADDRESS,
    source: NO_ADDRESS,
    has_source: false,
    proto: 0,
    l4_offset: 0,
};

/// Returns a pointer to a `T` at `offset` if the whole `T` lies in the linear packet data.
#[inline(always)]
pub(crate) fn ptr_at<T>(ctx: &TcContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

/// Makes the headers linear so direct access can reach them. Forwarded packets nearly always
/// are already; the helper runs only when they are not, since it may copy.
#[inline(always)]
pub fn make_headers_linear(ctx: &TcContext) {
    let wanted = ctx.len().min(HEADERS_MAX_LEN);
    if (ctx.data_end() - ctx.data()) < wanted as usize {
        // SAFETY: the helper only reads the skb pointer the kernel gave us; failure (ENOMEM)
        // leaves the packet as it was and the parser then fails open.
        unsafe {
            bpf_skb_pull_data(ctx.skb.skb.cast(), wanted);
        }
    }
}

#[inline(always)]
fn is_group_mac(mac: &[u8; 6]) -> bool {
    mac[0] & 1 == 1
}

/// An IPv6 address as two 64-bit words, for tests against zero that stay plain loads.
#[inline(always)]
fn ip_halves(addr: &[u8; 16]) -> (u64, u64) {
    let mut high = [0u8; 8];
    let mut low = [0u8; 8];
    high.copy_from_slice(&addr[..8]);
    low.copy_from_slice(&addr[8..]);
    (u64::from_ne_bytes(high), u64::from_ne_bytes(low))
}

/// 224.0.0.0/4 multicast or the limited broadcast address.
#[inline(always)]
fn is_group_v4(addr: [u8; 4]) -> bool {
    addr[0] & 0xf0 == 0xe0 || addr == [0xff; 4]
}

/// Whether the TCP or UDP port of the box's end (`remote_port`), or the protocol itself, is
/// one of the box's free client services in `table`.
#[inline(always)]
pub fn is_local_service(
    ctx: &TcContext,
    frame: &Frame,
    direction: Direction,
    table: &LocalTable,
) -> bool {
    match frame.proto {
        IPPROTO_ICMP | IPPROTO_IGMP | IPPROTO_ICMPV6 => table.control != 0,
        IPPROTO_TCP | IPPROTO_UDP => {
            let port = remote_port(ctx, frame, direction);
            if port == 0 {
                return false;
            }
            let wanted = local_service(frame.proto, port);
            for i in 0..LOCAL_SERVICES_LEN {
                if i as u32 >= table.service_count {
                    break;
                }
                if table.services[i] == wanted {
                    return true;
                }
            }
            false
        }
        _ => false,
    }
}

/// The port of the remote end (destination going up, source going down) of a TCP or UDP
/// packet; 0 for other protocols or a header out of reach.
#[inline(always)]
pub fn remote_port(ctx: &TcContext, frame: &Frame, direction: Direction) -> u16 {
    if frame.proto != IPPROTO_TCP && frame.proto != IPPROTO_UDP {
        return 0;
    }
    // Both headers start with the source port, then the destination port.
    let Some(ports) = ptr_at::<[u8; 4]>(ctx, usize::from(frame.l4_offset)) else {
        return 0;
    };
    // SAFETY: bounds checked by ptr_at.
    let ports = unsafe { *ports };
    match direction {
        Direction::Up => u16::from_be_bytes([ports[2], ports[3]]),
        Direction::Down => u16::from_be_bytes([ports[0], ports[1]]),
    }
}

/// Length of the TCP or UDP header at `offset`, which GSO replicates in every segment.
#[inline(always)]
fn l4_header_len(ctx: &TcContext, offset: usize, proto: u8) -> u32 {
    match proto {
        IPPROTO_TCP => match ptr_at::<TcpHdr>(ctx, offset) {
            // SAFETY: bounds checked by ptr_at.
            Some(tcp) => u32::from(unsafe { (*tcp).doff() }) * 4,
            None => size_of::<TcpHdr>() as u32,
        },
        IPPROTO_UDP => UDP_HDR_LEN,
        _ => 0,
    }
}

/// A GSO packet as the segments it becomes; `segments == 0` when the packet is not GSO.
struct Gso {
    segments: u32,
    /// The payload once plus the IP and L4 headers of every segment.
    ip_bytes: u64,
}

const NOT_GSO: Gso = Gso {
    segments: 0,
    ip_bytes: 0,
};

/// Describes the GSO packet whose IP header (`ip_header_len` bytes) starts `l3_present` bytes
/// before the end of the skb, or returns [`NOT_GSO`]. Reading `gso_size`/`gso_segs` is
/// rewritten by the verifier into loads from the skb's shared info.
#[inline(always)]
fn gso(ctx: &TcContext, l3_present: u32, ip_header_len: u32, l4_offset: usize, proto: u8) -> Gso {
    // SAFETY: `skb` is the context pointer the kernel passed to the program.
    let (segments, segment_size) = unsafe { ((*ctx.skb.skb).gso_segs, (*ctx.skb.skb).gso_size) };
    // A non-zero gso_size is what makes an skb GSO (skb_is_gso).
    if segment_size == 0 {
        return NOT_GSO;
    }
    let headers = ip_header_len + l4_header_len(ctx, l4_offset, proto);
    // virtio-net, tun and Xen hand over GSO packets with gso_segs still 0 (the stack computes
    // it only when it segments), so count them from the payload.
    let segments = if segments > 0 {
        segments
    } else {
        l3_present
            .saturating_sub(headers)
            .div_ceil(segment_size)
            .max(1)
    };
    Gso {
        segments,
        ip_bytes: u64::from(l3_present) + u64::from(segments - 1) * u64::from(headers),
    }
}

/// The frame's source MAC, if it has an Ethernet header.
#[inline(always)]
pub fn source_mac(ctx: &TcContext) -> Option<[u8; 6]> {
    let eth = ptr_at::<EthHdr>(ctx, 0)?;
    // SAFETY: bounds checked by ptr_at.
    Some(unsafe { (*eth).src_addr })
}

/// Where the IP header of an IP frame starts (after Ethernet and any VLAN tags) and its
/// version: walked again from the frame for the rare paths that need them (an unpaid client's
/// steered packets, the box's DNS answers), so the parse every packet takes carries less.
#[inline(always)]
pub fn network_layer(ctx: &TcContext) -> Option<(usize, Family)> {
    // Loaded with the helper, not direct access: the compiler would fold these bounds checks
    // into the ones the caller made further into the packet, which the verifier cannot follow.
    let mut ether_type: u16 = ctx.load(ETHER_TYPE_AT).ok()?;
    let mut offset = EthHdr::LEN;
    for _ in 0..MAX_VLAN_TAGS {
        let tpid = u16::from_be(ether_type);
        if tpid != ETH_P_8021Q && tpid != ETH_P_8021AD {
            break;
        }
        ether_type = ctx.load(offset + VLAN_ETHER_TYPE_AT).ok()?;
        offset += VlanHdr::LEN;
    }
    match u16::from_be(ether_type) {
        ETH_P_IPV4 => Some((offset, Family::V4)),
        ETH_P_IPV6 => Some((offset, Family::V6)),
        _ => None,
    }
}

#[inline(always)]
pub fn parse(ctx: &TcContext, direction: Direction) -> Frame {
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return Frame::of(FrameKind::NotClient);
    };
    // SAFETY: bounds checked by ptr_at; network-types headers are plain byte arrays.
    let (client_mac, to_group, mut ether_type) = unsafe {
        let eth = &*eth;
        match direction {
            Direction::Up => (eth.src_addr, is_group_mac(&eth.dst_addr), eth.ether_type),
            Direction::Down => (eth.dst_addr, false, eth.ether_type),
        }
    };
    // Going down, what the box sends itself has no ingress interface; a forwarded packet
    // keeps the one it arrived on. A packet is the box's because the box sent it, not
    // because it carries a box address as its source (which anyone on the WAN can write).
    let from_box = direction == Direction::Down && ingress_ifindex(ctx) == 0;
    if is_group_mac(&client_mac) {
        return Frame::of(match direction {
            // A bridge drops frames from group sources before they get here, but a LAN
            // interface that is not a bridge passes them up, and the stack would route the IP
            // inside with no client to gate: the gate has to see them.
            Direction::Up => FrameKind::GroupSource,
            // The box's own DHCP offers, router advertisements, mDNS answers.
            Direction::Down if from_box => FrameKind::NotClient,
            Direction::Down => FrameKind::GroupDestination,
        });
    }

    let mut offset = EthHdr::LEN;
    for _ in 0..MAX_VLAN_TAGS {
        let tpid = u16::from_be(ether_type);
        if tpid != ETH_P_8021Q && tpid != ETH_P_8021AD {
            break;
        }
        let Some(vlan) = ptr_at::<VlanHdr>(ctx, offset) else {
            return Frame::of(FrameKind::Malformed);
        };
        // SAFETY: bounds checked by ptr_at.
        ether_type = unsafe { (*vlan).ether_type };
        offset += VlanHdr::LEN;
    }

    let client = MacKey::new(client_mac);
    let layer = match u16::from_be(ether_type) {
        ETH_P_IPV4 => parse_ipv4(ctx, offset, direction),
        ETH_P_IPV6 => parse_ipv6(ctx, offset, direction),
        _ => return Frame::of(FrameKind::NonIp),
    };
    if layer.ip_bytes == 0 {
        return Frame::of(FrameKind::Malformed);
    }
    Frame {
        kind: FrameKind::Ip,
        client,
        ip_bytes: layer.ip_bytes,
        segments: u64::from(layer.segments),
        box_end: match direction {
            Direction::Up => layer.remote_is_local,
            Direction::Down => from_box,
        },
        // A frame to a group MAC that is not for the box (a subnet's broadcast address) is the
        // LAN's chatter; one addressed to a box address is the box's like any other, so a
        // broadcast MAC cannot smuggle a packet past the list of the box's free services.
        group: layer.group || (to_group && !layer.remote_is_local),
        remote: layer.remote,
        source: layer.source,
        has_source: layer.has_source,
        proto: layer.proto,
        l4_offset: layer.l4_offset,
    }
}

/// The interface a packet arrived on (`skb->skb_iif`), 0 if the box itself made it.
#[inline(always)]
fn ingress_ifindex(ctx: &TcContext) -> u32 {
    // SAFETY: `skb` is the context pointer the kernel passed to the program.
    unsafe { (*ctx.skb.skb).ingress_ifindex }
}

#[inline(always)]
fn parse_ipv4(ctx: &TcContext, offset: usize, direction: Direction) -> IpLayer {
    let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, offset) else {
        return MALFORMED;
    };
    // SAFETY: bounds checked by ptr_at.
    let ip = unsafe { &*ip };
    let header_len = u32::from(ip.vihl & 0x0f) * 4;
    if ip.vihl >> 4 != 4 || header_len < Ipv4Hdr::LEN as u32 {
        return MALFORMED;
    }
    let Some(present) = ctx.len().checked_sub(offset as u32) else {
        return MALFORMED;
    };
    let gso = gso(
        ctx,
        present,
        header_len,
        offset + header_len as usize,
        ip.proto,
    );
    let (ip_bytes, segments) = if gso.segments > 0 {
        (gso.ip_bytes, gso.segments)
    } else {
        // Ethernet may pad a short frame, so the header's length is the truth; a header that
        // claims more than arrived is a truncated packet the stack will drop.
        let total_len = u32::from(u16::from_be_bytes(ip.tot_len));
        if total_len < header_len || total_len > present {
            return MALFORMED;
        }
        (u64::from(total_len), 1)
    };
    let first_fragment = u16::from_be_bytes(ip.frags) & IPV4_FRAGMENT_OFFSET == 0;
    let remote = match direction {
        Direction::Up => ip.dst_addr,
        Direction::Down => ip.src_addr,
    };
    // 224.0.0.0/4 multicast and 255.255.255.255 (DHCP) never leave the LAN, also when a
    // bridge port turned them into unicast frames (multicast-to-unicast on WiFi).
    let dst = ip.dst_addr;
    let group = is_group_v4(dst);
    let src = ip.src_addr;
    let has_source =
        direction == Direction::Up && u32::from_ne_bytes(src) != 0 && !is_group_v4(src);
    IpLayer {
        ip_bytes,
        segments,
        // Options may hold a source route, with which the box would pass a packet addressed
        // to itself on to the next address (when source routing is on): such a packet goes
        // through the gate like any other. No traffic a client has with the box uses options.
        remote_is_local: header_len == Ipv4Hdr::LEN as u32 && crate::is_local_v4(remote),
        group,
        remote: IpKey::from_v4(remote),
        source: IpKey::from_v4(src),
        has_source,
        // A fragment after the first carries no L4 header: its payload must never be read as
        // ports (a crafted one would pass a port-limited walled garden).
        proto: if first_fragment { ip.proto } else { 0 },
        l4_offset: (offset + header_len as usize) as u8,
    }
}

#[inline(always)]
fn parse_ipv6(ctx: &TcContext, offset: usize, direction: Direction) -> IpLayer {
    let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, offset) else {
        return MALFORMED;
    };
    // SAFETY: bounds checked by ptr_at.
    let ip = unsafe { &*ip };
    if ip.vcf[0] >> 4 != 6 {
        return MALFORMED;
    }
    let Some(present) = ctx.len().checked_sub(offset as u32) else {
        return MALFORMED;
    };
    let header_len = Ipv6Hdr::LEN as u32;
    let gso = gso(ctx, present, header_len, offset + Ipv6Hdr::LEN, ip.next_hdr);
    let (ip_bytes, segments) = if gso.segments > 0 {
        (gso.ip_bytes, gso.segments)
    } else {
        let total_len = header_len + u32::from(u16::from_be_bytes(ip.payload_len));
        if total_len > present {
            return MALFORMED;
        }
        (u64::from(total_len), 1)
    };
    let remote = match direction {
        Direction::Up => ip.dst_addr,
        Direction::Down => ip.src_addr,
    };
    // ff00::/8 multicast (neighbour discovery, MLD, mDNS) never leaves the LAN.
    let group = ip.dst_addr[0] == 0xff;
    let src = ip.src_addr;
    // Unspecified (::) is the first 8 bytes and the last 8 all zero; ff00::/8 is a group.
    let (high, low) = ip_halves(&src);
    let has_source = direction == Direction::Up && (high | low) != 0 && src[0] != 0xff;
    IpLayer {
        ip_bytes,
        segments,
        // As for IPv4 options: a routing header (segment routing, when enabled) would send
        // it on from the box. Neighbour discovery and MLD go to groups, or carry neither.
        remote_is_local: ip.next_hdr != IPPROTO_HOPOPTS
            && ip.next_hdr != IPPROTO_ROUTING
            && crate::is_local_v6(&remote),
        group,
        remote: IpKey::from_v6(remote),
        source: IpKey::from_v6(src),
        has_source,
        proto: ip.next_hdr,
        l4_offset: (offset + Ipv6Hdr::LEN) as u8,
    }
}
