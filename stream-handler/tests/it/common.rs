//! Test doubles and helpers.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use shared::clock::SystemClock;
use shared::domain::{Analysis, AuditEntry, ChangeEvent, Document, DocumentId};
use shared::ports::{AuditLog, DeadLetter, DeadLetterQueue, Notifier, WriteOutcome};
use shared::{Error, Result};
use stream_handler::decode::RecordMeta;
use stream_handler::handler::{Fanout, HandlerConfig, RetryPolicy};
use stream_handler::sinks::Sink;
use tokio::sync::watch;

/// The records of a Lambda event fixture.
pub fn records(event: &str) -> Vec<Value> {
    let event: Value = serde_json::from_str(event).expect("fixture is JSON");
    event["Records"]
        .as_array()
        .expect("fixture has Records")
        .clone()
}

/// Decides whether the n-th append (1-based) of an entry fails.
pub type AuditPlan = Box<dyn Fn(&AuditEntry, u32) -> Option<Error> + Send + Sync>;

pub type FailurePlan = Box<dyn Fn(&ChangeEvent, u32) -> Option<Error> + Send + Sync>;

/// A sink that records what it is given, and fails when its plan says so (the plan
/// sees the change and how many times this sink was called for it, this call included).
pub struct RecordingSink {
    name: &'static str,
    pub delivered: Mutex<Vec<ChangeEvent>>,
    pub metas: Mutex<Vec<RecordMeta>>,
    calls: Mutex<BTreeMap<(DocumentId, u64), u32>>,
    plan: FailurePlan,
}

impl RecordingSink {
    pub fn new(name: &'static str) -> Arc<Self> {
        Self::failing(name, Box::new(|_, _| None))
    }

    pub fn failing(name: &'static str, plan: FailurePlan) -> Arc<Self> {
        Arc::new(Self {
            name,
            delivered: Mutex::new(Vec::new()),
            metas: Mutex::new(Vec::new()),
            calls: Mutex::new(BTreeMap::new()),
            plan,
        })
    }

    pub fn delivered(&self) -> Vec<ChangeEvent> {
        self.delivered.lock().unwrap().clone()
    }

    pub fn versions(&self) -> Vec<(DocumentId, u64)> {
        self.delivered()
            .iter()
            .map(|c| (c.document_id, c.version))
            .collect()
    }

    pub fn calls(&self, doc: DocumentId, version: u64) -> u32 {
        self.calls
            .lock()
            .unwrap()
            .get(&(doc, version))
            .copied()
            .unwrap_or(0)
    }
}

#[async_trait]
impl Sink for RecordingSink {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn deliver(&self, change: &ChangeEvent, record: &RecordMeta) -> Result<()> {
        let call = {
            let mut calls = self.calls.lock().unwrap();
            let n = calls
                .entry((change.document_id, change.version))
                .or_default();
            *n += 1;
            *n
        };
        if let Some(err) = (self.plan)(change, call) {
            return Err(err);
        }
        self.delivered.lock().unwrap().push(change.clone());
        self.metas.lock().unwrap().push(record.clone());
        Ok(())
    }

    async fn health(&self) -> Result<()> {
        Ok(())
    }
}

/// Dead letters in memory.
#[derive(Default)]
pub struct MemoryDeadLetters {
    pub letters: Mutex<Vec<DeadLetter>>,
}

#[async_trait]
impl DeadLetterQueue for MemoryDeadLetters {
    async fn put(&self, letter: &DeadLetter) -> Result<String> {
        let mut letters = self.letters.lock().unwrap();
        let mut letter = letter.clone();
        letter.id = (letters.len() + 1).to_string();
        letters.push(letter.clone());
        Ok(letter.id)
    }

    async fn list(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        Ok(self
            .letters
            .lock()
            .unwrap()
            .iter()
            .take(limit)
            .cloned()
            .collect())
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let mut letters = self.letters.lock().unwrap();
        let before = letters.len();
        letters.retain(|l| l.id != id);
        if letters.len() == before {
            return Err(Error::NotFound);
        }
        Ok(())
    }

    async fn depth(&self) -> Result<u64> {
        Ok(self.letters.lock().unwrap().len() as u64)
    }
}

/// Fast retries, so tests on real time stay quick.
pub fn quick_retries() -> HandlerConfig {
    HandlerConfig {
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
        },
        document_concurrency: 8,
    }
}

pub fn fanout_with(sinks: Vec<Arc<dyn Sink>>, dlq: Arc<dyn DeadLetterQueue>) -> Fanout {
    Fanout::new(sinks, dlq, Arc::new(SystemClock), quick_retries())
}

/// A notifier that remembers every change and analysis it was asked to publish, and
/// signals each one.
pub struct RecordingNotifier {
    pub changes: Mutex<Vec<(DocumentId, u64)>>,
    pub analyses: Mutex<Vec<(DocumentId, u64)>>,
    changed: watch::Sender<usize>,
    analysed: watch::Sender<usize>,
}

impl RecordingNotifier {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            changes: Mutex::new(Vec::new()),
            analyses: Mutex::new(Vec::new()),
            changed: watch::channel(0).0,
            analysed: watch::channel(0).0,
        })
    }

    /// Waits until `n` analyses have been published.
    pub async fn wait_for_analyses(&self, n: usize) {
        let mut rx = self.analysed.subscribe();
        tokio::time::timeout(Duration::from_secs(60), rx.wait_for(|c| *c >= n))
            .await
            .expect("analyses in time")
            .expect("notifier alive");
    }

    /// Waits until `n` changes have been published.
    pub async fn wait_for_changes(&self, n: usize) {
        let mut rx = self.changed.subscribe();
        tokio::time::timeout(Duration::from_secs(60), rx.wait_for(|c| *c >= n))
            .await
            .expect("changes in time")
            .expect("notifier alive");
    }

    pub fn changes(&self) -> Vec<(DocumentId, u64)> {
        self.changes.lock().unwrap().clone()
    }
}

#[async_trait]
impl Notifier for RecordingNotifier {
    async fn publish_change(&self, change: &ChangeEvent) -> Result<()> {
        let mut changes = self.changes.lock().unwrap();
        changes.push((change.document_id, change.version));
        self.changed.send_replace(changes.len());
        Ok(())
    }

    async fn publish_analysis(&self, document: &Document, analysis: &Analysis) -> Result<()> {
        let mut analyses = self.analyses.lock().unwrap();
        analyses.push((document.id, analysis.version));
        self.analysed.send_replace(analyses.len());
        Ok(())
    }
}

/// An audit log in front of a real one that fails while its plan says so, and records
/// the order in which entries were accepted.
pub struct ScriptedAuditLog {
    pub inner: Arc<dyn AuditLog>,
    pub accepted: Mutex<Vec<(DocumentId, u64)>>,
    pub appends: AtomicU32,
    pub plan: AuditPlan,
}

impl ScriptedAuditLog {
    pub fn new(inner: Arc<dyn AuditLog>, plan: AuditPlan) -> Arc<Self> {
        Arc::new(Self {
            inner,
            accepted: Mutex::new(Vec::new()),
            appends: AtomicU32::new(0),
            plan,
        })
    }
}

#[async_trait]
impl AuditLog for ScriptedAuditLog {
    async fn append(&self, entry: &AuditEntry) -> Result<WriteOutcome> {
        let n = self.appends.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(err) = (self.plan)(entry, n) {
            return Err(err);
        }
        let outcome = self.inner.append(entry).await?;
        if outcome == WriteOutcome::Applied {
            self.accepted
                .lock()
                .unwrap()
                .push((entry.document_id, entry.version));
        }
        Ok(outcome)
    }

    async fn list(
        &self,
        document: &DocumentId,
        after_version: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        self.inner.list(document, after_version, limit).await
    }

    async fn get(&self, document: &DocumentId, version: u64) -> Result<Option<AuditEntry>> {
        self.inner.get(document, version).await
    }
}
