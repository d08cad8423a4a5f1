//! `docfan-bench`: runs every benchmark beside its floor and writes the report.
//!
//! ```sh
//! cargo run --release -p docfan-bench -- [--quick] [--only NAME...] [--out bench/report]
//! ```

// A binary sees all of its package's dependencies; the library is where unused ones are caught.
#![allow(unused_crate_dependencies)]

/// mimalloc rather than the system's malloc: see the workspace manifest.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use api::commands::cli::Backend;
use api::commands::{Command, serve};
use clap::builder::PossibleValuesParser;
use clap::{Parser, Subcommand};
use docfan_bench::Options;
use docfan_bench::scenarios::{Mode, NAMES};

#[derive(Debug, Parser)]
#[command(
    name = "docfan-bench",
    about = "Runs docfan's benchmarks beside their floors and writes a report (JSON, Markdown, PNG charts)"
)]
struct Cli {
    /// Tiny sizes: every scenario in seconds (figures not for comparison).
    #[arg(long)]
    quick: bool,

    /// Run only these scenarios (and the floors they are compared with).
    #[arg(long, num_args = 1.., value_parser = PossibleValuesParser::new(NAMES))]
    only: Vec<String>,

    /// Where to write report.json, report.md and the charts.
    #[arg(long, default_value = "bench/report")]
    out: PathBuf,

    #[command(subcommand)]
    child: Option<Child>,
}

/// What the bench binary runs as a child process of itself.
#[derive(Debug, Subcommand)]
enum Child {
    /// `docfan …` (only `serve`).
    #[command(hide = true)]
    Docfan {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// The bare WebSocket broadcast server.
    #[command(hide = true)]
    BareServer {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        payload_bytes: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("docfan-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.child {
            Some(Child::Docfan { args }) => docfan(args).await,
            Some(Child::BareServer {
                listen,
                payload_bytes,
            }) => docfan_bench::bare::run_child(listen, payload_bytes).await,
            None => {
                let options = Options {
                    mode: if cli.quick { Mode::Quick } else { Mode::Full },
                    only: cli.only,
                    out: cli.out,
                    command: std::iter::once("docfan-bench".to_owned())
                        .chain(std::env::args().skip(1))
                        .collect::<Vec<_>>()
                        .join(" "),
                };
                docfan_bench::run(&options).await.map(|_| ())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("docfan-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `docfan serve`, as the `docfan` binary runs it.
async fn docfan(args: Vec<OsString>) -> anyhow::Result<()> {
    let cli = api::commands::Cli::parse_from(std::iter::once(OsString::from("docfan")).chain(args));
    anyhow::ensure!(
        cli.backend == Backend::Embedded,
        "the benchmarks run docfan on its embedded backend"
    );
    shared::telemetry::init(cli.log_format);
    match &cli.command {
        None => serve::run(&cli.data_dir, cli.backend, &cli.serve).await,
        Some(Command::Serve(args)) => serve::run(&cli.data_dir, cli.backend, args).await,
        Some(_) => anyhow::bail!("the bench binary runs only `docfan serve`"),
    }
}
