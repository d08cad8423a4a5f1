//! The [`AnalysisStore`] contract: the latest analysis per document, never replaced by
//! an older or equal version.

use std::sync::Arc;

use shared::domain::{Analysis, DocumentId, TopTerm};
use shared::ports::{AnalysisStore, WriteOutcome};

use super::now_millis;

fn analysis(document: DocumentId, version: u64, words: u64) -> Analysis {
    Analysis {
        document_id: document,
        version,
        word_count: words,
        reading_time_seconds: words * 60 / 200,
        language: "eng".into(),
        top_terms: vec![
            TopTerm {
                term: "zebra".into(),
                weight: 0.75,
            },
            TopTerm {
                term: "stripe".into(),
                weight: 0.25,
            },
        ],
        analyzed_at: now_millis(),
    }
}

pub async fn run(store: Arc<dyn AnalysisStore>) {
    let document = DocumentId::generate();
    assert_eq!(store.get(&document).await.unwrap(), None);
    let v2 = analysis(document, 2, 200);
    assert_eq!(store.put(&v2).await.unwrap(), WriteOutcome::Applied);
    assert_eq!(
        store.put(&analysis(document, 1, 10)).await.unwrap(),
        WriteOutcome::AlreadyApplied
    );
    assert_eq!(
        store.put(&analysis(document, 2, 20)).await.unwrap(),
        WriteOutcome::AlreadyApplied
    );
    assert_eq!(store.get(&document).await.unwrap().as_ref(), Some(&v2));
    let v5 = analysis(document, 5, 500);
    assert_eq!(store.put(&v5).await.unwrap(), WriteOutcome::Applied);
    assert_eq!(store.get(&document).await.unwrap().as_ref(), Some(&v5));
}
