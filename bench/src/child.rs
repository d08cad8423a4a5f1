//! Servers in child processes, so their memory can be read apart from the clients'.
//!
//! The bench binary runs them itself: `docfan-bench docfan serve …` is `docfan serve`
//! (the same command code, in this build profile) and `docfan-bench bare-server …` is
//! the bare WebSocket broadcast server of [`crate::bare`]. So `cargo run -p
//! docfan-bench` needs no other binary built first.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// The most connections one user may hold in a benchmark's server: the subscribers of a
/// scenario are all one user's ("bob"), up to 10,000 of them, far past the per-user cap
/// of a real server (16 by default).
pub const CROWD: usize = 1_000_000;

/// The first argument that makes the bench binary `docfan`.
pub const DOCFAN: &str = "docfan";
/// The first argument that makes the bench binary the bare broadcast server.
pub const BARE_SERVER: &str = "bare-server";

/// A server running in a child process, killed when dropped.
pub struct ChildServer {
    pub addr: SocketAddr,
    child: Child,
}

impl ChildServer {
    /// `docfan serve` over `data_dir`, signing with the test secret; waits for
    /// `/healthz`.
    pub async fn docfan(data_dir: &Path) -> anyhow::Result<Self> {
        let addr = free_addr()?;
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args([DOCFAN, "serve", "--listen", &addr.to_string(), "--data-dir"])
            .arg(data_dir)
            .env(
                "DOCFAN_JWT_SECRET",
                std::str::from_utf8(tests::TEST_SECRET).context("the test secret is ASCII")?,
            )
            .env("RUST_LOG", "warn")
            // Every held connection is bob's.
            .env("DOCFAN_WS_MAX_CONNECTIONS_PER_USER", CROWD.to_string())
            // The writers are all ann, typing faster than one person: the per-user
            // request limit is not what is measured.
            .env("DOCFAN_RATE_LIMIT_PER_SECOND", CROWD.to_string())
            .env("DOCFAN_RATE_LIMIT_BURST", CROWD.to_string());
        let server = Self::spawn(command, addr)?;
        let client = reqwest::Client::new();
        for _ in 0..400 {
            if let Ok(r) = client.get(format!("http://{addr}/healthz")).send().await
                && r.status().is_success()
            {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("docfan did not become ready on {addr}")
    }

    /// The bare broadcast server; `payload_bytes` is the size of what it broadcasts.
    pub async fn bare(payload_bytes: usize) -> anyhow::Result<Self> {
        let addr = free_addr()?;
        let mut command = Command::new(std::env::current_exe()?);
        command.args([
            BARE_SERVER,
            "--listen",
            &addr.to_string(),
            "--payload-bytes",
            &payload_bytes.to_string(),
        ]);
        let server = Self::spawn(command, addr)?;
        for _ in 0..400 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the bare server did not listen on {addr}")
    }

    fn spawn(mut command: Command, addr: SocketAddr) -> anyhow::Result<Self> {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting a child server")?;
        Ok(Self { addr, child })
    }

    /// The child's process id (`None` once it has exited).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The child's resident memory, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        self.child.id().map_or(0, rss_bytes)
    }

    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// Resident memory of a process, from /proc.
pub fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// A process's resident memory by kind, in bytes, from /proc: anonymous (the heap),
/// file-backed and shared (SQLite's WAL index is a shared mapping).
pub fn rss_parts(pid: u32) -> (u64, u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("RssAnon:"), field("RssFile:"), field("RssShmem:"))
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// The soft open-files limit of this process (its children inherit it).
pub fn open_files_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX)
}
