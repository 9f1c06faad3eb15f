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
    maps::{HashMap, MapData, PerCpuArray, PerCpuHashMap},
    programs::{SchedClassifier, TcAttachType, tc},
    util::KernelVersion,
};
use hotspotd_common::{
    IpKey, LOCAL_ADDR_PRESENT, MAP_LAYOUT_VERSION, MAP_LOCAL_ADDRS, MAP_STATS, MAP_USAGE, MacKey,
    Usage, stat,
};

/// The compiled eBPF object (programs `lan_ingress`, `lan_egress`, `bench_empty`; maps in
/// `hotspotd_common`), built by `build.rs`.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/hotspotd-ebpf"));

/// Program names in [`EBPF_OBJECT`].
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
        for name in [PROGRAM_INGRESS, PROGRAM_EGRESS] {
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

    /// Makes `LOCAL_ADDRS` hold exactly `addrs`, touching only what changed.
    pub fn sync_local_addrs(&mut self, addrs: &BTreeSet<IpKey>) -> Result<(), BpfError> {
        let map_error = |source| BpfError::Map {
            name: MAP_LOCAL_ADDRS,
            source,
        };
        let mut map: HashMap<&mut MapData, IpKey, u32> = self.map_mut(MAP_LOCAL_ADDRS)?;
        let present: BTreeSet<IpKey> = map.keys().filter_map(Result::ok).collect();
        for stale in present.difference(addrs) {
            map.remove(stale).map_err(map_error)?;
        }
        for new in addrs.difference(&present) {
            map.insert(new, LOCAL_ADDR_PRESENT, 0).map_err(map_error)?;
        }
        Ok(())
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
        for name in [MAP_USAGE, MAP_LOCAL_ADDRS, MAP_STATS] {
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
        let map = self.ebpf.map(name).ok_or(BpfError::MissingMap { name })?;
        T::try_from(map).map_err(|source| BpfError::Map { name, source })
    }

    fn map_mut<'a, T>(&'a mut self, name: &'static str) -> Result<T, BpfError>
    where
        T: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
    {
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(BpfError::MissingMap { name })?;
        T::try_from(map).map_err(|source| BpfError::Map { name, source })
    }
}

/// Counters of `STATS`, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KernelStats {
    pub malformed_packets: u64,
    pub untracked_packets: u64,
    pub non_ip_packets: u64,
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
