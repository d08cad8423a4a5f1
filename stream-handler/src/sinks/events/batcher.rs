//! Publishing concurrent deliveries together: each delivery waits for its own event's
//! verdict, while the events that wait at the same moment leave in one request (up to
//! a `PutEvents` request's ten entries) instead of one request each.
//!
//! A delivery queues its event, then takes a turn (at most `in_flight` turns run at
//! once): while its own event is still queued, the turn takes the oldest queued
//! events, publishes them and hands every waiter its verdict. One document's next
//! event is delivered only after its previous one is taken, so per-document order
//! holds; the queue's order is the order deliveries arrived in.

use std::collections::VecDeque;
use std::sync::Mutex;

use shared::events::DocumentEvent;
use shared::ports::EventBus;
use shared::{Error, Result};
use tokio::sync::{Semaphore, oneshot};

/// Events waiting to be published, oldest first, each with its sequence number and
/// where its verdict goes.
struct Queued {
    seq: u64,
    event: DocumentEvent,
    verdict: oneshot::Sender<Result<()>>,
}

/// Coalesces concurrent publishes of single events into requests of up to `max_batch`.
pub struct Batcher {
    queue: Mutex<(u64, VecDeque<Queued>)>,
    turns: Semaphore,
    max_batch: usize,
}

impl Batcher {
    /// A batcher sending up to `max_batch` events per request and `in_flight` requests
    /// at once (both at least 1).
    pub fn new(max_batch: usize, in_flight: usize) -> Self {
        Self {
            queue: Mutex::new((0, VecDeque::new())),
            turns: Semaphore::new(in_flight.max(1)),
            max_batch: max_batch.max(1),
        }
    }

    /// Publishes `event` to `bus`, with whatever else waits beside it; returns this
    /// event's verdict.
    pub async fn publish(&self, bus: &dyn EventBus, event: DocumentEvent) -> Result<()> {
        let (verdict, answer) = oneshot::channel();
        let seq = {
            let mut queue = self.queue.lock().expect("batcher queue");
            let seq = queue.0;
            queue.0 += 1;
            queue.1.push_back(Queued {
                seq,
                event,
                verdict,
            });
            seq
        };
        {
            let _turn = self
                .turns
                .acquire()
                .await
                .expect("the semaphore is never closed");
            while let Some(batch) = self.take_up_to(seq) {
                send(bus, batch).await;
            }
        }
        answer.await.unwrap_or_else(|_| {
            Err(Error::Unavailable(
                "the event's publish was abandoned".into(),
            ))
        })
    }

    /// The oldest queued events (up to a request's worth), if the event `seq` is still
    /// among the queued.
    fn take_up_to(&self, seq: u64) -> Option<Vec<Queued>> {
        let mut queue = self.queue.lock().expect("batcher queue");
        let waiting = queue.1.front().is_some_and(|first| first.seq <= seq);
        waiting.then(|| {
            let n = queue.1.len().min(self.max_batch);
            queue.1.drain(..n).collect()
        })
    }
}

/// Publishes `batch` and hands each waiter its verdict. A failure that may pass
/// (throttling, an unreachable or blocked bus) is every event's verdict; any other
/// failure of a request of several events is tried event by event, so an event the bus
/// can never take fails alone.
async fn send(bus: &dyn EventBus, batch: Vec<Queued>) {
    let events: Vec<DocumentEvent> = batch.iter().map(|q| q.event.clone()).collect();
    match bus.publish(&events).await {
        Ok(()) => {
            for queued in batch {
                let _ = queued.verdict.send(Ok(()));
            }
        }
        Err(err) if batch.len() == 1 => {
            let _ = batch
                .into_iter()
                .next()
                .expect("one")
                .verdict
                .send(Err(err));
        }
        Err(err) if err.is_transient() => {
            for queued in batch {
                let _ = queued.verdict.send(Err(copy_transient(&err)));
            }
        }
        Err(_) => {
            for queued in batch {
                let verdict = bus.publish(std::slice::from_ref(&queued.event)).await;
                let _ = queued.verdict.send(verdict);
            }
        }
    }
}

/// A copy of a transient failure (it says nothing about the events themselves, so
/// every event of the request shares it).
fn copy_transient(err: &Error) -> Error {
    match err {
        Error::StorageFull(m) => Error::StorageFull(m.clone()),
        Error::StorageReadOnly(m) => Error::StorageReadOnly(m.clone()),
        Error::Blocked(m) => Error::Blocked(m.clone()),
        Error::Unavailable(m) => Error::Unavailable(m.clone()),
        other => Error::Unavailable(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use async_trait::async_trait;
    use futures_util::future::join_all;
    use shared::domain::{Body, ChangeEvent, Document, DocumentId, Title, UserId};

    use super::*;

    /// A bus that records each request's events (by their resource's version) and
    /// answers as told: `poison` versions make any request holding them fail for good,
    /// `down` makes every request fail for now.
    #[derive(Default)]
    struct Recording {
        calls: Mutex<Vec<Vec<u64>>>,
        poison: Vec<u64>,
        down: bool,
    }

    #[async_trait]
    impl EventBus for Recording {
        async fn publish(&self, events: &[DocumentEvent]) -> Result<()> {
            let versions: Vec<u64> = events.iter().map(|e| e.detail.version).collect();
            self.calls.lock().unwrap().push(versions.clone());
            // Long enough that the other deliveries queue behind the first request.
            tokio::time::sleep(Duration::from_millis(20)).await;
            if self.down {
                return Err(Error::Unavailable("bus down".into()));
            }
            if versions.iter().any(|v| self.poison.contains(v)) {
                return Err(Error::TooLarge("event too large".into()));
            }
            Ok(())
        }

        async fn health(&self) -> Result<()> {
            Ok(())
        }
    }

    fn event(version: u64) -> DocumentEvent {
        let owner = UserId::parse("ann").unwrap();
        let at = chrono::Utc::now();
        let document = Document {
            id: DocumentId::parse(&format!("0190a5f0-0000-7000-8000-{version:012}")).unwrap(),
            title: Title::parse("t").unwrap(),
            body: Body::parse("b").unwrap(),
            owner: owner.clone(),
            collaborators: Default::default(),
            version,
            created_at: at,
            updated_at: at,
            updated_by: owner,
        };
        DocumentEvent::from_change(&ChangeEvent::written(None, document, version.to_string()))
    }

    async fn deliver_all(batcher: Arc<Batcher>, bus: Arc<Recording>, n: u64) -> Vec<Result<()>> {
        join_all((1..=n).map(|v| {
            let (batcher, bus) = (batcher.clone(), bus.clone());
            async move { batcher.publish(bus.as_ref(), event(v)).await }
        }))
        .await
    }

    #[tokio::test]
    async fn concurrent_deliveries_leave_together_in_requests_of_at_most_ten_in_arrival_order() {
        let bus = Arc::new(Recording::default());
        let batcher = Arc::new(Batcher::new(10, 1));
        let verdicts = deliver_all(batcher, bus.clone(), 25).await;
        assert!(verdicts.iter().all(Result::is_ok));
        let calls = bus.calls.lock().unwrap().clone();
        // The first delivery goes alone; the 24 that queued behind it go as 10, 10, 4.
        assert_eq!(
            calls.iter().map(Vec::len).collect::<Vec<_>>(),
            [1, 10, 10, 4]
        );
        assert_eq!(calls.concat(), (1..=25).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn one_delivery_alone_is_one_request_and_every_event_is_sent_once() {
        let bus = Arc::new(Recording::default());
        let batcher = Arc::new(Batcher::new(10, 4));
        batcher.publish(bus.as_ref(), event(1)).await.unwrap();
        assert_eq!(bus.calls.lock().unwrap().clone(), [vec![1]]);
        let verdicts = deliver_all(batcher, bus.clone(), 40).await;
        assert!(verdicts.iter().all(Result::is_ok));
        let mut sent = bus.calls.lock().unwrap()[1..].concat();
        sent.sort_unstable();
        assert_eq!(sent, (1..=40).collect::<Vec<_>>());
        assert!(bus.calls.lock().unwrap().iter().all(|c| c.len() <= 10));
    }

    #[tokio::test]
    async fn an_event_the_bus_never_takes_fails_alone() {
        let bus = Arc::new(Recording {
            poison: vec![7],
            ..Default::default()
        });
        let batcher = Arc::new(Batcher::new(10, 1));
        let verdicts = deliver_all(batcher, bus, 12).await;
        for (version, verdict) in (1..=12).zip(&verdicts) {
            match verdict {
                Err(Error::TooLarge(_)) => assert_eq!(version, 7),
                Err(other) => panic!("event {version}: {other}"),
                Ok(()) => assert_ne!(version, 7),
            }
        }
    }

    #[tokio::test]
    async fn a_bus_that_is_down_fails_every_waiting_event_as_transient() {
        let bus = Arc::new(Recording {
            down: true,
            ..Default::default()
        });
        let batcher = Arc::new(Batcher::new(10, 1));
        let verdicts = deliver_all(batcher, bus.clone(), 12).await;
        assert!(
            verdicts
                .iter()
                .all(|v| matches!(v, Err(e) if e.is_transient()))
        );
        // Not tried again event by event: 1, then 10, then 1.
        assert_eq!(
            bus.calls
                .lock()
                .unwrap()
                .iter()
                .map(Vec::len)
                .collect::<Vec<_>>(),
            [1, 10, 1]
        );
    }
}
