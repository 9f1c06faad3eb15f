//! The walled garden's host names in the kernel: the addresses learned for them
//! (`GARDEN_LEARNED`), the word that makes the download program copy the box's DNS answers
//! (`CONFIG`), the ring it copies them into and the bytes unpaid clients sent per name.
//! Side effects: writes `GARDEN_LEARNED` and `CONFIG`. Free functions on [`Ebpf`] so tests
//! that load the object themselves use the same code as the daemon.

use std::net::IpAddr;

use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, MapError, PerCpuArray, RingBuf},
};
use hotspotd_common::{
    GardenLearned, IpKey, MAP_CONFIG, MAP_GARDEN_ANSWERS, MAP_GARDEN_BYTES, MAP_GARDEN_LEARNED,
    MAX_GARDEN_NAMES, config_word,
};

use super::{BpfError, typed_map, typed_map_mut};
use crate::{garden::Change, net::ip_key};

/// Tells the download program whether to copy the box's DNS answers (only when the garden
/// has host names).
pub fn set_garden_names(ebpf: &mut Ebpf, on: bool) -> Result<(), BpfError> {
    let mut config: Array<&mut MapData, u32> = typed_map_mut(ebpf, MAP_CONFIG)?;
    config
        .set(config_word::GARDEN_NAMES, u32::from(on), 0)
        .map_err(|source| BpfError::Map {
            name: MAP_CONFIG,
            source,
        })
}

/// Writes what the garden learned or forgot.
pub fn apply_garden(ebpf: &mut Ebpf, changes: &[Change]) -> Result<(), BpfError> {
    let error = |source| BpfError::Map {
        name: MAP_GARDEN_LEARNED,
        source,
    };
    let mut map: HashMap<&mut MapData, IpKey, GardenLearned> =
        typed_map_mut(ebpf, MAP_GARDEN_LEARNED)?;
    for change in changes {
        match *change {
            Change::Set(addr, value) => map.insert(ip_key(addr), value, 0).map_err(error)?,
            Change::Remove(addr) => match map.remove(&ip_key(addr)) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(MapError::SyscallError(failure))
                    if failure.io_error.raw_os_error() == Some(libc::ENOENT) => {}
                Err(source) => return Err(error(source)),
            },
        }
    }
    Ok(())
}

/// The learned addresses a previous run left in the kernel.
pub fn garden_learned(ebpf: &Ebpf) -> Result<Vec<(IpAddr, GardenLearned)>, BpfError> {
    let map: HashMap<&MapData, IpKey, GardenLearned> = typed_map(ebpf, MAP_GARDEN_LEARNED)?;
    Ok(map
        .iter()
        .filter_map(Result::ok)
        .map(|(key, value)| (crate::net::ip_of_key(key), value))
        .collect())
}

/// Bytes clients without a session sent to each name's learned addresses, by name index.
pub fn garden_bytes(ebpf: &Ebpf) -> Result<Vec<u64>, BpfError> {
    let map: PerCpuArray<&MapData, u64> = typed_map(ebpf, MAP_GARDEN_BYTES)?;
    (0..MAX_GARDEN_NAMES)
        .map(|index| {
            map.get(&index, 0)
                .map(|values| values.iter().fold(0u64, |sum, v| sum.wrapping_add(*v)))
                .map_err(|source| BpfError::Map {
                    name: MAP_GARDEN_BYTES,
                    source,
                })
        })
        .collect()
}

/// Hands over the ring of the box's DNS answers, once.
pub fn take_garden_answers(ebpf: &mut Ebpf) -> Result<RingBuf<MapData>, BpfError> {
    let map = ebpf
        .take_map(MAP_GARDEN_ANSWERS)
        .ok_or(BpfError::MissingMap {
            name: MAP_GARDEN_ANSWERS,
        })?;
    RingBuf::try_from(map).map_err(|source| BpfError::Map {
        name: MAP_GARDEN_ANSWERS,
        source,
    })
}
