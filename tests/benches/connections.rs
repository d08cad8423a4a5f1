//! Held WebSocket connections: opens N subscribed connections (default 10,000; set
//! `DOCFAN_BENCH_CONNECTIONS`) to a `docfan serve` child process, measures the server's
//! resident memory before and after (bytes per held connection), then checks that one
//! edit reaches every connection. Prints the figures and appends them to
//! `bench/results.md`.
//!
//! Run: `cargo build --release -p api && cargo bench -p tests --bench connections`
//! (needs an open-files limit above N for each process: `ulimit -n`).

use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tests::child::ChildServer;
use tests::machine::{append_results, describe};
use tests::token_for;
use tokio_tungstenite::tungstenite::Message;

/// Resident memory of a process, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    let n: usize = std::env::var("DOCFAN_BENCH_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let machine = describe();
    println!("machine: {machine}");
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start(dir.path()).await;
    let pid = server.pid().expect("the server runs");
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{}/documents", server.base))
        .bearer_auth(token_for("ann"))
        .json(&json!({"title": "Held", "body": "v1", "collaborators": {"bob": "viewer"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_bytes(pid);

    let url = format!("ws://{}/ws?token={}", server.addr, token_for("bob"));
    let started = Instant::now();
    let sockets: Vec<_> = futures_util::stream::iter(0..n)
        .map(|_| {
            let url = url.clone();
            let id = id.clone();
            async move {
                let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
                let subscribe = json!({"action": "subscribe", "documentId": id}).to_string();
                socket.send(Message::text(subscribe)).await.unwrap();
                loop {
                    match socket.next().await {
                        Some(Ok(Message::Text(t))) if t.as_str().contains("\"subscribed\"") => {
                            break;
                        }
                        Some(Ok(_)) => continue,
                        other => panic!("subscribe failed: {other:?}"),
                    }
                }
                socket
            }
        })
        .buffer_unordered(200)
        .collect()
        .await;
    let opened = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_bytes(pid);
    let per_connection = after.saturating_sub(before) as f64 / n as f64;

    // One edit reaches every held connection.
    let edit_started = Instant::now();
    let put = http
        .put(format!("{}/documents/{id}", server.base))
        .bearer_auth(token_for("ann"))
        .header("If-Match", "\"1\"")
        .json(&json!({"title": "Held", "body": "v2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let received: usize = futures_util::stream::iter(sockets)
        .map(|mut socket| async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                match tokio::time::timeout_at(deadline, socket.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) if t.as_str().contains("document.updated") => {
                        return 1;
                    }
                    Ok(Some(Ok(_))) => continue,
                    _ => return 0,
                }
            }
        })
        .buffer_unordered(1000)
        .collect::<Vec<usize>>()
        .await
        .into_iter()
        .sum();
    let delivered = edit_started.elapsed();
    server.kill().await;

    let lines = [
        format!("\n## Held WebSocket connections — {}\n", Utc::now().format("%Y-%m-%d %H:%M UTC")),
        format!("Machine: {machine}. `cargo bench -p tests --bench connections`: subscribed connections to a `docfan serve` child process (the binary of this build profile), its resident memory read from /proc before and after.\n"),
        "| connections | opened in s | server RSS before MiB | after MiB | bytes per connection | one edit delivered to | in s |".into(),
        "|---|---|---|---|---|---|---|".into(),
        format!(
            "| {n} | {:.1} | {:.1} | {:.1} | {:.0} | {received} | {:.2} |",
            opened.as_secs_f64(),
            before as f64 / 1048576.0,
            after as f64 / 1048576.0,
            per_connection,
            delivered.as_secs_f64()
        ),
    ];
    for line in &lines {
        println!("{line}");
    }
    append_results(&lines.join("\n"));
    assert_eq!(received, n, "not every held connection got the edit");
}
