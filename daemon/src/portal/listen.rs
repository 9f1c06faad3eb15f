//! The portal's listeners: TCP on `portal.listen_port` (and on `portal.tls_port` for HTTPS),
//! IPv4 and IPv6, bound to the LAN interface (`SO_BINDTODEVICE`), so the portal answers the
//! clients and nothing on the WAN. Side effects: two listening sockets per port.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::{TcpListener, TcpSocket};

/// Connections waiting to be accepted: a room full of phones opening the portal at once.
const BACKLOG: u32 = 1_024;

/// Which of the portal's ports: the key that sets it, and so what to do when it is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// `portal.listen_port`, plain HTTP.
    Plain(u16),
    /// `portal.tls_port`, HTTPS.
    Tls(u16),
}

impl Port {
    fn number(self) -> u16 {
        match self {
            Self::Plain(port) | Self::Tls(port) => port,
        }
    }
}

impl std::fmt::Display for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Plain(port) => write!(
                f,
                "port {port} (portal.listen_port): set portal.listen_port to a free port, or portal.mode = \"off\""
            ),
            Self::Tls(port) => write!(
                f,
                "port {port} (portal.tls_port, HTTPS): set portal.tls_port to a free port (one below 1024 needs CAP_NET_BIND_SERVICE, which the shipped unit grants), or leave portal.tls_cert and portal.tls_key empty"
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen for the portal on {iface}, {port}")]
pub struct PortalListenError {
    iface: String,
    port: Port,
    source: std::io::Error,
}

/// Listens on `port` of interface `iface`, IPv4 and IPv6.
pub fn bind(iface: &str, port: Port) -> Result<Vec<TcpListener>, PortalListenError> {
    let error = |source| PortalListenError {
        iface: iface.to_owned(),
        port,
        source,
    };
    let number = port.number();
    let mut listeners = Vec::with_capacity(2);
    for (socket, addr) in [
        (
            TcpSocket::new_v4(),
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, number)),
        ),
        (
            TcpSocket::new_v6(),
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, number)),
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
