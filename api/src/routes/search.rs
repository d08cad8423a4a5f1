//! `GET /search`: full-text search over title and body, among the documents the caller
//! may read.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use shared::domain::search_query;
use shared::ports::{SearchHit, SearchQuery};
use utoipa::{IntoParams, ToSchema};

use crate::http::QueryParams;
use crate::http::pagination::{PageParams, encode_cursor};
use crate::http::{ApiError, ApiResult, Caller, Problem};
use crate::state::AppState;

/// The deepest a search pages, in hits: past that, refine the query.
pub const MAX_SEARCH_DEPTH: usize = 10_000;

/// `?q=&limit=&cursor=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// The query, at most 256 characters: words (all must match; letters and digits,
    /// case does not matter), `"a phrase"`, `a OR b`, `a AND b`, `-word` or `NOT word`,
    /// `(grouping)` at most 8 levels deep, `title:word` / `body:"a phrase"`, and
    /// `pre*` (words starting with at least 2 characters). A query that is not of this
    /// language or over its limits is 400 `/problems/invalid-query`.
    #[param(max_length = 256)]
    pub q: Option<String>,
    /// 1 to 100; 20 when absent.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of search results, best first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SearchResults {
    pub results: Vec<SearchHit>,
    /// Absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    get, path = "/search", tag = "search", operation_id = "searchDocuments",
    params(SearchParams),
    responses(
        (status = 200, description = "Matching documents the caller can read", body = SearchResults),
        (status = 400, description = "Missing or malformed query (`/problems/invalid-query`), bad limit or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The search ran out of its time budget, or search is not available", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn search(
    State(state): State<AppState>,
    Caller(user): Caller,
    QueryParams(params): QueryParams<SearchParams>,
) -> ApiResult<Json<SearchResults>> {
    let page = PageParams {
        limit: params.limit,
        cursor: params.cursor,
    };
    let limit = page.limit()?;
    let offset = match page.cursor()? {
        None => 0,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|o| *o <= MAX_SEARCH_DEPTH)
            .ok_or_else(|| {
                ApiError::from(Problem::invalid("cursor", "not a cursor this API issued"))
            })?,
    };
    let parsed = search_query::parse(params.q.as_deref().unwrap_or_default())
        .map_err(shared::Error::from)?;
    let query = SearchQuery {
        query: parsed,
        reader: user,
        limit,
        offset,
    };
    let found = state.reads.search(&query).await?;
    let next = offset + limit;
    Ok(Json(SearchResults {
        results: found.hits,
        next_cursor: (found.more && next < MAX_SEARCH_DEPTH)
            .then(|| encode_cursor(&next.to_string())),
    }))
}

#[cfg(test)]
mod tests {
    //! Search, history and analysis through the router, over the embedded fan-out.

    use std::sync::Arc;

    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use serde_json::{Value, json};
    use shared::auth::TokenAuthority;
    use shared::clock::{Clock, SystemClock};
    use shared::domain::UserId;
    use shared::embedded::{DATABASE_FILE, SqliteDocumentStore};
    use shared::service::DocumentService;
    use stream_handler::sinks::notifications::NoSubscribers;
    use stream_handler::{EmbeddedFanout, FanoutConfig};
    use tower::ServiceExt;

    use crate::state::AppState;

    struct Harness {
        _dir: tempfile::TempDir,
        app: Router,
        tokens: Arc<TokenAuthority>,
        store: Arc<SqliteDocumentStore>,
        fanout: EmbeddedFanout,
        handled: u64,
    }

    impl Harness {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let store =
                Arc::new(SqliteDocumentStore::open(&dir.path().join(DATABASE_FILE)).unwrap());
            let clock: Arc<dyn Clock> = Arc::new(SystemClock);
            let fanout = EmbeddedFanout::open(
                dir.path(),
                store.clone(),
                Arc::new(NoSubscribers),
                clock.clone(),
                FanoutConfig::default(),
            )
            .unwrap();
            let tokens = Arc::new(TokenAuthority::new(&[7u8; 32]).unwrap());
            let state = AppState {
                documents: DocumentService::new(store.clone(), clock.clone()),
                tokens: tokens.clone(),
                clock,
                metrics: shared::metrics::Metrics::new(),
                reads: fanout.reads(),
                rate_limit: Default::default(),
            };
            Self {
                _dir: dir,
                app: crate::router(state),
                tokens,
                store,
                fanout,
                handled: 0,
            }
        }

        async fn call(
            &self,
            method: &str,
            user: &str,
            uri: &str,
            body: Option<Value>,
        ) -> (StatusCode, Value) {
            let token = self.tokens.issue(
                &UserId::parse(user).unwrap(),
                chrono::TimeDelta::hours(1),
                chrono::Utc::now(),
            );
            let mut request = Request::builder()
                .method(method)
                .uri(uri)
                .header("authorization", format!("Bearer {token}"));
            if method == "PUT" {
                request = request.header("if-match", "\"1\"");
            }
            let request = match body {
                Some(body) => request
                    .header("content-type", "application/json")
                    .body(Body::from(body.to_string())),
                None => request.body(Body::empty()),
            }
            .unwrap();
            let response = self.app.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            (
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            )
        }

        /// Fans out every change committed since the last call.
        async fn fan_out(&mut self) {
            let records: Vec<Value> = self
                .store
                .change_feed()
                .read_after(self.handled, 1000)
                .await
                .unwrap()
                .into_iter()
                .map(|r| {
                    self.handled = r.seq;
                    serde_json::from_str(&r.record).unwrap()
                })
                .collect();
            let response = self.fanout.fanout.handle(&records).await;
            assert!(response.batch_item_failures.is_empty());
        }
    }

    #[tokio::test]
    async fn search_history_and_analysis_follow_access() {
        let mut h = Harness::new();
        let (status, doc) = h
            .call(
                "POST",
                "ann",
                "/documents",
                Some(json!({"title": "Zoo plan", "body": "the zebra moves\nto the north", "collaborators": {"bob": "viewer"}})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let id = doc["id"].as_str().unwrap().to_owned();
        h.fan_out().await;

        let (status, found) = h.call("GET", "bob", "/search?q=zebra", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(found["results"][0]["id"], id.as_str());
        assert_eq!(found["results"][0]["version"], 1);
        assert!(
            found["results"][0]["snippet"]
                .as_str()
                .unwrap()
                .contains("<mark>zebra</mark>")
        );
        assert!(found.get("nextCursor").is_none());
        let (_, none) = h.call("GET", "cat", "/search?q=zebra", None).await;
        assert_eq!(none["results"], json!([]));
        let (status, problem) = h.call("GET", "ann", "/search?q=title:(", None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(problem["type"], "/problems/invalid-query");
        assert!(found["results"][0].get("score").is_none());
        assert_eq!(
            h.call("GET", "ann", "/search", None).await.0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            h.call("GET", "ann", "/search?q=zebra&limit=0", None)
                .await
                .0,
            StatusCode::BAD_REQUEST
        );

        let (status, _) = h
            .call(
                "PUT",
                "ann",
                &format!("/documents/{id}"),
                Some(json!({"title": "Zoo plan", "body": "the zebra stays\nto the north"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        h.fan_out().await;

        let history = format!("/documents/{id}/history");
        let (status, page) = h
            .call("GET", "bob", &format!("{history}?limit=1"), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(page["items"].as_array().unwrap().len(), 1);
        assert_eq!(page["items"][0]["action"], "created");
        assert_eq!(page["items"][0]["actor"], "ann");
        assert!(page["items"][0].get("detail").is_none());
        let cursor = page["nextCursor"].as_str().unwrap();
        let (_, rest) = h
            .call(
                "GET",
                "bob",
                &format!("{history}?limit=1&cursor={cursor}"),
                None,
            )
            .await;
        assert_eq!(rest["items"][0]["version"], 2);
        assert_eq!(rest["items"][0]["changedFields"], json!(["body"]));
        assert!(rest.get("nextCursor").is_none());
        assert_eq!(
            h.call("GET", "cat", &history, None).await.0,
            StatusCode::NOT_FOUND
        );

        let (status, entry) = h.call("GET", "bob", &format!("{history}/2"), None).await;
        assert_eq!(status, StatusCode::OK);
        let diff = entry["detail"]["bodyDiff"].as_str().unwrap();
        assert!(
            diff.contains("-the zebra moves\n+the zebra stays\n"),
            "{diff}"
        );
        assert_eq!(
            h.call("GET", "bob", &format!("{history}/9"), None).await.0,
            StatusCode::NOT_FOUND
        );

        let analysis = format!("/documents/{id}/analysis");
        assert_eq!(
            h.call("GET", "ann", &analysis, None).await.0,
            StatusCode::NOT_FOUND
        );
        let worker = h.fanout.analysis_worker();
        while !worker.run_once().await.unwrap().is_empty() {}
        let (status, result) = h.call("GET", "bob", &analysis, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(result["version"], 2);
        assert_eq!(result["wordCount"], 6);
        assert!(result["topTerms"].as_array().is_some_and(|t| !t.is_empty()));
        assert_eq!(
            h.call("GET", "cat", &analysis, None).await.0,
            StatusCode::NOT_FOUND
        );
    }
}
