//! The kernel's neighbour tables (ARP for IPv4, neighbour discovery for IPv6): how many entries
//! each holds, its limit (`gc_thresh3`) and how often a new entry was refused because it was
//! full (`ndts_table_fulls`), from one `RTM_GETNEIGHTBL` dump. The tables are the kernel's, one
//! per family for every network namespace together. Read-only.

use std::io;

use super::raw::{self, Malformed, NLMSG_DONE, NLMSG_ERROR, RawSocket};
use crate::alerts::NeighbourTable;

// uapi linux/rtnetlink.h, linux/neighbour.h
const RTM_NEWNEIGHTBL: u16 = 64;
const RTM_GETNEIGHTBL: u16 = 66;
/// `struct ndtmsg`: family and three pad bytes.
const NDTMSG_LEN: usize = 4;
const NDTA_THRESH3: u16 = 4;
const NDTA_CONFIG: u16 = 5;
const NDTA_STATS: u16 = 7;
/// `ndt_config.ndtc_entries`, after the key length and entry size (two `u16`).
const CONFIG_ENTRIES_AT: usize = 4;
/// `ndt_stats.ndts_table_fulls`, the eleventh `u64`.
const STATS_TABLE_FULLS_AT: usize = 10 * 8;
#[expect(clippy::cast_possible_truncation, reason = "AF_INET is 2")]
const AF_INET: u8 = libc::AF_INET as u8;
#[expect(clippy::cast_possible_truncation, reason = "AF_INET6 is 10")]
const AF_INET6: u8 = libc::AF_INET6 as u8;

/// One family's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FamilyTable {
    pub family: Family,
    pub table: NeighbourTable,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    /// The `sysctl` folder of the family's neighbour settings.
    #[must_use]
    pub const fn sysctl(self) -> &'static str {
        match self {
            Self::Ipv4 => "net.ipv4.neigh.default",
            Self::Ipv6 => "net.ipv6.neigh.default",
        }
    }

    /// As people write it.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Ipv4 => "IPv4",
            Self::Ipv6 => "IPv6",
        }
    }
}

/// A socket for the dumps.
pub struct NeighbourTables {
    socket: RawSocket,
}

impl NeighbourTables {
    pub fn open() -> io::Result<Self> {
        Ok(Self {
            socket: RawSocket::open(0)?,
        })
    }

    /// The IPv4 and IPv6 tables as they are now.
    pub async fn read(&mut self) -> io::Result<Vec<FamilyTable>> {
        // AF_UNSPEC: every table.
        let sequence = self.socket.dump(RTM_GETNEIGHTBL, &[0; NDTMSG_LEN])?;
        let mut tables = Vec::new();
        loop {
            let bytes = self.socket.receive().await?;
            if parse(bytes, sequence, &mut tables)? {
                return Ok(tables);
            }
        }
    }
}

/// Adds the tables among the messages of one datagram of dump `sequence` to `out`; returns
/// whether the dump is over.
fn parse(bytes: &[u8], sequence: u32, out: &mut Vec<FamilyTable>) -> io::Result<bool> {
    for message in raw::messages(bytes) {
        let message = message?;
        if message.sequence != sequence {
            continue;
        }
        match message.kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                return Err(message
                    .error()
                    .unwrap_or_else(|| io::Error::from(Malformed)));
            }
            RTM_NEWNEIGHTBL => out.extend(table(message.body)?),
            _ => {}
        }
    }
    Ok(false)
}

/// The table one message describes; `None` for another family, or for the messages that
/// carry one device's settings and no statistics.
fn table(body: &[u8]) -> Result<Option<FamilyTable>, Malformed> {
    if body.len() < NDTMSG_LEN {
        return Err(Malformed);
    }
    let family = match body[0] {
        AF_INET => Family::Ipv4,
        AF_INET6 => Family::Ipv6,
        _ => return Ok(None),
    };
    let (mut limit, mut entries, mut overflows) = (None, None, None);
    for attribute in raw::attributes(&body[NDTMSG_LEN..]) {
        match attribute? {
            (NDTA_THRESH3, value) if value.len() >= 4 => {
                limit = Some(u64::from(raw::u32_at(value, 0)));
            }
            (NDTA_CONFIG, value) if value.len() >= CONFIG_ENTRIES_AT + 4 => {
                entries = Some(u64::from(raw::u32_at(value, CONFIG_ENTRIES_AT)));
            }
            (NDTA_STATS, value) if value.len() >= STATS_TABLE_FULLS_AT + 8 => {
                overflows = Some(raw::u64_at(value, STATS_TABLE_FULLS_AT));
            }
            _ => {}
        }
    }
    let Some(overflows) = overflows else {
        return Ok(None);
    };
    Ok(Some(FamilyTable {
        family,
        table: NeighbourTable {
            entries: entries.unwrap_or(0),
            limit: limit.unwrap_or(0),
            overflows,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::raw::build;

    fn table_message(sequence: u32, family: u8, with_stats: bool) -> Vec<u8> {
        let thresh3 = 1_024u32.to_ne_bytes();
        let mut config = [0u8; 32];
        config[CONFIG_ENTRIES_AT..CONFIG_ENTRIES_AT + 4].copy_from_slice(&1_000u32.to_ne_bytes());
        let mut stats = [0u8; 88];
        stats[STATS_TABLE_FULLS_AT..].copy_from_slice(&276u64.to_ne_bytes());
        let mut attributes: Vec<(u16, &[u8])> = vec![
            (1, b"ndisc_cache\0"),
            (NDTA_THRESH3, &thresh3),
            (NDTA_CONFIG, &config),
        ];
        if with_stats {
            attributes.push((NDTA_STATS, &stats));
        }
        let body = build::with_attributes(&[family, 0, 0, 0], &attributes);
        build::message(RTM_NEWNEIGHTBL, sequence, &body)
    }

    #[test]
    fn reads_each_familys_table_and_skips_device_settings() {
        let mut bytes = table_message(4, AF_INET6, true);
        bytes.extend(table_message(4, AF_INET6, false));
        bytes.extend(table_message(3, AF_INET, true));
        let mut out = Vec::new();
        assert!(!parse(&bytes, 4, &mut out).unwrap());
        assert_eq!(
            out,
            vec![FamilyTable {
                family: Family::Ipv6,
                table: NeighbourTable {
                    entries: 1_000,
                    limit: 1_024,
                    overflows: 276,
                },
            }]
        );
        assert!(parse(&build::message(NLMSG_DONE, 4, &[0; 4]), 4, &mut out).unwrap());
    }

    #[tokio::test]
    async fn dumps_the_tables_of_this_kernel() {
        let mut tables = NeighbourTables::open().unwrap();
        let read = tables.read().await.unwrap();
        for family in [Family::Ipv4, Family::Ipv6] {
            let found = read.iter().find(|table| table.family == family);
            assert!(found.is_some_and(|found| found.table.limit > 0), "{read:?}");
        }
        // The socket serves the next dump too.
        assert!(!tables.read().await.unwrap().is_empty());
    }
}
