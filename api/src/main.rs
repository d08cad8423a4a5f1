//! `docfan`: the all-in-one local binary. See `docfan --help`.

use api::commands::{Cli, Command, serve, token};
use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    shared::telemetry::init(cli.log_format);
    let result = match &cli.command {
        None => serve::run(&cli.data_dir, &cli.serve).await,
        Some(Command::Serve(args)) => serve::run(&cli.data_dir, args).await,
        Some(Command::Token(args)) => token::run(&cli.data_dir, args),
        Some(Command::Dlq(args)) => api::commands::dlq::run(&cli.data_dir, args).await,
        Some(Command::Reindex) => api::commands::reindex::run(&cli.data_dir).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("docfan: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
