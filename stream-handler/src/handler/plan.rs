//! What a batch is made into before any sink sees it: each record decoded once.

use shared::domain::{ChangeEvent, DocumentId, Field};

use crate::decode::Unfinished;

/// A decoded record on its way to the sinks.
pub(super) enum Pending {
    Ready(Box<ChangeEvent>),
    /// Its bodies are paged out: read them back first.
    Unfinished(Box<Unfinished>),
}

impl Pending {
    pub(super) fn document_id(&self) -> DocumentId {
        match self {
            Pending::Ready(change) => change.document_id,
            Pending::Unfinished(unfinished) => unfinished.document_id(),
        }
    }

    /// Whether it changes the body or deletes the document.
    pub(super) fn replaces_body(&self) -> bool {
        match self {
            Pending::Ready(change) => change.touches(Field::Body) || change.new.is_none(),
            // Never a deletion; the store writes an operation whenever the body changes.
            Pending::Unfinished(unfinished) => unfinished.ops().is_some(),
        }
    }
}
