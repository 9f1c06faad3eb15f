//! MAC clones and roams: a MAC address the LAN bridge learned behind one port that it then
//! learns behind another. Two devices using one MAC (a clone, which rides on the other's
//! session) make it flap between their ports; a client roaming between two bridged radios
//! moves it once. Every move is counted for `/metrics`; a MAC's first move, and then at most one
//! every [`REPORT_EVERY`], becomes a `mac_moved` event and a warning carrying how many moves it
//! stands for, so a clone flapping thousands of times a second floods neither the journal nor
//! `events.exec`. Side effects: log lines, events, counts in `Alerts`.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;

use crate::{
    alerts::Alerts,
    events::{Events, LanEvent, LanRecord},
    mac::MacAddr,
    netlink::{Batch, FdbChange, FdbWatch},
};

/// How often one MAC's moves are reported at most.
pub const REPORT_EVERY: Duration = Duration::from_mins(1);
/// MACs followed at once. The bridge forgets a silent MAC after its ageing time (300 s by
/// default) and says so, and so do we; the cap bounds what a flood of random source MACs can
/// make us hold meanwhile. Past it, new MACs are not followed until others are forgotten.
const MAX_FOLLOWED: usize = 65_536;
/// How long to wait after the socket fails before reading again, so a persistent failure
/// does not spin.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Follows the LAN bridge `lan` (ifindex `bridge_ifindex`) until `shutdown`.
pub async fn watch(
    lan: String,
    bridge_ifindex: u32,
    events: Events,
    alerts: Arc<Alerts>,
    shutdown: CancellationToken,
) {
    let mut fdb = match FdbWatch::open() {
        Ok(fdb) => fdb,
        Err(error) => {
            tracing::warn!(error = %crate::text::chain(&error), interface = %lan, "cannot follow the LAN bridge's forwarding database: MAC clones and roams go unnoticed");
            return;
        }
    };
    tracing::debug!(interface = %lan, "watching the LAN bridge for MAC addresses moving between ports");
    let mut ports = Ports::new(bridge_ifindex);
    let mut last_lookup = Instant::now();
    let mut changes = Vec::new();
    let mut failing = false;
    loop {
        let batch = tokio::select! {
            () = shutdown.cancelled() => return,
            batch = fdb.next(&mut changes) => batch,
        };
        match batch {
            Ok(Batch::Changes) => failing = false,
            Ok(Batch::Lost) => {
                // The dump that follows brings every entry again; one that moved meanwhile
                // shows up as the move it was.
                tracing::debug!("bridge notifications were lost; reading the whole table again");
                if let Err(error) = fdb.resync() {
                    tracing::warn!(error = %crate::text::chain(&error), "cannot read the LAN bridge's forwarding database again");
                }
                continue;
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(error = %crate::text::chain(&error), "reading the LAN bridge's forwarding database failed; retrying");
                    failing = true;
                }
                tokio::time::sleep(RETRY_AFTER).await;
                continue;
            }
        }
        let now = Instant::now();
        for change in &changes {
            // A bridge of the same name made anew (links.rs follows it too) has a new ifindex
            // and new ports: start over. Looked up at most once a second, as other bridges'
            // entries also come this way.
            if change.bridge_ifindex != ports.bridge_ifindex
                && now.duration_since(last_lookup) >= RETRY_AFTER
            {
                last_lookup = now;
                if let Ok(ifindex) = nix::net::if_::if_nametoindex(lan.as_str())
                    && ifindex != ports.bridge_ifindex
                {
                    ports = Ports::new(ifindex);
                }
            }
            if let Some(moved) = ports.take(change, now) {
                report(&moved, &events, &alerts);
            }
        }
    }
}

/// Counts a move and, if it is due, logs it and tells listeners.
fn report(change: &Moved, events: &Events, alerts: &Alerts) {
    alerts.update(|counts| counts.mac_moves += 1);
    let Some(moves) = change.report else {
        return;
    };
    let (from_port, to_port) = (port_name(change.from_ifindex), port_name(change.to_ifindex));
    let mac = change.mac;
    tracing::warn!(
        vlan = change.vlan,
        "MAC {mac} moved from LAN port {from_port} to {to_port}: two devices use it (a clone, \
         riding on one session) or one roamed between bridged radios; {moves} move(s) since \
         the last report, which comes at most once every {} s per MAC",
        REPORT_EVERY.as_secs()
    );
    events.send(LanRecord {
        at: chrono::Utc::now(),
        event: LanEvent::MacMoved {
            mac,
            from_port,
            to_port,
            moves,
        },
    });
}

/// The port's name, or its index if it is gone.
fn port_name(ifindex: u32) -> String {
    nix::net::if_::if_indextoname(ifindex)
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| format!("ifindex {ifindex}"))
}

/// Which port of one bridge each MAC was last learned behind. Pure.
struct Ports {
    bridge_ifindex: u32,
    learned: HashMap<(MacAddr, Option<u16>), Learned>,
}

struct Learned {
    port_ifindex: u32,
    /// Moves since the last report.
    unreported: u64,
    last_report: Option<Instant>,
}

/// A MAC seen behind another port than before.
#[derive(Debug, PartialEq, Eq)]
struct Moved {
    mac: MacAddr,
    vlan: Option<u16>,
    from_ifindex: u32,
    to_ifindex: u32,
    /// The moves to report now (this one and those not reported before), if a report is due.
    report: Option<u64>,
}

impl Ports {
    fn new(bridge_ifindex: u32) -> Self {
        Self {
            bridge_ifindex,
            learned: HashMap::new(),
        }
    }

    /// Takes one change of the bridge's table; the move it is, if it is one.
    fn take(&mut self, change: &FdbChange, now: Instant) -> Option<Moved> {
        if change.bridge_ifindex != self.bridge_ifindex {
            return None;
        }
        let key = (change.mac, change.vlan);
        if change.gone {
            // Only the entry we hold: a removal from a port the MAC has left is old news.
            let ours = self.learned.get(&key);
            if ours.is_some_and(|learned| learned.port_ifindex == change.port_ifindex) {
                self.learned.remove(&key);
            }
            return None;
        }
        let Some(learned) = self.learned.get_mut(&key) else {
            if self.learned.len() < MAX_FOLLOWED {
                self.learned.insert(
                    key,
                    Learned {
                        port_ifindex: change.port_ifindex,
                        unreported: 0,
                        last_report: None,
                    },
                );
            }
            return None;
        };
        if learned.port_ifindex == change.port_ifindex {
            return None;
        }
        let from_ifindex = std::mem::replace(&mut learned.port_ifindex, change.port_ifindex);
        learned.unreported += 1;
        let due = learned
            .last_report
            .is_none_or(|last| now.duration_since(last) >= REPORT_EVERY);
        let report = due.then(|| {
            learned.last_report = Some(now);
            std::mem::take(&mut learned.unreported)
        });
        Some(Moved {
            mac: change.mac,
            vlan: change.vlan,
            from_ifindex,
            to_ifindex: change.port_ifindex,
            report,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BRIDGE: u32 = 3;
    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 7]);

    fn seen(port: u32) -> FdbChange {
        FdbChange {
            mac: MAC,
            vlan: None,
            port_ifindex: port,
            bridge_ifindex: BRIDGE,
            gone: false,
        }
    }

    #[test]
    fn a_flapping_clone_is_reported_once_a_minute_with_every_move_counted() {
        let mut ports = Ports::new(BRIDGE);
        let start = Instant::now();
        assert_eq!(ports.take(&seen(5), start), None, "first sighting");
        assert_eq!(ports.take(&seen(5), start), None, "same port");
        let first = ports.take(&seen(6), start).expect("a move");
        assert_eq!(
            (first.from_ifindex, first.to_ifindex, first.report),
            (5, 6, Some(1))
        );
        // 99 more moves within the minute: each counted, none reported.
        for flap in 0..99u32 {
            let now = start + Duration::from_millis(u64::from(flap) * 100);
            let moved = ports.take(&seen(5 + (flap % 2)), now).expect("a move");
            assert_eq!(moved.report, None);
        }
        let next = ports.take(&seen(6), start + REPORT_EVERY).expect("a move");
        assert_eq!(
            next.report,
            Some(100),
            "the report carries every move since the last"
        );
    }

    #[test]
    fn a_forgotten_mac_starts_over_and_other_bridges_are_ignored() {
        let mut ports = Ports::new(BRIDGE);
        let now = Instant::now();
        ports.take(&seen(5), now);
        ports.take(
            &FdbChange {
                gone: true,
                ..seen(5)
            },
            now,
        );
        assert_eq!(ports.take(&seen(6), now), None, "learned anew, not a move");
        let elsewhere = FdbChange {
            bridge_ifindex: 9,
            ..seen(7)
        };
        assert_eq!(ports.take(&elsewhere, now), None);
        // Another VLAN is another entry.
        let vlan = FdbChange {
            vlan: Some(10),
            ..seen(8)
        };
        assert_eq!(ports.take(&vlan, now), None);
        assert!(ports.take(&seen(8), now).is_some());
    }

    #[test]
    fn a_flood_of_macs_stops_at_the_cap() {
        let mut ports = Ports::new(BRIDGE);
        let now = Instant::now();
        for index in 0..MAX_FOLLOWED + 10 {
            let bytes = u32::try_from(index).unwrap().to_be_bytes();
            let change = FdbChange {
                mac: MacAddr([2, 0, bytes[0], bytes[1], bytes[2], bytes[3]]),
                ..seen(5)
            };
            ports.take(&change, now);
        }
        assert_eq!(ports.learned.len(), MAX_FOLLOWED);
    }
}
