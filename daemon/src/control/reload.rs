//! SIGHUP: takes a new configuration and applies what can change while running — global speed
//! limits, the walled garden, the poll and save intervals, idle pause, `bytes_per_mb`, the
//! queue order — and logs what needs a restart instead (interfaces, paths, the socket).
//! Side effects: the walled-garden map, the HTB trees' global caps, grants of sessions whose
//! speed or budget changed.

use std::sync::Arc;

use super::{Control, speed};
use crate::{config::Config, sessions::engine::EngineConfig};

impl Control {
    pub(super) async fn reload(&mut self, new: &Config) {
        let old = Arc::clone(&self.config);
        // Keys only read at start keep their running values, so what the daemon reports
        // stays true until it is restarted.
        let mut merged = new.clone();
        let mut needs_restart = Vec::new();
        if merged.network.lan_interface != old.network.lan_interface {
            needs_restart.push("network.lan_interface");
            merged
                .network
                .lan_interface
                .clone_from(&old.network.lan_interface);
        }
        if merged.network.ifb_interface != old.network.ifb_interface {
            needs_restart.push("network.ifb_interface");
            merged
                .network
                .ifb_interface
                .clone_from(&old.network.ifb_interface);
        }
        if merged.store.sqlite_path != old.store.sqlite_path {
            needs_restart.push("store.sqlite_path");
            merged.store.sqlite_path.clone_from(&old.store.sqlite_path);
        }
        if merged.api != old.api {
            needs_restart.push("api.socket");
            merged.api = old.api.clone();
        }
        if merged.kernel != old.kernel {
            needs_restart.push("kernel.pin_dir");
            merged.kernel = old.kernel.clone();
        }

        if merged.network.walled_garden != old.network.walled_garden
            && let Err(error) = self.kernel.set_walled_garden(&merged.network.walled_garden)
        {
            tracing::error!(error = %crate::text::chain(&error), "the new walled garden could not be applied");
        }
        let now = self.now();
        let effects = self
            .engine
            .set_config(EngineConfig::from_config(&merged), now);
        // The global caps: the trees' parent classes; clients at the global speed get grants
        // with the new rates among `effects`.
        let global = speed::global(&merged);
        let global_changed = self.desired.global != global;
        self.desired.global = global;
        self.config = Arc::new(merged);
        self.apply(effects, now).await;
        if global_changed {
            self.sync_speed().await;
        }
        self.save();
        if needs_restart.is_empty() {
            tracing::info!("configuration reloaded");
        } else {
            tracing::warn!(
                keys = needs_restart.join(", "),
                "configuration reloaded; these keys keep their old values until hotspotd restarts"
            );
        }
    }
}
