//! Live updates end to end through the real app: REST writes go through the SQLite
//! change log, the in-process stream poller and the fan-out, and arrive as frames on
//! real WebSocket clients of `/ws`.

// A test target sees all of its package's dependencies; the library is where unused ones are caught.
#![allow(unused_crate_dependencies)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tests::{TestApp, token_for};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for something that should happen.
const PATIENCE: Duration = Duration::from_secs(20);

struct Client {
    socket: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
    /// `analysis.completed` frames set aside: they arrive whenever the worker is done.
    analyses: Vec<Value>,
    /// `presence` and `presence.left` frames set aside: they arrive whenever others
    /// come, go or move their caret.
    presence: Vec<Value>,
}

impl Client {
    async fn connect(app: &TestApp, user: &str) -> Self {
        Self::connect_with(app, &token_for(user)).await
    }

    async fn connect_with(app: &TestApp, token: &str) -> Self {
        let url = format!("ws://{}/ws?token={token}", app.addr);
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket handshake");
        Self {
            socket,
            analyses: Vec::new(),
            presence: Vec::new(),
        }
    }

    async fn send(&mut self, frame: Value) {
        self.socket
            .send(Message::text(frame.to_string()))
            .await
            .expect("frame sent");
    }

    async fn next_any(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.socket.next())
                .await
                .expect("a frame in time")
                .expect("the connection is open")
                .expect("a readable frame");
            match message {
                Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next frame that is not an analysis or presence.
    async fn next(&mut self) -> Value {
        loop {
            let frame = self.next_any().await;
            if frame["type"] == "analysis.completed" {
                self.analyses.push(frame);
                continue;
            }
            if frame["type"] == "presence" || frame["type"] == "presence.left" {
                self.presence.push(frame);
                continue;
            }
            return frame;
        }
    }

    /// The next presence frame (set aside or still to come).
    async fn next_presence(&mut self) -> Value {
        if !self.presence.is_empty() {
            return self.presence.remove(0);
        }
        loop {
            let frame = self.next_any().await;
            match frame["type"].as_str() {
                Some("presence" | "presence.left") => return frame,
                Some("analysis.completed") => self.analyses.push(frame),
                _ => panic!("expected presence, got {frame}"),
            }
        }
    }

    /// The `analysis.completed` frame of `version`.
    async fn analysis_of(&mut self, version: u64) -> Value {
        loop {
            if let Some(i) = self.analyses.iter().position(|a| a["version"] == version) {
                return self.analyses.remove(i);
            }
            let frame = self.next_any().await;
            assert_eq!(
                frame["type"], "analysis.completed",
                "unexpected frame {frame}"
            );
            self.analyses.push(frame);
        }
    }

    async fn expect(&mut self, kind: &str) -> Value {
        let frame = self.next().await;
        assert_eq!(frame["type"], kind, "unexpected frame {frame}");
        frame
    }

    async fn subscribe(&mut self, id: &str, since: Option<u64>) -> Value {
        let mut frame = json!({"action": "subscribe", "documentId": id});
        if let Some(since) = since {
            frame["sinceVersion"] = json!(since);
        }
        self.send(frame).await;
        self.next().await
    }

    /// No change frame is queued for this client: the answer to a ping comes next.
    async fn expect_nothing_pending(&mut self) {
        self.send(json!({"action": "ping"})).await;
        assert_eq!(
            self.next().await,
            json!({"type": "pong"}),
            "a frame was pending"
        );
    }

    /// Nothing at all was sent to this client.
    async fn expect_silence(&mut self) {
        self.send(json!({"action": "ping"})).await;
        assert_eq!(
            self.next_any().await,
            json!({"type": "pong"}),
            "a frame was pending"
        );
        assert!(
            self.analyses.is_empty(),
            "analyses arrived: {:?}",
            self.analyses
        );
    }
}

fn id_of(doc: &Value) -> String {
    doc["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn one_user_holds_at_most_sixteen_connections_by_default() {
    let app = TestApp::spawn().await;
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(Client::connect(&app, "mallory").await);
    }
    let url = format!("ws://{}/ws?token={}", app.addr, token_for("mallory"));
    match tokio_tungstenite::connect_async(url).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
            assert!(response.headers().contains_key("retry-after"));
        }
        other => panic!("expected a 429, got {:?}", other.map(|_| ())),
    }
    // Another user is not affected.
    let _ann = Client::connect(&app, "ann").await;
}

#[tokio::test]
async fn the_upgrade_needs_a_valid_token() {
    let app = TestApp::spawn().await;
    for url in [
        format!("ws://{}/ws", app.addr),
        format!("ws://{}/ws?token=nope", app.addr),
    ] {
        match tokio_tungstenite::connect_async(url).await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            }
            other => panic!("expected a 401, got {:?}", other.map(|_| ())),
        }
    }
}

#[tokio::test]
async fn a_request_that_is_not_a_handshake_is_told_why() {
    let app = TestApp::spawn().await;
    let http = reqwest::Client::new();
    let url = format!("{}?token={}", app.url("/ws"), tests::token_for("ann"));
    // A plain GET: no `Connection: upgrade`.
    let response = http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/not-a-websocket-handshake");
    // An upgrade to something else, and an unsupported version.
    for (upgrade, version) in [("h2c", "13"), ("websocket", "8")] {
        let response = http
            .get(&url)
            .header("connection", "upgrade")
            .header("upgrade", upgrade)
            .header("sec-websocket-version", version)
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{upgrade} {version}"
        );
    }
    // Another method is not a route here; without a token, 401 comes first.
    let response = http.post(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let response = http.get(app.url("/ws")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_rest_edit_reaches_the_other_collaborators_and_no_stranger() {
    let app = TestApp::spawn().await;
    let doc = app
        .create("ann", "Plans", "first", json!({"bob": "viewer"}))
        .await;
    let id = id_of(&doc);
    let mut bob = Client::connect(&app, "bob").await;
    let mut dan = Client::connect(&app, "dan").await;
    assert_eq!(bob.subscribe(&id, None).await["type"], "subscribed");
    assert_eq!(dan.subscribe(&id, None).await["code"], "document_not_found");

    let reply = app.put("ann", &id, 1, "Plans", "second").await;
    assert_eq!(reply.status, StatusCode::OK);
    let frame = bob.expect("document.updated").await;
    assert_eq!(frame["documentId"], json!(id));
    assert_eq!(frame["version"], 2);
    assert_eq!(frame["actor"], "ann");
    assert_eq!(frame["changedFields"], json!(["body"]));
    // The frame carries the operation from version 1, not the document.
    assert_eq!(frame["baseVersion"], 1);
    let ops: shared::domain::TextOperation = serde_json::from_value(frame["ops"].clone()).unwrap();
    assert_eq!(ops.apply("first").unwrap(), "second");
    assert!(frame.get("document").is_none());
    assert!(frame.get("collaborators").is_none());
    // The analysis of the new version follows, to readers only.
    let analysis = bob.analysis_of(2).await;
    assert_eq!(analysis["documentId"], json!(id));
    assert_eq!(analysis["analysis"]["wordCount"], 1);
    dan.expect_silence().await;
}

#[tokio::test]
async fn removing_a_collaborator_revokes_and_deleting_ends_subscriptions() {
    let app = TestApp::spawn().await;
    let doc = app
        .create(
            "ann",
            "Plans",
            "first",
            json!({"bob": "viewer", "cat": "editor"}),
        )
        .await;
    let id = id_of(&doc);
    let mut bob = Client::connect(&app, "bob").await;
    let mut cat = Client::connect(&app, "cat").await;
    bob.subscribe(&id, None).await;
    cat.subscribe(&id, None).await;

    let reply = app
        .send(
            app.request(Method::PATCH, &format!("/documents/{id}"), Some("ann"))
                .header("If-Match", "\"1\"")
                .header("Content-Type", "application/merge-patch+json")
                .body(json!({"collaborators": {"bob": null}}).to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        bob.next().await,
        json!({"type": "access.revoked", "documentId": id})
    );
    assert_eq!(cat.expect("document.updated").await["version"], 2);

    let reply = app
        .send(app.request(Method::DELETE, &format!("/documents/{id}"), Some("ann")))
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let frame = cat.expect("document.deleted").await;
    assert_eq!(frame["version"], 3);
    bob.expect_nothing_pending().await;
}

#[tokio::test]
async fn reconnecting_with_since_version_replays_the_missed_rest_edits() {
    let app = TestApp::spawn().await;
    let doc = app
        .create("ann", "Plans", "v1", json!({"bob": "editor"}))
        .await;
    let id = id_of(&doc);
    let mut bob = Client::connect(&app, "bob").await;
    bob.subscribe(&id, None).await;
    assert_eq!(
        app.put("ann", &id, 1, "Plans", "v2").await.status,
        StatusCode::OK
    );
    assert_eq!(bob.expect("document.updated").await["version"], 2);
    drop(bob);

    for version in 2..5 {
        let reply = app
            .put("ann", &id, version, "Plans", &format!("v{}", version + 1))
            .await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let mut bob = Client::connect(&app, "bob").await;
    let subscribed = bob.subscribe(&id, Some(2)).await;
    assert_eq!(subscribed["type"], "subscribed");
    let current = subscribed["version"].as_u64().unwrap();
    assert_eq!(current, 5);
    let mut seen = Vec::new();
    for _ in 3..=current {
        seen.push(
            bob.expect("document.updated").await["version"]
                .as_u64()
                .unwrap(),
        );
    }
    assert_eq!(seen, [3, 4, 5]);
    assert_eq!(
        app.put("ann", &id, 5, "Plans", "v6").await.status,
        StatusCode::OK
    );
    assert_eq!(bob.expect("document.updated").await["version"], 6);
    bob.expect_nothing_pending().await;
}

#[tokio::test]
async fn subscribing_needs_read_access() {
    let app = TestApp::spawn().await;
    let doc = app
        .create(
            "ann",
            "Plans",
            "first",
            json!({"bob": "editor", "cat": "viewer"}),
        )
        .await;
    let id = id_of(&doc);
    let mut readers = Vec::new();
    for who in ["ann", "bob", "cat"] {
        let mut client = Client::connect(&app, who).await;
        assert_eq!(
            client.subscribe(&id, None).await,
            json!({"type": "subscribed", "documentId": id, "version": 1}),
            "{who}"
        );
        readers.push(client);
    }
    let mut dan = Client::connect(&app, "dan").await;
    let stranger = dan.subscribe(&id, None).await;
    let missing_id = uuid::Uuid::now_v7().to_string();
    let missing = dan.subscribe(&missing_id, None).await;
    assert_eq!(stranger["code"], "document_not_found");
    assert_eq!(missing["code"], "document_not_found");
    assert_eq!(stranger["message"], missing["message"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_does_not_delay_a_hundred_others() {
    // The hundred readers and the stuck client are all bob's.
    let app = TestApp::spawn_with(|c| c.websocket.max_connections_per_user = 101).await;
    let doc = app
        .create("ann", "Plans", "v1", json!({"bob": "viewer"}))
        .await;
    let id = id_of(&doc);
    let mut stuck = Client::connect(&app, "bob").await;
    stuck.subscribe(&id, None).await;
    let mut readers = Vec::new();
    for _ in 0..100 {
        let mut client = Client::connect(&app, "bob").await;
        client.subscribe(&id, None).await;
        readers.push(client);
    }
    let paragraph = "lorem ipsum dolor sit amet ".repeat(400);
    for version in 1..=20u64 {
        let reply = app
            .put(
                "ann",
                &id,
                version,
                "Plans",
                &format!("{version} {paragraph}"),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        for reader in &mut readers {
            assert_eq!(
                reader.expect("document.updated").await["version"],
                version + 1
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_subscribers_all_receive_every_edit() {
    // Five hundred connections each for ann and bob.
    let app = TestApp::spawn_with(|c| c.websocket.max_connections_per_user = 500).await;
    let doc = app
        .create("ann", "Plans", "v1", json!({"bob": "viewer"}))
        .await;
    let id = id_of(&doc);
    let mut clients = Vec::new();
    for i in 0..1000 {
        let mut client = Client::connect(&app, if i % 2 == 0 { "ann" } else { "bob" }).await;
        client
            .send(json!({"action": "subscribe", "documentId": id}))
            .await;
        clients.push(client);
    }
    for client in &mut clients {
        client.expect("subscribed").await;
    }
    for version in 1..=3u64 {
        let reply = app
            .put("ann", &id, version, "Plans", &format!("v{}", version + 1))
            .await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    for client in &mut clients {
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(client.expect("document.updated").await["version"].clone());
        }
        assert_eq!(seen, [json!(2), json!(3), json!(4)]);
    }
}

#[tokio::test]
async fn malformed_and_oversized_frames_get_error_frames() {
    let app = TestApp::spawn().await;
    let mut ann = Client::connect(&app, "ann").await;
    for (text, code) in [
        ("{nope", "malformed_frame"),
        (
            r#"{"action":"subscribe","documentId":42}"#,
            "malformed_frame",
        ),
        (r#"{"action":"fly"}"#, "unknown_action"),
    ] {
        ann.socket.send(Message::text(text)).await.unwrap();
        assert_eq!(ann.expect("error").await["code"], code, "{text}");
    }
    let oversized = json!({"action": "ping", "pad": "x".repeat(130 * 1024)}).to_string();
    ann.socket.send(Message::text(oversized)).await.unwrap();
    assert_eq!(ann.expect("error").await["code"], "frame_too_large");
    ann.expect_nothing_pending().await;
}

#[tokio::test]
async fn a_connection_closes_when_its_token_expires() {
    let app = TestApp::spawn().await;
    let authority = shared::auth::TokenAuthority::new(tests::TEST_SECRET).unwrap();
    let short = authority.issue(
        &shared::domain::UserId::parse("ann").unwrap(),
        chrono::TimeDelta::seconds(2),
        chrono::Utc::now(),
    );
    let mut ann = Client::connect_with(&app, &short).await;
    let close = loop {
        match tokio::time::timeout(PATIENCE, ann.socket.next())
            .await
            .expect("the connection closes in time")
        {
            Some(Ok(Message::Close(frame))) => break frame.expect("a close frame with a reason"),
            Some(Ok(_)) => continue,
            other => panic!("unexpected end {other:?}"),
        }
    };
    assert_eq!(u16::from(close.code), 1008);
    assert_eq!(close.reason.as_str(), "token expired");
}

fn ops_of(frame: &Value) -> shared::domain::TextOperation {
    serde_json::from_value(frame["ops"].clone()).expect("frames carry OPS")
}

async fn edit(app: &TestApp, user: &str, id: &str, base: u64, ops: Value) -> Value {
    let reply = app
        .send(
            app.request(Method::POST, &format!("/documents/{id}/edits"), Some(user))
                .json(&json!({"baseVersion": base, "ops": ops})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

/// A subscriber that holds the text applies each frame's operation and ends with the
/// server's text, even when the edits were made on stale bases; `include: document`
/// subscriptions get the whole document as well.
#[tokio::test]
async fn frames_carry_operations_that_replay_to_the_stored_text() {
    let app = TestApp::spawn().await;
    let collaborators: serde_json::Map<String, Value> = (0..100)
        .map(|n| (format!("user{n}"), json!("editor")))
        .collect();
    let doc = app
        .create("ann", "Plans", "one two", Value::Object(collaborators))
        .await;
    let id = id_of(&doc);
    let mut lean = Client::connect(&app, "user1").await;
    let mut full = Client::connect(&app, "user2").await;
    lean.subscribe(&id, None).await;
    full.send(json!({"action": "subscribe", "documentId": id, "include": "document"}))
        .await;
    assert_eq!(full.next().await["type"], "subscribed");

    // Three edits on version 1, one title change, then an edit on a stale base.
    edit(&app, "ann", &id, 1, json!(["A"])).await;
    edit(&app, "user3", &id, 1, json!([3, "B"])).await;
    edit(&app, "user4", &id, 1, json!([7, "C"])).await;
    let renamed = app
        .put(
            "ann",
            &id,
            4,
            "Plans 2",
            app.get("ann", &format!("/documents/{id}")).await.body["body"]
                .as_str()
                .unwrap(),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK);
    edit(&app, "user5", &id, 2, json!(["é🎉"])).await;
    let stored = app.get("ann", &format!("/documents/{id}")).await.body;
    let mut text = "one two".to_owned();
    for version in 2..=6u64 {
        let frame = lean.expect("document.updated").await;
        assert_eq!(frame["version"], version);
        assert!(frame.get("document").is_none());
        assert!(
            frame.get("collaborators").is_none(),
            "unchanged collaborators stay out"
        );
        if version == 5 {
            assert_eq!(frame["title"], "Plans 2");
            assert!(frame.get("ops").is_none(), "the body did not change");
            let with_document = full.expect("document.updated").await;
            assert_eq!(with_document["version"], version);
            assert_eq!(with_document["document"]["title"], "Plans 2");
            continue;
        }
        assert!(frame.get("title").is_none());
        assert_eq!(frame["baseVersion"], version - 1);
        text = ops_of(&frame).apply(&text).unwrap();
        // A one-character edit on a 100-collaborator document is a small frame.
        assert!(
            frame.to_string().len() <= 300,
            "{} bytes: {frame}",
            frame.to_string().len()
        );
        let with_document = full.expect("document.updated").await;
        assert_eq!(with_document["version"], version);
        assert_eq!(with_document["ops"], frame["ops"]);
        assert_eq!(with_document["document"]["version"], version);
        if version == 6 {
            assert_eq!(with_document["document"]["body"], stored["body"]);
        }
    }
    assert_eq!(text, stored["body"].as_str().unwrap());

    // A reconnecting client catches up from the replayed operations alone.
    let mut late = Client::connect(&app, "user6").await;
    let subscribed = late.subscribe(&id, Some(1)).await;
    assert_eq!(subscribed["version"], 6);
    let mut text = "one two".to_owned();
    for version in 2..=6u64 {
        let frame = late.expect("document.updated").await;
        assert_eq!(frame["version"], version);
        if frame.get("ops").is_some() {
            assert_eq!(frame["baseVersion"], version - 1);
            text = ops_of(&frame).apply(&text).unwrap();
        }
    }
    assert_eq!(text, stored["body"].as_str().unwrap());
}

#[tokio::test]
async fn presence_joins_moves_and_leaves() {
    let app = TestApp::spawn().await;
    let doc = app
        .create(
            "ann",
            "Plans",
            "hello",
            json!({"bob": "editor", "cat": "viewer"}),
        )
        .await;
    let id = id_of(&doc);
    let mut ann = Client::connect(&app, "ann").await;
    let mut bob = Client::connect(&app, "bob").await;
    ann.subscribe(&id, None).await;
    assert_eq!(bob.subscribe(&id, None).await["type"], "subscribed");
    // Following is not announced; sharing a cursor is, to the others only.
    ann.send(json!({"action": "presence", "documentId": id, "cursor": {"anchor": 1, "head": 3}}))
        .await;
    assert_eq!(
        bob.next_presence().await,
        json!({"type": "presence", "documentId": id, "user": "ann", "cursor": {"anchor": 1, "head": 3}})
    );
    bob.send(json!({"action": "presence", "documentId": id, "cursor": {"anchor": 0, "head": 0}}))
        .await;
    assert_eq!(
        ann.next_presence().await,
        json!({"type": "presence", "documentId": id, "user": "bob", "cursor": {"anchor": 0, "head": 0}})
    );
    // A third subscriber gets everyone's current presence after `subscribed`.
    let mut cat = Client::connect(&app, "cat").await;
    assert_eq!(cat.subscribe(&id, None).await["type"], "subscribed");
    let mut present = [cat.next_presence().await, cat.next_presence().await];
    present.sort_by_key(|f| f["user"].as_str().unwrap().to_owned());
    assert_eq!(present[0]["user"], "ann");
    assert_eq!(present[0]["cursor"], json!({"anchor": 1, "head": 3}));
    assert_eq!(present[1]["user"], "bob");
    assert_eq!(present[1]["cursor"], json!({"anchor": 0, "head": 0}));
    cat.send(json!({"action": "presence", "documentId": id, "cursor": null}))
        .await;
    assert_eq!(ann.next_presence().await["user"], "cat");
    assert_eq!(bob.next_presence().await["user"], "cat");

    // Unsubscribing leaves.
    bob.send(json!({"action": "unsubscribe", "documentId": id}))
        .await;
    assert_eq!(bob.next().await["type"], "unsubscribed");
    let left = json!({"type": "presence.left", "documentId": id, "user": "bob"});
    assert_eq!(ann.next_presence().await, left);
    assert_eq!(cat.next_presence().await, left);

    // Losing access leaves.
    let reply = app
        .send(
            app.request(Method::PATCH, &format!("/documents/{id}"), Some("ann"))
                .header("If-Match", "\"1\"")
                .header("Content-Type", "application/merge-patch+json")
                .body(json!({"collaborators": {"cat": null}}).to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(cat.next().await["type"], "access.revoked");
    assert_eq!(ann.expect("document.updated").await["version"], 2);
    assert_eq!(
        ann.next_presence().await,
        json!({"type": "presence.left", "documentId": id, "user": "cat"})
    );

    // Disconnecting leaves.
    let mut bob = Client::connect(&app, "bob").await;
    bob.subscribe(&id, None).await;
    bob.send(json!({"action": "presence", "documentId": id, "cursor": null}))
        .await;
    assert_eq!(ann.next_presence().await["user"], "bob");
    drop(bob);
    assert_eq!(
        ann.next_presence().await,
        json!({"type": "presence.left", "documentId": id, "user": "bob"})
    );
    // Presence never reaches the change stream: still version 2 everywhere.
    let history = app
        .get("ann", &format!("/documents/{id}/history"))
        .await
        .body;
    assert!(
        history["items"].as_array().map_or(0, Vec::len) <= 2,
        "{history}"
    );
    assert_eq!(
        app.get("ann", &format!("/documents/{id}")).await.body["version"],
        2
    );
}

#[tokio::test]
async fn presence_frames_are_checked_and_limited() {
    let app = TestApp::spawn().await;
    let doc = app.create("ann", "Plans", "hello", json!({})).await;
    let id = id_of(&doc);
    let mut ann = Client::connect(&app, "ann").await;
    // Not subscribed yet.
    ann.send(json!({"action": "presence", "documentId": id, "cursor": null}))
        .await;
    assert_eq!(ann.next().await["code"], "document_not_found");
    ann.subscribe(&id, None).await;
    for bad in [
        json!({"action": "presence", "documentId": id}),
        json!({"action": "presence", "documentId": id, "cursor": {"anchor": -1, "head": 0}}),
        json!({"action": "presence", "documentId": id, "cursor": {"anchor": 1}}),
        json!({"action": "presence", "documentId": id, "cursor": "here"}),
        json!({"action": "presence", "documentId": "nope", "cursor": null}),
    ] {
        ann.send(bad.clone()).await;
        assert_eq!(ann.next().await["code"], "malformed_frame", "{bad}");
    }
    // A flood of cursor updates is refused past the per-connection limit (after a pause,
    // so the connection's general frame budget is full again).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut limited = false;
    for n in 0..15 {
        ann.send(
            json!({"action": "presence", "documentId": id, "cursor": {"anchor": n, "head": n}}),
        )
        .await;
    }
    ann.send(json!({"action": "ping"})).await;
    loop {
        let frame = ann.next().await;
        if frame["type"] == "pong" {
            break;
        }
        if frame["code"] == "rate_limited" {
            limited = true;
        }
    }
    assert!(limited, "15 cursor updates at once are over the limit");
}

/// Tokens are credentials: at `RUST_LOG=trace`, with every library's frame and request
/// logging on, none of them (in an `Authorization` header, in `/ws?token=`, in an
/// `auth` frame, valid or not) appears in the server's output.
#[tokio::test]
async fn tokens_never_reach_the_log_even_at_trace() {
    use std::process::Stdio;
    use tests::child::{docfan_binary, free_port};

    let data = tempfile::tempdir().unwrap();
    let log_path = data.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut server = tokio::process::Command::new(docfan_binary())
        .args(["serve", "--listen", &addr, "--data-dir"])
        .arg(data.path().join("data"))
        .env(
            "DOCFAN_JWT_SECRET",
            std::str::from_utf8(tests::TEST_SECRET).unwrap(),
        )
        // Asking for the WebSocket library's frames by name does not bring them back.
        .env(
            "RUST_LOG",
            "trace,tungstenite=trace,tungstenite::protocol=trace",
        )
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..200 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "docfan serve did not start");

    let issue = |minutes: i64| {
        shared::auth::TokenAuthority::new(tests::TEST_SECRET)
            .unwrap()
            .issue(
                &shared::domain::UserId::parse("ann").unwrap(),
                chrono::TimeDelta::minutes(minutes),
                chrono::Utc::now(),
            )
    };
    let (rest, upgrade, refresh) = (issue(60), issue(61), issue(62));
    let forged = format!("{}x", issue(63));
    let created = http
        .post(format!("{base}/documents"))
        .bearer_auth(&rest)
        .json(&json!({"title": "Secret", "body": "text"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = http
        .get(format!("{base}/documents"))
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws?token={upgrade}"))
            .await
            .expect("websocket handshake");
    for frame in [
        json!({"action": "auth", "token": refresh}),
        json!({"action": "auth", "token": forged}),
        json!({"action": "subscribe", "documentId": id}),
        json!({"action": "ping"}),
    ] {
        socket.send(Message::text(frame.to_string())).await.unwrap();
    }
    let mut answers = Vec::new();
    while answers.len() < 4 {
        let message = tokio::time::timeout(PATIENCE, socket.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("readable");
        if let Message::Text(text) = message {
            let frame: Value = serde_json::from_str(&text).unwrap();
            // Only the answers to the four frames: presence and the created document's
            // `analysis.completed` may arrive among them, whenever the fan-out gets there.
            let kind = frame["type"].as_str().unwrap_or_default();
            if ["authenticated", "error", "subscribed", "pong"].contains(&kind) {
                answers.push(kind.to_owned());
            }
        }
    }
    assert_eq!(answers, ["authenticated", "error", "subscribed", "pong"]);
    socket.close(None).await.unwrap();

    // A graceful stop, so everything logged is written.
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(server.id().unwrap().to_string())
        .status();
    tokio::time::timeout(Duration::from_secs(20), server.wait())
        .await
        .expect("docfan stops")
        .unwrap();
    let logged = std::fs::read_to_string(&log_path).unwrap();
    // Logging really was on, for our code and for the WebSocket library (which still
    // says what it does with frames at DEBUG, never what is in them).
    assert!(logged.contains("token refreshed"), "{logged}");
    assert!(
        logged
            .lines()
            .any(|l| l.contains("DEBUG") && l.contains("tungstenite")),
        "{logged}"
    );
    for (what, token) in [
        ("REST", &rest),
        ("upgrade", &upgrade),
        ("auth frame", &refresh),
        ("forged", &forged),
    ] {
        // The signature is what makes a token a credential; the libraries log frames'
        // payloads as text or as hex bytes.
        let signature = token.rsplit('.').next().unwrap().trim_end_matches('x');
        let hex: String = signature.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(!logged.contains(signature), "the {what} token was logged");
        assert!(!logged.contains(&hex), "the {what} token was logged in hex");
    }
}
