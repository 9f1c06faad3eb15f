//! Reads `ADDRESSES`, which MAC the upload program saw sending from each address: in batches
//! where the kernel can, else entry by entry. Like [`super::UsageReader`], an
//! [`AddressReader`] holds a file descriptor of its own, for the reading thread. Read-only.

use std::os::fd::AsFd as _;

use aya::maps::{HashMap, Map, MapData};
use hotspotd_common::{AddressOwner, IpKey, MAP_ADDRESSES};

use super::{BatchError, BatchReader, BpfError};

/// Entries read per syscall: 48 KiB of keys and values.
const ADDRESS_BATCH_ENTRIES: usize = 1_024;

pub struct AddressReader {
    map: Map,
    /// `None` on a kernel without batch reads, which walks the map instead.
    batch: Option<BatchReader<IpKey, AddressOwner>>,
}

impl AddressReader {
    /// A reader of `map` (the loaded `ADDRESSES`), on a duplicate of its file descriptor.
    pub(super) fn new(map: &MapData) -> Result<Self, BpfError> {
        let map_error = |source| BpfError::Map {
            name: MAP_ADDRESSES,
            source,
        };
        let fd = map
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|source| BpfError::MapFd {
                name: MAP_ADDRESSES,
                source,
            })?;
        let map = MapData::from_fd(fd)
            .and_then(Map::from_map_data)
            .map_err(map_error)?;
        // One value per entry: the map is not per-CPU.
        let batch = BatchReader::new(ADDRESS_BATCH_ENTRIES, 1).ok();
        Ok(Self { map, batch })
    }

    /// Every address with its owner, into `out` (emptied first).
    pub fn read(&mut self, out: &mut Vec<(IpKey, AddressOwner)>) -> Result<(), BpfError> {
        out.clear();
        if let Some(reader) = &mut self.batch {
            let Map::LruHashMap(map) = &self.map else {
                return Err(BpfError::MissingMap {
                    name: MAP_ADDRESSES,
                });
            };
            match reader.read(map.fd().as_fd(), |addr, owner| out.push((*addr, owner[0]))) {
                Ok(()) => return Ok(()),
                Err(BatchError::Unsupported) => {
                    self.batch = None;
                    out.clear();
                }
                Err(source) => {
                    return Err(BpfError::Batch {
                        name: MAP_ADDRESSES,
                        source,
                    });
                }
            }
        }
        let map: HashMap<&MapData, IpKey, AddressOwner> =
            HashMap::try_from(&self.map).map_err(|source| BpfError::Map {
                name: MAP_ADDRESSES,
                source,
            })?;
        // An entry evicted between the key walk and its lookup is simply skipped.
        out.extend(map.iter().filter_map(Result::ok));
        Ok(())
    }
}
