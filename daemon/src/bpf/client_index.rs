//! `CLIENT_INDEX`: how the programs find a client's slots without a hash map's lookup. An
//! open-addressed hash table in an array, which the verifier inlines: a client's entry is
//! within `CLIENT_INDEX_PROBES` entries of its home, and a lookup walks from the home until it
//! finds the client's key or an empty entry (`hotspotd_common::index_home`). Only the daemon
//! writes it; [`ClientIndex`] keeps a mirror of its keys. A new entry is written in two steps,
//! its slots under a key no lookup matches and then its key, so a program never pairs a
//! client's key with slots an earlier client left there; a change of a client's slots is one
//! write of its entry, as it was of `CLIENTS`' (a program that read the old slots a moment
//! before counts one packet by them, which the slots' quarantine covers). Side effects: writes
//! `CLIENT_INDEX` and `CLIENT_INDEX_INFO`.
//!
//! `CLIENTS` stays the list of the clients for everything that reads them (the poll, the
//! portal, the tests); the index is the programs' way to them. A client whose window is full
//! (never seen in practice at four entries per client, see the tests) is left out of the
//! index and counted in `index_info::UNINDEXED`, which sends the programs' misses to
//! `CLIENTS`: such a client is served, only at a hash map's cost.

use std::{
    collections::{HashMap, HashSet},
    os::fd::AsFd as _,
};

use aya::{
    Ebpf,
    maps::{Array, Map, MapData},
};
use hotspotd_common::{
    CLIENT_INDEX_LEN, CLIENT_INDEX_PROBES, ClientSlots, INDEX_EMPTY, INDEX_VACATED, IndexEntry,
    MAP_CLIENT_INDEX, MAP_CLIENT_INDEX_INFO, MacKey, index_home, index_info, index_key,
};

use super::{BatchError, BatchReader, BpfError, typed_map_mut};

/// Entries read per syscall when the index is read at start: 64 syscalls for all of it.
const READ_BATCH_ENTRIES: usize = 1_024;

/// The index's keys as the daemon last wrote them, and the walks the programs take over them.
/// Pure: no map is touched here.
#[derive(Debug)]
struct Probes {
    multiplier: u64,
    keys: Vec<u64>,
}

/// The entry `steps` after `position`, around the end.
fn after(position: u32, steps: u32) -> u32 {
    position.wrapping_add(steps) & (CLIENT_INDEX_LEN - 1)
}

/// How many steps a walk from `from` takes to reach `to`.
fn steps(from: u32, to: u32) -> u32 {
    to.wrapping_sub(from) & (CLIENT_INDEX_LEN - 1)
}

impl Probes {
    fn empty(multiplier: u64) -> Self {
        Self {
            multiplier,
            keys: vec![INDEX_EMPTY; CLIENT_INDEX_LEN as usize],
        }
    }

    fn key(&self, position: u32) -> u64 {
        self.keys[position as usize]
    }

    fn home(&self, key: u64) -> u32 {
        index_home(key, self.multiplier)
    }

    /// Where `key` is, walking as the programs do (`slots_of` in the eBPF crate).
    fn find(&self, key: u64) -> Option<u32> {
        let home = self.home(key);
        for probe in 0..CLIENT_INDEX_PROBES {
            let position = after(home, probe);
            match self.key(position) {
                found if found == key => return Some(position),
                INDEX_EMPTY => return None,
                _ => {}
            }
        }
        None
    }

    /// The entry `key` would go to: the first one of its window not in use. A walk for it
    /// then meets no empty entry before it.
    fn place(&self, key: u64) -> Option<u32> {
        let home = self.home(key);
        (0..CLIENT_INDEX_PROBES)
            .map(|probe| after(home, probe))
            .find(|position| matches!(self.key(*position), INDEX_EMPTY | INDEX_VACATED))
    }

    /// Whether some key in use walks through `position` on its way to its entry.
    fn walked_through(&self, position: u32) -> bool {
        (1..CLIENT_INDEX_PROBES).any(|ahead| {
            let later = after(position, ahead);
            let key = self.key(later);
            key != INDEX_EMPTY
                && key != INDEX_VACATED
                && steps(self.home(key), later) > steps(self.home(key), position)
        })
    }

    /// The vacated entries from `position` backwards that no walk needs any more, which may
    /// be emptied: lookups that miss then stop there instead of walking on.
    fn emptiable(&self, position: u32) -> Vec<u32> {
        let mut emptied = Vec::new();
        let mut at = position;
        while emptied.len() < CLIENT_INDEX_LEN as usize
            && self.key(at) == INDEX_VACATED
            && !self.walked_through(at)
        {
            emptied.push(at);
            at = at.wrapping_sub(1) & (CLIENT_INDEX_LEN - 1);
        }
        emptied
    }
}

/// The daemon's side of `CLIENT_INDEX`.
#[derive(Debug)]
pub struct ClientIndex {
    probes: Probes,
    /// Clients of `CLIENTS` the index has no room for (`index_info::UNINDEXED`).
    unindexed: HashSet<MacKey>,
}

impl ClientIndex {
    /// Makes the pinned index hold exactly `clients`, each with its slots, and returns its
    /// mirror. New maps get a random multiplier first; pinned ones keep theirs, so what a
    /// previous run wrote is reused and only what differs is written.
    pub fn load(ebpf: &mut Ebpf, clients: &HashMap<MacKey, ClientSlots>) -> Result<Self, BpfError> {
        let mut info: Array<&mut MapData, u64> = typed_map_mut(ebpf, MAP_CLIENT_INDEX_INFO)?;
        let info_error = |source| BpfError::Map {
            name: MAP_CLIENT_INDEX_INFO,
            source,
        };
        let mut multiplier = info.get(&index_info::MULTIPLIER, 0).map_err(info_error)?;
        let fresh = multiplier == 0;
        if fresh {
            multiplier =
                (u64::from(super::random_u32()) << 32 | u64::from(super::random_u32())) | 1;
            info.set(index_info::MULTIPLIER, multiplier, 0)
                .map_err(info_error)?;
        }
        let mut index = Self {
            probes: Probes::empty(multiplier),
            unindexed: HashSet::new(),
        };
        // What a previous run wrote stays, if it is still wanted as it is; any other entry in
        // use is vacated (every one, when the multiplier was unset). Read a batch at a time,
        // into the mirror: nothing the size of the index is allocated and freed here (a
        // freed block that large would raise the allocator's threshold for keeping memory).
        let mut vacated = Vec::new();
        read_entries(ebpf, |position, entry| {
            let mac = mac_of(entry.key);
            let wanted =
                !fresh && index_key(&mac) == entry.key && clients.get(&mac) == Some(&entry.slots);
            index.probes.keys[position as usize] = match entry.key {
                INDEX_EMPTY | INDEX_VACATED => entry.key,
                _ if wanted => entry.key,
                _ => {
                    vacated.push(position);
                    INDEX_VACATED
                }
            };
        })?;
        // An entry a walk does not reach first goes too: a second one for a client, or one
        // behind an empty entry.
        for position in 0..CLIENT_INDEX_LEN {
            let key = index.probes.key(position);
            if key != INDEX_EMPTY
                && key != INDEX_VACATED
                && index.probes.find(key) != Some(position)
            {
                index.probes.keys[position as usize] = INDEX_VACATED;
                vacated.push(position);
            }
        }
        for position in vacated {
            write_entry(ebpf, position, INDEX_VACATED, ClientSlots::default())?;
        }
        for (mac, slots) in clients {
            if index.probes.find(index_key(mac)).is_none() {
                index.insert(ebpf, *mac, *slots)?;
            }
        }
        index.write_unindexed(ebpf)?;
        for position in 0..CLIENT_INDEX_LEN {
            index.empty_behind(ebpf, position)?;
        }
        Ok(index)
    }

    /// Gives `client` its entry, written in two steps so a program never pairs its key with
    /// another client's slots: first the slots under a vacated key (a walk passes it by),
    /// then the key. A client whose window is full is counted as unindexed instead.
    pub fn insert(
        &mut self,
        ebpf: &mut Ebpf,
        client: MacKey,
        slots: ClientSlots,
    ) -> Result<(), BpfError> {
        let key = index_key(&client);
        if self.probes.find(key).is_some() {
            return self.update(ebpf, client, slots);
        }
        let Some(position) = self.probes.place(key) else {
            tracing::warn!(
                client = %crate::mac::MacAddr::from(client),
                "the client index has no room in this client's window; its packets are looked up in CLIENTS instead (slower, still exact)"
            );
            self.unindexed.insert(client);
            return self.write_unindexed(ebpf).inspect_err(|_| {
                self.unindexed.remove(&client);
            });
        };
        write_entry(ebpf, position, INDEX_VACATED, slots)?;
        self.probes.keys[position as usize] = INDEX_VACATED;
        write_entry(ebpf, position, key, slots)?;
        self.probes.keys[position as usize] = key;
        Ok(())
    }

    /// Points `client`'s entry at new slots (a new budget or classes).
    pub fn update(
        &mut self,
        ebpf: &mut Ebpf,
        client: MacKey,
        slots: ClientSlots,
    ) -> Result<(), BpfError> {
        let key = index_key(&client);
        match self.probes.find(key) {
            Some(position) => write_entry(ebpf, position, key, slots),
            None => Ok(()),
        }
    }

    /// Takes `client`'s entry away: from its next packet on the programs do not find it.
    pub fn remove(&mut self, ebpf: &mut Ebpf, client: MacKey) -> Result<(), BpfError> {
        if self.unindexed.remove(&client) {
            return self.write_unindexed(ebpf);
        }
        let Some(position) = self.probes.find(index_key(&client)) else {
            return Ok(());
        };
        write_entry(ebpf, position, INDEX_VACATED, ClientSlots::default())?;
        self.probes.keys[position as usize] = INDEX_VACATED;
        self.empty_behind(ebpf, position)
    }

    /// How many clients the index has no entry for.
    #[must_use]
    pub fn unindexed_count(&self) -> usize {
        self.unindexed.len()
    }

    /// Empties the vacated entries at and behind `position` that no walk needs.
    fn empty_behind(&mut self, ebpf: &mut Ebpf, position: u32) -> Result<(), BpfError> {
        for emptied in self.probes.emptiable(position) {
            write_entry(ebpf, emptied, INDEX_EMPTY, ClientSlots::default())?;
            self.probes.keys[emptied as usize] = INDEX_EMPTY;
        }
        Ok(())
    }

    fn write_unindexed(&self, ebpf: &mut Ebpf) -> Result<(), BpfError> {
        let mut info: Array<&mut MapData, u64> = typed_map_mut(ebpf, MAP_CLIENT_INDEX_INFO)?;
        let count = u64::try_from(self.unindexed.len()).unwrap_or(u64::MAX);
        info.set(index_info::UNINDEXED, count, 0)
            .map_err(|source| BpfError::Map {
                name: MAP_CLIENT_INDEX_INFO,
                source,
            })
    }
}

fn write_entry(
    ebpf: &mut Ebpf,
    position: u32,
    key: u64,
    slots: ClientSlots,
) -> Result<(), BpfError> {
    let mut map: Array<&mut MapData, IndexEntry> = typed_map_mut(ebpf, MAP_CLIENT_INDEX)?;
    map.set(position, IndexEntry { key, slots }, 0)
        .map_err(|source| BpfError::Map {
            name: MAP_CLIENT_INDEX,
            source,
        })
}

/// The MAC an index key names (whatever its tag says).
fn mac_of(key: u64) -> MacKey {
    let bytes = key.to_le_bytes();
    MacKey::new([bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5]])
}

/// Calls `each` with every entry of the pinned index and its position: in batches, else one
/// by one.
fn read_entries(ebpf: &Ebpf, mut each: impl FnMut(u32, IndexEntry)) -> Result<(), BpfError> {
    let map = ebpf.map(MAP_CLIENT_INDEX).ok_or(BpfError::MissingMap {
        name: MAP_CLIENT_INDEX,
    })?;
    if let (Map::Array(data), Ok(mut reader)) = (map, BatchReader::new(READ_BATCH_ENTRIES, 1)) {
        let mut seen = 0u32;
        let read = reader.read_first(
            data.fd().as_fd(),
            CLIENT_INDEX_LEN as usize,
            |position: &u32, values: &[IndexEntry]| {
                if let Some(value) = values.first()
                    && *position < CLIENT_INDEX_LEN
                {
                    each(*position, *value);
                    seen += 1;
                }
            },
        );
        match read {
            Ok(()) => return Ok(()),
            // Nothing was read yet (the first call is the one a kernel without batches
            // refuses), so reading one by one below sees every entry once.
            Err(BatchError::Unsupported) if seen == 0 => {}
            Err(source) => {
                return Err(BpfError::Batch {
                    name: MAP_CLIENT_INDEX,
                    source,
                });
            }
        }
    }
    let map: Array<&MapData, IndexEntry> =
        Array::try_from(map).map_err(|source| BpfError::Map {
            name: MAP_CLIENT_INDEX,
            source,
        })?;
    for position in 0..CLIENT_INDEX_LEN {
        let entry = map.get(&position, 0).map_err(|source| BpfError::Map {
            name: MAP_CLIENT_INDEX,
            source,
        })?;
        each(position, entry);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u32) -> MacKey {
        let b = n.to_be_bytes();
        MacKey::new([0x02, 0x10, b[0], b[1], b[2], b[3]])
    }

    /// Inserts into the mirror as `ClientIndex::insert` does.
    fn insert(probes: &mut Probes, key: u64) -> bool {
        match probes.place(key) {
            Some(position) => {
                probes.keys[position as usize] = key;
                true
            }
            None => false,
        }
    }

    fn remove(probes: &mut Probes, key: u64) {
        let position = probes.find(key).expect("present");
        probes.keys[position as usize] = INDEX_VACATED;
        for emptied in probes.emptiable(position) {
            probes.keys[emptied as usize] = INDEX_EMPTY;
        }
    }

    #[test]
    fn every_client_is_found_at_full_house() {
        let mut probes = Probes::empty(0x9e37_79b9_7f4a_7c15);
        let keys: Vec<u64> = (0..hotspotd_common::MAX_CLIENTS)
            .map(|n| index_key(&mac(n)))
            .collect();
        for key in &keys {
            assert!(insert(&mut probes, *key), "a window was full");
        }
        for key in &keys {
            assert!(probes.find(*key).is_some());
        }
        assert!(probes.find(index_key(&mac(u32::MAX))).is_none());
    }

    /// Months of clients coming and going: every client present is found, every one gone is
    /// not, and the vacated entries do not pile up.
    #[test]
    fn churn_keeps_every_walk_whole() {
        let mut probes = Probes::empty(0x2545_f491_4f6c_dd1d);
        let mut present = std::collections::VecDeque::new();
        let mut next = 0u32;
        let mut state = 0x1234_5678_u64;
        for round in 0..200_000u32 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let grow = present.len() < 2_000 || (present.len() < 16_000 && state.is_multiple_of(2));
            if grow {
                let key = index_key(&mac(next));
                next += 1;
                assert!(insert(&mut probes, key), "round {round}: a window was full");
                present.push_back(key);
            } else {
                let at = usize::try_from(state % present.len() as u64).unwrap();
                let key = present.swap_remove_back(at).unwrap();
                remove(&mut probes, key);
                assert!(
                    probes.find(key).is_none(),
                    "round {round}: a removed client is found"
                );
            }
        }
        for key in &present {
            assert!(probes.find(*key).is_some(), "a present client is not found");
        }
        let vacated = probes
            .keys
            .iter()
            .filter(|key| **key == INDEX_VACATED)
            .count();
        assert!(
            vacated < present.len(),
            "{vacated} vacated entries for {} clients",
            present.len()
        );
    }

    #[test]
    fn a_full_window_places_nothing_and_a_miss_walks_only_the_window() {
        let mut probes = Probes::empty(1);
        let key = index_key(&mac(7));
        let home = probes.home(key);
        for probe in 0..CLIENT_INDEX_PROBES {
            probes.keys[after(home, probe) as usize] = index_key(&mac(1_000_000 + probe));
        }
        assert_eq!(probes.place(key), None);
        assert_eq!(probes.find(key), None);
    }

    #[test]
    fn a_vacated_entry_a_later_walk_needs_stays_vacated() {
        let mut probes = Probes::empty(1);
        let first = index_key(&mac(1));
        let home = probes.home(first);
        probes.keys[home as usize] = first;
        // A second key with the same home sits one further on.
        let second = (0..1_000_000)
            .map(|n| index_key(&mac(n)))
            .find(|key| *key != first && probes.home(*key) == home)
            .expect("a key with the same home");
        assert!(insert(&mut probes, second));
        remove(&mut probes, first);
        assert_eq!(
            probes.key(home),
            INDEX_VACATED,
            "the second key's walk passes it"
        );
        assert!(probes.find(second).is_some());
        remove(&mut probes, second);
        assert_eq!(probes.key(home), INDEX_EMPTY);
        assert_eq!(probes.key(after(home, 1)), INDEX_EMPTY);
    }
}
