//! The `docfan` command line: `serve` (the default), `token`, and operator commands.

#[cfg(feature = "aws")]
pub mod aws;
pub mod cli;
pub mod dlq;
pub mod reindex;
pub mod serve;
pub mod token;

pub use cli::{Cli, Command};
