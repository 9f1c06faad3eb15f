//! Loads hotspotd's eBPF programs, attaches them to the LAN interface and gives typed access to
//! their maps. Side effects: pins the maps under `kernel.pin_dir` (so counters outlive a
//! crashed daemon), attaches two tc programs with TCX (clsact on kernels before 6.6). Dropping
//! [`Kernel`] detaches the programs; [`Kernel::remove_pins`] forgets the maps on a clean exit.

use std::{
    collections::BTreeSet,
    io,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, PerCpuHashMap},
    programs::{SchedClassifier, TcAttachType, TestRun as _, TestRunOptions, tc},
    util::KernelVersion,
};
use hotspotd_common::{
    CLOCK_PROBE, IpKey, LOCAL_ADDR_PRESENT, LOCAL_TABLE_LEN, LocalTable, MAP_CLOCK, MAP_CONFIG,
    MAP_LAYOUT_VERSION, MAP_LOCAL_ADDRS, MAP_LOCAL_TABLE, MAP_STATS, MAP_USAGE, MacKey, Usage,
    config_word, stat,
};

/// The compiled eBPF object (programs `lan_ingress`, `lan_egress`, `bench_empty`; maps in
/// `hotspotd_common`), built by `build.rs`.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/hotspotd-ebpf"));

/// Program names in [`EBPF_OBJECT`] (and [`CLOCK_PROBE`]).
pub const PROGRAM_INGRESS: &str = "lan_ingress";
pub const PROGRAM_EGRESS: &str = "lan_egress";
pub const PROGRAM_EMPTY: &str = "bench_empty";

/// `statfs` magic of the BPF filesystem.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error(
        "{path} is not on a BPF filesystem: mount one with 'mount -t bpf bpf /sys/fs/bpf' or set kernel.pin_dir"
    )]
    NotBpfFs { path: PathBuf },
    #[error("cannot create the pin folder {path}: {source}")]
    PinDir { path: PathBuf, source: io::Error },
    #[error(
        "cannot load the eBPF object: {0} (hotspotd needs root or CAP_BPF + CAP_NET_ADMIN, and a kernel with BTF)"
    )]
    Load(#[from] aya::EbpfError),
    #[error("the eBPF object has no program '{name}'")]
    MissingProgram { name: &'static str },
    #[error("the eBPF object has no map '{name}'")]
    MissingMap { name: &'static str },
    #[error("the kernel rejected program '{name}': {source}")]
    Program {
        name: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error(
        "network.lan_interface '{iface}' does not exist: create it or set network.lan_interface to the interface the clients are on"
    )]
    NoInterface { iface: String },
    #[error("cannot attach '{name}' to {iface}: {source}")]
    Attach {
        name: &'static str,
        iface: String,
        source: aya::programs::ProgramError,
    },
    #[error("map '{name}': {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
}

/// The loaded programs and their maps; the programs stay attached while this lives.
pub struct Kernel {
    ebpf: Ebpf,
    pin_dir: PathBuf,
}

impl Kernel {
    /// Loads the object, reusing maps pinned under `pin_dir` by an earlier run (so no count
    /// is lost across a crash), and loads the programs into the kernel without attaching them.
    pub fn load(pin_dir: &Path) -> Result<Self, BpfError> {
        let pin_dir = pin_dir.join(format!("v{MAP_LAYOUT_VERSION}"));
        std::fs::create_dir_all(&pin_dir).map_err(|source| BpfError::PinDir {
            path: pin_dir.clone(),
            source,
        })?;
        if !is_bpf_fs(&pin_dir) {
            return Err(BpfError::NotBpfFs { path: pin_dir });
        }
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&pin_dir)
            .load(EBPF_OBJECT)?;
        for name in [PROGRAM_INGRESS, PROGRAM_EGRESS, CLOCK_PROBE] {
            classifier(&mut ebpf, name)?
                .load()
                .map_err(|source| BpfError::Program { name, source })?;
        }
        Ok(Self { ebpf, pin_dir })
    }

    /// Attaches upload accounting to `iface`'s ingress and download accounting to its egress.
    pub fn attach(&mut self, iface: &str) -> Result<(), BpfError> {
        if nix::net::if_::if_nametoindex(iface).is_err() {
            return Err(BpfError::NoInterface {
                iface: iface.to_owned(),
            });
        }
        if !KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0)) {
            // Without TCX the programs hang off a clsact qdisc; it may already be there.
            let _ = tc::qdisc_add_clsact(iface);
        }
        for (name, attach_type) in [
            (PROGRAM_INGRESS, TcAttachType::Ingress),
            (PROGRAM_EGRESS, TcAttachType::Egress),
        ] {
            classifier(&mut self.ebpf, name)?
                .attach(iface, attach_type)
                .map_err(|source| BpfError::Attach {
                    name,
                    iface: iface.to_owned(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Every client the kernel has seen, with its counters summed over CPUs.
    pub fn usage(&self) -> Result<Vec<(MacKey, Usage)>, BpfError> {
        let map: PerCpuHashMap<&MapData, MacKey, Usage> = self.map(MAP_USAGE)?;
        let mut clients = Vec::new();
        for entry in &map {
            // An entry deleted between the key walk and its lookup is simply skipped.
            let Ok((mac, per_cpu)) = entry else { continue };
            let usage = per_cpu.iter().fold(Usage::default(), Usage::merged);
            clients.push((mac, usage));
        }
        Ok(clients)
    }

    /// Makes the box's addresses in the kernel exactly `addrs`; see [`set_local_addrs`].
    pub fn sync_local_addrs(&mut self, addrs: &BTreeSet<IpKey>) -> Result<(), BpfError> {
        set_local_addrs(&mut self.ebpf, addrs)
    }

    /// The kernel's jiffies now, read by running the clock probe program.
    pub fn jiffies(&self) -> Result<u64, BpfError> {
        let probe: &SchedClassifier = self
            .ebpf
            .program(CLOCK_PROBE)
            .ok_or(BpfError::MissingProgram { name: CLOCK_PROBE })?
            .try_into()
            .map_err(|source| BpfError::Program {
                name: CLOCK_PROBE,
                source,
            })?;
        // BPF_PROG_TEST_RUN wants at least an Ethernet header; the probe never reads it.
        let frame = [0u8; 14];
        probe
            .test_run(TestRunOptions {
                data_in: Some(&frame),
                ..TestRunOptions::default()
            })
            .map_err(|source| BpfError::Program {
                name: CLOCK_PROBE,
                source,
            })?;
        let clock: Array<&MapData, u64> = self.map(MAP_CLOCK)?;
        clock.get(&0, 0).map_err(|source| BpfError::Map {
            name: MAP_CLOCK,
            source,
        })
    }

    /// Global counters of what could not be accounted to a client.
    pub fn stats(&self) -> Result<KernelStats, BpfError> {
        let map: PerCpuArray<&MapData, u64> = self.map(MAP_STATS)?;
        let read = |index| -> Result<u64, BpfError> {
            let per_cpu = map.get(&index, 0).map_err(|source| BpfError::Map {
                name: MAP_STATS,
                source,
            })?;
            Ok(per_cpu.iter().sum())
        };
        Ok(KernelStats {
            malformed_packets: read(stat::MALFORMED_PACKETS)?,
            untracked_packets: read(stat::UNTRACKED_PACKETS)?,
            non_ip_packets: read(stat::NON_IP_PACKETS)?,
        })
    }

    /// Removes the pinned maps, for a clean exit: the next start begins from zero.
    pub fn remove_pins(&self) -> io::Result<()> {
        for name in [
            MAP_USAGE,
            MAP_LOCAL_ADDRS,
            MAP_LOCAL_TABLE,
            MAP_CONFIG,
            MAP_STATS,
        ] {
            match std::fs::remove_file(self.pin_dir.join(name)) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        match std::fs::remove_dir(&self.pin_dir) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }

    fn map<'a, T>(&'a self, name: &'static str) -> Result<T, BpfError>
    where
        T: TryFrom<&'a aya::maps::Map, Error = aya::maps::MapError>,
    {
        typed_map(&self.ebpf, name)
    }
}

fn typed_map<'a, T>(ebpf: &'a Ebpf, name: &'static str) -> Result<T, BpfError>
where
    T: TryFrom<&'a aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.map(name).ok_or(BpfError::MissingMap { name })?;
    T::try_from(map).map_err(|source| BpfError::Map { name, source })
}

fn typed_map_mut<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<T, BpfError>
where
    T: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.map_mut(name).ok_or(BpfError::MissingMap { name })?;
    T::try_from(map).map_err(|source| BpfError::Map { name, source })
}

/// Makes the box's addresses in the programs' maps exactly `addrs`: `LOCAL_ADDRS` touched only
/// where it changed, and the inline `LOCAL_TABLE` written to its unused slot and then made
/// current, so a packet never sees a half-written table. Public for tests that load the
/// object themselves.
pub fn set_local_addrs(ebpf: &mut Ebpf, addrs: &BTreeSet<IpKey>) -> Result<(), BpfError> {
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
    let table = local_table(addrs);
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

/// Counters of `STATS`, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KernelStats {
    pub malformed_packets: u64,
    pub untracked_packets: u64,
    pub non_ip_packets: u64,
}

/// The inline table of the box's addresses: the first [`LOCAL_TABLE_LEN`] of each family, and
/// `overflow` set when there are more, so the programs ask the hash map too.
fn local_table(addrs: &BTreeSet<IpKey>) -> LocalTable {
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
    table
}

fn classifier<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut SchedClassifier, BpfError> {
    let program = ebpf
        .program_mut(name)
        .ok_or(BpfError::MissingProgram { name })?;
    program
        .try_into()
        .map_err(|source| BpfError::Program { name, source })
}

fn is_bpf_fs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|fs| fs.filesystem_type().0 == BPF_FS_MAGIC)
}

/// Names of the TCX programs attached to `iface` (ingress, then egress): what an operator
/// would check to see whether hotspotd left anything behind.
pub fn attached_programs(iface: &str) -> Result<Vec<String>, aya::programs::ProgramError> {
    let mut names = Vec::new();
    for attach_type in [TcAttachType::Ingress, TcAttachType::Egress] {
        let (_revision, programs) = SchedClassifier::query_tcx(iface, attach_type)?;
        names.extend(
            programs
                .iter()
                .map(|info| info.name_as_str().unwrap_or("?").to_owned()),
        );
    }
    Ok(names)
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
    fn local_table_splits_families() {
        let table = local_table(&keys(&["192.0.2.1", "2001:db8::1", "198.51.100.254"]));
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
    fn local_table_overflows_to_the_hash_map() {
        let many: Vec<String> = (0..=LOCAL_TABLE_LEN)
            .map(|i| format!("10.0.0.{i}"))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let table = local_table(&keys(&many));
        assert_eq!(table.v4_count as usize, LOCAL_TABLE_LEN);
        assert_eq!(table.overflow, 1);
    }
}
