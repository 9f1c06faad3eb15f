//! Speed limits: two HTB trees kept at a desired state over netlink. Download is shaped on
//! the LAN interface's egress (root `1:`), upload on the egress of an IFB device (root `2:`)
//! into which the eBPF ingress program redirects client traffic. Each tree has a parent class
//! `X:1` capped at the global limit, a default class `X:fffe` for the box's own traffic and
//! unclassified clients, and one class `X:minor` per client; the eBPF programs put the class
//! id in `skb->priority`, which HTB reads directly, so there are no tc filters.
//!
//! Changes go desired state → [`diff`] → apply: a pure diff (`tree`), a pure plan of
//! class and leaf operations (`plan`), then ordered netlink batches (`netlink`), never a `tc`
//! process. Applying the same state twice sends nothing.
//!
//! Side effects: [`Shaper::setup`] creates the IFB device if missing and replaces the root
//! qdiscs of the LAN interface and the IFB (or takes over trees a previous run left, without
//! touching their traffic); [`Shaper::apply`] creates, changes and deletes classes and their
//! leaf qdiscs; [`Shaper::teardown`] deletes both roots and the IFB if hotspotd created it, and
//! [`Shaper::release`] does the same for trees a stopped daemon left (`hotspotd --release`).
//! The daemon runs its shaper on a task of its own ([`ShaperWorker`]), so a slow batch never
//! holds up the control task.

mod htb;
mod netlink;
mod plan;
mod pool;
mod probe;
mod refill;
mod setup;
mod tree;
mod worker;

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
};

pub use netlink::RequestError;
pub use pool::PARKED;
pub use tree::{
    Change, Desired, DesiredError, Direction, FIRST_CLIENT_MINOR, LAST_CLIENT_MINOR, Rates, diff,
};
pub use worker::{Job, Report, ShaperWorker};

use htb::LeafSpec;
use netlink::{Connection, classid};
use plan::{Op, Params, Tree};
use refill::Refill;
use setup::ensure_ifb;

/// Handle major of the HTB root on the LAN interface (download).
pub const LAN_HANDLE: u16 = 1;
/// Handle major of the HTB root on the IFB device (upload).
pub const IFB_HANDLE: u16 = 2;
/// Minor of the default class: the box's own traffic and clients without a class.
pub const DEFAULT_MINOR: u16 = 0xfffe;
/// Minor of the parent class that caps everything at the global limit.
pub const PARENT_MINOR: u16 = 1;

/// The pool is refilled when fewer spare classes than this are left, and while clients and
/// spares together hold fewer classes than the operator wants ready (`speed.classes_ready`).
pub const POOL_LOW: usize = 64;
/// How many minors one refill makes ready: an eighth of the clients or what the pool lacks,
/// within these bounds, so a growing crowd finds spares without a refill creating thousands
/// of classes at once (each holds the RTNL lock a sale's change also needs).
const POOL_REFILL_MIN: usize = 64;
const POOL_REFILL_MAX: usize = 512;

/// `IFLA_IFALIAS` of an IFB device hotspotd created, so a later run knows it may delete it.
const IFB_ALIAS: &str = "hotspotd";

/// The qdisc under each class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leaf {
    /// Flow queueing with `CoDel`: low latency under load, fair between a client's flows.
    FqCodel,
    /// A plain packet FIFO, for kernels without `fq_codel`.
    Pfifo,
}

impl fmt::Display for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Leaf::FqCodel => "fq_codel",
            Leaf::Pfifo => "pfifo",
        })
    }
}

/// A tc handle or class id, shown the way tc shows it (`1:fffe`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassId(pub u32);

impl fmt::Display for ClassId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == u32::MAX {
            f.write_str("root")
        } else {
            write!(f, "{:x}:{:x}", self.0 >> 16, self.0 & 0xffff)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ShapingError {
    #[error("cannot open a routing netlink socket for shaping")]
    Open(#[source] std::io::Error),
    #[error("cannot shape on {iface}: there is no such interface (check network.lan_interface)")]
    NoInterface { iface: String },
    #[error(
        "{iface} exists but is {} device, not an IFB; set network.ifb_interface to a free name",
        .kind.as_deref().map_or_else(|| "a physical".to_owned(), |kind| format!("a {kind}"))
    )]
    NotIfb { iface: String, kind: Option<String> },
    #[error("cannot {action} the IFB device {iface}")]
    Ifb {
        iface: String,
        action: &'static str,
        source: RequestError,
    },
    #[error("cannot {action} the {kind} qdisc at {parent} on {iface}")]
    Qdisc {
        iface: String,
        action: &'static str,
        kind: &'static str,
        /// Where it hangs: `root`, or the class it is the leaf of.
        parent: ClassId,
        source: RequestError,
    },
    #[error("cannot {action} HTB class {classid} on {iface}")]
    Class {
        iface: String,
        action: &'static str,
        classid: ClassId,
        source: RequestError,
    },
    #[error(
        "cannot put the filter that hands uploads to the IFB {ifb} behind the upload program on {iface}"
    )]
    UploadFilter {
        iface: String,
        ifb: String,
        source: RequestError,
    },
    #[error("cannot {what} over netlink")]
    Netlink {
        what: &'static str,
        source: RequestError,
    },
    #[error("cannot shape to this state")]
    Desired(#[from] DesiredError),
}

#[derive(Debug, Clone)]
struct Iface {
    name: String,
    ifindex: u32,
}

/// The two HTB trees and the netlink socket that keeps them at the desired state.
#[derive(Debug)]
pub struct Shaper {
    connection: Connection,
    lan: Iface,
    ifb: Iface,
    /// Whether teardown deletes the IFB: hotspotd created it (this run or an earlier one).
    ifb_owned: bool,
    params: Params,
    /// What the kernel holds, as far as we know; see [`Shaper::current`].
    current: Desired,
    /// Spare client classes (see `pool.rs`) by minor, at the rates the kernel holds them
    /// (parked, or 0: unknown). Never in `current`.
    spare: BTreeMap<u16, Rates>,
    /// `current` holds classes read back at start-up that no apply has looked at yet: the
    /// first [`Shaper::apply_changed`] goes over every class.
    unreconciled: bool,
    /// Spare classes being made ahead of need (see `refill.rs`), and the lowest minor no
    /// refill has started on.
    refill: Option<Refill>,
    refill_next: u16,
    /// Where the refills work: the namespace of the thread that ran [`Shaper::setup`]. `None`
    /// when it cannot be opened; then there are no refills.
    netns: Option<std::sync::Arc<refill::Netns>>,
    /// How many client classes (in use or spare) the refills keep made ahead of need, on top
    /// of the [`POOL_LOW`] spares always kept.
    classes_ready: usize,
}

impl Shaper {
    /// Creates the IFB if missing (and brings it up), probes the leaf qdisc (`fq_codel`, else
    /// pfifo; logged), and installs or takes over the two HTB roots (`1:` on the LAN root,
    /// `2:` on the IFB root) with the parent class `X:1` at the global rate and the default
    /// class `X:fffe` under it. An HTB root with our handle and default class left by a
    /// previous run is kept, so its traffic is not disturbed; its client classes are read
    /// back so the first [`Shaper::apply`] diffs against what is really installed. Must run
    /// in the network namespace of `lan`; the socket stays there.
    pub async fn setup(lan: &str, ifb: &str, global: Rates) -> Result<Shaper, ShapingError> {
        Desired {
            global,
            clients: BTreeMap::new(),
        }
        .validate()?;
        let clock = probe::psched_clock();
        let mut connection = Connection::open().map_err(ShapingError::Open)?;
        let lan = Iface {
            name: lan.to_owned(),
            ifindex: connection
                .link(lan)
                .await
                .map_err(|source| ShapingError::Netlink {
                    what: "look up the LAN interface",
                    source,
                })?
                .ok_or_else(|| ShapingError::NoInterface {
                    iface: lan.to_owned(),
                })?
                .ifindex,
        };
        let (ifb, ifb_owned) = ensure_ifb(&mut connection, ifb).await?;

        let mut shaper = Shaper {
            connection,
            lan,
            ifb,
            ifb_owned,
            // Replaced by the probe below, before any leaf is planned.
            params: Params {
                leaf: Leaf::Pfifo,
                clock,
            },
            current: Desired::default(),
            spare: BTreeMap::new(),
            unreconciled: false,
            refill: None,
            refill_next: FIRST_CLIENT_MINOR,
            netns: refill::Netns::current()
                .inspect_err(|error| {
                    tracing::warn!(error = %crate::text::chain(error), "cannot open the network namespace; spare classes are not made ahead");
                })
                .ok()
                .map(std::sync::Arc::new),
            classes_ready: POOL_LOW,
        };
        let taken_over = shaper.install_roots(global).await?;
        shaper.install_default_leaves(global).await?;
        shaper.current = Desired {
            global,
            clients: BTreeMap::new(),
        };
        if !taken_over.is_empty() {
            let qdiscs =
                shaper
                    .connection
                    .qdiscs()
                    .await
                    .map_err(|source| ShapingError::Netlink {
                        what: "list qdiscs",
                        source,
                    })?;
            for tree in taken_over {
                shaper.read_back(tree, &qdiscs).await?;
            }
            shaper.unreconciled = !shaper.current.clients.is_empty();
        }
        tracing::info!(
            lan = %shaper.lan.name,
            ifb = %shaper.ifb.name,
            leaf = %shaper.params.leaf,
            clients = shaper.current.clients.len(),
            "shaping trees ready"
        );
        Ok(shaper)
    }

    /// Brings the trees to exactly `desired`: the diff against what is installed, as class
    /// and leaf operations in ordered netlink batches; spare classes are deleted. Sends
    /// nothing when nothing changed. If some operations fail, the others still happen,
    /// [`Shaper::current`] marks what failed as unknown (so the next apply retries it), each
    /// failure is logged, and the first is returned. Costs O(classes); see
    /// [`Shaper::apply_changed`] for a change to a few.
    pub async fn apply(&mut self, desired: &Desired) -> Result<(), ShapingError> {
        desired.validate()?;
        let minors: BTreeSet<u16> = self
            .current
            .clients
            .keys()
            .chain(self.spare.keys())
            .chain(desired.clients.keys())
            .copied()
            .collect();
        self.apply_part(desired, &minors, false).await?;
        self.unreconciled = false;
        Ok(())
    }

    /// Brings the classes of `minors` to what `desired` has for them, in O(`minors`): the
    /// daemon's path for a sale, a pause or a session's end, where `minors` are the clients
    /// whose grant changed. A class `desired` no longer has is parked as a spare rather than
    /// deleted, and a minor that is a spare is taken back by changing its class (see
    /// `pool.rs`). A change of the global rate, or the first call after [`Shaper::setup`]
    /// took over classes of a previous run, goes over every class (spares kept). Errors as
    /// [`Shaper::apply`].
    pub async fn apply_changed(
        &mut self,
        desired: &Desired,
        minors: &BTreeSet<u16>,
    ) -> Result<(), ShapingError> {
        self.tend_pool(false);
        let applied = self.apply_changed_now(desired, minors).await;
        self.tend_pool(true);
        applied
    }

    async fn apply_changed_now(
        &mut self,
        desired: &Desired,
        minors: &BTreeSet<u16>,
    ) -> Result<(), ShapingError> {
        if self.unreconciled || desired.global != self.current.global {
            let every: BTreeSet<u16> = self
                .current
                .clients
                .keys()
                .chain(desired.clients.keys())
                .chain(minors)
                .copied()
                .collect();
            self.apply_part(desired, &every, true).await?;
            self.unreconciled = false;
            return Ok(());
        }
        self.apply_part(desired, minors, true).await
    }

    /// Spare classes: parked, ready to be taken by a client without creating a class.
    #[must_use]
    pub fn spare_classes(&self) -> usize {
        self.spare.len()
    }

    /// Keeps classes for `count` clients made (in use or spare; beyond them, [`POOL_LOW`]
    /// spares) from now on; the next [`Shaper::tend_spares`] starts on it. Counting the
    /// clients' classes in means a crowd that takes the spares does not set refills off: the
    /// kernel's cost of a new class is paid before the crowd, not under it.
    pub fn set_classes_ready(&mut self, count: usize) {
        self.classes_ready = count;
    }

    /// Takes in what the refill thread made and starts the next refill while the pool holds
    /// fewer spares than it should. Cheap (no netlink on the caller's thread): the control
    /// task calls it at every poll, so the pool fills at start and between sales.
    pub fn tend_spares(&mut self) {
        self.tend_pool(true);
    }

    /// Takes in the spares a refill made (unless the minor became a client's or a spare
    /// meanwhile: then the control task made or changed its classes after the refill), and,
    /// if `grow`, starts a refill when the pool runs low and none is under way.
    fn tend_pool(&mut self, grow: bool) {
        if let Some(refill) = &self.refill {
            let (made, over) = refill.take();
            for (minor, rates) in made {
                if let Some(rates) = rates
                    && !self.current.clients.contains_key(&minor)
                    && !self.spare.contains_key(&minor)
                {
                    self.spare.insert(minor, rates);
                }
            }
            if over {
                self.refill = None;
            }
        }
        if grow && self.refill.is_none() && self.spare.len() < self.spares_wanted() {
            self.start_refill();
        }
    }

    /// How many spares the pool should hold now: what is missing of `classes_ready` beside
    /// the clients' classes, and never fewer than [`POOL_LOW`].
    fn spares_wanted(&self) -> usize {
        self.classes_ready
            .saturating_sub(self.current.clients.len())
            .max(POOL_LOW)
    }

    /// Starts making parked classes for the minors above every minor the shaper knows: the
    /// ones the allocator hands out next once the freed ones are used up.
    fn start_refill(&mut self) {
        let Some(netns) = self.netns.clone() else {
            return;
        };
        let highest = [
            self.current.clients.last_key_value(),
            self.spare.last_key_value(),
        ]
        .into_iter()
        .flatten()
        .map(|(minor, _)| *minor)
        .max();
        let first = highest
            .map_or(FIRST_CLIENT_MINOR, |minor| minor.saturating_add(1))
            .max(self.refill_next)
            .max(FIRST_CLIENT_MINOR);
        if first > LAST_CLIENT_MINOR {
            return;
        }
        let lacking = self.spares_wanted().saturating_sub(self.spare.len());
        let count = (self.current.clients.len() / 8)
            .max(lacking)
            .clamp(POOL_REFILL_MIN, POOL_REFILL_MAX);
        let last = first
            .saturating_add(u16::try_from(count - 1).unwrap_or(u16::MAX))
            .min(LAST_CLIENT_MINOR);
        let class = |tree: Tree, minor| {
            let opt = self.params.client_opt(
                PARKED.get(tree.direction()),
                self.current.global.get(tree.direction()),
            );
            refill::exclusive(self.request(tree, &Op::Class { minor, opt }))
        };
        let leaf = |tree: Tree, minor| {
            let spec = self.params.leaf_spec(PARKED.get(tree.direction()));
            refill::exclusive(self.request(tree, &Op::Leaf { minor, spec }))
        };
        let requests = (first..=last)
            .map(|minor| {
                let four = [
                    class(Tree::Lan, minor),
                    leaf(Tree::Lan, minor),
                    class(Tree::Ifb, minor),
                    leaf(Tree::Ifb, minor),
                ];
                (minor, four)
            })
            .collect();
        tracing::debug!(first, last, "making spare classes");
        self.refill = Refill::start(netns, requests);
        self.refill_next = last.saturating_add(1);
    }

    async fn apply_part(
        &mut self,
        desired: &Desired,
        minors: &BTreeSet<u16>,
        keep_spares: bool,
    ) -> Result<(), ShapingError> {
        let pool::Part { from, to } =
            pool::part(&self.current, &self.spare, desired, minors, keep_spares)?;
        let planned = plan::plan(&from, &to, self.params);
        if planned.is_empty() {
            // Either nothing changed or the change needs no kernel work (a limit whose class
            // parameters come out the same); either way the kernel holds `to`.
            pool::split(&to, desired, minors, &mut self.current, &mut self.spare);
            return Ok(());
        }
        let ops: Vec<(Tree, Op)> = planned.iter().map(|p| (p.tree, p.op)).collect();
        let results = self.run(&ops).await;
        let mut first_error = None;
        let mut succeeded = Vec::with_capacity(results.len());
        for (planned, result) in planned.iter().zip(results) {
            let error = match result {
                Ok(()) => None,
                // Already gone is what a delete wants.
                Err(error)
                    if matches!(planned.op, Op::DeleteClass { .. })
                        && error.errno() == Some(libc::ENOENT) =>
                {
                    None
                }
                Err(error) => Some(self.op_error(planned.tree, &planned.op, error)),
            };
            succeeded.push(error.is_none());
            if let Some(error) = error {
                tracing::warn!(error = %crate::text::chain(&error), "shaping change failed; retried on the next apply");
                first_error.get_or_insert(error);
            }
        }
        let settled = plan::settle(&from, &to, &planned, &succeeded);
        pool::split(
            &settled,
            desired,
            minors,
            &mut self.current,
            &mut self.spare,
        );
        first_error.map_or(Ok(()), Err)
    }

    /// Deletes both HTB roots (the LAN interface falls back to its default qdisc) and the IFB
    /// device if hotspotd created it. Detach the eBPF programs first: the ingress program
    /// redirects into the IFB. Goes on after a failure and returns the first.
    pub async fn teardown(mut self) -> Result<(), ShapingError> {
        let requests = vec![
            netlink::delete_root(self.lan.ifindex, LAN_HANDLE),
            // Deleting the IFB takes its tree with it.
            if self.ifb_owned {
                netlink::delete_link(self.ifb.ifindex)
            } else {
                netlink::delete_root(self.ifb.ifindex, IFB_HANDLE)
            },
        ];
        let results = self.connection.execute(requests).await;
        let mut first_error = None;
        for (tree, result) in Tree::BOTH.into_iter().zip(results) {
            let Err(source) = result else { continue };
            let iface = self.iface(tree).name.clone();
            // ENOENT: only the kernel's default root is left; EINVAL: the root is not ours;
            // ENODEV: the device is gone. Nothing of ours remains in any of these cases.
            if matches!(
                source.errno(),
                Some(libc::ENOENT | libc::EINVAL | libc::ENODEV)
            ) {
                tracing::debug!(%iface, %source, "nothing of ours to remove");
                continue;
            }
            let error = if tree == Tree::Ifb && self.ifb_owned {
                ShapingError::Ifb {
                    iface,
                    action: "delete",
                    source,
                }
            } else {
                ShapingError::Qdisc {
                    iface,
                    action: "delete",
                    kind: "htb",
                    parent: ClassId(u32::MAX),
                    source,
                }
            };
            tracing::warn!(error = %crate::text::chain(&error), "shaping teardown incomplete");
            first_error.get_or_insert(error);
        }
        if first_error.is_none() {
            tracing::info!(lan = %self.lan.name, ifb = %self.ifb.name, "shaping trees removed");
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Removes the trees a stopped or crashed daemon left on `lan` and `ifb`, as
    /// [`Shaper::teardown`] would have: the roots `1:` and `2:` if they are ours, and the IFB
    /// if hotspotd created it (its alias says so). A missing interface holds nothing of ours.
    /// Detach the eBPF programs first: the ingress program redirects into the IFB.
    pub async fn release(lan: &str, ifb: &str) -> Result<(), ShapingError> {
        let connection = Connection::open().map_err(ShapingError::Open)?;
        let lan_link = connection
            .link(lan)
            .await
            .map_err(|source| ShapingError::Netlink {
                what: "look up the LAN interface",
                source,
            })?;
        let ifb_link = connection
            .link(ifb)
            .await
            .map_err(|source| ShapingError::Netlink {
                what: "look up the IFB device",
                source,
            })?
            // A device of another kind under that name is not hotspotd's.
            .filter(|link| link.kind.as_deref() == Some("ifb"));
        let ifb_owned = ifb_link
            .as_ref()
            .is_some_and(|link| link.alias.as_deref() == Some(IFB_ALIAS));
        // Index 0 names no device: teardown's requests for it fail with ENODEV, which it
        // takes as "nothing of ours there".
        let iface = |name: &str, link: Option<netlink::Link>| Iface {
            name: name.to_owned(),
            ifindex: link.map_or(0, |link| link.ifindex),
        };
        let shaper = Shaper {
            connection,
            lan: iface(lan, lan_link),
            ifb: iface(ifb, ifb_link),
            ifb_owned,
            // Neither is used by a teardown.
            params: Params {
                leaf: Leaf::Pfifo,
                clock: probe::psched_clock(),
            },
            current: Desired::default(),
            spare: BTreeMap::new(),
            unreconciled: false,
            refill: None,
            refill_next: FIRST_CLIENT_MINOR,
            netns: None,
            classes_ready: POOL_LOW,
        };
        shaper.teardown().await
    }

    /// The leaf qdisc this kernel gave us.
    #[must_use]
    pub fn leaf(&self) -> Leaf {
        self.params.leaf
    }

    /// Where the eBPF ingress program redirects upload traffic.
    #[must_use]
    pub fn ifb_ifindex(&self) -> u32 {
        self.ifb.ifindex
    }

    /// Without TCX: puts (or replaces) the classic filter behind the upload program on the
    /// LAN's clsact ingress, with `program` (its fd and name: `Kernel::upload_filter_program`)
    /// and a mirred action into this shaper's IFB. Before `Kernel::set_ifb`, so no tagged
    /// upload finds no filter (it would pass unshaped).
    pub async fn route_uploads_to_ifb(&mut self, program: (u32, &str)) -> Result<(), ShapingError> {
        let (fd, name) = program;
        let request = netlink::upsert_upload_filter(self.lan.ifindex, fd, name, self.ifb.ifindex);
        let result = self.connection.execute(vec![request]).await.pop();
        match result {
            Some(Ok(())) => Ok(()),
            Some(Err(source)) => Err(ShapingError::UploadFilter {
                iface: self.lan.name.clone(),
                ifb: self.ifb.name.clone(),
                source,
            }),
            None => Err(ShapingError::UploadFilter {
                iface: self.lan.name.clone(),
                ifb: self.ifb.name.clone(),
                source: RequestError::Closed,
            }),
        }
    }

    #[must_use]
    pub fn lan_ifindex(&self) -> u32 {
        self.lan.ifindex
    }

    /// What the kernel holds as far as this shaper knows: the last applied state, where a
    /// rate of 0 marks a class whose state is unknown (a failed change, or a class found at
    /// start-up with parameters other than ours) and which the next apply re-sends.
    #[must_use]
    pub fn current(&self) -> &Desired {
        &self.current
    }

    /// Change requests sent to the kernel so far (reads not counted).
    #[must_use]
    pub fn requests_sent(&self) -> u64 {
        self.connection.changes_sent()
    }

    fn iface(&self, tree: Tree) -> &Iface {
        match tree {
            Tree::Lan => &self.lan,
            Tree::Ifb => &self.ifb,
        }
    }

    fn request(&self, tree: Tree, op: &Op) -> netlink::Request {
        let ifindex = self.iface(tree).ifindex;
        let major = tree.major();
        match *op {
            Op::Class { minor, opt } => {
                let parent = if minor == PARENT_MINOR {
                    u32::MAX
                } else {
                    classid(major, PARENT_MINOR)
                };
                netlink::upsert_class(ifindex, parent, classid(major, minor), &opt)
            }
            Op::DeleteClass { minor } => netlink::delete_class(ifindex, classid(major, minor)),
            Op::Leaf { minor, spec } => netlink::upsert_leaf(ifindex, classid(major, minor), &spec),
        }
    }

    fn class_error(
        &self,
        tree: Tree,
        minor: u16,
        action: &'static str,
        source: RequestError,
    ) -> ShapingError {
        ShapingError::Class {
            iface: self.iface(tree).name.clone(),
            action,
            classid: ClassId(classid(tree.major(), minor)),
            source,
        }
    }

    fn op_error(&self, tree: Tree, op: &Op, source: RequestError) -> ShapingError {
        match *op {
            Op::Class { minor, .. } => self.class_error(tree, minor, "install", source),
            Op::DeleteClass { minor } => self.class_error(tree, minor, "delete", source),
            Op::Leaf { minor, spec } => ShapingError::Qdisc {
                iface: self.iface(tree).name.clone(),
                action: "install",
                kind: match spec {
                    LeafSpec::FqCodel { .. } => "fq_codel",
                    LeafSpec::Pfifo { .. } => "pfifo",
                },
                parent: ClassId(classid(tree.major(), minor)),
                source,
            },
        }
    }

    /// Sends `ops` in order, in batches, and returns one result per op. An `fq_codel` leaf
    /// that exists already answers EEXIST (see `netlink::upsert_leaf`); its options are then
    /// changed in place, in a second round trip that only such leaves need.
    async fn run(&mut self, ops: &[(Tree, Op)]) -> Vec<Result<(), RequestError>> {
        let requests = ops
            .iter()
            .map(|(tree, op)| self.request(*tree, op))
            .collect();
        let mut results = self.connection.execute(requests).await;
        let mut retries = Vec::new();
        for (index, ((tree, op), result)) in ops.iter().zip(&results).enumerate() {
            let exists = result.as_ref().err().and_then(RequestError::errno) == Some(libc::EEXIST);
            if let (true, Op::Leaf { minor, spec }) = (exists, op) {
                let class = classid(tree.major(), *minor);
                if let Some(change) =
                    netlink::change_fq_codel(self.iface(*tree).ifindex, class, spec)
                {
                    retries.push((index, change));
                }
            }
        }
        if !retries.is_empty() {
            let (indexes, requests): (Vec<usize>, Vec<netlink::Request>) =
                retries.into_iter().unzip();
            let again = self.connection.execute(requests).await;
            for (index, result) in indexes.into_iter().zip(again) {
                results[index] = result;
            }
        }
        results
    }
}
