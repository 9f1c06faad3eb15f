//! What the kernel's grant leaves a client, for the built-in portal's status page: read from
//! the grant at this moment, not from the last poll. Reads the kernel's maps; changes nothing.

use super::Control;
use crate::{mac::MacAddr, views::Remaining};

impl Control {
    /// What the kernel's grant of `mac` leaves it at this moment: seconds when it has a
    /// deadline, bytes when it has a budget; `None` when the kernel holds no grant for it
    /// (or cannot be read, which is logged).
    pub(super) fn kernel_remaining(&self, mac: MacAddr) -> Option<Remaining> {
        let (grant, now) = match (self.kernel.grant_of(mac.key()), self.kernel.jiffies()) {
            (Ok(Some(grant)), Ok(now)) => (grant, now),
            (Ok(None), _) => return None,
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(%mac, error = %crate::text::chain(&error), "cannot read the client's grant");
                return None;
            }
        };
        Some(crate::captive::remaining(&grant, now, self.hz))
    }
}
