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
    maps::{Array, MapData, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::{
        SchedClassifier, TcAttachType, TestRun as _, TestRunOptions,
        links::{FdLink, LinkError, PinnedLink},
        tc::{self, SchedClassifierLink},
    },
    util::KernelVersion,
};
use hotspotd_common::{
    CLOCK_PROBE, Grant, IpKey, MAP_CLOCK, MAP_CONFIG, MAP_EVENTS, MAP_GRANTS, MAP_LAYOUT_VERSION,
    MAP_LOCAL_ADDRS, MAP_LOCAL_TABLE, MAP_STATS, MAP_USAGE, MAP_WALLED_GARDEN, MacKey, Usage,
    config_word, stat,
};

use crate::config::WalledGardenEntry;

mod batch;
mod gate;
mod local;
mod usage;

pub use batch::{BatchError, BatchReader};
pub use gate::{grants, remove_grant, set_grant, set_walled_garden};
pub use local::set_local_addrs;
pub use usage::UsageReader;

/// The compiled eBPF object (programs `lan_ingress`, `lan_egress`, `bench_empty`; maps in
/// `hotspotd_common`), built by `build.rs`.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/hotspotd-ebpf"));

/// Program names in [`EBPF_OBJECT`] (and [`CLOCK_PROBE`]).
pub const PROGRAM_INGRESS: &str = "lan_ingress";
pub const PROGRAM_EGRESS: &str = "lan_egress";
pub const PROGRAM_EMPTY: &str = "bench_empty";

/// Grants read per syscall when counting them: 40 KiB of buffer.
const GRANT_COUNT_BATCH_ENTRIES: usize = 1_024;
/// Room for one grant when only counting them: the bytes are not looked at.
type GrantBytes = [u64; size_of::<Grant>() / 8];
const _: () = assert!(size_of::<Grant>().is_multiple_of(8));

/// `statfs` magic of the BPF filesystem.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error(
        "{path} is not on a BPF filesystem: mount one with 'mount -t bpf bpf /sys/fs/bpf' or set kernel.pin_dir"
    )]
    NotBpfFs { path: PathBuf },
    #[error("cannot create the pin folder {path}")]
    PinDir { path: PathBuf, source: io::Error },
    #[error(
        "cannot load the eBPF object (hotspotd needs root or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN, and a kernel with BTF)"
    )]
    Load(#[from] aya::EbpfError),
    #[error("the eBPF object has no program '{name}'")]
    MissingProgram { name: &'static str },
    #[error("the eBPF object has no map '{name}'")]
    MissingMap { name: &'static str },
    #[error("the kernel rejected program '{name}'")]
    Program {
        name: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error(
        "network.lan_interface '{iface}' does not exist: create it or set network.lan_interface to the interface the clients are on"
    )]
    NoInterface { iface: String },
    #[error("cannot attach '{name}' to {iface}")]
    Attach {
        name: &'static str,
        iface: String,
        source: aya::programs::ProgramError,
    },
    #[error("the link of '{name}' cannot be pinned")]
    Link {
        name: &'static str,
        source: LinkError,
    },
    #[error("cannot pin the link at {path}")]
    PinLink {
        path: PathBuf,
        source: aya::pin::PinError,
    },
    #[error("map '{name}'")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("cannot duplicate the file descriptor of map '{name}'")]
    MapFd {
        name: &'static str,
        source: io::Error,
    },
    #[error("map '{name}'")]
    Batch {
        name: &'static str,
        source: BatchError,
    },
}

/// The loaded programs and their maps; the programs stay attached while this lives.
pub struct Kernel {
    ebpf: Ebpf,
    pin_dir: PathBuf,
    /// The TCX links, pinned so the programs (and so the gate) outlive a crashed daemon.
    links: Vec<(PathBuf, PinnedLink)>,
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
        Ok(Self {
            ebpf,
            pin_dir,
            links: Vec::new(),
        })
    }

    /// Attaches upload handling to `iface`'s ingress and download handling to its egress.
    ///
    /// With TCX (Linux >= 6.6) the links are pinned under the pin folder. A link a previous run
    /// left pinned is taken over: the new program replaces the old one in place, atomically,
    /// so no packet passes ungated in between. Older kernels get a clsact qdisc and unpinned
    /// links, detached when the daemon exits.
    pub fn attach(&mut self, iface: &str) -> Result<(), BpfError> {
        self.attach_links(iface, true)
    }

    /// Attaches the programs to `iface` anew after the interface they were on was deleted:
    /// the old links died with it (and a defunct link must not be taken over, it would
    /// accept the program and carry no packet), so their pins go and fresh links are made.
    pub fn reattach(&mut self, iface: &str) -> Result<(), BpfError> {
        for (path, link) in self.links.drain(..) {
            drop(link.unpin());
            let _ = std::fs::remove_file(path);
        }
        self.attach_links(iface, false)
    }

    fn attach_links(&mut self, iface: &str, take_over_pins: bool) -> Result<(), BpfError> {
        if nix::net::if_::if_nametoindex(iface).is_err() {
            return Err(BpfError::NoInterface {
                iface: iface.to_owned(),
            });
        }
        let tcx = KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0));
        if !tcx {
            // Without TCX the programs hang off a clsact qdisc; it may already be there.
            let _ = tc::qdisc_add_clsact(iface);
        }
        let links_dir = self.pin_dir.join("links");
        std::fs::create_dir_all(&links_dir).map_err(|source| BpfError::PinDir {
            path: links_dir.clone(),
            source,
        })?;
        for (name, attach_type) in [
            (PROGRAM_INGRESS, TcAttachType::Ingress),
            (PROGRAM_EGRESS, TcAttachType::Egress),
        ] {
            let attach_error = |source| BpfError::Attach {
                name,
                iface: iface.to_owned(),
                source,
            };
            let program = classifier(&mut self.ebpf, name)?;
            if !tcx {
                program.attach(iface, attach_type).map_err(attach_error)?;
                continue;
            }
            let pin = links_dir.join(name);
            let taken = if take_over_pins {
                take_over(program, &pin)
            } else {
                None
            };
            let id = match taken {
                Some(id) => {
                    tracing::info!(program = name, "took over the link a previous run pinned");
                    id
                }
                None => program.attach(iface, attach_type).map_err(attach_error)?,
            };
            let link: FdLink = program
                .take_link(id)
                .map_err(attach_error)?
                .try_into()
                .map_err(|source: LinkError| BpfError::Link { name, source })?;
            // The pin of a previous run (taken over or stale) makes way for this one.
            let _ = std::fs::remove_file(&pin);
            let pinned = link.pin(&pin).map_err(|source| BpfError::PinLink {
                path: pin.clone(),
                source,
            })?;
            self.links.push((pin, pinned));
        }
        Ok(())
    }

    /// Every client the kernel has seen, with its counters summed over CPUs, in MAC order:
    /// one read, for the restore (polls read on the reader's thread, see
    /// [`usage_reader`](Self::usage_reader)).
    pub fn usage(&self) -> Result<Vec<(MacKey, Usage)>, BpfError> {
        let mut clients = Vec::new();
        self.usage_reader()?.read(&mut clients)?;
        Ok(clients)
    }

    /// A reader of every client's counters with a file descriptor of its own on `USAGE`, for
    /// the thread that reads them.
    pub fn usage_reader(&self) -> Result<UsageReader, BpfError> {
        let Some(aya::maps::Map::PerCpuHashMap(map)) = self.ebpf.map(MAP_USAGE) else {
            return Err(BpfError::MissingMap { name: MAP_USAGE });
        };
        UsageReader::new(map)
    }

    /// One client's counters, summed over CPUs; `None` if the kernel has none for it.
    pub fn usage_of(&self, client: MacKey) -> Result<Option<Usage>, BpfError> {
        let map: PerCpuHashMap<&MapData, MacKey, Usage> = self.map(MAP_USAGE)?;
        match map.get(&client, 0) {
            Ok(per_cpu) => Ok(Some(per_cpu.iter().fold(Usage::default(), Usage::merged))),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(source) => Err(BpfError::Map {
                name: MAP_USAGE,
                source,
            }),
        }
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
            dropped_no_session_packets: read(stat::DROPPED_NO_SESSION)?,
            dropped_budget_packets: read(stat::DROPPED_BUDGET)?,
            dropped_deadline_packets: read(stat::DROPPED_DEADLINE)?,
            events_lost: read(stat::EVENTS_LOST)?,
        })
    }

    /// Installs or replaces a running session's grant; see [`gate::set_grant`].
    pub fn set_grant(&mut self, client: MacKey, grant: Grant) -> Result<(), BpfError> {
        gate::set_grant(&mut self.ebpf, client, grant)
    }

    /// Removes a client's grant; see [`gate::remove_grant`].
    pub fn remove_grant(&mut self, client: MacKey) -> Result<(), BpfError> {
        gate::remove_grant(&mut self.ebpf, client)
    }

    /// The maps' epoch (see `config_word::EPOCH`), set to a random one if they are new.
    pub fn epoch(&mut self) -> Result<u64, BpfError> {
        let config_error = |source| BpfError::Map {
            name: MAP_CONFIG,
            source,
        };
        let mut config: Array<&mut MapData, u32> = self.map_mut(MAP_CONFIG)?;
        let epoch = config.get(&config_word::EPOCH, 0).map_err(config_error)?;
        if epoch != 0 {
            return Ok(u64::from(epoch));
        }
        let epoch = random_u32().max(1);
        config
            .set(config_word::EPOCH, epoch, 0)
            .map_err(config_error)?;
        Ok(u64::from(epoch))
    }

    /// Tells the programs which IFB device uploads are shaped on (0: none).
    pub fn set_ifb(&mut self, ifindex: u32) -> Result<(), BpfError> {
        let mut config: Array<&mut MapData, u32> = self.map_mut(MAP_CONFIG)?;
        config
            .set(config_word::IFB_IFINDEX, ifindex, 0)
            .map_err(|source| BpfError::Map {
                name: MAP_CONFIG,
                source,
            })
    }

    /// Every grant in the kernel.
    pub fn grants(&self) -> Result<Vec<(MacKey, Grant)>, BpfError> {
        gate::grants(&self.ebpf)
    }

    /// How many grants the kernel holds: counted with batch reads where the kernel has them,
    /// since `/metrics` asks on every scrape and walking 10,000 grants takes 20,000 syscalls.
    pub fn grant_count(&self) -> Result<usize, BpfError> {
        let Some(aya::maps::Map::HashMap(map)) = self.ebpf.map(MAP_GRANTS) else {
            return Err(BpfError::MissingMap { name: MAP_GRANTS });
        };
        let mut count = 0;
        let counted = BatchReader::<MacKey, GrantBytes>::new(GRANT_COUNT_BATCH_ENTRIES, 1)
            .and_then(|mut reader| {
                reader.read(std::os::fd::AsFd::as_fd(map.fd()), |_, _| count += 1)
            });
        match counted {
            Ok(()) => Ok(count),
            Err(BatchError::Unsupported) => self.grants().map(|grants| grants.len()),
            Err(source) => Err(BpfError::Batch {
                name: MAP_GRANTS,
                source,
            }),
        }
    }

    /// Makes the walled garden exactly `entries`.
    pub fn set_walled_garden(&mut self, entries: &[WalledGardenEntry]) -> Result<(), BpfError> {
        gate::set_walled_garden(&mut self.ebpf, entries)
    }

    /// Hands over the programs' event ring (budget spent, deadline passed), once.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, BpfError> {
        let map = self
            .ebpf
            .take_map(MAP_EVENTS)
            .ok_or(BpfError::MissingMap { name: MAP_EVENTS })?;
        RingBuf::try_from(map).map_err(|source| BpfError::Map {
            name: MAP_EVENTS,
            source,
        })
    }

    /// Detaches the programs and removes every pin (links and maps), for a clean exit: the
    /// next start begins from zero.
    pub fn remove_pins(self) -> io::Result<()> {
        for (path, link) in self.links {
            // Unpinned, the link's last reference is this fd: dropping it detaches.
            drop(link.unpin());
            match std::fs::remove_file(&path) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        let _ = std::fs::remove_dir(self.pin_dir.join("links"));
        for name in [
            MAP_GRANTS,
            MAP_WALLED_GARDEN,
            MAP_EVENTS,
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

    fn map_mut<'a, T>(&'a mut self, name: &'static str) -> Result<T, BpfError>
    where
        T: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
    {
        typed_map_mut(&mut self.ebpf, name)
    }

    fn map<'a, T>(&'a self, name: &'static str) -> Result<T, BpfError>
    where
        T: TryFrom<&'a aya::maps::Map, Error = aya::maps::MapError>,
    {
        typed_map(&self.ebpf, name)
    }
}

pub(crate) fn typed_map<'a, T>(ebpf: &'a Ebpf, name: &'static str) -> Result<T, BpfError>
where
    T: TryFrom<&'a aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.map(name).ok_or(BpfError::MissingMap { name })?;
    T::try_from(map).map_err(|source| BpfError::Map { name, source })
}

pub(crate) fn typed_map_mut<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<T, BpfError>
where
    T: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.map_mut(name).ok_or(BpfError::MissingMap { name })?;
    T::try_from(map).map_err(|source| BpfError::Map { name, source })
}

/// Counters of `STATS`, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KernelStats {
    pub malformed_packets: u64,
    pub untracked_packets: u64,
    pub non_ip_packets: u64,
    /// Drops by reason: no running session (outside the walled garden), data budget spent,
    /// deadline passed.
    pub dropped_no_session_packets: u64,
    pub dropped_budget_packets: u64,
    pub dropped_deadline_packets: u64,
    /// Gate events the ring could not hold (the next poll catches up).
    pub events_lost: u64,
}

/// A random number from the kernel; the time if that fails (an epoch only needs to differ).
fn random_u32() -> u32 {
    let mut bytes = [0u8; 4];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut urandom| std::io::Read::read_exact(&mut urandom, &mut bytes))
        .is_ok()
    {
        return u32::from_ne_bytes(bytes);
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |elapsed| elapsed.subsec_nanos())
}

/// Replaces the program of the link pinned at `pin` with `program`, if there is such a link
/// and it still works; returns the link's id in `program`.
fn take_over(
    program: &mut SchedClassifier,
    pin: &Path,
) -> Option<aya::programs::tc::SchedClassifierLinkId> {
    let pinned = PinnedLink::from_pin(pin).ok()?;
    let link = SchedClassifierLink::try_from(FdLink::from(pinned)).ok()?;
    match program.attach_to_link(link) {
        Ok(id) => Some(id),
        Err(error) => {
            tracing::warn!(error = %crate::text::chain(&error), pin = %pin.display(), "the pinned link is unusable; attaching anew");
            None
        }
    }
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
