//! The access matrix: owner, editor, viewer and stranger against every document endpoint.

use reqwest::{Method, StatusCode};
use serde_json::json;
use tests::TestApp;

const OWNER: &str = "ann";
const EDITOR: &str = "bob";
const VIEWER: &str = "cat";
const STRANGER: &str = "eve";

async fn fresh_doc(app: &TestApp) -> String {
    let doc = app
        .create(
            OWNER,
            "Shared",
            "text",
            json!({EDITOR: "editor", VIEWER: "viewer"}),
        )
        .await;
    doc["id"].as_str().unwrap().to_owned()
}

fn patch(app: &TestApp, user: &str, id: &str, body: serde_json::Value) -> reqwest::RequestBuilder {
    app.request(Method::PATCH, &format!("/documents/{id}"), Some(user))
        .header("If-Match", "\"1\"")
        .header("content-type", "application/merge-patch+json")
        .body(body.to_string())
}

#[tokio::test]
async fn every_role_against_every_endpoint() {
    let app = TestApp::spawn().await;
    // (user, GET, PUT, PATCH body, PATCH collaborators, DELETE)
    let expectations = [
        (OWNER, 200, 200, 200, 200, 204),
        (EDITOR, 200, 200, 200, 403, 403),
        (VIEWER, 200, 403, 403, 403, 403),
        (STRANGER, 404, 404, 404, 404, 404),
    ];
    for (user, get, put, patch_body, patch_collab, delete) in expectations {
        let id = fresh_doc(&app).await;
        let path = format!("/documents/{id}");
        assert_eq!(
            app.get(user, &path).await.status.as_u16(),
            get,
            "{user} GET"
        );
        // Each write runs on its own fresh document so a success does not change the
        // version the next one names.
        let id_put = fresh_doc(&app).await;
        assert_eq!(
            app.put(user, &id_put, 1, "t", "b").await.status.as_u16(),
            put,
            "{user} PUT"
        );
        let id_patch = fresh_doc(&app).await;
        let r = app
            .send(patch(&app, user, &id_patch, json!({"body": "x"})))
            .await;
        assert_eq!(
            r.status.as_u16(),
            patch_body,
            "{user} PATCH body: {}",
            r.body
        );
        let id_collab = fresh_doc(&app).await;
        let r = app
            .send(patch(
                &app,
                user,
                &id_collab,
                json!({"collaborators": {"zed": "viewer"}}),
            ))
            .await;
        assert_eq!(
            r.status.as_u16(),
            patch_collab,
            "{user} PATCH collaborators"
        );
        let r = app
            .send(app.request(Method::DELETE, &path, Some(user)))
            .await;
        assert_eq!(r.status.as_u16(), delete, "{user} DELETE");
        if delete != 204 {
            assert_eq!(
                app.get(OWNER, &path).await.status,
                StatusCode::OK,
                "{user} deleted it"
            );
        }
    }
}

#[tokio::test]
async fn strangers_cannot_tell_a_document_exists() {
    let app = TestApp::spawn().await;
    let id = fresh_doc(&app).await;
    let mut hidden = app.get(STRANGER, &format!("/documents/{id}")).await;
    let mut missing = app
        .get(
            STRANGER,
            &format!("/documents/{}", shared::domain::DocumentId::generate()),
        )
        .await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    // The same answer but for the request id each problem carries.
    hidden.body["instance"].take();
    missing.body["instance"].take();
    assert_eq!(hidden.body, missing.body);
    // Even a stale If-Match reveals nothing: not 412, but 404.
    assert_eq!(
        app.put(STRANGER, &id, 99, "t", "b").await.status,
        StatusCode::NOT_FOUND
    );
    let listed = app.get(STRANGER, "/documents").await;
    assert_eq!(listed.body["items"], json!([]));
}

#[tokio::test]
async fn members_see_shared_documents_in_their_list_until_removed() {
    let app = TestApp::spawn().await;
    let id = fresh_doc(&app).await;
    for user in [OWNER, EDITOR, VIEWER] {
        let listed = app.get(user, "/documents").await;
        assert_eq!(listed.body["items"][0]["id"], id.as_str(), "{user}");
    }
    let r = app
        .send(patch(
            &app,
            OWNER,
            &id,
            json!({"collaborators": {VIEWER: null}}),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(app.get(VIEWER, "/documents").await.body["items"], json!([]));
    assert_eq!(
        app.get(VIEWER, &format!("/documents/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
}
