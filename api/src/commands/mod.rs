//! The `docfan` command line: `serve` (the default), `token`, and operator commands
//! (`dlq`, `reindex`, `backup`, `restore`), one module each.

#[cfg(feature = "aws")]
pub mod aws;
pub mod backup;
pub mod cli;
pub mod dlq;
pub mod reindex;
pub mod restore;
pub mod serve;
pub mod token;

pub use cli::{Cli, Command};
