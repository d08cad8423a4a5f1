use reqwest::{Method, StatusCode};
use serde_json::json;
use tests::TestApp;

#[tokio::test]
async fn the_whole_crud_flow() {
    let app = TestApp::spawn().await;
    let created = app
        .send(app.request(Method::POST, "/documents", Some("ann")).json(
            &json!({"title": "Plan", "body": "first draft", "collaborators": {"bob": "editor"}}),
        ))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.header("etag"), Some("\"1\""));
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created.header("location"),
        Some(format!("/documents/{id}").as_str())
    );
    assert_eq!(created.body["version"], 1);
    assert_eq!(created.body["owner"], "ann");
    assert_eq!(created.body["updatedBy"], "ann");
    assert_eq!(created.body["collaborators"], json!({"bob": "editor"}));
    assert!(uuid::Uuid::parse_str(&id).unwrap().get_version_num() == 7);

    let read = app.get("ann", &format!("/documents/{id}")).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.header("etag"), Some("\"1\""));
    assert_eq!(read.body, created.body);

    let updated = app.put("bob", &id, 1, "Plan v2", "second draft").await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["version"], 2);
    assert_eq!(updated.body["updatedBy"], "bob");
    assert_eq!(updated.header("etag"), Some("\"2\""));
    assert_eq!(updated.body["createdAt"], created.body["createdAt"]);

    let listed = app.get("bob", "/documents").await;
    assert_eq!(listed.body["items"][0]["id"], id.as_str());
    assert!(listed.body.get("nextCursor").is_none());

    let deleted = app
        .send(app.request(Method::DELETE, &format!("/documents/{id}"), Some("ann")))
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = app.get("ann", &format!("/documents/{id}")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.problem_type(), "/problems/not-found");
    assert_eq!(
        gone.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(app.get("ann", "/documents").await.body["items"], json!([]));
}

#[tokio::test]
async fn if_match_guards_every_write() {
    let app = TestApp::spawn().await;
    let doc = app.create("ann", "t", "b", json!({})).await;
    let id = doc["id"].as_str().unwrap();
    assert_eq!(
        app.put("ann", id, 1, "t", "b2").await.status,
        StatusCode::OK
    );

    let stale = app.put("ann", id, 1, "t", "lost update").await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(stale.problem_type(), "/problems/version-mismatch");
    assert_eq!(stale.body["currentVersion"], 2);
    assert_eq!(stale.header("etag"), Some("\"2\""));

    let missing = app
        .send(
            app.request(Method::PUT, &format!("/documents/{id}"), Some("ann"))
                .json(&json!({"title": "t", "body": "no precondition"})),
        )
        .await;
    assert_eq!(missing.status, StatusCode::PRECONDITION_REQUIRED);
    assert_eq!(missing.problem_type(), "/problems/precondition-required");

    let patch_missing = app
        .send(
            app.request(Method::PATCH, &format!("/documents/{id}"), Some("ann"))
                .header("content-type", "application/merge-patch+json")
                .body(r#"{"body":"x"}"#),
        )
        .await;
    assert_eq!(patch_missing.status, StatusCode::PRECONDITION_REQUIRED);

    let stale_delete = app
        .send(
            app.request(Method::DELETE, &format!("/documents/{id}"), Some("ann"))
                .header("If-Match", "\"1\""),
        )
        .await;
    assert_eq!(stale_delete.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(stale_delete.body["currentVersion"], 2);

    // Nothing of the rejected writes took effect.
    let now = app.get("ann", &format!("/documents/{id}")).await;
    assert_eq!(now.body["version"], 2);
    assert_eq!(now.body["body"], "b2");
}

#[tokio::test]
async fn concurrent_writers_with_the_same_if_match_one_wins() {
    let app = TestApp::spawn().await;
    let doc = app.create("ann", "t", "b", json!({"bob": "editor"})).await;
    let id = doc["id"].as_str().unwrap().to_owned();
    let writes = (0..8).map(|i| {
        let app = &app;
        let id = id.clone();
        async move {
            app.put(
                if i % 2 == 0 { "ann" } else { "bob" },
                &id,
                1,
                "t",
                &format!("w{i}"),
            )
            .await
            .status
        }
    });
    let statuses = futures_util::future::join_all(writes).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::PRECONDITION_FAILED)
    );
}

#[tokio::test]
async fn merge_patch_semantics() {
    let app = TestApp::spawn().await;
    let doc = app
        .create(
            "ann",
            "Title",
            "Body",
            json!({"bob": "editor", "cat": "viewer"}),
        )
        .await;
    let id = doc["id"].as_str().unwrap();
    let patch = |version: u64, user: &str, body: serde_json::Value| {
        app.request(Method::PATCH, &format!("/documents/{id}"), Some(user))
            .header("If-Match", format!("\"{version}\""))
            .header("content-type", "application/merge-patch+json")
            .body(body.to_string())
    };

    // Only the named member changes.
    let r = app
        .send(patch(1, "ann", json!({"title": "New title"})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["title"], "New title");
    assert_eq!(r.body["body"], "Body");
    assert_eq!(r.body["version"], 2);

    // null removes a collaborator; a value adds or changes one; others stay.
    let r = app
        .send(patch(
            2,
            "ann",
            json!({"collaborators": {"cat": null, "dan": "viewer", "bob": "viewer"}}),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body["collaborators"],
        json!({"bob": "viewer", "dan": "viewer"})
    );

    // collaborators: null removes them all.
    let r = app
        .send(patch(3, "ann", json!({"collaborators": null})))
        .await;
    assert_eq!(r.body["collaborators"], json!({}));

    // Title cannot be removed, body cannot be removed, unknown and read-only fields refused.
    for bad in [
        json!({"title": null}),
        json!({"body": null}),
        json!({"version": 9}),
        json!({"owner": "eve"}),
        json!({"colaborators": {}}),
        json!({"collaborators": {"bob": "admin"}}),
        json!({"collaborators": {"ann": "editor"}}),
        json!({"collaborators": {"bad user": "viewer"}}),
        json!({"title": ""}),
        json!({"title": 5}),
        json!([1, 2]),
        json!("text"),
    ] {
        let r = app.send(patch(4, "ann", bad.clone())).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad} → {}", r.body);
    }
    assert_eq!(
        app.get("ann", &format!("/documents/{id}")).await.body["version"],
        4
    );
}
