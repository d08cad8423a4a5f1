use async_trait::async_trait;

use crate::Result;
use crate::domain::{
    Body, Document, DocumentHead, DocumentId, DocumentVersion, TextOperation, UserId,
};

/// A page of a member's documents, newest first.
#[derive(Debug, Clone)]
pub struct DocumentPage {
    pub items: Vec<Document>,
    /// Present when more documents follow: pass it back as `after`.
    pub next: Option<DocumentId>,
}

/// Where documents live. Every successful mutation also emits exactly one change record
/// (the embedded change log, or the DynamoDB table's stream) atomically with it; a
/// rejected mutation emits nothing.
#[async_trait]
pub trait DocumentStore: Send + Sync + 'static {
    /// Stores a new document (version 1) and emits an INSERT record with its NewImage.
    ///
    /// Errors: [`Error::AlreadyExists`](crate::Error::AlreadyExists) when the id is taken;
    /// [`Error::Unavailable`](crate::Error::Unavailable) on a transient backend failure;
    /// [`Error::StorageFull`](crate::Error::StorageFull) or
    /// [`Error::StorageReadOnly`](crate::Error::StorageReadOnly) when the storage cannot
    /// take writes (nothing is written).
    async fn create(&self, doc: &Document) -> Result<()>;

    /// The document, read after every acknowledged write (strongly consistent).
    ///
    /// Errors: `Unavailable` on a transient backend failure. A missing document is `Ok(None)`.
    async fn get(&self, id: &DocumentId) -> Result<Option<Document>>;

    /// The document's head (who may read it, its version) without its body: what an
    /// access check needs. `Ok(None)` when missing or deleted. Read after every
    /// acknowledged write, like [`DocumentStore::get`], which the default reads.
    ///
    /// Errors: `Unavailable`.
    async fn head(&self, id: &DocumentId) -> Result<Option<DocumentHead>> {
        Ok(self.get(id).await?.map(DocumentHead::from))
    }

    /// Replaces the document if its stored version is `doc.version - 1`, and emits a
    /// MODIFY record with both images. `body_ops` turns the stored body into `doc.body`
    /// (the no-op when the body is unchanged); it is kept with the version, atomically
    /// with the write, and carried in the record's NewImage (`ops`).
    ///
    /// Errors: [`Error::VersionMismatch`](crate::Error::VersionMismatch) with the stored
    /// version when it is another; [`Error::NotFound`](crate::Error::NotFound) when the
    /// document is gone; `Unavailable`.
    async fn update(&self, doc: &Document, body_ops: &TextOperation) -> Result<()>;

    /// The body operations of the versions after `base`, oldest first, up to the latest
    /// kept (a version that left the body alone has the no-op).
    ///
    /// Errors: [`Error::BaseVersionGone`](crate::Error::BaseVersionGone) with the oldest
    /// version kept when `base` is not kept; `NotFound` when the document is gone or was
    /// never there; `Unavailable`.
    async fn operations_since(&self, id: &DocumentId, base: u64) -> Result<Vec<TextOperation>>;

    /// The document exactly as it was at `version`: `Ok(None)` when that version is not
    /// kept or never existed (and for every version of a deleted document).
    ///
    /// Errors: `Unavailable`.
    async fn version(&self, id: &DocumentId, version: u64) -> Result<Option<DocumentVersion>>;

    /// Deletes the document if its stored version is `last.version - 1`, and emits a
    /// REMOVE record whose OldImage is `last`: the document stamped with the deletion
    /// (its own version, `updatedBy` the deleter, `updatedAt` the time), marked deleted.
    ///
    /// Errors: `VersionMismatch`, `NotFound`, `Unavailable`, as for `update`.
    async fn delete(&self, last: &Document) -> Result<()>;

    /// The documents `member` owns or collaborates on, newest (highest id) first,
    /// starting after `after`. Costs in proportion to the page, not to all documents.
    ///
    /// Errors: `Unavailable`.
    async fn list_for_member(
        &self,
        member: &UserId,
        limit: usize,
        after: Option<&DocumentId>,
    ) -> Result<DocumentPage>;
}

/// Where the bodies of versions are read back when a change record does not carry them
/// (an image whose body is paged out, see [`crate::codec::page_out_body`]), and
/// forgotten once a deletion has been fanned out. The AWS document store is one: its
/// versions table keeps every version's body (a snapshot and the operations after it).
#[async_trait]
pub trait BodyArchive: Send + Sync + 'static {
    /// The body of `id` at `version`: `Ok(None)` when that version is not kept (the
    /// document's versions were forgotten after its deletion was fanned out).
    ///
    /// Errors: `Unavailable` on a transient backend failure.
    async fn body_at(&self, id: &DocumentId, version: u64) -> Result<Option<Body>>;

    /// Forgets every kept version of a deleted document. Called by the fan-out after
    /// it has delivered the deletion, so that every earlier change could still read
    /// its bodies; idempotent.
    ///
    /// Errors: `Unavailable`.
    async fn forget(&self, id: &DocumentId) -> Result<()>;
}
