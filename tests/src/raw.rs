//! Raw Ethernet frames in and out of a namespace's interface with `AF_PACKET` sockets: a
//! [`FrameSender`] injects crafted frames as they are, byte for byte (VLAN tags, forged source
//! MACs, headers no socket API would build), and a [`FrameCapture`] records every frame an
//! interface receives, so a test can see exactly what crossed a router. The sockets are made
//! on a thread inside the namespace and stay bound to it; the capture stops on drop.

use std::io;
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, Result};
use nix::sys::socket::{
    AddressFamily, SockFlag, SockProtocol, SockType, send, setsockopt, socket, sockopt,
};
use nix::sys::time::TimeVal;

use crate::netns::Netns;
use crate::traffic::{Server, is_timeout};

/// `ETH_P_ALL`: every protocol, as the socket's and the bind's protocol.
const ETH_P_ALL: u16 = 0x0003;
/// `sll_pkttype` of a frame this host sent, which a capture of what arrives leaves out.
const PACKET_OUTGOING: u8 = 4;
/// Longest frame read: a jumbo frame and then some.
const MAX_FRAME_LEN: usize = 16 * 1024;
/// How often the capture thread looks at its stop flag.
const STOP_POLL: Duration = Duration::from_millis(50);

/// An `AF_PACKET` raw socket bound to `iface` in `netns`.
fn packet_socket(netns: &Netns, iface: &str) -> Result<OwnedFd> {
    let name = netns.name().to_owned();
    let wanted = iface.to_owned();
    netns
        .run(move || -> Result<OwnedFd> {
            let iface = wanted;
            let ifindex = nix::net::if_::if_nametoindex(iface.as_str())
                .with_context(|| format!("no interface {iface}"))?;
            let fd = socket(
                AddressFamily::Packet,
                SockType::Raw,
                SockFlag::SOCK_CLOEXEC,
                SockProtocol::EthAll,
            )
            .context("AF_PACKET socket (needs CAP_NET_RAW)")?;
            // SAFETY: an all-zero sockaddr_ll is valid; the fields set are plain integers.
            let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            address.sll_family = u16::try_from(libc::AF_PACKET).context("AF_PACKET fits u16")?;
            address.sll_protocol = ETH_P_ALL.to_be();
            address.sll_ifindex = i32::try_from(ifindex).context("ifindex fits i32")?;
            let len = u32::try_from(size_of::<libc::sockaddr_ll>()).context("small")?;
            // SAFETY: `address` is a sockaddr_ll of `len` bytes that outlives the call.
            let bound = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&raw const address).cast::<libc::sockaddr>(),
                    len,
                )
            };
            if bound != 0 {
                return Err(io::Error::last_os_error()).context("bind the AF_PACKET socket");
            }
            Ok(fd)
        })?
        .with_context(|| format!("raw socket on {iface} in {name}"))
}

/// Sends frames out of one interface exactly as given.
#[derive(Debug)]
pub struct FrameSender {
    fd: OwnedFd,
    iface: String,
}

impl FrameSender {
    /// A sender on `iface` inside `netns`.
    pub fn open(netns: &Netns, iface: &str) -> Result<FrameSender> {
        Ok(FrameSender {
            fd: packet_socket(netns, iface)?,
            iface: iface.to_owned(),
        })
    }

    /// Sends one frame (Ethernet header included, no FCS).
    pub fn send(&self, frame: &[u8]) -> Result<()> {
        let sent = send(
            self.fd.as_raw_fd(),
            frame,
            nix::sys::socket::MsgFlags::empty(),
        )
        .with_context(|| format!("send a {}-byte frame on {}", frame.len(), self.iface))?;
        anyhow::ensure!(sent == frame.len(), "sent {sent} of {} bytes", frame.len());
        Ok(())
    }
}

/// Records every frame arriving at one interface (not those it sends) until dropped.
#[derive(Debug)]
pub struct FrameCapture {
    frames: Arc<Mutex<Vec<Vec<u8>>>>,
    _server: Server,
}

impl FrameCapture {
    /// Starts capturing on `iface` inside `netns`; frames from before this call are not seen.
    pub fn start(netns: &Netns, iface: &str) -> Result<FrameCapture> {
        let fd = packet_socket(netns, iface)?;
        setsockopt(
            &fd,
            sockopt::ReceiveTimeout,
            &TimeVal::new(0, STOP_POLL.subsec_micros().into()),
        )
        .context("set the capture's receive timeout")?;
        let frames = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&frames);
        let server = Server::spawn(&format!("capture-{iface}"), move |stop| {
            let mut buf = vec![0u8; MAX_FRAME_LEN];
            while !stop.load(Ordering::Relaxed) {
                match receive(&fd, &mut buf) {
                    Ok(Some(len)) => sink
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(buf[..len].to_vec()),
                    Ok(None) => {}
                    Err(e) if is_timeout(&e) => {}
                    // A capture that cannot read shows as frames missing; keep trying.
                    Err(_) => std::thread::sleep(STOP_POLL),
                }
            }
        })?;
        Ok(FrameCapture {
            frames,
            _server: server,
        })
    }

    /// Every frame received so far, oldest first.
    #[must_use]
    pub fn frames(&self) -> Vec<Vec<u8>> {
        self.frames
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Reads one frame into `buf`: its length, or `None` for a frame this host sent.
fn receive(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    // SAFETY: an all-zero sockaddr_ll is valid.
    let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut from_len = libc::socklen_t::try_from(size_of::<libc::sockaddr_ll>())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `buf` and `from` are valid for writes of the lengths passed, for the call.
    let len = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            0,
            (&raw mut from).cast::<libc::sockaddr>(),
            &raw mut from_len,
        )
    };
    let Ok(len) = usize::try_from(len) else {
        return Err(io::Error::last_os_error());
    };
    Ok((from.sll_pkttype != PACKET_OUTGOING).then_some(len))
}
