//! Loads hotspotd's eBPF programs, attaches them to the LAN interface and gives typed access to
//! their maps. Side effects: pins the maps under `kernel.pin_dir` (so counters outlive a
//! crashed daemon), attaches two tc programs with TCX (clsact on kernels before 6.6). A stop
//! leaves all of it in place ([`Kernel::leave_attached`]), so the gate holds while no daemon
//! runs; only [`release`] (`hotspotd --release`) detaches the programs and removes the pins.

use std::{
    collections::BTreeSet,
    io,
    os::fd::{AsFd as _, AsRawFd as _},
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray, ProgramArray, RingBuf, SockMap},
    programs::{
        SchedClassifier, TcAttachType, TestRun as _, TestRunOptions,
        links::{FdLink, LinkError, PinnedLink},
        tc::{self, SchedClassifierLink},
    },
    util::KernelVersion,
};
use hotspotd_common::{
    AddressOwner, CLOCK_PROBE, Grant, IFB_BY_FILTER, IpKey, MAP_ADDRESSES, MAP_BOX_RESOLVER,
    MAP_CLIENTS, MAP_CLOCK, MAP_CONFIG, MAP_EVENTS, MAP_FRONT_DOOR, MAP_LAYOUT_VERSION,
    MAP_PORTAL_SOCKETS, MAP_SEEN, MAP_STATS, MAP_USAGE, MacKey, PROGRAM_INGRESS_STEER,
    PROGRAM_INGRESS_TO_BOX, PROGRAM_INGRESS_TO_IFB, Usage, config_word, front_door, stat,
};

use crate::config::WalledGardenEntry;

mod addresses;
mod batch;
mod client_index;
mod clients;
mod garden;
mod gate;
mod local;
pub mod probe;
pub mod stats;
mod usage;

pub use addresses::AddressReader;
pub use batch::{BatchError, BatchReader};
pub use clients::{ClientTable, QUARANTINE, read_grant, read_grants, read_slots, read_usage};
pub use garden::{apply_garden, garden_bytes, garden_learned, set_garden_names};
pub use gate::set_walled_garden;
pub use local::{LocalServices, set_local_addrs};
pub use stats::KernelStats;
pub use usage::UsageReader;

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
    #[error("cannot create the pin folder {path}")]
    PinDir { path: PathBuf, source: io::Error },
    #[error(
        "cannot load the eBPF object (hotspotd needs root or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN, and a kernel with BTF)"
    )]
    Load(#[from] aya::EbpfError),
    /// The kernel lacks a feature the programs use: one sentence, no verifier log.
    #[error(transparent)]
    OldKernel(#[from] probe::Missing),
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
    #[error(
        "cannot detach '{name}' from {iface}: remove the filter with 'tc filter del dev {iface} ingress' (or egress)"
    )]
    Detach {
        name: &'static str,
        iface: String,
        #[source]
        source: tc::TcError,
    },
    #[error(
        "cannot remove the pins under {path}: remove them with 'rm -r {path}' (that detaches the programs)"
    )]
    Release {
        path: PathBuf,
        #[source]
        source: io::Error,
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
    #[error(
        "map '{name}' is full ({capacity} clients): no client can be given room until others leave"
    )]
    Full { name: &'static str, capacity: u32 },
    #[error("the client has no grant to share")]
    NoGrant,
    #[error("map '{name}'")]
    Batch {
        name: &'static str,
        source: BatchError,
    },
}

/// The loaded programs and their maps. The programs it attached stay attached after it is
/// gone, until the next run takes them over or [`release`] detaches them.
pub struct Kernel {
    ebpf: Ebpf,
    /// `kernel.pin_dir` as configured: it holds one folder per pin layout (`v1`, ...).
    base_dir: PathBuf,
    /// This version's folder in it, `v{MAP_LAYOUT_VERSION}`.
    pin_dir: PathBuf,
    /// The TCX links, pinned so the programs (and so the gate) outlive a crashed daemon.
    links: Vec<(PathBuf, PinnedLink)>,
    /// The clsact filters on kernels without TCX. They cannot be pinned; see
    /// [`Kernel::leave_attached`] for how they outlive the daemon.
    filters: Vec<SchedClassifierLink>,
    /// The clients the daemon keeps room for, and their slots.
    clients: ClientTable,
}

impl Kernel {
    /// Loads the object, reusing maps pinned under `pin_dir` by an earlier run (so no count
    /// is lost across a crash), and loads the programs into the kernel without attaching them.
    pub fn load(base_dir: &Path) -> Result<Self, BpfError> {
        // Before anything is created: an old kernel is refused with the feature it lacks.
        probe::require()?;
        let pin_dir = base_dir.join(layout_folder(MAP_LAYOUT_VERSION));
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
        for name in [
            PROGRAM_INGRESS,
            PROGRAM_EGRESS,
            PROGRAM_INGRESS_STEER,
            PROGRAM_INGRESS_TO_BOX,
            PROGRAM_INGRESS_TO_IFB,
            CLOCK_PROBE,
        ] {
            classifier(&mut ebpf, name)?
                .load()
                .map_err(|source| BpfError::Program { name, source })?;
        }
        fill_front_door(&mut ebpf)?;
        let clients = ClientTable::load(&mut ebpf)?;
        Ok(Self {
            ebpf,
            base_dir: base_dir.to_owned(),
            pin_dir,
            links: Vec::new(),
            filters: Vec::new(),
            clients,
        })
    }

    /// A second handle on the maps a loaded `Kernel` pinned under `base_dir`, for reading
    /// them off the control task (the portal's RFC 8908 answer): it loads only the clock
    /// probe, attaches nothing and writes nothing.
    pub fn reader(base_dir: &Path) -> Result<KernelReader, BpfError> {
        let pin_dir = base_dir.join(layout_folder(MAP_LAYOUT_VERSION));
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&pin_dir)
            .load(EBPF_OBJECT)?;
        classifier(&mut ebpf, CLOCK_PROBE)?
            .load()
            .map_err(|source| BpfError::Program {
                name: CLOCK_PROBE,
                source,
            })?;
        let clients = ClientTable::read_only(&ebpf)?;
        Ok(KernelReader(Self {
            ebpf,
            base_dir: base_dir.to_owned(),
            pin_dir,
            links: Vec::new(),
            filters: Vec::new(),
            clients,
        }))
    }

    /// Attaches upload handling to `iface`'s ingress and download handling to its egress.
    ///
    /// With TCX (Linux >= 6.6) the links are pinned under the pin folder. A link a previous run
    /// left pinned is taken over: the new program replaces the old one in place, atomically,
    /// so no packet passes ungated in between. Older kernels get a clsact qdisc and filters,
    /// which stay attached after the daemon exits too ([`Kernel::leave_attached`]).
    ///
    /// Links pinned by a daemon of another pin layout (an upgrade or a downgrade that changed
    /// a map: `pin_dir/vN` with another N) are taken over the same way, so the gate stays
    /// closed across the change; that layout's folder is then removed. Its maps cannot be read
    /// by this version, so what its counters held since the last save is not billed, as after
    /// a reboot (the new maps have a new epoch, which the restore sees).
    pub fn attach(&mut self, iface: &str) -> Result<(), BpfError> {
        self.attach_links(iface, true)?;
        for (version, dir) in other_layouts(&self.base_dir) {
            // Unpinning also detaches any of its links not taken over above.
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => tracing::warn!(
                    layout = version,
                    current = MAP_LAYOUT_VERSION,
                    path = %dir.display(),
                    "removed the pins of another layout; what its counters held since the last save is not billed"
                ),
                Err(error) => tracing::warn!(
                    error = %crate::text::chain(&error),
                    path = %dir.display(),
                    "cannot remove the pins of another layout; 'hotspotd --release' with the daemon stopped removes them"
                ),
            }
        }
        Ok(())
    }

    /// Attaches the programs to `iface` anew after the interface they were on was deleted:
    /// the old links died with it (and a defunct link must not be taken over, it would
    /// accept the program and carry no packet), so their pins go and fresh links are made.
    pub fn reattach(&mut self, iface: &str) -> Result<(), BpfError> {
        for (path, link) in self.links.drain(..) {
            drop(link.unpin());
            let _ = std::fs::remove_file(path);
        }
        // The filters died with the interface; detaching them (on drop) finds nothing, and
        // cannot hit a new interface of the same name, which has another ifindex.
        self.filters.clear();
        self.attach_links(iface, false)
    }

    fn attach_links(&mut self, iface: &str, take_over_pins: bool) -> Result<(), BpfError> {
        if nix::net::if_::if_nametoindex(iface).is_err() {
            return Err(BpfError::NoInterface {
                iface: iface.to_owned(),
            });
        }
        let tcx = has_tcx();
        if !tcx {
            ensure_clsact(iface);
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
                let filter =
                    attach_filter(program, iface, attach_type, name).map_err(attach_error)?;
                self.filters.push(filter);
                continue;
            }
            let pin = links_dir.join(name);
            let mut taken = None;
            if take_over_pins {
                taken = take_over(program, &pin);
                for (version, dir) in other_layouts(&self.base_dir) {
                    if taken.is_some() {
                        break;
                    }
                    taken = take_over(program, &dir.join("links").join(name));
                    if taken.is_some() {
                        tracing::warn!(
                            program = name,
                            layout = version,
                            current = MAP_LAYOUT_VERSION,
                            "took over the link of another pin layout"
                        );
                    }
                }
            }
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

    /// The counters of `SEEN`, in one read, for the restore.
    pub fn seen(&self) -> Result<Vec<(MacKey, Usage)>, BpfError> {
        let mut clients = Vec::new();
        self.seen_reader()?.read(&mut clients)?;
        Ok(clients)
    }

    /// A reader of the counters of the clients the daemon keeps room for, with file
    /// descriptors of its own on `CLIENTS` and `USAGE`, for the thread that reads them.
    pub fn usage_reader(&self) -> Result<UsageReader, BpfError> {
        let Some(aya::maps::Map::HashMap(clients)) = self.ebpf.map(MAP_CLIENTS) else {
            return Err(BpfError::MissingMap { name: MAP_CLIENTS });
        };
        let Some(aya::maps::Map::PerCpuArray(usage)) = self.ebpf.map(MAP_USAGE) else {
            return Err(BpfError::MissingMap { name: MAP_USAGE });
        };
        UsageReader::clients(clients, usage)
    }

    /// A reader of `SEEN`, the counters of MACs without room in `USAGE`.
    pub fn seen_reader(&self) -> Result<UsageReader, BpfError> {
        let Some(aya::maps::Map::PerCpuLruHashMap(map)) = self.ebpf.map(MAP_SEEN) else {
            return Err(BpfError::MissingMap { name: MAP_SEEN });
        };
        UsageReader::seen(MAP_SEEN, map)
    }

    /// A reader of `ADDRESSES`, which MAC sends from each address.
    pub fn address_reader(&self) -> Result<AddressReader, BpfError> {
        let Some(aya::maps::Map::LruHashMap(map)) = self.ebpf.map(MAP_ADDRESSES) else {
            return Err(BpfError::MissingMap {
                name: MAP_ADDRESSES,
            });
        };
        AddressReader::new(map)
    }

    /// Who the upload program last saw sending from `addr`; `None` if nobody it remembers.
    pub fn address_owner(&self, addr: IpKey) -> Result<Option<AddressOwner>, BpfError> {
        let map: aya::maps::HashMap<&MapData, IpKey, AddressOwner> = self.map(MAP_ADDRESSES)?;
        match map.get(&addr, 0) {
            Ok(owner) => Ok(Some(owner)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(source) => Err(BpfError::Map {
                name: MAP_ADDRESSES,
                source,
            }),
        }
    }

    /// Makes room for `client`'s counters before it is let through; see
    /// [`ClientTable::reserve`].
    pub fn reserve_counters(&mut self, client: MacKey) -> Result<(), BpfError> {
        self.clients.reserve(&mut self.ebpf, client)
    }

    /// Gives back the room of a client without a grant; see [`ClientTable::release`].
    pub fn release_counters(&mut self, client: MacKey) -> Result<(), BpfError> {
        self.clients.release(&mut self.ebpf, client)
    }

    /// One client's counters, summed over CPUs; `None` if the kernel keeps none for it.
    pub fn usage_of(&self, client: MacKey) -> Result<Option<Usage>, BpfError> {
        read_usage(&self.ebpf, client)
    }

    /// Makes the box's addresses and free services in the kernel exactly these; see
    /// [`set_local_addrs`].
    pub fn sync_local_addrs(
        &mut self,
        addrs: &BTreeSet<IpKey>,
        services: &LocalServices,
    ) -> Result<(), BpfError> {
        set_local_addrs(&mut self.ebpf, addrs, services)
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
            dropped_group_destination_packets: read(stat::DROPPED_GROUP_DESTINATION)?,
        })
    }

    /// Installs or replaces a running session's grant, with a budget of the client's own;
    /// see [`ClientTable::set_grant`].
    pub fn set_grant(&mut self, client: MacKey, grant: Grant) -> Result<(), BpfError> {
        self.clients.set_grant(&mut self.ebpf, client, grant)
    }

    /// Puts `client`'s packets in these classes, keeping its budget; see
    /// [`ClientTable::set_classes`].
    pub fn set_classes(
        &mut self,
        client: MacKey,
        class_down: u32,
        class_up: u32,
    ) -> Result<(), BpfError> {
        self.clients
            .set_classes(&mut self.ebpf, client, class_down, class_up)
    }

    /// Lets `member` draw on `holder`'s budget, with its own classes; see
    /// [`ClientTable::share_grant`].
    pub fn share_grant(
        &mut self,
        member: MacKey,
        holder: MacKey,
        class_down: u32,
        class_up: u32,
    ) -> Result<(), BpfError> {
        self.clients
            .share_grant(&mut self.ebpf, member, holder, class_down, class_up)
    }

    /// The client's grant as the kernel holds it now (its budget spent down); `None` if it
    /// has none.
    pub fn grant_of(&self, client: MacKey) -> Result<Option<Grant>, BpfError> {
        read_grant(&self.ebpf, client)
    }

    /// Removes a client's grant; see [`ClientTable::remove_grant`].
    pub fn remove_grant(&mut self, client: MacKey) -> Result<(), BpfError> {
        self.clients.remove_grant(&mut self.ebpf, client)
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

    /// Tells the programs which IFB device uploads are shaped on (0: none). Without TCX they
    /// reach it through the filter of [`Kernel::upload_filter_program`], which must be in
    /// place first (`hotspotd_common::IFB_BY_FILTER` says why).
    pub fn set_ifb(&mut self, ifindex: u32) -> Result<(), BpfError> {
        let word = if ifindex != 0 && !has_tcx() {
            ifindex | IFB_BY_FILTER
        } else {
            ifindex
        };
        let mut config: Array<&mut MapData, u32> = self.map_mut(MAP_CONFIG)?;
        config
            .set(config_word::IFB_IFINDEX, word, 0)
            .map_err(|source| BpfError::Map {
                name: MAP_CONFIG,
                source,
            })
    }

    /// Without TCX (Linux before 6.6): the program of the classic filter behind `lan_ingress`
    /// that hands tagged uploads to the IFB's mirred action, with its name. `None` with TCX,
    /// where `lan_ingress` redirects them itself.
    pub fn upload_filter_program(&mut self) -> Result<Option<(u32, &'static str)>, BpfError> {
        if has_tcx() {
            return Ok(None);
        }
        let name = PROGRAM_INGRESS_TO_IFB;
        let fd = classifier(&mut self.ebpf, name)?
            .fd()
            .map_err(|source| BpfError::Program { name, source })?
            .as_fd()
            .as_raw_fd();
        Ok(Some((u32::try_from(fd).unwrap_or(u32::MAX), name)))
    }

    /// Sends unpaid clients' web traffic to the portal's redirect listeners (IPv4, IPv6), or,
    /// with `None`, leaves it dropped like the rest of their traffic (`portal.mode = "off"`).
    /// The listeners go in first, so no packet is steered to an empty slot.
    pub fn steer_to_portal(
        &mut self,
        listeners: Option<[&impl std::os::fd::AsRawFd; 2]>,
    ) -> Result<(), BpfError> {
        let steering = u32::from(listeners.is_some());
        if let Some(listeners) = listeners {
            let mut sockets: SockMap<&mut MapData> = self.map_mut(MAP_PORTAL_SOCKETS)?;
            for (index, listener) in (0..).zip(listeners) {
                sockets
                    .set(index, listener, 0)
                    .map_err(|source| BpfError::Map {
                        name: MAP_PORTAL_SOCKETS,
                        source,
                    })?;
            }
        }
        let mut config: Array<&mut MapData, u32> = self.map_mut(MAP_CONFIG)?;
        config
            .set(config_word::PORTAL_STEERING, steering, 0)
            .map_err(|source| BpfError::Map {
                name: MAP_CONFIG,
                source,
            })
    }

    /// Writes what the programs need to know of the box's addresses: all of them (traffic
    /// with the box), with its free client services, and the LAN interface's, where unpaid
    /// clients' DNS is sent when the portal redirects it.
    pub fn sync_box_addresses(
        &mut self,
        addrs: &crate::netlink::BoxAddresses,
        config: &crate::config::Config,
        lan_ifindex: u32,
    ) -> Result<(), BpfError> {
        let keys = addrs
            .all
            .iter()
            .map(|addr| crate::net::ip_key(*addr))
            .collect();
        self.sync_local_addrs(&keys, &LocalServices::of_config(config))?;
        let (v4, v6) = if config.portal.redirects_dns() {
            addrs.service_addresses(lan_ifindex)
        } else {
            (None, None)
        };
        self.set_box_resolver(v4, v6)
    }

    /// Where unpaid clients' DNS is sent (`portal.redirect_dns`): the box's resolver address
    /// of each family, `None` for a family whose DNS is not redirected. Written only when it
    /// changes.
    pub fn set_box_resolver(
        &mut self,
        v4: Option<std::net::Ipv4Addr>,
        v6: Option<std::net::Ipv6Addr>,
    ) -> Result<(), BpfError> {
        let error = |source| BpfError::Map {
            name: MAP_BOX_RESOLVER,
            source,
        };
        let mut resolver: Array<&mut MapData, IpKey> = self.map_mut(MAP_BOX_RESOLVER)?;
        let wanted = [
            v4.map_or_else(IpKey::default, |v4| IpKey::from_v4(v4.octets())),
            v6.map_or_else(IpKey::default, |v6| IpKey::from_v6(v6.octets())),
        ];
        for (index, address) in (0..).zip(wanted) {
            if resolver.get(&index, 0).map_err(error)? != address {
                resolver.set(index, address, 0).map_err(error)?;
            }
        }
        Ok(())
    }

    /// Every grant in the kernel, by client.
    pub fn grants(&self) -> Result<Vec<(MacKey, Grant)>, BpfError> {
        read_grants(&self.ebpf)
    }

    /// How many clients have a grant.
    #[must_use]
    pub fn grant_count(&self) -> usize {
        self.clients.grant_count()
    }

    /// How many clients the programs look up in `CLIENTS` (their index window is full).
    #[must_use]
    pub fn unindexed_clients(&self) -> usize {
        self.clients.unindexed_count()
    }

    /// Makes the walled garden exactly `entries`.
    pub fn set_walled_garden(&mut self, entries: &[WalledGardenEntry]) -> Result<(), BpfError> {
        gate::set_walled_garden(&mut self.ebpf, entries)
    }

    /// Whether the download program copies the box's DNS answers (`bpf/garden.rs`).
    pub fn set_garden_names(&mut self, on: bool) -> Result<(), BpfError> {
        garden::set_garden_names(&mut self.ebpf, on)
    }

    /// Writes what the walled garden learned or forgot.
    pub fn apply_garden(&mut self, changes: &[crate::garden::Change]) -> Result<(), BpfError> {
        garden::apply_garden(&mut self.ebpf, changes)
    }

    /// The learned garden addresses in the kernel (a previous run's, at start).
    pub fn garden_learned(
        &self,
    ) -> Result<Vec<(std::net::IpAddr, hotspotd_common::GardenLearned)>, BpfError> {
        garden::garden_learned(&self.ebpf)
    }

    /// Bytes unpaid clients sent to each garden name's addresses, by name index.
    pub fn garden_bytes(&self) -> Result<Vec<u64>, BpfError> {
        garden::garden_bytes(&self.ebpf)
    }

    /// Hands over the ring of the box's DNS answers, once.
    pub fn take_garden_answers(&mut self) -> Result<RingBuf<MapData>, BpfError> {
        garden::take_garden_answers(&mut self.ebpf)
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

    /// Lets go of the programs without detaching them, for a stop: the gate keeps enforcing
    /// with the pinned grants and counting into the pinned counters until the next start
    /// takes them over, exactly as after a crash. The TCX links live on through their pins.
    ///
    /// Without TCX (Linux before 6.6) there is nothing to pin: a clsact filter is owned by the
    /// qdisc, and only aya's link handle would remove it, on drop. The handles are forgotten,
    /// so the filters stay, as they do after a crash, until the next start replaces them (see
    /// `attach_links`: not atomically) or `hotspotd --release` removes them.
    /// Any other way the daemon ends (an error after the programs were attached) leaves them
    /// the same way: see the `Drop` of [`Kernel`].
    pub fn leave_attached(self) {
        drop(self);
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

/// Reads what the programs keep of who sends from an address, the grants and the kernel's
/// clock, beside the [`Kernel`] the control task owns; see [`Kernel::reader`].
pub struct KernelReader(Kernel);

impl KernelReader {
    /// See [`Kernel::address_owner`].
    pub fn address_owner(&self, addr: IpKey) -> Result<Option<AddressOwner>, BpfError> {
        self.0.address_owner(addr)
    }

    /// See [`Kernel::grant_of`].
    pub fn grant_of(&self, client: MacKey) -> Result<Option<Grant>, BpfError> {
        self.0.grant_of(client)
    }

    /// See [`Kernel::jiffies`].
    pub fn jiffies(&self) -> Result<u64, BpfError> {
        self.0.jiffies()
    }
}

impl Drop for Kernel {
    /// Closing the pinned links' file descriptors leaves the pins, and so the links; the
    /// clsact filters' handles would detach them, so they are forgotten
    /// ([`Kernel::leave_attached`] says why).
    fn drop(&mut self) {
        for filter in self.filters.drain(..) {
            std::mem::forget(filter);
        }
    }
}

/// Where the programs' clsact filters sit without TCX: a priority of their own (before the
/// upload filter's, `shaping::netlink::UPLOAD_FILTER_PREF`) and handle 1, so a restart finds
/// the filter a previous run left and replaces its program in place.
const GATE_FILTER_PREF: u16 = 0xff00;
const GATE_FILTER_HANDLE: tc::TcHandle = tc::TcHandle::new(0, 1);

/// Without TCX: attaches `program` as its clsact filter on `iface`. A filter a previous run
/// left (a stop or a crash leaves it) has its program replaced in place, atomically, as TCX
/// replaces a link's: no packet passes ungated, none is counted twice. One that a version
/// before the fixed priority left elsewhere is removed first (our programs hand a packet on
/// with `TC_ACT_UNSPEC`, so a filter behind ours would count it and spend its budget a second
/// time): packets pass ungated for the microseconds between the two calls, once.
fn attach_filter(
    program: &mut SchedClassifier,
    iface: &str,
    attach_type: TcAttachType,
    name: &'static str,
) -> Result<SchedClassifierLink, aya::programs::ProgramError> {
    let ours = tc::SchedClassifierLink::attached(
        iface,
        attach_type,
        GATE_FILTER_PREF,
        GATE_FILTER_HANDLE,
        None,
    )
    .map_err(aya::programs::ProgramError::IOError)?;
    // Without a filter there, the kernel refuses (no NLM_F_CREATE): a fresh attach follows.
    if let Ok(id) = program.attach_to_link(ours) {
        tracing::info!(
            program = name,
            "replaced the program of the filter a previous run left"
        );
        return program.take_link(id);
    }
    if tc::qdisc_detach_program(iface, attach_type, name).is_ok() {
        tracing::info!(program = name, "removed the filter an earlier version left");
    }
    let id = program.attach_with_options(
        iface,
        attach_type,
        tc::TcAttachOptions::Netlink(tc::NlOptions {
            priority: GATE_FILTER_PREF,
            handle: GATE_FILTER_HANDLE,
            classid: None,
        }),
    )?;
    program.take_link(id)
}

/// Without TCX the programs hang off a clsact qdisc on `iface`: adds it unless it is there
/// (an error here shows when the filters are attached).
pub fn ensure_clsact(iface: &str) {
    let _ = tc::qdisc_add_clsact(iface);
}

/// Whether the kernel attaches tc programs with TCX (Linux 6.6 and later); before, they hang
/// off a clsact qdisc.
fn has_tcx() -> bool {
    KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0))
}

/// Puts the front door's programs where the upload program tail-calls them
/// ([`MAP_FRONT_DOOR`]).
pub fn fill_front_door(ebpf: &mut Ebpf) -> Result<(), BpfError> {
    for (index, name) in [
        (front_door::STEER, PROGRAM_INGRESS_STEER),
        (front_door::TO_BOX, PROGRAM_INGRESS_TO_BOX),
    ] {
        let program = classifier(ebpf, name)?
            .fd()
            .map_err(|source| BpfError::Program { name, source })?
            .try_clone()
            .map_err(|source| BpfError::Program {
                name,
                source: aya::programs::ProgramError::IOError(source),
            })?;
        let mut programs: ProgramArray<&mut MapData> = typed_map_mut(ebpf, MAP_FRONT_DOOR)?;
        programs
            .set(index, &program, 0)
            .map_err(|source| BpfError::Map {
                name: MAP_FRONT_DOOR,
                source,
            })?;
    }
    Ok(())
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

/// Names of the programs attached to `iface` (ingress, then egress): what an operator would
/// check to see whether hotspotd left anything behind. TCX links, or, on kernels without TCX,
/// the clsact qdisc's bpf filters. Not from inside a tokio runtime (it runs one of its own
/// for the netlink dump without TCX).
pub fn attached_programs(iface: &str) -> Result<Vec<String>, aya::programs::ProgramError> {
    if !has_tcx() {
        return clsact_programs(iface).map_err(aya::programs::ProgramError::IOError);
    }
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

/// The names of the bpf filters on `iface`'s clsact hooks, ingress then egress.
fn clsact_programs(iface: &str) -> io::Result<Vec<String>> {
    use futures::TryStreamExt as _;
    use rtnetlink::packet_route::tc::{TcAttribute, TcFilterBpfOption, TcOption};

    let ifindex = nix::net::if_::if_nametoindex(iface)
        .map_err(|errno| io::Error::from_raw_os_error(errno as i32))?;
    let ifindex = i32::try_from(ifindex).map_err(io::Error::other)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        let driver = tokio::spawn(connection);
        let mut names = Vec::new();
        for ingress in [true, false] {
            let request = handle.traffic_filter(ifindex).get();
            let request = if ingress {
                request.ingress()
            } else {
                request.egress()
            };
            let mut filters = request.execute();
            while let Some(filter) = filters.try_next().await.map_err(io::Error::other)? {
                for attribute in filter.attributes {
                    let TcAttribute::Options(options) = attribute else {
                        continue;
                    };
                    names.extend(options.into_iter().filter_map(|option| match option {
                        TcOption::Bpf(TcFilterBpfOption::ProgName(name)) => Some(name),
                        _ => None,
                    }));
                }
            }
        }
        driver.abort();
        Ok(names)
    })
}

/// The folder of pin layout `version` under `kernel.pin_dir`.
fn layout_folder(version: u32) -> String {
    format!("v{version}")
}

/// The layout version a folder under `kernel.pin_dir` is named for (`v7` → 7).
fn layout_version(name: &std::ffi::OsStr) -> Option<u32> {
    let digits = name.to_str()?.strip_prefix('v')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The folders of pin layouts other than this version's under `base_dir`, with their
/// versions, in version order; none if it cannot be read.
fn other_layouts(base_dir: &Path) -> Vec<(u32, PathBuf)> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(base_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| Some((layout_version(&entry.file_name())?, entry.path())))
        .filter(|(version, _)| *version != MAP_LAYOUT_VERSION)
        .collect();
    found.sort();
    found
}

/// Detaches the programs a stopped or crashed hotspotd left on `iface` and removes every pin
/// under `pin_dir` (links, grants, counters; every layout version), then `pin_dir` itself if
/// nothing else is in it: what `hotspotd --release` does to the kernel. No daemon may run on
/// `pin_dir`: its open links would keep the programs attached.
///
/// A TCX link whose pin goes is detached by the kernel as soon as nothing else holds it;
/// without TCX, the clsact filters of hotspotd's programs are removed from `iface` by name.
/// Returns whether anything was there.
pub fn release(pin_dir: &Path, iface: &str) -> Result<bool, BpfError> {
    let mut found = false;
    if !has_tcx() && nix::net::if_::if_nametoindex(iface).is_ok() {
        for (name, attach_type) in [
            (PROGRAM_INGRESS, TcAttachType::Ingress),
            (PROGRAM_INGRESS_TO_IFB, TcAttachType::Ingress),
            (PROGRAM_EGRESS, TcAttachType::Egress),
        ] {
            match tc::qdisc_detach_program(iface, attach_type, name) {
                Ok(()) => found = true,
                Err(tc::TcError::IoError(error)) if error.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(BpfError::Detach {
                        name,
                        iface: iface.to_owned(),
                        source,
                    });
                }
            }
        }
    }
    let entries = match std::fs::read_dir(pin_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(source) => {
            return Err(BpfError::Release {
                path: pin_dir.to_owned(),
                source,
            });
        }
    };
    for entry in entries {
        let entry = entry.map_err(|source| BpfError::Release {
            path: pin_dir.to_owned(),
            source,
        })?;
        // Only the layout folders (`v1`, ...) are ours: `kernel.pin_dir` may be a folder that
        // holds other programs' pins too.
        if layout_version(&entry.file_name()).is_none() {
            continue;
        }
        let path = entry.path();
        std::fs::remove_dir_all(&path).map_err(|source| BpfError::Release { path, source })?;
        found = true;
    }
    match std::fs::remove_dir(pin_dir) {
        Ok(()) => Ok(found),
        // Something else is pinned there: not ours to remove.
        Err(error) if error.kind() == io::ErrorKind::DirectoryNotEmpty => Ok(found),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(found),
        Err(source) => Err(BpfError::Release {
            path: pin_dir.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::{layout_folder, layout_version};

    #[test]
    fn only_layout_folders_have_a_version() {
        assert_eq!(layout_version(OsStr::new(&layout_folder(1))), Some(1));
        assert_eq!(layout_version(OsStr::new("v12")), Some(12));
        for other in ["v", "links", "va", "v-1", "v1x", "1", "V1"] {
            assert_eq!(layout_version(OsStr::new(other)), None, "{other}");
        }
    }
}
