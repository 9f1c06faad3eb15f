//! Reads per-client counters, every client's summed over CPUs: those of the clients the
//! daemon keeps room for (`CLIENTS` names each one's slot of `USAGE`), or those of every
//! other MAC (`SEEN`). In batches where the kernel can (Linux >= 5.6), else entry by entry. A
//! [`UsageReader`] holds file descriptors of its own on the maps, so it can read on another
//! thread than the one that loaded the programs. Read-only.

use std::os::fd::AsFd as _;

use aya::maps::{HashMap, Map, MapData, PerCpuArray, PerCpuHashMap};
use hotspotd_common::{ClientSlots, MAP_CLIENTS, MAP_USAGE, MacKey, Usage};

use super::{BatchError, BatchReader, BpfError};

/// Entries read per syscall: 1,024 clients are 80 KiB of counters per possible CPU,
/// and 10,000 clients take 10 syscalls.
const USAGE_BATCH_ENTRIES: usize = 1_024;

pub struct UsageReader {
    source: Source,
}

enum Source {
    /// `SEEN`: a per-CPU hash map by MAC.
    Seen {
        name: &'static str,
        map: Map,
        /// `None` on a kernel without batch reads, which walks the map instead.
        batch: Option<BatchReader<MacKey, Usage>>,
    },
    /// `CLIENTS`, then the slots of `USAGE` they name.
    Clients {
        clients: Box<Map>,
        usage: Box<Map>,
        /// `None` on a kernel without batch reads.
        batch: Option<(BatchReader<MacKey, ClientSlots>, BatchReader<u32, Usage>)>,
        /// Kept from one read to the next so they are not allocated anew.
        slots: Vec<(MacKey, u32)>,
        by_slot: Vec<Usage>,
    },
}

/// A map of its own on a duplicate of `map`'s file descriptor.
fn duplicate(name: &'static str, map: &MapData) -> Result<Map, BpfError> {
    let fd = map
        .fd()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|source| BpfError::MapFd { name, source })?;
    MapData::from_fd(fd)
        .and_then(Map::from_map_data)
        .map_err(|source| BpfError::Map { name, source })
}

impl UsageReader {
    /// A reader of `SEEN` (the loaded map `name`).
    pub(super) fn seen(name: &'static str, map: &MapData) -> Result<Self, BpfError> {
        let batch = aya::util::nr_cpus()
            .ok()
            .and_then(|cpus| BatchReader::new(USAGE_BATCH_ENTRIES, cpus).ok());
        Ok(Self {
            source: Source::Seen {
                name,
                map: duplicate(name, map)?,
                batch,
            },
        })
    }

    /// A reader of the clients the daemon keeps room for, from the loaded `CLIENTS` and
    /// `USAGE`.
    pub(super) fn clients(clients: &MapData, usage: &MapData) -> Result<Self, BpfError> {
        let batch = aya::util::nr_cpus().ok().and_then(|cpus| {
            Some((
                BatchReader::new(USAGE_BATCH_ENTRIES, 1).ok()?,
                BatchReader::new(USAGE_BATCH_ENTRIES, cpus).ok()?,
            ))
        });
        Ok(Self {
            source: Source::Clients {
                clients: Box::new(duplicate(MAP_CLIENTS, clients)?),
                usage: Box::new(duplicate(MAP_USAGE, usage)?),
                batch,
                slots: Vec::new(),
                by_slot: Vec::new(),
            },
        })
    }

    /// Every client, with its counters summed over CPUs, into `clients` (emptied first; the
    /// caller keeps it from one poll to the next so it is not allocated anew).
    pub fn read(&mut self, clients: &mut Vec<(MacKey, Usage)>) -> Result<(), BpfError> {
        clients.clear();
        match &mut self.source {
            Source::Seen { name, map, batch } => read_seen(name, map, batch, clients),
            Source::Clients {
                clients: map,
                usage,
                batch,
                slots,
                by_slot,
            } => {
                read_slots(map, batch, slots)?;
                let used = slots.iter().map(|(_, slot)| *slot as usize + 1).max();
                read_counters(usage, batch, used.unwrap_or(0), by_slot)?;
                clients.extend(slots.iter().filter_map(|(mac, slot)| {
                    by_slot.get(*slot as usize).map(|usage| (*mac, *usage))
                }));
                Ok(())
            }
        }
    }
}

fn unsupported(batch: &mut Option<impl Sized>) {
    tracing::info!("this kernel cannot read maps in batches; reading the counters entry by entry");
    *batch = None;
}

fn read_seen(
    name: &'static str,
    map: &Map,
    batch: &mut Option<BatchReader<MacKey, Usage>>,
    clients: &mut Vec<(MacKey, Usage)>,
) -> Result<(), BpfError> {
    if let Some(reader) = batch {
        let (Map::PerCpuHashMap(data) | Map::PerCpuLruHashMap(data)) = map else {
            return Err(BpfError::MissingMap { name });
        };
        let read = reader.read(data.fd().as_fd(), |mac, per_cpu| {
            let usage = per_cpu.iter().fold(Usage::default(), Usage::merged);
            clients.push((*mac, usage));
        });
        match read {
            Ok(()) => return Ok(()),
            Err(BatchError::Unsupported) => {
                unsupported(batch);
                clients.clear();
            }
            Err(source) => return Err(BpfError::Batch { name, source }),
        }
    }
    let map: PerCpuHashMap<&MapData, MacKey, Usage> =
        PerCpuHashMap::try_from(map).map_err(|source| BpfError::Map { name, source })?;
    for entry in &map {
        // An entry deleted between the key walk and its lookup is simply skipped.
        let Ok((mac, per_cpu)) = entry else { continue };
        let usage = per_cpu.iter().fold(Usage::default(), Usage::merged);
        clients.push((mac, usage));
    }
    Ok(())
}

type Batches = Option<(BatchReader<MacKey, ClientSlots>, BatchReader<u32, Usage>)>;

/// Which slot of `USAGE` each client in `CLIENTS` counts into.
fn read_slots(
    map: &Map,
    batch: &mut Batches,
    slots: &mut Vec<(MacKey, u32)>,
) -> Result<(), BpfError> {
    slots.clear();
    if let Some((reader, _)) = batch {
        let Map::HashMap(data) = map else {
            return Err(BpfError::MissingMap { name: MAP_CLIENTS });
        };
        let read = reader.read(data.fd().as_fd(), |mac, values| {
            if let Some(client) = values.first() {
                slots.push((*mac, client.counters));
            }
        });
        match read {
            Ok(()) => return Ok(()),
            Err(BatchError::Unsupported) => {
                unsupported(batch);
                slots.clear();
            }
            Err(source) => {
                return Err(BpfError::Batch {
                    name: MAP_CLIENTS,
                    source,
                });
            }
        }
    }
    let map: HashMap<&MapData, MacKey, ClientSlots> =
        HashMap::try_from(map).map_err(|source| BpfError::Map {
            name: MAP_CLIENTS,
            source,
        })?;
    // An entry deleted between the key walk and its lookup is simply skipped.
    slots.extend(
        map.iter()
            .filter_map(Result::ok)
            .map(|(mac, client)| (mac, client.counters)),
    );
    Ok(())
}

/// The first `used` slots of `USAGE`, summed over CPUs, into `by_slot`.
fn read_counters(
    map: &Map,
    batch: &mut Batches,
    used: usize,
    by_slot: &mut Vec<Usage>,
) -> Result<(), BpfError> {
    by_slot.clear();
    by_slot.resize(used, Usage::default());
    if let Some((_, reader)) = batch {
        let Map::PerCpuArray(data) = map else {
            return Err(BpfError::MissingMap { name: MAP_USAGE });
        };
        let read = reader.read_first(data.fd().as_fd(), used, |slot, per_cpu| {
            if let Some(usage) = by_slot.get_mut(*slot as usize) {
                *usage = per_cpu.iter().fold(Usage::default(), Usage::merged);
            }
        });
        match read {
            Ok(()) => return Ok(()),
            Err(BatchError::Unsupported) => unsupported(batch),
            Err(source) => {
                return Err(BpfError::Batch {
                    name: MAP_USAGE,
                    source,
                });
            }
        }
    }
    let map: PerCpuArray<&MapData, Usage> =
        PerCpuArray::try_from(map).map_err(|source| BpfError::Map {
            name: MAP_USAGE,
            source,
        })?;
    for (slot, usage) in (0u32..).zip(by_slot.iter_mut()) {
        let per_cpu = map.get(&slot, 0).map_err(|source| BpfError::Map {
            name: MAP_USAGE,
            source,
        })?;
        *usage = per_cpu.iter().fold(Usage::default(), Usage::merged);
    }
    Ok(())
}
