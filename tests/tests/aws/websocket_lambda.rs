//! The Lambda `websocket` function's routes on API Gateway WebSocket event fixtures
//! (`fixtures/websocket-*.json`, the events API Gateway sends for `$connect`,
//! `$default` and `$disconnect`), over the DynamoDB registry and store, with replies
//! posted to a recording Management API endpoint.

use std::sync::Arc;

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use chrono::{TimeDelta, Utc};
use serde_json::{Value, json};
use shared::auth::TokenAuthority;
use shared::clock::{Clock, SystemClock};
use shared::domain::{DocumentId, Role, UserId};
use shared::ports::{ConnectionId, ConnectionRegistry, DocumentStore};
use tests::port_suites::{new_document, unique_user};
use tests::{TEST_SECRET, token_for};
use websocket::apigateway::{ApiGatewayOutbox, handle_request};
use websocket::{ConnectionService, ServiceConfig, ServicePorts};

use crate::emulators::{self, Wants};
use crate::push::Recorder;

const CONNECT: &str = include_str!("fixtures/websocket-connect.json");
const MESSAGE: &str = include_str!("fixtures/websocket-message.json");
const DISCONNECT: &str = include_str!("fixtures/websocket-disconnect.json");

fn event(
    fixture: &str,
    connection: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> ApiGatewayWebsocketProxyRequest {
    let mut event: Value = serde_json::from_str(fixture).unwrap();
    event["requestContext"]["connectionId"] = connection.into();
    if event.get("queryStringParameters").is_some() {
        match token {
            Some(token) => {
                event["queryStringParameters"]["token"] = token.into();
                event["multiValueQueryStringParameters"]["token"] = json!([token]);
            }
            None => {
                let object = event.as_object_mut().unwrap();
                object.remove("queryStringParameters");
                object.remove("multiValueQueryStringParameters");
            }
        }
    }
    if let Some(body) = body {
        event["body"] = body.into();
    }
    serde_json::from_value(event).unwrap()
}

struct Gateway {
    recorder: Recorder,
    service: ConnectionService,
    outbox: ApiGatewayOutbox,
    registry: Arc<dyn ConnectionRegistry>,
    store: Arc<dyn DocumentStore>,
}

impl Gateway {
    async fn start() -> Self {
        Self::start_with(ServiceConfig::default()).await
    }

    async fn start_with(config: ServiceConfig) -> Self {
        let recorder = Recorder::start().await;
        let clients =
            emulators::aws_with_endpoint(Wants::default(), Some(recorder.endpoint.clone())).await;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let registry: Arc<dyn ConnectionRegistry> =
            Arc::new(clients.connection_registry(Arc::clone(&clock)));
        let store: Arc<dyn DocumentStore> = Arc::new(clients.document_store());
        let outbox = ApiGatewayOutbox::new(clients.pusher().unwrap());
        let service = ConnectionService::new(
            ServicePorts {
                registry: Arc::clone(&registry),
                documents: Arc::clone(&store),
                audit: Arc::new(clients.audit_log()),
                outbox: Arc::new(outbox.clone()),
                tokens: TokenAuthority::new(TEST_SECRET).unwrap(),
                clock,
            },
            config,
        );
        Self {
            recorder,
            service,
            outbox,
            registry,
            store,
        }
    }

    /// Checks that `closed` was closed (`DELETE @connections`, alone) and forgotten, and
    /// returns the document's remaining subscribers, sorted.
    async fn closed_and_left(&self, closed: &str, document: &DocumentId) -> Vec<String> {
        assert_eq!(self.recorder.deleted(), [closed]);
        assert_eq!(
            self.registry
                .get(&ConnectionId(closed.into()))
                .await
                .unwrap(),
            None
        );
        tests::port_suites::subscriber_ids(self.registry.as_ref(), document).await
    }

    async fn send(&self, request: ApiGatewayWebsocketProxyRequest) -> i64 {
        handle_request(&self.service, &self.outbox, &request)
            .await
            .status_code
    }
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn connect_is_accepted_with_a_valid_token_and_refused_otherwise() {
    let gateway = Gateway::start().await;
    let ann = unique_user("ann");
    assert_eq!(
        gateway
            .send(event(CONNECT, "ok=", Some(&token_for(ann.as_str())), None))
            .await,
        200
    );
    let registered = gateway
        .registry
        .get(&ConnectionId("ok=".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(registered.user, ann);

    let expired = TokenAuthority::new(TEST_SECRET).unwrap().issue(
        &ann,
        TimeDelta::hours(1),
        Utc::now() - TimeDelta::hours(2),
    );
    let forged = TokenAuthority::new(b"another-secret-another-secret-0123")
        .unwrap()
        .issue(&ann, TimeDelta::hours(1), Utc::now());
    for (connection, token) in [
        ("none=", None),
        ("expired=", Some(expired.as_str())),
        ("forged=", Some(forged.as_str())),
        ("junk=", Some("junk")),
    ] {
        assert_eq!(
            gateway.send(event(CONNECT, connection, token, None)).await,
            401,
            "{connection}"
        );
        assert_eq!(
            gateway
                .registry
                .get(&ConnectionId(connection.into()))
                .await
                .unwrap(),
            None
        );
    }
    assert!(
        gateway.recorder.posts().is_empty(),
        "nothing is posted during $connect"
    );
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn one_user_may_hold_only_so_many_connections() {
    let gateway = Gateway::start_with(ServiceConfig {
        max_connections_per_user: Some(3),
        ..ServiceConfig::default()
    })
    .await;
    let (ann, bob) = (unique_user("ann"), unique_user("bob"));
    let (ann_token, bob_token) = (token_for(ann.as_str()), token_for(bob.as_str()));
    let connect = |id: &str, token: &str| event(CONNECT, id, Some(token), None);
    for i in 0..3 {
        assert_eq!(
            gateway.send(connect(&format!("ann{i}="), &ann_token)).await,
            200
        );
    }
    assert_eq!(gateway.send(connect("ann3=", &ann_token)).await, 429);
    assert_eq!(
        gateway
            .registry
            .get(&ConnectionId("ann3=".into()))
            .await
            .unwrap(),
        None,
        "a refused connection is not registered"
    );
    // Another user is not affected.
    assert_eq!(gateway.send(connect("bob0=", &bob_token)).await, 200);
    // A disconnect frees a place.
    assert_eq!(
        gateway.send(event(DISCONNECT, "ann0=", None, None)).await,
        200
    );
    assert_eq!(gateway.send(connect("ann4=", &ann_token)).await, 200);
    assert_eq!(gateway.send(connect("ann5=", &ann_token)).await, 429);
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn frames_are_answered_through_post_to_connection_and_disconnect_forgets() {
    let gateway = Gateway::start().await;
    let (ann, bob, dan) = (unique_user("ann"), unique_user("bob"), unique_user("dan"));
    let doc = new_document(&ann, "Shared", "text", &[(&bob, Role::Viewer)]);
    gateway.store.create(&doc).await.unwrap();
    let connect =
        |id: &str, user: &UserId| event(CONNECT, id, Some(&token_for(user.as_str())), None);
    assert_eq!(gateway.send(connect("bob=", &bob)).await, 200);
    assert_eq!(gateway.send(connect("dan=", &dan)).await, 200);

    let subscribe = json!({"action": "subscribe", "documentId": doc.id}).to_string();
    assert_eq!(
        gateway
            .send(event(MESSAGE, "bob=", None, Some(&subscribe)))
            .await,
        200
    );
    assert_eq!(
        gateway
            .send(event(MESSAGE, "dan=", None, Some(&subscribe)))
            .await,
        200
    );
    assert_eq!(
        gateway
            .send(event(MESSAGE, "bob=", None, Some(r#"{"action":"ping"}"#)))
            .await,
        200
    );
    assert_eq!(
        gateway
            .send(event(MESSAGE, "bob=", None, Some("{not json")))
            .await,
        200
    );

    let to_bob = gateway.recorder.posts_to("bob=");
    let types: Vec<_> = to_bob
        .iter()
        .map(|f| f["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types, ["subscribed", "pong", "error"]);
    assert_eq!(to_bob[0]["version"], 1);
    let to_dan = gateway.recorder.posts_to("dan=");
    assert_eq!(to_dan.len(), 1);
    assert_eq!(
        to_dan[0]["type"], "error",
        "strangers cannot subscribe: {}",
        to_dan[0]
    );
    let subscribers = gateway.registry.subscribers(&doc.id).await.unwrap();
    assert_eq!(
        subscribers
            .iter()
            .map(|s| s.connection.to_string())
            .collect::<Vec<_>>(),
        ["bob="]
    );

    // A frame from a connection the registry does not know closes it server-side.
    assert_eq!(
        gateway
            .send(event(MESSAGE, "ghost=", None, Some(r#"{"action":"ping"}"#)))
            .await,
        200
    );
    assert_eq!(gateway.recorder.deleted(), ["ghost="]);

    assert_eq!(
        gateway.send(event(DISCONNECT, "bob=", None, None)).await,
        200
    );
    assert_eq!(
        gateway
            .registry
            .get(&ConnectionId("bob=".into()))
            .await
            .unwrap(),
        None
    );
    assert!(
        gateway
            .registry
            .subscribers(&doc.id)
            .await
            .unwrap()
            .is_empty()
    );
}

/// The live consumer's notifier keeps pushes from outliving a token: the expiry is kept
/// with each subscription, so a change finds an expired connection without another
/// read, pushes it nothing, closes it (`DELETE @connections`) and forgets it; a
/// connection whose token is renewed in-band keeps receiving.
#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn pushes_skip_and_close_a_connection_whose_token_has_expired() {
    use shared::clock::ManualClock;
    use shared::domain::ChangeEvent;
    use shared::ports::Notifier;
    use tests::port_suites::next_version;

    let gateway = Gateway::start_with(ServiceConfig {
        notifies_here: false,
        ..ServiceConfig::default()
    })
    .await;
    let (ann, bob, cat) = (unique_user("ann"), unique_user("bob"), unique_user("cat"));
    let doc = new_document(
        &ann,
        "Shared",
        "text",
        &[(&bob, Role::Viewer), (&cat, Role::Viewer)],
    );
    gateway.store.create(&doc).await.unwrap();
    let authority = TokenAuthority::new(TEST_SECRET).unwrap();
    let now = Utc::now();
    // ann's token lasts an hour, bob's three; cat's lasts an hour but is renewed in-band.
    let tokens = [
        ("ann=", authority.issue(&ann, TimeDelta::hours(1), now)),
        ("bob=", authority.issue(&bob, TimeDelta::hours(3), now)),
        ("cat=", authority.issue(&cat, TimeDelta::hours(1), now)),
    ];
    let subscribe = json!({"action": "subscribe", "documentId": doc.id}).to_string();
    for (id, token) in &tokens {
        assert_eq!(
            gateway.send(event(CONNECT, id, Some(token), None)).await,
            200
        );
        assert_eq!(
            gateway
                .send(event(MESSAGE, id, None, Some(&subscribe)))
                .await,
            200
        );
    }
    assert_eq!(
        gateway.service.replay_cursors(),
        0,
        "the websocket function keeps no cursor once a subscription is live"
    );
    let renewed =
        json!({"action": "auth", "token": authority.issue(&cat, TimeDelta::hours(4), now)})
            .to_string();
    assert_eq!(
        gateway
            .send(event(MESSAGE, "cat=", None, Some(&renewed)))
            .await,
        200
    );

    // Two hours on, as the live consumer's notifier sees it.
    let later: Arc<dyn Clock> = Arc::new(ManualClock::new(now + TimeDelta::hours(2)));
    let notifier = shared::aws::ApiGatewayNotifier::new(
        Arc::clone(&gateway.registry),
        gateway.outbox.pusher().clone(),
        later,
    );
    let v2 = next_version(&doc, &ann, |d| {
        d.title = shared::domain::Title::parse("Renamed").unwrap();
    });
    notifier
        .publish_change(&ChangeEvent::written(Some(doc.clone()), v2, "2".into()))
        .await
        .unwrap();

    let updated = |id: &str| {
        gateway
            .recorder
            .posts_to(id)
            .iter()
            .filter(|f| f["type"] == "document.updated")
            .count()
    };
    assert_eq!(
        (updated("ann="), updated("bob="), updated("cat=")),
        (0, 1, 1)
    );
    let left = gateway.closed_and_left("ann=", &doc.id).await;
    assert_eq!(left, ["bob=", "cat="]);
}

/// The scheduled sweep closes and forgets the connections whose tokens have expired
/// (a quiet document pushes nothing that would find them), with their subscriptions,
/// and leaves the others.
#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn the_sweep_closes_connections_whose_tokens_have_expired() {
    use shared::ports::Connection;

    let gateway = Gateway::start().await;
    let (ann, bob) = (unique_user("ann"), unique_user("bob"));
    let doc = new_document(&ann, "Quiet", "text", &[(&bob, Role::Viewer)]);
    gateway.store.create(&doc).await.unwrap();
    let now = Utc::now();
    for (id, user, expires_at) in [
        ("ann=", &ann, now - TimeDelta::seconds(5)),
        ("bob=", &bob, now + TimeDelta::hours(1)),
    ] {
        gateway
            .registry
            .register(&Connection {
                id: ConnectionId(id.into()),
                user: user.clone(),
                expires_at,
                connected_at: now - TimeDelta::hours(1),
            })
            .await
            .unwrap();
        gateway
            .registry
            .subscribe(&ConnectionId(id.into()), &doc.id, Default::default())
            .await
            .unwrap();
    }
    let closed = websocket::apigateway::sweep(&gateway.service, &gateway.outbox)
        .await
        .unwrap();
    assert_eq!(closed, 1);
    let left = gateway.closed_and_left("ann=", &doc.id).await;
    assert_eq!(left, ["bob="]);
    // Nothing left to sweep.
    assert_eq!(
        websocket::apigateway::sweep(&gateway.service, &gateway.outbox)
            .await
            .unwrap(),
        0
    );
}
