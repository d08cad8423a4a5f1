//! docfan's benchmarks in one command: every scenario runs beside the floor it is
//! compared with, measured on the same machine in the same run, and the run is written
//! as a report (`report.json`, `report.md`, PNG charts).
//!
//! - [`scenarios`]: the benchmarks and their floors;
//! - [`bare`]: the bare tokio-tungstenite broadcast server, the floor for live delivery;
//! - [`child`]: servers in child processes (`docfan serve`, the bare server);
//! - [`report`], [`charts`]: what a run writes; [`machine`], [`stats`]: what they hold.

// The library's unit tests see the dev-dependencies the integration tests use.
#![cfg_attr(test, allow(unused_crate_dependencies))]

// The bench binary's allocator (`main.rs`), the `docfan` binary's.
use mimalloc as _;

// The `docfan-bench` binary's command line and the app it starts, dependencies of the
// package for it alone.
use {api as _, clap as _};

pub mod bare;
pub mod charts;
pub mod child;
pub mod machine;
pub mod report;
pub mod scenarios;
pub mod stats;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use crate::machine::{Machine, load_average};
use crate::report::{Report, Run};
use crate::scenarios::Mode;

/// What to run and where to write the report.
#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    /// Scenario names ([`scenarios::NAMES`]); empty: all.
    pub only: Vec<String>,
    pub out: PathBuf,
    /// The command line, for the report.
    pub command: String,
}

/// Runs the benchmarks and writes the report into `options.out`.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    for name in &options.only {
        anyhow::ensure!(
            scenarios::NAMES.contains(&name.as_str()),
            "unknown scenario {name:?}: the scenarios are {}",
            scenarios::NAMES.join(", ")
        );
    }
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("creating {}", options.out.display()))?;
    let here = std::env::current_dir().unwrap_or_default();
    let machine = Machine::describe(&[&workspace_root(), &here]);
    let load_average_start = load_average();
    println!(
        "{} cores, {}, {:.0} GiB RAM, Linux {}; load average {:.2}",
        machine.cores, machine.cpu, machine.ram_gib, machine.kernel, load_average_start[0]
    );
    let started = Instant::now();
    let scenarios = scenarios::run(options.mode, &options.only).await?;
    let report = Report {
        machine,
        run: Run {
            command: options.command.clone(),
            quick: options.mode == Mode::Quick,
            only: options.only.clone(),
            seconds: started.elapsed().as_secs_f64(),
            load_average_start,
            load_average_end: load_average(),
        },
        scenarios,
    };
    write(&report, &options.out)?;
    Ok(report)
}

/// Writes `report.json`, the charts and `report.md` into `dir`.
pub fn write(report: &Report, dir: &Path) -> anyhow::Result<()> {
    report.write_json(&dir.join("report.json"))?;
    let charts = charts::draw_all(report, dir)?;
    std::fs::write(dir.join("report.md"), report.markdown(&charts))?;
    println!("report written to {}", dir.display());
    Ok(())
}

/// The workspace this crate was built from: its commit is the one measured.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}
