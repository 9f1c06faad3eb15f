//! What the daemon learns from the kernel's routing netlink: the box's own addresses (which the
//! eBPF programs must not bill) and the clients' IPv4/IPv6 addresses (from the neighbour table
//! of the LAN interface, see [`NeighbourReader`]), when links change (to put the programs and
//! trees back on a recreated interface), which port of the LAN bridge each MAC is behind
//! ([`FdbWatch`]) and how full the neighbour tables are ([`NeighbourTables`]). Read-only:
//! nothing here changes the kernel's state.

mod bridge_fdb;
mod neighbour_tables;
mod neighbours;
mod raw;

use std::{collections::BTreeSet, net::IpAddr};

use futures::TryStreamExt as _;
use rtnetlink::sys::AsyncSocket as _;
use rtnetlink::{
    Handle,
    packet_route::{
        address::AddressAttribute,
        link::{InfoKind, LinkAttribute, LinkInfo},
    },
};

pub use bridge_fdb::{Batch, FdbChange, FdbWatch};
pub use neighbour_tables::{Family, FamilyTable, NeighbourTables};
pub use neighbours::NeighbourReader;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open a routing netlink socket")]
    Open(#[source] std::io::Error),
    #[error("listing {what} over netlink failed")]
    Dump {
        what: &'static str,
        source: rtnetlink::Error,
    },
    #[error("listing the neighbours over netlink failed")]
    Neighbours(#[source] std::io::Error),
}

/// The box's addresses: all of them, and each with its interface, in the kernel's order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BoxAddresses {
    pub all: BTreeSet<IpAddr>,
    pub by_interface: Vec<(u32, IpAddr)>,
}

impl BoxAddresses {
    /// The address a client on interface `ifindex` reaches the box's services at, of each
    /// family: its first IPv4, and its first IPv6 that is not link-local (one a client's
    /// global address can be answered from).
    #[must_use]
    pub fn service_addresses(
        &self,
        ifindex: u32,
    ) -> (Option<std::net::Ipv4Addr>, Option<std::net::Ipv6Addr>) {
        let on_interface = || {
            self.by_interface
                .iter()
                .filter(move |(index, _)| *index == ifindex)
                .map(|(_, addr)| *addr)
        };
        let v4 = on_interface().find_map(|addr| match addr {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        });
        let v6 = on_interface().find_map(|addr| match addr {
            IpAddr::V6(v6) if !v6.is_unicast_link_local() => Some(v6),
            _ => None,
        });
        (v4, v6)
    }
}

/// A routing netlink connection, driven by a task of its own.
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens the socket in the calling thread's network namespace and spawns its driver task.
    pub fn open() -> Result<Self, NetlinkError> {
        let (connection, handle, _messages) =
            rtnetlink::new_connection().map_err(NetlinkError::Open)?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// Every address of every interface of the box, IPv4 and IPv6.
    pub async fn local_addresses(&self) -> Result<BoxAddresses, NetlinkError> {
        let dump_error = |source| NetlinkError::Dump {
            what: "addresses",
            source,
        };
        let mut messages = self.handle.address().get().execute();
        let mut addrs = BoxAddresses::default();
        while let Some(message) = messages.try_next().await.map_err(dump_error)? {
            let ifindex = message.header.index;
            for attribute in message.attributes {
                // `Local` is the box's own address on point-to-point links, where `Address`
                // is the peer's; elsewhere both are the same.
                if let AddressAttribute::Address(addr) | AddressAttribute::Local(addr) = attribute {
                    addrs.all.insert(addr);
                    if !addrs.by_interface.contains(&(ifindex, addr)) {
                        addrs.by_interface.push((ifindex, addr));
                    }
                }
            }
        }
        Ok(addrs)
    }

    /// The addresses of interface `ifindex` a URI can name for its clients, in the kernel's
    /// order (an interface's primary IPv4 address first): global scope only (a ULA is, a
    /// link-local address is not: a phone cannot follow a URI with one), none tentative,
    /// deprecated or failed.
    pub async fn portal_addresses(&self, ifindex: u32) -> Result<Vec<IpAddr>, NetlinkError> {
        use rtnetlink::packet_route::address::{AddressHeaderFlags, AddressScope};
        let dump_error = |source| NetlinkError::Dump {
            what: "addresses",
            source,
        };
        let unusable = AddressHeaderFlags::Tentative
            | AddressHeaderFlags::Deprecated
            | AddressHeaderFlags::Dadfailed;
        let mut messages = self
            .handle
            .address()
            .get()
            .set_link_index_filter(ifindex)
            .execute();
        let mut addrs = Vec::new();
        while let Some(message) = messages.try_next().await.map_err(dump_error)? {
            let header = &message.header;
            if header.index != ifindex
                || header.scope != AddressScope::Universe
                || header.flags.intersects(unusable)
            {
                continue;
            }
            // As in `local_addresses`: `Local` is the box's own end of a point-to-point link,
            // where `Address` is the peer's.
            let local = message
                .attributes
                .iter()
                .find_map(|attribute| match attribute {
                    AddressAttribute::Local(addr) => Some(*addr),
                    _ => None,
                });
            let address = message
                .attributes
                .iter()
                .find_map(|attribute| match attribute {
                    AddressAttribute::Address(addr) => Some(*addr),
                    _ => None,
                });
            if let Some(addr) = local.or(address) {
                addrs.push(addr);
            }
        }
        Ok(addrs)
    }

    /// Whether the interface `name` is a Linux bridge.
    pub async fn is_bridge(&self, name: &str) -> Result<bool, NetlinkError> {
        let dump_error = |source| NetlinkError::Dump {
            what: "links",
            source,
        };
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        let mut bridge = false;
        while let Some(link) = links.try_next().await.map_err(dump_error)? {
            bridge |= link.attributes.iter().any(|attribute| {
                matches!(attribute, LinkAttribute::LinkInfo(infos)
                    if infos.contains(&LinkInfo::Kind(InfoKind::Bridge)))
            });
        }
        Ok(bridge)
    }
}

/// Link and address changes anywhere in the box (an interface added, deleted, up or down; an
/// IPv4 or IPv6 address added or removed): one item per netlink notification, saying only
/// that something changed, so the caller looks again. Drops with the returned receiver; the
/// socket's driver task ends with it.
pub fn link_changes() -> Result<LinkChanges, NetlinkError> {
    use rtnetlink::constants::{RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR, RTMGRP_LINK};
    let (mut connection, _handle, messages) =
        rtnetlink::new_connection().map_err(NetlinkError::Open)?;
    let groups =
        rtnetlink::sys::SocketAddr::new(0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR);
    connection
        .socket_mut()
        .socket_mut()
        .bind(&groups)
        .map_err(NetlinkError::Open)?;
    tokio::spawn(connection);
    Ok(messages)
}

/// See [`link_changes`].
pub type LinkChanges = futures::channel::mpsc::UnboundedReceiver<(
    rtnetlink::packet_core::NetlinkMessage<rtnetlink::packet_route::RouteNetlinkMessage>,
    rtnetlink::sys::SocketAddr,
)>;

#[cfg(test)]
mod address_tests {
    use super::*;

    #[test]
    fn the_lan_service_addresses_are_its_first_ipv4_and_first_routable_ipv6() {
        let parse = |text: &str| text.parse::<IpAddr>().expect("an address");
        let addrs = BoxAddresses {
            all: BTreeSet::new(),
            by_interface: vec![
                (2, parse("198.51.100.254")),
                (3, parse("fe80::1")),
                (3, parse("192.0.2.1")),
                (3, parse("2001:db8:1::1")),
                (3, parse("192.0.2.2")),
            ],
        };
        assert_eq!(
            addrs.service_addresses(3),
            (
                Some("192.0.2.1".parse().expect("v4")),
                Some("2001:db8:1::1".parse().expect("v6"))
            )
        );
        assert_eq!(
            addrs.service_addresses(2),
            (Some("198.51.100.254".parse().expect("v4")), None)
        );
        assert_eq!(addrs.service_addresses(9), (None, None));
    }
}
