//! Watchers of the LAN beside the sessions: tasks that read what the kernel knows (the LAN
//! bridge's forwarding database, the neighbour tables) and tell the log, the event stream and
//! `/metrics` what an operator should hear of. They change nothing, and nothing waits for them.

pub mod mac_moves;
pub mod neighbour_overflow;
