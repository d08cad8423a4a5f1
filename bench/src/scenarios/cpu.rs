//! Server CPU per edit: the processor time a server process spends to take one edit
//! and put its frame on every subscriber's socket, read from /proc (user + system) over
//! a run of sequential edits, each waited for at every subscriber.
//!
//! - docfan: `docfan serve` in a child process; one character typed by "ann" with
//!   `POST /documents/{id}/edits` on a document shared with "bob", whose subscribed
//!   connections read the frame. Everything the server does for an edit is counted:
//!   HTTP, the durable commit and its change record, both consumers of the change log
//!   (the live frames, and search, audit and analysis with the analysis worker).
//! - floor: the bare tokio-tungstenite broadcast server in a child process sending a
//!   frame of the same size to as many connections, asked by one of them (`broadcast`).
//!
//! The clients run in this process: their CPU is not the server's.
//!
//! Both servers run side by side and make their edits in alternating rounds (the
//! floor's edits, then docfan's, and again), so that a change in the machine's load
//! during the run weighs on both alike. Each server's CPU is read over the same span,
//! from before the first round to a few seconds after the last: what an edit leaves for
//! later (docfan commits its search index every second while nobody searches, and
//! analyses a document once typing pauses) counts, wherever it falls.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tests::token_for;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

use super::live::{self, Socket};
use super::notifications;
use super::{Mode, count};
use crate::bare;
use crate::child::{ChildServer, open_files_limit};
use crate::report::{Case, Kind, Scenario};

pub const FLOOR: &str = "floor-cpu";

/// (subscribers, measured edits of each server).
fn sizes(mode: Mode) -> Vec<(usize, usize)> {
    // Both servers' subscribers are open at once, their client ends all in this process.
    let most = (open_files_limit().saturating_sub(256) / 2) as usize;
    mode.pick(vec![(1, 300), (1000, 300)], vec![(1, 20), (20, 10)])
        .into_iter()
        .map(|(n, edits)| (n.min(most), edits))
        .collect()
}

/// The measured edits of each server are made in this many rounds, alternating.
const ROUNDS: usize = 6;

/// Edits made before the measured ones: connections, caches and the index warm.
const WARM_UP: usize = 10;

/// Longer than any work an edit leaves for later (the index's commit while nobody
/// searches, 1 s; the analysis once typing pauses, 250 ms): waited before the measured
/// span, so the warm-up's work stays out of it, and before its end, so the measured
/// edits' work is in.
const SETTLE: Duration = Duration::from_secs(3);

/// CPU time (user + system) a process has used so far.
fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name (which may hold spaces) are space-separated;
    // utime and stime are the 14th and 15th fields of the whole line.
    let after_name = stat
        .rsplit_once(')')
        .context("a /proc stat line")?
        .1
        .split_whitespace()
        .collect::<Vec<_>>();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        Ok(after_name.get(i).context("a stat field")?.parse::<u64>()?)
    };
    // after_name[0] is the state (field 3): utime is field 14, stime field 15.
    let total = ticks(11)? + ticks(12)?;
    let per_second = clock_ticks_per_second();
    Ok(Duration::from_secs_f64(total as f64 / per_second as f64))
}

/// The time each thread of a process has run so far (`/proc/…/task/*/schedstat`, in
/// nanoseconds), by thread id, with the thread's name less any trailing number (the
/// numbered threads of a pool count as one).
fn thread_times(pid: u32) -> HashMap<u32, (String, Duration)> {
    let mut times = HashMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return times;
    };
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u32>().ok())
        else {
            continue;
        };
        let path = task.path();
        let (Ok(name), Ok(schedstat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("schedstat")),
        ) else {
            continue; // ended meanwhile
        };
        let Some(ran) = schedstat
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let name = name.trim().trim_end_matches(|c: char| c.is_ascii_digit());
        times.insert(tid, (name.to_owned(), Duration::from_nanos(ran)));
    }
    times
}

/// What each kind of thread ran between two readings of [`thread_times`]: a thread
/// started meanwhile counts whole; one that ended meanwhile is not there to read (its
/// time is in the process's total only).
fn ran_between(
    before: &HashMap<u32, (String, Duration)>,
    after: &HashMap<u32, (String, Duration)>,
) -> BTreeMap<String, Duration> {
    let mut ran: BTreeMap<String, Duration> = BTreeMap::new();
    for (tid, (name, now)) in after {
        let earlier = before.get(tid).map_or(Duration::ZERO, |(_, t)| *t);
        *ran.entry(name.clone()).or_default() += now.saturating_sub(earlier);
    }
    ran
}

/// The kernel's clock ticks per second for /proc times (`getconf CLK_TCK`).
fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// Counts every `document.updated` frame the sockets read (waking waiters on each), and
/// every text frame of any kind: a server's CPU is compared per frame it sent too, since
/// docfan sends more than the edits' frames (`analysis.completed` after a burst of them).
struct Frames {
    seen: AtomicUsize,
    all: AtomicUsize,
    arrived: Notify,
}

impl Frames {
    fn read(sockets: Vec<Socket>) -> Arc<Self> {
        let frames = Arc::new(Self {
            seen: AtomicUsize::new(0),
            all: AtomicUsize::new(0),
            arrived: Notify::new(),
        });
        for mut socket in sockets {
            let frames = Arc::clone(&frames);
            tokio::spawn(async move {
                while let Some(Ok(message)) = socket.next().await {
                    if let Message::Text(text) = message {
                        frames.all.fetch_add(1, Ordering::SeqCst);
                        if text.as_str().contains("document.updated") {
                            frames.seen.fetch_add(1, Ordering::SeqCst);
                            frames.arrived.notify_waiters();
                        }
                    }
                }
            });
        }
        frames
    }

    /// Text frames of any kind read so far.
    fn all(&self) -> usize {
        self.all.load(Ordering::SeqCst)
    }

    /// Waits until `total` frames were read in all.
    async fn wait_for(&self, total: usize) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let arrived = self.arrived.notified();
            if self.seen.load(Ordering::SeqCst) >= total {
                return Ok(());
            }
            tokio::time::timeout_at(deadline, arrived)
                .await
                .context("every subscriber gets every frame")?;
        }
    }
}

/// What one server's measured edits cost: its spending over the whole measured span.
#[derive(Default)]
struct Spent {
    edits: usize,
    /// Frames the clients read meanwhile, of any kind.
    frames: usize,
    cpu: Duration,
    /// Of `cpu`, what each kind of thread ran (by name).
    threads: BTreeMap<String, Duration>,
    elapsed: Duration,
}

impl Spent {
    fn case(&self, label: &str, subscribers: usize) -> Case {
        let per_edit_ms = self.cpu.as_secs_f64() * 1000.0 / self.edits as f64;
        let frames_per_edit = self.frames as f64 / self.edits as f64;
        let per_frame_us = self.cpu.as_secs_f64() * 1e6 / self.frames.max(1) as f64;
        println!(
            "  {label:<36} {}: {per_edit_ms:.2} ms of server CPU per edit ({} edits in {:.1} s); \
             {frames_per_edit:.0} frames per edit, {per_frame_us:.1} µs per frame",
            count(subscribers, "subscriber"),
            self.edits,
            self.elapsed.as_secs_f64()
        );
        let ms_per_edit = |d: Duration| d.as_secs_f64() * 1000.0 / self.edits as f64;
        let mut threads: Vec<(String, f64)> = self
            .threads
            .iter()
            .map(|(name, ran)| (name.clone(), ms_per_edit(*ran)))
            .filter(|(_, ms)| *ms >= 0.005)
            .collect();
        threads.sort_by(|a, b| b.1.total_cmp(&a.1));
        // The rest of the process's total: the threads that ended during the span, and
        // the total's rounding to clock ticks (10 ms at most).
        let read: Duration = self.threads.values().sum();
        let ended = ms_per_edit(self.cpu.saturating_sub(read));
        let listed: Vec<String> = threads
            .iter()
            .map(|(name, ms)| format!("{name} {ms:.2}"))
            .chain(std::iter::once(format!("threads that ended {ended:.2}")))
            .collect();
        println!("    by thread, ms per edit: {}", listed.join(", "));
        let mut case = Case::new(format!("{label}, {}", count(subscribers, "subscriber")))
            .param("subscribers", subscribers)
            .param("edits", self.edits)
            .throughput(self.edits as f64 / self.elapsed.as_secs_f64(), "edits/s")
            .figure("server_cpu_ms_per_edit", per_edit_ms)
            .figure("frames_per_edit", frames_per_edit)
            .figure("server_cpu_us_per_frame", per_frame_us)
            .figure("threads_that_ended_cpu_ms_per_edit", ended);
        for (name, ms) in threads {
            case = case.figure(&format!("thread_{name}_cpu_ms_per_edit"), ms);
        }
        case
    }
}

/// One server under measurement: its process, the frames its clients read, and how
/// to make one edit (waited for at every subscriber).
struct Measured<F> {
    pid: u32,
    frames: Arc<Frames>,
    /// Frames a step sends that no reader counts (the floor's driver reads its own).
    uncounted_per_edit: usize,
    edit: F,
    /// Where the measured span began ([`Measured::start`]).
    started: Option<Reading>,
    spent: Spent,
}

/// What a server had spent at one moment.
struct Reading {
    cpu: Duration,
    threads: HashMap<u32, (String, Duration)>,
    frames: usize,
}

impl Reading {
    fn take(pid: u32, frames: &Frames) -> anyhow::Result<Self> {
        Ok(Self {
            threads: thread_times(pid),
            cpu: cpu_time(pid)?,
            frames: frames.all(),
        })
    }
}

impl<F: AsyncFnMut() -> anyhow::Result<()>> Measured<F> {
    async fn warm_up(&mut self) -> anyhow::Result<()> {
        for _ in 0..WARM_UP {
            (self.edit)().await?;
        }
        Ok(())
    }

    /// Starts the measured span: everything the server spends from here to
    /// [`Measured::finish`] counts, including the work an edit leaves for later (the
    /// index's commit, the analysis once typing pauses) when it falls between its
    /// rounds.
    fn start(&mut self) -> anyhow::Result<()> {
        self.started = Some(Reading::take(self.pid, &self.frames)?);
        Ok(())
    }

    /// Makes `edits` edits.
    async fn round(&mut self, edits: usize) -> anyhow::Result<()> {
        let started = Instant::now();
        for _ in 0..edits {
            (self.edit)().await?;
        }
        self.spent.elapsed += started.elapsed();
        self.spent.edits += edits;
        Ok(())
    }

    /// Ends the measured span: what the server spent over it.
    fn finish(&mut self) -> anyhow::Result<()> {
        let before = self.started.take().context("a measured span started")?;
        let after = Reading::take(self.pid, &self.frames)?;
        self.spent.cpu = after.cpu.saturating_sub(before.cpu);
        self.spent.threads = ran_between(&before.threads, &after.threads);
        self.spent.frames =
            after.frames - before.frames + self.spent.edits * self.uncounted_per_edit;
        Ok(())
    }
}

/// The floor and docfan, measured in alternating rounds: returns the floor's scenario
/// and docfan's.
pub async fn run(mode: Mode, frame_bytes: usize) -> anyhow::Result<(Scenario, Scenario)> {
    let (mut floor_cases, mut docfan_cases) = (Vec::new(), Vec::new());
    for (subscribers, edits) in sizes(mode) {
        // The floor: the bare server; one of its connections asks for each broadcast.
        let bare = ChildServer::bare(frame_bytes).await?;
        let url = format!("ws://{}/", bare.addr);
        let mut sockets = live::subscribers(&url, bare::SUBSCRIBE, subscribers).await?;
        let mut driver = sockets.remove(0);
        let bare_frames = Frames::read(sockets);
        let others = subscribers - 1;
        let mut driven = 0;
        let mut floor = Measured {
            pid: bare.pid().context("the bare server's pid")?,
            frames: Arc::clone(&bare_frames),
            uncounted_per_edit: 1,
            edit: async || -> anyhow::Result<()> {
                driver.send(Message::text(bare::BROADCAST)).await?;
                // The driver reads its own copy too.
                loop {
                    match tokio::time::timeout(Duration::from_secs(60), driver.next()).await {
                        Ok(Some(Ok(Message::Text(t))))
                            if t.as_str().contains("document.updated") =>
                        {
                            break;
                        }
                        Ok(Some(Ok(_))) => continue,
                        other => anyhow::bail!("the driver's frame: {other:?}"),
                    }
                }
                driven += 1;
                bare_frames.wait_for(driven * others).await
            },
            started: None,
            spent: Spent::default(),
        };

        // docfan: "ann" types into a document "bob"'s connections follow.
        let dir = tempfile::tempdir()?;
        let server = ChildServer::docfan(dir.path()).await?;
        let base = format!("http://{}", server.addr);
        let http = reqwest::Client::new();
        let id = &notifications::create_shared(&http, &base, "CPU", "").await?;
        let url = format!("ws://{}/ws?token={}", server.addr, token_for("bob"));
        let subscribe = json!({"action": "subscribe", "documentId": id}).to_string();
        let docfan_frames = Frames::read(live::subscribers(&url, &subscribe, subscribers).await?);
        let ann = token_for("ann");
        let mut version = 1u64;
        let mut docfan = Measured {
            pid: server.pid().context("docfan's pid")?,
            frames: Arc::clone(&docfan_frames),
            uncounted_per_edit: 0,
            edit: async || -> anyhow::Result<()> {
                notifications::type_one(&base, &http, &ann, id, version).await?;
                docfan_frames
                    .wait_for(version as usize * subscribers)
                    .await?;
                version += 1;
                Ok(())
            },
            started: None,
            spent: Spent::default(),
        };

        floor.warm_up().await?;
        docfan.warm_up().await?;
        tokio::time::sleep(SETTLE).await;
        let per_round = edits.div_ceil(ROUNDS);
        floor.start()?;
        docfan.start()?;
        for _ in 0..ROUNDS {
            floor.round(per_round).await?;
            docfan.round(per_round).await?;
        }
        tokio::time::sleep(SETTLE).await;
        floor.finish()?;
        docfan.finish()?;
        let (floor_spent, docfan_spent) = (floor.spent, docfan.spent);
        bare.kill().await;
        server.kill().await;
        let floor_case = floor_spent.case("bare tokio-tungstenite", subscribers);
        let mut docfan_case = docfan_spent.case("docfan serve", subscribers);
        docfan_case.compare_with(&floor_case);
        floor_cases.push(floor_case);
        docfan_cases.push(docfan_case);
    }
    let floor = Scenario {
        name: FLOOR.into(),
        kind: Kind::Floor,
        title: "Floor: server CPU per broadcast frame".into(),
        method: format!(
            "The bare tokio-tungstenite server in a child process broadcasts a \
             {frame_bytes}-byte frame to every connection, one broadcast at a time, each \
             waited for at every connection; its CPU time (user + system, /proc) over \
             the measured broadcasts, after {WARM_UP} to warm up. The broadcasts are made \
             in {ROUNDS} rounds alternating with docfan's edits, both servers running, and \
             each server's CPU is read over the same span: from before the first round to \
             {} s after the last.",
            SETTLE.as_secs()
        ),
        floor: None,
        load_average: 0.0,
        seconds: 0.0,
        cases: floor_cases,
        notes: vec![],
    };
    let docfan = Scenario {
        name: "cpu".into(),
        kind: Kind::Docfan,
        title: "Server CPU per edit".into(),
        method: format!(
            "`docfan serve` in a child process; one character typed with `POST \
             /documents/{{id}}/edits`, one edit at a time, each waited for at every \
             subscriber; the server's CPU time (user + system, /proc) over the measured \
             edits, after {WARM_UP} to warm up: HTTP, the durable commit, both consumers of \
             the change log (live frames; search, audit, analysis and the analysis \
             worker), and the work the edits leave for later (the index's commit, the \
             analysis once typing pauses). The clients run in the bench process. The edits \
             are made in {ROUNDS} rounds alternating with the floor's, and each server's \
             CPU is read over the same span, from before the first round to {} s after the \
             last. Per frame: the same CPU over every text frame the clients read meanwhile \
             (edits' frames and the `analysis.completed` the worker sends after a burst of \
             them).",
            SETTLE.as_secs()
        ),
        floor: Some(FLOOR.into()),
        load_average: 0.0,
        seconds: 0.0,
        cases: docfan_cases,
        notes: vec![],
    };
    Ok((floor, docfan))
}

#[cfg(test)]
mod cpu_time_tests {
    use super::*;

    #[test]
    fn this_process_has_spent_some_cpu_and_it_only_grows() {
        let pid = std::process::id();
        let before = cpu_time(pid).unwrap();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        let after = cpu_time(pid).unwrap();
        assert!(after > before, "{before:?} → {after:?}");
    }

    #[test]
    fn a_busy_thread_is_found_by_its_name_less_its_number() {
        let pid = std::process::id();
        let before = thread_times(pid);
        let (worked, done) = std::sync::mpsc::channel();
        let busy = std::thread::Builder::new()
            .name("cpu-test-busy-7".into())
            .spawn(move || {
                let mut x = 0u64;
                for i in 0..20_000_000u64 {
                    x = x.wrapping_add(i * i);
                }
                std::hint::black_box(x);
                worked.send(()).unwrap();
                // Still alive when the second reading is taken.
                std::thread::park();
            })
            .unwrap();
        done.recv().unwrap();
        let ran = ran_between(&before, &thread_times(pid));
        busy.thread().unpark();
        busy.join().unwrap();
        let busy_ran = ran.get("cpu-test-busy-").copied().unwrap_or_default();
        assert!(busy_ran > Duration::from_millis(1), "{ran:?}");
    }
}
