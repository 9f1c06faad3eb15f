//! Builds Ethernet frames byte by byte for feeding the eBPF programs through
//! `BPF_PROG_TEST_RUN`: well-formed ones with exact lengths and addresses (checksums are left
//! zero because nothing on the accounting path reads them), and random ones for fuzzing from a
//! seeded generator. Pure functions, no side effects.

/// A MAC address.
pub type Mac = [u8; 6];

pub const ETH_HLEN: usize = 14;
/// The smallest frame Ethernet carries (without FCS); shorter frames are padded to it.
pub const ETH_MIN_FRAME_LEN: usize = 60;
pub const VLAN_HLEN: usize = 4;
pub const IPV4_HLEN: usize = 20;
pub const IPV6_HLEN: usize = 40;
pub const UDP_HLEN: usize = 8;
pub const TCP_HLEN: usize = 20;
pub const ARP_LEN: usize = 28;

pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

pub const BROADCAST_MAC: Mac = [0xff; 6];

// Offsets of header fields, from the start of their header.
pub const ETH_DST_AT: usize = 0;
pub const ETH_SRC_AT: usize = 6;
pub const ETHER_TYPE_AT: usize = 12;
/// The byte holding the IP version (high nibble) and, in IPv4, the header length in words.
pub const IP_VERSION_AT: usize = 0;
pub const IPV4_TOTAL_LEN_AT: usize = 2;
pub const IPV6_PAYLOAD_LEN_AT: usize = 4;

/// One 802.1Q or 802.1ad tag.
#[derive(Clone, Copy, Debug)]
pub struct VlanTag {
    /// [`ETH_P_8021Q`] or [`ETH_P_8021AD`].
    pub tpid: u16,
    pub vid: u16,
}

impl VlanTag {
    #[must_use]
    pub const fn dot1q(vid: u16) -> Self {
        Self {
            tpid: ETH_P_8021Q,
            vid,
        }
    }

    #[must_use]
    pub const fn dot1ad(vid: u16) -> Self {
        Self {
            tpid: ETH_P_8021AD,
            vid,
        }
    }
}

/// An Ethernet frame: the header, the tags outermost first, then `payload`. Not padded.
#[must_use]
pub fn ethernet(dst: Mac, src: Mac, tags: &[VlanTag], ether_type: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(ETH_HLEN + tags.len() * VLAN_HLEN + payload.len());
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&src);
    for tag in tags {
        frame.extend_from_slice(&tag.tpid.to_be_bytes());
        frame.extend_from_slice(&(tag.vid & 0x0fff).to_be_bytes());
    }
    frame.extend_from_slice(&ether_type.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Pads `frame` with zeros to [`ETH_MIN_FRAME_LEN`], as a NIC does with short frames.
#[must_use]
pub fn padded(mut frame: Vec<u8>) -> Vec<u8> {
    if frame.len() < ETH_MIN_FRAME_LEN {
        frame.resize(ETH_MIN_FRAME_LEN, 0);
    }
    frame
}

/// A 16-bit length field, big-endian.
///
/// # Panics
/// If `len` does not fit 16 bits: a caller asked for a packet IP cannot describe.
fn len_field(len: usize) -> [u8; 2] {
    let Ok(len) = u16::try_from(len) else {
        panic!("{len} bytes do not fit a 16-bit length field");
    };
    len.to_be_bytes()
}

/// An IPv4 packet without options whose total length covers `l4`.
///
/// # Panics
/// If the packet is longer than an IPv4 total length can say (65,535 bytes).
#[must_use]
pub fn ipv4(src: [u8; 4], dst: [u8; 4], protocol: u8, l4: &[u8]) -> Vec<u8> {
    let mut packet = Vec::with_capacity(IPV4_HLEN + l4.len());
    packet.push(0x45); // version 4, IHL 5 words
    packet.push(0); // DSCP, ECN
    packet.extend_from_slice(&len_field(IPV4_HLEN + l4.len()));
    packet.extend_from_slice(&[0, 0, 0x40, 0]); // id, don't fragment
    packet.push(64); // TTL
    packet.push(protocol);
    packet.extend_from_slice(&[0, 0]); // checksum
    packet.extend_from_slice(&src);
    packet.extend_from_slice(&dst);
    packet.extend_from_slice(l4);
    packet
}

/// An IPv6 packet without extension headers whose payload length covers `l4`.
///
/// # Panics
/// If `l4` is longer than an IPv6 payload length can say (65,535 bytes).
#[must_use]
pub fn ipv6(src: [u8; 16], dst: [u8; 16], next_header: u8, l4: &[u8]) -> Vec<u8> {
    let mut packet = Vec::with_capacity(IPV6_HLEN + l4.len());
    packet.extend_from_slice(&[0x60, 0, 0, 0]); // version 6, traffic class, flow label
    packet.extend_from_slice(&len_field(l4.len()));
    packet.push(next_header);
    packet.push(64); // hop limit
    packet.extend_from_slice(&src);
    packet.extend_from_slice(&dst);
    packet.extend_from_slice(l4);
    packet
}

/// A UDP datagram carrying `payload_len` zero bytes.
///
/// # Panics
/// If the datagram is longer than a UDP length can say (65,535 bytes).
#[must_use]
pub fn udp(src_port: u16, dst_port: u16, payload_len: usize) -> Vec<u8> {
    let len = UDP_HLEN + payload_len;
    let mut datagram = Vec::with_capacity(len);
    datagram.extend_from_slice(&src_port.to_be_bytes());
    datagram.extend_from_slice(&dst_port.to_be_bytes());
    datagram.extend_from_slice(&len_field(len));
    datagram.extend_from_slice(&[0, 0]); // checksum
    datagram.resize(len, 0);
    datagram
}

/// A UDP datagram carrying `payload` (checksum 0: "none" in IPv4; routers never check it).
///
/// # Panics
/// If the datagram is longer than a UDP length can say (65,535 bytes).
#[must_use]
pub fn udp_with_payload(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut datagram = udp(src_port, dst_port, 0);
    datagram[4..6].copy_from_slice(&len_field(UDP_HLEN + payload.len()));
    datagram.extend_from_slice(payload);
    datagram
}

/// The Internet checksum (RFC 1071) of `bytes`: the one's complement of the one's complement
/// sum of its 16-bit words.
#[must_use]
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for word in bytes.chunks(2) {
        let high = u32::from(word[0]) << 8;
        sum += high | word.get(1).copied().map_or(0, u32::from);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let Ok(sum) = u16::try_from(sum) else {
        unreachable!("folded to 16 bits above");
    };
    !sum
}

/// How an IPv4 header of [`ipv4_routable`] is filled in beyond its addresses.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ipv4Shape<'a> {
    /// Options after the fixed header: a whole number of 32-bit words, at most 40 bytes.
    pub options: &'a [u8],
    pub id: u16,
    /// Where this fragment's payload starts in the original datagram: a multiple of 8.
    pub fragment_offset: usize,
    pub more_fragments: bool,
}

/// An IPv4 packet a router forwards: TTL 64, a valid header checksum, and `shape`'s options
/// and fragment fields, carrying `payload` after the header.
///
/// # Panics
/// If the options are not whole words of at most 40 bytes, the offset is not a multiple of 8
/// below 65,536, or the packet is longer than 65,535 bytes.
#[must_use]
pub fn ipv4_routable(
    src: [u8; 4],
    dst: [u8; 4],
    protocol: u8,
    shape: &Ipv4Shape<'_>,
    payload: &[u8],
) -> Vec<u8> {
    const MORE_FRAGMENTS: u16 = 0x2000;
    assert!(
        shape.options.len().is_multiple_of(4) && shape.options.len() <= 40,
        "IPv4 options are whole words, at most 40 bytes (got {})",
        shape.options.len()
    );
    let offset_units = u16::try_from(shape.fragment_offset / 8)
        .ok()
        .filter(|units| *units <= 0x1fff && shape.fragment_offset.is_multiple_of(8));
    let Some(offset_units) = offset_units else {
        panic!("bad fragment offset {}", shape.fragment_offset);
    };
    let header_len = IPV4_HLEN + shape.options.len();
    let Ok(words) = u8::try_from(header_len / 4) else {
        unreachable!("at most 60 bytes, asserted above");
    };
    let flags = offset_units
        | if shape.more_fragments {
            MORE_FRAGMENTS
        } else {
            0
        };
    let mut packet = Vec::with_capacity(header_len + payload.len());
    packet.push(0x40 | words);
    packet.push(0); // DSCP, ECN
    packet.extend_from_slice(&len_field(header_len + payload.len()));
    packet.extend_from_slice(&shape.id.to_be_bytes());
    packet.extend_from_slice(&flags.to_be_bytes());
    packet.push(64); // TTL
    packet.push(protocol);
    packet.extend_from_slice(&[0, 0]); // checksum, below
    packet.extend_from_slice(&src);
    packet.extend_from_slice(&dst);
    packet.extend_from_slice(shape.options);
    let checksum = internet_checksum(&packet[..header_len]);
    packet[10..12].copy_from_slice(&checksum.to_be_bytes());
    packet.extend_from_slice(payload);
    packet
}

pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_ROUTING: u8 = 43;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_DSTOPTS: u8 = 60;

/// An IPv6 hop-by-hop or destination options header holding one `PadN` option (8 bytes), then
/// `rest`, which starts with the header `next_header` names.
#[must_use]
pub fn ipv6_options_header(next_header: u8, rest: &[u8]) -> Vec<u8> {
    const PADN: u8 = 1;
    let mut header = vec![next_header, 0, PADN, 4, 0, 0, 0, 0];
    header.extend_from_slice(rest);
    header
}

/// An IPv6 routing header of `routing_type` (0 the deprecated source route, 4 segment
/// routing) listing `segments`, `segments_left` of them still to visit, then `rest`.
///
/// # Panics
/// If there are more than 127 segments.
#[must_use]
pub fn ipv6_routing_header(
    next_header: u8,
    routing_type: u8,
    segments_left: u8,
    segments: &[[u8; 16]],
    rest: &[u8],
) -> Vec<u8> {
    const SEGMENT_ROUTING: u8 = 4;
    let (Ok(units), Ok(last)) = (
        u8::try_from(segments.len() * 2),
        u8::try_from(segments.len().saturating_sub(1)),
    ) else {
        panic!("{} segments do not fit a routing header", segments.len());
    };
    let mut header = vec![next_header, units, routing_type, segments_left];
    // Type 0: reserved. Segment routing: last entry, flags, tag.
    let last_entry = if routing_type == SEGMENT_ROUTING {
        last
    } else {
        0
    };
    header.extend_from_slice(&[last_entry, 0, 0, 0]);
    for segment in segments {
        header.extend_from_slice(segment);
    }
    header.extend_from_slice(rest);
    header
}

/// An IPv6 fragment header for a fragment starting `offset` bytes (a multiple of 8) into the
/// original packet, then `rest`.
///
/// # Panics
/// If `offset` is not a multiple of 8 below 65,536.
#[must_use]
pub fn ipv6_fragment_header(
    next_header: u8,
    offset: usize,
    more_fragments: bool,
    id: u32,
    rest: &[u8],
) -> Vec<u8> {
    let Some(offset) = u16::try_from(offset)
        .ok()
        .filter(|offset| offset.is_multiple_of(8))
    else {
        panic!("bad fragment offset {offset}");
    };
    let field = offset | u16::from(more_fragments);
    let mut header = vec![next_header, 0];
    header.extend_from_slice(&field.to_be_bytes());
    header.extend_from_slice(&id.to_be_bytes());
    header.extend_from_slice(rest);
    header
}

/// The TCP options Linux puts in every segment of a connection: NOP, NOP, timestamps.
pub const TCP_TIMESTAMPS: [u8; 12] = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 1];

/// A TCP segment without options (20-byte header, ACK set) carrying `payload_len` zero bytes.
#[must_use]
pub fn tcp(src_port: u16, dst_port: u16, payload_len: usize) -> Vec<u8> {
    tcp_with_options(src_port, dst_port, &[], payload_len)
}

/// A TCP segment (ACK set) whose header carries `options`, then `payload_len` zero bytes.
///
/// # Panics
/// If `options` is not a whole number of 32-bit words or longer than 40 bytes.
#[must_use]
pub fn tcp_with_options(
    src_port: u16,
    dst_port: u16,
    options: &[u8],
    payload_len: usize,
) -> Vec<u8> {
    const FLAG_ACK: u8 = 0x10;
    const MAX_OPTIONS_LEN: usize = 40;
    assert!(
        options.len().is_multiple_of(4) && options.len() <= MAX_OPTIONS_LEN,
        "TCP options are whole 32-bit words, at most {MAX_OPTIONS_LEN} bytes (got {})",
        options.len()
    );
    let header_len = TCP_HLEN + options.len();
    let mut segment = Vec::with_capacity(header_len + payload_len);
    segment.extend_from_slice(&src_port.to_be_bytes());
    segment.extend_from_slice(&dst_port.to_be_bytes());
    segment.extend_from_slice(&1u32.to_be_bytes()); // sequence number
    segment.extend_from_slice(&1u32.to_be_bytes()); // acknowledgment number
    let Ok(data_offset_words) = u8::try_from(header_len / 4) else {
        unreachable!("at most 60 bytes, asserted above");
    };
    segment.push(data_offset_words << 4);
    segment.push(FLAG_ACK);
    segment.extend_from_slice(&64_240u16.to_be_bytes()); // window
    segment.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    segment.extend_from_slice(options);
    segment.resize(header_len + payload_len, 0);
    segment
}

/// The `n`th of a family of locally administered unicast MACs, `02:00:00:xx:xx:xx`, for tests
/// that need many distinct clients.
#[must_use]
pub const fn client_mac(n: u32) -> Mac {
    let [_, b, c, d] = n.to_be_bytes();
    [0x02, 0x00, 0x00, b, c, d]
}

/// A MAC address written `aa:bb:cc:dd:ee:ff`, as the daemon prints it, as bytes.
///
/// # Errors
/// If `text` is not six hexadecimal octets separated by colons.
pub fn mac_of(text: &str) -> anyhow::Result<Mac> {
    let octets: Vec<u8> = text
        .split(':')
        .map(|part| u8::from_str_radix(part, 16))
        .collect::<Result<_, _>>()
        .map_err(|error| anyhow::anyhow!("MAC {text}: {error}"))?;
    octets
        .try_into()
        .map_err(|_| anyhow::anyhow!("MAC {text} has not six octets"))
}

/// An ARP request for Ethernet and IPv4 ("who has `target_ip`? tell `sender_ip`").
#[must_use]
pub fn arp_request(sender_mac: Mac, sender_ip: [u8; 4], target_ip: [u8; 4]) -> Vec<u8> {
    const HTYPE_ETHERNET: u16 = 1;
    const OPER_REQUEST: u16 = 1;
    let mut packet = Vec::with_capacity(ARP_LEN);
    packet.extend_from_slice(&HTYPE_ETHERNET.to_be_bytes());
    packet.extend_from_slice(&ETH_P_IPV4.to_be_bytes());
    packet.push(6); // hardware address length
    packet.push(4); // protocol address length
    packet.extend_from_slice(&OPER_REQUEST.to_be_bytes());
    packet.extend_from_slice(&sender_mac);
    packet.extend_from_slice(&sender_ip);
    packet.extend_from_slice(&[0; 6]);
    packet.extend_from_slice(&target_ip);
    packet
}

/// An IPv6 neighbour solicitation (RFC 4861) from `src` for `target`, sent to `dst`, with
/// `src_mac` as its source link-layer address option: hop limit 255 and a valid checksum, so
/// a host takes it and makes a neighbour entry for `src`.
#[must_use]
pub fn neighbour_solicitation(
    src_mac: Mac,
    src: [u8; 16],
    dst: [u8; 16],
    target: [u8; 16],
) -> Vec<u8> {
    const IPPROTO_ICMPV6: u8 = 58;
    const NEIGHBOUR_SOLICITATION: u8 = 135;
    const SOURCE_LINK_LAYER_ADDRESS: u8 = 1;
    const HOP_LIMIT_AT: usize = 7;
    let mut icmp = vec![NEIGHBOUR_SOLICITATION, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&target);
    // The option's length is in units of 8 bytes.
    icmp.extend_from_slice(&[SOURCE_LINK_LAYER_ADDRESS, 1]);
    icmp.extend_from_slice(&src_mac);
    // The checksum covers the pseudo-header: addresses, upper-layer length, next header.
    let mut pseudo = Vec::with_capacity(40 + icmp.len());
    pseudo.extend_from_slice(&src);
    pseudo.extend_from_slice(&dst);
    pseudo.extend_from_slice(&u32::try_from(icmp.len()).unwrap_or(u32::MAX).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, IPPROTO_ICMPV6]);
    pseudo.extend_from_slice(&icmp);
    let checksum = internet_checksum(&pseudo);
    icmp[2..4].copy_from_slice(&checksum.to_be_bytes());
    let mut packet = ipv6(src, dst, IPPROTO_ICMPV6, &icmp);
    // Neighbour discovery refuses anything that may have crossed a router.
    packet[HOP_LIMIT_AT] = 255;
    packet
}

/// xorshift64*: a fixed seed gives the same sequence on every run, so a failure reproduces.
pub struct XorShift(u64);

impl XorShift {
    /// # Panics
    /// If `seed` is 0, which xorshift never leaves.
    #[must_use]
    pub const fn new(seed: u64) -> Self {
        assert!(seed != 0, "xorshift needs a non-zero seed");
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..bound`, uniform enough for fuzzing.
    ///
    /// # Panics
    /// If `bound` is 0.
    pub fn below(&mut self, bound: usize) -> usize {
        let (Ok(bound), Some(_)) = (u64::try_from(bound), bound.checked_sub(1)) else {
            panic!("no number is below {bound}");
        };
        let Ok(n) = usize::try_from(self.next_u64() % bound) else {
            unreachable!("below a usize bound");
        };
        n
    }

    /// True with probability `1 / n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes()[..chunk.len()]);
        }
    }
}

/// Writes as much of `bytes` at `at` as fits in `frame`.
fn put(frame: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(room) = frame.get_mut(at..) {
        let n = room.len().min(bytes.len());
        room[..n].copy_from_slice(&bytes[..n]);
    }
}

/// What [`random_frame`] steers its frames towards, since uniformly random bytes would almost
/// never get past the Ethernet header.
pub struct FrameMix<'a> {
    /// MACs that most frames carry as source and destination.
    pub clients: &'a [Mac],
    /// Unicast MACs that some frames carry instead, for clients the test does not follow.
    pub strangers: &'a [Mac],
    /// IPv4 addresses some packets carry as source or destination: the box, groups, the
    /// internet.
    pub addrs_v4: &'a [[u8; 4]],
    /// The IPv6 counterpart of `addrs_v4`.
    pub addrs_v6: &'a [[u8; 16]],
    /// Longest frame, at least [`ETH_HLEN`] and at most 64 KiB.
    pub max_len: usize,
}

/// Offsets of the addresses in the IPv4 and IPv6 headers.
const IPV4_SRC_AT: usize = 12;
const IPV4_DST_AT: usize = 16;
const IPV6_SRC_AT: usize = 8;
const IPV6_DST_AT: usize = 24;

/// A frame of [`ETH_HLEN`] to `mix.max_len` random bytes, mostly steered into the parsers:
/// MACs of `mix.clients` (sometimes a stranger's or a group address), up to two VLAN tags, an
/// IP ethertype, the right version (sometimes the other family's), a header length and a total
/// length that mostly fit, and addresses of `mix` in some packets. Never shorter than
/// `BPF_PROG_TEST_RUN` accepts.
///
/// # Panics
/// If `mix.clients` or `mix.strangers` is empty, or `mix.max_len` is below [`ETH_HLEN`] or
/// above 64 KiB.
pub fn random_frame(rng: &mut XorShift, mix: &FrameMix<'_>) -> Vec<u8> {
    let len = ETH_HLEN + rng.below(mix.max_len - ETH_HLEN + 1);
    let mut frame = vec![0; len];
    rng.fill(&mut frame);
    for at in [ETH_DST_AT, ETH_SRC_AT] {
        let mac = match rng.below(8) {
            0 => {
                // A group address: random bytes with the group bit set.
                let mut mac = [0; 6];
                rng.fill(&mut mac);
                mac[0] |= 1;
                mac
            }
            1 => mix.strangers[rng.below(mix.strangers.len())],
            _ => mix.clients[rng.below(mix.clients.len())],
        };
        put(&mut frame, at, &mac);
    }
    let mut type_at = ETHER_TYPE_AT;
    for _ in 0..rng.below(3) {
        let tpid = if rng.one_in(2) {
            ETH_P_8021Q
        } else {
            ETH_P_8021AD
        };
        put(&mut frame, type_at, &tpid.to_be_bytes());
        type_at += VLAN_HLEN;
    }
    let l3 = type_at + size_of::<u16>();
    let present = len.saturating_sub(l3);
    match rng.below(5) {
        0 | 1 => {
            put(&mut frame, type_at, &ETH_P_IPV4.to_be_bytes());
            match rng.below(8) {
                // Options: a header longer than 20 bytes, which may not fit.
                0 => {
                    let words = 5 + u8::try_from(rng.below(11)).unwrap_or(0);
                    put(&mut frame, l3 + IP_VERSION_AT, &[0x40 | words]);
                }
                // IPv6 behind the IPv4 ethertype.
                1 => put(&mut frame, l3 + IP_VERSION_AT, &[0x60]),
                2 => {}
                _ => put(&mut frame, l3 + IP_VERSION_AT, &[0x45]),
            }
            if !rng.one_in(4) {
                let total_len = len_field(rng.below(present + 1));
                put(&mut frame, l3 + IPV4_TOTAL_LEN_AT, &total_len);
            }
            for at in [IPV4_SRC_AT, IPV4_DST_AT] {
                if rng.one_in(2) {
                    put(
                        &mut frame,
                        l3 + at,
                        &mix.addrs_v4[rng.below(mix.addrs_v4.len())],
                    );
                }
            }
        }
        2 | 3 => {
            put(&mut frame, type_at, &ETH_P_IPV6.to_be_bytes());
            match rng.below(8) {
                // IPv4 behind the IPv6 ethertype.
                0 => put(&mut frame, l3 + IP_VERSION_AT, &[0x45]),
                1 => {}
                _ => put(&mut frame, l3 + IP_VERSION_AT, &[0x60]),
            }
            if !rng.one_in(4) {
                let payload_len = len_field(rng.below(present.saturating_sub(IPV6_HLEN) + 1));
                put(&mut frame, l3 + IPV6_PAYLOAD_LEN_AT, &payload_len);
            }
            for at in [IPV6_SRC_AT, IPV6_DST_AT] {
                if rng.one_in(2) {
                    put(
                        &mut frame,
                        l3 + at,
                        &mix.addrs_v6[rng.below(mix.addrs_v6.len())],
                    );
                }
            }
        }
        _ => {}
    }
    // BPF_PROG_TEST_RUN refuses (EINVAL) an IPv4 or IPv6 ethertype with less than that header
    // after it; the programs see such frames only behind a VLAN tag, which the kernel does
    // not look through.
    let ether_type = u16::from_be_bytes([frame[ETHER_TYPE_AT], frame[ETHER_TYPE_AT + 1]]);
    let kernel_min_len = match ether_type {
        ETH_P_IPV4 => ETH_HLEN + IPV4_HLEN,
        ETH_P_IPV6 => ETH_HLEN + IPV6_HLEN,
        _ => ETH_HLEN,
    };
    while frame.len() < kernel_min_len {
        frame.push(rng.next_u64().to_le_bytes()[0]);
    }
    frame
}
