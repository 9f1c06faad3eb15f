//! Keeps the programs and the speed-limit trees on the interfaces the configuration names,
//! whatever happens to those interfaces while hotspotd runs. A LAN interface that goes down and
//! up keeps both (TCX links and qdiscs outlive a link's state); one that is deleted takes them
//! along, so when an interface of that name is back the programs are attached anew and the
//! trees rebuilt from the desired state. An IFB deleted behind hotspotd's back is recreated:
//! meanwhile uploads are not redirected (they would be dropped at a missing device), so they
//! pass unshaped but gated and counted. A change the kernel refused (a tree altered behind
//! hotspotd's back) is repaired the same way, by a rebuild. Each trouble is logged once.
//! The box's own addresses are followed the same way, by notification. Side effects: TCX
//! links, the HTB trees, the IFB device, the programs' IFB word, the box's addresses in the
//! kernel.

use std::time::{Duration, Instant};

use futures::StreamExt as _;

use super::Control;
use crate::netlink::{self, LinkChanges};

/// How often the interfaces are checked besides on every link notification: the fallback
/// for notifications lost to a full socket buffer. A LAN interface recreated by someone else
/// carries no programs until the check that notices, so it passes traffic ungated and
/// uncounted until then: the notification makes that milliseconds, this bounds it.
pub(super) const CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// Link notifications, or `None` (with a warning) if the socket cannot be opened: then the
/// periodic check alone keeps watch.
pub(super) fn watch() -> Option<LinkChanges> {
    match netlink::link_changes() {
        Ok(changes) => Some(changes),
        Err(error) => {
            tracing::warn!(error = %crate::text::chain(&error), "cannot follow link changes; interfaces are checked every 250 ms instead");
            None
        }
    }
}

/// The next link notification, with any others already queued (one check covers them all);
/// never resolves without a watch.
pub(super) async fn changed(changes: Option<&mut LinkChanges>) -> Option<()> {
    let Some(changes) = changes else {
        return std::future::pending().await;
    };
    changes.next().await?;
    while changes.try_recv().is_ok() {}
    Some(())
}

/// What the checks found, so each trouble is logged once, not on every tick.
#[derive(Debug, Default)]
pub(super) struct LinkWatch {
    /// The LAN interface is gone.
    pub lan_missing: bool,
    /// When the box's addresses were last read into the kernel.
    box_addresses_at: Option<Instant>,
}

impl LinkWatch {
    /// Whether the box's addresses are due to be read again without a notification: at the
    /// first poll and every [`BOX_ADDRESSES_EVERY`], in case a notification was lost.
    pub(super) fn box_addresses_due(&self) -> bool {
        self.box_addresses_at
            .is_none_or(|at| at.elapsed() >= BOX_ADDRESSES_EVERY)
    }
}

/// How often the box's addresses are read without a notification that they changed: the
/// fallback for notifications lost to a full socket buffer.
const BOX_ADDRESSES_EVERY: Duration = Duration::from_secs(10);

impl Control {
    /// Reads the box's own addresses and hands them to the kernel: traffic to them is the
    /// box's (its local services), and the LAN's first addresses are where unpaid clients'
    /// DNS goes. Called when a notification says an address or a link changed, after a
    /// reload, and every [`BOX_ADDRESSES_EVERY`]; a netlink dump on the control task, so not
    /// at every poll. A failure is logged and retried at the next poll.
    pub(super) async fn sync_box_addresses(&mut self) {
        let synced = match self.netlink.local_addresses().await {
            Ok(addrs) => self
                .kernel
                .sync_box_addresses(&addrs, &self.config, self.lan_ifindex)
                .map_err(crate::control::ControlError::from),
            Err(error) => Err(error.into()),
        };
        match synced {
            Ok(()) => self.links.box_addresses_at = Some(Instant::now()),
            Err(error) => {
                self.links.box_addresses_at = None;
                tracing::warn!(error = %crate::text::chain(&error), "cannot read the box's addresses into the kernel; retrying next poll");
            }
        }
    }

    /// Checks both interfaces and repairs what changed. Cheap when nothing did: two
    /// `if_nametoindex` calls.
    pub(super) async fn check_links(&mut self) {
        let lan = self.config.network.lan_interface.clone();
        let ifb = self.config.network.ifb_interface.clone();
        let Ok(lan_ifindex) = nix::net::if_::if_nametoindex(lan.as_str()) else {
            if !self.links.lan_missing {
                tracing::warn!(
                    interface = %lan,
                    "the LAN interface is gone; clients are neither counted nor let through \
                     until an interface of that name is back"
                );
                self.links.lan_missing = true;
            }
            return;
        };
        let lan_recreated = lan_ifindex != self.lan_ifindex || self.links.lan_missing;
        if lan_recreated {
            let started = Instant::now();
            if let Err(error) = self.kernel.reattach(&lan) {
                tracing::error!(interface = %lan, error = %crate::text::chain(&error), "cannot attach the programs to the LAN interface; retrying");
                return;
            }
            self.lan_ifindex = lan_ifindex;
            self.links.lan_missing = false;
            // The LAN's addresses are where unpaid clients' DNS goes.
            self.sync_box_addresses().await;
            tracing::info!(
                interface = %lan,
                ifindex = lan_ifindex,
                took_ms = started.elapsed().as_millis(),
                "the LAN interface is back; programs attached"
            );
        }
        if lan_recreated {
            self.rebuild_shaping(&lan, &ifb);
            return;
        }
        // The IFB is gone until a rebuild under way reports.
        if self.speed.is_rebuilding() {
            return;
        }
        let ifb_gone =
            nix::net::if_::if_nametoindex(ifb.as_str()).ok() != Some(self.speed.ifb_ifindex());
        if ifb_gone && !self.speed.is_broken() {
            tracing::warn!(
                ifb = %ifb,
                "the IFB device was deleted behind hotspotd's back; recreating it"
            );
        }
        if ifb_gone || self.speed.is_broken() {
            self.rebuild_shaping(&lan, &ifb);
        }
    }

    /// Sends the shaper's worker to set the trees up again on the current interfaces (taking
    /// over whichever tree is still there) at the desired state; without TCX, with the filter
    /// that hands uploads to the new IFB behind the upload program. Uploads are redirected to
    /// the new IFB when the worker reports it done (`speed/mod.rs`). The control task goes on
    /// meanwhile: a rebuild at thousands of classes takes seconds.
    fn rebuild_shaping(&mut self, lan: &str, ifb: &str) {
        // Until the IFB is back, a redirect would drop every upload.
        if let Err(error) = self.kernel.set_ifb(0) {
            tracing::error!(error = %crate::text::chain(&error), "cannot stop redirecting uploads to the old IFB");
        }
        let upload_program = match self.kernel.upload_filter_program() {
            Ok(Some((fd, name))) => {
                crate::bpf::ensure_clsact(lan);
                let fd = i32::try_from(fd).unwrap_or(-1);
                // SAFETY: `fd` is the program's, open for as long as `self.kernel` holds it,
                // which outlives this borrow; the worker gets a duplicate of its own.
                let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
                match fd.try_clone_to_owned() {
                    Ok(fd) => Some((fd, name)),
                    Err(error) => {
                        tracing::error!(%error, "cannot hand the upload filter's program to the shaper; uploads are not shaped");
                        None
                    }
                }
            }
            Ok(None) => None,
            Err(error) => {
                tracing::error!(error = %crate::text::chain(&error), "cannot find the upload filter's program; uploads are not shaped");
                None
            }
        };
        self.speed.rebuild(lan, ifb, upload_program);
    }
}
