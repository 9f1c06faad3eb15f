//! hotspotd as a RADIUS client (a NAS; docs/radius.md). Side effects: none yet (the codec).

pub mod codec;
pub mod dict;
