//! The REST flow through the real router (the one the Lambda `api` function serves) on
//! the DynamoDB document store: create, read, conditional writes and their typed
//! conflicts (412 with the current version, 428 without `If-Match`), access, members'
//! listings newest first with cursors, and deletion; then search, history and analysis
//! answered from OpenSearch and the DynamoDB tables the fan-out filled.

use std::sync::Arc;

use api::commands::serve::App;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shared::auth::TokenConfig;
use shared::clock::SystemClock;
use tests::{Reply, TEST_SECRET, token_for};
use tokio::net::TcpListener;

use crate::emulators::{self, Wants, unique};

struct Server {
    base: String,
    client: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Server {
    async fn start() -> Self {
        Self::start_on(&emulators::aws(Wants::default()).await).await
    }

    async fn start_on(clients: &shared::aws::AwsClients) -> Self {
        let app = App::build_aws(
            clients,
            TokenConfig::secret(TEST_SECRET),
            Default::default(),
            Arc::new(SystemClock),
        )
        .await
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(api::server::serve(listener, app.router, async {
            let _ = rx.await;
        }));
        Self {
            base,
            client: reqwest::Client::new(),
            _stop: tx,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        user: &str,
        if_match: Option<u64>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token_for(user));
        if let Some(version) = if_match {
            request = request.header("If-Match", format!("\"{version}\""));
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        Reply::read(request.send().await.unwrap()).await
    }
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn the_rest_flow_runs_on_dynamodb() {
    let server = Server::start().await;
    let (ann, bob, cat) = (unique("ann"), unique("bob"), unique("cat"));

    let created = server
        .call(
            Method::POST,
            "/documents",
            &ann,
            None,
            Some(
                json!({"title": "Plan", "body": "draft", "collaborators": {bob.clone(): "viewer"}}),
            ),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.header("etag"), Some("\"1\""));
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created.header("location"),
        Some(format!("/documents/{id}").as_str())
    );
    let path = format!("/documents/{id}");

    let read = server.call(Method::GET, &path, &bob, None, None).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body["title"], "Plan");
    assert_eq!(read.header("etag"), Some("\"1\""));
    assert_eq!(
        server
            .call(Method::GET, &path, &cat, None, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let edit = json!({"title": "Plan", "body": "second draft"});
    let updated = server
        .call(Method::PUT, &path, &ann, Some(1), Some(edit.clone()))
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.header("etag"), Some("\"2\""));
    let stale = server
        .call(Method::PUT, &path, &ann, Some(1), Some(edit.clone()))
        .await;
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        stale.body
    );
    assert_eq!(
        stale.header("etag"),
        Some("\"2\""),
        "412 carries the current version"
    );
    let blind = server
        .call(Method::PUT, &path, &ann, None, Some(edit.clone()))
        .await;
    assert_eq!(blind.status, StatusCode::PRECONDITION_REQUIRED);
    let by_viewer = server
        .call(Method::PUT, &path, &bob, Some(2), Some(edit))
        .await;
    assert_eq!(by_viewer.status, StatusCode::FORBIDDEN);

    // Sharing through a merge patch moves the document into cat's listing.
    let patched = server
        .call(
            Method::PATCH,
            &path,
            &ann,
            Some(2),
            Some(json!({"collaborators": {cat.clone(): "editor"}})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    let cats = server
        .call(Method::GET, "/documents", &cat, None, None)
        .await;
    assert_eq!(cats.body["items"][0]["id"], id.as_str());

    // Listing: newest first, paged by cursor.
    let mut ids = vec![id.clone()];
    for n in 0..4 {
        let more = server
            .call(
                Method::POST,
                "/documents",
                &ann,
                None,
                Some(json!({"title": format!("Doc {n}"), "body": ""})),
            )
            .await;
        ids.push(more.body["id"].as_str().unwrap().to_owned());
    }
    ids.reverse();
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/documents?limit=2&cursor={c}"),
            None => "/documents?limit=2".to_owned(),
        };
        let page = server.call(Method::GET, &path, &ann, None, None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        for item in page.body["items"].as_array().unwrap() {
            listed.push(item["id"].as_str().unwrap().to_owned());
        }
        match page.body["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(listed, ids);

    // Deletion: owner only; then gone for everyone.
    assert_eq!(
        server
            .call(Method::DELETE, &path, &cat, None, None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let deleted = server.call(Method::DELETE, &path, &ann, None, None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    assert_eq!(
        server
            .call(Method::GET, &path, &ann, None, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let after = server
        .call(Method::GET, "/documents?limit=100", &ann, None, None)
        .await;
    assert!(
        !after.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == id.as_str())
    );
    assert!(
        server
            .call(Method::GET, "/documents", &cat, None, None)
            .await
            .body["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn search_history_and_analysis_read_what_the_fan_out_wrote() {
    let clients = emulators::aws(Wants {
        search: true,
        ..Wants::default()
    })
    .await;
    let server = Server::start_on(&clients).await;
    let (ann, dan) = (unique("ann"), unique("dan"));
    let created = server
        .call(
            Method::POST,
            "/documents",
            &ann,
            None,
            Some(json!({"title": "Field notes", "body": "The zebra <crossed> the road."})),
        )
        .await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let path = format!("/documents/{id}");
    let edit = json!({"title": "Field notes", "body": "The zebra <crossed> the road twice."});
    let updated = server
        .call(Method::PUT, &path, &ann, Some(1), Some(edit))
        .await;
    assert_eq!(updated.status, StatusCode::OK);

    let analysis = format!("{path}/analysis");
    assert_eq!(
        server
            .call(Method::GET, &analysis, &ann, None, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let fanned = crate::stream::fan_out(&clients);
    let records = crate::stream::read_stream(&clients).await;
    let response = fanned
        .fanout
        .handle_event(&json!({ "Records": records }))
        .await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");

    let found = server
        .call(Method::GET, "/search?q=zebra", &ann, None, None)
        .await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.body);
    let results = found.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["id"], id.as_str());
    assert_eq!(results[0]["version"], 2);
    assert!(results[0].get("score").is_none(), "{}", results[0]);
    let snippet = results[0]["snippet"].as_str().unwrap();
    assert!(
        snippet.contains("<mark>zebra</mark> &lt;crossed&gt;"),
        "{snippet}"
    );
    let stranger = server
        .call(Method::GET, "/search?q=zebra", &dan, None, None)
        .await;
    assert!(stranger.body["results"].as_array().unwrap().is_empty());
    let bad = server
        .call(Method::GET, "/search?q=title%3A(", &ann, None, None)
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert_eq!(bad.body["type"], "/problems/invalid-query");
    let deep = format!("{}zebra{}", "(".repeat(2_000), ")".repeat(2_000));
    let deep = server
        .call(
            Method::GET,
            &format!("/search?q={}", deep.replace('(', "%28").replace(')', "%29")),
            &ann,
            None,
            None,
        )
        .await;
    assert_eq!(deep.status, StatusCode::BAD_REQUEST, "{}", deep.body);
    assert_eq!(deep.body["type"], "/problems/invalid-query");

    let history = server
        .call(Method::GET, &format!("{path}/history"), &ann, None, None)
        .await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.body);
    let versions: Vec<_> = history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["version"].clone(), e["action"].clone()))
        .collect();
    assert_eq!(
        versions,
        [(json!(1), json!("created")), (json!(2), json!("updated"))]
    );
    let detail = server
        .call(Method::GET, &format!("{path}/history/2"), &ann, None, None)
        .await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.body);
    assert_eq!(
        server
            .call(Method::GET, &format!("{path}/history"), &dan, None, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    while fanned.queue_depth().await > 0 {
        fanned.worker.run_once().await.unwrap();
    }
    let analysed = server.call(Method::GET, &analysis, &ann, None, None).await;
    assert_eq!(analysed.status, StatusCode::OK, "{}", analysed.body);
    assert_eq!(analysed.body["version"], 2);
    assert!(
        analysed.body["wordCount"].as_u64().unwrap() >= 6,
        "{}",
        analysed.body
    );
}
