//! Sessions: what a client buys ([`SessionData`]) and the engine that consumes them.

pub mod data;
pub mod engine;

pub use data::{InvalidSession, SessionData, SessionType};
pub use engine::{
    ClientState, Effect, Engine, EngineConfig, EngineError, Event, Grant, Now, PauseReason,
    RestoredClient, Session, SessionId, SessionState,
};
