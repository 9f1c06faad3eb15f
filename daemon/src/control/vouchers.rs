//! Vouchers on the control task (docs/vouchers.md): creating them in batches, listing them,
//! revoking them, and redeeming one for a client. The control task holds every voucher and
//! the index of their codes' hashes; the store keeps them. Side effects: reads /dev/urandom
//! for new codes; a redemption sells a session and connects its client; revoking a voucher in
//! use removes its session (billed first).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{CommandError, Control};
use crate::{
    mac::MacAddr,
    sessions::{
        SessionData,
        engine::{ClientState, Now},
    },
    store::{SessionEnd, SessionId},
    views::ClientView,
    vouchers::{
        MAX_BATCH, RedeemError, Stage, Voucher, VoucherId, VoucherKey, VoucherState, new_code,
        normalise,
    },
};

/// The most devices a voucher may be created for (they share one voucher's plan).
pub const MAX_DEVICES: u32 = 1_000;

/// What `POST /v1/vouchers` asks for: `count` vouchers, each selling `plan`.
#[derive(Clone, Debug)]
pub struct NewVouchers {
    pub count: u32,
    pub plan: SessionData,
    /// What each is sold for, in `sales.currency`.
    pub price: Option<crate::price::Price>,
    pub max_devices: u32,
    pub valid_until: Option<DateTime<Utc>>,
}

/// Which voucher a revocation names.
#[derive(Clone, Debug)]
pub enum VoucherRef {
    Id(VoucherId),
    /// As typed.
    Code(String),
}

/// One voucher as the API shows it. `code` only in the answer that created it (`null` in
/// lists): it is not kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VoucherView {
    pub id: VoucherId,
    #[serde(default)]
    pub code: Option<String>,
    pub state: VoucherState,
    /// Devices using it now.
    pub devices: u32,
    pub max_devices: u32,
    pub plan: SessionData,
    pub valid_until: Option<DateTime<Utc>>,
    /// The device that holds its session.
    pub mac: Option<MacAddr>,
    /// The other devices using it now (device slots).
    #[serde(default)]
    pub device_macs: Vec<MacAddr>,
    pub session_id: Option<SessionId>,
    pub created_at: DateTime<Utc>,
    pub redeemed_at: Option<DateTime<Utc>>,
    /// What its session is sold for, in `sales.currency`; `null`: no price.
    #[serde(default)]
    pub price: Option<crate::price::Price>,
}

/// Why a voucher command was refused; each message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum VoucherError {
    #[error("count must be 1 to {MAX_BATCH} (got {0}); create larger runs in several batches")]
    Count(u32),
    #[error("max_devices must be 1 to {MAX_DEVICES} (got {0})")]
    MaxDevices(u32),
    #[error("valid_until {0} has passed: give a later date, or none")]
    PastDate(DateTime<Utc>),
    #[error("no voucher has this code")]
    UnknownCode,
    #[error("there is no voucher {0}")]
    UnknownVoucher(VoucherId),
    #[error("cannot draw codes from /dev/urandom")]
    Random(#[source] std::io::Error),
}

/// The vouchers the control task holds, with the index of their codes.
#[derive(Debug)]
pub(super) struct VoucherBook {
    key: VoucherKey,
    /// Wrong codes lately, to throttle guessing.
    guesses: crate::vouchers::Guesses,
    vouchers: BTreeMap<VoucherId, Voucher>,
    by_hash: HashMap<[u8; 32], VoucherId>,
}

impl VoucherBook {
    pub(super) fn new(key: VoucherKey) -> Self {
        Self {
            key,
            guesses: crate::vouchers::Guesses::default(),
            vouchers: BTreeMap::new(),
            by_hash: HashMap::new(),
        }
    }

    /// Takes the stored vouchers at start.
    pub(super) fn load(&mut self, vouchers: Vec<Voucher>) {
        for voucher in vouchers {
            self.by_hash.insert(voucher.code_hash, voucher.id);
            self.vouchers.insert(voucher.id, voucher);
        }
    }

    /// Marks the vouchers whose sessions ended, and returns them changed, for the store.
    pub(super) fn sessions_ended(&mut self, ended: &[(SessionId, SessionEnd)]) -> Vec<Voucher> {
        if ended.is_empty() {
            return Vec::new();
        }
        let ended: BTreeMap<SessionId, SessionEnd> = ended.iter().copied().collect();
        self.vouchers
            .values_mut()
            .filter_map(|voucher| {
                let end = *ended.get(&voucher.session_id?)?;
                voucher.session_end = Some(end);
                Some(voucher.clone())
            })
            .collect()
    }

    /// Every voucher, oldest first.
    pub(super) fn all(&self) -> impl Iterator<Item = &Voucher> {
        self.vouchers.values()
    }

    pub(super) fn find_code(&self, typed: &str) -> Option<VoucherId> {
        let code = normalise(typed)?;
        self.by_hash.get(&self.key.hash(&code)).copied()
    }

    /// What codes and resume cookies are checked with (`resume.rs`).
    pub(super) fn key(&self) -> &VoucherKey {
        &self.key
    }

    pub(super) fn get(&self, id: VoucherId) -> Option<&Voucher> {
        self.vouchers.get(&id)
    }

    /// Whether `mac` may try a code now (not throttled for wrong ones).
    pub(super) fn guesses_allow(&mut self, mac: MacAddr) -> bool {
        self.guesses.check(mac, std::time::Instant::now()).is_ok()
    }

    /// Counts a wrong code from `mac` (one a RADIUS server refused).
    pub(super) fn wrong_guess(&mut self, mac: MacAddr) {
        self.guesses.wrong(mac, std::time::Instant::now());
    }
}

impl Control {
    /// Creates `new.count` vouchers with fresh codes and stores them; the answer holds the
    /// codes, shown this once.
    pub(super) fn create_vouchers(
        &mut self,
        new: &NewVouchers,
    ) -> Result<Vec<VoucherView>, CommandError> {
        if !(1..=MAX_BATCH).contains(&new.count) {
            return Err(VoucherError::Count(new.count).into());
        }
        if !(1..=MAX_DEVICES).contains(&new.max_devices) {
            return Err(VoucherError::MaxDevices(new.max_devices).into());
        }
        let now = self.now();
        if let Some(until) = new.valid_until.filter(|until| *until <= now.wall) {
            return Err(VoucherError::PastDate(until).into());
        }
        let plan = SessionData {
            provider: "voucher".to_owned(),
            time_cons: 0,
            data_cons: 0.0,
            started_at: None,
            created_at: now.wall,
            ..new.plan.clone()
        };
        plan.validate()?;
        // Checked to be 9 to 32 when the configuration was read.
        let length = usize::try_from(self.config.vouchers.code_length)
            .unwrap_or(crate::vouchers::DEFAULT_CODE_LENGTH);
        let book = &mut self.vouchers;
        let mut next_id = book.vouchers.keys().next_back().map_or(1, |id| id + 1);
        let mut created = Vec::with_capacity(new.count as usize);
        let mut codes = Vec::with_capacity(new.count as usize);
        let mut batch_hashes = std::collections::HashSet::with_capacity(new.count as usize);
        while created.len() < new.count as usize {
            let code = new_code(length).map_err(VoucherError::Random)?;
            let code_hash = book.key.hash(&code);
            // 2^-49 a pair at the default length, but a repeat must never sell twice.
            if book.by_hash.contains_key(&code_hash) || !batch_hashes.insert(code_hash) {
                continue;
            }
            created.push(Voucher {
                id: next_id,
                code_hash,
                plan: plan.clone(),
                max_devices: new.max_devices,
                valid_until: new.valid_until,
                stage: Stage::Unused,
                mac: None,
                devices: Vec::new(),
                session_id: None,
                created_at: now.wall,
                redeemed_at: None,
                price: new.price,
                session_end: None,
            });
            codes.push(code);
            next_id += 1;
        }
        self.store.put_vouchers(created.clone())?;
        tracing::info!(
            count = created.len(),
            first = created.first().map(|v| v.id),
            "vouchers created"
        );
        let mut views = Vec::with_capacity(created.len());
        for (voucher, code) in created.into_iter().zip(codes) {
            let mut view = self.voucher_view(&voucher, now);
            view.code = Some(code);
            self.vouchers.by_hash.insert(voucher.code_hash, voucher.id);
            self.vouchers.vouchers.insert(voucher.id, voucher);
            views.push(view);
        }
        Ok(views)
    }

    /// Every voucher, oldest first.
    pub(super) fn voucher_views(&mut self) -> Vec<VoucherView> {
        let now = self.now();
        self.vouchers
            .vouchers
            .values()
            .map(|voucher| self.voucher_view(voucher, now))
            .collect()
    }

    fn voucher_view(&self, voucher: &Voucher, now: Now) -> VoucherView {
        let state = self.voucher_state(voucher, now);
        let in_use = u32::from(state == VoucherState::InUse);
        VoucherView {
            id: voucher.id,
            code: None,
            state,
            devices: in_use * (1 + u32::try_from(voucher.devices.len()).unwrap_or(u32::MAX - 1)),
            device_macs: if state == VoucherState::InUse {
                voucher.devices.clone()
            } else {
                Vec::new()
            },
            max_devices: voucher.max_devices,
            plan: voucher.plan.clone(),
            valid_until: voucher.valid_until,
            mac: voucher.mac,
            session_id: voucher.session_id,
            created_at: voucher.created_at,
            redeemed_at: voucher.redeemed_at,
            price: voucher.price,
        }
    }

    pub(super) fn voucher_state(&self, voucher: &Voucher, now: Now) -> VoucherState {
        let session = voucher
            .session_id
            .and_then(|id| self.engine.state_of(id, now));
        voucher.state(session, now.wall)
    }

    /// Revokes a voucher: it can no longer be redeemed, and the session it became, if any, is
    /// removed (what its client used billed first), so its client is blocked. Revoking a
    /// revoked voucher changes nothing.
    pub(super) async fn revoke_voucher(
        &mut self,
        target: VoucherRef,
    ) -> Result<VoucherView, CommandError> {
        let id = match target {
            VoucherRef::Id(id) => self
                .vouchers
                .vouchers
                .contains_key(&id)
                .then_some(id)
                .ok_or(VoucherError::UnknownVoucher(id))?,
            VoucherRef::Code(code) => self
                .vouchers
                .find_code(&code)
                .ok_or(VoucherError::UnknownCode)?,
        };
        let Some(voucher) = self.vouchers.vouchers.get(&id).cloned() else {
            return Err(VoucherError::UnknownVoucher(id).into());
        };
        if voucher.stage == Stage::Revoked {
            let now = self.now();
            return Ok(self.voucher_view(&voucher, now));
        }
        if let Some(session) = voucher
            .session_id
            .filter(|session| self.engine.session(*session).is_some())
        {
            self.telemetry.clients_changed();
            self.remove_session(session).await?;
        }
        let revoked = Voucher {
            stage: Stage::Revoked,
            ..voucher
        };
        self.store.put_vouchers(vec![revoked.clone()])?;
        tracing::info!(voucher = id, mac = ?revoked.mac, "voucher revoked");
        let now = self.now();
        let view = self.voucher_view(&revoked, now);
        self.vouchers.vouchers.insert(id, revoked);
        self.index_devices();
        Ok(view)
    }

    /// Redeems `code` for `mac`: [`Self::find_voucher`], then [`Self::redeem_voucher`].
    pub(super) async fn redeem(
        &mut self,
        mac: MacAddr,
        code: &str,
    ) -> Result<ClientView, RedeemError> {
        let id = self.find_voucher(mac, |book| book.find_code(code))?;
        self.redeem_voucher(mac, id).await
    }

    /// The voucher `find` names (from a typed code, or the portal's resume cookie) for `mac`.
    /// Refused while `mac`, or everyone, entered too many wrong ones lately; one that names
    /// none counts as a wrong one.
    pub(super) fn find_voucher(
        &mut self,
        mac: MacAddr,
        find: impl FnOnce(&VoucherBook) -> Option<VoucherId>,
    ) -> Result<VoucherId, RedeemError> {
        let at = std::time::Instant::now();
        if let Err(throttle) = self.vouchers.guesses.check(mac, at) {
            return Err(RedeemError::Throttled {
                retry_secs: throttle.retry_secs(),
            });
        }
        let Some(id) = find(&self.vouchers) else {
            self.vouchers.guesses.wrong(mac, at);
            if let Err(throttle) = self.vouchers.guesses.check(mac, at) {
                // The try that reached a limit: told once, not at every refused one after.
                let everyone = matches!(throttle, crate::vouchers::Throttle::Everyone { .. });
                tracing::warn!(%mac, everyone, retry_secs = throttle.retry_secs(), "too many wrong voucher codes: someone may be guessing; codes are refused for a while");
                let now = self.now();
                self.events.send(crate::events::LanRecord {
                    at: now.wall,
                    event: crate::events::LanEvent::VoucherGuessing {
                        mac,
                        everyone,
                        retry_secs: throttle.retry_secs(),
                    },
                });
            }
            tracing::debug!(%mac, "a voucher code (or resume cookie) was entered; no voucher has it");
            return Err(RedeemError::UnknownCode);
        };
        Ok(id)
    }

    /// Redeems voucher `id` for `mac`: an unused voucher's plan becomes the client's session
    /// (provider "voucher"; the voucher names it) and the client is connected at once. The
    /// same device redeeming its voucher again is connected (resumed) again.
    pub(super) async fn redeem_voucher(
        &mut self,
        mac: MacAddr,
        id: VoucherId,
    ) -> Result<ClientView, RedeemError> {
        let Some(voucher) = self.vouchers.vouchers.get(&id).cloned() else {
            return Err(RedeemError::UnknownCode);
        };
        let now = self.now();
        match self.voucher_state(&voucher, now) {
            VoucherState::Revoked => Err(RedeemError::Revoked),
            VoucherState::Expired => Err(RedeemError::Expired),
            VoucherState::UsedUp => Err(RedeemError::UsedUp),
            VoucherState::InUse => {
                let Some(holder) = voucher.mac else {
                    return Err(RedeemError::UnknownCode);
                };
                if holder != mac && !voucher.devices.contains(&mac) {
                    self.take_slot(voucher, mac, now).await?;
                }
                // The device is one of the voucher's: its session runs again if it stopped.
                let holder = self
                    .vouchers
                    .vouchers
                    .get(&id)
                    .and_then(|voucher| voucher.mac)
                    .unwrap_or(holder);
                if self.engine.client_state(holder) != ClientState::Connected {
                    let now = self.now();
                    let effects = self
                        .engine
                        .connect(holder, now)
                        .map_err(|error| RedeemError::Failed(crate::text::chain_string(&error)))?;
                    self.apply(effects, now).await;
                    self.save();
                }
                self.follow_holder(holder);
                Ok(self.client_view(mac))
            }
            VoucherState::Unused => {
                self.telemetry.clients_changed();
                let sold = self
                    .add_session(mac, voucher.plan.clone(), voucher.price, true)
                    .await
                    .map_err(|error| RedeemError::Failed(crate::text::chain_string(&error)))?;
                let now = self.now();
                let redeemed = Voucher {
                    stage: Stage::InUse,
                    mac: Some(mac),
                    session_id: Some(sold.session.id),
                    redeemed_at: Some(now.wall),
                    ..voucher
                };
                if let Err(error) = self.store.put_vouchers(vec![redeemed.clone()]) {
                    // The client paid with the code and has its session; the voucher's new
                    // state is kept in memory and shown, and the log says it is not stored.
                    tracing::error!(voucher = id, error = %crate::text::chain(&error), "a redeemed voucher's state cannot be stored");
                }
                tracing::info!(voucher = id, %mac, session = sold.session.id, "voucher redeemed");
                self.vouchers.vouchers.insert(id, redeemed);
                Ok(self.client_view(mac))
            }
        }
    }

    /// Gives `mac` a device slot of `voucher`, in use by other devices: a free slot if it has
    /// one (`max_devices`), else the slot of the device that was active least recently, which
    /// is blocked at once, what it passed billed. When that device holds the session, the
    /// session moves to `mac` with all it consumed, and the other devices follow it.
    async fn take_slot(
        &mut self,
        voucher: Voucher,
        mac: MacAddr,
        now: Now,
    ) -> Result<(), RedeemError> {
        let Some(holder) = voucher.mac else {
            return Err(RedeemError::UnknownCode);
        };
        let in_use = u32::try_from(1 + voucher.devices.len()).unwrap_or(u32::MAX);
        // With every slot in use, the device active least recently gives its slot up.
        let gives_up = (in_use >= voucher.max_devices).then(|| {
            let last_active = |device: &MacAddr| {
                self.table
                    .record(*device)
                    .and_then(|record| record.last_seen)
            };
            std::iter::once(holder)
                .chain(voucher.devices.iter().copied())
                .min_by_key(last_active)
                .unwrap_or(holder)
        });
        // A device runs one session: on another's slot, it would run two at once.
        if gives_up != Some(holder) && self.engine.client_state(mac) == ClientState::Connected {
            return Err(RedeemError::OwnSession);
        }
        // And it shares one voucher at a time: the slot it had on another is given up.
        self.leave_slot(mac, true, now).await;
        let mut updated = voucher.clone();
        match gives_up {
            None => updated.devices.push(mac),
            Some(gives_up) if gives_up == holder => {
                let session = voucher.session_id.ok_or(RedeemError::UsedUp)?;
                self.bill_before_revoke(holder, now).await;
                let now = self.now();
                let effects = self
                    .engine
                    .move_session(session, mac, now)
                    .map_err(|error| RedeemError::Failed(crate::text::chain_string(&error)))?;
                if let Err(error) = self.store.reassign(session, mac) {
                    tracing::error!(session, %mac, error = %crate::text::chain(&error), "a moved session's new device cannot be stored");
                }
                self.apply(effects, now).await;
                updated.mac = Some(mac);
            }
            Some(gives_up) => {
                updated.devices.retain(|device| *device != gives_up);
                updated.devices.push(mac);
                self.drop_member(gives_up, holder, now).await;
            }
        }
        let moved_from = gives_up;
        if let Err(error) = self.store.put_vouchers(vec![updated.clone()]) {
            tracing::error!(voucher = updated.id, error = %crate::text::chain(&error), "a voucher's devices cannot be stored");
        }
        let id = updated.id;
        self.vouchers.vouchers.insert(id, updated);
        self.index_devices();
        self.telemetry.clients_changed();
        self.moved_away.forget(mac);
        let Some(from) = moved_from else {
            tracing::info!(voucher = id, %mac, "a device joined a voucher in use");
            return Ok(());
        };
        self.moved_away.insert(from, now.wall);
        tracing::info!(voucher = id, %from, to = %mac, "a voucher with every device slot in use moved to a new device");
        self.events.send(crate::events::LanRecord {
            at: now.wall,
            event: crate::events::LanEvent::VoucherMoved {
                voucher: id,
                from,
                to: mac,
            },
        });
        Ok(())
    }

    /// Takes `mac` off the voucher whose device slot it uses, if any: the voucher keeps one
    /// device fewer, and what `mac` passed since the last poll is billed to that voucher's
    /// session. With `block`, its share of the grant is taken away too; without, the caller
    /// is about to give it a grant of its own, which replaces the share.
    pub(super) async fn leave_slot(&mut self, mac: MacAddr, block: bool, now: Now) {
        let Some(holder) = self.sharing.holder_of(mac) else {
            return;
        };
        let voucher = self
            .vouchers
            .vouchers
            .values()
            .find(|voucher| voucher.mac == Some(holder) && voucher.devices.contains(&mac))
            .cloned();
        if let Some(mut voucher) = voucher {
            voucher.devices.retain(|device| *device != mac);
            if let Err(error) = self.store.put_vouchers(vec![voucher.clone()]) {
                tracing::error!(voucher = voucher.id, error = %crate::text::chain(&error), "a voucher's devices cannot be stored");
            }
            tracing::info!(voucher = voucher.id, %mac, "a device left the voucher it shared");
            self.vouchers.vouchers.insert(voucher.id, voucher);
        }
        self.index_devices();
        if block {
            self.drop_member(mac, holder, now).await;
        } else {
            self.bill_since_poll(mac, holder, now).await;
        }
    }
}
