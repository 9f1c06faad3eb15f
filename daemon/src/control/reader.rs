//! The kernel reads of a poll — every client's counters (`USAGE`) and the LAN's neighbour
//! table — on a thread of their own, `hotspotd-reader`, so the control task goes on answering
//! the API while they run (~6 ms at 10,000 clients) and only the accounting itself holds it.
//! The control task hands the thread the buffers of a [`Reading`] and gets them back filled,
//! so nothing is allocated per poll once they have grown. Side effects: the thread, which ends
//! when the [`Reader`] is dropped.

use std::{net::IpAddr, sync::mpsc as std_mpsc};

use hotspotd_common::{MacKey, Usage};
use tokio::{sync::mpsc, time::Instant};

use crate::{
    bpf::{BpfError, UsageReader},
    mac::MacAddr,
    netlink::{NeighbourReader, NetlinkError},
};

/// One poll's reads.
pub(super) struct Reading {
    pub(super) usage: Vec<(MacKey, Usage)>,
    pub(super) neighbours: Vec<(MacAddr, IpAddr)>,
    /// When the thread started reading: a poll's duration counts from here.
    pub(super) started: Instant,
    pub(super) result: Result<(), ReadError>,
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
    requests: std_mpsc::Sender<Reading>,
    /// The buffers, while no read is in flight.
    idle: Option<Reading>,
}

impl Reader {
    /// Starts the thread; the filled readings come back on the receiver.
    pub(super) fn spawn(
        usage: UsageReader,
        neighbours: NeighbourReader,
        lan_ifindex: u32,
    ) -> std::io::Result<(Self, mpsc::Receiver<Reading>)> {
        let (requests, queue) = std_mpsc::channel();
        let (filled, readings) = mpsc::channel(1);
        std::thread::Builder::new()
            .name("hotspotd-reader".to_owned())
            .spawn(move || serve(usage, neighbours, lan_ifindex, &queue, &filled))?;
        let idle = Reading {
            usage: Vec::new(),
            neighbours: Vec::new(),
            started: Instant::now(),
            result: Ok(()),
        };
        let reader = Self {
            requests,
            idle: Some(idle),
        };
        Ok((reader, readings))
    }

    /// Starts a read unless one is in flight. Returns false if one was.
    pub(super) fn start(&mut self) -> Result<bool, ReadError> {
        let Some(reading) = self.idle.take() else {
            return Ok(false);
        };
        match self.requests.send(reading) {
            Ok(()) => Ok(true),
            Err(std_mpsc::SendError(reading)) => {
                self.idle = Some(reading);
                Err(ReadError::Gone)
            }
        }
    }

    pub(super) const fn in_flight(&self) -> bool {
        self.idle.is_none()
    }

    /// Takes back the buffers of a reading that has been accounted.
    pub(super) fn recycle(&mut self, reading: Reading) {
        self.idle = Some(reading);
    }
}

fn serve(
    mut usage: UsageReader,
    mut neighbours: NeighbourReader,
    lan_ifindex: u32,
    queue: &std_mpsc::Receiver<Reading>,
    filled: &mpsc::Sender<Reading>,
) {
    // Ends when the control task drops its `Reader` (or its receiver of readings).
    while let Ok(mut reading) = queue.recv() {
        reading.started = Instant::now();
        reading.result = usage
            .read(&mut reading.usage)
            .map_err(ReadError::from)
            .and_then(|()| {
                neighbours
                    .read(lan_ifindex, &mut reading.neighbours)
                    .map_err(|source| ReadError::Netlink(NetlinkError::Neighbours(source)))
            });
        if filled.blocking_send(reading).is_err() {
            break;
        }
    }
    tracing::debug!("counter reading thread stopped");
}
