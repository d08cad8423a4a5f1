//! X-Ray tracing of a Lambda consumer's sinks (cargo feature `aws`): every sink is
//! wrapped in a [`TracedSink`] that times its deliveries and flushes in one
//! [`SinkTrace`], and at the end of each invocation [`SinkTrace::finish`] sends one
//! subsegment per sink that worked (`search`, `audit`, `notifications`…), spanning its
//! first delivery to its last, annotated with how many changes it took and failed, and
//! marked as a fault with the last failure as its cause. In the X-Ray console an
//! invocation's segment then shows where its time went, sink by sink.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde_json::json;
use shared::aws::xray::{Daemon, Span, TraceHeader, subsegment};
use shared::domain::ChangeEvent;

use crate::decode::RecordMeta;
use crate::sinks::{Flush, Flushed, Sink};

/// What one sink did during one invocation.
#[derive(Debug, Clone, PartialEq)]
struct SinkWork {
    start: f64,
    end: f64,
    deliveries: u64,
    failures: u64,
    flushes: u64,
    last_failure: Option<String>,
}

/// The work of every traced sink since the last [`finish`](Self::finish), and the
/// daemon it goes to.
#[derive(Debug)]
pub struct SinkTrace {
    daemon: Daemon,
    work: Mutex<BTreeMap<&'static str, SinkWork>>,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl SinkTrace {
    pub fn new(daemon: Daemon) -> Arc<Self> {
        Arc::new(Self {
            daemon,
            work: Mutex::default(),
        })
    }

    /// The trace for the daemon Lambda names when tracing is active; `None` without one.
    pub fn from_env() -> anyhow::Result<Option<Arc<Self>>> {
        Ok(Daemon::from_env()?.map(Self::new))
    }

    /// `sink`, timed into this trace.
    pub fn wrap(self: &Arc<Self>, sink: Arc<dyn Sink>) -> Arc<dyn Sink> {
        Arc::new(TracedSink {
            inner: sink,
            trace: Arc::clone(self),
        })
    }

    fn record(&self, sink: &'static str, start: f64, failure: Option<String>, flush: bool) {
        let end = now();
        let mut work = self.work.lock().expect("the trace's lock");
        let entry = work.entry(sink).or_insert_with(|| SinkWork {
            start,
            end,
            deliveries: 0,
            failures: 0,
            flushes: 0,
            last_failure: None,
        });
        entry.start = entry.start.min(start);
        entry.end = entry.end.max(end);
        if flush {
            entry.flushes += 1;
        } else {
            entry.deliveries += 1;
        }
        if let Some(failure) = failure {
            entry.failures += 1;
            entry.last_failure = Some(failure);
        }
    }

    /// Ends an invocation: sends a subsegment per sink that worked when `header` (the
    /// invocation's trace header) is sampled, and forgets the work either way. Returns
    /// how many were sent.
    pub fn finish(&self, header: Option<&str>) -> usize {
        let work = std::mem::take(&mut *self.work.lock().expect("the trace's lock"));
        let Some(trace) = header.and_then(TraceHeader::parse) else {
            return 0;
        };
        let mut sent = 0;
        for (sink, work) in work {
            let span = Span {
                name: sink.to_owned(),
                start: work.start,
                end: work.end,
                fault: work.failures > 0,
                cause: work.last_failure,
                annotations: json!({
                    "sink": sink,
                    "deliveries": work.deliveries,
                    "failures": work.failures,
                    "flushes": work.flushes,
                })
                .as_object()
                .cloned()
                .unwrap_or_default(),
            };
            let Some(document) = subsegment(&trace, &span) else {
                return 0;
            };
            match self.daemon.send(&document) {
                Ok(()) => sent += 1,
                Err(e) => tracing::debug!(error = %e, sink, "could not send a subsegment"),
            }
        }
        sent
    }
}

/// A sink whose deliveries and flushes are timed into a [`SinkTrace`].
struct TracedSink {
    inner: Arc<dyn Sink>,
    trace: Arc<SinkTrace>,
}

#[async_trait]
impl Sink for TracedSink {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn deliver(&self, change: &ChangeEvent, record: &RecordMeta) -> shared::Result<()> {
        let start = now();
        let delivered = self.inner.deliver(change, record).await;
        let failure = delivered.as_ref().err().map(ToString::to_string);
        self.trace.record(self.name(), start, failure, false);
        delivered
    }

    async fn flush(&self, when: Flush) -> shared::Result<Flushed> {
        let start = now();
        let flushed = self.inner.flush(when).await;
        let failure = flushed.as_ref().err().map(ToString::to_string);
        self.trace.record(self.name(), start, failure, true);
        flushed
    }

    fn is_retriable(&self, err: &shared::Error) -> bool {
        self.inner.is_retriable(err)
    }

    async fn health(&self) -> shared::Result<()> {
        self.inner.health().await
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::time::Duration;

    use serde_json::Value;

    use super::*;

    const SAMPLED: &str =
        "Root=1-6750a1f0-0a1b2c3d4e5f60718293a4b5;Parent=53995c3f42cd8ad8;Sampled=1";

    fn daemon() -> (UdpSocket, Arc<SinkTrace>) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let address = socket.local_addr().unwrap().to_string();
        (socket, SinkTrace::new(Daemon::new(&address).unwrap()))
    }

    fn received(socket: &UdpSocket) -> Vec<Value> {
        let mut buffer = [0u8; 65_536];
        let mut documents = Vec::new();
        while let Ok(n) = socket.recv(&mut buffer) {
            let text = std::str::from_utf8(&buffer[..n]).unwrap();
            documents.push(serde_json::from_str(text.split_once('\n').unwrap().1).unwrap());
        }
        documents
    }

    #[test]
    fn a_sinks_work_becomes_one_subsegment_marked_by_its_last_failure() {
        let (socket, trace) = daemon();
        let start = now();
        trace.record("search", start, None, false);
        trace.record("search", start, Some("search: unavailable".into()), false);
        trace.record("search", start, None, true);
        trace.record("audit", start, None, false);
        assert_eq!(trace.finish(Some(SAMPLED)), 2);
        let documents = received(&socket);
        let search = documents.iter().find(|d| d["name"] == "search").unwrap();
        assert_eq!(search["annotations"]["deliveries"], 2);
        assert_eq!(search["annotations"]["failures"], 1);
        assert_eq!(search["annotations"]["flushes"], 1);
        assert_eq!(search["fault"], true);
        assert_eq!(
            search["cause"]["exceptions"][0]["message"],
            "search: unavailable"
        );
        let audit = documents.iter().find(|d| d["name"] == "audit").unwrap();
        assert_eq!(audit["annotations"]["failures"], 0);
        assert!(audit.get("fault").is_none());
        // The next invocation starts from nothing.
        assert_eq!(trace.finish(Some(SAMPLED)), 0);
    }

    #[test]
    fn an_invocation_not_sampled_sends_nothing_and_forgets_its_work() {
        let (socket, trace) = daemon();
        trace.record("search", now(), None, false);
        let unsampled = SAMPLED.replace("Sampled=1", "Sampled=0");
        assert_eq!(trace.finish(Some(&unsampled)), 0);
        assert_eq!(trace.finish(None), 0);
        trace.record("audit", now(), None, false);
        assert_eq!(trace.finish(Some(SAMPLED)), 1);
        let documents = received(&socket);
        assert_eq!(documents.len(), 1);
        assert_eq!(documents[0]["name"], "audit");
    }
}
