//! The box's own addresses and its free client services in the programs' maps: traffic with
//! those services is local, never billed, and all a client without a session reaches on the
//! box. Side effects: writes `LOCAL_ADDRS`, `LOCAL_TABLE` and `CONFIG`.

use std::collections::BTreeSet;

use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData},
};
use hotspotd_common::{
    IpKey, LOCAL_ADDR_PRESENT, LOCAL_SERVICES_LEN, LOCAL_TABLE_LEN, LocalTable, MAP_CONFIG,
    MAP_LOCAL_ADDRS, MAP_LOCAL_TABLE, config_word, local_filter_v4, local_filter_v6, local_service,
};

/// The box's free client services as the programs hold them: TCP and UDP ports, and whether
/// ICMP (v4 and v6) and IGMP are free (`network.local_services`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalServices {
    /// `(IP protocol, port)`: 6 for TCP, 17 for UDP. At most [`LOCAL_SERVICES_LEN`].
    pub ports: Vec<(u8, u16)>,
    pub control: bool,
}

impl LocalServices {
    /// The programs' form of `network.local_services`.
    #[must_use]
    pub fn of(services: &[LocalService]) -> Self {
        let mut table = Self::default();
        for service in services {
            match service {
                LocalService::Tcp(port) => table.ports.push((IPPROTO_TCP, port.get())),
                LocalService::Udp(port) => table.ports.push((IPPROTO_UDP, port.get())),
                LocalService::Icmp => table.control = true,
            }
        }
        table
    }

    /// `network.local_services`, and the portal's own ports while it listens (HTTPS too when
    /// it has a certificate): a client without a session must reach the portal whatever the
    /// list says.
    #[must_use]
    pub fn of_config(config: &Config) -> Self {
        let mut table = Self::of(&config.network.local_services);
        if config.portal.mode == PortalMode::Off {
            return table;
        }
        let mut ports = vec![config.portal.listen_port];
        if config.portal.tls_enabled() {
            ports.push(config.portal.tls_port);
        }
        for port in ports {
            let portal = (IPPROTO_TCP, port);
            if !table.ports.contains(&portal) {
                table.ports.push(portal);
            }
        }
        table
    }
}

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

use super::{BpfError, typed_map, typed_map_mut};
use crate::config::{Config, LocalService, PortalMode};

/// Makes the box's addresses in the programs' maps exactly `addrs`, and its free services
/// `services`: `LOCAL_ADDRS` touched only where it changed, and the inline `LOCAL_TABLE`
/// written to its unused slot and then made current, so a packet never sees a half-written
/// table. Public for tests that load the object themselves.
pub fn set_local_addrs(
    ebpf: &mut Ebpf,
    addrs: &BTreeSet<IpKey>,
    services: &LocalServices,
) -> Result<(), BpfError> {
    let hash_error = |source| BpfError::Map {
        name: MAP_LOCAL_ADDRS,
        source,
    };
    let mut hash: HashMap<&mut MapData, IpKey, u32> = typed_map_mut(ebpf, MAP_LOCAL_ADDRS)?;
    let present: BTreeSet<IpKey> = hash.keys().filter_map(Result::ok).collect();
    for stale in present.difference(addrs) {
        hash.remove(stale).map_err(hash_error)?;
    }
    for new in addrs.difference(&present) {
        hash.insert(new, LOCAL_ADDR_PRESENT, 0)
            .map_err(hash_error)?;
    }

    let config_error = |source| BpfError::Map {
        name: MAP_CONFIG,
        source,
    };
    let table_error = |source| BpfError::Map {
        name: MAP_LOCAL_TABLE,
        source,
    };
    let config: Array<&MapData, u32> = typed_map(ebpf, MAP_CONFIG)?;
    let current = config
        .get(&config_word::LOCAL_TABLE_SLOT, 0)
        .map_err(config_error)?
        & 1;
    let table = local_table(addrs, services);
    let mut tables: Array<&mut MapData, LocalTable> = typed_map_mut(ebpf, MAP_LOCAL_TABLE)?;
    if tables.get(&current, 0).map_err(table_error)? == table {
        return Ok(());
    }
    let unused = current ^ 1;
    tables.set(unused, table, 0).map_err(table_error)?;
    let mut config: Array<&mut MapData, u32> = typed_map_mut(ebpf, MAP_CONFIG)?;
    config
        .set(config_word::LOCAL_TABLE_SLOT, unused, 0)
        .map_err(config_error)?;
    Ok(())
}

/// The inline table of the box's addresses: the first [`LOCAL_TABLE_LEN`] of each family, and
/// `overflow` set when there are more, so the programs ask the hash map too; and its free
/// services (the configuration holds no more than the table).
fn local_table(addrs: &BTreeSet<IpKey>, services: &LocalServices) -> LocalTable {
    let mut table = LocalTable::default();
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for key in addrs {
        match std::net::Ipv6Addr::from(key.addr).to_ipv4_mapped() {
            Some(v4_addr) => v4.push(v4_addr.octets()),
            None => v6.push(key.addr),
        }
    }
    for (slot, addr) in table.v4.iter_mut().zip(&v4) {
        *slot = *addr;
    }
    for (slot, addr) in table.v6.iter_mut().zip(&v6) {
        *slot = *addr;
    }
    let fits = |len: usize| u32::try_from(len.min(LOCAL_TABLE_LEN)).unwrap_or(0);
    table.v4_count = fits(v4.len());
    table.v6_count = fits(v6.len());
    table.overflow = u32::from(v4.len() > LOCAL_TABLE_LEN || v6.len() > LOCAL_TABLE_LEN);
    table.filter = v4
        .iter()
        .map(|addr| local_filter_v4(*addr))
        .fold(0, |a, b| a | b)
        | v6.iter().map(local_filter_v6).fold(0, |a, b| a | b);
    for (slot, (protocol, port)) in table.services.iter_mut().zip(&services.ports) {
        *slot = local_service(*protocol, *port);
    }
    table.service_count = fits_services(services.ports.len());
    table.control = u32::from(services.control);
    table
}

fn fits_services(len: usize) -> u32 {
    u32::try_from(len.min(LOCAL_SERVICES_LEN)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::ip_key;

    fn keys(addrs: &[&str]) -> BTreeSet<IpKey> {
        addrs
            .iter()
            .map(|addr| ip_key(addr.parse().expect("valid address")))
            .collect()
    }

    #[test]
    fn the_filter_has_every_address_of_the_box_and_lets_most_others_skip_the_walk() {
        let mut addrs: Vec<String> = (1..=40).map(|n| format!("10.1.{n}.1")).collect();
        addrs.extend((1..=40).map(|n| format!("2001:db8:{n:x}::1")));
        let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
        let table = local_table(&keys(&refs), &LocalServices::default());
        assert_eq!(table.overflow, 1, "more than the table holds");
        for key in keys(&refs) {
            let bit = match std::net::Ipv6Addr::from(key.addr).to_ipv4_mapped() {
                Some(v4) => local_filter_v4(v4.octets()),
                None => local_filter_v6(&key.addr),
            };
            assert_ne!(table.filter & bit, 0, "{key:?} (beyond the table too)");
        }
        let few = local_table(
            &keys(&["192.168.50.1", "198.51.100.2", "fe80::1", "2001:db8:50::1"]),
            &LocalServices::default(),
        );
        assert!(few.filter.count_ones() <= 4);
        let skipped = (0..=255u8)
            .filter(|n| few.filter & local_filter_v4([203, 0, 113, *n]) == 0)
            .count();
        assert!(
            skipped > 200,
            "only {skipped} of 256 other addresses skip the walk"
        );
    }

    #[test]
    fn local_table_splits_families() {
        let table = local_table(
            &keys(&["192.0.2.1", "2001:db8::1", "198.51.100.254"]),
            &LocalServices::default(),
        );
        assert_eq!((table.v4_count, table.v6_count, table.overflow), (2, 1, 0));
        assert!(table.v4[..2].contains(&[192, 0, 2, 1]));
        assert!(table.v4[..2].contains(&[198, 51, 100, 254]));
        assert_eq!(
            table.v6[0],
            "2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .expect("valid")
                .octets()
        );
    }

    #[test]
    fn the_portals_ports_are_free_while_it_listens() {
        let tcp = |config: &Config| -> Vec<u16> {
            LocalServices::of_config(config)
                .ports
                .into_iter()
                .filter_map(|(protocol, port)| (protocol == IPPROTO_TCP).then_some(port))
                .collect()
        };
        let mut config = Config::default();
        config.network.local_services = vec![LocalService::Icmp];
        assert_eq!(tcp(&config), [2050], "plain HTTP only");
        config.portal.tls_cert = "/etc/hotspotd/portal.pem".into();
        config.portal.tls_key = "/etc/hotspotd/portal.key".into();
        config.portal.tls_port = 8443;
        assert_eq!(tcp(&config), [2050, 8443], "HTTPS too");
        config.portal.mode = PortalMode::Off;
        assert_eq!(tcp(&config), [0_u16; 0], "no listener, no free port");
    }

    #[test]
    fn local_table_overflows_to_the_hash_map() {
        let many: Vec<String> = (0..=LOCAL_TABLE_LEN)
            .map(|i| format!("10.0.0.{i}"))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let table = local_table(&keys(&many), &LocalServices::default());
        assert_eq!(table.v4_count as usize, LOCAL_TABLE_LEN);
        assert_eq!(table.overflow, 1);
    }
}
