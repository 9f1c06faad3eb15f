//! Speed limits of running sessions: each connected client gets an HTB class minor, its
//! session's rates go into the desired trees, and its grant names the classes so the eBPF
//! programs put its packets there (`skb->priority`). Side effects: none here; `apply.rs`
//! hands the desired trees to the shaper.

use std::collections::BTreeMap;

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
