//! The bridges' forwarding databases as the kernel tells them: which port each MAC address was
//! last learned behind. A routing netlink socket subscribed to neighbour notifications, of which
//! only the bridge family's (`AF_BRIDGE`) are read, first primed with a dump of every entry.
//! The bridge's own addresses and entries a port keeps itself are left out: they never move.
//! Read-only.

use std::io;

use super::raw::{self, Malformed, NLMSG_ERROR, RawSocket};
use crate::mac::MacAddr;

// uapi linux/rtnetlink.h, linux/neighbour.h
const RTM_NEWNEIGH: u16 = 28;
const RTM_DELNEIGH: u16 = 29;
const RTM_GETNEIGH: u16 = 30;
/// `RTMGRP_NEIGH`: the `RTNLGRP_NEIGH` group (3) as a bind mask.
const RTMGRP_NEIGH: u32 = 1 << (3 - 1);
#[expect(clippy::cast_possible_truncation, reason = "AF_BRIDGE is 7")]
const AF_BRIDGE: u8 = libc::AF_BRIDGE as u8;
/// `struct ndmsg`: family, two pad bytes, ifindex, state, flags, type.
const NDMSG_LEN: usize = 12;
const NDA_LLADDR: u16 = 2;
const NDA_VLAN: u16 = 5;
const NDA_MASTER: u16 = 9;
/// The bridge's own addresses ("local" in `bridge fdb`).
const NUD_PERMANENT: u16 = 0x80;
/// An entry of the port device's own table, not the bridge's.
const NTF_SELF: u8 = 0x02;

/// One change in a bridge's forwarding database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdbChange {
    pub mac: MacAddr,
    /// The VLAN the entry is for, with VLAN filtering on; the same MAC may sit behind another
    /// port on another VLAN.
    pub vlan: Option<u16>,
    /// The port the MAC is (or was, when `gone`) behind.
    pub port_ifindex: u32,
    /// The bridge the port belongs to.
    pub bridge_ifindex: u32,
    /// The entry was removed (aged out, flushed, its port gone).
    pub gone: bool,
}

/// What one datagram said.
#[derive(Debug, PartialEq, Eq)]
pub enum Batch {
    Changes,
    /// The kernel dropped notifications (its queue for us was full): call
    /// [`FdbWatch::resync`].
    Lost,
}

/// The subscribed socket.
pub struct FdbWatch {
    socket: RawSocket,
}

impl FdbWatch {
    /// Subscribes to neighbour notifications and asks for every bridge entry as it is now,
    /// which arrive as changes like any other.
    pub fn open() -> io::Result<Self> {
        let mut watch = Self {
            socket: RawSocket::open(RTMGRP_NEIGH)?,
        };
        watch.resync()?;
        Ok(watch)
    }

    /// Asks again for every bridge entry, after notifications were lost.
    pub fn resync(&mut self) -> io::Result<()> {
        let mut request = [0u8; NDMSG_LEN];
        request[0] = AF_BRIDGE;
        self.socket.dump(RTM_GETNEIGH, &request).map(drop)
    }

    /// Waits for the next datagram and puts its bridge entries into `out` (emptied first).
    pub async fn next(&mut self, out: &mut Vec<FdbChange>) -> io::Result<Batch> {
        out.clear();
        match self.socket.receive().await {
            Ok(bytes) => {
                parse(bytes, out)?;
                Ok(Batch::Changes)
            }
            Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => Ok(Batch::Lost),
            Err(error) => Err(error),
        }
    }
}

/// The bridge entries among the messages of one datagram.
fn parse(bytes: &[u8], out: &mut Vec<FdbChange>) -> io::Result<()> {
    for message in raw::messages(bytes) {
        let message = message?;
        match message.kind {
            RTM_NEWNEIGH | RTM_DELNEIGH => {
                if let Some(change) = entry(message.body, message.kind == RTM_DELNEIGH)? {
                    out.push(change);
                }
            }
            NLMSG_ERROR => {
                if let Some(error) = message.error() {
                    return Err(error);
                }
            }
            // NLMSG_DONE ends the priming dump; notifications follow on the same socket.
            _ => {}
        }
    }
    Ok(())
}

/// The change one neighbour message describes, if it is a bridge's learned entry.
fn entry(body: &[u8], gone: bool) -> Result<Option<FdbChange>, Malformed> {
    if body.len() < NDMSG_LEN {
        return Err(Malformed);
    }
    let state = raw::u16_at(body, 8);
    if body[0] != AF_BRIDGE || state & NUD_PERMANENT != 0 || body[10] & NTF_SELF != 0 {
        return Ok(None);
    }
    let (mut mac, mut vlan, mut bridge) = (None, None, None);
    for attribute in raw::attributes(&body[NDMSG_LEN..]) {
        match attribute? {
            (NDA_LLADDR, value) if value.len() == 6 => mac = Some(MacAddr(raw::array(value, 0))),
            (NDA_VLAN, value) if value.len() == 2 => vlan = Some(raw::u16_at(value, 0)),
            (NDA_MASTER, value) if value.len() == 4 => bridge = Some(raw::u32_at(value, 0)),
            _ => {}
        }
    }
    Ok(mac.zip(bridge).map(|(mac, bridge_ifindex)| FdbChange {
        mac,
        vlan,
        port_ifindex: raw::u32_at(body, 4),
        bridge_ifindex,
        gone,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::raw::build;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 7];
    const REACHABLE: u16 = 0x02;

    fn ndmsg(family: u8, ifindex: u32, state: u16, flags: u8) -> [u8; NDMSG_LEN] {
        let mut header = [0u8; NDMSG_LEN];
        header[0] = family;
        header[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        header[8..10].copy_from_slice(&state.to_ne_bytes());
        header[10] = flags;
        header
    }

    fn fdb(kind: u16, port: u32, state: u16, flags: u8, vlan: Option<u16>) -> Vec<u8> {
        let master = 3u32.to_ne_bytes();
        let vlan = vlan.map(u16::to_ne_bytes);
        let mut attributes: Vec<(u16, &[u8])> = vec![(NDA_LLADDR, &MAC), (NDA_MASTER, &master)];
        if let Some(vlan) = &vlan {
            attributes.push((NDA_VLAN, vlan));
        }
        let body = build::with_attributes(&ndmsg(AF_BRIDGE, port, state, flags), &attributes);
        build::message(kind, 0, &body)
    }

    #[test]
    fn reads_learned_entries_and_skips_the_rest() {
        let mut bytes = fdb(RTM_NEWNEIGH, 5, REACHABLE, 0, None);
        bytes.extend(fdb(RTM_DELNEIGH, 6, 0x04, 0, Some(10)));
        // The bridge's own address, a port's own table, an IPv4 neighbour.
        bytes.extend(fdb(RTM_NEWNEIGH, 5, NUD_PERMANENT, 0, None));
        bytes.extend(fdb(RTM_NEWNEIGH, 5, REACHABLE, NTF_SELF, None));
        let inet = build::with_attributes(
            &ndmsg(2, 5, REACHABLE, 0),
            &[(1, &[192, 0, 2, 7]), (NDA_LLADDR, &MAC)],
        );
        bytes.extend(build::message(RTM_NEWNEIGH, 0, &inet));
        bytes.extend(build::message(raw::NLMSG_DONE, 1, &[0; 4]));
        let mut out = Vec::new();
        parse(&bytes, &mut out).unwrap();
        assert_eq!(
            out,
            vec![
                FdbChange {
                    mac: MacAddr(MAC),
                    vlan: None,
                    port_ifindex: 5,
                    bridge_ifindex: 3,
                    gone: false,
                },
                FdbChange {
                    mac: MacAddr(MAC),
                    vlan: Some(10),
                    port_ifindex: 6,
                    bridge_ifindex: 3,
                    gone: true,
                },
            ]
        );
    }

    #[test]
    fn a_cut_message_or_an_error_is_an_error() {
        let whole = fdb(RTM_NEWNEIGH, 5, REACHABLE, 0, None);
        let mut out = Vec::new();
        assert!(parse(&whole[..whole.len() - 6], &mut out).is_err());
        let refused = build::message(NLMSG_ERROR, 1, &(-libc::EPERM).to_ne_bytes());
        let error = parse(&refused, &mut out).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EPERM));
    }
}
