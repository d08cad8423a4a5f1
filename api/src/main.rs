//! `docfan`: the all-in-one local binary. See `docfan --help`.

// A binary sees all of its package's dependencies; the library is where unused ones are caught.
#![allow(unused_crate_dependencies)]

/// mimalloc rather than the system's malloc: see the workspace manifest.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use api::commands::cli::Backend;
use api::commands::{Cli, Command, backup, dlq, reindex, restore, serve, token};
use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    shared::telemetry::init(cli.log_format);
    let result = match &cli.command {
        None => serve::run(&cli.data_dir, cli.backend, &cli.serve).await,
        Some(Command::Serve(args)) => serve::run(&cli.data_dir, cli.backend, args).await,
        Some(Command::Token(args)) => token::run(&cli.data_dir, args),
        Some(Command::Dlq(args)) => dlq::run(&cli.data_dir, cli.backend, args).await,
        Some(Command::Reindex) if cli.backend == Backend::Aws => Err(anyhow::anyhow!(
            "reindex rebuilds the embedded search index; on AWS, redrive the stream instead"
        )),
        Some(Command::Reindex) => reindex::run(&cli.data_dir).await,
        Some(Command::Backup(_) | Command::Restore(_)) if cli.backend == Backend::Aws => {
            Err(anyhow::anyhow!(
                "backup and restore work on the embedded data directory; on AWS, the tables \
                 have point-in-time recovery (infra/template.yaml)"
            ))
        }
        Some(Command::Backup(args)) => backup::run(&cli.data_dir, args),
        Some(Command::Restore(args)) => restore::run(&cli.data_dir, args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("docfan: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
