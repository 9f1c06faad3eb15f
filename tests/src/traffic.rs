//! Traffic with known sizes between namespaces, on std sockets created inside them: a UDP
//! echo and ping-pong (one datagram in flight, so counts are exact), a steady UDP stream and a
//! full-speed UDP blast into a sink that timestamps every datagram (for cut-off times and
//! gaps), and TCP sinks and sources for bulk upload and download. Servers run on background
//! threads and stop on drop.

use std::collections::BTreeSet;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

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

/// A TCP connection to `to` from the address `source` (bound before connecting, which
/// `TcpStream::connect` cannot do): on loopback, any of 127.0.0.0/8 looks like another client
/// to the server. Call it inside the namespace to connect in.
pub fn tcp_connect_from(source: Ipv4Addr, to: std::net::SocketAddrV4) -> Result<TcpStream> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, socket};
    use std::os::fd::AsRawFd as _;
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(std::net::SocketAddrV4::new(source, 0)),
    )
    .with_context(|| format!("bind to {source}"))?;
    connect(fd.as_raw_fd(), &SockaddrIn::from(to)).with_context(|| format!("connect to {to}"))?;
    Ok(TcpStream::from(fd))
}

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
/// each waiting up to 1 s (times [`crate::slowdown`]) for its echo. Never retries, so the traffic is exactly `count`
/// datagrams each way or an error. Returns the number echoed.
pub fn udp_ping_pong(
    netns: &Netns,
    to: SocketAddr,
    payload_len: usize,
    count: usize,
) -> Result<usize> {
    let name = netns.name().to_owned();
    netns
        .run(move || ping_pong(to, payload_len, count, ECHO_TIMEOUT * crate::slowdown()))?
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

/// Asks for this receive buffer on [`UdpSink`] sockets (`SO_RCVBUFFORCE`, root only): a
/// burst that gets through the gate must land in the socket, not be dropped behind it, or
/// the test would blame the gate for the socket's losses. The kernel doubles it for its own
/// bookkeeping; a 1,000-byte datagram costs about 2.3 KB of it, so this holds over 25,000.
const SINK_RCVBUF: usize = 32 * 1024 * 1024;
/// Every datagram of [`UdpStream`] and [`udp_blast`] starts with its sequence number
/// (big-endian), so a receiver can tell lost datagrams from late ones.
const SEQ_LEN: usize = 8;
/// The sequence number of [`UdpSink::sync`]'s marker datagram, which is not recorded.
const MARKER_SEQ: u64 = u64::MAX;
/// How long [`UdpSink::sync`] waits for its marker.
const SYNC_TIMEOUT: Duration = Duration::from_secs(2);

/// One datagram as it reached a [`UdpSink`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// The sender's sequence number (0 if the datagram was too short to carry one).
    pub seq: u64,
    /// When the sink's thread got it from the socket.
    pub at: Instant,
    /// UDP payload bytes.
    pub len: usize,
}

/// A UDP receiver inside a namespace that records every datagram's arrival: sequence number,
/// time and size. Stops on drop.
#[derive(Debug)]
pub struct UdpSink {
    addr: SocketAddr,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    markers: Arc<AtomicU64>,
    /// Held for its drop, which stops the server thread.
    _server: Server,
}

impl UdpSink {
    /// Binds `addr` in `netns` (port 0 picks a free one, see [`UdpSink::addr`]) with a
    /// receive buffer big enough that bursts are not lost in the socket.
    pub fn start(netns: &Netns, addr: SocketAddr) -> Result<UdpSink> {
        let socket = netns
            .run(move || UdpSocket::bind(addr))?
            .with_context(|| format!("bind UDP sink to {addr} in {}", netns.name()))?;
        setsockopt(&socket, sockopt::RcvBufForce, &SINK_RCVBUF)
            .context("enlarge the UDP sink's receive buffer (SO_RCVBUFFORCE needs root)")?;
        socket.set_read_timeout(Some(STOP_POLL))?;
        let addr = socket.local_addr()?;
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let markers = Arc::new(AtomicU64::new(0));
        let (record, marked) = (Arc::clone(&arrivals), Arc::clone(&markers));
        let server = Server::spawn(&format!("udp-sink-{addr}"), move |stop| {
            let mut buf = vec![0; 65536];
            while !stop.load(Ordering::Relaxed) {
                match socket.recv(&mut buf) {
                    Ok(len) => {
                        let at = Instant::now();
                        let seq = buf
                            .get(..SEQ_LEN)
                            .filter(|_| len >= SEQ_LEN)
                            .and_then(|bytes| bytes.try_into().ok())
                            .map_or(0, u64::from_be_bytes);
                        if seq == MARKER_SEQ && len == SEQ_LEN {
                            marked.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        record
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(Arrival { seq, at, len });
                    }
                    Err(e) if is_timeout(&e) => {}
                    Err(_) => {}
                }
            }
        })?;
        Ok(UdpSink {
            addr,
            arrivals,
            markers,
            _server: server,
        })
    }

    /// Sends a marker datagram from `from` (a namespace whose path to the sink nothing
    /// blocks, such as the gateway's) and waits until the sink has read it. A socket delivers
    /// in order, so everything that reached the socket before the marker has been recorded
    /// when this returns: the counts are final for traffic that ended before the call.
    ///
    /// The marker leaves from [`MARKER_PORT`], the port of a service the box offers every
    /// client for free: sent from the gateway, it is neither gated nor billed.
    pub fn sync(&self, from: &Netns) -> Result<()> {
        let socket = connected_udp_from(from, MARKER_PORT, self.addr)?;
        let before = self.markers.load(Ordering::Relaxed);
        let deadline = Instant::now() + SYNC_TIMEOUT;
        // Resent every 200 ms in case the first is lost while a neighbour entry resolves.
        while Instant::now() < deadline {
            socket
                .send(&MARKER_SEQ.to_be_bytes())
                .with_context(|| format!("send a marker to {}", self.addr))?;
            let resend = Instant::now() + Duration::from_millis(200);
            while Instant::now() < resend {
                if self.markers.load(Ordering::Relaxed) > before {
                    return Ok(());
                }
                thread::sleep(Duration::from_millis(1));
            }
        }
        bail!(
            "the UDP sink at {} did not see a marker from {} within {SYNC_TIMEOUT:?}",
            self.addr,
            from.name()
        )
    }

    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every datagram received so far, in arrival order.
    #[must_use]
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Datagrams received so far.
    #[must_use]
    pub fn received(&self) -> usize {
        self.arrivals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// IP-level bytes of everything received so far (what the gate counts): payload plus
    /// UDP and IP headers.
    #[must_use]
    pub fn received_ip_bytes(&self) -> u64 {
        let ipv6 = self.addr.is_ipv6();
        self.arrivals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|arrival| ip_bytes_udp(arrival.len, ipv6))
            .sum()
    }
}

/// The longest time between two consecutive arrivals whose sequence numbers both lie in
/// `seqs`, with the sequence number that ended it; zero if there is no such pair.
#[must_use]
pub fn largest_gap(arrivals: &[Arrival], seqs: RangeInclusive<u64>) -> (Duration, u64) {
    arrivals
        .windows(2)
        .filter(|pair| seqs.contains(&pair[0].seq) && seqs.contains(&pair[1].seq))
        .map(|pair| (pair[1].at - pair[0].at, pair[1].seq))
        .max_by_key(|(gap, _)| *gap)
        .unwrap_or_default()
}

/// Datagrams missing between the first and the last received, as runs of (first missing
/// sequence number, how many). The sender numbered every one, so these were lost on the way,
/// whenever they would have arrived.
#[must_use]
pub fn lost_datagrams(arrivals: &[Arrival]) -> Vec<(u64, u64)> {
    let seqs: BTreeSet<u64> = arrivals.iter().map(|arrival| arrival.seq).collect();
    let mut runs = Vec::new();
    let mut expected = None;
    for seq in seqs {
        if let Some(expected) = expected
            && seq > expected
        {
            runs.push((expected, seq - expected));
        }
        expected = Some(seq + 1);
    }
    runs
}

/// A steady UDP stream from inside a namespace: one datagram of a fixed size every `period`,
/// each carrying its sequence number, for at most a given duration. Sending is scheduled on
/// absolute times, so a sender that was descheduled catches up at once instead of drifting.
/// Stops on drop.
#[derive(Debug)]
pub struct UdpStream {
    sent: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    /// Held for its drop, which stops the sending thread.
    _server: Server,
}

impl UdpStream {
    /// Starts sending from `netns` to `to`: `payload_len` bytes (at least 8) every `period`,
    /// until `duration` has passed or the stream is dropped. Send errors (a full queue, an
    /// ICMP error) are not retried; [`UdpStream::sent`] counts what left.
    pub fn start(
        netns: &Netns,
        to: SocketAddr,
        payload_len: usize,
        period: Duration,
        duration: Duration,
    ) -> Result<UdpStream> {
        ensure!(
            payload_len >= SEQ_LEN,
            "a stream's datagrams carry an {SEQ_LEN}-byte sequence number (asked for {payload_len} bytes)"
        );
        ensure!(!period.is_zero(), "a stream needs a period > 0");
        let socket = connected_udp(netns, to)?;
        let sent = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let (count, finished) = (Arc::clone(&sent), Arc::clone(&done));
        let server = Server::spawn(&format!("udp-stream-{to}"), move |stop| {
            let mut payload = vec![0x5a; payload_len];
            let start = Instant::now();
            let end = start + duration;
            let mut next = start;
            let mut seq: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                if now < next {
                    thread::sleep((next - now).min(STOP_POLL));
                    continue;
                }
                payload[..SEQ_LEN].copy_from_slice(&seq.to_be_bytes());
                if socket.send(&payload).is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                seq += 1;
                next += period;
            }
            finished.store(true, Ordering::Relaxed);
        })?;
        Ok(UdpStream {
            sent,
            done,
            _server: server,
        })
    }

    /// Datagrams sent so far.
    #[must_use]
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Whether its duration is over.
    #[must_use]
    pub fn finished(&self) -> bool {
        self.done.load(Ordering::Relaxed)
    }
}

/// From inside `netns`, sends datagrams of `payload_len` bytes (at least 8, each carrying its
/// sequence number) to `to` in a tight loop for `duration`: a download at the full speed the
/// path allows. Datagrams the local queue refuses are not retried. Returns how many left.
pub fn udp_blast(
    netns: &Netns,
    to: SocketAddr,
    payload_len: usize,
    duration: Duration,
) -> Result<u64> {
    ensure!(
        payload_len >= SEQ_LEN,
        "a blast's datagrams carry an {SEQ_LEN}-byte sequence number (asked for {payload_len} bytes)"
    );
    let socket = connected_udp(netns, to)?;
    let name = netns.name().to_owned();
    netns
        .run(move || {
            let mut payload = vec![0x5a; payload_len];
            let end = Instant::now() + duration;
            let mut seq: u64 = 0;
            let mut sent = 0;
            while Instant::now() < end {
                payload[..SEQ_LEN].copy_from_slice(&seq.to_be_bytes());
                if socket.send(&payload).is_ok() {
                    sent += 1;
                }
                seq += 1;
            }
            sent
        })
        .with_context(|| format!("UDP blast from {name} to {to}"))
}

/// From inside `netns`, sends `count` datagrams of `payload_len` bytes to `to`, one at a time,
/// each waiting up to `timeout` for its echo, and returns how many came back. Unlike
/// [`udp_ping_pong`], a lost echo is counted, not an error: for checking that a path is
/// closed (0 echoes) as well as open.
pub fn udp_echoes(
    netns: &Netns,
    to: SocketAddr,
    payload_len: usize,
    count: usize,
    timeout: Duration,
) -> Result<usize> {
    let socket = connected_udp(netns, to)?;
    socket.set_read_timeout(Some(timeout))?;
    let payload = vec![0xa5; payload_len];
    let mut reply = vec![0u8; payload_len + 1];
    let mut echoed = 0;
    for _ in 0..count {
        socket
            .send(&payload)
            .with_context(|| format!("send a datagram to {to}"))?;
        // Drops are silent; an ICMP error (port unreachable) is an answer of sorts but no
        // echo, so only a matching datagram counts.
        if let Ok(len) = socket.recv(&mut reply)
            && reply[..len] == payload[..]
        {
            echoed += 1;
        }
    }
    Ok(echoed)
}

/// A UDP socket created inside `netns` and connected to `to`; usable from any thread.
fn connected_udp(netns: &Netns, to: SocketAddr) -> Result<UdpSocket> {
    connected_udp_from(netns, 0, to)
}

/// The port of the box's DHCP server for IPv6, one of its free client services by default
/// (`network.local_services`), which no test runs a server on.
const MARKER_PORT: u16 = 547;

/// A UDP socket in `netns` bound to local port `port` (0: any) and connected to `to`.
fn connected_udp_from(netns: &Netns, port: u16, to: SocketAddr) -> Result<UdpSocket> {
    let local: SocketAddr = if to.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, port).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, port).into()
    };
    let socket = netns
        .run(move || -> io::Result<UdpSocket> {
            let socket = UdpSocket::bind(local)?;
            socket.connect(to)?;
            Ok(socket)
        })?
        .with_context(|| format!("UDP socket to {to} in {}", netns.name()))?;
    Ok(socket)
}

pub(crate) fn listen(netns: &Netns, addr: SocketAddr) -> Result<TcpListener> {
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
pub(crate) fn serve(
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

pub(crate) fn connect(to: SocketAddr) -> Result<TcpStream> {
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

pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// A background thread with a stop flag; stopped and joined on drop.
#[derive(Debug)]
pub(crate) struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub(crate) fn spawn(
        name: &str,
        run: impl FnOnce(&AtomicBool) + Send + 'static,
    ) -> Result<Server> {
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
