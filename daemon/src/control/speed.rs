//! Speed limits of running sessions: each connected client gets an HTB class minor, its
//! session's rates go into the desired trees, and its grant names the classes so the eBPF
//! programs put its packets there (`skb->priority`). A client's minor is the one freed most
//! recently, whose class the shaper kept parked (`shaping/pool.rs`), so a sale usually
//! changes an existing class instead of creating one. Side effects: [`Control::sync_speed_of`]
//! hands the changed classes to the shaper.

use std::collections::{BTreeMap, BTreeSet};

use super::Control;
use crate::{
    config::Config,
    mac::MacAddr,
    shaping::{Desired, FIRST_CLIENT_MINOR, IFB_HANDLE, LAN_HANDLE, LAST_CLIENT_MINOR, Rates},
};

/// kbit/s in one Mbit/s, as tc counts (1 kbit = 1000 bit).
const KBIT_PER_MBIT: u64 = 1_000;

/// The class minors in use, by client; a freed minor is reused before a new one is taken.
#[derive(Debug, Default)]
pub(super) struct Classes {
    by_mac: BTreeMap<MacAddr, u16>,
    freed: Vec<u16>,
    /// The lowest minor never handed out (0 = none yet).
    next: u16,
}

/// The HTB classes of one client: download on the LAN interface, upload on the IFB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ClientClasses {
    pub minor: u16,
    pub down: u32,
    pub up: u32,
}

impl Classes {
    /// The client's classes, allocating a minor if it has none; `None` when every minor is
    /// taken (then the client runs in the default class, at the global rate).
    pub(super) fn of(&mut self, mac: MacAddr) -> Option<ClientClasses> {
        let minor = if let Some(minor) = self.by_mac.get(&mac) {
            *minor
        } else {
            let minor = self.take()?;
            self.by_mac.insert(mac, minor);
            minor
        };
        Some(ClientClasses {
            minor,
            down: u32::from(LAN_HANDLE) << 16 | u32::from(minor),
            up: u32::from(IFB_HANDLE) << 16 | u32::from(minor),
        })
    }

    /// Takes over the classes a previous run gave `mac`, read from its grant in the kernel,
    /// so that a restart leaves every running client in the class it is in. False, changing
    /// nothing, when they are not classes this daemon hands out or their minor is taken.
    pub(super) fn adopt(&mut self, mac: MacAddr, class_down: u32, class_up: u32) -> bool {
        let Ok(minor) = u16::try_from(class_down & 0xffff) else {
            return false;
        };
        let ours = (
            u32::from(LAN_HANDLE) << 16 | u32::from(minor),
            u32::from(IFB_HANDLE) << 16 | u32::from(minor),
        );
        let first_new = self.next.max(FIRST_CLIENT_MINOR);
        // Below `first_new` a minor is either in use or freed.
        let taken = minor < first_new && !self.freed.contains(&minor);
        if (class_down, class_up) != ours
            || !(FIRST_CLIENT_MINOR..=LAST_CLIENT_MINOR).contains(&minor)
            || taken
            || self.by_mac.contains_key(&mac)
        {
            return false;
        }
        if minor >= first_new {
            self.freed.extend(first_new..minor);
            self.next = minor + 1;
        } else {
            self.freed.retain(|freed| *freed != minor);
        }
        self.by_mac.insert(mac, minor);
        true
    }

    /// A free minor: a freed one first, else the lowest never handed out.
    fn take(&mut self) -> Option<u16> {
        if let Some(minor) = self.freed.pop() {
            return Some(minor);
        }
        let minor = self.next.max(FIRST_CLIENT_MINOR);
        if minor > LAST_CLIENT_MINOR {
            return None;
        }
        self.next = minor + 1;
        Some(minor)
    }

    /// Frees the client's minor, returning it.
    pub(super) fn release(&mut self, mac: MacAddr) -> Option<u16> {
        let minor = self.by_mac.remove(&mac)?;
        self.freed.push(minor);
        Some(minor)
    }
}

impl Control {
    /// Brings the classes of `minors` (the clients whose grant changed) to the desired state;
    /// a change of the global rates goes over every class. On failure (a tree changed behind
    /// hotspotd's back, say) the trees are rebuilt at the next interface check (`links.rs`),
    /// which logs once; what did go in stays.
    pub(super) async fn sync_speed_of(&mut self, minors: &BTreeSet<u16>) {
        if let Err(error) = self.shaper.apply_changed(&self.desired, minors).await {
            if !self.link_trouble.shaping_broken {
                tracing::error!(error = %crate::text::chain(&error), "speed limits could not all be applied; rebuilding the trees");
            }
            self.link_trouble.shaping_broken = true;
        }
    }
}

/// Mbit/s to kbit/s for the trees.
#[must_use]
pub(super) fn rates(down_mbits: u32, up_mbits: u32) -> Rates {
    Rates {
        down_kbit: u64::from(down_mbits) * KBIT_PER_MBIT,
        up_kbit: u64::from(up_mbits) * KBIT_PER_MBIT,
    }
}

/// The global caps of `config`, as the trees take them.
#[must_use]
pub fn global(config: &Config) -> Rates {
    rates(config.speed.global_down_mbits, config.speed.global_up_mbits)
}

/// How many spare class pairs `config` wants made ahead of need.
#[must_use]
pub fn classes_ready(config: &Config) -> usize {
    usize::try_from(config.speed.classes_ready).unwrap_or(usize::MAX)
}

/// An empty desired state at `config`'s global caps.
#[must_use]
pub(super) fn desired(config: &Config) -> Desired {
    Desired {
        global: global(config),
        clients: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    #[test]
    fn a_client_keeps_its_classes_and_a_freed_minor_is_reused() {
        let mut classes = Classes::default();
        let a = classes.of(A).expect("a minor");
        assert_eq!((a.minor, a.down, a.up), (2, 0x0001_0002, 0x0002_0002));
        assert_eq!(classes.of(A), Some(a), "the same client, the same classes");
        assert_eq!(classes.of(B).expect("a minor").minor, 3);
        assert_eq!(classes.release(A), Some(2));
        assert_eq!(
            classes
                .of(MacAddr([2, 0, 0, 0, 0, 3]))
                .expect("a minor")
                .minor,
            2
        );
    }

    #[test]
    fn a_restart_adopts_the_classes_of_the_previous_run() {
        let mut classes = Classes::default();
        assert!(classes.adopt(A, 0x0001_0005, 0x0002_0005));
        assert_eq!(classes.of(A).expect("adopted").minor, 5);
        assert!(
            !classes.adopt(B, 0x0001_0005, 0x0002_0005),
            "a minor is not handed out twice"
        );
        assert!(
            !classes.adopt(B, 0x0001_0006, 0x0002_0007),
            "not a pair of ours"
        );
        assert!(!classes.adopt(B, 0, 0), "no classes");
        // The minors skipped over are handed out later, and 5 never again.
        let others: Vec<u16> = (3..=6)
            .map(|n| {
                classes
                    .of(MacAddr([2, 0, 0, 0, 1, n]))
                    .expect("a minor")
                    .minor
            })
            .collect();
        let mut sorted = others.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![2, 3, 4, 6], "{others:?}");
    }

    #[test]
    fn minors_run_out_cleanly() {
        let mut classes = Classes::default();
        let capacity = usize::from(LAST_CLIENT_MINOR - FIRST_CLIENT_MINOR) + 1;
        for n in 0..capacity {
            let [.., a, b, c, d] = u64::try_from(n).expect("fits").to_be_bytes();
            assert!(classes.of(MacAddr([2, 0, a, b, c, d])).is_some());
        }
        assert_eq!(classes.of(MacAddr([2, 9, 9, 9, 9, 9])), None);
    }

    #[test]
    fn megabits_become_kilobits() {
        assert_eq!(
            rates(5, 2),
            Rates {
                down_kbit: 5_000,
                up_kbit: 2_000
            }
        );
    }
}
