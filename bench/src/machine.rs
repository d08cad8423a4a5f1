//! The machine a run measured, and how busy it was.

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub ram_gib: f64,
    pub kernel: String,
    /// When the run started (RFC 3339, UTC).
    pub date: String,
    pub git_commit: String,
    /// Whether the work tree differed from the commit.
    pub git_dirty: bool,
}

impl Machine {
    /// This machine, now; the commit is the one checked out in the first of `repos`
    /// that git knows.
    pub fn describe(repos: &[&Path]) -> Self {
        let cpu =
            read_field("/proc/cpuinfo", "model name", ':').unwrap_or_else(|| "unknown CPU".into());
        let ram_gib = read_field("/proc/meminfo", "MemTotal", ':')
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| std::env::consts::OS.into());
        let repo = repos.iter().find(|r| {
            Command::new("git")
                .args(["rev-parse", "--git-dir"])
                .current_dir(r)
                .output()
                .is_ok_and(|o| o.status.success())
        });
        let git = |args: &[&str]| {
            Command::new("git")
                .args(args)
                .current_dir(repo?)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        };
        Self {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            ram_gib,
            kernel,
            date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            git_commit: git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into()),
            git_dirty: git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty()),
        }
    }
}

fn read_field(file: &str, key: &str, separator: char) -> Option<String> {
    std::fs::read_to_string(file).ok().and_then(|text| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_once(separator))
            .map(|(_, v)| v.trim().to_owned())
    })
}

/// `/proc/loadavg`: runnable tasks averaged over 1, 5 and 15 minutes.
pub fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut values = text.split_whitespace().map(|v| v.parse().unwrap_or(0.0));
    [(); 3].map(|()| values.next().unwrap_or(0.0))
}
