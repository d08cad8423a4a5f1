//! Edit-to-notification latency through the whole embedded app: a REST `PUT` answered
//! 200 → the change's frame read by every subscribed WebSocket client, at 1, 100 and
//! 1,000 subscribers over loopback, against the real app (`TestApp`): the write goes
//! through the SQLite store and its change log, the in-process stream poller, the
//! fan-out's sinks, the notifier and `/ws`.
//!
//! Latencies are signed: a frame can arrive before the client has read the `PUT`'s
//! answer (the poller wakes on the commit, not on the HTTP response).
//!
//! Prints the figures and appends them to `bench/results.md`.
//! Run: `cargo bench -p tests --bench notifications`.

use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tests::machine::{append_results, describe, percentile};
use tests::{TestApp, token_for};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

const SUBSCRIBERS: [(usize, usize); 3] = [(1, 200), (100, 100), (1000, 30)];

fn ms_between(from: Instant, to: Instant) -> f64 {
    if to >= from {
        to.duration_since(from).as_secs_f64() * 1000.0
    } else {
        -(from.duration_since(to).as_secs_f64() * 1000.0)
    }
}

async fn run(subscribers: usize, edits: usize) -> String {
    let app = TestApp::spawn().await;
    let http = reqwest::Client::new();
    let base = app.base.clone();
    let ann = token_for("ann");
    let created: Value = http
        .post(format!("{base}/documents"))
        .bearer_auth(&ann)
        .json(&json!({"title": "Bench", "body": "v1", "collaborators": {"bob": "viewer"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();

    let (tx, mut received) = mpsc::unbounded_channel::<(u64, Instant)>();
    let url = format!("ws://{}/ws?token={}", app.addr, token_for("bob"));
    let mut sockets = Vec::new();
    for _ in 0..subscribers {
        let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        let subscribe = json!({"action": "subscribe", "documentId": id}).to_string();
        socket.send(Message::text(subscribe)).await.unwrap();
        sockets.push(socket);
    }
    let (ready_tx, mut ready) = mpsc::unbounded_channel::<()>();
    for mut socket in sockets {
        let tx = tx.clone();
        let ready_tx = ready_tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = socket.next().await {
                if let Message::Text(text) = message {
                    let at = Instant::now();
                    let frame: Value = serde_json::from_str(text.as_str()).unwrap();
                    match frame["type"].as_str() {
                        Some("subscribed") => {
                            let _ = ready_tx.send(());
                        }
                        Some("document.updated") => {
                            let _ = tx.send((frame["version"].as_u64().unwrap(), at));
                        }
                        _ => {}
                    }
                }
            }
        });
    }
    for _ in 0..subscribers {
        ready.recv().await.unwrap();
    }

    let mut each = Vec::with_capacity(subscribers * edits);
    let mut last = Vec::with_capacity(edits);
    for n in 0..edits {
        let version = n as u64 + 1;
        let response = http
            .put(format!("{base}/documents/{id}"))
            .bearer_auth(&ann)
            .header("If-Match", format!("\"{version}\""))
            .json(
                &json!({"title": "Bench", "body": format!("edit {n}: a short paragraph of text")}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let acknowledged = Instant::now();
        let mut slowest = f64::MIN;
        for _ in 0..subscribers {
            let (got, at) = tokio::time::timeout(Duration::from_secs(30), received.recv())
                .await
                .expect("every subscriber gets the edit")
                .unwrap();
            assert_eq!(got, version + 1);
            let ms = ms_between(acknowledged, at);
            each.push(ms);
            slowest = slowest.max(ms);
        }
        last.push(slowest);
    }
    each.sort_by(f64::total_cmp);
    last.sort_by(f64::total_cmp);
    format!(
        "| {subscribers} | {edits} | {:.2} | {:.2} | {:.2} | {:.2} |",
        percentile(&each, 50.0),
        percentile(&each, 99.0),
        percentile(&last, 50.0),
        percentile(&last, 99.0),
    )
}

#[tokio::main]
async fn main() {
    // `cargo test --benches` runs bench targets with `--test`: stay quick then.
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    let machine = describe();
    println!("machine: {machine}");
    let mut lines = vec![
        format!(
            "\n## Live delivery: REST write acknowledged → frame received — {}\n",
            Utc::now().format("%Y-%m-%d %H:%M UTC")
        ),
        format!(
            "Machine: {machine}. `cargo bench -p tests --bench notifications`: `PUT` \
             answered 200 → `document.updated` read, through the change log, the stream \
             poller, the fan-out and `/ws`; sequential edits; clients in the same process \
             over loopback. Signed: negative when the frame beat the HTTP answer.\n"
        ),
        "| subscribers | edits | p50 ms (each) | p99 ms (each) | p50 ms (last subscriber) | p99 ms (last subscriber) |".into(),
        "|---|---|---|---|---|---|".into(),
    ];
    for (subscribers, edits) in SUBSCRIBERS {
        let line = run(subscribers, edits).await;
        println!("{line}");
        lines.push(line);
    }
    append_results(&lines.join("\n"));
}
