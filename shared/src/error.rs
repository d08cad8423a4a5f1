//! The one error type of the domain and its ports. Adapters translate their backend's
//! failures into these variants (each port method says which it may return); the HTTP
//! layer maps them to problem details, the fan-out decides from them whether to retry.

use crate::domain::ValidationError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The thing does not exist, or does not exist for the caller.
    #[error("not found")]
    NotFound,
    /// A conditional write met another version than the one it expected.
    #[error("version mismatch: the current version is {current}")]
    VersionMismatch { current: u64 },
    /// A write that needs `If-Match` came without it.
    #[error("this write needs an If-Match header with the version it replaces")]
    PreconditionRequired,
    /// The caller may see the thing but not do this to it.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// An insert met an existing key.
    #[error("already exists")]
    AlreadyExists,
    /// Input that does not parse into the domain.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// A text operation that is malformed or does not fit the body it names.
    #[error("invalid operation: {0}")]
    InvalidOperation(String),
    /// An edit's base version is older than the operations the server keeps: the
    /// client must fetch the document again. `oldest` is the oldest base still accepted.
    #[error("base version gone: the oldest base version kept is {oldest}")]
    BaseVersionGone { oldest: u64 },
    /// A search query outside the search language or its limits
    /// ([`search_query`](crate::domain::search_query)).
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// Input over a size limit.
    #[error("too large: {0}")]
    TooLarge(String),
    /// A backend failure that may succeed when retried (busy database, throttling,
    /// timeouts, a sink that is down).
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
    /// The server's storage is full: nothing was written. Retrying succeeds once an
    /// operator has freed space.
    #[error("storage full: {0}")]
    StorageFull(String),
    /// The server's storage is read-only: nothing was written. Retrying succeeds once
    /// an operator has made it writable again.
    #[error("storage read-only: {0}")]
    StorageReadOnly(String),
    /// A backend refused for a reason only its operator can fix: access denied by an
    /// IAM policy, a bus or queue that does not exist. Nothing was taken. The request
    /// itself is sound, so retrying succeeds once the deployment is fixed: the fan-out
    /// fails the batch (an alarm fires) and never dead-letters the record for it.
    #[error("blocked until an operator acts: {0}")]
    Blocked(String),
    /// Anything else: a bug or a backend failure that retrying will not fix.
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl Error {
    /// Whether the same operation may succeed if tried again later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Unavailable(_)
                | Error::StorageFull(_)
                | Error::StorageReadOnly(_)
                | Error::Blocked(_)
        )
    }

    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Error::Invalid(ValidationError::new(field, message))
    }
}

impl From<crate::domain::search_query::QueryError> for Error {
    fn from(e: crate::domain::search_query::QueryError) -> Self {
        Error::InvalidQuery(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
