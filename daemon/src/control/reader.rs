//! The kernel reads of a poll — every client's counters (`USAGE` and `SEEN`) and who sends
//! from each address (`ADDRESSES`), then the LAN's neighbour table — on a thread of their own,
//! `hotspotd-reader`, so the control task goes on answering the API while they run and only
//! the accounting itself holds it. The counters come back first, so accounting does not wait
//! for the neighbour table (watched for entries poisoned with group MACs). The thread also
//! puts the counters in MAC order, the order the control task merges them in. Buffers go back
//! and forth, so nothing is allocated per poll once they have grown. Side effects: the
//! thread, which ends when the [`Reader`] is dropped.

use std::{net::IpAddr, sync::mpsc as std_mpsc};

use hotspotd_common::{AddressOwner, IpKey, MacKey, Usage};
use tokio::{sync::mpsc, time::Instant};

use crate::{
    bpf::{AddressReader, BpfError, UsageReader},
    mac::MacAddr,
    netlink::{NeighbourReader, NetlinkError},
};

/// One poll's reading of the counters.
pub(super) struct Counters {
    /// `USAGE`, in MAC order.
    pub(super) usage: Vec<(MacKey, Usage)>,
    /// `SEEN`, in MAC order.
    pub(super) seen: Vec<(MacKey, Usage)>,
    /// `ADDRESSES`, read after the counters when asked for (`with_addresses`).
    pub(super) addresses: Vec<(IpKey, AddressOwner)>,
    /// Whether this reading is to include `ADDRESSES`: set by the control task, which reads
    /// them every few polls (tens of thousands of entries at 10,000 clients, for what only
    /// shows clients' addresses and their moves).
    pub(super) with_addresses: bool,
    /// When the thread started reading: a poll's duration counts from here.
    pub(super) started: Instant,
    pub(super) result: Result<(), ReadError>,
}

/// A reading of the neighbour table: every (MAC, address) pair, in order, and the entries
/// that pointed an address at a group MAC, which the thread deleted.
pub(super) struct Neighbours {
    pub(super) pairs: Vec<(MacAddr, IpAddr)>,
    pub(super) poisoned: Vec<Poisoned>,
    pub(super) result: Result<(), ReadError>,
}

/// A neighbour entry that sent an address's traffic to a group MAC: every station would get
/// a copy (the programs drop such frames). Deleted, so the box asks for the address anew.
pub(super) struct Poisoned {
    pub(super) ip: IpAddr,
    pub(super) mac: MacAddr,
    /// Why it could not be deleted, if it could not.
    pub(super) delete_error: Option<std::io::Error>,
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
        maps: MapReaders,
        neighbours: NeighbourReader,
    ) -> std::io::Result<(Self, mpsc::Receiver<Read>)> {
        let (requests, queue) = std_mpsc::channel();
        // Room for one poll's two answers, so the thread never waits on the control task.
        let (filled, reads) = mpsc::channel(2);
        std::thread::Builder::new()
            .name("hotspotd-reader".to_owned())
            .spawn(move || serve(maps, neighbours, &queue, &filled))?;
        let reader = Self {
            requests,
            counters: Some(Counters {
                usage: Vec::new(),
                seen: Vec::new(),
                addresses: Vec::new(),
                with_addresses: false,
                started: Instant::now(),
                result: Ok(()),
            }),
            neighbours: Some(Neighbours {
                pairs: Vec::new(),
                poisoned: Vec::new(),
                result: Ok(()),
            }),
        };
        Ok((reader, reads))
    }

    /// Starts a read of the counters (with `ADDRESSES` if `with_addresses`, and the neighbour
    /// table of interface `neighbours_of`, unless it is `None` or the last one is still under
    /// way) unless one is in flight. Returns false if one was.
    pub(super) fn start(
        &mut self,
        neighbours_of: Option<u32>,
        with_addresses: bool,
    ) -> Result<bool, ReadError> {
        let Some(mut counters) = self.counters.take() else {
            return Ok(false);
        };
        counters.with_addresses = with_addresses;
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

/// The kernel maps a poll reads, each on a file descriptor of its own.
pub(super) struct MapReaders {
    pub(super) usage: UsageReader,
    pub(super) seen: UsageReader,
    pub(super) addresses: AddressReader,
}

fn serve(
    mut maps: MapReaders,
    mut neighbour_reader: NeighbourReader,
    queue: &std_mpsc::Receiver<(Counters, Option<(u32, Neighbours)>)>,
    filled: &mpsc::Sender<Read>,
) {
    // Ends when the control task drops its `Reader` (or its receiver).
    while let Ok((mut counters, neighbours)) = queue.recv() {
        counters.started = Instant::now();
        // `USAGE` before `SEEN`: a client the daemon makes room for between the two reads
        // is then missing from the first and frozen in the second, never counted twice.
        counters.addresses.clear();
        counters.result = maps
            .usage
            .read(&mut counters.usage)
            .and_then(|()| maps.seen.read(&mut counters.seen))
            .and_then(|()| {
                if counters.with_addresses {
                    maps.addresses.read(&mut counters.addresses)
                } else {
                    Ok(())
                }
            })
            .map_err(ReadError::from);
        counters.usage.sort_unstable_by_key(|(key, _)| key.addr);
        counters.seen.sort_unstable_by_key(|(key, _)| key.addr);
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
        neighbours.poisoned.clear();
        for (mac, ip) in &neighbours.pairs {
            if mac.is_group() {
                neighbours.poisoned.push(Poisoned {
                    ip: *ip,
                    mac: *mac,
                    delete_error: neighbour_reader.delete(lan_ifindex, *ip).err(),
                });
            }
        }
        if filled.blocking_send(Read::Neighbours(neighbours)).is_err() {
            break;
        }
    }
    tracing::debug!("counter reading thread stopped");
}
