//! The one task that owns the daemon's mutable state — the kernel's maps and the client table —
//! and takes poll ticks and API commands in turn, so nothing needs a lock. Side effects: reads
//! the eBPF maps and netlink every `accounting.poll_interval_ms`, keeps `LOCAL_ADDRS` current.

use std::{sync::Arc, time::Duration};

use tokio::{
    sync::{mpsc, oneshot},
    time::{Instant, MissedTickBehavior},
};
use tokio_util::sync::CancellationToken;

use crate::{
    accounting::{ClientTable, Clocks},
    api::{ClientState, ClientView, StatusView},
    bpf::{BpfError, Kernel, KernelStats},
    config::Config,
    netlink::{Netlink, NetlinkError},
};

/// What the API asks of the control task; each carries where to send the answer.
pub enum Command {
    Clients {
        reply: oneshot::Sender<Vec<ClientView>>,
    },
    Status {
        reply: oneshot::Sender<StatusView>,
    },
}

/// The control task is gone: the daemon is shutting down.
#[derive(Debug, thiserror::Error)]
#[error("hotspotd is shutting down")]
pub struct ControlGone;

/// A cloneable handle for sending [`Command`]s.
#[derive(Clone)]
pub struct Commands(mpsc::Sender<Command>);

impl Commands {
    pub async fn clients(&self) -> Result<Vec<ClientView>, ControlGone> {
        self.ask(|reply| Command::Clients { reply }).await
    }

    pub async fn status(&self) -> Result<StatusView, ControlGone> {
        self.ask(|reply| Command::Status { reply }).await
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, ControlGone> {
        let (reply, answer) = oneshot::channel();
        self.0.send(command(reply)).await.map_err(|_| ControlGone)?;
        answer.await.map_err(|_| ControlGone)
    }
}

/// Commands queued while a poll runs; the API waits when it is full.
const COMMAND_QUEUE_LEN: usize = 256;

#[must_use]
pub fn channel() -> (Commands, mpsc::Receiver<Command>) {
    let (sender, receiver) = mpsc::channel(COMMAND_QUEUE_LEN);
    (Commands(sender), receiver)
}

pub struct Control {
    config: Arc<Config>,
    kernel: Kernel,
    netlink: Netlink,
    lan_ifindex: u32,
    table: ClientTable,
    kernel_stats: KernelStats,
    last_poll: Duration,
    /// The kernel's `HZ`, to read the programs' jiffies timestamps.
    hz: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Bpf(#[from] BpfError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
}

impl Control {
    #[must_use]
    pub fn new(
        config: Arc<Config>,
        kernel: Kernel,
        netlink: Netlink,
        lan_ifindex: u32,
        hz: u32,
    ) -> Self {
        Self {
            config,
            kernel,
            netlink,
            lan_ifindex,
            table: ClientTable::default(),
            kernel_stats: KernelStats::default(),
            last_poll: Duration::ZERO,
            hz,
        }
    }

    /// Tells the kernel which addresses are the box's own, so traffic to them is not billed.
    pub async fn sync_local_addrs(&mut self) -> Result<(), PollError> {
        let addrs = self.netlink.local_addresses().await?;
        let keys = addrs.iter().map(|addr| crate::net::ip_key(*addr)).collect();
        self.kernel.sync_local_addrs(&keys)?;
        Ok(())
    }

    /// Runs until `shutdown`, then takes a last reading and hands the kernel back.
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        shutdown: CancellationToken,
    ) -> Kernel {
        let period = self.config.poll_interval();
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                tick = ticks.tick() => {
                    let late = tick.elapsed();
                    if late > period {
                        tracing::warn!(late_ms = late.as_millis(), "poll ran late; ticks were skipped");
                    }
                    self.poll_logged().await;
                }
                Some(command) = commands.recv() => self.handle(command),
            }
        }
        self.poll_logged().await;
        self.kernel
    }

    async fn poll_logged(&mut self) {
        if let Err(error) = self.poll().await {
            tracing::warn!(%error, "reading the kernel's counters failed; retrying next poll");
        }
    }

    /// Reads the counters and turns them into per-client totals.
    async fn poll(&mut self) -> Result<(), PollError> {
        let started = Instant::now();
        self.sync_local_addrs().await?;
        let readings = self.kernel.usage()?;
        let clocks = Clocks {
            jiffies: self.kernel.jiffies()?,
            hz: self.hz,
            wall: chrono::Utc::now(),
        };
        let _deltas = self.table.apply(&readings, clocks);
        self.table
            .set_addresses(self.netlink.neighbours(self.lan_ifindex).await?);
        self.kernel_stats = self.kernel.stats()?;
        self.last_poll = started.elapsed();
        Ok(())
    }

    fn handle(&self, command: Command) {
        // A requester that gave up has dropped its receiver; nothing to do then.
        match command {
            Command::Clients { reply } => {
                let _ = reply.send(self.clients());
            }
            Command::Status { reply } => {
                let _ = reply.send(StatusView {
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    lan_interface: self.config.network.lan_interface.clone(),
                    clients: self.table.len(),
                    last_poll_ms: self.last_poll.as_secs_f64() * 1_000.0,
                    kernel: self.kernel_stats,
                });
            }
        }
    }

    fn clients(&self) -> Vec<ClientView> {
        self.table
            .records()
            .map(|record| ClientView {
                mac: record.mac,
                ips: record.ips.iter().copied().collect(),
                // Sessions arrive with the session engine; until then no client has one.
                state: ClientState::Disconnected,
                session_id: None,
                up_bytes: record.totals.up_bytes,
                down_bytes: record.totals.down_bytes,
                up_packets: record.totals.up_packets,
                down_packets: record.totals.down_packets,
                local_bytes: record.totals.local_bytes,
                dropped_bytes: record.totals.dropped_bytes,
                dropped_packets: record.totals.dropped_packets,
                last_seen: record.last_seen,
            })
            .collect()
    }
}
