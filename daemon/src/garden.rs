//! The walled garden's host names: which addresses they stand for, learned from the DNS
//! answers the box's own resolver sends to clients (the download program copies them, see
//! `ebpf/src/garden.rs`). An answer is learned when its question is, or leads through the
//! answer's CNAME chain to, a configured name (`pay.example.com`) or a name under a wildcard
//! (`*.example.com` covers `a.example.com`, not `example.com`); each of its A and AAAA
//! addresses then stays open to clients without a session for the record's TTL, clamped to
//! `network.garden_ttl_floor_secs` .. `network.garden_ttl_cap_secs`, for every client.
//!
//! Pure: [`Garden`] says which kernel entries to write or remove ([`Change`]); the control
//! task writes them. Any byte string may arrive as an answer; a malformed one is counted and
//! ignored, never a panic (see the fuzz test).

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
    num::NonZeroU16,
    time::Duration,
};

use hotspotd_common::{GARDEN_PORTS, GardenLearned, GardenPorts, MAX_GARDEN_LEARNED};
use serde::Serialize;
use simple_dns::{CLASS, Packet, PacketFlag, RCODE, rdata::RData};
use tokio::time::Instant;

use crate::config::{Config, GardenName, PortalMode};

/// How many CNAMEs an answer's chain is followed through: resolvers stop at about as many.
const MAX_CNAME_HOPS: usize = 16;

/// What the kernel's `GARDEN_LEARNED` must change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Write (or overwrite) the address's entry.
    Set(IpAddr, GardenLearned),
    /// Remove the address's entry.
    Remove(IpAddr),
}

/// One learned address.
#[derive(Clone, Debug)]
struct Learned {
    /// Indexes into [`Garden::names`] of the names it was learned for.
    names: BTreeSet<usize>,
    expires: Instant,
    /// When it was last learned, as a sequence number: the oldest goes first when full.
    order: u64,
}

/// Counters for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GardenCounts {
    /// DNS answers the kernel handed over.
    pub answers: u64,
    /// Answers that were no well-formed DNS response.
    pub malformed: u64,
    /// Addresses learned or refreshed.
    pub learned: u64,
    /// Learned addresses dropped, the oldest first, to make room for newer ones.
    pub dropped_full: u64,
    /// Learned addresses whose TTL ran out.
    pub expired: u64,
}

/// The garden's host names and what was learned for them.
#[derive(Debug)]
pub struct Garden {
    names: Vec<GardenName>,
    learned: HashMap<IpAddr, Learned>,
    /// `(order, address)` of every learned address, oldest first.
    by_age: BTreeSet<(u64, IpAddr)>,
    next_order: u64,
    floor: Duration,
    cap: Duration,
    capacity: usize,
    full_logged: bool,
    counts: GardenCounts,
}

impl Garden {
    /// An empty garden with the names and TTL bounds of `config`.
    #[must_use]
    pub fn new(config: &Config) -> Self {
        let mut garden = Self {
            names: Vec::new(),
            learned: HashMap::new(),
            by_age: BTreeSet::new(),
            next_order: 0,
            floor: Duration::ZERO,
            cap: Duration::ZERO,
            capacity: MAX_GARDEN_LEARNED as usize,
            full_logged: false,
            counts: GardenCounts::default(),
        };
        let _ = garden.configure(config);
        garden
    }

    /// Whether there are names to learn addresses for (the kernel copies answers only then).
    #[must_use]
    pub fn has_names(&self) -> bool {
        !self.names.is_empty()
    }

    #[must_use]
    pub fn counts(&self) -> GardenCounts {
        self.counts
    }

    #[must_use]
    pub fn names(&self) -> &[GardenName] {
        &self.names
    }

    /// Takes the names and TTL bounds of a new configuration: addresses keep the names that
    /// remain (under their new indexes, with their new ports); those left with none go.
    pub fn configure(&mut self, config: &Config) -> Vec<Change> {
        self.floor = Duration::from_secs(u64::from(config.network.garden_ttl_floor_secs));
        self.cap = Duration::from_secs(u64::from(config.network.garden_ttl_cap_secs));
        let names = names_of(config);
        if names == self.names {
            return Vec::new();
        }
        let remap: Vec<Option<usize>> = self
            .names
            .iter()
            .map(|old| {
                names
                    .iter()
                    .position(|new| new.name == old.name && new.wildcard == old.wildcard)
            })
            .collect();
        self.names = names;
        let mut changes = Vec::new();
        let addresses: Vec<IpAddr> = self.learned.keys().copied().collect();
        for addr in addresses {
            let Some(entry) = self.learned.get_mut(&addr) else {
                continue;
            };
            entry.names = entry
                .names
                .iter()
                .filter_map(|old| remap.get(*old).copied().flatten())
                .collect();
            if entry.names.is_empty() {
                self.forget(addr);
                changes.push(Change::Remove(addr));
            } else {
                let names = entry.names.clone();
                changes.push(Change::Set(addr, self.entry_value(&names)));
            }
        }
        changes
    }

    /// Learns what a DNS answer the box sent says of the garden's names.
    pub fn learn(&mut self, message: &[u8], now: Instant) -> Vec<Change> {
        self.counts.answers += 1;
        let Some(answer) = parse_answer(message) else {
            self.counts.malformed += 1;
            return Vec::new();
        };
        let mut changes = Vec::new();
        for (addr, names, ttl_secs) in self.matches(&answer) {
            let ttl = Duration::from_secs(u64::from(ttl_secs)).clamp(self.floor, self.cap);
            let expires = now + ttl;
            if let Some(entry) = self.learned.get_mut(&addr) {
                self.by_age.remove(&(entry.order, addr));
                entry.order = self.next_order;
                entry.expires = entry.expires.max(expires);
                let before = entry.names.len();
                entry.names.extend(names);
                let grew = entry.names.len() != before;
                self.by_age.insert((self.next_order, addr));
                self.next_order += 1;
                self.counts.learned += 1;
                if grew {
                    let value = self.entry_value(&self.learned[&addr].names);
                    changes.push(Change::Set(addr, value));
                }
                continue;
            }
            if self.learned.len() >= self.capacity
                && let Some(&(_, oldest)) = self.by_age.first()
            {
                if !self.full_logged {
                    self.full_logged = true;
                    tracing::warn!(
                        capacity = self.capacity,
                        "the walled garden's table of learned addresses is full; the oldest learned are dropped first to make room (logged once)"
                    );
                }
                self.forget(oldest);
                self.counts.dropped_full += 1;
                changes.push(Change::Remove(oldest));
            }
            let value = self.entry_value(&names);
            self.learned.insert(
                addr,
                Learned {
                    names,
                    expires,
                    order: self.next_order,
                },
            );
            self.by_age.insert((self.next_order, addr));
            self.next_order += 1;
            self.counts.learned += 1;
            changes.push(Change::Set(addr, value));
        }
        changes
    }

    /// Takes over an entry a previous run left in the kernel: kept for the floor, as if
    /// just learned, when its name is still configured; removed otherwise.
    pub fn adopt(&mut self, addr: IpAddr, value: &GardenLearned, now: Instant) -> Option<Change> {
        let index = value.name_index as usize;
        if index >= self.names.len() || self.learned.contains_key(&addr) {
            return Some(Change::Remove(addr));
        }
        if self.learned.len() >= self.capacity {
            return Some(Change::Remove(addr));
        }
        let names = BTreeSet::from([index]);
        let wanted = self.entry_value(&names);
        self.learned.insert(
            addr,
            Learned {
                names,
                expires: now + self.floor,
                order: self.next_order,
            },
        );
        self.by_age.insert((self.next_order, addr));
        self.next_order += 1;
        (wanted != *value).then_some(Change::Set(addr, wanted))
    }

    /// Removes the addresses whose time ran out.
    pub fn expire(&mut self, now: Instant) -> Vec<Change> {
        let expired: Vec<IpAddr> = self
            .learned
            .iter()
            .filter(|(_, entry)| entry.expires <= now)
            .map(|(addr, _)| *addr)
            .collect();
        for addr in &expired {
            self.forget(*addr);
            self.counts.expired += 1;
        }
        expired.into_iter().map(Change::Remove).collect()
    }

    /// Each name with the addresses learned for it and when they expire.
    #[must_use]
    pub fn view(&self, now: Instant, bytes: &[u64]) -> Vec<GardenNameView> {
        let wall = chrono::Utc::now();
        self.names
            .iter()
            .enumerate()
            .map(|(index, name)| {
                let mut addresses: Vec<LearnedView> = self
                    .learned
                    .iter()
                    .filter(|(_, entry)| entry.names.contains(&index))
                    .map(|(addr, entry)| {
                        let left = entry.expires.saturating_duration_since(now);
                        LearnedView {
                            address: *addr,
                            expires_in_secs: left.as_secs(),
                            expires_at: chrono::Duration::from_std(left)
                                .ok()
                                .and_then(|left| wall.checked_add_signed(left))
                                .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                        }
                    })
                    .collect();
                addresses.sort_by_key(|learned| learned.address);
                GardenNameView {
                    name: name.pattern(),
                    port: name.port.map(NonZeroU16::get),
                    addresses,
                    unpaid_bytes: bytes.get(index).copied().unwrap_or(0),
                }
            })
            .collect()
    }

    /// How many addresses are learned now.
    #[must_use]
    pub fn learned_count(&self) -> usize {
        self.learned.len()
    }

    fn forget(&mut self, addr: IpAddr) {
        if let Some(entry) = self.learned.remove(&addr) {
            self.by_age.remove(&(entry.order, addr));
        }
    }

    /// The kernel's entry for an address learned for `names`: the ports of all of them
    /// (any port if one allows any, or if there are more than an entry holds), the first
    /// name's index for the bytes counters.
    fn entry_value(&self, names: &BTreeSet<usize>) -> GardenLearned {
        let mut ports = GardenPorts::default();
        let mut list: Vec<u16> = Vec::new();
        for index in names {
            match self.names.get(*index).and_then(|name| name.port) {
                Some(port) => list.push(port.get()),
                None => ports.any_port = 1,
            }
        }
        list.sort_unstable();
        list.dedup();
        if list.len() > GARDEN_PORTS {
            ports.any_port = 1;
        }
        if ports.any_port == 0 {
            for (slot, port) in ports.ports.iter_mut().zip(&list) {
                *slot = *port;
            }
            ports.count = u16::try_from(list.len()).unwrap_or(0);
        }
        let first = names.first().copied().unwrap_or(0);
        GardenLearned::new(ports, u32::try_from(first).unwrap_or(0))
    }

    /// The addresses of an answer that belong to configured names: each with the indexes of
    /// the names that lead to it and its TTL.
    fn matches(&self, answer: &Answer) -> Vec<(IpAddr, BTreeSet<usize>, u32)> {
        // The names reached from the question through the CNAMEs, each with the configured
        // names matched on the way to it.
        let mut reached: Vec<(String, BTreeSet<usize>)> = Vec::new();
        let mut current = answer.question.clone();
        let mut matched = self.matching(&current);
        for _ in 0..=MAX_CNAME_HOPS {
            reached.push((current.clone(), matched.clone()));
            let Some((_, target)) = answer.cnames.iter().find(|(owner, _)| *owner == current)
            else {
                break;
            };
            if reached.iter().any(|(name, _)| name == target) {
                break;
            }
            current.clone_from(target);
            matched.extend(self.matching(&current));
        }
        answer
            .addresses
            .iter()
            .filter_map(|(owner, addr, ttl)| {
                let (_, names) = reached.iter().find(|(name, _)| name == owner)?;
                (!names.is_empty()).then(|| (*addr, names.clone(), *ttl))
            })
            .collect()
    }

    fn matching(&self, host: &str) -> BTreeSet<usize> {
        self.names
            .iter()
            .enumerate()
            .filter(|(_, name)| name.matches(host))
            .map(|(index, _)| index)
            .collect()
    }
}

/// `GET /v1/garden`: every name, and how full the table of learned addresses is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GardenView {
    pub names: Vec<GardenNameView>,
    /// Addresses learned now, and how many the kernel's table holds.
    pub learned: usize,
    pub capacity: u32,
    pub counts: GardenCounts,
}

/// What `GET /v1/garden` shows of a name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GardenNameView {
    /// `pay.example.com` or `*.example.com`.
    pub name: String,
    /// The one port open there; `None`: every port.
    pub port: Option<u16>,
    pub addresses: Vec<LearnedView>,
    /// Bytes clients without a running session sent to its addresses (IP level).
    pub unpaid_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LearnedView {
    pub address: IpAddr,
    pub expires_in_secs: u64,
    /// RFC 3339, UTC.
    pub expires_at: Option<String>,
}

/// The configured host names, and `portal.url`'s host when `portal.mode = "external"` names
/// a host (not an address) other than the box: its clients must reach the portal unpaid.
#[must_use]
pub fn names_of(config: &Config) -> Vec<GardenName> {
    let mut names: Vec<GardenName> = config
        .network
        .walled_garden
        .iter()
        .filter_map(|entry| entry.name().cloned())
        .collect();
    if config.portal.mode == PortalMode::External
        && let Some(name) = portal_name(&config.portal.url)
        && !names.contains(&name)
    {
        names.push(name);
    }
    names
}

/// The host of an `http://` or `https://` URL as a garden name with the URL's port; `None`
/// for an address or anything that is no host name.
fn portal_name(url: &str) -> Option<GardenName> {
    let (rest, default_port) = if let Some(rest) = url.strip_prefix("https://") {
        (rest, "443")
    } else {
        (url.strip_prefix("http://")?, "80")
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    if authority.starts_with('[') {
        return None;
    }
    let (host, port) = authority
        .split_once(':')
        .unwrap_or((authority, default_port));
    if host.parse::<IpAddr>().is_ok() {
        return None;
    }
    match format!("{host}:{port}").parse() {
        Ok(crate::config::WalledGardenEntry::Name(name)) => Some(name),
        _ => None,
    }
}

/// What a DNS answer says, names lower-case without the trailing dot.
#[derive(Debug, Default, PartialEq, Eq)]
struct Answer {
    question: String,
    /// `(alias, canonical name)`.
    cnames: Vec<(String, String)>,
    /// `(owner name, address, TTL in seconds)`.
    addresses: Vec<(String, IpAddr, u32)>,
}

/// The answer section of a successful DNS response with one question; `None` for anything
/// else (a query, an error, a malformed or truncated message).
fn parse_answer(message: &[u8]) -> Option<Answer> {
    let packet = Packet::parse(message).ok()?;
    if !packet.has_flags(PacketFlag::RESPONSE) || packet.rcode() != RCODE::NoError {
        return None;
    }
    let [question] = packet.questions.as_slice() else {
        return None;
    };
    let mut answer = Answer {
        question: host_of(&question.qname.to_string()),
        ..Answer::default()
    };
    for record in &packet.answers {
        if record.class != CLASS::IN {
            continue;
        }
        let owner = host_of(&record.name.to_string());
        match &record.rdata {
            RData::A(a) => {
                answer
                    .addresses
                    .push((owner, IpAddr::V4(a.address.into()), record.ttl));
            }
            RData::AAAA(aaaa) => {
                answer
                    .addresses
                    .push((owner, IpAddr::V6(aaaa.address.into()), record.ttl));
            }
            RData::CNAME(cname) => answer.cnames.push((owner, host_of(&cname.0.to_string()))),
            _ => {}
        }
    }
    Some(answer)
}

fn host_of(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    lower.strip_suffix('.').map(str::to_owned).unwrap_or(lower)
}

#[cfg(test)]
mod tests;
