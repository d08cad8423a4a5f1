//! Held WebSocket connections: N subscribed connections (10,000) to a `docfan serve`
//! child process, its resident memory read from /proc before and after (bytes per held
//! connection), then one edit that must reach every connection.
//!
//! The floor: the same N idle connections to the bare tokio-tungstenite server in a
//! child process, and one broadcast to all of them.

use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tests::token_for;
use tokio_tungstenite::tungstenite::Message;

use super::Mode;
use super::live::{self, Socket};
use crate::bare;
use crate::child::{ChildServer, open_files_limit};
use crate::report::{Case, Kind, Scenario};

pub const FLOOR: &str = "floor-held-connections";

/// Connections opened at once.
const OPENING: usize = 200;

fn connections(mode: Mode) -> usize {
    let wanted = mode.pick(10_000, 200);
    // Each connection is one descriptor in this process (the server has its own limit).
    let limit = open_files_limit().saturating_sub(256) as usize;
    wanted.min(limit)
}

struct Held {
    opened: Duration,
    before: u64,
    after: u64,
    delivered_to: usize,
    delivered_in: Duration,
}

impl Held {
    fn case(&self, label: &str, n: usize) -> Case {
        let per_connection = self.after.saturating_sub(self.before) as f64 / n as f64;
        println!(
            "  {label:<28} {n} connections in {:.1} s, {per_connection:.0} bytes each, one \
             message to {} in {:.2} s",
            self.opened.as_secs_f64(),
            self.delivered_to,
            self.delivered_in.as_secs_f64()
        );
        Case::new(label)
            .param("connections", n)
            .throughput(n as f64 / self.opened.as_secs_f64(), "connections opened/s")
            .figure("bytes_per_connection", per_connection)
            .figure("server_rss_before_mib", self.before as f64 / 1048576.0)
            .figure("server_rss_after_mib", self.after as f64 / 1048576.0)
            .figure("delivered_to", self.delivered_to as f64)
            .figure("delivered_in_s", self.delivered_in.as_secs_f64())
    }
}

/// How long a server is left to settle before its memory is read: longer than the work
/// the document's creation leaves for later (docfan commits its search index every
/// second while nobody searches), so that none of it falls between the two readings.
fn settle(mode: Mode) -> Duration {
    mode.pick(Duration::from_secs(3), Duration::from_millis(200))
}

pub async fn floor(mode: Mode, payload_bytes: usize) -> anyhow::Result<Scenario> {
    let n = connections(mode);
    let server = ChildServer::bare(payload_bytes).await?;
    tokio::time::sleep(settle(mode)).await;
    let before = server.rss_bytes();
    let url = format!("ws://{}/", server.addr);
    let started = Instant::now();
    let mut sockets = open(&url, bare::SUBSCRIBE, n).await?;
    let opened = started.elapsed();
    tokio::time::sleep(settle(mode)).await;
    let after = server.rss_bytes();
    let delivered_started = Instant::now();
    sockets[0].send(Message::text(bare::BROADCAST)).await?;
    let delivered_to = everyone_gets(sockets, "document.updated").await;
    let held = Held {
        opened,
        before,
        after,
        delivered_to,
        delivered_in: delivered_started.elapsed(),
    };
    server.kill().await;
    if delivered_to != n {
        bail!("the bare broadcast reached {delivered_to} of {n} connections");
    }
    Ok(Scenario {
        name: FLOOR.into(),
        kind: Kind::Floor,
        title: "Floor: held bare WebSocket connections".into(),
        method: format!(
            "{n} connections to the bare tokio-tungstenite server in a child process (4 KiB \
             initial socket buffers, like docfan's), its resident memory read from /proc \
             before and after; then one {payload_bytes}-byte broadcast to all."
        ),
        floor: None,
        load_average: 0.0,
        seconds: 0.0,
        cases: vec![held.case("bare tokio-tungstenite", n)],
        notes: vec![],
    })
}

pub async fn run(mode: Mode, floor: &Scenario) -> anyhow::Result<Scenario> {
    let n = connections(mode);
    let dir = tempfile::tempdir()?;
    let server = ChildServer::docfan(dir.path()).await?;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let id = super::notifications::create_shared(&http, &base, "Held", "v1").await?;
    tokio::time::sleep(settle(mode)).await;
    let before = server.rss_bytes();

    let url = format!("ws://{}/ws?token={}", server.addr, token_for("bob"));
    let subscribe = json!({"action": "subscribe", "documentId": id}).to_string();
    let started = Instant::now();
    let sockets = open(&url, &subscribe, n).await?;
    let opened = started.elapsed();
    tokio::time::sleep(settle(mode)).await;
    let after = server.rss_bytes();

    // One edit reaches every held connection.
    let delivered_started = Instant::now();
    let put = http
        .put(format!("{base}/documents/{id}"))
        .bearer_auth(token_for("ann"))
        .header("If-Match", "\"1\"")
        .json(&json!({"title": "Held", "body": "v2"}))
        .send()
        .await?;
    anyhow::ensure!(put.status() == 200, "PUT: {}", put.status());
    let delivered_to = everyone_gets(sockets, "document.updated").await;
    let held = Held {
        opened,
        before,
        after,
        delivered_to,
        delivered_in: delivered_started.elapsed(),
    };
    server.kill().await;
    if delivered_to != n {
        bail!("the edit reached {delivered_to} of {n} held connections");
    }
    let mut case = held.case("docfan serve", n);
    if let Some(f) = floor.cases.first() {
        case.compare_with(f);
    }
    Ok(Scenario {
        name: "connections".into(),
        kind: Kind::Docfan,
        title: "Held WebSocket connections".into(),
        method: format!(
            "{n} subscribed connections to `docfan serve` in a child process (the bench \
             binary runs the same command code, in this build profile), its resident memory \
             read from /proc before and after; then one `PUT` whose frame must reach all."
        ),
        floor: Some(FLOOR.into()),
        load_average: 0.0,
        seconds: 0.0,
        cases: vec![case],
        notes: vec![],
    })
}

/// Opens `n` connections, [`OPENING`] at a time, each subscribed.
async fn open(url: &str, subscribe: &str, n: usize) -> anyhow::Result<Vec<Socket>> {
    futures_util::stream::iter(0..n)
        .map(|_| async move {
            let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
            socket.send(Message::text(subscribe)).await?;
            live::wait_subscribed(&mut socket).await?;
            anyhow::Ok(socket)
        })
        .buffer_unordered(OPENING)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// How many of `sockets` read a frame containing `kind` within a minute.
async fn everyone_gets(sockets: Vec<Socket>, kind: &str) -> usize {
    futures_util::stream::iter(sockets)
        .map(|mut socket| async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                match tokio::time::timeout_at(deadline, socket.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) if t.as_str().contains(kind) => return 1,
                    Ok(Some(Ok(_))) => continue,
                    _ => return 0,
                }
            }
        })
        .buffer_unordered(1000)
        .collect::<Vec<usize>>()
        .await
        .into_iter()
        .sum()
}
