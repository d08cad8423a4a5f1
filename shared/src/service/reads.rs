//! The read side: what the fan-out derived from the documents (search, the audit trail,
//! analyses), each read behind the same question as every other — may this caller read
//! this document now? ([`readable`]).
//!
//! A document is readable by its owner and its collaborators, whatever their role, as
//! it stands now: a collaborator added later reads its whole history and every earlier
//! version (access is to the document, not to a range of its versions), and one who was
//! removed reads none of it. A document that does not exist for the caller is
//! [`Error::NotFound`], never `Forbidden`, so that ids cannot be probed. Search answers
//! only hits the caller can read now, whatever the index says.

use std::sync::Arc;

use crate::domain::{Access, Analysis, AuditEntry, DocumentHead, DocumentId, UserId};
use crate::ports::{AnalysisStore, AuditLog, DocumentStore, SearchIndex, SearchPage, SearchQuery};
use crate::{Error, Result};

/// The document's head and what `actor` may do with it; `NotFound` when it does not
/// exist for them. Reads the head alone, never the body.
pub async fn readable(
    documents: &dyn DocumentStore,
    actor: &UserId,
    id: &DocumentId,
) -> Result<(DocumentHead, Access)> {
    let head = documents.head(id).await?.ok_or(Error::NotFound)?;
    let access = head.access_for(actor).ok_or(Error::NotFound)?;
    Ok((head, access))
}

/// The read side's ports: the documents (for access), the audit trail, the analyses,
/// and the search index when this deployment has one.
#[derive(Clone)]
pub struct ReadService {
    documents: Arc<dyn DocumentStore>,
    audit: Arc<dyn AuditLog>,
    analyses: Arc<dyn AnalysisStore>,
    search: Option<Arc<dyn SearchIndex>>,
}

impl ReadService {
    pub fn new(
        documents: Arc<dyn DocumentStore>,
        audit: Arc<dyn AuditLog>,
        analyses: Arc<dyn AnalysisStore>,
        search: Option<Arc<dyn SearchIndex>>,
    ) -> Self {
        Self {
            documents,
            audit,
            analyses,
            search,
        }
    }

    /// A page of `query.reader`'s search hits: the index's, less those the reader cannot
    /// read now (the index may lag behind a change of collaborators).
    ///
    /// Errors: `Unavailable` when this deployment has no search index.
    pub async fn search(&self, query: &SearchQuery) -> Result<SearchPage> {
        let index = self
            .search
            .as_ref()
            .ok_or_else(|| Error::Unavailable("search is not available on this server".into()))?;
        let mut page = index.search(query).await?;
        let mut hits = Vec::with_capacity(page.hits.len());
        for hit in page.hits {
            if let Some(head) = self.documents.head(&hit.id).await?
                && head.access_for(&query.reader).is_some()
            {
                hits.push(hit);
            }
        }
        page.hits = hits;
        Ok(page)
    }

    /// Up to `limit` audit entries of `id` after version `after`, oldest first.
    pub async fn history(
        &self,
        actor: &UserId,
        id: &DocumentId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        readable(self.documents.as_ref(), actor, id).await?;
        self.audit.list(id, after, limit).await
    }

    /// The audit entry of `id` at `version`, with its detail.
    pub async fn history_entry(
        &self,
        actor: &UserId,
        id: &DocumentId,
        version: u64,
    ) -> Result<AuditEntry> {
        readable(self.documents.as_ref(), actor, id).await?;
        self.audit.get(id, version).await?.ok_or(Error::NotFound)
    }

    /// The latest analysis of `id`; `NotFound` until the first one.
    pub async fn analysis(&self, actor: &UserId, id: &DocumentId) -> Result<Analysis> {
        readable(self.documents.as_ref(), actor, id).await?;
        self.analyses.get(id).await?.ok_or(Error::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::json;

    use super::*;
    use crate::clock::SystemClock;
    use crate::domain::{Body, ChangeKind, Field, Title};
    use crate::embedded::{
        DATABASE_FILE, SqliteAnalysisStore, SqliteAuditLog, SqliteDocumentStore,
    };
    use crate::service::{DocumentService, NewDocument};

    fn user(name: &str) -> UserId {
        UserId::parse(name).unwrap()
    }

    fn entry(id: DocumentId, version: u64, actor: &UserId) -> AuditEntry {
        AuditEntry {
            event_id: format!("event-{version}"),
            document_id: id,
            version,
            action: ChangeKind::Updated,
            actor: actor.clone(),
            at: Utc::now(),
            changed_fields: vec![Field::Body],
            detail: Default::default(),
        }
    }

    /// The embedded stores, with no search index: history and analysis do not need one.
    #[tokio::test]
    async fn every_read_asks_who_may_read_the_document_now() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(DATABASE_FILE);
        let store = Arc::new(SqliteDocumentStore::open(&db).unwrap());
        let audit = Arc::new(SqliteAuditLog::open(&db).unwrap());
        let docs = DocumentService::new(store.clone(), Arc::new(SystemClock));
        let reads = ReadService::new(
            store,
            audit.clone(),
            Arc::new(SqliteAnalysisStore::open(&db).unwrap()),
            None,
        );
        let (ann, bob) = (user("ann"), user("bob"));
        let doc = docs
            .create(
                &ann,
                NewDocument {
                    title: Title::parse("Plan").unwrap(),
                    body: Body::parse("one").unwrap(),
                    collaborators: Default::default(),
                },
            )
            .await
            .unwrap();
        for v in 1..=2 {
            audit.append(&entry(doc.id, v, &ann)).await.unwrap();
        }

        // A stranger: not found, whatever is asked.
        assert!(matches!(
            reads.history(&bob, &doc.id, None, 10).await,
            Err(Error::NotFound)
        ));
        assert!(matches!(
            reads.history_entry(&bob, &doc.id, 1).await,
            Err(Error::NotFound)
        ));
        assert!(matches!(
            reads.analysis(&bob, &doc.id).await,
            Err(Error::NotFound)
        ));

        // Added later, bob reads the whole history, from before he was added.
        docs.patch(
            &ann,
            &doc.id,
            Some(1),
            &json!({"collaborators": {"bob": "viewer"}}),
        )
        .await
        .unwrap();
        let history = reads.history(&bob, &doc.id, None, 10).await.unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(
            reads.history_entry(&bob, &doc.id, 1).await.unwrap().version,
            1
        );
        assert!(
            matches!(reads.analysis(&bob, &doc.id).await, Err(Error::NotFound)),
            "not analysed yet"
        );

        // Removed, he reads none of it again.
        docs.patch(
            &ann,
            &doc.id,
            Some(2),
            &json!({"collaborators": {"bob": null}}),
        )
        .await
        .unwrap();
        assert!(matches!(
            reads.history(&bob, &doc.id, None, 10).await,
            Err(Error::NotFound)
        ));

        // Without a search index, search alone is unavailable.
        let query = SearchQuery {
            query: "plan".parse().unwrap(),
            reader: ann.clone(),
            limit: 10,
            offset: 0,
        };
        assert!(matches!(
            reads.search(&query).await,
            Err(Error::Unavailable(_))
        ));
        assert_eq!(
            reads.history(&ann, &doc.id, None, 10).await.unwrap().len(),
            2
        );
    }
}
