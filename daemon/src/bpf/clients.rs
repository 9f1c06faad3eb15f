//! The clients the daemon keeps room for in the kernel, and their grants: each client's entry
//! in `CLIENTS` names its counters (a slot of `USAGE`), the budget it draws on (a slot of
//! `BUDGETS`, shared by the devices of one voucher) and its HTB classes, so a packet needs one
//! lookup by MAC. [`ClientTable`] hands out the slots and mirrors `CLIENTS`, which only the
//! daemon writes, and keeps `CLIENT_INDEX` (the programs' way to the same entries, see
//! `client_index.rs`) in step with it. Side effects: writes `CLIENTS`, `CLIENT_INDEX`, `USAGE`
//! (zeroing a slot before it is given out) and `BUDGETS`.
//!
//! A slot given back is not reused at once: a program that looked the client up just before
//! its entry changed may still count into the old slot or spend from the old budget. Programs
//! run for microseconds; a slot waits [`QUARANTINE`] before it is handed out again.

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    time::{Duration, Instant},
};

use aya::{
    Ebpf,
    maps::{Array, HashMap as BpfHashMap, MapData, MapError, PerCpuArray, PerCpuValues},
};
use hotspotd_common::{
    Budget, ClientSlots, Grant, MAP_BUDGETS, MAP_CLIENTS, MAP_USAGE, MAX_CLIENTS, MacKey,
    NO_BUDGET, Usage,
};

use super::{BpfError, client_index::ClientIndex, typed_map, typed_map_mut};

/// How long a slot given back waits before it is handed out again.
pub const QUARANTINE: Duration = Duration::from_secs(1);

/// The slots of one map: free ones (lowest first, so the used ones stay dense and a read of
/// the counters stops early) and those waiting out their quarantine.
#[derive(Debug)]
struct SlotPool {
    free: BTreeSet<u32>,
    waiting: VecDeque<(Instant, u32)>,
}

impl SlotPool {
    fn new(used: &BTreeSet<u32>) -> Self {
        Self {
            free: (0..MAX_CLIENTS)
                .filter(|slot| !used.contains(slot))
                .collect(),
            waiting: VecDeque::new(),
        }
    }

    fn take(&mut self, now: Instant) -> Option<u32> {
        while let Some(&(since, slot)) = self.waiting.front() {
            if now.duration_since(since) < QUARANTINE {
                break;
            }
            self.waiting.pop_front();
            self.free.insert(slot);
        }
        self.free.pop_first()
    }

    fn give_back(&mut self, slot: u32, now: Instant) {
        self.waiting.push_back((now, slot));
    }
}

/// Why a client could not be given room.
fn full(name: &'static str) -> BpfError {
    BpfError::Full {
        name,
        capacity: MAX_CLIENTS,
    }
}

/// The daemon's side of `CLIENTS`: a mirror of it, and the free slots of `USAGE` and
/// `BUDGETS`. Built from the pinned maps at start, so a restarted daemon goes on with the
/// slots its predecessor handed out.
#[derive(Debug)]
pub struct ClientTable {
    clients: HashMap<MacKey, ClientSlots>,
    /// How many clients name each budget in use.
    budget_users: HashMap<u32, u32>,
    counters: SlotPool,
    budgets: SlotPool,
    /// The programs' index of `clients`; `None` in a table that only reads
    /// ([`ClientTable::read_only`]).
    index: Option<ClientIndex>,
}

impl ClientTable {
    /// The table as the pinned `CLIENTS` holds it, with `CLIENT_INDEX` made to hold the same
    /// clients (what a previous run left there is reused): the table that writes, which
    /// must be loaded before the programs are attached, since they find clients through the
    /// index.
    pub fn load(ebpf: &mut Ebpf) -> Result<Self, BpfError> {
        let mut table = Self::read_only(ebpf)?;
        table.index = Some(ClientIndex::load(ebpf, &table.clients)?);
        Ok(table)
    }

    /// The table as the pinned `CLIENTS` holds it, for reading only: it keeps no index.
    pub fn read_only(ebpf: &Ebpf) -> Result<Self, BpfError> {
        let map: BpfHashMap<&MapData, MacKey, ClientSlots> = typed_map(ebpf, MAP_CLIENTS)?;
        // An entry removed between the key walk and its lookup is simply skipped; only the
        // daemon removes entries, and it is not running another table.
        let clients: HashMap<MacKey, ClientSlots> = map.iter().filter_map(Result::ok).collect();
        let mut budget_users = HashMap::new();
        for slots in clients.values().filter(|slots| slots.budget != NO_BUDGET) {
            *budget_users.entry(slots.budget).or_insert(0) += 1;
        }
        let counters = clients.values().map(|slots| slots.counters).collect();
        let budgets = budget_users.keys().copied().collect();
        Ok(Self {
            counters: SlotPool::new(&counters),
            budgets: SlotPool::new(&budgets),
            clients,
            budget_users,
            index: None,
        })
    }

    /// Gives `client` room for its counters if it has none; counters it has keep counting.
    pub fn reserve(&mut self, ebpf: &mut Ebpf, client: MacKey) -> Result<(), BpfError> {
        if self.clients.contains_key(&client) {
            return Ok(());
        }
        let slot = self.counters.take(Instant::now()).ok_or(full(MAP_USAGE))?;
        let zeroed = zero_counters(ebpf, slot).and_then(|()| {
            let slots = ClientSlots {
                counters: slot,
                budget: NO_BUDGET,
                class_down: 0,
                class_up: 0,
            };
            write_client(ebpf, client, slots).map(|()| slots)
        });
        let indexed = zeroed.and_then(|slots| match &mut self.index {
            Some(index) => index
                .insert(ebpf, client, slots)
                .map(|()| slots)
                .inspect_err(|_| {
                    // Not found by the programs, so not kept: the next try starts over.
                    let _ = remove_client(ebpf, client);
                }),
            None => Ok(slots),
        });
        match indexed {
            Ok(slots) => {
                self.clients.insert(client, slots);
                Ok(())
            }
            Err(error) => {
                self.counters.free.insert(slot);
                Err(error)
            }
        }
    }

    /// Deletes `client`'s entry: from its next packet on it is counted in `SEEN`. Its
    /// counters' slot (and its budget's, if no other client names it) wait out the
    /// quarantine.
    pub fn release(&mut self, ebpf: &mut Ebpf, client: MacKey) -> Result<(), BpfError> {
        let Some(slots) = self.clients.get(&client).copied() else {
            return Ok(());
        };
        // The programs stop finding it first; the list follows.
        if let Some(index) = &mut self.index {
            index.remove(ebpf, client)?;
        }
        remove_client(ebpf, client)?;
        let now = Instant::now();
        self.clients.remove(&client);
        self.counters.give_back(slots.counters, now);
        self.drop_budget_user(slots.budget, now);
        Ok(())
    }

    /// Gives `client` a budget of its own holding `grant`'s, and its classes: from now on
    /// the programs let it through within it. The budget is a fresh slot, written whole
    /// before the client's entry names it, so no packet sees half a grant; the budget it
    /// drew on before is given back once no client names it.
    pub fn set_grant(
        &mut self,
        ebpf: &mut Ebpf,
        client: MacKey,
        grant: Grant,
    ) -> Result<(), BpfError> {
        self.reserve(ebpf, client)?;
        let now = Instant::now();
        let budget = self.budgets.take(now).ok_or(full(MAP_BUDGETS))?;
        if let Err(error) = write_budget(ebpf, budget, grant.budget()) {
            self.budgets.free.insert(budget);
            return Err(error);
        }
        *self.budget_users.entry(budget).or_insert(0) += 1;
        let result = self.point(ebpf, client, budget, grant.class_down, grant.class_up);
        if result.is_err() {
            self.drop_budget_user(budget, now);
        }
        result
    }

    /// Lets `member` draw on the budget `holder`'s grant has, with its own classes: what
    /// either passes is spent from that one budget. Fails if `holder` has no grant.
    pub fn share_grant(
        &mut self,
        ebpf: &mut Ebpf,
        member: MacKey,
        holder: MacKey,
        class_down: u32,
        class_up: u32,
    ) -> Result<(), BpfError> {
        let budget = self
            .clients
            .get(&holder)
            .map(|slots| slots.budget)
            .filter(|budget| *budget != NO_BUDGET)
            .ok_or(BpfError::NoGrant)?;
        self.reserve(ebpf, member)?;
        if self.clients.get(&member).map(|slots| slots.budget) == Some(budget) {
            return self.point(ebpf, member, budget, class_down, class_up);
        }
        *self.budget_users.entry(budget).or_insert(0) += 1;
        let result = self.point(ebpf, member, budget, class_down, class_up);
        if result.is_err() {
            self.drop_budget_user(budget, Instant::now());
        }
        result
    }

    /// Takes `client`'s grant away: from now on it reaches only the walled garden. Its
    /// counters stay.
    pub fn remove_grant(&mut self, ebpf: &mut Ebpf, client: MacKey) -> Result<(), BpfError> {
        match self.clients.get(&client) {
            Some(slots) if slots.budget != NO_BUDGET => self.point(ebpf, client, NO_BUDGET, 0, 0),
            _ => Ok(()),
        }
    }

    /// Puts `client`'s packets in these HTB classes from now on, keeping its budget: the
    /// speed classes a grant could not name yet (`control/speed/confirm.rs`). Nothing to do
    /// for a client without a grant; its next grant names its classes.
    pub fn set_classes(
        &mut self,
        ebpf: &mut Ebpf,
        client: MacKey,
        class_down: u32,
        class_up: u32,
    ) -> Result<(), BpfError> {
        match self.clients.get(&client) {
            Some(slots) if slots.budget != NO_BUDGET => {
                if (slots.class_down, slots.class_up) == (class_down, class_up) {
                    return Ok(());
                }
                let budget = slots.budget;
                self.point(ebpf, client, budget, class_down, class_up)
            }
            _ => Ok(()),
        }
    }

    /// The slots the daemon gave `client`, if it keeps room for it.
    #[must_use]
    pub fn slots_of(&self, client: MacKey) -> Option<ClientSlots> {
        self.clients.get(&client).copied()
    }

    /// How many clients the index has no entry for (see `client_index.rs`).
    #[must_use]
    pub fn unindexed_count(&self) -> usize {
        self.index.as_ref().map_or(0, ClientIndex::unindexed_count)
    }

    /// How many clients have a grant.
    #[must_use]
    pub fn grant_count(&self) -> usize {
        self.clients
            .values()
            .filter(|slots| slots.budget != NO_BUDGET)
            .count()
    }

    /// Points `client`'s entry at `budget` with these classes; the budget it named before
    /// loses a user.
    fn point(
        &mut self,
        ebpf: &mut Ebpf,
        client: MacKey,
        budget: u32,
        class_down: u32,
        class_up: u32,
    ) -> Result<(), BpfError> {
        let Some(before) = self.clients.get(&client).copied() else {
            return Err(BpfError::NoGrant);
        };
        let slots = ClientSlots {
            counters: before.counters,
            budget,
            class_down,
            class_up,
        };
        write_client(ebpf, client, slots)?;
        if let Some(index) = &mut self.index {
            index.update(ebpf, client, slots)?;
        }
        self.clients.insert(client, slots);
        if before.budget != budget {
            self.drop_budget_user(before.budget, Instant::now());
        }
        Ok(())
    }

    fn drop_budget_user(&mut self, budget: u32, now: Instant) {
        if budget == NO_BUDGET {
            return;
        }
        let Some(users) = self.budget_users.get_mut(&budget) else {
            return;
        };
        *users = users.saturating_sub(1);
        if *users == 0 {
            self.budget_users.remove(&budget);
            self.budgets.give_back(budget, now);
        }
    }
}

fn write_client(ebpf: &mut Ebpf, client: MacKey, slots: ClientSlots) -> Result<(), BpfError> {
    let mut map: BpfHashMap<&mut MapData, MacKey, ClientSlots> = typed_map_mut(ebpf, MAP_CLIENTS)?;
    map.insert(client, slots, 0)
        .map_err(|source| BpfError::Map {
            name: MAP_CLIENTS,
            source,
        })
}

fn remove_client(ebpf: &mut Ebpf, client: MacKey) -> Result<(), BpfError> {
    let mut map: BpfHashMap<&mut MapData, MacKey, ClientSlots> = typed_map_mut(ebpf, MAP_CLIENTS)?;
    match map.remove(&client) {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(error))
            if error.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        Err(source) => Err(BpfError::Map {
            name: MAP_CLIENTS,
            source,
        }),
    }
}

fn write_budget(ebpf: &mut Ebpf, slot: u32, budget: Budget) -> Result<(), BpfError> {
    let mut map: Array<&mut MapData, Budget> = typed_map_mut(ebpf, MAP_BUDGETS)?;
    map.set(slot, budget, 0).map_err(|source| BpfError::Map {
        name: MAP_BUDGETS,
        source,
    })
}

fn zero_counters(ebpf: &mut Ebpf, slot: u32) -> Result<(), BpfError> {
    let cpus = aya::util::nr_cpus().map_err(|(_, source)| BpfError::MapFd {
        name: MAP_USAGE,
        source,
    })?;
    let zero =
        PerCpuValues::try_from(vec![Usage::default(); cpus]).map_err(|source| BpfError::MapFd {
            name: MAP_USAGE,
            source,
        })?;
    let mut map: PerCpuArray<&mut MapData, Usage> = typed_map_mut(ebpf, MAP_USAGE)?;
    map.set(slot, zero, 0).map_err(|source| BpfError::Map {
        name: MAP_USAGE,
        source,
    })
}

/// `client`'s slots as the kernel holds them; `None` if the daemon keeps no room for it.
pub fn read_slots(ebpf: &Ebpf, client: MacKey) -> Result<Option<ClientSlots>, BpfError> {
    let map: BpfHashMap<&MapData, MacKey, ClientSlots> = typed_map(ebpf, MAP_CLIENTS)?;
    match map.get(&client, 0) {
        Ok(slots) => Ok(Some(slots)),
        Err(MapError::KeyNotFound) => Ok(None),
        Err(source) => Err(BpfError::Map {
            name: MAP_CLIENTS,
            source,
        }),
    }
}

/// `client`'s grant as the kernel holds it now (its budget spent down); `None` if it has none.
pub fn read_grant(ebpf: &Ebpf, client: MacKey) -> Result<Option<Grant>, BpfError> {
    let Some(slots) = read_slots(ebpf, client)?.filter(|slots| slots.budget != NO_BUDGET) else {
        return Ok(None);
    };
    let budgets: Array<&MapData, Budget> = typed_map(ebpf, MAP_BUDGETS)?;
    grant_of(&budgets, &slots).map(Some)
}

/// The grant of a client with `slots`: the budget they name, with its classes.
fn grant_of(budgets: &Array<&MapData, Budget>, slots: &ClientSlots) -> Result<Grant, BpfError> {
    let budget = budgets
        .get(&slots.budget, 0)
        .map_err(|source| BpfError::Map {
            name: MAP_BUDGETS,
            source,
        })?;
    Ok(Grant::of(&budget, slots))
}

/// Every grant in the kernel, by client: what a previous run left running. Clients that
/// share a budget each show it.
pub fn read_grants(ebpf: &Ebpf) -> Result<Vec<(MacKey, Grant)>, BpfError> {
    let clients: BpfHashMap<&MapData, MacKey, ClientSlots> = typed_map(ebpf, MAP_CLIENTS)?;
    let budgets: Array<&MapData, Budget> = typed_map(ebpf, MAP_BUDGETS)?;
    let mut grants = Vec::new();
    for (client, slots) in clients.iter().filter_map(Result::ok) {
        if slots.budget == NO_BUDGET {
            continue;
        }
        grants.push((client, grant_of(&budgets, &slots)?));
    }
    Ok(grants)
}

/// One client's counters, summed over CPUs; `None` if the daemon keeps no room for it.
pub fn read_usage(ebpf: &Ebpf, client: MacKey) -> Result<Option<Usage>, BpfError> {
    let Some(slots) = read_slots(ebpf, client)? else {
        return Ok(None);
    };
    let map: PerCpuArray<&MapData, Usage> = typed_map(ebpf, MAP_USAGE)?;
    let per_cpu = map
        .get(&slots.counters, 0)
        .map_err(|source| BpfError::Map {
            name: MAP_USAGE,
            source,
        })?;
    Ok(Some(per_cpu.iter().fold(Usage::default(), Usage::merged)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_back_slot_waits_out_the_quarantine() {
        let mut pool = SlotPool::new(&BTreeSet::from([0]));
        let start = Instant::now();
        let first = pool.take(start).unwrap();
        assert_eq!(first, 1, "the lowest free slot, 0 being in use");
        pool.give_back(first, start);
        assert_eq!(pool.take(start), Some(2), "not the slot just given back");
        let later = start + QUARANTINE;
        assert_eq!(pool.take(later), Some(1), "free again after the quarantine");
    }

    #[test]
    fn a_full_pool_says_so() {
        let used = (0..MAX_CLIENTS).collect();
        let mut pool = SlotPool::new(&used);
        assert_eq!(pool.take(Instant::now()), None);
    }
}
