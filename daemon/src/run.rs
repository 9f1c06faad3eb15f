//! todo
#[derive(Debug, thiserror::Error)]
pub enum RunError {}
pub async fn run() -> Result<(), RunError> { Ok(()) }
