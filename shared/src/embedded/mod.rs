//! The embedded adapters: every port on one machine, in the data directory (SQLite for
//! documents, the change log, audit, queue, dead letters and the webhook outbox; tantivy for search), and
//! what an operator does to that directory: its schema versions ([`schema`]), its lock
//! ([`lock`]) and backups of its database ([`backup`]).

pub mod analysis_queue;
pub mod analysis_store;
pub mod audit_log;
pub mod backup;
pub mod change_log;
mod change_tail;
pub mod checkpointer;
pub mod dead_letter;
pub mod document_store;
pub mod foreground;
pub mod group_commit;
pub mod lock;
pub mod schema;
pub mod search_index;
pub mod sqlite;
pub mod sqlite_error;
pub mod webhook_outbox;

pub use analysis_queue::SqliteAnalysisQueue;
pub use analysis_store::SqliteAnalysisStore;
pub use audit_log::SqliteAuditLog;
pub use change_log::{ChangeFeed, ChangeRecord};
pub use dead_letter::SqliteDeadLetterQueue;
pub use document_store::SqliteDocumentStore;
pub use lock::{DataDirLock, LOCK_FILE};
pub use search_index::{IndexedVersion, SEARCH_INDEX_DIR, TantivySearchIndex};
pub use sqlite::DATABASE_FILE;
pub use webhook_outbox::SqliteWebhookOutbox;
