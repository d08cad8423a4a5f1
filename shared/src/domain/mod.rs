//! The domain: documents, who may do what with them, the changes they go through (down
//! to the text operations people editing together send) and what the fan-out derives
//! from those changes. Every value here is valid by construction: raw input is parsed
//! into these types at the edge.

mod analysis;
mod audit;
mod change;
mod document;
mod ids;
mod operation;
pub mod search_query;
mod validation;
mod version;

pub use analysis::{Analysis, TopTerm};
pub use audit::{AuditDetail, AuditEntry, CollaboratorChange, TextChange};
pub use change::{ChangeEvent, ChangeKind, Field};
pub use document::{
    Access, Body, Collaborators, Document, DocumentHead, MAX_BODY_BYTES, MAX_COLLABORATORS,
    MAX_TITLE_CHARS, Role, Title, check_collaborators,
};
pub use ids::{DocumentId, MAX_USER_ID_LEN, UserId};
pub use operation::{Component, MAX_COMPONENTS, OperationError, TextOperation};
pub use validation::ValidationError;
pub use version::{DocumentVersion, EditOutcome, KEPT_OPERATIONS, SNAPSHOT_EVERY, keeps_snapshot};
