//! The audit sink: one entry per (document, version) in the [`AuditLog`], with what it
//! takes to review the change: the title before and after, a unified diff of the body
//! and the collaborators added, removed or given another role.
//!
//! The log ignores a second entry for the same key, so redelivery changes nothing.
//!
//! With [`AuditSinkConfig::append_at_flush`] the entries of a batch are held until its
//! flush and appended in one commit ([`super::held`]).

mod diff;

use std::sync::Arc;

use async_trait::async_trait;
use shared::domain::{
    AuditDetail, AuditEntry, ChangeEvent, ChangeKind, CollaboratorChange, Field, TextChange,
};
use shared::ports::AuditLog;
use shared::{Error, Result};

use super::held::Held;
use super::{Flush, Flushed, Sink};
use crate::decode::RecordMeta;

pub use diff::{MAX_BODY_DIFF_BYTES, body_diff};

/// How the audit sink behaves.
#[derive(Debug, Clone)]
pub struct AuditSinkConfig {
    /// The largest body diff kept in an entry, in bytes (see [`MAX_BODY_DIFF_BYTES`]).
    pub max_body_diff_bytes: usize,
    /// Whether a batch's entries are held until its flush and appended together, rather
    /// than each as its change is delivered. Right for a trail whose failures are its
    /// own, never one entry's (the embedded one: a commit per batch instead of one per
    /// change); a trail that may refuse one entry (DynamoDB, over its item size) takes
    /// each on its own, so that change alone is dead-lettered. A deletion's entry is
    /// appended at once, with the entries held before it: a delivered deletion may
    /// forget the bodies a retry of it would need.
    pub append_at_flush: bool,
}

impl Default for AuditSinkConfig {
    fn default() -> Self {
        Self {
            max_body_diff_bytes: MAX_BODY_DIFF_BYTES,
            append_at_flush: false,
        }
    }
}

pub struct AuditSink {
    log: Arc<dyn AuditLog>,
    config: AuditSinkConfig,
    held: Held<AuditEntry>,
}

impl AuditSink {
    pub fn new(log: Arc<dyn AuditLog>, config: AuditSinkConfig) -> Self {
        Self {
            log,
            config,
            held: Held::default(),
        }
    }
}

/// The audit entry of a change.
pub fn entry_for(change: &ChangeEvent, event_id: &str, max_body_diff_bytes: usize) -> AuditEntry {
    let old = change.old.as_ref();
    let new = change.new.as_ref();
    let mut detail = AuditDetail::default();
    if new.is_some() {
        if change.touches(Field::Title) {
            detail.title = Some(TextChange {
                from: old.map(|d| d.title.as_str().to_owned()),
                to: new.map(|d| d.title.as_str().to_owned()),
            });
        }
        if change.touches(Field::Body) {
            detail.body_diff = Some(body_diff(
                old.map_or("", |d| d.body.as_str()),
                new.map_or("", |d| d.body.as_str()),
                change.version,
                max_body_diff_bytes,
            ));
            detail.ops = change.ops.clone();
        }
        if change.touches(Field::Collaborators) {
            detail.collaborators = collaborator_changes(change);
        }
    }
    AuditEntry {
        event_id: event_id.to_owned(),
        document_id: change.document_id,
        version: change.version,
        action: change.kind,
        actor: change.actor.clone(),
        at: change.at,
        changed_fields: change.changed_fields.clone(),
        detail,
    }
}

fn collaborator_changes(change: &ChangeEvent) -> Vec<CollaboratorChange> {
    let empty = Default::default();
    let before = change.old.as_ref().map_or(&empty, |d| &d.collaborators);
    let after = change.new.as_ref().map_or(&empty, |d| &d.collaborators);
    let mut changes = Vec::new();
    for (user, role) in before {
        match after.get(user) {
            Some(now) if now == role => {}
            now => changes.push(CollaboratorChange {
                user: user.clone(),
                from: Some(*role),
                to: now.copied(),
            }),
        }
    }
    for (user, role) in after {
        if !before.contains_key(user) {
            changes.push(CollaboratorChange {
                user: user.clone(),
                from: None,
                to: Some(*role),
            });
        }
    }
    changes.sort_by(|a, b| a.user.cmp(&b.user));
    changes
}

#[async_trait]
impl Sink for AuditSink {
    fn name(&self) -> &'static str {
        "audit"
    }

    async fn deliver(&self, change: &ChangeEvent, record: &RecordMeta) -> Result<()> {
        let entry = entry_for(change, &record.event_id, self.config.max_body_diff_bytes);
        if !self.config.append_at_flush {
            self.log.append(&entry).await?;
            return Ok(());
        }
        self.held.push(entry);
        if change.kind == ChangeKind::Deleted {
            // A delivered deletion may forget the bodies a retry of it would need: its
            // entry is appended now, with those held before it.
            self.flush(Flush::Now).await?;
        }
        Ok(())
    }

    async fn flush(&self, _when: Flush) -> Result<Flushed> {
        let taken = self.held.take().await;
        let written = self.log.append_all(taken.items()).await;
        taken.settle(written).map(|()| Flushed::Durable)
    }

    fn is_retriable(&self, err: &Error) -> bool {
        err.is_transient()
    }

    async fn health(&self) -> Result<()> {
        // A read of an entry that cannot exist: proves the trail answers.
        self.log
            .get(&shared::domain::DocumentId::generate(), 0)
            .await
            .map(|_| ())
    }
}
