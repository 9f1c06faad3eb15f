//! Where the RFC 8908 answer is read: the kernel's maps, through a reader of their own, not the
//! control task, so a phone's question is answered in microseconds also while a poll of
//! thousands of clients runs. Side effects: none; reads the maps and runs the clock probe.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, PoisonError},
    time::Instant,
};

use tokio::sync::watch;

use crate::{
    accounting::Clocks,
    addresses::{self, Owner},
    bpf::{BpfError, KernelReader},
    config::Config,
    net::ip_key,
    views::CaptiveView,
};

/// The kernel's view of the clients, for the RFC 8908 answer.
pub struct CaptiveSource {
    /// A syscall or two per answer; the lock keeps one probe run at a time.
    reader: Mutex<KernelReader>,
    hz: u32,
    /// The running configuration (`portal.url` and `venue_info_url` change on SIGHUP).
    configs: watch::Receiver<Arc<Config>>,
}

impl CaptiveSource {
    #[must_use]
    pub fn new(reader: KernelReader, hz: u32, configs: watch::Receiver<Arc<Config>>) -> Self {
        Self {
            reader: Mutex::new(reader),
            hz,
            configs,
        }
    }

    /// The answer for the client at `client`, which reached the portal at `reached`. What
    /// cannot be read is logged and answered as captive, as the client's packets would be.
    pub fn view(&self, client: IpAddr, reached: SocketAddr) -> CaptiveView {
        let config = Arc::clone(&self.configs.borrow());
        let captive =
            |owner: &Owner| crate::captive::view(&config.portal, reached, owner, None, 0, self.hz);
        let reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        let read = || -> Result<(Owner, Option<hotspotd_common::Grant>, u64), BpfError> {
            let now = reader.jiffies()?;
            let clocks = Clocks {
                jiffies: now,
                hz: self.hz,
                wall: chrono::Utc::now(),
                read_at: Instant::now(),
            };
            let owner = addresses::owner_of(client, reader.address_owner(ip_key(client))?, clocks);
            let grant = match &owner {
                Owner::Client(mac) => reader.grant_of(mac.key())?,
                Owner::Unknown | Owner::Conflict(_) => None,
            };
            Ok((owner, grant, now))
        };
        match read() {
            Ok((owner, grant, now)) => crate::captive::view(
                &config.portal,
                reached,
                &owner,
                grant.as_ref(),
                now,
                self.hz,
            ),
            Err(error) => {
                tracing::warn!(%client, error = %crate::text::chain(&error), "cannot read the kernel's view of this client; answered captive");
                captive(&Owner::Unknown)
            }
        }
    }
}
