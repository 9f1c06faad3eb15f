//! The kernel reads of a poll — every client's counters (`USAGE`), then the LAN's neighbour
//! table — on a thread of their own, `hotspotd-reader`, so the control task goes on answering
//! the API while they run and only the accounting itself holds it. The counters come back
//! first, so accounting does not wait for the neighbour table (the clients' addresses, shown
//! by the API, billed to nobody). The thread also puts both in MAC order, the order the control
//! task merges them in. Buffers go back and forth, so nothing is allocated per poll once they
//! have grown. Side effects: the thread, which ends when the [`Reader`] is dropped.

use std::{net::IpAddr, sync::mpsc as std_mpsc};

use hotspotd_common::{MacKey, Usage};
use tokio::{sync::mpsc, time::Instant};

use crate::{
    bpf::{BpfError, UsageReader},
    mac::MacAddr,
    netlink::{NeighbourReader, NetlinkError},
};

/// One poll's reading of the counters.
pub(super) struct Counters {
    /// In MAC order.
    pub(super) usage: Vec<(MacKey, Usage)>,
    /// When the thread started reading: a poll's duration counts from here.
    pub(super) started: Instant,
    pub(super) result: Result<(), ReadError>,
}

/// A reading of the neighbour table: every (MAC, address) pair, in order.
pub(super) struct Neighbours {
    pub(super) pairs: Vec<(MacAddr, IpAddr)>,
    pub(super) result: Result<(), ReadError>,
}

/// What the thread sends back.
pub(super) enum Read {
    Counters(Counters),
    Neighbours(Neighbours),
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Bpf(#[from] BpfError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("the thread that reads the kernel's counters is gone")]
    Gone,
}

/// The way to the reading thread.
pub(super) struct Reader {
    requests: std_mpsc::Sender<(Counters, Option<(u32, Neighbours)>)>,
    /// The buffers, while no read of each is in flight.
    counters: Option<Counters>,
    neighbours: Option<Neighbours>,
}

impl Reader {
    /// Starts the thread; what it reads comes back on the receiver.
    pub(super) fn spawn(
        usage: UsageReader,
        neighbours: NeighbourReader,
    ) -> std::io::Result<(Self, mpsc::Receiver<Read>)> {
        let (requests, queue) = std_mpsc::channel();
        // Room for one poll's two answers, so the thread never waits on the control task.
        let (filled, reads) = mpsc::channel(2);
        std::thread::Builder::new()
            .name("hotspotd-reader".to_owned())
            .spawn(move || serve(usage, neighbours, &queue, &filled))?;
        let reader = Self {
            requests,
            counters: Some(Counters {
                usage: Vec::new(),
                started: Instant::now(),
                result: Ok(()),
            }),
            neighbours: Some(Neighbours {
                pairs: Vec::new(),
                result: Ok(()),
            }),
        };
        Ok((reader, reads))
    }

    /// Starts a read of the counters (and of the neighbour table of interface
    /// `neighbours_of`, unless it is `None` or the last one is still under way) unless one is
    /// in flight. Returns false if one was.
    pub(super) fn start(&mut self, neighbours_of: Option<u32>) -> Result<bool, ReadError> {
        let Some(counters) = self.counters.take() else {
            return Ok(false);
        };
        let neighbours = match neighbours_of {
            Some(ifindex) => self.neighbours.take().map(|buffer| (ifindex, buffer)),
            None => None,
        };
        match self.requests.send((counters, neighbours)) {
            Ok(()) => Ok(true),
            Err(std_mpsc::SendError((counters, neighbours))) => {
                self.counters = Some(counters);
                if let Some((_, neighbours)) = neighbours {
                    self.neighbours = Some(neighbours);
                }
                Err(ReadError::Gone)
            }
        }
    }

    /// Whether a read of the counters is under way.
    pub(super) const fn in_flight(&self) -> bool {
        self.counters.is_none()
    }

    /// Takes back buffers that have been used.
    pub(super) fn recycle(&mut self, read: Read) {
        match read {
            Read::Counters(counters) => self.counters = Some(counters),
            Read::Neighbours(neighbours) => self.neighbours = Some(neighbours),
        }
    }
}

fn serve(
    mut usage: UsageReader,
    mut neighbour_reader: NeighbourReader,
    queue: &std_mpsc::Receiver<(Counters, Option<(u32, Neighbours)>)>,
    filled: &mpsc::Sender<Read>,
) {
    // Ends when the control task drops its `Reader` (or its receiver).
    while let Ok((mut counters, neighbours)) = queue.recv() {
        counters.started = Instant::now();
        counters.result = usage.read(&mut counters.usage).map_err(ReadError::from);
        counters.usage.sort_unstable_by_key(|(key, _)| key.addr);
        if filled.blocking_send(Read::Counters(counters)).is_err() {
            break;
        }
        let Some((lan_ifindex, mut neighbours)) = neighbours else {
            continue;
        };
        neighbours.result = neighbour_reader
            .read(lan_ifindex, &mut neighbours.pairs)
            .map_err(|source| ReadError::Netlink(NetlinkError::Neighbours(source)));
        neighbours.pairs.sort_unstable();
        if filled.blocking_send(Read::Neighbours(neighbours)).is_err() {
            break;
        }
    }
    tracing::debug!("counter reading thread stopped");
}
