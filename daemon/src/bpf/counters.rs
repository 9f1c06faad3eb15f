//! The room kept for a client's counters in `USAGE`: made before a grant lets it through, so
//! what it passes is counted whatever other MACs filled `SEEN` with, and given back once its
//! last reading without a grant has been taken. Side effects: writes `USAGE`. Free functions
//! on [`Ebpf`] so tests that load the object themselves use the same code as the daemon.

use aya::{
    Ebpf,
    maps::{MapData, MapError, PerCpuHashMap, PerCpuValues},
};
use hotspotd_common::{MAP_USAGE, MacKey, Usage};

use super::{BpfError, typed_map_mut};

/// `BPF_NOEXIST` (uapi linux/bpf.h): create the entry only if there is none.
const BPF_NOEXIST: u64 = 1;

/// Gives `client` an entry in `USAGE` if it has none; an entry it has keeps its counts.
/// Fails when `USAGE` is full, which cannot happen while it is as large as `GRANTS` and every
/// entry belongs to a client with a grant or one about to be released.
pub fn reserve_counters(ebpf: &mut Ebpf, client: MacKey) -> Result<(), BpfError> {
    let mut map: PerCpuHashMap<&mut MapData, MacKey, Usage> = typed_map_mut(ebpf, MAP_USAGE)?;
    let cpus = aya::util::nr_cpus().map_err(|(_, source)| BpfError::MapFd {
        name: MAP_USAGE,
        source,
    })?;
    let zero =
        PerCpuValues::try_from(vec![Usage::default(); cpus]).map_err(|source| BpfError::MapFd {
            name: MAP_USAGE,
            source,
        })?;
    match map.insert(client, zero, BPF_NOEXIST) {
        Ok(()) => Ok(()),
        Err(MapError::SyscallError(error))
            if error.io_error.raw_os_error() == Some(libc::EEXIST) =>
        {
            Ok(())
        }
        Err(source) => Err(BpfError::Map {
            name: MAP_USAGE,
            source,
        }),
    }
}

/// Deletes `client`'s entry from `USAGE`: from its next packet on it is counted in `SEEN`.
pub fn release_counters(ebpf: &mut Ebpf, client: MacKey) -> Result<(), BpfError> {
    let mut map: PerCpuHashMap<&mut MapData, MacKey, Usage> = typed_map_mut(ebpf, MAP_USAGE)?;
    match map.remove(&client) {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(error))
            if error.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        Err(source) => Err(BpfError::Map {
            name: MAP_USAGE,
            source,
        }),
    }
}
