//! Which taken jobs the worker analyses now, as a pure state type (no I/O, no clock of
//! its own): someone typing queues a job per keystroke, and each analysis is announced
//! to every subscriber of the document. So the worker holds a document's jobs until the
//! document has been quiet for `settle` (no newer job for it), or until the first of
//! them has waited `max_wait` (a long typing session still sees its analysis refreshed),
//! and then works them newest first: the newest analyses the document as it is by then,
//! and the older ones find it analysed.

use std::collections::HashMap;
use std::time::Duration;

use shared::domain::DocumentId;
use shared::ports::ReceivedJob;
use tokio::time::Instant;

/// A document's jobs held for one analysis.
#[derive(Debug)]
struct Held {
    jobs: Vec<ReceivedJob>,
    /// When the first of them was taken.
    first: Instant,
    /// When the latest of them was taken.
    last: Instant,
}

impl Held {
    fn due(&self, settle: Duration, max_wait: Duration) -> Instant {
        (self.last + settle).min(self.first + max_wait)
    }
}

/// The jobs taken and not yet worked, by document.
#[derive(Debug)]
pub(super) struct Gathering {
    settle: Duration,
    max_wait: Duration,
    held: HashMap<DocumentId, Held>,
}

impl Gathering {
    pub(super) fn new(settle: Duration, max_wait: Duration) -> Self {
        Self {
            settle,
            max_wait,
            held: HashMap::new(),
        }
    }

    /// Holds a job taken at `now`.
    pub(super) fn add(&mut self, job: ReceivedJob, now: Instant) {
        let held = self
            .held
            .entry(job.job.document_id)
            .or_insert_with(|| Held {
                jobs: Vec::new(),
                first: now,
                last: now,
            });
        held.jobs.push(job);
        held.last = now;
    }

    /// The jobs due at `now`, by document, each document's newest first; they are no
    /// longer held.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<Vec<ReceivedJob>> {
        let (settle, max_wait) = (self.settle, self.max_wait);
        let due: Vec<DocumentId> = self
            .held
            .iter()
            .filter(|(_, held)| held.due(settle, max_wait) <= now)
            .map(|(id, _)| *id)
            .collect();
        let mut jobs = Vec::new();
        for id in due {
            if let Some(mut held) = self.held.remove(&id) {
                held.jobs.sort_by_key(|j| std::cmp::Reverse(j.job.version));
                jobs.push(held.jobs);
            }
        }
        jobs
    }

    /// When the next held document is due; `None` when nothing is held.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.held
            .values()
            .map(|held| held.due(self.settle, self.max_wait))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use shared::ports::AnalysisJob;

    use super::*;

    const SETTLE: Duration = Duration::from_millis(250);
    const MAX_WAIT: Duration = Duration::from_secs(2);

    fn job(document_id: DocumentId, version: u64) -> ReceivedJob {
        ReceivedJob {
            job: AnalysisJob {
                document_id,
                version,
            },
            receipt: format!("{document_id}/{version}"),
            attempts: 1,
        }
    }

    /// Each document's versions, as taken.
    fn versions(taken: &[Vec<ReceivedJob>]) -> Vec<Vec<u64>> {
        taken
            .iter()
            .map(|jobs| jobs.iter().map(|j| j.job.version).collect())
            .collect()
    }

    #[test]
    fn a_document_is_analysed_once_it_has_been_quiet_for_the_settle_time() {
        let doc = DocumentId::generate();
        let start = Instant::now();
        let mut gathering = Gathering::new(SETTLE, MAX_WAIT);
        assert_eq!(gathering.next_due(), None);
        gathering.add(job(doc, 1), start);
        gathering.add(job(doc, 2), start + Duration::from_millis(100));
        assert_eq!(
            gathering.next_due(),
            Some(start + Duration::from_millis(100) + SETTLE)
        );
        assert!(
            gathering.take_due(start + SETTLE).is_empty(),
            "still typing"
        );
        let due = gathering.take_due(start + Duration::from_millis(100) + SETTLE);
        assert_eq!(versions(&due), [[2, 1]], "one document's, newest first");
        assert_eq!(gathering.next_due(), None, "no longer held");
    }

    #[test]
    fn a_document_edited_without_pause_is_analysed_after_the_longest_wait() {
        let doc = DocumentId::generate();
        let start = Instant::now();
        let mut gathering = Gathering::new(SETTLE, MAX_WAIT);
        let mut version = 0;
        let mut now = start;
        while now < start + MAX_WAIT {
            version += 1;
            gathering.add(job(doc, version), now);
            now += Duration::from_millis(50);
        }
        assert_eq!(gathering.next_due(), Some(start + MAX_WAIT));
        let due = gathering.take_due(start + MAX_WAIT);
        assert_eq!(due.len(), 1, "one document");
        assert_eq!(due[0].len(), version as usize);
    }

    #[test]
    fn documents_are_held_and_released_each_on_its_own() {
        let (a, b) = (DocumentId::generate(), DocumentId::generate());
        let start = Instant::now();
        let mut gathering = Gathering::new(SETTLE, MAX_WAIT);
        gathering.add(job(a, 1), start);
        gathering.add(job(b, 7), start + Duration::from_millis(200));
        assert_eq!(versions(&gathering.take_due(start + SETTLE)), [[1]]);
        assert_eq!(
            gathering.next_due(),
            Some(start + Duration::from_millis(200) + SETTLE)
        );
        assert_eq!(
            versions(&gathering.take_due(start + Duration::from_millis(450))),
            [[7]]
        );
    }
}
