//! `docfan serve` as a child process, for tests that kill it (SIGKILL) and restart it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::TEST_SECRET;

/// The `docfan` binary built alongside the test binaries (`cargo test` at the workspace
/// root builds it; `cargo build -p api` does too).
pub fn docfan_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/docfan
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executables live in target/<profile>/deps");
    let binary = profile_dir.join(format!("docfan{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "{} is missing: run the tests from the workspace root (`cargo test`) or `cargo build -p api` first",
        binary.display()
    );
    binary
}

/// A running `docfan serve` child.
pub struct ChildServer {
    pub addr: SocketAddr,
    pub base: String,
    child: Child,
}

impl ChildServer {
    /// Starts `docfan serve` over `data_dir` on a free port and waits until it answers.
    pub async fn start(data_dir: &Path) -> Self {
        Self::start_with_env(data_dir, &[]).await
    }

    /// As [`start`](Self::start), with extra environment variables.
    pub async fn start_with_env(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let mut command = Command::new(docfan_binary());
        command
            .arg("serve")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(data_dir)
            .env(
                "DOCFAN_JWT_SECRET",
                std::str::from_utf8(TEST_SECRET).expect("ascii"),
            )
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().expect("docfan starts");
        let server = Self {
            addr,
            base: format!("http://{addr}"),
            child,
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = client.get(format!("{}/healthz", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("docfan did not become ready on {}", self.addr);
    }

    /// The child's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGKILL: no shutdown code runs.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("kill");
        let _ = self.child.wait().await;
    }

    /// SIGTERM, then waits for a graceful exit; returns whether it exited successfully.
    pub async fn terminate(mut self) -> bool {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        match tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await {
            Ok(Ok(status)) => status.success(),
            _ => false,
        }
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Runs `docfan <args>` to its end, without docfan's variables from the test's
/// environment (so only the arguments say where the data is).
pub async fn run_docfan(args: &[&str]) -> std::process::Output {
    let mut command = Command::new(docfan_binary());
    command
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for name in [
        "DOCFAN_JWT_SECRET",
        "DOCFAN_DATA_DIR",
        "DOCFAN_LISTEN",
        "DOCFAN_URL",
        "DOCFAN_BACKEND",
    ] {
        command.env_remove(name);
    }
    tokio::time::timeout(Duration::from_secs(300), command.output())
        .await
        .expect("docfan ends")
        .expect("docfan runs")
}
