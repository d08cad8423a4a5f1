//! The [`AuditLog`] contract: one entry per (document, version), idempotent appends,
//! listing in version order after a version.

use std::sync::Arc;

use shared::domain::{AuditDetail, AuditEntry, ChangeKind, DocumentId, Field, TextChange};
use shared::ports::{AuditLog, WriteOutcome};

use super::{now_millis, unique_user};

fn entry(document: DocumentId, version: u64, action: ChangeKind) -> AuditEntry {
    AuditEntry {
        event_id: format!("event-{version}"),
        document_id: document,
        version,
        action,
        actor: unique_user("actor"),
        at: now_millis(),
        changed_fields: vec![Field::Title, Field::Body],
        detail: AuditDetail {
            title: Some(TextChange {
                from: (version > 1).then(|| format!("v{}", version - 1)),
                to: Some(format!("v{version}")),
            }),
            body_diff: Some(format!("-old\n+new {version}\n")),
            collaborators: Vec::new(),
            ops: None,
        },
    }
}

pub async fn run(audit: Arc<dyn AuditLog>) {
    let document = DocumentId::generate();
    let other = DocumentId::generate();
    let entries: Vec<_> = (1..=4)
        .map(|v| {
            entry(
                document,
                v,
                if v == 1 {
                    ChangeKind::Created
                } else {
                    ChangeKind::Updated
                },
            )
        })
        .collect();
    // Appended out of order, as parallel deliveries may.
    for i in [1, 0, 3, 2] {
        assert_eq!(
            audit.append(&entries[i]).await.unwrap(),
            WriteOutcome::Applied
        );
    }
    assert_eq!(
        audit
            .append(&entry(other, 1, ChangeKind::Created))
            .await
            .unwrap(),
        WriteOutcome::Applied
    );

    // A redelivery changes nothing, even with other content.
    let mut again = entries[1].clone();
    again.event_id = "another-event".into();
    assert_eq!(
        audit.append(&again).await.unwrap(),
        WriteOutcome::AlreadyApplied
    );
    assert_eq!(
        audit.get(&document, 2).await.unwrap().as_ref(),
        Some(&entries[1])
    );

    assert_eq!(audit.list(&document, None, 100).await.unwrap(), entries);
    assert_eq!(
        audit.list(&document, Some(2), 100).await.unwrap(),
        entries[2..]
    );
    assert_eq!(
        audit.list(&document, Some(1), 2).await.unwrap(),
        entries[1..3]
    );
    assert!(
        audit
            .list(&document, Some(4), 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(audit.get(&document, 9).await.unwrap(), None);
    assert!(
        audit
            .list(&DocumentId::generate(), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}
