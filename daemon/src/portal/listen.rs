//! The portal's listeners: TCP on `portal.listen_port`, IPv4 and IPv6, bound to the LAN
//! interface (`SO_BINDTODEVICE`), so the portal answers the clients and nothing on the WAN.
//! Side effects: two listening sockets.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::{TcpListener, TcpSocket};

/// Connections waiting to be accepted: a room full of phones opening the portal at once.
const BACKLOG: u32 = 1_024;

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen on port {port} of {iface} for the portal: set portal.listen_port to a free port, or portal.mode = \"off\""
)]
pub struct PortalListenError {
    iface: String,
    port: u16,
    source: std::io::Error,
}

/// Listens on `port` of interface `iface`, IPv4 and IPv6.
pub fn bind(iface: &str, port: u16) -> Result<Vec<TcpListener>, PortalListenError> {
    let error = |source| PortalListenError {
        iface: iface.to_owned(),
        port,
        source,
    };
    let mut listeners = Vec::with_capacity(2);
    for (socket, addr) in [
        (
            TcpSocket::new_v4(),
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
        ),
        (
            TcpSocket::new_v6(),
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)),
        ),
    ] {
        let socket = socket.map_err(error)?;
        socket.set_reuseaddr(true).map_err(error)?;
        socket.bind_device(Some(iface.as_bytes())).map_err(error)?;
        if addr.is_ipv6() {
            // The IPv4 socket takes IPv4; without this the IPv6 one would claim it too.
            nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::Ipv6V6Only, &true)
                .map_err(|errno| error(errno.into()))?;
        }
        socket.bind(addr).map_err(error)?;
        listeners.push(socket.listen(BACKLOG).map_err(error)?);
    }
    Ok(listeners)
}
