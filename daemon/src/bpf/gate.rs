//! The walled garden in the kernel: the destinations a client without a running session may
//! reach (the grants are `clients.rs`'s). Side effects: writes `WALLED_GARDEN`. A free
//! function on [`Ebpf`] so tests that load the object themselves use the same code as the
//! daemon.

use std::collections::BTreeMap;

use aya::{
    Ebpf,
    maps::{
        MapData,
        lpm_trie::{Key, LpmTrie},
    },
};
use hotspotd_common::{GARDEN_PORTS, GardenPorts, MAP_WALLED_GARDEN};

use super::{BpfError, typed_map_mut};
use crate::{config::WalledGardenEntry, net::ip_key};

/// One walled-garden prefix as the programs match it: the prefix length over 128 bits
/// (IPv4 is IPv4-mapped, so its prefix gains 96) and the address.
type GardenKey = (u32, [u8; 16]);

/// Makes `WALLED_GARDEN` hold exactly `entries`, touching only what changed.
pub fn set_walled_garden(ebpf: &mut Ebpf, entries: &[WalledGardenEntry]) -> Result<(), BpfError> {
    let map_error = |source| BpfError::Map {
        name: MAP_WALLED_GARDEN,
        source,
    };
    let wanted = garden_table(entries);
    let mut trie: LpmTrie<&mut MapData, [u8; 16], GardenPorts> =
        typed_map_mut(ebpf, MAP_WALLED_GARDEN)?;
    let present: BTreeMap<GardenKey, GardenPorts> = trie
        .iter()
        .filter_map(Result::ok)
        .map(|(key, ports)| ((key.prefix_len(), key.data()), ports))
        .collect();
    for key in present.keys().filter(|key| !wanted.contains_key(key)) {
        trie.remove(&Key::new(key.0, key.1)).map_err(map_error)?;
    }
    for (key, ports) in &wanted {
        if present.get(key) != Some(ports) {
            trie.insert(&Key::new(key.0, key.1), *ports, 0)
                .map_err(map_error)?;
        }
    }
    Ok(())
}

/// The walled garden as longest-prefix-match entries. A packet is judged by its longest
/// matching prefix only, so each prefix also carries the ports of every shorter prefix that
/// covers it: `10.0.0.0/8` (any port) then still allows any port inside `10.1.0.0/16:443`.
/// Prefixes with more ports than an entry holds allow any port.
fn garden_table(entries: &[WalledGardenEntry]) -> BTreeMap<GardenKey, GardenPorts> {
    // Host names are learned from DNS answers instead (`crate::garden`).
    let keyed: Vec<(GardenKey, Option<u16>)> = entries
        .iter()
        .filter_map(WalledGardenEntry::net)
        .map(|entry| {
            let addr = ip_key(entry.net.addr()).addr;
            let bits =
                u32::from(entry.net.prefix_len()) + if entry.net.addr().is_ipv4() { 96 } else { 0 };
            ((bits, addr), entry.port.map(std::num::NonZeroU16::get))
        })
        .collect();
    let mut table: BTreeMap<GardenKey, (bool, Vec<u16>)> = BTreeMap::new();
    for (key, _) in &keyed {
        let (any_port, ports) = table.entry(*key).or_default();
        for (other, port) in &keyed {
            if !covers(*other, *key) {
                continue;
            }
            match port {
                None => *any_port = true,
                Some(port) if !ports.contains(port) => ports.push(*port),
                Some(_) => {}
            }
        }
    }
    table
        .into_iter()
        .map(|(key, (any_port, ports))| {
            let mut value = GardenPorts::default();
            if any_port || ports.len() > GARDEN_PORTS {
                value.any_port = 1;
            } else {
                for (slot, port) in value.ports.iter_mut().zip(&ports) {
                    *slot = *port;
                }
                value.count = u16::try_from(ports.len()).unwrap_or(0);
            }
            (key, value)
        })
        .collect()
}

/// Whether prefix `outer` contains prefix `inner`.
fn covers(outer: GardenKey, inner: GardenKey) -> bool {
    let (outer_bits, outer_addr) = outer;
    let (inner_bits, inner_addr) = inner;
    if outer_bits > inner_bits {
        return false;
    }
    let outer = u128::from_be_bytes(outer_addr);
    let inner = u128::from_be_bytes(inner_addr);
    let mask = if outer_bits == 0 {
        0
    } else {
        u128::MAX << (128 - outer_bits)
    };
    outer & mask == inner & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(texts: &[&str]) -> Vec<WalledGardenEntry> {
        texts
            .iter()
            .map(|text| text.parse().expect("valid entry"))
            .collect()
    }

    fn key(text: &str) -> GardenKey {
        let entry: crate::config::GardenNet = text.parse().expect("valid entry");
        let bits =
            u32::from(entry.net.prefix_len()) + if entry.net.addr().is_ipv4() { 96 } else { 0 };
        (bits, ip_key(entry.net.addr()).addr)
    }

    #[test]
    fn ports_of_one_prefix_are_merged() {
        let table = garden_table(&entries(&["192.0.2.0/24:80", "192.0.2.0/24:443"]));
        let ports = table[&key("192.0.2.0/24")];
        assert_eq!((ports.any_port, ports.count), (0, 2));
        assert_eq!(&ports.ports[..2], &[80, 443]);
    }

    #[test]
    fn a_covering_prefix_lends_its_ports() {
        let table = garden_table(&entries(&["10.0.0.0/8", "10.1.0.0/16:443"]));
        assert_eq!(
            table[&key("10.1.0.0/16")].any_port,
            1,
            "the /8 allows any port inside"
        );
        let table = garden_table(&entries(&["10.0.0.0/8:53", "10.1.0.0/16:443"]));
        let inner = table[&key("10.1.0.0/16")];
        assert_eq!((inner.any_port, inner.count), (0, 2));
        let outer = table[&key("10.0.0.0/8")];
        assert_eq!(
            (outer.count, outer.ports[0]),
            (1, 53),
            "the /16 lends nothing outward"
        );
    }

    #[test]
    fn families_do_not_mix() {
        let table = garden_table(&entries(&["0.0.0.0/0:53", "[2001:db8::/32]:443"]));
        let v6 = table[&key("[2001:db8::/32]:443")];
        assert_eq!((v6.any_port, v6.count, v6.ports[0]), (0, 1, 443));
        assert_eq!(
            key("0.0.0.0/0:53").0,
            96,
            "IPv4's /0 is the IPv4-mapped /96"
        );
    }

    #[test]
    fn too_many_ports_allow_any() {
        let texts: Vec<String> = (1..=20).map(|port| format!("192.0.2.1:{port}")).collect();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        assert_eq!(
            garden_table(&entries(&texts))[&key("192.0.2.1")].any_port,
            1
        );
    }
}
