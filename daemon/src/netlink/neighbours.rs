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

use super::raw::{
    self, Malformed, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, array, u16_at,
    u32_at,
};
use crate::mac::MacAddr;

// uapi linux/rtnetlink.h, linux/neighbour.h.
const RTM_NEWNEIGH: u16 = 28;
const RTM_DELNEIGH: u16 = 29;
const RTM_GETNEIGH: u16 = 30;
/// `struct ndmsg`: family, three pad bytes, ifindex, state, flags, type.
const NDMSG_LEN: usize = 12;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
/// Entries being resolved or that failed to resolve name no reachable device.
const NUD_INCOMPLETE: u16 = 0x01;
const NUD_FAILED: u16 = 0x20;
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
        let request = raw::request(
            RTM_DELNEIGH,
            NLM_F_REQUEST | NLM_F_ACK,
            self.sequence,
            &delete_body(ifindex, ip),
        );
        raw::send_to_kernel(self.socket.as_raw_fd(), &request)?;
        loop {
            let received = self.receive()?;
            for message in raw::messages(&self.buffer[..received]) {
                let message = message?;
                if message.sequence != self.sequence || message.kind != NLMSG_ERROR {
                    continue;
                }
                return match message.error() {
                    None => Ok(()),
                    Some(error) if error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
                    Some(error) => Err(error),
                };
            }
        }
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
        // An all-zero ndmsg: AF_UNSPEC, every interface (filtered on the way in).
        let request = raw::request(
            RTM_GETNEIGH,
            NLM_F_REQUEST | NLM_F_DUMP,
            self.sequence,
            &[0; NDMSG_LEN],
        );
        raw::send_to_kernel(self.socket.as_raw_fd(), &request)?;
        loop {
            let received = self.receive()?;
            match parse(&self.buffer[..received], self.sequence, ifindex, out)? {
                Parsed::More => {}
                Parsed::Done => return Ok(()),
            }
        }
    }
}

/// The `struct ndmsg` and `NDA_DST` of an `RTM_DELNEIGH` of `ip` on `ifindex`.
fn delete_body(ifindex: u32, ip: IpAddr) -> Vec<u8> {
    let (family, address): (u8, Vec<u8>) = match ip {
        IpAddr::V4(v4) => (2, v4.octets().to_vec()),
        IpAddr::V6(v6) => (10, v6.octets().to_vec()),
    };
    let attribute_len = 4 + address.len();
    let mut body = Vec::with_capacity(NDMSG_LEN + attribute_len);
    body.extend_from_slice(&[family, 0, 0, 0]);
    body.extend_from_slice(&ifindex.to_ne_bytes());
    // State, flags, type: none.
    body.extend_from_slice(&[0; 4]);
    body.extend_from_slice(&u16::try_from(attribute_len).unwrap_or(0).to_ne_bytes());
    body.extend_from_slice(&NDA_DST.to_ne_bytes());
    body.extend_from_slice(&address);
    body
}

#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    More,
    Done,
}

/// Reads the messages of one `recv`: neighbour entries of `ifindex` go into `out`. Malformed
/// messages end the dump with an error rather than be guessed at.
fn parse(
    bytes: &[u8],
    sequence: u32,
    ifindex: u32,
    out: &mut Vec<(MacAddr, IpAddr)>,
) -> io::Result<Parsed> {
    for message in raw::messages(bytes) {
        let message = message?;
        if message.sequence != sequence {
            continue;
        }
        match message.kind {
            NLMSG_DONE => return Ok(Parsed::Done),
            // A dump ends in an error or in `NLMSG_DONE`; an acknowledgement is out of place.
            NLMSG_ERROR => return Err(message.error().unwrap_or_else(|| Malformed.into())),
            RTM_NEWNEIGH => {
                if let Some(pair) = neighbour(message.body, ifindex)? {
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
fn neighbour(body: &[u8], ifindex: u32) -> Result<Option<(MacAddr, IpAddr)>, Malformed> {
    if body.len() < NDMSG_LEN {
        return Err(Malformed);
    }
    let state = u16_at(body, 8);
    if u32_at(body, 4) != ifindex || state & (NUD_INCOMPLETE | NUD_FAILED) != 0 {
        return Ok(None);
    }
    let (mut ip, mut mac) = (None, None);
    for attribute in raw::attributes(&body[NDMSG_LEN..]) {
        let (kind, value) = attribute?;
        match (kind, value.len()) {
            (NDA_DST, 4) => ip = Some(IpAddr::V4(Ipv4Addr::from(array::<4>(value, 0)))),
            (NDA_DST, 16) => ip = Some(IpAddr::V6(Ipv6Addr::from(array::<16>(value, 0)))),
            (NDA_LLADDR, 6) => mac = Some(MacAddr(array(value, 0))),
            _ => {}
        }
    }
    Ok(ip.zip(mac).map(|(ip, mac)| (mac, ip)))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::netlink::raw::{NLMSG_HDRLEN, build};

    /// One `RTM_NEWNEIGH` message as the kernel sends it.
    fn message(sequence: u32, ifindex: u32, state: u16, attributes: &[(u16, &[u8])]) -> Vec<u8> {
        let mut ndmsg = vec![0u8; NDMSG_LEN];
        ndmsg[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        ndmsg[8..10].copy_from_slice(&state.to_ne_bytes());
        header(
            RTM_NEWNEIGH,
            sequence,
            &build::with_attributes(&ndmsg, attributes),
        )
    }

    fn header(kind: u16, sequence: u32, body: &[u8]) -> Vec<u8> {
        build::message(kind, sequence, body)
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
