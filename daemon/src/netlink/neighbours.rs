//! The neighbour table of one interface, read with one `RTM_GETNEIGH` dump on a routing netlink
//! socket of its own and parsed in place: only each entry's address (`NDA_DST`) and MAC
//! (`NDA_LLADDR`) are read, into a list the caller keeps between polls. The rtnetlink crate
//! parsed every entry into allocated attributes and passed it through a channel, ~10 ms a poll
//! at 10,000 clients. Blocking: the dump is a few `recv` calls, as long as the map reads next
//! to it. Side effects: [`NeighbourReader::delete`] removes an entry (one poisoned with a group
//! MAC); the dump itself only reads.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use crate::mac::MacAddr;

// uapi linux/netlink.h, linux/rtnetlink.h, linux/neighbour.h.
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_ACK: u16 = 0x4;
const RTM_NEWNEIGH: u16 = 28;
const RTM_DELNEIGH: u16 = 29;
const RTM_GETNEIGH: u16 = 30;
/// `struct ndmsg`: family, two pad bytes, ifindex, state, flags, type.
const NDMSG_LEN: usize = 12;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
/// Entries being resolved or that failed to resolve name no reachable device.
const NUD_INCOMPLETE: u16 = 0x01;
const NUD_FAILED: u16 = 0x20;
#[expect(clippy::cast_possible_truncation, reason = "AF_NETLINK is 16")]
const SOCKADDR_FAMILY: libc::sa_family_t = libc::AF_NETLINK as libc::sa_family_t;
#[expect(clippy::cast_possible_truncation, reason = "a 12-byte struct")]
const SOCKADDR_LEN: libc::socklen_t = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
/// The kernel fills at most one page-sized skb per `recv` of a dump; 64 KiB holds any.
const RECEIVE_BUFFER_LEN: usize = 64 * 1024;

/// A routing netlink socket for neighbour dumps, with its receive buffer.
pub struct NeighbourReader {
    socket: OwnedFd,
    buffer: Vec<u8>,
    sequence: u32,
}

impl NeighbourReader {
    /// Opens the socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        // SAFETY: socket(2) with constant arguments; the fd is owned at once.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
            socket: unsafe { OwnedFd::from_raw_fd(fd) },
            buffer: vec![0; RECEIVE_BUFFER_LEN],
            sequence: 0,
        })
    }

    /// Deletes the neighbour entry of `ip` on interface `ifindex`; one already gone is fine.
    pub fn delete(&mut self, ifindex: u32, ip: IpAddr) -> io::Result<()> {
        self.sequence = self.sequence.wrapping_add(1);
        let request = delete_request(self.sequence, ifindex, ip);
        self.send(&request)?;
        loop {
            let received = self.receive()?;
            let mut bytes = &self.buffer[..received];
            while bytes.len() >= NLMSG_HDRLEN {
                let len = usize::try_from(u32_at(bytes, 0)).unwrap_or(0);
                if len < NLMSG_HDRLEN || len > bytes.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a malformed netlink answer",
                    ));
                }
                let (message, rest) = bytes.split_at(len);
                bytes = rest.get(align4(len) - len..).unwrap_or_default();
                if u32_at(message, 8) != self.sequence || u16_at(message, 4) != NLMSG_ERROR {
                    continue;
                }
                return match i32::from_ne_bytes(array(message, NLMSG_HDRLEN)) {
                    0 => Ok(()),
                    code if -code == libc::ENOENT => Ok(()),
                    code => Err(io::Error::from_raw_os_error(-code)),
                };
            }
        }
    }

    fn send(&self, request: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_nl is plain data; all-zero is pid 0, the kernel.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = SOCKADDR_FAMILY;
        // SAFETY: `request` and `kernel` are valid buffers of the given lengths for the
        // duration of the call.
        let sent = unsafe {
            libc::sendto(
                self.socket.as_raw_fd(),
                request.as_ptr().cast(),
                request.len(),
                0,
                (&raw const kernel).cast(),
                SOCKADDR_LEN,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// One `recv` into the buffer; returns how many bytes arrived.
    fn receive(&mut self) -> io::Result<usize> {
        loop {
            // SAFETY: `buffer` is valid for writes of its length during the call.
            let received = unsafe {
                libc::recv(
                    self.socket.as_raw_fd(),
                    self.buffer.as_mut_ptr().cast(),
                    self.buffer.len(),
                    0,
                )
            };
            if let Ok(received) = usize::try_from(received) {
                return Ok(received);
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }

    /// Puts into `out` (emptied first) every (MAC, address) pair of interface `ifindex`'s
    /// neighbour table, but those still resolving or that failed to.
    pub fn read(&mut self, ifindex: u32, out: &mut Vec<(MacAddr, IpAddr)>) -> io::Result<()> {
        out.clear();
        self.sequence = self.sequence.wrapping_add(1);
        let request = dump_request(self.sequence);
        self.send(&request)?;
        loop {
            let received = self.receive()?;
            match parse(&self.buffer[..received], self.sequence, ifindex, out)? {
                Parsed::More => {}
                Parsed::Done => return Ok(()),
            }
        }
    }
}

/// `RTM_GETNEIGH` with `NLM_F_DUMP`, every family, every interface (filtered on the way in).
fn dump_request(sequence: u32) -> [u8; NLMSG_HDRLEN + NDMSG_LEN] {
    let mut request = [0u8; NLMSG_HDRLEN + NDMSG_LEN];
    let len = u32::try_from(request.len()).unwrap_or(u32::MAX);
    request[0..4].copy_from_slice(&len.to_ne_bytes());
    request[4..6].copy_from_slice(&RTM_GETNEIGH.to_ne_bytes());
    request[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    request[8..12].copy_from_slice(&sequence.to_ne_bytes());
    // pid 0 and an all-zero ndmsg: AF_UNSPEC, no filter.
    request
}

/// `RTM_DELNEIGH` of `ip` on `ifindex`, asking for an acknowledgement.
fn delete_request(sequence: u32, ifindex: u32, ip: IpAddr) -> Vec<u8> {
    let (family, address): (u8, Vec<u8>) = match ip {
        IpAddr::V4(v4) => (2, v4.octets().to_vec()),
        IpAddr::V6(v6) => (10, v6.octets().to_vec()),
    };
    let attribute_len = 4 + address.len();
    let len = NLMSG_HDRLEN + NDMSG_LEN + attribute_len;
    let mut request = Vec::with_capacity(len);
    request.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_ne_bytes());
    request.extend_from_slice(&RTM_DELNEIGH.to_ne_bytes());
    request.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    request.extend_from_slice(&sequence.to_ne_bytes());
    request.extend_from_slice(&0u32.to_ne_bytes());
    // struct ndmsg: family, 3 pad bytes, ifindex, state, flags, type.
    request.extend_from_slice(&[family, 0, 0, 0]);
    request.extend_from_slice(&ifindex.to_ne_bytes());
    request.extend_from_slice(&[0; 4]);
    request.extend_from_slice(&u16::try_from(attribute_len).unwrap_or(0).to_ne_bytes());
    request.extend_from_slice(&NDA_DST.to_ne_bytes());
    request.extend_from_slice(&address);
    request
}

#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    More,
    Done,
}

/// Reads the messages of one `recv`: neighbour entries of `ifindex` go into `out`. Malformed
/// messages end the dump with an error rather than be guessed at.
fn parse(
    mut bytes: &[u8],
    sequence: u32,
    ifindex: u32,
    out: &mut Vec<(MacAddr, IpAddr)>,
) -> io::Result<Parsed> {
    let malformed = || io::Error::new(io::ErrorKind::InvalidData, "a malformed neighbour dump");
    while bytes.len() >= NLMSG_HDRLEN {
        let len = usize::try_from(u32_at(bytes, 0)).map_err(|_| malformed())?;
        if len < NLMSG_HDRLEN || len > bytes.len() {
            return Err(malformed());
        }
        let (message, rest) = bytes.split_at(len);
        bytes = rest.get(align4(len) - len..).unwrap_or_default();
        if u32_at(message, 8) != sequence {
            continue;
        }
        let body = &message[NLMSG_HDRLEN..];
        match u16_at(message, 4) {
            NLMSG_DONE => return Ok(Parsed::Done),
            NLMSG_ERROR => {
                let code = body
                    .get(..4)
                    .map_or(0, |_| i32::from_ne_bytes(array(body, 0)));
                return Err(match code {
                    0 => malformed(),
                    code => io::Error::from_raw_os_error(-code),
                });
            }
            RTM_NEWNEIGH => {
                if let Some(pair) = neighbour(body, ifindex).map_err(|()| malformed())? {
                    out.push(pair);
                }
            }
            _ => {}
        }
    }
    Ok(Parsed::More)
}

/// The (MAC, address) of one `RTM_NEWNEIGH` body, if it is of `ifindex`, resolved, and has
/// both; `Err` if it is cut short.
fn neighbour(body: &[u8], ifindex: u32) -> Result<Option<(MacAddr, IpAddr)>, ()> {
    if body.len() < NDMSG_LEN {
        return Err(());
    }
    let state = u16_at(body, 8);
    if u32_at(body, 4) != ifindex || state & (NUD_INCOMPLETE | NUD_FAILED) != 0 {
        return Ok(None);
    }
    let (mut ip, mut mac) = (None, None);
    let mut attributes = &body[NDMSG_LEN..];
    while attributes.len() >= 4 {
        let len = usize::from(u16_at(attributes, 0));
        if len < 4 || len > attributes.len() {
            return Err(());
        }
        let value = &attributes[4..len];
        match (u16_at(attributes, 2), value.len()) {
            (NDA_DST, 4) => ip = Some(IpAddr::V4(Ipv4Addr::from(array::<4>(value, 0)))),
            (NDA_DST, 16) => ip = Some(IpAddr::V6(Ipv6Addr::from(array::<16>(value, 0)))),
            (NDA_LLADDR, 6) => mac = Some(MacAddr(array(value, 0))),
            _ => {}
        }
        attributes = attributes.get(align4(len)..).unwrap_or_default();
    }
    Ok(ip.zip(mac).map(|(ip, mac)| (mac, ip)))
}

const fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// `N` bytes at `at`; callers check the length first.
fn array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(source) = bytes.get(at..at + N) {
        out.copy_from_slice(source);
    }
    out
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes(array(bytes, at))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(array(bytes, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One `RTM_NEWNEIGH` message as the kernel sends it.
    fn message(sequence: u32, ifindex: u32, state: u16, attributes: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = vec![0u8; NDMSG_LEN];
        body[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        body[8..10].copy_from_slice(&state.to_ne_bytes());
        for (kind, value) in attributes {
            let len = u16::try_from(4 + value.len()).unwrap();
            body.extend_from_slice(&len.to_ne_bytes());
            body.extend_from_slice(&kind.to_ne_bytes());
            body.extend_from_slice(value);
            body.resize(align4(body.len()), 0);
        }
        header(RTM_NEWNEIGH, sequence, &body)
    }

    fn header(kind: u16, sequence: u32, body: &[u8]) -> Vec<u8> {
        let mut message = Vec::new();
        let len = u32::try_from(NLMSG_HDRLEN + body.len()).unwrap();
        message.extend_from_slice(&len.to_ne_bytes());
        message.extend_from_slice(&kind.to_ne_bytes());
        message.extend_from_slice(&0u16.to_ne_bytes());
        message.extend_from_slice(&sequence.to_ne_bytes());
        message.extend_from_slice(&0u32.to_ne_bytes());
        message.extend_from_slice(body);
        message
    }

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 7];
    const REACHABLE: u16 = 0x02;

    #[test]
    fn reads_the_resolved_entries_of_the_interface() {
        let v6: Ipv6Addr = "2001:db8:1::7".parse().unwrap();
        let mut bytes = message(
            9,
            4,
            REACHABLE,
            &[(NDA_DST, &[192, 0, 2, 7]), (NDA_LLADDR, &MAC)],
        );
        bytes.extend(message(
            9,
            4,
            0x80,
            &[(NDA_DST, &v6.octets()), (NDA_LLADDR, &MAC)],
        ));
        // Another interface, an entry still resolving, one without a MAC, another dump's.
        bytes.extend(message(
            9,
            5,
            REACHABLE,
            &[(NDA_DST, &[192, 0, 2, 8]), (NDA_LLADDR, &MAC)],
        ));
        bytes.extend(message(9, 4, NUD_INCOMPLETE, &[(NDA_DST, &[192, 0, 2, 9])]));
        bytes.extend(message(9, 4, REACHABLE, &[(NDA_DST, &[192, 0, 2, 10])]));
        bytes.extend(message(
            8,
            4,
            REACHABLE,
            &[(NDA_DST, &[192, 0, 2, 11]), (NDA_LLADDR, &MAC)],
        ));
        let mut out = Vec::new();
        assert_eq!(parse(&bytes, 9, 4, &mut out).unwrap(), Parsed::More);
        assert_eq!(
            out,
            vec![
                (MacAddr(MAC), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))),
                (MacAddr(MAC), IpAddr::V6(v6)),
            ]
        );
        assert_eq!(
            parse(&header(NLMSG_DONE, 9, &[0; 4]), 9, 4, &mut out).unwrap(),
            Parsed::Done
        );
    }

    #[test]
    fn errors_and_cut_messages_are_errors() {
        let mut out = Vec::new();
        let error = parse(
            &header(NLMSG_ERROR, 1, &(-libc::EPERM).to_ne_bytes()),
            1,
            4,
            &mut out,
        )
        .unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EPERM));
        let whole = message(
            1,
            4,
            REACHABLE,
            &[(NDA_DST, &[192, 0, 2, 7]), (NDA_LLADDR, &MAC)],
        );
        assert!(parse(&whole[..whole.len() - 3], 1, 4, &mut out).is_err());
        let mut lying = whole.clone();
        // An attribute claiming more than the message holds.
        lying[NLMSG_HDRLEN + NDMSG_LEN] = 200;
        assert!(parse(&lying, 1, 4, &mut out).is_err());
    }

    #[test]
    fn dumps_this_namespace() {
        // The end-to-end tests check real entries; here: the dump works unprivileged, ends,
        // can be repeated on the same socket, and keeps only the interface asked for.
        let mut reader = NeighbourReader::open().unwrap();
        let mut out = vec![(MacAddr(MAC), IpAddr::V4(Ipv4Addr::LOCALHOST))];
        reader.read(u32::MAX, &mut out).unwrap();
        assert!(out.is_empty());
        reader.read(1, &mut out).unwrap();
        reader.read(u32::MAX, &mut out).unwrap();
        assert!(out.is_empty());
    }
}
