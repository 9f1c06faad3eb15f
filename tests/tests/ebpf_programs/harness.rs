//! What the tests share: the `Harness` that loads the object and runs its programs, the bpffs
//! pin folder it cleans up, readers of the counters, `STATS`, the grants and `EVENTS`, the test
//! network's addresses and frame builders.

use std::collections::BTreeSet;
use std::{
    fs,
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    process,
    sync::atomic::{AtomicU32, Ordering},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, MapError, PerCpuArray, PerCpuHashMap, PerCpuValues, RingBuf},
    programs::{SchedClassifier, TestRun, TestRunOptions},
};
use hotspotd::{bpf::EBPF_OBJECT, config::WalledGardenEntry};
use hotspotd_common::{
    AddressOwner, CLOCK_PROBE, GateEvent, Grant, IndexEntry, IpKey, MAP_ADDRESSES,
    MAP_BOX_RESOLVER, MAP_CLIENT_INDEX, MAP_CLIENT_INDEX_INFO, MAP_CLIENTS, MAP_CLOCK, MAP_CONFIG,
    MAP_EVENTS, MAP_SEEN, MAP_STATS, MAP_USAGE, MacKey, NO_DEADLINE, PROGRAM_INGRESS_STEER,
    PROGRAM_INGRESS_TO_BOX, UNLIMITED_BYTES, Usage, index_info, stat,
};
use hotspotd_tests::frames::{
    ETH_HLEN, ETH_P_IPV4, IPPROTO_UDP, IPV4_HLEN, Mac, UDP_HLEN, ethernet, ipv4, ipv6, udp,
};

/// The verdict on every frame the gate lets through: `TC_ACT_UNSPEC` (`TCX_NEXT`), "let whatever
/// comes next decide".
pub(crate) const TC_ACT_UNSPEC: i32 = -1;
/// The verdict on a packet the gate drops.
pub(crate) const TC_ACT_SHOT: i32 = 2;

// Locally administered unicast MACs (second-lowest bit of the first octet set, lowest clear).
pub(crate) const CLIENT: Mac = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
pub(crate) const GATEWAY: Mac = [0x02, 0x00, 0x00, 0x00, 0x00, 0xfe];

pub(crate) const CLIENT_V4: [u8; 4] = Ipv4Addr::new(192, 168, 50, 10).octets();
pub(crate) const BOX_V4: [u8; 4] = Ipv4Addr::new(192, 168, 50, 1).octets();
pub(crate) const REMOTE_V4: [u8; 4] = Ipv4Addr::new(203, 0, 113, 7).octets();
pub(crate) const CLIENT_V6: [u8; 16] =
    Ipv6Addr::new(0x2001, 0xdb8, 0x50, 0, 0, 0, 0, 0x10).octets();
pub(crate) const BOX_V6: [u8; 16] = Ipv6Addr::new(0x2001, 0xdb8, 0x50, 0, 0, 0, 0, 0x1).octets();
pub(crate) const REMOTE_V6: [u8; 16] =
    Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x7).octets();

pub(crate) const CLIENT_PORT: u16 = 40_000;
pub(crate) const HTTPS_PORT: u16 = 443;
pub(crate) const DNS_PORT: u16 = 53;

// `struct __sk_buff` of the kernel's uapi `linux/bpf.h`: its size and the offsets of the two
// fields the GSO test sets. BPF_PROG_TEST_RUN copies these into the skb's shared info and
// rejects a context with any byte set in a field it does not let a test choose.
pub(crate) const SK_BUFF_LEN: usize = 192;
/// Offsets in `__sk_buff` (uapi linux/bpf.h).
pub(crate) const SK_BUFF_PRIORITY: usize = 32;
/// Where `mark` is in `struct __sk_buff`.
pub(crate) const SK_BUFF_MARK: usize = 8;
pub(crate) const SK_BUFF_INGRESS_IFINDEX: usize = 36;
const SK_BUFF_GSO_SEGS: usize = 164;
const SK_BUFF_GSO_SIZE: usize = 176;

/// The two programs under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Program {
    /// Frames from clients: the client is the source MAC.
    Ingress,
    /// Frames to clients: the client is the destination MAC.
    Egress,
}

impl Program {
    pub(crate) const BOTH: [Self; 2] = [Self::Ingress, Self::Egress];

    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Ingress => "lan_ingress",
            Self::Egress => "lan_egress",
        }
    }
}

/// A bpffs folder for one test's pinned maps. Dropping it (also when the test panics) unpins
/// them, so no test sees another's counters and nothing outlives the run.
struct PinDir {
    path: PathBuf,
}

impl PinDir {
    fn create() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = PathBuf::from(format!(
            "/sys/fs/bpf/hotspotd-testrun-{}-{}",
            process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        if let Err(error) = fs::create_dir(&path) {
            panic!(
                "mkdir {}: {error} (needs root and bpffs at /sys/fs/bpf)",
                path.display()
            );
        }
        Self { path }
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        // Unpinning removes the names only; each map goes when its last fd closes.
        if let Err(error) = fs::remove_dir_all(&self.path) {
            eprintln!("removing {}: {error}", self.path.display());
        }
    }
}

/// The eBPF object loaded with its programs verified, ready for test runs.
pub(crate) struct Harness {
    ebpf: Ebpf,
    /// The clients given room and grants, as the daemon's table gives them.
    clients: hotspotd::bpf::ClientTable,
    /// The box's addresses told to the programs so far.
    local_addrs: BTreeSet<IpKey>,
    /// And its free services (`network.local_services`): the defaults unless a test sets them.
    local_services: Vec<hotspotd::config::LocalService>,
    // Declared after `ebpf` so the maps' fds close before their pins go.
    _pins: PinDir,
}

impl Harness {
    pub(crate) fn load() -> Self {
        Self::load_on(PinDir::create(), |_| {})
    }

    /// A harness whose client index hashes every MAC to the same home entry (multiplier 1),
    /// so its window is full after `CLIENT_INDEX_PROBES` clients: the case a random
    /// multiplier makes too rare to meet by chance.
    pub(crate) fn load_colliding() -> Self {
        Self::load_on(PinDir::create(), |ebpf| {
            let mut info: Array<_, u64> = Array::try_from(
                ebpf.map_mut(MAP_CLIENT_INDEX_INFO)
                    .expect("CLIENT_INDEX_INFO map"),
            )
            .expect("an array");
            info.set(index_info::MULTIPLIER, 1, 0)
                .expect("set the multiplier");
        })
    }

    /// The same pinned maps loaded again, as a restarted daemon loads them; `before_table`
    /// may change them first, as a crash or an older release could have left them.
    pub(crate) fn reload(self, before_table: impl FnOnce(&mut Ebpf)) -> Self {
        let Self {
            ebpf,
            clients,
            local_addrs,
            local_services,
            _pins: pins,
        } = self;
        drop(clients);
        drop(ebpf);
        let mut harness = Self::load_on(pins, before_table);
        harness.local_addrs = local_addrs;
        harness.local_services = local_services;
        harness
    }

    /// Writes `entry` at `position` of `CLIENT_INDEX`, behind the daemon's back.
    pub(crate) fn write_index_entry(ebpf: &mut Ebpf, position: u32, entry: IndexEntry) {
        let mut index: Array<_, IndexEntry> =
            Array::try_from(ebpf.map_mut(MAP_CLIENT_INDEX).expect("CLIENT_INDEX map"))
                .expect("an array");
        index.set(position, entry, 0).expect("write an index entry");
    }

    /// Entry `position` of `CLIENT_INDEX`.
    pub(crate) fn index_entry(&self, position: u32) -> IndexEntry {
        let index: Array<_, IndexEntry> =
            Array::try_from(self.ebpf.map(MAP_CLIENT_INDEX).expect("CLIENT_INDEX map"))
                .expect("an array");
        index.get(&position, 0).expect("read an index entry")
    }

    /// Word `word` of `CLIENT_INDEX_INFO`.
    pub(crate) fn index_info(&self, word: u32) -> u64 {
        let info: Array<_, u64> = Array::try_from(
            self.ebpf
                .map(MAP_CLIENT_INDEX_INFO)
                .expect("CLIENT_INDEX_INFO map"),
        )
        .expect("an array");
        info.get(&word, 0).expect("read CLIENT_INDEX_INFO")
    }

    fn load_on(pins: PinDir, before_table: impl FnOnce(&mut Ebpf)) -> Self {
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&pins.path)
            .load(EBPF_OBJECT)
            .expect("load the eBPF object");
        for name in [
            Program::Ingress.name(),
            Program::Egress.name(),
            PROGRAM_INGRESS_STEER,
            PROGRAM_INGRESS_TO_BOX,
            CLOCK_PROBE,
        ] {
            let classifier: &mut SchedClassifier = ebpf
                .program_mut(name)
                .expect("program in the object")
                .try_into()
                .expect("program is a tc classifier");
            classifier.load().expect("the verifier accepts the program");
        }
        hotspotd::bpf::fill_front_door(&mut ebpf).expect("the front door's program in its map");
        before_table(&mut ebpf);
        let clients = hotspotd::bpf::ClientTable::load(&mut ebpf).expect("read CLIENTS");
        Self {
            ebpf,
            clients,
            local_addrs: BTreeSet::new(),
            local_services: hotspotd::config::LocalService::defaults(),
            _pins: pins,
        }
    }

    /// A harness where each of `clients` has a running session without limits, so the gate
    /// lets all its traffic through: for tests about what is counted, not what passes.
    pub(crate) fn with_sessions(clients: &[Mac]) -> Self {
        let mut harness = Self::load();
        for client in clients {
            harness.grant(*client, unlimited());
        }
        harness
    }

    fn classifier(&self, name: &str) -> &SchedClassifier {
        self.ebpf
            .program(name)
            .expect("program in the object")
            .try_into()
            .expect("program is a tc classifier")
    }

    /// Runs `program` once on `frame` and returns its verdict. Without a `context`, the
    /// packet arrived on another interface ([`forwarded`]): a download the box forwards.
    pub(crate) fn verdict(&self, program: Program, frame: &[u8], context: Option<&[u8]>) -> i32 {
        let forwarded = forwarded();
        let options = TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(context.unwrap_or(&forwarded)),
            ..TestRunOptions::new()
        };
        let result = self
            .classifier(program.name())
            .test_run(options)
            .unwrap_or_else(|error| {
                panic!(
                    "{} test run of a {}-byte frame: {error:?}",
                    program.name(),
                    frame.len()
                )
            });
        result.return_value.cast_signed()
    }

    /// Runs `program` once on `frame` with `context` as its `__sk_buff`, and returns the
    /// verdict and the `__sk_buff` as the program left it.
    pub(crate) fn run_skb(
        &self,
        program: Program,
        frame: &[u8],
        context: &[u8; SK_BUFF_LEN],
    ) -> (i32, [u8; SK_BUFF_LEN]) {
        let (verdict, _, out) = self.run_rewrite(program, frame, context);
        (verdict, out)
    }

    /// Runs `program` once on `frame` with `context` as its `__sk_buff`, and returns the
    /// verdict, the packet as the program left it, and the `__sk_buff`.
    pub(crate) fn run_rewrite(
        &self,
        program: Program,
        frame: &[u8],
        context: &[u8; SK_BUFF_LEN],
    ) -> (i32, Vec<u8>, [u8; SK_BUFF_LEN]) {
        let mut out = [0u8; SK_BUFF_LEN];
        // Room for any rewrite: the programs only ever shorten a packet.
        let mut data = vec![0u8; frame.len()];
        let options = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut data),
            ctx_in: Some(context),
            ctx_out: Some(&mut out),
            ..TestRunOptions::new()
        };
        let result = self
            .classifier(program.name())
            .test_run(options)
            .unwrap_or_else(|error| panic!("{} test run: {error:?}", program.name()));
        let len = usize::try_from(result.data_size_out).expect("a packet length");
        data.truncate(len);
        (result.return_value.cast_signed(), data, out)
    }

    /// Names the box's resolver of each family, as the daemon does with
    /// `portal.redirect_dns`; all-zero turns a family's redirect off.
    pub(crate) fn set_box_resolver(&mut self, v4: [u8; 4], v6: [u8; 16]) {
        let mut resolver: Array<_, IpKey> = Array::try_from(
            self.ebpf
                .map_mut(MAP_BOX_RESOLVER)
                .expect("BOX_RESOLVER map"),
        )
        .expect("an array");
        let v4 = if v4 == [0; 4] {
            IpKey::default()
        } else {
            IpKey::from_v4(v4)
        };
        resolver.set(0, v4, 0).expect("set the IPv4 resolver");
        resolver
            .set(1, IpKey::from_v6(v6), 0)
            .expect("set the IPv6 resolver");
    }

    /// Sets a word of `CONFIG`, as the daemon does.
    pub(crate) fn set_config(&mut self, index: u32, value: u32) {
        let mut config: Array<_, u32> =
            Array::try_from(self.ebpf.map_mut(MAP_CONFIG).expect("CONFIG map")).expect("an array");
        config.set(index, value, 0).expect("set a CONFIG word");
    }

    /// Runs `program` once on `frame` and checks that it let the frame through.
    pub(crate) fn run(&self, program: Program, frame: &[u8]) {
        self.run_with_context(program, frame, None);
    }

    pub(crate) fn run_with_context(&self, program: Program, frame: &[u8], context: Option<&[u8]>) {
        assert_eq!(
            self.verdict(program, frame, context),
            TC_ACT_UNSPEC,
            "{} must let this frame through: {frame:02x?}",
            program.name(),
        );
    }

    /// Runs `program` once on `frame` and checks that it dropped the frame.
    pub(crate) fn run_dropped(&self, program: Program, frame: &[u8]) {
        self.run_dropped_with_context(program, frame, None);
    }

    pub(crate) fn run_dropped_with_context(
        &self,
        program: Program,
        frame: &[u8],
        context: Option<&[u8]>,
    ) {
        assert_eq!(
            self.verdict(program, frame, context),
            TC_ACT_SHOT,
            "{} must drop this frame: {frame:02x?}",
            program.name(),
        );
    }

    /// The client's counters summed over all CPUs, `None` when it has no entry: in `USAGE` if
    /// the daemon (a grant) made room for it, else in `SEEN`.
    pub(crate) fn usage(&self, client: Mac) -> Option<Usage> {
        self.usage_in(MAP_USAGE, client)
            .or_else(|| self.usage_in(MAP_SEEN, client))
    }

    /// The client's counters in `USAGE` (the slot its entry in `CLIENTS` names) or `SEEN`.
    pub(crate) fn usage_in(&self, name: &str, client: Mac) -> Option<Usage> {
        if name == MAP_USAGE {
            return hotspotd::bpf::read_usage(&self.ebpf, MacKey::new(client)).expect("read USAGE");
        }
        let map: PerCpuHashMap<_, MacKey, Usage> =
            PerCpuHashMap::try_from(self.ebpf.map(name).expect("counter map"))
                .expect("a per-CPU hash map");
        match map.get(&MacKey::new(client), 0) {
            Ok(per_cpu) => Some(sum_cpus(&per_cpu)),
            Err(MapError::KeyNotFound) => None,
            Err(error) => panic!("reading {name}: {error}"),
        }
    }

    /// Every client's counters summed over all CPUs (of `USAGE` where it has room there, of
    /// `SEEN` otherwise), in key order.
    pub(crate) fn all_usage(&self) -> Vec<(Mac, Usage)> {
        let mut entries: std::collections::BTreeMap<Mac, Usage> = std::collections::BTreeMap::new();
        let seen: PerCpuHashMap<_, MacKey, Usage> =
            PerCpuHashMap::try_from(self.ebpf.map(MAP_SEEN).expect("SEEN map"))
                .expect("a per-CPU hash map");
        for entry in &seen {
            let (key, per_cpu) = entry.expect("iterate the counters");
            entries.insert(key.addr, sum_cpus(&per_cpu));
        }
        let clients: aya::maps::HashMap<_, MacKey, hotspotd_common::ClientSlots> =
            aya::maps::HashMap::try_from(self.ebpf.map(MAP_CLIENTS).expect("CLIENTS map"))
                .expect("a hash map");
        for entry in &clients {
            let (key, _) = entry.expect("iterate CLIENTS");
            let usage = self.usage_in(MAP_USAGE, key.addr).expect("a slot of USAGE");
            entries.insert(key.addr, usage);
        }
        entries.into_iter().collect()
    }

    /// One `STATS` counter summed over all CPUs.
    fn stat(&self, index: u32) -> u64 {
        let map: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map(MAP_STATS).expect("STATS map"))
                .expect("STATS is a per-CPU array");
        map.get(&index, 0).expect("read STATS").iter().sum()
    }

    pub(crate) fn stats(&self) -> Stats {
        Stats {
            malformed: self.stat(stat::MALFORMED_PACKETS),
            untracked: self.stat(stat::UNTRACKED_PACKETS),
            non_ip: self.stat(stat::NON_IP_PACKETS),
            dropped_no_session: self.stat(stat::DROPPED_NO_SESSION),
            dropped_budget: self.stat(stat::DROPPED_BUDGET),
            dropped_deadline: self.stat(stat::DROPPED_DEADLINE),
            events_lost: self.stat(stat::EVENTS_LOST),
            dropped_group_destination: self.stat(stat::DROPPED_GROUP_DESTINATION),
        }
    }

    /// Makes `client`'s counters in `SEEN` exactly `per_cpu`, one `Usage` per possible CPU.
    pub(crate) fn set_seen(&mut self, client: Mac, per_cpu: Vec<Usage>) {
        let mut map: PerCpuHashMap<_, MacKey, Usage> =
            PerCpuHashMap::try_from(self.ebpf.map_mut(MAP_SEEN).expect("SEEN map"))
                .expect("SEEN is a per-CPU hash map");
        let values = PerCpuValues::try_from(per_cpu).expect("one per CPU");
        map.insert(MacKey::new(client), values, 0)
            .expect("insert into SEEN");
    }

    /// Every entry of `SEEN` with its per-CPU values as they are, walked entry by entry with
    /// aya, in key order.
    pub(crate) fn seen_per_cpu(&self) -> Vec<(MacKey, Vec<Usage>)> {
        let map: PerCpuHashMap<_, MacKey, Usage> =
            PerCpuHashMap::try_from(self.ebpf.map(MAP_SEEN).expect("SEEN map"))
                .expect("SEEN is a per-CPU hash map");
        let mut entries: Vec<(MacKey, Vec<Usage>)> = map
            .iter()
            .map(|entry| {
                let (key, per_cpu) = entry.expect("iterate SEEN");
                (key, per_cpu.to_vec())
            })
            .collect();
        entries.sort_unstable_by_key(|(key, _)| *key);
        entries
    }

    /// The slots the daemon's table gave `client`.
    pub(crate) fn slots_of(&self, client: Mac) -> Option<hotspotd_common::ClientSlots> {
        self.clients.slots_of(MacKey::new(client))
    }

    /// Who the upload program last saw sending from `addr`; `None` if nobody.
    pub(crate) fn address_owner(&self, addr: IpKey) -> Option<AddressOwner> {
        let map: aya::maps::HashMap<_, IpKey, AddressOwner> =
            aya::maps::HashMap::try_from(self.ebpf.map(MAP_ADDRESSES).expect("ADDRESSES map"))
                .expect("ADDRESSES is a hash map");
        match map.get(&addr, 0) {
            Ok(owner) => Some(owner),
            Err(MapError::KeyNotFound) => None,
            Err(error) => panic!("reading ADDRESSES: {error}"),
        }
    }

    /// The file descriptor of `CLIENTS`, a plain hash map.
    pub(crate) fn clients_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd as _;
        match self.ebpf.map(MAP_CLIENTS).expect("CLIENTS map") {
            aya::maps::Map::HashMap(map) => map.fd().as_fd(),
            _ => panic!("CLIENTS is a hash map"),
        }
    }

    /// The file descriptor of `SEEN`, a per-CPU LRU hash map.
    pub(crate) fn seen_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd as _;
        match self.ebpf.map(MAP_SEEN).expect("SEEN map") {
            aya::maps::Map::PerCpuLruHashMap(map) => map.fd().as_fd(),
            _ => panic!("SEEN is a per-CPU LRU hash map"),
        }
    }

    /// The file descriptor of `USAGE`, a per-CPU array.
    pub(crate) fn usage_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd as _;
        match self.ebpf.map(MAP_USAGE).expect("USAGE map") {
            aya::maps::Map::PerCpuArray(map) => map.fd().as_fd(),
            _ => panic!("USAGE is a per-CPU array"),
        }
    }

    /// Tells the programs `addr` is the box itself, as the daemon does, with the default free
    /// services (`network.local_services`).
    pub(crate) fn add_local_addr(&mut self, addr: IpKey) {
        self.local_addrs.insert(addr);
        self.write_local();
    }

    /// Makes the box's free services `services` (`network.local_services` entries).
    pub(crate) fn set_local_services(&mut self, services: &[&str]) {
        self.local_services = services
            .iter()
            .map(|text| text.parse().expect("a valid service"))
            .collect();
        self.write_local();
    }

    fn write_local(&mut self) {
        let services = hotspotd::bpf::LocalServices::of(&self.local_services);
        hotspotd::bpf::set_local_addrs(&mut self.ebpf, &self.local_addrs, &services)
            .expect("write the local addresses");
    }

    /// Installs or replaces `client`'s grant with a budget of its own, as the daemon does
    /// when a session runs (room for its counters first).
    pub(crate) fn grant(&mut self, client: Mac, grant: Grant) {
        self.clients
            .set_grant(&mut self.ebpf, MacKey::new(client), grant)
            .expect("write the grant");
    }

    /// Lets `member` draw on `holder`'s budget, as the daemon does for the devices of one
    /// voucher.
    pub(crate) fn share(&mut self, member: Mac, holder: Mac) {
        self.try_share(member, holder).expect("share the grant");
    }

    pub(crate) fn try_share(
        &mut self,
        member: Mac,
        holder: Mac,
    ) -> Result<(), hotspotd::bpf::BpfError> {
        self.clients.share_grant(
            &mut self.ebpf,
            MacKey::new(member),
            MacKey::new(holder),
            0,
            0,
        )
    }

    /// Gives `client`'s room back, as the daemon does after its last reading without a grant.
    pub(crate) fn release(&mut self, client: Mac) {
        self.clients
            .release(&mut self.ebpf, MacKey::new(client))
            .expect("release the client");
    }

    /// Removes `client`'s grant, as the daemon does when its session stops.
    pub(crate) fn revoke(&mut self, client: Mac) {
        self.clients
            .remove_grant(&mut self.ebpf, MacKey::new(client))
            .expect("remove the grant");
    }

    /// `client`'s grant as the programs left it, `None` when it has none.
    pub(crate) fn grant_of(&self, client: Mac) -> Option<Grant> {
        hotspotd::bpf::read_grant(&self.ebpf, MacKey::new(client)).expect("read the grant")
    }

    /// Makes the walled garden exactly `entries` (`network.walled_garden` syntax).
    pub(crate) fn set_walled_garden(&mut self, entries: &[&str]) {
        let entries: Vec<WalledGardenEntry> = entries
            .iter()
            .map(|text| text.parse().expect("a valid walled-garden entry"))
            .collect();
        hotspotd::bpf::set_walled_garden(&mut self.ebpf, &entries)
            .expect("write the walled garden");
    }

    /// The kernel's jiffies now, the clock of `Grant::deadline_jiffies`: runs the clock probe
    /// and reads what it left in `CLOCK`, as the daemon does.
    pub(crate) fn jiffies(&self) -> u64 {
        // BPF_PROG_TEST_RUN wants at least an Ethernet header; the probe never reads it.
        let frame = [0u8; ETH_HLEN];
        self.classifier(CLOCK_PROBE)
            .test_run(TestRunOptions {
                data_in: Some(&frame),
                ..TestRunOptions::new()
            })
            .expect("run the clock probe");
        let clock: Array<_, u64> =
            Array::try_from(self.ebpf.map(MAP_CLOCK).expect("CLOCK map")).expect("CLOCK array");
        clock.get(&0, 0).expect("read CLOCK")
    }

    /// The DNS answers the download program copied for the walled garden (`GARDEN_ANSWERS`),
    /// each as its DNS message. The map leaves the object, so call this once.
    pub(crate) fn take_garden_answers(&mut self) -> RingBuf<MapData> {
        let map = self
            .ebpf
            .take_map(hotspotd_common::MAP_GARDEN_ANSWERS)
            .expect("GARDEN_ANSWERS map");
        RingBuf::try_from(map).expect("GARDEN_ANSWERS is a ring buffer")
    }

    /// The reader of the programs' gate events. The map leaves the object, so call this once.
    pub(crate) fn take_events(&mut self) -> Events {
        let map = self.ebpf.take_map(MAP_EVENTS).expect("EVENTS map");
        Events(RingBuf::try_from(map).expect("EVENTS is a ring buffer"))
    }
}

/// `EVENTS`, read as the daemon reads it.
pub(crate) struct Events(RingBuf<MapData>);

impl Events {
    /// Every event written since the last call, oldest first.
    pub(crate) fn drain(&mut self) -> Vec<GateEvent> {
        let mut events = Vec::new();
        while let Some(item) = self.0.next() {
            events.push(decode_event(&item));
        }
        events
    }
}

/// A `GateEvent` from the bytes the kernel wrote (`#[repr(C)]`: session id, MAC key, kind).
fn decode_event(bytes: &[u8]) -> GateEvent {
    assert_eq!(
        bytes.len(),
        size_of::<GateEvent>(),
        "an EVENTS record is one GateEvent"
    );
    let session_id = i64::from_ne_bytes(bytes[0..8].try_into().expect("8 bytes"));
    let mac: Mac = bytes[8..14].try_into().expect("6 bytes");
    let kind = u32::from_ne_bytes(bytes[16..20].try_into().expect("4 bytes"));
    assert_eq!(
        (&bytes[14..16], &bytes[20..24]),
        (&[0u8; 2][..], &[0u8; 4][..]),
        "padding is zero"
    );
    GateEvent::new(MacKey::new(mac), session_id, kind)
}

/// A running session that passes everything: no data limit, no deadline.
pub(crate) const fn unlimited() -> Grant {
    Grant::new(1, UNLIMITED_BYTES, NO_DEADLINE)
}

/// `STATS`, summed over all CPUs.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Stats {
    pub(crate) malformed: u64,
    pub(crate) untracked: u64,
    pub(crate) non_ip: u64,
    pub(crate) dropped_no_session: u64,
    pub(crate) dropped_budget: u64,
    pub(crate) dropped_deadline: u64,
    pub(crate) events_lost: u64,
    pub(crate) dropped_group_destination: u64,
}

fn sum_cpus(per_cpu: &[Usage]) -> Usage {
    per_cpu.iter().fold(Usage::default(), Usage::merged)
}

/// The counters without `last_seen_jiffies`, which is a clock reading.
pub(crate) fn counters(usage: Usage) -> Usage {
    Usage {
        last_seen_jiffies: 0,
        ..usage
    }
}

pub(crate) fn billable_up(ip_bytes: usize, packets: u64) -> Usage {
    Usage {
        up_bytes: to_u64(ip_bytes),
        up_packets: packets,
        ..Usage::default()
    }
}

pub(crate) fn to_u64(n: usize) -> u64 {
    u64::try_from(n).expect("usize fits u64")
}

/// A `packet_len`-byte UDP packet (IP header included) from `client` to the remote address.
pub(crate) fn udp_upload_from(client: Mac, packet_len: usize) -> Vec<u8> {
    let packet = udp_v4(CLIENT_V4, REMOTE_V4, packet_len - IPV4_HLEN - UDP_HLEN);
    ethernet(GATEWAY, client, &[], ETH_P_IPV4, &packet)
}

/// A `packet_len`-byte UDP packet (IP header included) from the remote address to `client`.
pub(crate) fn udp_download_to(client: Mac, packet_len: usize) -> Vec<u8> {
    let packet = udp_v4(REMOTE_V4, CLIENT_V4, packet_len - IPV4_HLEN - UDP_HLEN);
    ethernet(client, GATEWAY, &[], ETH_P_IPV4, &packet)
}

pub(crate) fn udp_v4(src: [u8; 4], dst: [u8; 4], payload_len: usize) -> Vec<u8> {
    ipv4(
        src,
        dst,
        IPPROTO_UDP,
        &udp(CLIENT_PORT, DNS_PORT, payload_len),
    )
}

pub(crate) fn udp_v6(src: [u8; 16], dst: [u8; 16], payload_len: usize) -> Vec<u8> {
    ipv6(
        src,
        dst,
        IPPROTO_UDP,
        &udp(CLIENT_PORT, DNS_PORT, payload_len),
    )
}

/// A DNS answer from the box's resolver to the client: what the box sends itself from one of
/// its free services (run it with [`FROM_BOX`]).
pub(crate) fn dns_answer_v4(src: [u8; 4], dst: [u8; 4], payload_len: usize) -> Vec<u8> {
    ipv4(
        src,
        dst,
        IPPROTO_UDP,
        &udp(DNS_PORT, CLIENT_PORT, payload_len),
    )
}

pub(crate) fn dns_answer_v6(src: [u8; 16], dst: [u8; 16], payload_len: usize) -> Vec<u8> {
    ipv6(
        src,
        dst,
        IPPROTO_UDP,
        &udp(DNS_PORT, CLIENT_PORT, payload_len),
    )
}

/// A frame from the client through the gateway.
pub(crate) fn upload(ether_type: u16, packet: &[u8]) -> Vec<u8> {
    ethernet(GATEWAY, CLIENT, &[], ether_type, packet)
}

/// A frame from the gateway to the client.
pub(crate) fn download(ether_type: u16, packet: &[u8]) -> Vec<u8> {
    ethernet(CLIENT, GATEWAY, &[], ether_type, packet)
}

/// A `__sk_buff` context of a packet that arrived on another interface (`ingress_ifindex`
/// set): going down, one the box forwards, not one it sends itself.
pub(crate) fn forwarded() -> [u8; SK_BUFF_LEN] {
    let mut context = [0; SK_BUFF_LEN];
    context[SK_BUFF_INGRESS_IFINDEX..SK_BUFF_INGRESS_IFINDEX + 4]
        .copy_from_slice(&FORWARDED_FROM.to_ne_bytes());
    context
}

/// A `__sk_buff` context of a packet the box itself sends (no ingress interface).
pub(crate) const FROM_BOX: [u8; SK_BUFF_LEN] = [0; SK_BUFF_LEN];

/// The interface forwarded packets came in on in these tests: any but 0 (the box's own).
pub(crate) const FORWARDED_FROM: u32 = 1;

/// A `__sk_buff` context saying the skb is a forwarded GSO packet of `segments` segments.
pub(crate) fn gso_context(segments: u32, segment_size: u32) -> [u8; SK_BUFF_LEN] {
    let mut context = forwarded();
    context[SK_BUFF_GSO_SEGS..SK_BUFF_GSO_SEGS + 4].copy_from_slice(&segments.to_ne_bytes());
    context[SK_BUFF_GSO_SIZE..SK_BUFF_GSO_SIZE + 4].copy_from_slice(&segment_size.to_ne_bytes());
    context
}
