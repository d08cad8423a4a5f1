//! Sustained fan-out: one writer edits a document at a steady rate (20 edits/s for
//! 10 s) while 1,000 clients are subscribed to it, through the whole embedded app
//! (`PUT` → change log → poller → fan-out → `/ws`). Every subscriber must get every
//! version exactly once and in order; frames missed are counted, not estimated.
//!
//! The floor: the bare broadcast server sending the same frames at the same rate to
//! the same number of clients.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tests::token_for;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::Message;

use super::Mode;
use super::delivery::with_version;
use super::live::{self, Arrival, Tally};
use super::notifications::{put, shared_document};
use crate::bare::{self, BareServer};
use crate::report::{Case, Kind, Scenario};
use crate::stats::{Latency, signed_ms};

pub const FLOOR: &str = "floor-sustained-broadcast";

/// How long a subscriber may lag behind the last edit before its missing frames count
/// as missed.
const GRACE: Duration = Duration::from_secs(30);

#[derive(Clone, Copy)]
struct Load {
    subscribers: usize,
    per_second: u32,
    edits: usize,
}

fn load(mode: Mode) -> Load {
    mode.pick(
        Load {
            subscribers: 1000,
            per_second: 20,
            edits: 200,
        },
        Load {
            subscribers: 20,
            per_second: 20,
            edits: 10,
        },
    )
}

fn ticker(per_second: u32) -> tokio::time::Interval {
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / per_second);
    // A late edit is followed at once by the next, so the rate holds on average.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    ticker
}

fn method(load: Load, path: &str) -> String {
    format!(
        "{} edits at {} per second ({:.0} s) to one document with {} subscribers: {path}. \
         Latency from the moment each edit was {}, signed; frames/s over the whole run, \
         from the first edit to the last frame read. A frame that has not arrived {} s \
         after the last edit counts as missed.",
        load.edits,
        load.per_second,
        load.edits as f64 / f64::from(load.per_second),
        load.subscribers,
        if path.starts_with("bare") {
            "broadcast"
        } else {
            "acknowledged (PUT answered)"
        },
        GRACE.as_secs()
    )
}

pub async fn floor(mode: Mode, template: &Value) -> anyhow::Result<Scenario> {
    let load = load(mode);
    let server = BareServer::start(Message::text("")).await?;
    let sockets = live::subscribers(&server.url(), bare::SUBSCRIBE, load.subscribers).await?;
    let (give_up, readers) = spawn_readers(sockets, load.edits as u64 + 1);
    let payloads: Vec<Message> = (0..load.edits)
        .map(|n| Message::text(with_version(template, n as u64 + 2)))
        .collect();
    let mut ticker = ticker(load.per_second);
    let mut sent = Vec::with_capacity(load.edits);
    let started = Instant::now();
    for payload in payloads {
        ticker.tick().await;
        sent.push(Instant::now());
        server.broadcast(payload);
    }
    let writing = started.elapsed();
    let arrivals = gather(give_up, readers).await;
    let case = summarize(
        "bare broadcast".into(),
        load,
        &sent,
        started,
        writing,
        &arrivals,
    );
    Ok(Scenario {
        name: FLOOR.into(),
        kind: Kind::Floor,
        title: "Floor: sustained bare WebSocket broadcast".into(),
        method: method(load, "bare tokio-tungstenite broadcast of the same frames"),
        floor: None,
        load_average: 0.0,
        seconds: 0.0,
        cases: vec![case],
        notes: vec![],
    })
}

pub async fn run(mode: Mode, floor: &Scenario) -> anyhow::Result<Scenario> {
    let load = load(mode);
    let app = super::crowd_app().await;
    let http = reqwest::Client::new();
    let id = shared_document(&app, &http).await?;
    let url = format!("ws://{}/ws?token={}", app.addr, token_for("bob"));
    let subscribe = json!({"action": "subscribe", "documentId": id}).to_string();
    let sockets = live::subscribers(&url, &subscribe, load.subscribers).await?;
    let (give_up, readers) = spawn_readers(sockets, load.edits as u64 + 1);
    let ann = token_for("ann");
    let mut ticker = ticker(load.per_second);
    let mut acknowledged = Vec::with_capacity(load.edits);
    let started = Instant::now();
    for n in 0..load.edits {
        ticker.tick().await;
        put(&app, &http, &ann, &id, n as u64 + 1, n).await?;
        acknowledged.push(Instant::now());
    }
    let writing = started.elapsed();
    let arrivals = gather(give_up, readers).await;
    app.stop().await;
    let mut case = summarize(
        "docfan REST → /ws".into(),
        load,
        &acknowledged,
        started,
        writing,
        &arrivals,
    );
    if let Some(f) = floor.cases.first() {
        case.compare_with(f);
    }
    Ok(Scenario {
        name: "sustained".into(),
        kind: Kind::Docfan,
        title: "Sustained fan-out to many subscribers".into(),
        method: method(
            load,
            "PUT → change log → poller → fan-out → `/ws` of the whole app",
        ),
        floor: Some(FLOOR.into()),
        load_average: 0.0,
        seconds: 0.0,
        cases: vec![case],
        notes: vec![],
    })
}

type Readers = Vec<tokio::task::JoinHandle<Vec<Arrival>>>;

fn spawn_readers(sockets: Vec<live::Socket>, last: u64) -> (watch::Sender<bool>, Readers) {
    let (give_up, told) = watch::channel(false);
    let readers = sockets
        .into_iter()
        .map(|socket| tokio::spawn(live::read_until(socket, last, told.clone())))
        .collect();
    (give_up, readers)
}

/// Every subscriber's arrivals, once each has the last version or [`GRACE`] has passed.
async fn gather(give_up: watch::Sender<bool>, readers: Readers) -> Vec<Vec<Arrival>> {
    let deadline = tokio::spawn(async move {
        tokio::time::sleep(GRACE).await;
        let _ = give_up.send(true);
    });
    let mut all = Vec::with_capacity(readers.len());
    for reader in readers {
        all.push(reader.await.unwrap_or_default());
    }
    deadline.abort();
    all
}

/// `anchors[i]` is when version `i + 2` was sent or acknowledged.
fn summarize(
    label: String,
    load: Load,
    anchors: &[Instant],
    started: Instant,
    writing: Duration,
    arrivals: &[Vec<Arrival>],
) -> Case {
    let expected: Vec<u64> = (0..anchors.len() as u64).map(|i| i + 2).collect();
    let mut tally = Tally::default();
    let mut latencies = Vec::new();
    let mut last_read = started;
    for subscriber in arrivals {
        tally.add(subscriber, &expected);
        for (version, at) in subscriber {
            if let Some(anchor) = version.checked_sub(2).and_then(|i| anchors.get(i as usize)) {
                latencies.push(signed_ms(*anchor, *at));
            }
            last_read = last_read.max(*at);
        }
    }
    let window = last_read.duration_since(started).as_secs_f64().max(1e-9);
    let frames_per_second = tally.received as f64 / window;
    let latency = Latency::of(latencies);
    println!(
        "  {label:<24} {frames_per_second:>8.0} frames/s  received {} of {}  missed {}  \
         p50 {:.2} ms  p99 {:.2} ms",
        tally.received,
        expected.len() * arrivals.len(),
        tally.missed,
        latency.p50,
        latency.p99
    );
    Case::new(label)
        .param("subscribers", load.subscribers)
        .param("edits_per_second", load.per_second)
        .param("edits", load.edits)
        .throughput(frames_per_second, "frames/s")
        .latency(latency)
        .figure(
            "edits_per_second_achieved",
            anchors.len() as f64 / writing.as_secs_f64(),
        )
        .figure("frames_expected", (expected.len() * arrivals.len()) as f64)
        .figure("frames_received", tally.received as f64)
        .figure("frames_missed", tally.missed as f64)
        .figure("frames_out_of_order_or_twice", tally.unexpected as f64)
}
