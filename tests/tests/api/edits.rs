//! `POST /documents/{id}/edits` and `GET /documents/{id}/versions/{version}`: operations
//! transformed on the server, end to end against the real app.

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shared::domain::TextOperation;
use tests::{Reply, TestApp};

async fn edit(app: &TestApp, user: &str, id: &str, base: u64, ops: Value) -> Reply {
    app.send(
        app.request(Method::POST, &format!("/documents/{id}/edits"), Some(user))
            .json(&json!({"baseVersion": base, "ops": ops})),
    )
    .await
}

fn op(value: &Value) -> TextOperation {
    serde_json::from_value(value.clone()).expect("the server's ops decode")
}

async fn body_at(app: &TestApp, user: &str, id: &str, version: u64) -> String {
    let reply = app
        .get(user, &format!("/documents/{id}/versions/{version}"))
        .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "version {version}: {}",
        reply.body
    );
    reply.body["body"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_edit_on_the_current_version_is_applied_as_sent() {
    let app = TestApp::spawn().await;
    let doc = app
        .create("ann", "Plan", "héllo 🌍", json!({"bob": "editor"}))
        .await;
    let id = doc["id"].as_str().unwrap();
    // Code points: "héllo " is 6, the emoji is one.
    let reply = edit(&app, "bob", id, 1, json!([6, -1, "world"])).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    // Answered in normal form: the insert before the delete at one place.
    assert_eq!(
        reply.body,
        json!({"version": 2, "baseVersion": 1, "ops": [6, "world", -1]})
    );
    assert_eq!(reply.header("etag"), Some("\"2\""));
    let now = app.get("ann", &format!("/documents/{id}")).await;
    assert_eq!(now.body["body"], "héllo world");
    assert_eq!(now.body["version"], 2);
    assert_eq!(now.body["updatedBy"], "bob");
}

#[tokio::test]
async fn edits_on_a_stale_base_are_transformed_never_refused() {
    let app = TestApp::spawn().await;
    let doc = app
        .create("ann", "Plan", "abc", json!({"bob": "editor"}))
        .await;
    let id = doc["id"].as_str().unwrap();
    // Both on version 1: ann inserts at the start, bob at the end.
    let a = edit(&app, "ann", id, 1, json!(["X"])).await;
    let b = edit(&app, "bob", id, 1, json!([3, "Y"])).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(b.status, StatusCode::OK, "{}", b.body);
    assert_eq!(b.body["version"], 3);
    assert_eq!(b.body["baseVersion"], 2);
    assert_eq!(b.body["ops"], json!([4, "Y"]));
    // Both insert at one place on version 1: the one committed first goes first.
    let c = edit(&app, "bob", id, 1, json!([1, "1"])).await;
    assert_eq!(c.status, StatusCode::OK);
    let now = app.get("ann", &format!("/documents/{id}")).await;
    assert_eq!(now.body["body"], "Xa1bcY");
    // A PUT's body change is an operation too: an edit made before it is transformed.
    let put = app.put("ann", id, 4, "Plan", "Xa1bcY!").await;
    assert_eq!(put.status, StatusCode::OK);
    let d = edit(&app, "bob", id, 4, json!(["^"])).await;
    assert_eq!(d.status, StatusCode::OK);
    assert_eq!(
        app.get("ann", &format!("/documents/{id}")).await.body["body"],
        "^Xa1bcY!"
    );
}

/// Several clients typing at once on whatever version they last saw: every edit lands
/// exactly once, the returned operations replay to the stored text, and every version
/// can be read back.
#[tokio::test]
async fn concurrent_edits_from_several_clients_all_land_and_converge() {
    let app = TestApp::spawn().await;
    let doc = app
        .create(
            "ann",
            "Plan",
            "start ✓",
            json!({"bob": "editor", "cat": "editor", "dan": "editor"}),
        )
        .await;
    let id = doc["id"].as_str().unwrap().to_owned();
    let users = ["ann", "bob", "cat", "dan"];
    let rounds = 12;
    let mut tasks = Vec::new();
    for (n, user) in users.into_iter().enumerate() {
        let base = app.base.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut results = Vec::new();
            // Each client edits on version 1 first, then on the version it last got
            // back: always stale by whatever the others committed meanwhile.
            let mut known = 1u64;
            let mut len = "start ✓".chars().count();
            for k in 0..rounds {
                // One character per edit, its own: others' inserts can land between the
                // characters of a longer marker, but never inside this one.
                let marker = char::from_u32(0x4E00 + (n * 100 + k) as u32)
                    .unwrap()
                    .to_string();
                let at = (k * 7 + n * 3) % (len + 1);
                let ops = if at == 0 {
                    json!([marker])
                } else {
                    json!([at, marker])
                };
                let reply = client
                    .post(format!("{base}/documents/{id}/edits"))
                    .bearer_auth(tests::token_for(user))
                    .json(&json!({"baseVersion": known, "ops": ops}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(reply.status(), StatusCode::OK);
                let body: Value = reply.json().await.unwrap();
                known = body["version"].as_u64().unwrap();
                // A lower bound of the length at `known`: enough for a valid position.
                len += marker.chars().count();
                results.push((marker, body));
            }
            results
        }));
    }
    let mut applied: BTreeMap<u64, Value> = BTreeMap::new();
    let mut markers = Vec::new();
    for task in tasks {
        for (marker, body) in task.await.unwrap() {
            let version = body["version"].as_u64().unwrap();
            assert_eq!(body["baseVersion"].as_u64().unwrap(), version - 1);
            assert!(
                applied.insert(version, body["ops"].clone()).is_none(),
                "one edit per version"
            );
            markers.push(marker);
        }
    }
    let last = 1 + (users.len() * rounds) as u64;
    assert_eq!(
        applied.keys().copied().collect::<Vec<_>>(),
        (2..=last).collect::<Vec<_>>()
    );
    let stored = app.get("ann", &format!("/documents/{id}")).await;
    assert_eq!(stored.body["version"], last);
    let stored = stored.body["body"].as_str().unwrap().to_owned();
    for marker in &markers {
        assert_eq!(
            stored.matches(marker.as_str()).count(),
            1,
            "{marker} in {stored}"
        );
    }
    // The server's operations, applied in version order, rebuild every version.
    let mut text = "start ✓".to_owned();
    assert_eq!(body_at(&app, "bob", &id, 1).await, text);
    for (version, ops) in &applied {
        text = op(ops)
            .apply(&text)
            .expect("each operation fits the version before");
        assert_eq!(
            body_at(&app, "cat", &id, *version).await,
            text,
            "version {version}"
        );
    }
    assert_eq!(text, stored);
}

#[tokio::test]
async fn versions_are_the_document_as_it_was() {
    let app = TestApp::spawn().await;
    let doc = app
        .create("ann", "One", "a", json!({"bob": "viewer"}))
        .await;
    let id = doc["id"].as_str().unwrap();
    // More versions than one snapshot interval, mixing edits, PUTs and sharing changes.
    let mut expected = vec![(1u64, "One".to_owned(), "a".to_owned())];
    let mut body = "a".to_owned();
    for v in 2..=140u64 {
        let reply = if v % 10 == 0 {
            body = format!("rewritten {v}");
            app.put("ann", id, v - 1, &format!("T{v}"), &body).await
        } else if v % 17 == 0 {
            app.send(
                app.request(Method::PATCH, &format!("/documents/{id}"), Some("ann"))
                    .header("If-Match", format!("\"{}\"", v - 1))
                    .json(&json!({"collaborators": {"cat": if v % 2 == 0 {"viewer"} else {"editor"}}})),
            )
            .await
        } else {
            body.push('x');
            edit(
                &app,
                "ann",
                id,
                v - 1,
                json!([body.chars().count() - 1, "x"]),
            )
            .await
        };
        assert_eq!(reply.status, StatusCode::OK, "v{v}: {}", reply.body);
        let title = if v % 10 == 0 {
            format!("T{v}")
        } else {
            expected.last().unwrap().1.clone()
        };
        expected.push((v, title, body.clone()));
    }
    for (v, title, body) in expected {
        let reply = app
            .get("ann", &format!("/documents/{id}/versions/{v}"))
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body["version"], v);
        assert_eq!(reply.body["title"], title, "title at {v}");
        assert_eq!(reply.body["body"], body, "body at {v}");
        assert_eq!(reply.body["actor"], "ann");
        assert!(reply.body["at"].is_string());
    }
    for missing in ["0", "141", "abc", "99999999999999999999999"] {
        let reply = app
            .get("ann", &format!("/documents/{id}/versions/{missing}"))
            .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{missing}");
    }
    // Readers with access now read versions; strangers do not see the document.
    assert_eq!(
        app.get("cat", &format!("/documents/{id}/versions/1"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("eve", &format!("/documents/{id}/versions/1"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn who_may_edit_and_what_is_refused() {
    let app = TestApp::spawn().await;
    let doc = app
        .create(
            "ann",
            "Plan",
            "abc",
            json!({"bob": "viewer", "cat": "editor"}),
        )
        .await;
    let id = doc["id"].as_str().unwrap();
    let viewer = edit(&app, "bob", id, 1, json!(["x"])).await;
    assert_eq!(viewer.status, StatusCode::FORBIDDEN);
    let stranger = edit(&app, "eve", id, 1, json!(["x"])).await;
    assert_eq!(stranger.status, StatusCode::NOT_FOUND);
    let anonymous = app
        .send(
            app.request(Method::POST, &format!("/documents/{id}/edits"), None)
                .json(&json!({"baseVersion": 1, "ops": ["x"]})),
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    for bad in [
        json!([0]),
        json!([null]),
        json!([1.5]),
        json!([true]),
        json!([{}]),
        json!([[1]]),
        json!([""]),
        json!("abc"),
        json!({"0": 1}),
        json!([4]),
        json!([-4]),
        json!([2, -2]),
        json!([99999999999999999999u128.to_string().parse::<f64>().unwrap()]),
    ] {
        let reply = edit(&app, "cat", id, 1, bad.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            reply.body
        );
        assert_eq!(reply.problem_type(), "/problems/invalid-operation", "{bad}");
    }
    for base in [json!(0), json!(2), json!(-1), json!("1"), json!(null)] {
        let reply = app
            .send(
                app.request(Method::POST, &format!("/documents/{id}/edits"), Some("cat"))
                    .json(&json!({"baseVersion": base, "ops": ["x"]})),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "base {base}: {}",
            reply.body
        );
    }
    let unknown_field = app
        .send(
            app.request(Method::POST, &format!("/documents/{id}/edits"), Some("cat"))
                .json(&json!({"baseVersion": 1, "ops": ["x"], "extra": 1})),
        )
        .await;
    assert_eq!(unknown_field.status, StatusCode::BAD_REQUEST);
    // Nothing refused was written.
    assert_eq!(
        app.get("ann", &format!("/documents/{id}")).await.body["version"],
        1
    );

    // An edit whose result would pass the body limit is 413, and writes nothing.
    let big = "x".repeat(shared::domain::MAX_BODY_BYTES);
    let too_large = edit(&app, "cat", id, 1, json!([big])).await;
    assert_eq!(
        too_large.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        too_large.body
    );
    assert_eq!(
        app.get("ann", &format!("/documents/{id}")).await.body["version"],
        1
    );
}

#[tokio::test]
async fn a_base_older_than_the_kept_operations_is_409() {
    let app = TestApp::spawn().await;
    let doc = app.create("ann", "Plan", "", json!({})).await;
    let id = doc["id"].as_str().unwrap();
    let kept = shared::domain::KEPT_OPERATIONS;
    for v in 1..=kept + 1 {
        let reply = edit(&app, "ann", id, v, json!(["."])).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    // The document is at kept + 2: base 2 is exactly `kept` behind, base 1 one more.
    let oldest = edit(&app, "ann", id, 2, json!(["<"])).await;
    assert_eq!(oldest.status, StatusCode::OK, "{}", oldest.body);
    let gone = edit(&app, "ann", id, 1, json!(["<"])).await;
    assert_eq!(gone.status, StatusCode::CONFLICT, "{}", gone.body);
    assert_eq!(gone.problem_type(), "/problems/base-version-gone");
    assert_eq!(gone.body["oldestBaseVersion"], 3);
}
