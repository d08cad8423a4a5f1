//! The ports: what the core needs from the outside world, as small traits. Each has an
//! embedded adapter (SQLite, tantivy, in-process) and an AWS adapter, and each method's
//! doc names the [`Error`](crate::Error) variants an adapter must return, so both behave
//! alike.

mod analysis;
mod attempt_log;
mod audit_log;
mod connection_registry;
mod dead_letter;
mod document_store;
mod event_bus;
mod notifier;
mod search_index;

pub use analysis::{AnalysisJob, AnalysisQueue, AnalysisStore, ReceivedJob};
pub use attempt_log::AttemptLog;
pub use audit_log::AuditLog;
pub use connection_registry::{
    Connection, ConnectionId, ConnectionRegistry, PresenceCursor, SubscribeOptions, Subscriber,
};
pub use dead_letter::{DeadLetter, DeadLetterQueue, DeadLetterSource};
pub use document_store::{BodyArchive, DocumentPage, DocumentStore};
pub use event_bus::EventBus;
pub use notifier::Notifier;
pub use search_index::{SearchDocument, SearchHit, SearchIndex, SearchPage, SearchQuery};

/// The outcome of an idempotent or version-guarded write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The write changed the target.
    Applied,
    /// The target already held this write or a newer one; nothing changed.
    AlreadyApplied,
}
