//! Traffic with known sizes between namespaces, on std sockets created inside them: a UDP
//! echo and ping-pong (one datagram in flight, so counts are exact), and TCP sinks and sources
//! for bulk upload and download. Servers run on background threads and stop on drop.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;

use crate::netns::Netns;

/// How often server threads look at their stop flag.
const STOP_POLL: Duration = Duration::from_millis(50);
/// How long one datagram of [`udp_ping_pong`] may take to come back.
const ECHO_TIMEOUT: Duration = Duration::from_secs(1);
/// Connect timeout and the longest silence tolerated on a TCP transfer.
const TCP_TIMEOUT: Duration = Duration::from_secs(30);
const CHUNK: usize = 64 * 1024;

/// Bytes a UDP datagram with `payload_len` bytes of payload takes at the IP layer (what
/// per-client IP byte counters see): payload + UDP header + IPv4 or IPv6 header.
#[must_use]
pub fn ip_bytes_udp(payload_len: usize, ipv6: bool) -> u64 {
    let ip_header = if ipv6 { 40 } else { 20 };
    payload_len as u64 + 8 + ip_header
}

/// A UDP echo server inside a namespace: sends every datagram back to its sender unchanged.
/// Stops on drop.
#[derive(Debug)]
pub struct UdpEcho {
    addr: SocketAddr,
    received: Arc<AtomicU64>,
    /// Held for its drop, which stops the server thread.
    _server: Server,
}

impl UdpEcho {
    /// Binds `addr` in `netns` (port 0 picks a free one, see [`UdpEcho::addr`]).
    pub fn start(netns: &Netns, addr: SocketAddr) -> Result<UdpEcho> {
        let socket = netns
            .run(move || UdpSocket::bind(addr))?
            .with_context(|| format!("bind UDP echo to {addr} in {}", netns.name()))?;
        socket.set_read_timeout(Some(STOP_POLL))?;
        let addr = socket.local_addr()?;
        let received = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&received);
        let server = Server::spawn(&format!("udp-echo-{addr}"), move |stop| {
            let mut buf = vec![0; 65536];
            while !stop.load(Ordering::Relaxed) {
                match socket.recv_from(&mut buf) {
                    Ok((len, peer)) => {
                        // Counted before the echo leaves, so a sender that got its echo
                        // always sees its datagram counted.
                        counter.fetch_add(1, Ordering::Relaxed);
                        // A failed send is the sender's loss to report (it times out).
                        let _ = socket.send_to(&buf[..len], peer);
                    }
                    Err(e) if is_timeout(&e) => {}
                    // ICMP errors for earlier replies surface here; keep serving.
                    Err(_) => {}
                }
            }
        })?;
        Ok(UdpEcho {
            addr,
            received,
            _server: server,
        })
    }

    /// The bound address, with the real port when started on port 0.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Datagrams received (and sent back) so far.
    #[must_use]
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

/// From inside `netns`, sends `count` datagrams of `payload_len` bytes to `to`, one at a time,
/// each waiting up to 1 s for its echo. Never retries, so the traffic is exactly `count`
/// datagrams each way or an error. Returns the number echoed.
pub fn udp_ping_pong(
    netns: &Netns,
    to: SocketAddr,
    payload_len: usize,
    count: usize,
) -> Result<usize> {
    let name = netns.name().to_owned();
    netns
        .run(move || ping_pong(to, payload_len, count, ECHO_TIMEOUT))?
        .with_context(|| format!("UDP ping-pong from {name} to {to}"))
}

/// One round trip with a short timeout, for readiness checks that retry.
pub(crate) fn udp_probe(netns: &Netns, to: SocketAddr, timeout: Duration) -> Result<()> {
    netns.run(move || ping_pong(to, 16, 1, timeout))??;
    Ok(())
}

fn ping_pong(to: SocketAddr, payload_len: usize, count: usize, timeout: Duration) -> Result<usize> {
    let local: SocketAddr = if to.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).context("bind UDP socket")?;
    // Connected, so ICMP port unreachable shows up as an error instead of a timeout.
    socket.connect(to).context("connect UDP socket")?;
    socket.set_read_timeout(Some(timeout))?;
    let mut payload = vec![0u8; payload_len];
    let mut reply = vec![0u8; payload_len + 1];
    for seq in 0..count {
        // Each datagram's bytes follow from its sequence number, so a stray echo of an earlier
        // one is caught instead of being taken for this one's.
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte = (seq.wrapping_mul(31).wrapping_add(i) % 251).to_le_bytes()[0];
        }
        let sent = socket
            .send(&payload)
            .with_context(|| format!("send datagram {} of {count}", seq + 1))?;
        ensure!(sent == payload_len, "sent {sent} of {payload_len} bytes");
        let len = match socket.recv(&mut reply) {
            Ok(len) => len,
            Err(e) if is_timeout(&e) => {
                bail!(
                    "no echo for datagram {} of {count} within {timeout:?}",
                    seq + 1
                )
            }
            Err(e) => {
                return Err(e).with_context(|| format!("receive echo {} of {count}", seq + 1));
            }
        };
        ensure!(
            reply[..len] == payload[..],
            "echo {} of {count} differs from what was sent ({len} bytes back, {payload_len} sent)",
            seq + 1
        );
    }
    Ok(count)
}

/// A TCP server inside a namespace that reads and discards everything, then closes.
#[derive(Debug)]
pub struct TcpSink {
    addr: SocketAddr,
    received: Arc<AtomicU64>,
    /// Held for its drop, which stops the server thread.
    _server: Server,
}

impl TcpSink {
    /// Listens on `addr` in `netns` (port 0 picks a free one, see [`TcpSink::addr`]).
    pub fn start(netns: &Netns, addr: SocketAddr) -> Result<TcpSink> {
        let listener = listen(netns, addr)?;
        let addr = listener.local_addr()?;
        let received = Arc::new(AtomicU64::new(0));
        let total = Arc::clone(&received);
        let server = Server::spawn(&format!("tcp-sink-{addr}"), move |stop| {
            serve(&listener, stop, move |mut stream| {
                let mut buf = vec![0; CHUNK];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            total.fetch_add(n as u64, Ordering::Relaxed);
                        }
                    }
                }
                // Dropping the stream closes it: that is what tcp_send waits for.
            });
        })?;
        Ok(TcpSink {
            addr,
            received,
            _server: server,
        })
    }

    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Bytes received so far, over all connections.
    #[must_use]
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

/// From inside `netns`, connects to `to`, writes exactly `bytes` bytes, shuts down its sending
/// side and waits until the sink has closed the connection (so everything was delivered).
/// Returns the bytes written.
pub fn tcp_send(netns: &Netns, to: SocketAddr, bytes: u64) -> Result<u64> {
    let name = netns.name().to_owned();
    netns
        .run(move || -> Result<u64> {
            let mut stream = connect(to)?;
            let written = write_exactly(&mut stream, bytes)?;
            stream
                .shutdown(Shutdown::Write)
                .context("shut down sending side")?;
            let extra = read_to_end(&mut stream).context("wait for the sink to close")?;
            ensure!(extra == 0, "the sink sent {extra} bytes back");
            Ok(written)
        })?
        .with_context(|| format!("TCP send of {bytes} bytes from {name} to {to}"))
}

/// A TCP server inside a namespace that sends `bytes` bytes to every connection, shuts down
/// its sending side and closes once the peer has closed.
#[derive(Debug)]
pub struct TcpSource {
    addr: SocketAddr,
    sent: Arc<AtomicU64>,
    /// Held for its drop, which stops the server thread.
    _server: Server,
}

impl TcpSource {
    /// Listens on `addr` in `netns` (port 0 picks a free one, see [`TcpSource::addr`]).
    pub fn start(netns: &Netns, addr: SocketAddr, bytes: u64) -> Result<TcpSource> {
        let listener = listen(netns, addr)?;
        let addr = listener.local_addr()?;
        let sent = Arc::new(AtomicU64::new(0));
        let total = Arc::clone(&sent);
        let server = Server::spawn(&format!("tcp-source-{addr}"), move |stop| {
            serve(&listener, stop, move |mut stream| {
                if let Ok(written) = write_exactly(&mut stream, bytes) {
                    total.fetch_add(written, Ordering::Relaxed);
                    if stream.shutdown(Shutdown::Write).is_ok() {
                        // Until the receiver closes, so it has everything before we go.
                        let _ = read_to_end(&mut stream);
                    }
                }
            });
        })?;
        Ok(TcpSource {
            addr,
            sent,
            _server: server,
        })
    }

    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Bytes fully written so far, over all connections.
    #[must_use]
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

/// From inside `netns`, connects to a [`TcpSource`] at `from`, reads until it closes its
/// sending side, then closes. Returns the bytes received.
pub fn tcp_receive(netns: &Netns, from: SocketAddr) -> Result<u64> {
    let name = netns.name().to_owned();
    netns
        .run(move || -> Result<u64> {
            let mut stream = connect(from)?;
            stream
                .shutdown(Shutdown::Write)
                .context("shut down sending side")?;
            read_to_end(&mut stream).context("receive")
        })?
        .with_context(|| format!("TCP receive in {name} from {from}"))
}

fn listen(netns: &Netns, addr: SocketAddr) -> Result<TcpListener> {
    let listener = netns
        .run(move || TcpListener::bind(addr))?
        .with_context(|| format!("listen on TCP {addr} in {}", netns.name()))?;
    // accept(2) honours SO_RCVTIMEO, so the accept loop wakes up to see its stop flag
    // without a non-blocking busy loop.
    let timeout = TimeVal::new(0, STOP_POLL.subsec_micros().into());
    setsockopt(&listener, sockopt::ReceiveTimeout, &timeout).context("set accept timeout")?;
    Ok(listener)
}

/// Accepts connections until stopped; each is handled on its own thread so one slow peer
/// does not hold up the others.
fn serve(
    listener: &TcpListener,
    stop: &AtomicBool,
    handle: impl Fn(TcpStream) + Clone + Send + 'static,
) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if stream.set_read_timeout(Some(TCP_TIMEOUT)).is_err()
                    || stream.set_write_timeout(Some(TCP_TIMEOUT)).is_err()
                {
                    continue;
                }
                let handle = handle.clone();
                // If no thread can be spawned the peer sees the connection close early.
                let _ = thread::Builder::new()
                    .name("tcp-conn".to_owned())
                    .spawn(move || handle(stream));
            }
            Err(e) if is_timeout(&e) => {}
            Err(_) => thread::sleep(STOP_POLL),
        }
    }
}

fn connect(to: SocketAddr) -> Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&to, TCP_TIMEOUT).context("connect")?;
    stream.set_read_timeout(Some(TCP_TIMEOUT))?;
    stream.set_write_timeout(Some(TCP_TIMEOUT))?;
    Ok(stream)
}

fn write_exactly(stream: &mut TcpStream, bytes: u64) -> io::Result<u64> {
    let chunk = vec![0x5a; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let len = usize::try_from(left).map_or(CHUNK, |left| left.min(CHUNK));
        stream.write_all(&chunk[..len])?;
        left -= len as u64;
    }
    stream.flush()?;
    Ok(bytes)
}

fn read_to_end(stream: &mut TcpStream) -> io::Result<u64> {
    let mut buf = vec![0; CHUNK];
    let mut total = 0;
    loop {
        match stream.read(&mut buf)? {
            0 => return Ok(total),
            n => total += n as u64,
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// A background thread with a stop flag; stopped and joined on drop.
#[derive(Debug)]
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn spawn(name: &str, run: impl FnOnce(&AtomicBool) + Send + 'static) -> Result<Server> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || run(&flag))
            .with_context(|| format!("spawn {name}"))?;
        Ok(Server {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // A panicked server thread has nothing left to clean up.
            let _ = thread.join();
        }
    }
}
