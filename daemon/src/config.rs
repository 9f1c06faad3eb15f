//! Placeholder replaced by the config helper.
