//! The redirect listener: where the upload program hands an unpaid client's plain-HTTP
//! connections to any internet address (see `ebpf/src/portal.rs`). Every request on them is
//! answered with a redirect to the portal (`portal.url`, else the built-in portal at the box's
//! address facing the client), which is what makes a phone's captive-portal check (Android's
//! `generate_204`, Apple's `hotspot-detect.html`, Windows' `connecttest.txt`) open the portal.
//!
//! The sockets are transparent (`IP_TRANSPARENT`): a connection handed to them keeps the
//! internet address the client asked for as its local address, and answers from it. They carry
//! the portal's mark, so the download program lets the answers through to a client without a
//! session. Bound to a loopback address and a port the kernel picks: no packet from the LAN
//! is addressed to loopback, so nothing from the clients reaches them but what the upload
//! program assigns (a process on the box itself could ask one for a redirect). Not bound to
//! the LAN device, which may be deleted and made again under them. Side effects: two listening
//! sockets.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    os::fd::AsRawFd as _,
    sync::Arc,
};

use axum::{
    Router,
    extract::{ConnectInfo, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use hotspotd_common::PORTAL_MARK;
use nix::sys::socket::{setsockopt, sockopt};
use tokio::{
    net::{TcpListener, TcpSocket},
    sync::watch,
};
use tokio_util::sync::CancellationToken;

use super::Ends;
use crate::config::Config;

/// Connections waiting to be accepted: every phone in a room checking for a portal at once.
const BACKLOG: u32 = 1_024;
/// Any port does: connecting a UDP socket only asks the routing, it sends nothing.
const DISCARD_PORT: u16 = 9;

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot open the portal's redirect listener on {iface} (transparent sockets need CAP_NET_ADMIN), or set portal.mode = \"off\""
)]
pub struct RedirectListenError {
    iface: String,
    #[source]
    source: std::io::Error,
}

impl RedirectListenError {
    pub(crate) fn new(iface: &str, source: std::io::Error) -> Self {
        Self {
            iface: iface.to_owned(),
            source,
        }
    }
}

/// The IPv4 and IPv6 redirect listeners on `iface`.
pub fn bind(iface: &str) -> Result<[TcpListener; 2], RedirectListenError> {
    let error = |source| RedirectListenError::new(iface, source);
    let v4 = listener(IpAddr::V4(Ipv4Addr::LOCALHOST)).map_err(error)?;
    let v6 = listener(IpAddr::V6(Ipv6Addr::LOCALHOST)).map_err(error)?;
    Ok([v4, v6])
}

fn listener(loopback: IpAddr) -> std::io::Result<TcpListener> {
    let socket = match loopback {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    setsockopt(&socket, sockopt::Mark, &PORTAL_MARK)?;
    match loopback {
        IpAddr::V4(_) => setsockopt(&socket, sockopt::IpTransparent, &true)?,
        IpAddr::V6(_) => {
            setsockopt(&socket, sockopt::Ipv6V6Only, &true)?;
            set_ipv6_transparent(&socket)?;
        }
    }
    socket.bind(SocketAddr::new(loopback, 0))?;
    socket.listen(BACKLOG)
}

/// `IPV6_TRANSPARENT`, which nix does not name.
fn set_ipv6_transparent(socket: &TcpSocket) -> std::io::Result<()> {
    let on: libc::c_int = 1;
    #[expect(clippy::cast_possible_truncation, reason = "4 bytes")]
    let len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: setsockopt(2) on an open socket with a valid c_int for the call's duration.
    let set = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_IPV6,
            libc::IPV6_TRANSPARENT,
            (&raw const on).cast(),
            len,
        )
    };
    if set == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// What the redirect needs: the live configuration (`portal.url` changes on SIGHUP) and the
/// LAN interface, to find the box's address facing a client.
#[derive(Clone)]
struct Target {
    config: watch::Receiver<Arc<Config>>,
    lan: Arc<str>,
    /// `portal.listen_port` as the daemon started: a reload does not move the listener.
    portal_port: u16,
}

/// Answers every request on `listeners` with a redirect to the portal, until `shutdown`.
pub async fn serve(
    listeners: [TcpListener; 2],
    config: watch::Receiver<Arc<Config>>,
    shutdown: CancellationToken,
) {
    let (lan, portal_port) = {
        let started = config.borrow();
        let lan: Arc<str> = started.network.lan_interface.as_str().into();
        (lan, started.portal.listen_port)
    };
    let router = Router::new().fallback(redirect).with_state(Target {
        config,
        lan,
        portal_port,
    });
    super::serve_plain(listeners.into(), router, shutdown).await;
}

/// `302 Found` to the portal, for any method and path: the browser (or the phone's check)
/// opens the portal instead of the page it asked for.
async fn redirect(State(target): State<Target>, ConnectInfo(ends): ConnectInfo<Ends>) -> Response {
    let configured = target.config.borrow().portal.url.clone();
    let location = if configured.is_empty() {
        match box_address_towards(ends.peer.ip(), &target.lan) {
            Ok(address) => format!("http://{}/", SocketAddr::new(address, target.portal_port)),
            Err(error) => {
                tracing::warn!(client = %ends.peer.ip(), error = %error, "cannot tell the box's address facing the client; its web request was not redirected");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no route back to this client\n",
                )
                    .into_response();
            }
        }
    } else {
        configured
    };
    let Ok(location_header) = HeaderValue::from_str(&location) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "bad portal address\n").into_response();
    };
    let body = format!(
        "<!DOCTYPE html>\n<title>Sign in</title>\n<p><a href=\"{}\">Sign in to this network</a></p>\n",
        html_attribute(&location)
    );
    let mut response = (StatusCode::FOUND, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, location_header);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // A redirect cached by a browser would send the page there after the client paid.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The box's own address on the route to `client` through `lan`: the address the built-in
/// portal answers the client on. Asks the kernel's routing (a UDP socket's connect sends
/// nothing), so it follows address changes without a watch of its own.
fn box_address_towards(client: IpAddr, lan: &str) -> std::io::Result<IpAddr> {
    let any = match client {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let socket = UdpSocket::bind(SocketAddr::new(any, 0))?;
    setsockopt(
        &socket,
        sockopt::BindToDevice,
        &std::ffi::OsString::from(lan),
    )?;
    socket.connect(SocketAddr::new(client, DISCARD_PORT))?;
    Ok(socket.local_addr()?.ip())
}

/// `text` safe inside a double-quoted HTML attribute.
fn html_attribute(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_cannot_break_out_of_the_link() {
        assert_eq!(
            html_attribute("http://a/?x=\"><script>&"),
            "http://a/?x=&quot;&gt;&lt;script&gt;&amp;"
        );
    }
}
