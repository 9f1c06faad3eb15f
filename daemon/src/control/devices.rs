//! Device slots (docs/vouchers.md): the devices that use one voucher at once. The voucher's
//! session belongs to one of them, its holder, as any session belongs to a client; the others
//! are its members. Each member draws on the holder's kernel budget (one budget, spent
//! exactly by all of them), in HTB classes of its own at the session's speed, and what it
//! uses is billed to the holder's session. The session runs while the holder is connected,
//! which it stays while any of them is active (their traffic is the holder's for idleness).
//! Side effects: shares and takes back kernel grants, sets members' speed classes.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::{Control, speed};
use crate::{
    mac::MacAddr,
    sessions::engine::{Now, SessionId},
    vouchers::{Stage, Voucher},
};

/// Who shares with whom, from the vouchers in use.
#[derive(Debug, Default)]
pub(super) struct Sharing {
    /// Each member's holder.
    holders: BTreeMap<MacAddr, MacAddr>,
    /// Each holder's members.
    members: BTreeMap<MacAddr, BTreeSet<MacAddr>>,
    /// The voucher's session each holder shares: members draw on its grant only while it
    /// runs that one (not a session of its own queued after).
    sessions: BTreeMap<MacAddr, SessionId>,
}

impl Sharing {
    /// The index of `vouchers`' devices.
    pub(super) fn of<'a>(vouchers: impl Iterator<Item = &'a Voucher>) -> Self {
        let mut sharing = Self::default();
        for voucher in vouchers.filter(|voucher| voucher.stage == Stage::InUse) {
            let (Some(holder), Some(session)) = (voucher.mac, voucher.session_id) else {
                continue;
            };
            if !voucher.devices.is_empty() {
                sharing.sessions.insert(holder, session);
            }
            for member in voucher.devices.iter().filter(|member| **member != holder) {
                sharing.holders.insert(*member, holder);
                sharing.members.entry(holder).or_default().insert(*member);
            }
        }
        sharing
    }

    /// The holder whose session `member` uses, if it is a member.
    pub(super) fn holder_of(&self, member: MacAddr) -> Option<MacAddr> {
        self.holders.get(&member).copied()
    }

    /// The members using `holder`'s session.
    pub(super) fn members_of(&self, holder: MacAddr) -> Vec<MacAddr> {
        self.members
            .get(&holder)
            .map(|members| members.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Every member, in MAC order.
    pub(super) fn members(&self) -> impl Iterator<Item = MacAddr> + '_ {
        self.holders.keys().copied()
    }

    /// The session `holder`'s members share.
    pub(super) fn session_of(&self, holder: MacAddr) -> Option<SessionId> {
        self.sessions.get(&holder).copied()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.holders.is_empty()
    }

    /// Each client's billable bytes of a poll (in MAC order, each MAC once) with every
    /// member's added to its holder's: what the engine bills. A member that moved counters
    /// makes its holder active, so time runs while any device is in use.
    pub(super) fn fold(&self, traffic: &mut Vec<(MacAddr, u64)>) {
        if self.is_empty() {
            return;
        }
        let mut moved: BTreeMap<MacAddr, u64> = BTreeMap::new();
        traffic.retain(|(mac, bytes)| match self.holder_of(*mac) {
            Some(holder) => {
                *moved.entry(holder).or_insert(0) += bytes;
                false
            }
            None => true,
        });
        if moved.is_empty() {
            return;
        }
        for (mac, bytes) in traffic.iter_mut() {
            if let Some(extra) = moved.remove(mac) {
                *bytes += extra;
            }
        }
        traffic.extend(moved);
        traffic.sort_unstable_by_key(|(mac, _)| *mac);
    }
}

/// How long the landing page of a device whose voucher moved away says so.
const MOVED_AWAY_SHOWN: chrono::TimeDelta = chrono::TimeDelta::hours(24);
/// Devices remembered as having lost their voucher, at most (the oldest are forgotten).
const MOVED_AWAY_CAPACITY: usize = 4_096;

/// The devices whose voucher moved to another device lately, and when.
#[derive(Debug, Default)]
pub(super) struct MovedAway(BTreeMap<MacAddr, DateTime<Utc>>);

impl MovedAway {
    pub(super) fn insert(&mut self, mac: MacAddr, at: DateTime<Utc>) {
        self.0.retain(|_, moved| at - *moved < MOVED_AWAY_SHOWN);
        while self.0.len() >= MOVED_AWAY_CAPACITY {
            let Some(oldest) = self
                .0
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(mac, _)| *mac)
            else {
                break;
            };
            self.0.remove(&oldest);
        }
        self.0.insert(mac, at);
    }

    pub(super) fn forget(&mut self, mac: MacAddr) {
        self.0.remove(&mac);
    }

    /// Whether `mac`'s voucher moved away within the last day.
    pub(super) fn contains(&self, mac: MacAddr, now: Now) -> bool {
        self.0
            .get(&mac)
            .is_some_and(|at| now.wall - *at < MOVED_AWAY_SHOWN)
    }
}

impl Control {
    /// The client whose session `mac` runs: its holder for a device on a voucher's slot,
    /// else itself.
    pub(super) fn session_owner(&self, mac: MacAddr) -> MacAddr {
        self.sharing.holder_of(mac).unwrap_or(mac)
    }

    /// The answer about `mac` to a command carried out on its session's owner.
    pub(super) fn view_for(
        &self,
        mac: MacAddr,
        owner_view: crate::views::ClientView,
    ) -> crate::views::ClientView {
        if owner_view.mac == mac {
            owner_view
        } else {
            self.client_view(mac)
        }
    }

    /// Rebuilds the index of who shares with whom after the vouchers changed.
    pub(super) fn index_devices(&mut self) {
        self.sharing = Sharing::of(self.vouchers.all());
    }

    /// Brings `holder`'s members in line with it: while its session runs, each draws on its
    /// kernel budget in classes of its own at the session's speed; otherwise each is blocked
    /// and its classes freed.
    pub(super) fn follow_holder(&mut self, holder: MacAddr) {
        let members = self.sharing.members_of(holder);
        if members.is_empty() {
            return;
        }
        let running = self.engine.running_session(holder).is_some()
            && self.engine.running_session(holder) == self.sharing.session_of(holder);
        let rates = self
            .engine
            .speed_of(holder)
            .map(|(down, up)| speed::rates(down, up));
        for member in members {
            if running {
                if let Some(rates) = rates {
                    self.speed.run_at(member, rates);
                } else {
                    self.speed.classes_of(member);
                }
                let (class_down, class_up) =
                    self.speed.named(member).map_or((0, 0), |c| (c.down, c.up));
                if let Err(error) =
                    self.kernel
                        .share_grant(member.key(), holder.key(), class_down, class_up)
                {
                    tracing::error!(%member, %holder, error = %crate::text::chain(&error), "cannot let a device share its voucher");
                }
            } else {
                self.block_member(member);
            }
        }
        self.speed.apply();
    }

    /// At a start, before the first speed change: the devices on vouchers' slots keep the
    /// classes the previous run gave them, at their session's speed, so the first sync (which
    /// parks every class not wanted) leaves their traffic where it is.
    pub(super) fn adopt_member_classes(
        &mut self,
        kernel_grants: &BTreeMap<hotspotd_common::MacKey, hotspotd_common::Grant>,
    ) {
        for (key, grant) in kernel_grants {
            let member = MacAddr::from(*key);
            let Some(holder) = self.sharing.holder_of(member) else {
                continue;
            };
            let running = self.engine.running_session(holder);
            let (Some(_), Some((down, up))) = (
                running.filter(|session| Some(*session) == self.sharing.session_of(holder)),
                self.engine.speed_of(holder),
            ) else {
                continue;
            };
            self.speed.adopt(
                member,
                (grant.class_down, grant.class_up),
                Some(speed::rates(down, up)),
            );
        }
    }

    /// Takes a member's share of a grant away and frees its classes.
    fn block_member(&mut self, member: MacAddr) {
        if let Err(error) = self.kernel.remove_grant(member.key()) {
            tracing::error!(%member, error = %crate::text::chain(&error), "cannot block a device of a voucher");
        }
        self.speed.stop(member);
    }

    /// A device that no longer uses a voucher: blocked at once, what it passed since the
    /// last poll billed to the session it shared.
    pub(super) async fn drop_member(&mut self, member: MacAddr, holder: MacAddr, now: Now) {
        self.block_member(member);
        self.speed.apply();
        self.bill_since_poll(member, holder, now).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, n])
    }

    #[test]
    fn a_moved_voucher_is_remembered_for_a_day_and_the_memory_is_bounded() {
        let at = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).expect("valid");
        let now = |secs| Now {
            mono: std::time::Duration::ZERO,
            wall: at + chrono::TimeDelta::seconds(secs),
        };
        let mut moved = MovedAway::default();
        moved.insert(mac(1), at);
        assert!(moved.contains(mac(1), now(86_399)));
        assert!(!moved.contains(mac(1), now(86_400)));
        assert!(!moved.contains(mac(2), now(0)));
        moved.forget(mac(1));
        assert!(!moved.contains(mac(1), now(0)));
        for n in 0..MOVED_AWAY_CAPACITY + 10 {
            let mut addr = [2, 0, 0, 0, 0, 0];
            addr[4..].copy_from_slice(&u16::try_from(n).expect("small").to_be_bytes());
            moved.insert(
                MacAddr(addr),
                at + chrono::TimeDelta::seconds(i64::try_from(n).expect("small")),
            );
        }
        assert_eq!(
            moved.0.len(),
            MOVED_AWAY_CAPACITY,
            "the oldest are forgotten"
        );
    }

    #[test]
    fn members_traffic_is_billed_to_the_holder_in_mac_order() {
        let mut sharing = Sharing::default();
        for (member, holder) in [(mac(1), mac(5)), (mac(9), mac(5)), (mac(3), mac(7))] {
            sharing.holders.insert(member, holder);
            sharing.members.entry(holder).or_default().insert(member);
        }
        let mut traffic = vec![
            (mac(1), 10),
            (mac(2), 1),
            (mac(3), 0),
            (mac(5), 100),
            (mac(9), 5),
        ];
        sharing.fold(&mut traffic);
        assert_eq!(
            traffic,
            vec![(mac(2), 1), (mac(5), 115), (mac(7), 0)],
            "members gone, their bytes (and activity) on their holders, a holder without \
             traffic of its own added"
        );
    }
}
