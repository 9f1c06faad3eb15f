//! Reads a map of per-client counters (`USAGE`, the clients the daemon keeps room for, or
//! `SEEN`, every other MAC), every client's counters summed over CPUs: in batches where the
//! kernel can (Linux >= 5.6), else entry by entry. A [`UsageReader`] holds a file descriptor
//! of its own on the map, so it can read on another thread than the one that loaded the
//! programs. Read-only.

use std::os::fd::AsFd as _;

use aya::maps::{Map, MapData, PerCpuHashMap};
use hotspotd_common::{MacKey, Usage};

use super::{BatchError, BatchReader, BpfError};

/// Entries read per syscall: 1,024 clients are 80 KiB of counters per possible CPU,
/// and 10,000 clients take 10 syscalls.
const USAGE_BATCH_ENTRIES: usize = 1_024;

pub struct UsageReader {
    name: &'static str,
    map: Map,
    /// `None` on a kernel without batch reads, which walks the map instead.
    batch: Option<BatchReader<MacKey, Usage>>,
}

impl UsageReader {
    /// A reader of `map` (the loaded map `name`), on a duplicate of its file descriptor.
    pub(super) fn new(name: &'static str, map: &MapData) -> Result<Self, BpfError> {
        let map_error = |source| BpfError::Map { name, source };
        let fd = map
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|source| BpfError::MapFd { name, source })?;
        let map = MapData::from_fd(fd)
            .and_then(Map::from_map_data)
            .map_err(map_error)?;
        let batch = aya::util::nr_cpus()
            .ok()
            .and_then(|cpus| BatchReader::new(USAGE_BATCH_ENTRIES, cpus).ok());
        Ok(Self { name, map, batch })
    }

    /// Every client the kernel has seen, with its counters summed over CPUs, into `clients`
    /// (emptied first; the caller keeps it from one poll to the next so it is not allocated
    /// anew).
    pub fn read(&mut self, clients: &mut Vec<(MacKey, Usage)>) -> Result<(), BpfError> {
        clients.clear();
        if let Some(reader) = &mut self.batch {
            let (Map::PerCpuHashMap(map) | Map::PerCpuLruHashMap(map)) = &self.map else {
                return Err(BpfError::MissingMap { name: self.name });
            };
            let read = reader.read(map.fd().as_fd(), |mac, per_cpu| {
                let usage = per_cpu.iter().fold(Usage::default(), Usage::merged);
                clients.push((*mac, usage));
            });
            match read {
                Ok(()) => return Ok(()),
                Err(BatchError::Unsupported) => {
                    tracing::info!(
                        "this kernel cannot read maps in batches; reading the counters entry by entry"
                    );
                    self.batch = None;
                    clients.clear();
                }
                Err(source) => {
                    return Err(BpfError::Batch {
                        name: self.name,
                        source,
                    });
                }
            }
        }
        let map: PerCpuHashMap<&MapData, MacKey, Usage> = PerCpuHashMap::try_from(&self.map)
            .map_err(|source| BpfError::Map {
                name: self.name,
                source,
            })?;
        for entry in &map {
            // An entry deleted between the key walk and its lookup is simply skipped.
            let Ok((mac, per_cpu)) = entry else { continue };
            let usage = per_cpu.iter().fold(Usage::default(), Usage::merged);
            clients.push((mac, usage));
        }
        Ok(())
    }
}
