//! The [`SearchIndex`] on OpenSearch.
//!
//! - The index and its mapping are created by the first write, idempotently (an index
//!   that exists already is fine); searching a missing index finds nothing. The mapping is strict: `id`, `readers` (keywords),
//!   `version` (long), `deleted` (boolean), `title` and `body` (text).
//! - Writes use external versioning with the document's version, so OpenSearch itself
//!   refuses an older (or the same) version: its 409 `version_conflict_engine_exception`
//!   means a newer version is there and the write is `AlreadyApplied`.
//! - A deletion indexes a tombstone (`deleted: true`, no text, no readers) at the
//!   deletion's version instead of removing the document, so a late older write still
//!   meets a newer version and gets its 409.
//! - Every search is filtered by `readers` = the caller and `deleted` = false. The
//!   caller's query comes parsed ([`search_query`]) and is mapped to the query DSL
//!   ([`to_query_dsl`]: `bool`, `match`, `match_phrase`, `prefix`) over `title`
//!   (boosted) and `body`, as the embedded index maps it; no user text ever reaches a
//!   query-string parser.
//! - A search has a time budget ([`SEARCH_TIME_BUDGET`]): OpenSearch's own `timeout`,
//!   and the client gives up a little after it. A search that timed out on either side
//!   is `Unavailable`, never a partial page.
//! - Hits carry no score (it comes from statistics over every reader's documents).
//! - Snippets are OpenSearch highlights with `<mark>` tags and the `html` encoder, so
//!   the text around the marks is HTML-escaped; a hit matched only in its title shows
//!   the start of its body, escaped the same way.
//! - Writes are held until `flush`, the highest version of each document only, and then
//!   sent in one `_bulk` request (a batch of keystrokes on one document is one item).
//!   An item's 409 is a newer version already there; any other item failure fails the
//!   flush, and every held write stays held for the next one (so a retried batch sends
//!   them again).
//! - A flush forces no refresh: the index's refresh interval (1 s by default) decides
//!   when the writes become searchable. With `wait_for_refresh` (tests, and anyone who
//!   needs read-your-writes) it waits for that refresh (`refresh=wait_for`).

use std::collections::HashMap;

use async_trait::async_trait;
use opensearch::OpenSearch;
use opensearch::http::headers::HeaderMap;
use opensearch::http::request::JsonBody;
use opensearch::http::response::Response;
use opensearch::http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::domain::DocumentId;
use crate::domain::search_query::{self, Match, SearchField};
use crate::ports::{SearchDocument, SearchHit, SearchIndex, SearchPage, SearchQuery, WriteOutcome};
use crate::{Error, Result};

/// Characters of body in a snippet.
const SNIPPET_CHARS: u32 = 160;
/// How long OpenSearch may spend on one search.
pub const SEARCH_TIME_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);
/// How much longer than the budget the client waits for the answer.
const CLIENT_GRACE: std::time::Duration = std::time::Duration::from_millis(500);
/// How many indexed words a `prefix*` stands for at most.
const PREFIX_EXPANSIONS: u32 = 50;
/// A match in the title counts this much more than one in the body.
const TITLE_BOOST: f64 = 2.0;

/// The query DSL for a parsed query. The parser bounds the depth of the tree, so this
/// recursion is bounded too.
pub fn to_query_dsl(query: &search_query::Query) -> Value {
    use search_query::Query as Q;
    match query {
        Q::Match(m) => match_to_dsl(m),
        Q::Or(alternatives) => json!({
            "bool": {
                "should": alternatives.iter().map(to_query_dsl).collect::<Vec<_>>(),
                "minimum_should_match": 1
            }
        }),
        Q::And(clauses) => {
            let (excluded, required): (Vec<_>, Vec<_>) =
                clauses.iter().partition(|c| matches!(c, Q::Not(_)));
            let excluded: Vec<Value> = excluded
                .into_iter()
                .filter_map(|c| match c {
                    Q::Not(inner) => Some(to_query_dsl(inner)),
                    _ => None,
                })
                .collect();
            let mut bool_query = json!({
                "must": required.into_iter().map(to_query_dsl).collect::<Vec<_>>()
            });
            if !excluded.is_empty() {
                bool_query["must_not"] = Value::Array(excluded);
            }
            json!({ "bool": bool_query })
        }
        // The parser only puts a `Not` in an `And`; alone it means "all but".
        Q::Not(inner) => json!({
            "bool": { "must": { "match_all": {} }, "must_not": [to_query_dsl(inner)] }
        }),
    }
}

fn match_to_dsl(m: &Match) -> Value {
    let on = |field: &str, boost: f64| {
        if m.prefix {
            json!({ "prefix": { field: {
                "value": m.words[0],
                "rewrite": format!("top_terms_{PREFIX_EXPANSIONS}"),
                "boost": boost
            } } })
        } else if m.words.len() == 1 {
            json!({ "match": { field: { "query": m.words[0], "boost": boost } } })
        } else {
            json!({ "match_phrase": { field: { "query": m.words.join(" "), "boost": boost } } })
        }
    };
    match m.field {
        Some(SearchField::Title) => on("title", TITLE_BOOST),
        Some(SearchField::Body) => on("body", 1.0),
        None => json!({
            "bool": {
                "should": [on("title", TITLE_BOOST), on("body", 1.0)],
                "minimum_should_match": 1
            }
        }),
    }
}

/// The body of the `_search` request for a query.
fn search_body(query: &SearchQuery) -> Value {
    let limit = query.limit.max(1);
    json!({
        "from": query.offset,
        "size": limit + 1,
        "timeout": format!("{}ms", SEARCH_TIME_BUDGET.as_millis()),
        "track_total_hits": false,
        "_source": ["title", "version"],
        "query": {
            "bool": {
                "must": to_query_dsl(&query.query),
                "filter": [
                    { "term": { "readers": query.reader.as_str() } },
                    { "term": { "deleted": false } }
                ]
            }
        },
        "highlight": {
            "encoder": "html",
            "pre_tags": ["<mark>"],
            "post_tags": ["</mark>"],
            "fields": {
                "body": {
                    "fragment_size": SNIPPET_CHARS,
                    "number_of_fragments": 1,
                    "no_match_size": SNIPPET_CHARS
                }
            }
        }
    })
}

/// The search index in OpenSearch.
#[derive(Clone)]
pub struct OpenSearchIndex {
    client: OpenSearch,
    index: String,
    created: std::sync::Arc<OnceCell<()>>,
    /// The writes held for the next flush: the highest version of each document and
    /// its source.
    held: std::sync::Arc<std::sync::Mutex<HashMap<DocumentId, (u64, Value)>>>,
    wait_for_refresh: bool,
}

impl std::fmt::Debug for OpenSearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenSearchIndex")
            .field("index", &self.index)
            .finish()
    }
}

fn mapping() -> Value {
    json!({
        "mappings": {
            "dynamic": "strict",
            "properties": {
                "id": { "type": "keyword" },
                "version": { "type": "long" },
                "deleted": { "type": "boolean" },
                "readers": { "type": "keyword" },
                "title": { "type": "text" },
                "body": { "type": "text" }
            }
        }
    })
}

fn unavailable(what: &str, err: opensearch::Error) -> Error {
    Error::Unavailable(format!("OpenSearch {what}: {err}"))
}

fn hold_highest(
    held: &mut HashMap<DocumentId, (u64, Value)>,
    id: DocumentId,
    version: u64,
    source: Value,
) -> WriteOutcome {
    match held.get(&id) {
        Some((newer, _)) if *newer >= version => WriteOutcome::AlreadyApplied,
        _ => {
            held.insert(id, (version, source));
            WriteOutcome::Applied
        }
    }
}

/// The `_bulk` body of `writes`: each an `index` at its external version.
fn bulk_body(index: &str, writes: &HashMap<DocumentId, (u64, Value)>) -> String {
    let mut body = String::new();
    for (id, (version, source)) in writes {
        let action = json!({"index": {
            "_index": index,
            "_id": id.to_string(),
            "version": version,
            "version_type": "external",
        }});
        body.push_str(&action.to_string());
        body.push('\n');
        body.push_str(&source.to_string());
        body.push('\n');
    }
    body
}

/// The first failed item of a `_bulk` answer, other than a 409 (a newer version is
/// there, which is the write's own success), as an error classified like a response.
fn bulk_failure(answer: &Value) -> Option<Error> {
    if answer["errors"].as_bool() != Some(true) {
        return None;
    }
    answer["items"]
        .as_array()?
        .iter()
        .filter_map(|item| item.get("index"))
        .find(|item| {
            let status = item["status"].as_u64().unwrap_or(500);
            !(200..300).contains(&status) && status != 409
        })
        .map(|item| {
            let status = item["status"]
                .as_u64()
                .and_then(|s| u16::try_from(s).ok())
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let reason: String = item["error"].to_string().chars().take(500).collect();
            failure_of("bulk indexing an item", status, &reason)
        })
}

/// The error of a response that is not a success, by status: 5xx and 429 may pass;
/// 401 and 403 (the role is not mapped, the domain policy refuses it, a request signed
/// wrongly) are the deployment's fault ([`Error::Blocked`]); the rest is the request's.
async fn failure(what: &str, response: Response) -> Error {
    let status = response.status_code();
    let body = response.text().await.unwrap_or_default();
    let body: String = body.chars().take(500).collect();
    failure_of(what, status, &body)
}

fn failure_of(what: &str, status: StatusCode, body: &str) -> Error {
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        Error::Blocked(format!("OpenSearch {what}: {status}: {body}"))
    } else if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        Error::Unavailable(format!("OpenSearch {what}: {status}: {body}"))
    } else {
        Error::Unknown(anyhow::anyhow!("OpenSearch {what}: {status}: {body}"))
    }
}

impl OpenSearchIndex {
    pub fn new(client: OpenSearch, index: &str) -> Self {
        Self {
            client,
            index: index.to_owned(),
            created: Default::default(),
            held: Default::default(),
            wait_for_refresh: false,
        }
    }

    /// The same index, its flushes waiting until their writes are searchable.
    pub fn waiting_for_refresh(mut self, wait: bool) -> Self {
        self.wait_for_refresh = wait;
        self
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<DocumentId, (u64, Value)>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds a write for the next flush unless a newer version of the document is held.
    fn hold(&self, id: DocumentId, version: u64, source: Value) -> WriteOutcome {
        hold_highest(&mut self.held(), id, version, source)
    }

    /// Puts writes a failed flush took back, unless newer ones were held meanwhile.
    fn hold_again(&self, writes: HashMap<DocumentId, (u64, Value)>) {
        let mut held = self.held();
        for (id, (version, source)) in writes {
            hold_highest(&mut held, id, version, source);
        }
    }

    pub fn index_name(&self) -> &str {
        &self.index
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<Response, opensearch::Error> {
        self.call_with_timeout(method, path, query, body, None)
            .await
    }

    async fn call_with_timeout(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
        timeout: Option<std::time::Duration>,
    ) -> Result<Response, opensearch::Error> {
        self.client
            .send(
                method,
                path,
                HeaderMap::new(),
                Some(query),
                body.map(JsonBody::new),
                timeout,
            )
            .await
    }

    /// Creates the index with its mapping unless it exists.
    pub async fn ensure_index(&self) -> Result<()> {
        self.created
            .get_or_try_init(|| async {
                let path = format!("/{}", self.index);
                let exists = self
                    .call(Method::Head, &path, &[], None)
                    .await
                    .map_err(|e| unavailable("HEAD index", e))?;
                if exists.status_code().is_success() {
                    return Ok(());
                }
                let created = self
                    .call(Method::Put, &path, &[], Some(mapping()))
                    .await
                    .map_err(|e| unavailable("creating the index", e))?;
                let status = created.status_code();
                if status.is_success() {
                    return Ok(());
                }
                let body: Value = created.json().await.unwrap_or(Value::Null);
                if status == StatusCode::BAD_REQUEST
                    && body["error"]["type"] == "resource_already_exists_exception"
                {
                    return Ok(());
                }
                Err(failure_of("creating the index", status, &body.to_string()))
            })
            .await
            .map(|_| ())
    }

    /// Sends `writes` in one `_bulk` request.
    async fn bulk(&self, writes: &HashMap<DocumentId, (u64, Value)>) -> Result<()> {
        self.ensure_index().await?;
        let path = format!("/{}/_bulk", self.index);
        let query: &[(&str, &str)] = if self.wait_for_refresh {
            &[("refresh", "wait_for")]
        } else {
            &[]
        };
        let body = bytes::Bytes::from(bulk_body(&self.index, writes));
        let response = self
            .client
            .send(
                Method::Post,
                &path,
                HeaderMap::new(),
                Some(query),
                Some(body),
                None,
            )
            .await
            .map_err(|e| unavailable("bulk indexing", e))?;
        if !response.status_code().is_success() {
            return Err(failure("bulk indexing", response).await);
        }
        let answer: Value = response
            .json()
            .await
            .map_err(|e| unavailable("reading the bulk answer", e))?;
        match bulk_failure(&answer) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The version and tombstone flag the index holds for a document (real-time get).
    pub async fn indexed(&self, id: &DocumentId) -> Result<Option<(u64, bool)>> {
        let path = format!("/{}/_doc/{}", self.index, id);
        let response = self
            .call(Method::Get, &path, &[], None)
            .await
            .map_err(|e| unavailable("reading a document", e))?;
        match response.status_code() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let body: Value = response
                    .json()
                    .await
                    .map_err(|e| unavailable("reading a document", e))?;
                Ok(body["_version"]
                    .as_u64()
                    .map(|v| (v, body["_source"]["deleted"].as_bool().unwrap_or(false))))
            }
            _ => Err(failure("reading a document", response).await),
        }
    }
}

#[async_trait]
impl SearchIndex for OpenSearchIndex {
    async fn upsert(&self, doc: &SearchDocument) -> Result<WriteOutcome> {
        let source = json!({
            "id": doc.id.to_string(),
            "version": doc.version,
            "deleted": false,
            "readers": doc.readers.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            "title": doc.title,
            "body": doc.body,
        });
        Ok(self.hold(doc.id, doc.version, source))
    }

    async fn delete(&self, id: &DocumentId, version: u64) -> Result<WriteOutcome> {
        let source = json!({
            "id": id.to_string(),
            "version": version,
            "deleted": true,
            "readers": [],
            "title": "",
            "body": "",
        });
        Ok(self.hold(*id, version, source))
    }

    async fn flush(&self) -> Result<()> {
        let writes = std::mem::take(&mut *self.held());
        if writes.is_empty() {
            return Ok(());
        }
        let sent = self.bulk(&writes).await;
        if sent.is_err() {
            self.hold_again(writes);
        }
        sent
    }

    async fn search(&self, query: &SearchQuery) -> Result<SearchPage> {
        let limit = query.limit.max(1);
        let body = search_body(query);
        let path = format!("/{}/_search", self.index);
        let response = self
            .call_with_timeout(
                Method::Post,
                &path,
                &[],
                Some(body),
                Some(SEARCH_TIME_BUDGET + CLIENT_GRACE),
            )
            .await
            .map_err(|e| unavailable("searching", e))?;
        let status = response.status_code();
        if status == StatusCode::NOT_FOUND {
            // Nothing indexed yet: searching never creates the index (the API's role
            // may only read it).
            return Ok(SearchPage {
                hits: Vec::new(),
                more: false,
            });
        }
        if !status.is_success() {
            return Err(failure("searching", response).await);
        }
        let body: Value = response
            .json()
            .await
            .map_err(|e| unavailable("reading hits", e))?;
        if body["timed_out"].as_bool() == Some(true) {
            return Err(Error::Unavailable(
                "OpenSearch: the search ran out of time".into(),
            ));
        }
        let raw = body["hits"]["hits"].as_array().cloned().unwrap_or_default();
        let more = raw.len() > limit;
        let hits = raw
            .into_iter()
            .take(limit)
            .filter_map(|hit| {
                let id = DocumentId::parse(hit["_id"].as_str()?).ok()?;
                Some(SearchHit {
                    id,
                    title: hit["_source"]["title"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    snippet: hit["highlight"]["body"][0]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    version: hit["_source"]["version"].as_u64().unwrap_or(0),
                })
            })
            .collect();
        Ok(SearchPage { hits, more })
    }

    async fn health(&self) -> Result<()> {
        let response = self
            .call(Method::Get, "/_cluster/health", &[], None)
            .await
            .map_err(|e| unavailable("health", e))?;
        if !response.status_code().is_success() {
            return Err(failure("health", response).await);
        }
        let body: Value = response
            .json()
            .await
            .map_err(|e| unavailable("health", e))?;
        match body["status"].as_str() {
            Some("green" | "yellow") => Ok(()),
            other => Err(Error::Unavailable(format!(
                "OpenSearch cluster status {other:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UserId;

    fn dsl(text: &str) -> Value {
        to_query_dsl(&search_query::parse(text).unwrap())
    }

    fn both(title: Value, body: Value) -> Value {
        json!({ "bool": { "should": [title, body], "minimum_should_match": 1 } })
    }

    #[test]
    fn only_the_highest_version_of_a_document_is_held_and_sent() {
        let (a, b) = (DocumentId::generate(), DocumentId::generate());
        let mut held = HashMap::new();
        assert_eq!(
            hold_highest(&mut held, a, 2, json!({"v": 2})),
            WriteOutcome::Applied
        );
        assert_eq!(
            hold_highest(&mut held, a, 1, json!({"v": 1})),
            WriteOutcome::AlreadyApplied
        );
        assert_eq!(
            hold_highest(&mut held, a, 2, json!({"v": 2})),
            WriteOutcome::AlreadyApplied
        );
        assert_eq!(
            hold_highest(&mut held, a, 3, json!({"v": 3})),
            WriteOutcome::Applied
        );
        hold_highest(&mut held, b, 7, json!({"v": 7}));
        let body = bulk_body("documents", &held);
        let lines: Vec<Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4, "{body}");
        let action_of_a = lines
            .iter()
            .position(|l| l["index"]["_id"] == a.to_string())
            .unwrap();
        assert_eq!(
            lines[action_of_a]["index"],
            json!({"_index": "documents", "_id": a.to_string(), "version": 3, "version_type": "external"})
        );
        assert_eq!(lines[action_of_a + 1], json!({"v": 3}));
    }

    #[test]
    fn a_bulk_answer_fails_on_an_item_other_than_a_newer_version() {
        let item = |status: u64| json!({"index": {"status": status, "error": {"type": "x"}}});
        assert!(bulk_failure(&json!({"errors": false, "items": [item(201)]})).is_none());
        assert!(
            bulk_failure(&json!({"errors": true, "items": [item(201), item(409)]})).is_none(),
            "409: a newer version is there"
        );
        let err = bulk_failure(&json!({"errors": true, "items": [item(409), item(429)]})).unwrap();
        assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
        let err = bulk_failure(&json!({"errors": true, "items": [item(403)]})).unwrap();
        assert!(matches!(err, Error::Blocked(_)), "{err:?}");
        let err = bulk_failure(&json!({"errors": true, "items": [item(400)]})).unwrap();
        assert!(matches!(err, Error::Unknown(_)), "{err:?}");
    }

    #[test]
    fn refusals_by_the_domain_are_blocked_overload_may_pass_the_rest_is_the_requests() {
        for (status, blocked, transient) in [
            (StatusCode::UNAUTHORIZED, true, true),
            (StatusCode::FORBIDDEN, true, true),
            (StatusCode::TOO_MANY_REQUESTS, false, true),
            (StatusCode::SERVICE_UNAVAILABLE, false, true),
            (StatusCode::BAD_REQUEST, false, false),
            (StatusCode::CONFLICT, false, false),
        ] {
            let err = failure_of("indexing", status, "{}");
            assert_eq!(
                matches!(err, Error::Blocked(_)),
                blocked,
                "{status}: {err:?}"
            );
            assert_eq!(err.is_transient(), transient, "{status}: {err:?}");
        }
    }

    #[test]
    fn words_phrases_and_prefixes_map_to_match_queries() {
        assert_eq!(
            dsl("Zebra"),
            both(
                json!({"match": {"title": {"query": "zebra", "boost": 2.0}}}),
                json!({"match": {"body": {"query": "zebra", "boost": 1.0}}}),
            )
        );
        assert_eq!(
            dsl("body:\"North wind\""),
            json!({"match_phrase": {"body": {"query": "north wind", "boost": 1.0}}})
        );
        assert_eq!(
            dsl("north-wind"),
            both(
                json!({"match_phrase": {"title": {"query": "north wind", "boost": 2.0}}}),
                json!({"match_phrase": {"body": {"query": "north wind", "boost": 1.0}}}),
            )
        );
        assert_eq!(
            dsl("title:zeb*"),
            json!({"prefix": {"title": {"value": "zeb", "rewrite": "top_terms_50", "boost": 2.0}}})
        );
    }

    #[test]
    fn groups_map_to_bool_queries() {
        let title = |w: &str| json!({"match": {"title": {"query": w, "boost": 2.0}}});
        assert_eq!(
            dsl("title:a (title:b OR title:c) -title:d NOT (title:e title:f)"),
            json!({"bool": {
                "must": [
                    title("a"),
                    {"bool": {"should": [title("b"), title("c")], "minimum_should_match": 1}}
                ],
                "must_not": [
                    title("d"),
                    {"bool": {"must": [title("e"), title("f")]}}
                ]
            }})
        );
    }

    #[test]
    fn the_search_is_filtered_bounded_in_time_and_free_of_query_strings() {
        let body = search_body(&SearchQuery {
            query: search_query::parse("a:b \"c\" dd* OR (e -f)").unwrap(),
            reader: UserId::parse("ann").unwrap(),
            limit: 20,
            offset: 40,
        });
        assert_eq!(body["timeout"], "2000ms");
        assert_eq!(body["from"], 40);
        assert_eq!(body["size"], 21);
        assert_eq!(
            body["query"]["bool"]["filter"],
            json!([{ "term": { "readers": "ann" } }, { "term": { "deleted": false } }])
        );
        let text = body.to_string();
        assert!(!text.contains("query_string"), "{text}");
    }
}
