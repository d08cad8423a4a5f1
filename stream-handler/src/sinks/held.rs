//! Deliveries a sink holds until the batch's flush writes them together: one commit for
//! a batch instead of one per change, so a document's next change does not wait on the
//! last one's commit.
//!
//! Consumers that share a sink (the poller's partitions) flush it concurrently. Flushes
//! run one at a time, and a failed one keeps what it took for the next: a flush that
//! finds nothing held knows that every delivery before it was written by a flush that
//! succeeded. What is kept once per (document, version): a batch retried through a long
//! outage delivers its changes again and again, and holds them once.

use std::collections::HashSet;
use std::sync::Mutex;

use shared::domain::DocumentId;
use tokio::sync::MutexGuard;

/// The change a held delivery is of: another delivery of the same change replaces it.
pub trait OfChange {
    fn change(&self) -> (DocumentId, u64);
}

impl OfChange for shared::domain::AuditEntry {
    fn change(&self) -> (DocumentId, u64) {
        (self.document_id, self.version)
    }
}

impl OfChange for shared::events::DocumentEvent {
    fn change(&self) -> (DocumentId, u64) {
        (self.detail.document_id, self.detail.version)
    }
}

impl OfChange for shared::ports::AnalysisJob {
    fn change(&self) -> (DocumentId, u64) {
        (self.document_id, self.version)
    }
}

/// What a sink holds for its next flush.
#[derive(Debug)]
pub struct Held<T> {
    items: Mutex<Vec<T>>,
    writing: tokio::sync::Mutex<()>,
}

impl<T> Default for Held<T> {
    fn default() -> Self {
        Self {
            items: Mutex::new(Vec::new()),
            writing: tokio::sync::Mutex::new(()),
        }
    }
}

impl<T> Held<T> {
    /// Holds one more delivery.
    pub fn push(&self, item: T) {
        self.lock().push(item);
    }

    /// Takes everything held, for one flush to write; the next flush waits until this
    /// one is over ([`Taken::settle`]).
    pub async fn take(&self) -> Taken<'_, T> {
        let writing = self.writing.lock().await;
        let items = std::mem::take(&mut *self.lock());
        Taken {
            held: self,
            items,
            _writing: writing,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<T>> {
        // A push or a take cannot panic halfway: the list is whole even if poisoned.
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What one flush took to write.
#[must_use = "settle it with the write's result, or what was taken is lost"]
pub struct Taken<'a, T> {
    held: &'a Held<T>,
    items: Vec<T>,
    _writing: MutexGuard<'a, ()>,
}

impl<T: OfChange> Taken<'_, T> {
    pub fn items(&self) -> &[T] {
        &self.items
    }

    /// Ends the flush with its write's result: on failure what was taken is held again,
    /// before what was delivered since (each change once), for the next flush.
    pub fn settle<E>(self, written: Result<(), E>) -> Result<(), E> {
        if written.is_err() {
            let mut held = self.held.lock();
            let since = std::mem::replace(&mut *held, self.items);
            held.extend(since);
            let mut seen = HashSet::with_capacity(held.len());
            held.retain(|item| seen.insert(item.change()));
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use shared::ports::AnalysisJob;

    use super::*;

    fn job(document_id: DocumentId, version: u64) -> AnalysisJob {
        AnalysisJob {
            document_id,
            version,
        }
    }

    #[tokio::test]
    async fn a_flush_takes_what_is_held_and_a_failed_one_keeps_it_in_order() {
        let doc = DocumentId::generate();
        let held = Held::default();
        held.push(job(doc, 1));
        held.push(job(doc, 2));
        let taken = held.take().await;
        assert_eq!(taken.items(), [job(doc, 1), job(doc, 2)]);
        assert!(held.lock().is_empty());
        held.push(job(doc, 3));
        assert_eq!(taken.settle(Err("down")), Err("down"));
        let taken = held.take().await;
        assert_eq!(
            taken.items(),
            [job(doc, 1), job(doc, 2), job(doc, 3)],
            "kept, before what came since"
        );
        assert_eq!(taken.settle::<()>(Ok(())), Ok(()));
        assert!(held.lock().is_empty(), "written: nothing held");
    }

    #[tokio::test]
    async fn a_change_delivered_again_through_an_outage_is_held_once() {
        let doc = DocumentId::generate();
        let held = Held::default();
        for _retry in 0..5 {
            for version in 1..=3 {
                held.push(job(doc, version));
            }
            let _ = held.take().await.settle(Err(()));
        }
        assert_eq!(*held.lock(), [job(doc, 1), job(doc, 2), job(doc, 3)]);
    }

    #[tokio::test]
    async fn a_flush_waits_for_the_one_writing_so_it_never_reports_a_write_still_under_way() {
        let doc = DocumentId::generate();
        let held = Arc::new(Held::default());
        held.push(job(doc, 1));
        let first = held.take().await;
        let second = tokio::spawn({
            let held = Arc::clone(&held);
            async move { held.take().await.items().to_vec() }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "waits while the first is writing");
        let _ = first.settle(Err(()));
        assert_eq!(
            second.await.unwrap(),
            [job(doc, 1)],
            "then takes what failed"
        );
    }
}
