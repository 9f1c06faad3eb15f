//! SIGHUP: takes a new configuration and applies what can change while running — global speed
//! limits, the walled garden, the poll and save intervals, idle pause, `bytes_per_mb`, the
//! queue order — and names each changed key that needs a restart instead (which keys those
//! are is `Config::reload_from`'s to say). Side effects: the walled-garden map, the HTB trees'
//! global caps, grants of sessions whose speed or budget changed.

use std::sync::Arc;

use super::Control;
use crate::config::Config;

impl Control {
    pub(super) async fn reload(&mut self, new: &Config) {
        let old = Arc::clone(&self.config);
        // Keys only read at start keep their running values, so what the daemon reports
        // stays true until it is restarted.
        let crate::config::Reloaded {
            config: merged,
            needs_restart,
        } = old.reload_from(new);

        if merged.network.walled_garden != old.network.walled_garden
            && let Err(error) = self.kernel.set_walled_garden(&merged.network.walled_garden)
        {
            tracing::error!(error = %crate::text::chain(&error), "the new walled garden could not be applied");
        }
        self.reconfigure_garden(&merged);
        let now = self.now();
        let effects = self.engine.set_config(merged.engine(), now);
        // The global caps: the trees' parent classes; clients at the global speed get grants
        // with the new rates among `effects`, and the apply goes over every class.
        self.speed.configure(&merged);
        self.config = Arc::new(merged);
        self.apply(effects, now).await;
        // Local services and DNS redirection may have changed with the configuration.
        self.sync_box_addresses().await;
        self.save();
        if needs_restart.is_empty() {
            tracing::info!("configuration reloaded");
        } else {
            let keys = needs_restart.join(", ");
            tracing::warn!(
                "configuration reloaded, except {keys}: not applied, they keep their running \
                 values until hotspotd restarts ('systemctl restart hotspotd')"
            );
        }
    }
}
