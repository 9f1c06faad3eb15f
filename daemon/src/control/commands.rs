//! What the API asks of the control task, and how the task answers: each command carries a
//! one-shot channel for its reply. The handlers run on the control task, between polls.

use std::{sync::Arc, time::Duration};

use tokio::sync::{mpsc, oneshot};

use super::Control;
use crate::{
    mac::MacAddr,
    sessions::{
        SessionData,
        engine::{ClientState, EngineError, Now, Session, SessionId},
    },
    store::StoreError,
    views::{ClientFilter, ClientPage, ClientView, SessionView, StatusView},
};

/// A request to the control task.
pub enum Command {
    Clients {
        filter: ClientFilter,
        reply: oneshot::Sender<ClientPage>,
    },
    /// What the built-in portal's page shows the client at `client`; `None` when the kernel
    /// cannot name who sends from it.
    Portal {
        client: std::net::IpAddr,
        reply: oneshot::Sender<Option<crate::views::PortalClient>>,
    },
    /// A voucher code entered on the portal by the client `mac`.
    Redeem {
        mac: MacAddr,
        code: String,
        reply: oneshot::Sender<Result<ClientView, super::RedeemError>>,
    },
    /// The portal's form: a typed code or the browser's resume cookie, redeemed for `mac`;
    /// the answer carries the cookie to keep.
    PortalRedeem {
        mac: MacAddr,
        by: super::RedeemBy,
        reply: oneshot::Sender<Result<super::Redeemed, super::RedeemError>>,
    },
    /// What the landing page offers for a resume cookie (`None`: nothing).
    ResumeOffer {
        cookie: String,
        reply: oneshot::Sender<Option<super::ResumeOffer>>,
    },
    /// A free trial asked for by the client `mac` (the portal's button, `POST /v1/trial`).
    Trial {
        mac: MacAddr,
        reply: oneshot::Sender<Result<ClientView, super::TrialError>>,
    },
    /// `POST /v1/vouchers`.
    CreateVouchers {
        new: super::NewVouchers,
        reply: oneshot::Sender<Result<Vec<super::VoucherView>, CommandError>>,
    },
    /// `GET /v1/garden`.
    Garden {
        reply: oneshot::Sender<crate::garden::GardenView>,
    },
    /// `GET /v1/vouchers`.
    Vouchers {
        reply: oneshot::Sender<Vec<super::VoucherView>>,
    },
    RevokeVoucher {
        target: super::VoucherRef,
        reply: oneshot::Sender<Result<super::VoucherView, CommandError>>,
    },
    /// The client that sends from an address, as the kernel saw it.
    ClientAt {
        ip: std::net::IpAddr,
        reply: oneshot::Sender<Result<ClientAt, crate::bpf::BpfError>>,
    },
    /// One client; `None` if the daemon does not know it.
    Client {
        mac: MacAddr,
        reply: oneshot::Sender<Option<ClientView>>,
    },
    Status {
        reply: oneshot::Sender<StatusView>,
    },
    Sessions {
        mac: Option<MacAddr>,
        reply: oneshot::Sender<Vec<SessionView>>,
    },
    AddSession {
        mac: MacAddr,
        data: SessionData,
        /// What it was sold for, for the sales (docs/usage.md).
        price: Option<crate::price::Price>,
        connect: bool,
        reply: oneshot::Sender<Result<SessionView, CommandError>>,
    },
    RemoveSession {
        id: SessionId,
        reply: oneshot::Sender<Result<(), CommandError>>,
    },
    Connect {
        mac: MacAddr,
        reply: oneshot::Sender<Result<ClientView, CommandError>>,
    },
    Pause {
        mac: MacAddr,
        reply: oneshot::Sender<Result<ClientView, CommandError>>,
    },
    /// A new, validated configuration (SIGHUP): applies what can change live.
    Reload {
        config: std::sync::Arc<crate::config::Config>,
    },
    /// What `/metrics` shows; the API renders it, off this task. Without `per_client`, the
    /// clients are left out (not even looked at).
    Metrics {
        per_client: bool,
        reply: oneshot::Sender<crate::telemetry::Snapshot>,
    },
    /// The configuration the daemon runs with: the file as it was at start, with what
    /// reloads applied since.
    RunningConfig {
        reply: oneshot::Sender<std::sync::Arc<crate::config::Config>>,
    },
    /// Where the usage history and the sales are read (`GET /v1/usage`, `/v1/sales`);
    /// `None` for a store that keeps none.
    History {
        reply: oneshot::Sender<Option<crate::store::usage::History>>,
    },
}

/// Why a command was refused.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("the session cannot be sold")]
    Invalid(#[from] crate::sessions::InvalidSession),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the session could not be stored")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Voucher(#[from] super::VoucherError),
}

/// Who sends from an address (`GET /v1/clients?ip=`).
#[derive(Debug)]
pub enum ClientAt {
    Client(Box<ClientView>),
    /// Nobody the kernel remembers.
    Unknown,
    /// It moved between two MACs moments ago.
    Conflict(crate::addresses::AddressMove),
}

/// The control task is gone: the daemon is shutting down.
#[derive(Debug, thiserror::Error)]
#[error("hotspotd is shutting down")]
pub struct ControlGone;

/// A cloneable handle for sending [`Command`]s.
#[derive(Clone)]
pub struct Commands(mpsc::Sender<Command>);

/// Commands queued while a poll runs; the API waits when it is full.
const COMMAND_QUEUE_LEN: usize = 256;

#[must_use]
pub fn channel() -> (Commands, mpsc::Receiver<Command>) {
    let (sender, receiver) = mpsc::channel(COMMAND_QUEUE_LEN);
    (Commands(sender), receiver)
}

impl Commands {
    /// Sends a command that has no reply.
    pub async fn tell(&self, command: Command) -> Result<(), ControlGone> {
        self.0.send(command).await.map_err(|_| ControlGone)
    }

    /// Sends the command `make` builds and waits for its reply.
    pub async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, ControlGone> {
        let (reply, answer) = oneshot::channel();
        self.0.send(make(reply)).await.map_err(|_| ControlGone)?;
        answer.await.map_err(|_| ControlGone)
    }
}

/// How long an answer that changed something waits for the change to be on disk. A write
/// takes milliseconds; a failing disk answers at once (the change is kept and saved later);
/// this bounds the wait on a disk that hangs. The control task never waits.
const SAVED_WAIT: Duration = Duration::from_secs(5);

impl Control {
    /// Answers one command. A requester that gave up has dropped its receiver; its answer is
    /// then dropped too.
    pub(super) async fn handle(&mut self, command: Command) {
        match command {
            Command::Clients { filter, reply } => {
                let _ = reply.send(self.client_page(&filter));
            }
            Command::Portal { client, reply } => {
                let _ = reply.send(self.portal_client(client));
            }
            Command::Redeem { mac, code, reply } => self.redeem_command(mac, code, reply).await,
            Command::PortalRedeem { mac, by, reply } => {
                self.portal_redeem_command(mac, by, reply).await;
            }
            Command::ResumeOffer { cookie, reply } => {
                let _ = reply.send(self.resume_offer(&cookie));
            }
            Command::Trial { mac, reply } => {
                let result = self.grant_trial(mac).await;
                self.answer_once_saved(reply, result);
            }
            Command::CreateVouchers { new, reply } => {
                let result = self.create_vouchers(&new);
                self.answer_once_saved(reply, result);
            }
            Command::Vouchers { reply } => {
                let _ = reply.send(self.voucher_views());
            }
            Command::Garden { reply } => {
                let _ = reply.send(self.garden_view());
            }
            Command::RevokeVoucher { target, reply } => {
                let result = self.revoke_voucher(target).await;
                self.answer_once_saved(reply, result);
            }
            Command::ClientAt { ip, reply } => {
                let answer = self.address_owner(ip).map(|owner| match owner {
                    crate::addresses::Owner::Client(mac) => {
                        ClientAt::Client(Box::new(self.client_view(mac)))
                    }
                    crate::addresses::Owner::Unknown => ClientAt::Unknown,
                    crate::addresses::Owner::Conflict(change) => ClientAt::Conflict(change),
                });
                let _ = reply.send(answer);
            }
            Command::Client { mac, reply } => {
                let _ = reply.send(self.known_client_view(mac));
            }
            Command::Status { reply } => {
                let _ = reply.send(self.status_view());
            }
            Command::Sessions { mac, reply } => {
                let now = self.now();
                let _ = reply.send(self.session_views(mac, now));
            }
            Command::AddSession {
                mac,
                data,
                price,
                connect,
                reply,
            } => {
                self.telemetry.clients_changed();
                let result = self.add_session(mac, data, price, connect).await;
                self.answer_once_saved(reply, result);
            }
            Command::RemoveSession { id, reply } => {
                self.telemetry.clients_changed();
                let result = self.remove_session(id).await;
                self.answer_once_saved(reply, result);
            }
            // A device on a voucher's slot connects and pauses the session it shares (and so
            // every device on it).
            Command::Connect { mac, reply } => {
                let now = self.now();
                let owner = self.session_owner(mac);
                let result = self.engine.connect(owner, now);
                let result = self.after(result, owner, now).await;
                let result = result.map(|view| self.view_for(mac, view));
                self.answer_once_saved(reply, result);
            }
            Command::Pause { mac, reply } => {
                let now = self.now();
                let owner = self.session_owner(mac);
                self.bill_before_revoke(owner, now).await;
                let result = self.engine.pause(owner, now);
                let result = self.after(result, owner, now).await;
                let result = result.map(|view| self.view_for(mac, view));
                self.answer_once_saved(reply, result);
            }
            Command::Reload { config } => self.reload(&config).await,
            Command::Metrics { per_client, reply } => {
                let now = self.now();
                let _ = reply.send(self.metrics_snapshot(now, per_client));
            }
            Command::RunningConfig { reply } => drop(reply.send(Arc::clone(&self.config))),
            // A failed send: the asker is gone, nothing to answer.
            Command::History { reply } => drop(reply.send(self.store.history())),
        }
    }

    /// Sends `result` once the change it reports is on disk, so that a sale or a removal a
    /// portal has been told of survives a power cut; or once the store has tried and failed
    /// (the change is in effect and kept, and the status shows the store degraded); or after
    /// [`SAVED_WAIT`]. While the store is degraded already it answers at once: the change is
    /// kept, and waiting for the next attempt would only slow the portal down. The control
    /// task goes on meanwhile.
    pub(super) fn answer_once_saved<T: Send + 'static, E: Send + 'static>(
        &self,
        reply: oneshot::Sender<Result<T, E>>,
        result: Result<T, E>,
    ) {
        if result.is_err() || self.store.is_degraded() {
            let _ = reply.send(result);
            return;
        }
        let store = self.store.clone();
        let ticket = store.ticket();
        tokio::spawn(async move {
            match tokio::time::timeout(SAVED_WAIT, store.saved(ticket)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::debug!(error = %crate::text::chain(&error), "answering before the change is on disk");
                }
                Err(_) => {
                    tracing::debug!("answering before the change is on disk: the write takes long");
                }
            }
            let _ = reply.send(result);
        });
    }

    /// Carries out a command's effects, saves, and answers with the client as it is now.
    async fn after(
        &mut self,
        result: Result<Vec<crate::sessions::engine::Effect>, EngineError>,
        mac: MacAddr,
        now: Now,
    ) -> Result<ClientView, CommandError> {
        let effects = result?;
        self.apply(effects, now).await;
        self.save();
        Ok(self.client_view(mac))
    }

    /// Sells a session. The store hands out its id and keeps it even while the disk fails,
    /// so a portal can go on selling; it is written as soon as the disk works, with its sale
    /// (provider, plan, `price` in `sales.currency`).
    pub(super) async fn add_session(
        &mut self,
        mac: MacAddr,
        data: SessionData,
        price: Option<crate::price::Price>,
        connect: bool,
    ) -> Result<SessionView, CommandError> {
        // Checked before it is stored, so a bad session leaves no row behind.
        data.validate()?;
        // Sold now by the daemon's clock, which a step of the system clock does not confuse.
        let now = self.now();
        let data = SessionData {
            created_at: now.wall,
            ..data
        };
        let id = self
            .store
            .sell(mac, data.clone(), price, &self.config.sales.currency)?;
        let mut effects = match self.engine.add(Session { id, mac, data }, now) {
            Ok(effects) => effects,
            Err(error) => {
                // Not sold: nothing of it may stay in the store.
                let _ = self.store.remove(id);
                return Err(error.into());
            }
        };
        if connect && self.engine.client_state(mac) != ClientState::Connected {
            effects.extend(self.engine.connect(mac, now)?);
        }
        self.apply(effects, now).await;
        self.save();
        self.session_view(id, now)
            .ok_or(CommandError::Engine(EngineError::UnknownSession { id }))
    }

    /// Deletes from the store, then the engine forgets the session (and chains or
    /// disconnects its client if it was running, once what it passed is billed).
    pub(super) async fn remove_session(&mut self, id: SessionId) -> Result<(), CommandError> {
        let Some(mac) = self.engine.session(id).map(|session| session.mac) else {
            return Err(EngineError::UnknownSession { id }.into());
        };
        self.store.remove(id)?;
        let now = self.now();
        if self.engine.running_session(mac) == Some(id) {
            // Billed to the session that carried it, so the next one does not pay for it.
            self.bill_before_revoke(mac, now).await;
        }
        let effects = self.engine.remove(id, now)?;
        self.apply(effects, now).await;
        self.save();
        Ok(())
    }
}
