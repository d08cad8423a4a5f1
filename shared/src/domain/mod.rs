//! The domain: documents, who may do what with them, the changes they go through and
//! what the fan-out derives from those changes. Every value here is valid by
//! construction: raw input is parsed into these types at the edge.

mod analysis;
mod audit;
mod change;
mod document;
mod ids;
pub mod search_query;
mod validation;

pub use analysis::{Analysis, TopTerm};
pub use audit::{AuditDetail, AuditEntry, CollaboratorChange, TextChange};
pub use change::{ChangeEvent, ChangeKind, Field};
pub use document::{
    Access, Body, Collaborators, Document, MAX_BODY_BYTES, MAX_COLLABORATORS, MAX_TITLE_CHARS,
    Role, Title, check_collaborators,
};
pub use ids::{DocumentId, MAX_USER_ID_LEN, UserId};
pub use validation::ValidationError;
