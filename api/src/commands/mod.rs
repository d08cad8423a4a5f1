//! The `docfan` command line: `serve` (the default), `token`, and operator commands.

pub mod cli;
pub mod serve;
pub mod token;

pub use cli::{Cli, Command};
