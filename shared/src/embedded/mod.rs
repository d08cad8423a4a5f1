//! The embedded adapters: every port on one machine, in the data directory (SQLite for
//! documents, the change log, audit, queue and dead letters; tantivy for search).

pub mod change_log;
pub mod document_store;
pub mod sqlite;

pub use change_log::{ChangeFeed, ChangeRecord};
pub use document_store::SqliteDocumentStore;
pub use sqlite::DATABASE_FILE;
