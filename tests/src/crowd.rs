//! Thousands of simulated clients without thousands of namespaces: each member of a [`Crowd`]
//! is a MAC and an IPv6 address of its own, and one client namespace sends crafted frames with
//! those source addresses through an `AF_PACKET` socket, so the gateway sees (and hotspotd
//! counts) every member as a separate device. Side effects: permanent neighbour entries on
//! the gateway's LAN bridge ([`Crowd::add_neighbours`]) and a sender thread
//! ([`Crowd::start_sending`]) that stops when its [`CrowdSender`] is dropped.

use std::{
    net::{Ipv6Addr, SocketAddrV6},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    frames::{ETH_P_IPV6, IPPROTO_UDP, Mac, ethernet, ipv6, udp},
    lan::{CLIENT_IFACE, LAN_IFACE},
    netns::Netns,
};

/// The second MAC byte of every member, so a crowd never collides with a [`crate::Lan`]'s own
/// clients (`02:00:…`) or bridge (`02:01:…`).
const MAC_FAMILY: u8 = 0x5c;
/// UDP payload of each frame: a small packet, as a phone's background traffic is.
const PAYLOAD_LEN: usize = 18;
/// The sender spreads each period's frames over this many slots rather than one burst.
const SLOTS_PER_PERIOD: u32 = 100;

/// The members: member `i` has MAC `02:5c:00:ii:ii:ii` and address `2001:db8:1::5c:0:iiii:iiii`
/// (inside the LAN's IPv6 prefix).
#[derive(Clone, Debug)]
pub struct Crowd {
    members: usize,
}

impl Crowd {
    /// A crowd of `members` (at most 2^24).
    pub fn new(members: usize) -> Result<Self> {
        if members >= 1 << 24 {
            bail!("a crowd has at most 2^24 members (asked for {members})");
        }
        Ok(Self { members })
    }

    #[must_use]
    pub const fn len(&self) -> usize {
        self.members
    }

    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.members == 0
    }

    /// Member `index`'s MAC.
    #[must_use]
    pub fn mac(&self, index: usize) -> Mac {
        let [_, _, _, _, _, b, c, d] = (index as u64).to_be_bytes();
        [0x02, MAC_FAMILY, 0x00, b, c, d]
    }

    /// Member `index`'s MAC as hotspotd writes it: `02:5c:00:00:00:2a`.
    #[must_use]
    pub fn mac_string(&self, index: usize) -> String {
        let mac = self.mac(index);
        mac.iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// Member `index`'s IPv6 address.
    #[must_use]
    pub fn ipv6(&self, index: usize) -> Ipv6Addr {
        let [_, _, _, _, hi_a, hi_b, lo_a, lo_b] = (index as u64).to_be_bytes();
        Ipv6Addr::new(
            0x2001,
            0xdb8,
            1,
            0,
            u16::from(MAC_FAMILY),
            0,
            u16::from_be_bytes([hi_a, hi_b]),
            u16::from_be_bytes([lo_a, lo_b]),
        )
    }

    /// Tells the gateway every member's address, as its neighbour table would hold them after
    /// talking to real devices: hotspotd reads the clients' addresses from there every poll.
    /// Permanent entries, so they neither expire nor count against the table's GC thresholds.
    pub fn add_neighbours(&self, gateway: &Netns) -> Result<()> {
        let lines: Vec<String> = (0..self.members)
            .map(|index| {
                format!(
                    "neigh replace {} lladdr {} dev {LAN_IFACE} nud permanent",
                    self.ipv6(index),
                    self.mac_string(index)
                )
            })
            .collect();
        // `ip -batch` in slices: one process per 10,000-line script would be fine, but a
        // failure then names a shorter script.
        for slice in lines.chunks(4_096) {
            gateway.ip_batch(slice)?;
        }
        Ok(())
    }

    /// Starts a thread in `client` (a [`crate::Lan`] client namespace) that sends one UDP
    /// datagram from every member to `to` each `period`, spread evenly over the period, in
    /// Ethernet frames addressed to the gateway's bridge (`gateway_mac`).
    pub fn start_sending(
        &self,
        client: &Netns,
        gateway_mac: Mac,
        to: SocketAddrV6,
        period: Duration,
    ) -> Result<CrowdSender> {
        let frames: Vec<Vec<u8>> = (0..self.members)
            .map(|index| self.frame(index, gateway_mac, to))
            .collect();
        let running = Arc::new(AtomicBool::new(true));
        let sent = Arc::new(AtomicU64::new(0));
        let socket = client
            .run(packet_socket)?
            .with_context(|| format!("open an AF_PACKET socket in {}", client.name()))?;
        let thread = {
            let (running, sent) = (Arc::clone(&running), Arc::clone(&sent));
            thread::Builder::new()
                .name("crowd-sender".to_owned())
                .spawn(move || send_loop(&socket, &frames, period, &running, &sent))
                .context("spawn the crowd's sender thread")?
        };
        Ok(CrowdSender {
            running,
            sent,
            thread: Some(thread),
        })
    }

    fn frame(&self, index: usize, gateway_mac: Mac, to: SocketAddrV6) -> Vec<u8> {
        let src = self.ipv6(index);
        let mut datagram = udp(to.port(), to.port(), PAYLOAD_LEN);
        let checksum = udp6_checksum(src, *to.ip(), &datagram);
        datagram[6..8].copy_from_slice(&checksum.to_be_bytes());
        let packet = ipv6(src.octets(), to.ip().octets(), IPPROTO_UDP, &datagram);
        ethernet(gateway_mac, self.mac(index), &[], ETH_P_IPV6, &packet)
    }
}

/// The running sender; dropping it stops the thread.
#[derive(Debug)]
pub struct CrowdSender {
    running: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl CrowdSender {
    /// Frames sent so far.
    #[must_use]
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops the thread; returns the frames sent, or the error that stopped it early.
    pub fn stop(mut self) -> Result<u64> {
        self.running.store(false, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread
                .join()
                .map_err(|_| anyhow::anyhow!("the crowd's sender thread panicked"))??;
        }
        Ok(self.sent())
    }
}

impl Drop for CrowdSender {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An `AF_PACKET` raw socket bound to [`CLIENT_IFACE`] of the calling thread's namespace.
/// Protocol 0: it only sends, so the kernel hands it no received frames to queue.
fn packet_socket() -> Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; the fd is owned at once.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("socket(AF_PACKET, SOCK_RAW)");
    }
    // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let ifindex = nix::net::if_::if_nametoindex(CLIENT_IFACE)
        .with_context(|| format!("no interface {CLIENT_IFACE}"))?;
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value before the fields are set.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = u16::try_from(libc::AF_PACKET).context("AF_PACKET fits sa_family_t")?;
    address.sll_ifindex = i32::try_from(ifindex).context("ifindex fits an int")?;
    let length = u32::try_from(size_of::<libc::sockaddr_ll>()).context("sockaddr_ll size")?;
    // SAFETY: `address` is a valid sockaddr_ll of `length` bytes for the duration of the call.
    let bound = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&raw const address).cast::<libc::sockaddr>(),
            length,
        )
    };
    if bound != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("bind the AF_PACKET socket to {CLIENT_IFACE}"));
    }
    Ok(socket)
}

/// Sends every frame once per `period`, in up to `SLOTS_PER_PERIOD` equal slots on an
/// absolute schedule, so a late slot is caught up rather than stretching the period.
fn send_loop(
    socket: &OwnedFd,
    frames: &[Vec<u8>],
    period: Duration,
    running: &AtomicBool,
    sent: &AtomicU64,
) -> Result<()> {
    if frames.is_empty() {
        return Ok(());
    }
    let per_slot = frames.len().div_ceil(SLOTS_PER_PERIOD as usize);
    let slots = u32::try_from(frames.len().div_ceil(per_slot)).unwrap_or(SLOTS_PER_PERIOD);
    let slot = period / slots;
    let mut next = Instant::now();
    while running.load(Ordering::Relaxed) {
        for chunk in frames.chunks(per_slot) {
            for frame in chunk {
                // SAFETY: `frame` is a valid buffer of `frame.len()` bytes during the call.
                let written = unsafe {
                    libc::send(socket.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0)
                };
                if written < 0 {
                    let error = std::io::Error::last_os_error();
                    // A full device queue drops the frame; the next period sends it again.
                    if error.raw_os_error() != Some(libc::ENOBUFS) {
                        return Err(error).context("send a crowd frame");
                    }
                } else {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            next += slot;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            if !running.load(Ordering::Relaxed) {
                break;
            }
        }
    }
    Ok(())
}

/// The UDP checksum over the IPv6 pseudo-header and `datagram` (whose checksum field is
/// zero). IPv6 forbids a zero checksum, so the receiving namespace would drop the datagram
/// without one.
fn udp6_checksum(src: Ipv6Addr, dst: Ipv6Addr, datagram: &[u8]) -> u16 {
    let length = u32::try_from(datagram.len()).unwrap_or(u32::MAX);
    let mut sum: u64 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let word = match pair {
                [hi, lo] => u16::from_be_bytes([*hi, *lo]),
                [hi] => u16::from_be_bytes([*hi, 0]),
                _ => 0,
            };
            sum += u64::from(word);
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&length.to_be_bytes());
    add(&[0, 0, 0, IPPROTO_UDP]);
    add(datagram);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // A computed 0 is sent as all ones (RFC 768).
    match !(u16::try_from(sum).unwrap_or(0)) {
        0 => 0xffff,
        checksum => checksum,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_have_distinct_addresses_in_the_lan_prefix() {
        let crowd = Crowd::new(70_000).unwrap();
        assert_eq!(crowd.mac_string(0x01_02_03), "02:5c:00:01:02:03");
        assert_ne!(crowd.mac(65_536), crowd.mac(0));
        assert_eq!(
            crowd.ipv6(65_537),
            "2001:db8:1:0:5c:0:1:1".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn the_checksum_verifies() {
        let (src, dst) = (
            "2001:db8:1::5c:0:0:1".parse().unwrap(),
            "2001:db8:2::1".parse().unwrap(),
        );
        let mut datagram = udp(9, 9, PAYLOAD_LEN);
        let checksum = udp6_checksum(src, dst, &datagram);
        datagram[6..8].copy_from_slice(&checksum.to_be_bytes());
        // A receiver sums everything, checksum included, and must get all ones, which the
        // complement turns into 0 (or the 0xffff stand-in).
        assert!(matches!(udp6_checksum(src, dst, &datagram), 0 | 0xffff));
    }
}
