//! What the live-delivery scenarios share, docfan's and the bare floor's alike: real
//! WebSocket clients over loopback in this process, each reading frames and timing
//! every `document.updated` it gets, and sequential edits measured once all
//! subscribers have the previous one.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::stats::{Latency, signed_ms};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a subscriber may take to get a frame before the run fails.
const PATIENCE: Duration = Duration::from_secs(60);

/// A frame of `document.updated`: its version and when it was read.
pub type Arrival = (u64, Instant);

/// Opens `n` connections to `url`, sends `subscribe` on each, and waits until each has
/// answered with a frame that mentions `subscribed`.
pub async fn subscribers(url: &str, subscribe: &str, n: usize) -> anyhow::Result<Vec<Socket>> {
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        let (mut socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        socket.send(Message::text(subscribe)).await?;
        sockets.push(socket);
    }
    for socket in &mut sockets {
        wait_subscribed(socket).await?;
    }
    Ok(sockets)
}

pub async fn wait_subscribed(socket: &mut Socket) -> anyhow::Result<()> {
    loop {
        match tokio::time::timeout(PATIENCE, socket.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.as_str().contains("subscribed") => return Ok(()),
            Ok(Some(Ok(_))) => continue,
            other => bail!("subscribing failed: {other:?}"),
        }
    }
}

/// Reads every socket in its own task; each `document.updated` frame is timed as soon
/// as it is read, then parsed for its version.
pub fn read_updates(sockets: Vec<Socket>) -> mpsc::UnboundedReceiver<Arrival> {
    let (tx, rx) = mpsc::unbounded_channel();
    for mut socket in sockets {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = socket.next().await {
                if let Message::Text(text) = message {
                    let at = Instant::now();
                    let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
                        continue;
                    };
                    if frame["type"] == "document.updated"
                        && let Some(version) = frame["version"].as_u64()
                        && tx.send((version, at)).is_err()
                    {
                        return;
                    }
                }
            }
        });
    }
    rx
}

/// Latencies of sequential edits: every (edit, subscriber) pair and, per edit, the
/// last subscriber to get it.
#[derive(Default)]
pub struct Sequential {
    pub each_ms: Vec<f64>,
    pub last_ms: Vec<f64>,
    pub frames: usize,
}

impl Sequential {
    /// Waits until all `subscribers` have `version`, timing each from `anchor`.
    pub async fn collect(
        &mut self,
        received: &mut mpsc::UnboundedReceiver<Arrival>,
        subscribers: usize,
        version: u64,
        anchor: Instant,
    ) -> anyhow::Result<()> {
        let mut slowest = f64::MIN;
        for _ in 0..subscribers {
            let (got, at) = tokio::time::timeout(PATIENCE, received.recv())
                .await
                .context("every subscriber gets the edit")?
                .context("the readers stopped")?;
            anyhow::ensure!(got == version, "got version {got}, expected {version}");
            let ms = signed_ms(anchor, at);
            self.each_ms.push(ms);
            slowest = slowest.max(ms);
            self.frames += 1;
        }
        self.last_ms.push(slowest);
        Ok(())
    }

    pub fn case(
        self,
        label: String,
        subscribers: usize,
        edits: usize,
        elapsed: Duration,
    ) -> crate::report::Case {
        let each = Latency::of(self.each_ms);
        let last = Latency::of(self.last_ms);
        println!(
            "  {label:<44} p50 {:>7.2} ms  p99 {:>7.2} ms  last p50 {:>7.2} ms  last p99 {:>7.2} ms",
            each.p50, each.p99, last.p50, last.p99
        );
        crate::report::Case::new(label)
            .param("subscribers", subscribers)
            .param("edits", edits)
            .throughput(self.frames as f64 / elapsed.as_secs_f64(), "frames/s")
            .latency(each)
            .last_subscriber(last)
    }
}

/// Each subscriber's frames, checked against the versions that were sent: how many
/// arrived, how many are missing, and how many came twice or out of order.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub received: usize,
    pub missed: usize,
    pub unexpected: usize,
}

impl Tally {
    /// `arrivals` of one subscriber against the `expected` versions, in order.
    pub fn add(&mut self, arrivals: &[Arrival], expected: &[u64]) {
        let mut next = 0;
        for (version, _) in arrivals {
            match expected[next..].iter().position(|v| v == version) {
                Some(skipped) => {
                    self.missed += skipped;
                    self.received += 1;
                    next += skipped + 1;
                }
                None => self.unexpected += 1,
            }
        }
        self.missed += expected.len() - next;
    }
}

/// Reads one socket until it has `last`, or until told to give up; every
/// `document.updated` frame with its arrival time.
pub async fn read_until(
    mut socket: Socket,
    last: u64,
    mut give_up: watch::Receiver<bool>,
) -> Vec<Arrival> {
    let mut arrivals = Vec::new();
    loop {
        let message = tokio::select! {
            message = socket.next() => message,
            _ = give_up.wait_for(|g| *g) => return arrivals,
        };
        match message {
            Some(Ok(Message::Text(text))) => {
                let at = Instant::now();
                let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                if frame["type"] == "document.updated"
                    && let Some(version) = frame["version"].as_u64()
                {
                    arrivals.push((version, at));
                    if version >= last {
                        return arrivals;
                    }
                }
            }
            Some(Ok(_)) => continue,
            _ => return arrivals,
        }
    }
}
