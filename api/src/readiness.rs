//! Readiness: what `GET /readyz` checks before saying the server may take traffic.
//!
//! `/healthz` says the process is alive and its store answers; `/readyz` also runs the
//! checks the driver wires in here. `docfan serve` checks that the data directory takes
//! writes, that the stream poller and the analysis worker run, and each fan-out sink's
//! health ([`embedded`]); the Lambda API, whose fan-out runs in other functions, checks
//! the document store only. Every check runs concurrently with the others, bounded by
//! [`CHECK_TIMEOUT`], so a hung backend makes the answer 503, not slow.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use stream_handler::EmbeddedFanout;
use stream_handler::embedded::TaskState;

/// How long one check may take before it counts as failing.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What one check found: `Ok`, or why the server is not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub name: String,
    pub outcome: Result<(), String>,
}

impl Finding {
    pub fn new(name: impl Into<String>, outcome: Result<(), String>) -> Self {
        Self {
            name: name.into(),
            outcome,
        }
    }
}

type Pending = Pin<Box<dyn Future<Output = Vec<Finding>> + Send>>;
type Probe = Arc<dyn Fn() -> Pending + Send + Sync>;

/// The checks `/readyz` runs, besides the document store's.
#[derive(Clone, Default)]
pub struct Readiness {
    probes: Vec<(&'static str, Probe)>,
}

impl Readiness {
    /// Adds one check named `name`.
    pub fn check<F, Fut>(self, name: &'static str, probe: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let probe = Arc::new(probe);
        self.checks(name, move || {
            let run = probe();
            async move { vec![Finding::new(name, run.await)] }
        })
    }

    /// Adds a probe that reports several findings at once (each sink of the fan-out);
    /// `name` stands for them when the probe does not answer in time.
    pub fn checks<F, Fut>(mut self, name: &'static str, probe: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<Finding>> + Send + 'static,
    {
        let probe: Probe = Arc::new(move || -> Pending { Box::pin(probe()) });
        self.probes.push((name, probe));
        self
    }

    /// Runs every check concurrently; the findings come in the order the checks were
    /// added.
    pub async fn run(&self) -> Vec<Finding> {
        let mut running = tokio::task::JoinSet::new();
        for (i, (name, probe)) in self.probes.iter().enumerate() {
            let (name, probe) = (*name, Arc::clone(probe));
            running.spawn(async move {
                let found = match tokio::time::timeout(CHECK_TIMEOUT, probe()).await {
                    Ok(found) => found,
                    Err(_) => vec![Finding::new(
                        name,
                        Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
                    )],
                };
                (i, found)
            });
        }
        let mut results: Vec<(usize, Vec<Finding>)> = Vec::with_capacity(self.probes.len());
        while let Some(joined) = running.join_next().await {
            match joined {
                Ok(result) => results.push(result),
                Err(e) => results.push((
                    usize::MAX,
                    vec![Finding::new(
                        "readiness",
                        Err(format!("a check failed: {e}")),
                    )],
                )),
            }
        }
        results.sort_by_key(|(i, _)| *i);
        results.into_iter().flat_map(|(_, found)| found).collect()
    }
}

/// The checks of `docfan serve`: the data directory takes writes (`store-writable`),
/// the change log's two consumers and the analysis worker run (`stream-poller` for the
/// index consumer, `live-consumer`, `analysis-worker`, and `webhook-worker-<rule>` for
/// each webhook rule), and each sink of the fan-out is healthy (`sink-search`,
/// `sink-notifications`, `sink-audit`, `sink-analysis`, `sink-events` with webhook rules).
pub fn embedded(data_dir: &Path, fanout: &EmbeddedFanout) -> Readiness {
    let data_dir = data_dir.to_owned();
    let tasks = fanout.task_states();
    let sinks = Arc::clone(&fanout.fanout);
    Readiness::default()
        .check("store-writable", move || {
            let data_dir = data_dir.clone();
            async move {
                tokio::task::spawn_blocking(move || probe_writable(&data_dir))
                    .await
                    .map_err(|e| format!("the probe failed: {e}"))?
            }
        })
        .check("stream-poller", task_check(tasks.poller))
        .check("live-consumer", task_check(tasks.live))
        .check("analysis-worker", task_check(tasks.worker))
        .checks("webhook-workers", move || {
            let found = tasks
                .webhooks
                .iter()
                .map(|(rule, state)| {
                    Finding::new(
                        format!("webhook-worker-{rule}"),
                        task_check(state.clone())().into_inner(),
                    )
                })
                .collect();
            std::future::ready(found)
        })
        .checks("sinks", move || {
            let sinks = Arc::clone(&sinks);
            async move {
                sinks
                    .health()
                    .await
                    .into_iter()
                    .map(|(name, health)| {
                        Finding::new(format!("sink-{name}"), health.map_err(|e| e.to_string()))
                    })
                    .collect()
            }
        })
}

fn task_check(
    state: tokio::sync::watch::Receiver<TaskState>,
) -> impl Fn() -> std::future::Ready<Result<(), String>> + Send + Sync + 'static {
    move || {
        std::future::ready(match &*state.borrow() {
            TaskState::Running => Ok(()),
            TaskState::NotStarted => Err("not started".to_owned()),
            TaskState::Stopped(why) => Err(why.clone()),
        })
    }
}

/// The name of the file [`probe_writable`] writes and removes.
pub(crate) const PROBE_FILE: &str = ".docfan-write-check";

/// Writes a small file into `dir` and removes it: fails, saying why in words an
/// operator acts on, when the directory is read-only, on a full disk, or not writable
/// by this user. `docfan serve` runs it before starting and `/readyz` on every call.
pub fn probe_writable(dir: &Path) -> Result<(), String> {
    let probe: PathBuf = dir.join(PROBE_FILE);
    let written = std::fs::write(&probe, b"ok").and_then(|()| std::fs::remove_file(&probe));
    written.map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::ReadOnlyFilesystem => "is on a read-only file system",
            std::io::ErrorKind::StorageFull => "is on a full disk",
            std::io::ErrorKind::PermissionDenied => "is not writable by this user",
            _ => "cannot be written to",
        };
        format!("the data directory {why} ({e})")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn findings_keep_the_checks_order_and_a_slow_check_fails() {
        let readiness = Readiness::default()
            .check("slow", || async {
                tokio::time::sleep(CHECK_TIMEOUT * 3).await;
                Ok(())
            })
            .check("fine", || async { Ok(()) })
            .checks("pair", || async {
                vec![
                    Finding::new("one", Ok(())),
                    Finding::new("two", Err("broken".into())),
                ]
            });
        let found = readiness.run().await;
        let names: Vec<&str> = found.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["slow", "fine", "one", "two"]);
        assert!(found[0].outcome.as_ref().unwrap_err().contains("no answer"));
        assert_eq!(found[1].outcome, Ok(()));
        assert_eq!(found[3].outcome, Err("broken".into()));
    }

    #[test]
    fn a_writable_directory_passes_and_a_missing_one_fails() {
        let dir = tempfile::tempdir().unwrap();
        probe_writable(dir.path()).unwrap();
        assert!(!dir.path().join(PROBE_FILE).exists());
        let missing = probe_writable(&dir.path().join("nowhere")).unwrap_err();
        assert!(missing.starts_with("the data directory"), "{missing}");
    }
}
