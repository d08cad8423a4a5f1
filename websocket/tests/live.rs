//! End to end over real sockets: the `/ws` driver on a port, tokio-tungstenite clients,
//! real documents in SQLite, and the fan-out played by calling the notifier with the
//! ChangeEvents of real commits.

// A test target sees all of its package's dependencies; the library is where unused ones are caught.
#![allow(unused_crate_dependencies)]

mod common;

use std::time::Duration;

use chrono::TimeDelta;
use common::{Client, Ended, Server, World, user, versions};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use shared::domain::{Analysis, DocumentId, Role};
use shared::ports::{ConnectionRegistry, Notifier};
use tokio_tungstenite::tungstenite;
use websocket::{LocalConfig, RateLimit, ServiceConfig};

async fn refused_status(url: &str) -> u16 {
    match tokio_tungstenite::connect_async(url).await {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("the upgrade was accepted"),
    }
}

#[tokio::test]
async fn bad_tokens_are_refused_before_the_upgrade() {
    let world = World::new();
    let server = Server::start(&world, LocalConfig::default()).await;
    let expired = world.token_for("ann", TimeDelta::seconds(-10));
    let forged = shared::auth::TokenAuthority::new(&[9u8; 32])
        .unwrap()
        .issue(&user("ann"), TimeDelta::hours(1), chrono::Utc::now());
    assert_eq!(
        refused_status(&format!("ws://{}/ws", server.addr)).await,
        401
    );
    assert_eq!(refused_status(&server.url("")).await, 401);
    assert_eq!(refused_status(&server.url("not-a-token")).await, 401);
    assert_eq!(refused_status(&server.url(&expired)).await, 401);
    assert_eq!(refused_status(&server.url(&forged)).await, 401);
    assert_eq!(server.ws.open_connections(), 0);
    assert_eq!(world.registry.connection_count(), 0);
}

/// The status line's code of a plain (non-upgrade) GET.
async fn plain_get_status(addr: std::net::SocketAddr, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn plain_requests_without_a_token_are_unauthorized_too() {
    let world = World::new();
    let server = Server::start(&world, LocalConfig::default()).await;
    assert_eq!(plain_get_status(server.addr, "/ws").await, 401);
    assert_eq!(plain_get_status(server.addr, "/ws?token=junk").await, 401);
    let token = world.token("ann");
    let status = plain_get_status(server.addr, &format!("/ws?token={token}")).await;
    assert!((400..500).contains(&status) && status != 401, "{status}");
    assert_eq!(world.registry.connection_count(), 0);
}

#[tokio::test]
async fn subscribing_needs_read_access_at_that_moment() {
    let world = World::new();
    let server = Server::start(&world, LocalConfig::default()).await;
    let created = world
        .create("ann", &[("bob", Role::Editor), ("cat", Role::Viewer)])
        .await;
    let id = created.document_id;
    let mut readers = Vec::new();
    for who in ["ann", "bob", "cat"] {
        let mut client = server.connect(&world.token(who)).await;
        let reply = client.subscribe(&id, None).await;
        assert_eq!(
            reply,
            json!({"type": "subscribed", "documentId": id, "version": 1}),
            "{who}"
        );
        readers.push(client);
    }
    // A stranger and a missing document get the very same refusal.
    let mut dan = server.connect(&world.token("dan")).await;
    let stranger = dan.subscribe(&id, None).await;
    let missing_id = DocumentId::generate();
    let missing = dan.subscribe(&missing_id, None).await;
    assert_eq!(stranger["code"], "document_not_found");
    assert_eq!(stranger["documentId"], json!(id));
    assert_eq!(missing["documentId"], json!(missing_id));
    let (mut a, mut b) = (stranger.clone(), missing.clone());
    a.as_object_mut().unwrap().remove("documentId");
    b.as_object_mut().unwrap().remove("documentId");
    assert_eq!(a, b);
    assert_eq!(world.registry.subscribers(&id).await.unwrap().len(), 3);
}

#[tokio::test]
async fn an_edit_reaches_the_other_readers_and_no_stranger() {
    let world = World::new();
    let server = Server::start(&world, LocalConfig::default()).await;
    let notifier = server.ws.notifier();
    let created = world.create("ann", &[("bob", Role::Viewer)]).await;
    let id = created.document_id;
    world.fan_out(&notifier, &created).await;

    let mut ann = server.connect(&world.token("ann")).await;
    let mut bob = server.connect(&world.token("bob")).await;
    let mut dan = server.connect(&world.token("dan")).await;
    ann.subscribe(&id, None).await;
    bob.subscribe_with_document(&id).await;
    dan.subscribe(&id, None).await;

    let before = world.current(&id).await.body;
    let change = world.edit("ann", &id, "second draft").await;
    world.fan_out(&notifier, &change).await;
    for (client, include) in [(&mut ann, false), (&mut bob, true)] {
        let frame = client.expect("document.updated").await;
        // The whole document only for the subscription that asked for it.
        assert_eq!(frame.get("document").is_some(), include, "{frame}");
        assert_eq!(frame["documentId"], json!(id));
        assert_eq!(frame["version"], 2);
        assert_eq!(frame["baseVersion"], 1);
        assert_eq!(frame["actor"], "ann");
        assert_eq!(frame["changedFields"], json!(["body"]));
        assert_eq!(frame["at"], json!(change.at));
        let ops: shared::domain::TextOperation =
            serde_json::from_value(frame["ops"].clone()).unwrap();
        assert_eq!(ops.apply(before.as_str()).unwrap(), "second draft");
    }
    dan.expect_nothing_pending().await;

    // Analyses go to the readers too.
    let analysis = Analysis {
        document_id: id,
        version: 2,
        word_count: 2,
        reading_time_seconds: 1,
        language: "eng".into(),
        top_terms: vec![],
        analyzed_at: change.at,
    };
    notifier
        .publish_analysis(&world.current(&id).await, &analysis)
        .await
        .unwrap();
    let frame = bob.expect("analysis.completed").await;
    assert_eq!(frame["version"], 2);
    assert_eq!(frame["analysis"]["wordCount"], 2);
    dan.expect_nothing_pending().await;

    let metrics = server.metrics.render();
    assert!(
        metrics.contains("docfan_websocket_connections 3\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("docfan_websocket_notifications_sent_total 4\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_removed_collaborator_is_told_and_hears_nothing_more() {
    let world = World::new();
    let server = Server::start(&world, LocalConfig::default()).await;
    let notifier = server.ws.notifier();
    let created = world
        .create("ann", &[("bob", Role::Editor), ("cat", Role::Viewer)])
        .await;
    let id = created.document_id;
    let mut bob = server.connect(&world.token("bob")).await;
    let mut cat = server.connect(&world.token("cat")).await;
    bob.subscribe(&id, None).await;
    cat.subscribe(&id, None).await;

    let revoke = world.share(&id, &[("bob", Role::Editor)]).await;
    world.fan_out(&notifier, &revoke).await;
    assert_eq!(
        cat.next().await,
        json!({"type": "access.revoked", "documentId": id})
    );
    let frame = bob.expect("document.updated").await;
    assert_eq!(frame["changedFields"], json!(["collaborators"]));

    let later = world.edit("bob", &id, "without cat").await;
    world.fan_out(&notifier, &later).await;
    assert_eq!(bob.expect("document.updated").await["version"], 3);
    cat.expect_nothing_pending().await;
    // And cat cannot come back.
    assert_eq!(cat.subscribe(&id, None).await["code"], "document_not_found");
}

#[tokio::test]
async fn a_deletion_is_announced_and_ends_every_subscription() {
    let world = World::new();
    let server = Server::start(&world, LocalConfig::default()).await;
    let notifier = server.ws.notifier();
    let created = world.create("ann", &[("bob", Role::Viewer)]).await;
    let id = created.document_id;
    let mut ann = server.connect(&world.token("ann")).await;
    let mut bob = server.connect(&world.token("bob")).await;
    ann.subscribe(&id, None).await;
    bob.subscribe(&id, None).await;

    let deletion = world.delete(&id).await;
    world.fan_out(&notifier, &deletion).await;
    for client in [&mut ann, &mut bob] {
        let frame = client.expect("document.deleted").await;
        assert_eq!(frame["version"], 2);
        assert_eq!(frame["actor"], "ann");
        assert!(frame.get("document").is_none());
    }
    assert!(world.registry.subscribers(&id).await.unwrap().is_empty());
    assert_eq!(bob.subscribe(&id, None).await["code"], "document_not_found");
}

#[tokio::test]
async fn reconnecting_with_since_version_replays_exactly_what_was_missed() {
    let world = World::new();
    let server = Server::start(&world, LocalConfig::default()).await;
    let notifier = server.ws.notifier();
    let created = world.create("ann", &[("bob", Role::Viewer)]).await;
    let id = created.document_id;
    world.fan_out(&notifier, &created).await;

    let mut bob = server.connect(&world.token("bob")).await;
    bob.subscribe(&id, None).await;
    let v2 = world.edit("ann", &id, "v2").await;
    world.fan_out(&notifier, &v2).await;
    assert_eq!(bob.expect("document.updated").await["version"], 2);
    bob.socket.close(None).await.unwrap();
    drop(bob);

    for n in 3..=6 {
        let change = world.edit("ann", &id, &format!("v{n}")).await;
        world.fan_out(&notifier, &change).await;
    }
    let mut bob = server.connect(&world.token("bob")).await;
    assert_eq!(
        bob.subscribe(&id, Some(2)).await,
        json!({"type": "subscribed", "documentId": id, "version": 6})
    );
    let mut frames = Vec::new();
    for _ in 3..=6 {
        frames.push(bob.expect("document.updated").await);
    }
    assert_eq!(versions(&frames), [3, 4, 5, 6]);
    let v7 = world.edit("ann", &id, "v7").await;
    world.fan_out(&notifier, &v7).await;
    // A redelivery of the last replayed version is not sent again.
    notifier.publish_change(&v7).await.unwrap();
    assert_eq!(bob.expect("document.updated").await["version"], 7);
    bob.expect_nothing_pending().await;
}

#[tokio::test]
async fn malformed_and_oversized_frames_get_error_frames() {
    let world = World::new();
    let server = Server::start(
        &world,
        LocalConfig {
            max_message_bytes: 512 * 1024,
            ..LocalConfig::default()
        },
    )
    .await;
    let mut ann = server.connect(&world.token("ann")).await;
    let cases = [
        ("{not json", "malformed_frame"),
        ("[]", "malformed_frame"),
        (r#"{"documentId":"x"}"#, "malformed_frame"),
        (
            r#"{"action":"subscribe","documentId":"not-a-uuid"}"#,
            "malformed_frame",
        ),
        (
            r#"{"action":"subscribe","documentId":"01936f0e-7c4a-7b2e-8f00-000000000001","sinceVersion":-1}"#,
            "malformed_frame",
        ),
        (r#"{"action":"launch"}"#, "unknown_action"),
    ];
    for (text, code) in cases {
        ann.send_text(text).await;
        let frame = ann.expect("error").await;
        assert_eq!(frame["code"], code, "{text}");
        assert!(frame["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    ann.socket
        .send(tungstenite::Message::binary(vec![1u8, 2, 3]))
        .await
        .unwrap();
    assert_eq!(ann.expect("error").await["code"], "malformed_frame");

    let oversized = json!({"action": "ping", "pad": "x".repeat(200 * 1024)}).to_string();
    ann.send_text(&oversized).await;
    assert_eq!(ann.expect("error").await["code"], "frame_too_large");
    // The connection still works…
    ann.expect_nothing_pending().await;
    // …until a message too big to read at all.
    let huge = "x".repeat(600 * 1024);
    let _ = ann.socket.send(tungstenite::Message::text(huge)).await;
    assert_eq!(
        ann.ended().await,
        Ended::Closed(Some((1009, "message too big".into())))
    );
}

#[tokio::test]
async fn floods_are_refused_then_closed() {
    let world = World::new();
    let server = Server::start(
        &world,
        LocalConfig {
            rate_limit: RateLimit {
                burst: 5,
                per_second: 0.1,
                max_refused: 5,
                window: Duration::from_secs(600),
            },
            ..LocalConfig::default()
        },
    )
    .await;
    let mut ann = server.connect(&world.token("ann")).await;
    for _ in 0..20 {
        ann.send(json!({"action": "ping"})).await;
    }
    let mut pongs = 0;
    let mut refusals = 0;
    let ended = loop {
        match tokio::time::timeout(common::PATIENCE, ann.socket.next())
            .await
            .expect("frames in time")
        {
            Some(Ok(tungstenite::Message::Text(text))) => {
                let frame: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
                match frame["type"].as_str().unwrap() {
                    "pong" => pongs += 1,
                    "error" => {
                        assert_eq!(frame["code"], "rate_limited");
                        refusals += 1;
                    }
                    other => panic!("unexpected {other}"),
                }
            }
            Some(Ok(tungstenite::Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("unexpected end {other:?}"),
        }
    };
    assert_eq!(pongs, 5);
    assert_eq!(refusals, 5);
    let frame = ended.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1008);
    assert_eq!(frame.reason.as_str(), "rate limit exceeded");
}

#[tokio::test]
async fn an_expiring_token_closes_the_connection_unless_refreshed() {
    let world = World::new();
    let server = Server::start(
        &world,
        LocalConfig {
            check_interval: Duration::from_millis(20),
            ..LocalConfig::default()
        },
    )
    .await;
    let mut ann = server
        .connect(&world.token_for("ann", TimeDelta::minutes(5)))
        .await;
    let mut ann2 = server
        .connect(&world.token_for("ann", TimeDelta::minutes(5)))
        .await;

    // A refresh must be for the same user, and valid.
    ann.send(json!({"action": "auth", "token": world.token("bob")}))
        .await;
    assert_eq!(ann.expect("error").await["code"], "wrong_user");
    ann.send(json!({"action": "auth", "token": "garbage"}))
        .await;
    assert_eq!(ann.expect("error").await["code"], "invalid_token");
    ann.send(json!({"action": "auth", "token": world.token_for("ann", TimeDelta::seconds(-1))}))
        .await;
    assert_eq!(ann.expect("error").await["code"], "token_expired");

    let fresh = world.token_for("ann", TimeDelta::hours(2));
    ann.send(json!({"action": "auth", "token": fresh})).await;
    let frame = ann.expect("authenticated").await;
    assert!(frame["expiresAt"].is_string());

    world.clock.advance(TimeDelta::minutes(6));
    // The unrefreshed connection is closed with a clear reason…
    assert_eq!(
        ann2.ended().await,
        Ended::Closed(Some((1008, "token expired".into())))
    );
    // …the refreshed one lives on, until its new token expires.
    ann.expect_nothing_pending().await;
    world.clock.advance(TimeDelta::hours(2));
    assert_eq!(
        ann.ended().await,
        Ended::Closed(Some((1008, "token expired".into())))
    );
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let world = World::new();
    let server = Server::start(
        &world,
        LocalConfig {
            idle_timeout: Duration::from_millis(300),
            check_interval: Duration::from_millis(20),
            ..LocalConfig::default()
        },
    )
    .await;
    let mut ann = server.connect(&world.token("ann")).await;
    assert_eq!(
        ann.ended().await,
        Ended::Closed(Some((1001, "idle timeout".into())))
    );
    wait_until(|| server.ws.open_connections() == 0).await;
    assert_eq!(world.registry.connection_count(), 0);
}

#[tokio::test]
async fn the_server_pings() {
    let world = World::new();
    let server = Server::start(
        &world,
        LocalConfig {
            ping_interval: Duration::from_millis(50),
            ..LocalConfig::default()
        },
    )
    .await;
    let mut ann = server.connect(&world.token("ann")).await;
    loop {
        let message = tokio::time::timeout(common::PATIENCE, ann.socket.next())
            .await
            .expect("a ping in time")
            .unwrap()
            .unwrap();
        if message.is_ping() {
            break;
        }
    }
}

async fn wait_until(mut done: impl FnMut() -> bool) {
    tokio::time::timeout(common::PATIENCE, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the condition holds in time");
}

/// A body of ~60 KB, so each frame that carries it is big.
fn big_body() -> String {
    "lorem ipsum ".repeat(5000)
}

/// A document ann shares with bob, and bob's client subscribed to it with the whole
/// document in every frame (so frames stay big), reading nothing unless told to.
async fn stuck_subscriber(world: &World, server: &Server) -> (DocumentId, Client) {
    let id = world
        .create("ann", &[("bob", Role::Viewer)])
        .await
        .document_id;
    let mut stuck = Client::connect(&server.url(&world.token("bob")), Some(4096)).await;
    stuck.subscribe_with_document(&id).await;
    (id, stuck)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_does_not_delay_a_hundred_others() {
    let world = World::new();
    let server = Server::start_with(
        &world,
        ServiceConfig::default(),
        LocalConfig {
            outgoing_queue: 8,
            write_timeout: Duration::from_secs(30),
            // The hundred readers and the stuck client are all bob's.
            max_connections_per_user: 101,
            ..LocalConfig::default()
        },
        Some(4096),
    )
    .await;
    let notifier = server.ws.notifier();
    let big = big_body();
    let (id, mut stuck) = stuck_subscriber(&world, &server).await;
    let mut readers = Vec::new();
    for _ in 0..100 {
        let mut client = server.connect(&world.token("bob")).await;
        client.subscribe_with_document(&id).await;
        readers.push(client);
    }

    // Each edit is ~60 KB on the wire; the stuck client's socket and queue fill within a
    // few edits, and every reader still gets every edit.
    let edits = 40;
    for n in 0..edits {
        let change = world.edit("ann", &id, &format!("{n} {big}")).await;
        world.fan_out(&notifier, &change).await;
        for reader in &mut readers {
            let frame = reader.expect("document.updated").await;
            assert_eq!(frame["version"], n + 2);
        }
    }
    // The stuck client was dropped: reading now, it finds its backlog cut short.
    wait_until(|| server.ws.open_connections() == 100).await;
    let mut received = 0;
    let ended = loop {
        match tokio::time::timeout(common::PATIENCE, stuck.socket.next())
            .await
            .expect("the end in time")
        {
            Some(Ok(tungstenite::Message::Text(_))) => received += 1,
            Some(Ok(tungstenite::Message::Close(frame))) => {
                break Ended::Closed(frame.map(|f| (u16::from(f.code), f.reason.to_string())));
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => break Ended::Dropped,
        }
    };
    assert!(
        received < edits,
        "the stuck client got everything ({received})"
    );
    assert!(
        matches!(&ended, Ended::Dropped)
            || ended == Ended::Closed(Some((1008, "too slow: the outgoing queue is full".into()))),
        "{ended:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_stops_draining_is_closed_after_the_write_timeout() {
    let world = World::new();
    let server = Server::start_with(
        &world,
        ServiceConfig::default(),
        LocalConfig {
            // Room for every frame: only the write timeout can end this connection.
            outgoing_queue: 100_000,
            write_timeout: Duration::from_millis(300),
            ..LocalConfig::default()
        },
        Some(4096),
    )
    .await;
    let notifier = server.ws.notifier();
    let big = big_body();
    let (id, _stuck) = stuck_subscriber(&world, &server).await;
    // ~60 KB frames until the socket stops taking them and the write times out.
    let mut n = 0;
    while server.ws.open_connections() == 1 {
        assert!(
            n < 2_000,
            "a socket nobody reads still took {n} frames of 60 KB"
        );
        let change = world.edit("ann", &id, &format!("{n} {big}")).await;
        world.fan_out(&notifier, &change).await;
        n += 1;
    }
    assert_eq!(server.ws.open_connections(), 0);
    assert_eq!(world.registry.connection_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_subscribers_all_receive_every_edit() {
    let world = World::new();
    // Five hundred connections each for ann and bob.
    let server = Server::start(
        &world,
        LocalConfig {
            max_connections_per_user: 500,
            ..LocalConfig::default()
        },
    )
    .await;
    let notifier = server.ws.notifier();
    let created = world.create("ann", &[("bob", Role::Viewer)]).await;
    let id = created.document_id;
    let mut clients = Vec::new();
    for i in 0..1000 {
        let who = if i % 2 == 0 { "ann" } else { "bob" };
        let mut client = server.connect(&world.token(who)).await;
        client
            .send(json!({"action": "subscribe", "documentId": id}))
            .await;
        clients.push(client);
    }
    for client in &mut clients {
        client.expect("subscribed").await;
    }
    assert_eq!(world.registry.subscribers(&id).await.unwrap().len(), 1000);
    for n in 2..=4u64 {
        let change = world.edit("ann", &id, &format!("edit {n}")).await;
        world.fan_out(&notifier, &change).await;
    }
    for client in &mut clients {
        let frames = vec![
            client.expect("document.updated").await,
            client.expect("document.updated").await,
            client.expect("document.updated").await,
        ];
        assert_eq!(versions(&frames), [2, 3, 4]);
    }
}

#[tokio::test]
async fn unsubscribing_stops_the_frames() {
    let world = World::new();
    let server = Server::start(&world, LocalConfig::default()).await;
    let notifier = server.ws.notifier();
    let created = world.create("ann", &[("bob", Role::Viewer)]).await;
    let id = created.document_id;
    let mut bob = server.connect(&world.token("bob")).await;
    bob.subscribe(&id, None).await;
    bob.send(json!({"action": "unsubscribe", "documentId": id}))
        .await;
    assert_eq!(
        bob.next().await,
        json!({"type": "unsubscribed", "documentId": id})
    );
    let change = world.edit("ann", &id, "unheard").await;
    world.fan_out(&notifier, &change).await;
    bob.expect_nothing_pending().await;
}

#[tokio::test]
async fn shutting_down_closes_every_connection() {
    let world = World::new();
    let server = Server::start(&world, LocalConfig::default()).await;
    let mut ann = server.connect(&world.token("ann")).await;
    let mut bob = server.connect(&world.token("bob")).await;
    server.ws.close_all();
    for client in [&mut ann, &mut bob] {
        assert_eq!(
            client.ended().await,
            Ended::Closed(Some((1001, "server shutting down".into())))
        );
    }
    wait_until(|| world.registry.connection_count() == 0).await;
}

/// One user may hold `max_connections_per_user` connections at once; the next upgrade is
/// refused with 429 and a problem, another user is not affected, and a closed connection
/// frees its slot. The server as a whole is capped the same way (503).
#[tokio::test]
async fn connections_are_capped_per_user_and_per_server() {
    let world = World::new();
    let server = Server::start(
        &world,
        LocalConfig {
            max_connections_per_user: 3,
            max_connections: 5,
            ..LocalConfig::default()
        },
    )
    .await;
    let refused = |url: String| async move {
        match tokio_tungstenite::connect_async(url).await {
            Err(tungstenite::Error::Http(response)) => {
                let body: serde_json::Value =
                    serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
                (
                    response.status().as_u16(),
                    response.headers().contains_key("retry-after"),
                    body["type"].as_str().unwrap_or_default().to_owned(),
                )
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    };
    let mut mallory = Vec::new();
    for _ in 0..3 {
        mallory.push(server.connect(&world.token("mallory")).await);
    }
    assert_eq!(
        refused(server.url(&world.token("mallory"))).await,
        (429, true, "/problems/too-many-connections".to_owned())
    );
    let _ann = server.connect(&world.token("ann")).await;
    let _bob = server.connect(&world.token("bob")).await;
    assert_eq!(
        refused(server.url(&world.token("cat"))).await,
        (503, true, "/problems/unavailable".to_owned())
    );
    // A closed connection gives its slot back once the server has seen it go.
    let mut first = mallory.remove(0);
    first.socket.close(None).await.unwrap();
    drop(first);
    wait_until(|| server.ws.open_connections() == 4).await;
    let mut again = None;
    for _ in 0..200 {
        if let Ok((socket, _)) =
            tokio_tungstenite::connect_async(server.url(&world.token("mallory"))).await
        {
            again = Some(socket);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "the freed slot came back");
}

#[tokio::test]
async fn a_client_ping_gets_its_pong_at_once_and_a_silent_client_is_closed() {
    let world = World::new();
    let server = Server::start(
        &world,
        LocalConfig {
            pong_timeout: Duration::from_millis(400),
            check_interval: Duration::from_millis(20),
            ..LocalConfig::default()
        },
    )
    .await;
    let mut ann = server.connect(&world.token("ann")).await;
    ann.socket
        .send(tungstenite::Message::Ping(
            b"are you there".as_slice().into(),
        ))
        .await
        .unwrap();
    let pong = tokio::time::timeout(Duration::from_millis(300), ann.socket.next())
        .await
        .expect("the pong without waiting for another frame")
        .unwrap()
        .unwrap();
    assert_eq!(
        pong,
        tungstenite::Message::Pong(b"are you there".as_slice().into())
    );
    // Then nothing from the client at all (this test's client reads, so it would
    // answer the server's pings; with the default 30 s interval none comes).
    assert_eq!(
        ann.ended().await,
        Ended::Closed(Some((1001, "no answer to pings".into())))
    );
}
