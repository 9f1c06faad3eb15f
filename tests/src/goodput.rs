//! Timed bulk TCP flows for speed-limit tests: a receiver that timestamps every read, and a
//! sender that writes as fast as the path takes it for a set time. Rates come from the
//! receiver's record, so they are goodput: what the application got, after every queue.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::netns::Netns;
use crate::traffic::{Server, connect, listen, serve};

/// Writes of [`tcp_push`]: small enough that the last one ends soon after the deadline even
/// at 1 Mbit/s (16 KiB = 0.13 s), big enough to keep a fast path busy.
const PUSH_CHUNK: usize = 16 * 1024;
/// Reads of [`TcpMeter`].
const READ_CHUNK: usize = 64 * 1024;

/// One read of a [`TcpMeter`]: when it returned and how many bytes it got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Read {
    pub at: Instant,
    pub bytes: u64,
}

/// A TCP server inside a namespace that reads everything any peer sends and records each
/// read. Stops on drop.
#[derive(Debug)]
pub struct TcpMeter {
    addr: SocketAddr,
    reads: Arc<Mutex<Vec<Read>>>,
    /// Held for its drop, which stops the server thread.
    _server: Server,
}

impl TcpMeter {
    /// Listens on `addr` in `netns` (port 0 picks a free one, see [`TcpMeter::addr`]).
    pub fn start(netns: &Netns, addr: SocketAddr) -> Result<TcpMeter> {
        let listener = listen(netns, addr)?;
        let addr = listener.local_addr()?;
        let reads = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&reads);
        let server = Server::spawn(&format!("tcp-meter-{addr}"), move |stop| {
            serve(&listener, stop, move |mut stream| {
                let mut buf = vec![0; READ_CHUNK];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    let read = Read {
                        at: Instant::now(),
                        bytes: n as u64,
                    };
                    record
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(read);
                }
            });
        })?;
        Ok(TcpMeter {
            addr,
            reads,
            _server: server,
        })
    }

    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every read so far, in order.
    #[must_use]
    pub fn reads(&self) -> Vec<Read> {
        self.reads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// From inside `netns`, connects to `to` and writes as fast as the connection takes it for
/// `duration`, then closes. Returns when the connection started and the bytes written.
pub fn tcp_push(netns: &Netns, to: SocketAddr, duration: Duration) -> Result<(Instant, u64)> {
    let name = netns.name().to_owned();
    netns
        .run(move || -> Result<(Instant, u64)> {
            let mut stream = connect(to)?;
            let started = Instant::now();
            let chunk = vec![0x5a; PUSH_CHUNK];
            let mut written = 0;
            while started.elapsed() < duration {
                stream.write_all(&chunk).context("write")?;
                written += PUSH_CHUNK as u64;
            }
            // What is still queued is abandoned: the test measures the time it ran.
            let _ = stream.shutdown(Shutdown::Both);
            Ok((started, written))
        })?
        .with_context(|| format!("TCP push from {name} to {to}"))
}

/// Goodput in Mbit/s (10^6 bit/s) of the reads within `[from, to)`.
#[must_use]
pub fn mbits_between(reads: &[Read], from: Instant, to: Instant) -> f64 {
    let bytes: u64 = reads
        .iter()
        .filter(|read| read.at >= from && read.at < to)
        .map(|read| read.bytes)
        .sum();
    #[expect(clippy::cast_precision_loss, reason = "a test's byte counts fit f64")]
    let bits = bytes as f64 * 8.0;
    bits / (to - from).as_secs_f64() / 1e6
}

/// Goodput of each whole second from `from` to `to`, in Mbit/s.
#[must_use]
pub fn mbits_per_second(reads: &[Read], from: Instant, to: Instant) -> Vec<f64> {
    let mut rates = Vec::new();
    let mut start = from;
    while start + Duration::from_secs(1) <= to {
        let end = start + Duration::from_secs(1);
        rates.push(mbits_between(reads, start, end));
        start = end;
    }
    rates
}

/// The longest time without a read within `[from, to]`, counting from `from` to the first
/// read and from the last read to `to`, and when it began.
#[must_use]
pub fn largest_read_gap(reads: &[Read], from: Instant, to: Instant) -> (Duration, Instant) {
    let mut previous = from;
    let mut largest = (Duration::ZERO, from);
    for read in reads.iter().filter(|read| read.at >= from && read.at <= to) {
        if read.at - previous > largest.0 {
            largest = (read.at - previous, previous);
        }
        previous = read.at;
    }
    if to - previous > largest.0 {
        largest = (to - previous, previous);
    }
    largest
}
