//! Bad input gets a clear 4xx problem and changes nothing; never a 5xx.

use reqwest::{Method, StatusCode};
use serde_json::json;
use shared::domain::MAX_BODY_BYTES;
use tests::TestApp;

#[tokio::test]
async fn malformed_and_invalid_creates_are_refused() {
    let app = TestApp::spawn().await;
    let post_raw = |body: String, content_type: &str| {
        app.request(Method::POST, "/documents", Some("ann"))
            .header("content-type", content_type.to_owned())
            .body(body)
    };
    let cases: Vec<(String, &str, u16, &str)> = vec![
        (
            "{".into(),
            "application/json",
            400,
            "/problems/malformed-json",
        ),
        (
            "".into(),
            "application/json",
            400,
            "/problems/malformed-json",
        ),
        (
            "nul\u{0}".into(),
            "application/json",
            400,
            "/problems/malformed-json",
        ),
        (
            r#"{"title": 5}"#.into(),
            "application/json",
            400,
            "/problems/invalid-input",
        ),
        (
            r#"{"title": "t", "body": []}"#.into(),
            "application/json",
            400,
            "/problems/invalid-input",
        ),
        (
            r#"{"body": "no title"}"#.into(),
            "application/json",
            400,
            "/problems/invalid-input",
        ),
        (
            r#"{"title": ""}"#.into(),
            "application/json",
            400,
            "/problems/invalid-input",
        ),
        (
            r#"{"title": "   "}"#.into(),
            "application/json",
            400,
            "/problems/invalid-input",
        ),
        (
            json!({"title": "x".repeat(201)}).to_string(),
            "application/json",
            400,
            "/problems/invalid-input",
        ),
        (
            r#"{"title": "a\nb"}"#.into(),
            "application/json",
            400,
            "/problems/invalid-input",
        ),
        (
            r#"{"title": "t", "tilte": "typo"}"#.into(),
            "application/json",
            400,
            "/problems/invalid-input",
        ),
        (
            r#"{"title": "t", "collaborators": {"ann": "editor"}}"#.into(),
            "application/json",
            400,
            "/problems/invalid-input",
        ),
        (
            r#"{"title": "t", "collaborators": {"bob": "owner"}}"#.into(),
            "application/json",
            400,
            "/problems/invalid-input",
        ),
        (
            r#"{"title": "t", "collaborators": {"a b": "viewer"}}"#.into(),
            "application/json",
            400,
            "/problems/invalid-input",
        ),
        (
            r#"["title"]"#.into(),
            "application/json",
            400,
            "/problems/invalid-input",
        ),
        (
            r#"{"title": "t"}"#.into(),
            "text/plain",
            415,
            "/problems/unsupported-media-type",
        ),
        (
            json!({"title": "t", "body": "x".repeat(MAX_BODY_BYTES + 1)}).to_string(),
            "application/json",
            413,
            "/problems/payload-too-large",
        ),
        (
            format!(
                r#"{{"title": "t", "body": "{}"}}"#,
                "x".repeat(2 * 1024 * 1024)
            ),
            "application/json",
            413,
            "/problems/payload-too-large",
        ),
        (
            "[".repeat(100_000),
            "application/json",
            400,
            "/problems/malformed-json",
        ),
    ];
    for (body, content_type, status, kind) in cases {
        let shown = body.chars().take(60).collect::<String>();
        let reply = app.send(post_raw(body, content_type)).await;
        assert_eq!(reply.status.as_u16(), status, "{shown} → {}", reply.body);
        assert_eq!(reply.problem_type(), kind, "{shown}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json")
        );
    }
    // Exactly at the limits is fine.
    let ok = json!({"title": "é".repeat(200), "body": "x".repeat(MAX_BODY_BYTES)});
    let reply = app.send(post_raw(ok.to_string(), "application/json")).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(
        app.get("ann", "/documents").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn bad_updates_change_nothing() {
    let app = TestApp::spawn().await;
    let doc = app.create("ann", "t", "b", json!({})).await;
    let id = doc["id"].as_str().unwrap();
    let big = "y".repeat(MAX_BODY_BYTES + 1);
    assert_eq!(
        app.put("ann", id, 1, "t", &big).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        app.put("ann", id, 1, "", "b").await.status,
        StatusCode::BAD_REQUEST
    );
    let patch_big = app
        .send(
            app.request(Method::PATCH, &format!("/documents/{id}"), Some("ann"))
                .header("If-Match", "\"1\"")
                .header("content-type", "application/merge-patch+json")
                .body(json!({"body": big}).to_string()),
        )
        .await;
    assert_eq!(patch_big.status, StatusCode::PAYLOAD_TOO_LARGE);
    for if_match in ["*", "W/\"1\"", "\"1\", \"2\"", "one"] {
        let r = app
            .send(
                app.request(Method::PUT, &format!("/documents/{id}"), Some("ann"))
                    .header("If-Match", if_match)
                    .json(&json!({"title": "t", "body": "b"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "If-Match {if_match}");
    }
    assert_eq!(
        app.get("ann", &format!("/documents/{id}")).await.body["version"],
        1
    );
}

#[tokio::test]
async fn odd_paths_and_methods_are_problems() {
    let app = TestApp::spawn().await;
    for path in [
        "/documents/not-a-uuid",
        "/documents/%00",
        "/documents/..%2f..%2fetc",
        "/nope",
    ] {
        let r = app.get("ann", path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.problem_type(), "/problems/not-found");
    }
    // A v4 UUID can never name a document.
    let r = app
        .get("ann", &format!("/documents/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .send(app.request(Method::PUT, "/documents", Some("ann")))
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.problem_type(), "/problems/method-not-allowed");
    for query in [
        "limit=0",
        "limit=101",
        "limit=-1",
        "limit=abc",
        "cursor=%%%",
        "cursor=bm90LWEtdXVpZA",
    ] {
        let r = app.get("ann", &format!("/documents?{query}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}");
    }
}
