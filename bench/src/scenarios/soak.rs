//! Soak: writers typing as fast as the server answers, for minutes, while a thousand
//! subscribers read every frame. `docfan serve` runs in a child process; four writers
//! ("ann") each type into a document of their own with `POST …/edits`, one edit
//! waiting for the previous answer; the subscribers ("bob") are spread evenly over the
//! four documents. A document grows to [`DOCUMENT_CHARS`] characters, then keeps that
//! size: each edit deletes its first character as it types one at the end. Sampled
//! every few seconds: each consumer's lag (its oldest unprocessed change, from
//! `/metrics`) and the server's resident memory. After the writers stop: how long until
//! every consumer has caught up, and whether every subscriber got every version of its
//! document once, in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use tests::token_for;
use tokio_tungstenite::tungstenite::Message;

use super::live::{self, Socket};
use super::{Mode, consumer_lags, notifications};
use crate::child::{ChildServer, open_files_limit, rss_parts};
use crate::report::{Case, Kind, Scenario};

const WRITERS: usize = 4;

/// The size the documents grow to (in about 15 s) and then keep, so the run is a steady
/// state, as a long-lived document being edited is, rather than documents that grow
/// without end (the memory of records and frames the server keeps by count would grow
/// with them).
const DOCUMENT_CHARS: u64 = 2_000;

/// How often the lags and the memory are read.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// How long, after the writers stop, the consumers and subscribers may take to catch
/// up before the run counts what is missing.
const GRACE: Duration = Duration::from_secs(60);

/// (subscribers, how long the writers write).
fn load(mode: Mode) -> (usize, Duration) {
    let most = open_files_limit().saturating_sub(256) as usize;
    let (subscribers, duration) = mode.pick(
        (1000, Duration::from_secs(120)),
        (20, Duration::from_secs(5)),
    );
    (subscribers.min(most), duration)
}

/// One subscriber's view: the versions it read, checked as they come.
#[derive(Default)]
struct Seen {
    /// The highest version read so far.
    last: AtomicU64,
    /// Frames read.
    frames: AtomicU64,
    /// Frames whose version was not the one after the last (a gap, a duplicate or a
    /// frame out of order).
    unexpected: AtomicU64,
}

fn version_of(text: &str) -> Option<u64> {
    let at = text.find("\"version\":")? + "\"version\":".len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn read(mut socket: Socket, seen: Arc<Seen>, first: u64) {
    seen.last.store(first, Ordering::SeqCst);
    tokio::spawn(async move {
        while let Some(Ok(message)) = socket.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            if !text.as_str().contains("\"document.updated\"") {
                continue;
            }
            let Some(version) = version_of(text.as_str()) else {
                continue;
            };
            seen.frames.fetch_add(1, Ordering::Relaxed);
            let last = seen.last.swap(version, Ordering::SeqCst);
            if version != last + 1 {
                seen.unexpected.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
}

/// A writer: types one character after another into `id` until `stop`; returns the
/// last version acknowledged.
async fn write(
    base: String,
    id: String,
    until: Instant,
    acknowledged: Arc<AtomicUsize>,
) -> anyhow::Result<u64> {
    let http = reqwest::Client::new();
    let ann = token_for("ann");
    let mut version = 1u64;
    while Instant::now() < until {
        if version <= DOCUMENT_CHARS {
            notifications::type_one(&base, &http, &ann, &id, version).await?;
        } else {
            let ops = json!([-1, DOCUMENT_CHARS - 1, "x"]);
            notifications::edit(&base, &http, &ann, &id, version, ops).await?;
        }
        version += 1;
        acknowledged.fetch_add(1, Ordering::Relaxed);
    }
    Ok(version)
}

pub async fn run(mode: Mode) -> anyhow::Result<Scenario> {
    let (subscribers, duration) = load(mode);
    let dir = tempfile::tempdir()?;
    let server = ChildServer::docfan(dir.path()).await?;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let url = format!("ws://{}/ws?token={}", server.addr, token_for("bob"));
    let mut documents = Vec::new();
    let mut views = Vec::new();
    for n in 0..WRITERS {
        let id = notifications::create_shared(&http, &base, &format!("Soak {n}"), "").await?;
        let subscribe = json!({"action": "subscribe", "documentId": id}).to_string();
        let share = subscribers / WRITERS + usize::from(n < subscribers % WRITERS);
        let mut mine = Vec::new();
        for socket in live::subscribers(&url, &subscribe, share).await? {
            let seen = Arc::new(Seen::default());
            read(socket, seen.clone(), 1);
            mine.push(seen);
        }
        views.push(mine);
        documents.push(id);
    }

    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let rss_at_start = server.rss_bytes();
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let until = started + duration;
    let writers: Vec<_> = documents
        .iter()
        .map(|id| tokio::spawn(write(base.clone(), id.clone(), until, acknowledged.clone())))
        .collect();
    // While the writers write: the lags and the memory, every few seconds.
    let mut worst_lag: Vec<(String, f64)> = Vec::new();
    let mut rss = Vec::new();
    while Instant::now() < until {
        tokio::time::sleep(SAMPLE_EVERY.min(until.saturating_duration_since(Instant::now()))).await;
        for (consumer, lag) in consumer_lags(&http, &base).await.unwrap_or_default() {
            match worst_lag.iter_mut().find(|(c, _)| *c == consumer) {
                Some((_, worst)) => *worst = worst.max(lag),
                None => worst_lag.push((consumer, lag)),
            }
        }
        rss.push((started.elapsed().as_secs_f64(), server.rss_bytes()));
        if let Some(pid) = server.pid() {
            let (anon, file, shmem) = rss_parts(pid);
            println!(
                "  {:>5.0} s: {} edits, RSS {:.1} MiB (heap {:.1}, files {:.1}, shared {:.1})",
                started.elapsed().as_secs_f64(),
                acknowledged.load(Ordering::Relaxed),
                mib(server.rss_bytes()),
                mib(anon),
                mib(file),
                mib(shmem)
            );
        }
    }
    let mut last_versions = Vec::new();
    for writer in writers {
        last_versions.push(writer.await??);
    }
    let writing = started.elapsed();
    let writes = acknowledged.load(Ordering::Relaxed);

    // Catching up: every consumer at lag 0, every subscriber at its document's last
    // version.
    let stopped = Instant::now();
    let mut consumers_caught_up = None;
    let mut subscribers_caught_up = None;
    while stopped.elapsed() < GRACE
        && (consumers_caught_up.is_none() || subscribers_caught_up.is_none())
    {
        if consumers_caught_up.is_none()
            && let Ok(now) = consumer_lags(&http, &base).await
            && !now.is_empty()
            && now.iter().all(|(_, lag)| *lag == 0.0)
        {
            consumers_caught_up = Some(stopped.elapsed());
        }
        let all_read = views.iter().zip(&last_versions).all(|(mine, last)| {
            mine.iter()
                .all(|seen| seen.last.load(Ordering::SeqCst) >= *last)
        });
        if subscribers_caught_up.is_none() && all_read {
            subscribers_caught_up = Some(stopped.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_at_end = server.rss_bytes();
    server.kill().await;

    let mut expected = 0u64;
    let mut received = 0u64;
    let mut unexpected = 0u64;
    for (mine, last) in views.iter().zip(&last_versions) {
        for seen in mine {
            expected += last - 1;
            received += seen.frames.load(Ordering::Relaxed);
            unexpected += seen.unexpected.load(Ordering::Relaxed);
        }
    }
    let missed = expected.saturating_sub(received);
    let writes_per_second = writes as f64 / writing.as_secs_f64();
    // Memory: the first sample, the one at half-time, the last one, and the highest of
    // the second half (flat: the last ones no higher than at half-time).
    let rss_first = rss.first().map_or(rss_at_start, |(_, b)| *b);
    let rss_last = rss.last().map_or(rss_at_end, |(_, b)| *b);
    let half = duration.as_secs_f64() / 2.0;
    let second_half: Vec<u64> = rss
        .iter()
        .filter(|(at, _)| *at >= half)
        .map(|(_, b)| *b)
        .collect();
    let rss_half = second_half.first().copied().unwrap_or(rss_last);
    let rss_second_half_max = second_half.iter().copied().max().unwrap_or(rss_last);
    let secs = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64());
    println!(
        "  {writes} edits acknowledged in {:.0} s ({writes_per_second:.0}/s), {subscribers} subscribers: \
         {received} of {expected} frames, missed {missed}, out of order or twice {unexpected}",
        writing.as_secs_f64()
    );
    for (consumer, lag) in &worst_lag {
        println!("  worst {consumer} lag while writing: {lag:.3} s");
    }
    println!(
        "  caught up after the writers stopped: consumers {:.2} s, subscribers {:.2} s",
        secs(consumers_caught_up),
        secs(subscribers_caught_up)
    );
    println!(
        "  RSS: {:.1} MiB before the writers, {:.1} MiB at the first sample, {:.1} MiB at half-time, \
         {:.1} MiB at the last (second half's highest {:.1}), {:.1} MiB at the end",
        mib(rss_at_start),
        mib(rss_first),
        mib(rss_half),
        mib(rss_last),
        mib(rss_second_half_max),
        mib(rss_at_end)
    );
    let mut case = Case::new(format!(
        "{WRITERS} writers, {subscribers} subscribers, {:.0} s",
        writing.as_secs_f64()
    ))
    .param("writers", WRITERS)
    .param("subscribers", subscribers)
    .param("seconds", writing.as_secs_f64().round())
    .throughput(writes_per_second, "edits/s")
    .figure("frames_expected", expected as f64)
    .figure("frames_received", received as f64)
    .figure("frames_missed", missed as f64)
    .figure("frames_out_of_order_or_twice", unexpected as f64)
    .figure("consumers_caught_up_s", secs(consumers_caught_up))
    .figure("subscribers_caught_up_s", secs(subscribers_caught_up))
    .figure("rss_start_mib", mib(rss_at_start))
    .figure("rss_first_sample_mib", mib(rss_first))
    .figure("rss_half_time_mib", mib(rss_half))
    .figure("rss_second_half_max_mib", mib(rss_second_half_max))
    .figure("rss_last_sample_mib", mib(rss_last));
    for (consumer, lag) in &worst_lag {
        case = case.figure(&format!("worst_{consumer}_lag_s"), *lag);
    }
    Ok(Scenario {
        name: "soak".into(),
        kind: Kind::Docfan,
        title: "Soak: writers as fast as they can, a thousand subscribers".into(),
        method: format!(
            "`docfan serve` in a child process; {WRITERS} writers each typing one character \
             at a time with `POST /documents/{{id}}/edits` into a document of their own, each \
             edit waiting for the previous answer, for {} s; a document grows to \
             {DOCUMENT_CHARS} characters, then each edit also deletes its first one, so it \
             keeps that size; the subscribers spread evenly \
             over the {WRITERS} documents, reading every frame. Every {} s: each consumer's \
             lag (`docfan_consumer_lag_seconds`) and the server's RSS. After the writers \
             stop: how long until every lag is 0 and every subscriber has its document's \
             last version (at most {} s), then the frames counted: each subscriber must \
             read every version once, in order. No floor: the targets are absolute (lag \
             under 1 s, nothing missed, RSS flat; the memory at half-time and the second \
             half's highest show whether it still grows once warm).",
            duration.as_secs(),
            SAMPLE_EVERY.as_secs(),
            GRACE.as_secs()
        ),
        floor: None,
        load_average: 0.0,
        seconds: 0.0,
        cases: vec![case],
        notes: vec![],
    })
}
