//! Start-up of the shaping trees: the IFB device, the two HTB roots (installed, or taken over
//! from a previous run and read back), their parent and default classes, and the leaf probe.
//! Side effects: creates the IFB device and brings it up, replaces root qdiscs, creates and
//! changes classes and leaf qdiscs, removes classes in our trees that hotspotd did not make.

use std::collections::BTreeMap;

use super::{
    ClassId, DEFAULT_MINOR, FIRST_CLIENT_MINOR, IFB_ALIAS, Iface, LAST_CLIENT_MINOR, Leaf,
    PARENT_MINOR, Rates, RequestError, Shaper, ShapingError, htb,
    netlink::{self, Connection, classid},
    plan::{Op, Tree},
    probe,
};

impl Shaper {
    /// Makes both roots our HTB with the parent and default classes at `global`. Returns
    /// the trees that were taken over from a previous run.
    pub(super) async fn install_roots(&mut self, global: Rates) -> Result<Vec<Tree>, ShapingError> {
        let qdiscs = self
            .connection
            .qdiscs()
            .await
            .map_err(|source| ShapingError::Netlink {
                what: "list qdiscs",
                source,
            })?;
        let mut taken_over = Vec::new();
        for tree in Tree::BOTH {
            if self.ensure_root(tree, &qdiscs).await? {
                taken_over.push(tree);
            }
        }
        // The parent and default classes are (re)sent as `global` wants them: a change in
        // place if they exist, which leaves their queues and tokens alone.
        let mut ops = Vec::new();
        for tree in Tree::BOTH {
            let global_kbit = global.get(tree.direction());
            ops.push((
                tree,
                Op::Class {
                    minor: PARENT_MINOR,
                    opt: self.params.parent_opt(global_kbit),
                },
            ));
            ops.push((
                tree,
                Op::Class {
                    minor: DEFAULT_MINOR,
                    opt: self.params.default_opt(global_kbit),
                },
            ));
        }
        let results = self.run(&ops).await;
        for ((tree, op), result) in ops.iter().zip(results) {
            result.map_err(|source| self.op_error(*tree, op, source))?;
        }
        Ok(taken_over)
    }

    /// Probes the leaf kind by installing `fq_codel` under the IFB's default class (a class
    /// that needs a leaf anyway), then gives the default classes the leaf of that kind.
    pub(super) async fn install_default_leaves(
        &mut self,
        global: Rates,
    ) -> Result<(), ShapingError> {
        let probe = Op::Leaf {
            minor: DEFAULT_MINOR,
            spec: htb::leaf_spec(Leaf::FqCodel, global.up_kbit),
        };
        let attempt = self
            .run(&[(Tree::Ifb, probe)])
            .await
            .pop()
            .unwrap_or(Err(RequestError::Closed));
        self.params.leaf = probe::leaf(&self.ifb.name, &attempt);
        let mut ops = vec![Tree::Lan];
        if self.params.leaf == Leaf::Pfifo {
            ops.push(Tree::Ifb);
        }
        let ops: Vec<(Tree, Op)> = ops
            .into_iter()
            .map(|tree| {
                let spec = self.params.leaf_spec(global.get(tree.direction()));
                (
                    tree,
                    Op::Leaf {
                        minor: DEFAULT_MINOR,
                        spec,
                    },
                )
            })
            .collect();
        let results = self.run(&ops).await;
        for ((tree, op), result) in ops.iter().zip(results) {
            result.map_err(|source| self.op_error(*tree, op, source))?;
        }
        Ok(())
    }

    /// Makes `tree`'s root our HTB. Returns whether an existing one was taken over.
    pub(super) async fn ensure_root(
        &mut self,
        tree: Tree,
        qdiscs: &[netlink::Qdisc],
    ) -> Result<bool, ShapingError> {
        let iface = self.iface(tree).clone();
        let handle = classid(tree.major(), 0);
        let root = qdiscs
            .iter()
            .find(|qdisc| qdisc.ifindex == iface.ifindex && qdisc.parent == u32::MAX);
        let qdisc_error = |action, source| ShapingError::Qdisc {
            iface: iface.name.clone(),
            action,
            kind: "htb",
            parent: ClassId(u32::MAX),
            source,
        };
        if let Some(root) = root.filter(|root| root.kind == "htb" && root.handle == handle) {
            if root.htb_default == Some(u32::from(DEFAULT_MINOR)) {
                tracing::info!(iface = %iface.name, handle = %ClassId(handle), "taking over the HTB tree of a previous run");
                return Ok(true);
            }
            // HTB cannot change its default class in place (it has no `change` operation):
            // this tree has to go.
            tracing::warn!(iface = %iface.name, handle = %ClassId(handle), "replacing an HTB tree with another default class");
            let result = self
                .connection
                .execute(vec![netlink::delete_root(iface.ifindex, tree.major())])
                .await
                .pop();
            if let Some(Err(source)) = result {
                return Err(qdisc_error("delete", source));
            }
        }
        // Create-and-replace grafts the new root in one step: the old root's queue is
        // dropped, its traffic otherwise uninterrupted.
        let request = netlink::replace_root(iface.ifindex, tree.major(), DEFAULT_MINOR);
        if let Some(Err(source)) = self.connection.execute(vec![request]).await.pop() {
            return Err(qdisc_error("install", source));
        }
        Ok(false)
    }

    /// Reads the client classes of a taken-over tree into `current`: a class counts as
    /// installed at its ceiling only if its parameters and leaf are what we would send for
    /// that ceiling; otherwise it is marked unknown (0) so the first apply re-sends it.
    pub(super) async fn read_back(
        &mut self,
        tree: Tree,
        qdiscs: &[netlink::Qdisc],
    ) -> Result<(), ShapingError> {
        let iface = self.iface(tree).clone();
        let major = tree.major();
        let direction = tree.direction();
        let global_kbit = self.current.global.get(direction);
        let classes = self
            .connection
            .classes(iface.ifindex, major)
            .await
            .map_err(|source| ShapingError::Netlink {
                what: "list HTB classes",
                source,
            })?;
        let leaves: BTreeMap<u32, &netlink::Qdisc> = qdiscs
            .iter()
            .filter(|qdisc| qdisc.ifindex == iface.ifindex)
            .map(|qdisc| (qdisc.parent, qdisc))
            .collect();
        let parent = classid(major, PARENT_MINOR);
        let mut misplaced = Vec::new();
        for class in classes {
            let minor = u16::try_from(class.classid & 0xffff).unwrap_or(0);
            if minor == PARENT_MINOR || minor == DEFAULT_MINOR {
                continue;
            }
            if !(FIRST_CLIENT_MINOR..=LAST_CLIENT_MINOR).contains(&minor)
                || class.parent != parent
                || class.level != 0
            {
                // Not a client class as we make them: remove it, so a client given this
                // minor later gets a class of ours.
                misplaced.push(minor);
                continue;
            }
            let ceil_kbit = class.opt.ceil_bytes_per_s / 125;
            let expected = self.params.client_opt(ceil_kbit, global_kbit);
            let leaf_ok = leaves.get(&class.classid).and_then(|leaf| leaf.leaf)
                == Some(self.params.leaf_spec(ceil_kbit));
            let installed_kbit = if class.opt == expected && leaf_ok {
                ceil_kbit
            } else {
                0
            };
            self.current
                .clients
                .entry(minor)
                .or_default()
                .set(direction, installed_kbit);
        }
        if !misplaced.is_empty() {
            tracing::warn!(iface = %iface.name, count = misplaced.len(), "removing classes that are not hotspotd's");
            let requests = misplaced
                .iter()
                .map(|&minor| netlink::delete_class(iface.ifindex, classid(major, minor)))
                .collect();
            let results = self.connection.execute(requests).await;
            for (minor, result) in misplaced.into_iter().zip(results) {
                if let Err(source) = result {
                    // Left in place: harmless unless a client gets this minor, and then
                    // its apply reports the error.
                    let error = self.class_error(tree, minor, "delete", source);
                    tracing::warn!(error = %crate::text::chain(&error), "cannot remove a foreign class");
                }
            }
        }
        Ok(())
    }
}

/// Finds or creates the IFB device and brings it up. Returns it and whether hotspotd owns
/// it (created it now or in an earlier run, as its alias says).
pub(super) async fn ensure_ifb(
    connection: &mut Connection,
    name: &str,
) -> Result<(Iface, bool), ShapingError> {
    let ifb_error = |action, source| ShapingError::Ifb {
        iface: name.to_owned(),
        action,
        source,
    };
    let lookup = |link: Result<Option<netlink::Link>, RequestError>| {
        link.map_err(|source| ShapingError::Netlink {
            what: "look up the IFB device",
            source,
        })
    };
    let (link, created) = if let Some(link) = lookup(connection.link(name).await)? {
        if link.kind.as_deref() != Some("ifb") {
            return Err(ShapingError::NotIfb {
                iface: name.to_owned(),
                kind: link.kind,
            });
        }
        (link, false)
    } else {
        if let Some(Err(source)) = connection.execute(vec![netlink::add_ifb(name)]).await.pop() {
            return Err(ifb_error("create", source));
        }
        let link = lookup(connection.link(name).await)?.ok_or_else(|| {
            ifb_error(
                "find the new",
                RequestError::Unexpected { expected: "a link" },
            )
        })?;
        tracing::info!(iface = %name, ifindex = link.ifindex, "created the IFB device");
        (link, true)
    };
    let owned = created || link.alias.as_deref() == Some(IFB_ALIAS);
    if !link.up || created {
        let alias = created.then_some(IFB_ALIAS);
        if let Some(Err(source)) = connection
            .execute(vec![netlink::set_link_up(link.ifindex, alias)])
            .await
            .pop()
        {
            return Err(ifb_error("bring up", source));
        }
    }
    Ok((
        Iface {
            name: name.to_owned(),
            ifindex: link.ifindex,
        },
        owned,
    ))
}
