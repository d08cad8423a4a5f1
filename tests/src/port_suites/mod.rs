//! One behavioural suite per port, written once against the trait and run against both
//! adapters — the embedded one in plain `cargo test`, the AWS one against the emulators
//! (the `aws` test target) — so the two modes cannot drift.
//!
//! Each suite is an async function over `Arc<dyn Port>` that panics on the first
//! difference from the port's contract. Suites use fresh ids and user names, so they
//! may share a table or index with other tests.

pub mod analysis_queue;
pub mod analysis_store;
pub mod audit_log;
pub mod connection_registry;
pub mod dead_letter;
pub mod document_store;
pub mod notifier;
pub mod search_index;

use chrono::{DateTime, TimeDelta, Utc};
use shared::domain::{Body, Collaborators, Document, DocumentId, Role, Title, UserId};

/// A user id unique to this run: `{name}-{random}`.
pub fn unique_user(name: &str) -> UserId {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    UserId::parse(format!("{name}-{}", &suffix[..12])).expect("a valid user id")
}

/// A time truncated to milliseconds, as every adapter stores it.
pub fn now_millis() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).expect("a valid time")
}

/// Version 1 of a new document.
pub fn new_document(
    owner: &UserId,
    title: &str,
    body: &str,
    collaborators: &[(&UserId, Role)],
) -> Document {
    let now = now_millis();
    Document {
        id: DocumentId::generate(),
        title: Title::parse(title).expect("a valid title"),
        body: Body::parse(body).expect("a valid body"),
        owner: owner.clone(),
        collaborators: collaborators
            .iter()
            .map(|(u, r)| ((*u).clone(), *r))
            .collect::<Collaborators>(),
        version: 1,
        created_at: now,
        updated_at: now,
        updated_by: owner.clone(),
    }
}

/// The next version of `doc`, changed by `by` through `change`.
pub fn next_version(doc: &Document, by: &UserId, change: impl FnOnce(&mut Document)) -> Document {
    let mut next = doc.clone();
    change(&mut next);
    next.version = doc.version + 1;
    next.updated_at = doc.updated_at + TimeDelta::milliseconds(1);
    next.updated_by = by.clone();
    next
}

/// The connection ids of the document's subscribers, sorted.
pub async fn subscriber_ids(
    registry: &dyn shared::ports::ConnectionRegistry,
    document: &DocumentId,
) -> Vec<String> {
    let mut ids: Vec<_> = registry
        .subscribers(document)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.connection.to_string())
        .collect();
    ids.sort();
    ids
}
