//! `post_to_connection` against a recording endpoint that speaks the API Gateway
//! Management API's shape (`POST /{stage}/@connections/{id}` with the frame as the raw
//! body; 410 with `x-amzn-ErrorType: GoneException` for a gone connection).
//!
//! moto serves this API too, but it accepts posts only at the bare endpoint (no stage
//! path), keeps what was posted where a test cannot read it, and never answers 410, so
//! the path, the SigV4 signature, the body, the Gone handling and throttling are
//! checked here instead.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use shared::aws::{MAX_FRAME_BYTES, PushError};
use shared::ports::ConnectionId;
use tokio::net::TcpListener;

use crate::emulators::{self, Wants};

/// The stage every recorded endpoint is served under.
pub const STAGE: &str = "dev";

/// One `post_to_connection` call as the endpoint saw it.
#[derive(Debug, Clone)]
pub struct Post {
    pub connection: String,
    pub path: String,
    pub authorization: String,
    pub body: Bytes,
}

impl Post {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("frames are JSON")
    }
}

#[derive(Default)]
struct Recorded {
    posts: Vec<Post>,
    deleted: Vec<String>,
    gone: HashSet<String>,
    throttled: HashSet<String>,
    in_flight: usize,
    max_in_flight: usize,
    delay: std::time::Duration,
}

/// A Management API endpoint that records posts and answers 410 for connections
/// marked gone.
#[derive(Clone)]
pub struct Recorder {
    state: Arc<Mutex<Recorded>>,
    /// `http://127.0.0.1:PORT/dev`, the `DOCFAN_WEBSOCKET_ENDPOINT` to use.
    pub endpoint: String,
}

impl Recorder {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(Recorded::default()));
        let app = Router::new()
            .route(
                &format!("/{STAGE}/@connections/{{id}}"),
                post(record).delete(disconnect),
            )
            .with_state(Arc::clone(&state));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}/{STAGE}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { state, endpoint }
    }

    pub fn mark_gone(&self, connection: &str) {
        self.state
            .lock()
            .unwrap()
            .gone
            .insert(connection.to_owned());
    }

    /// Makes every post take this long, to observe concurrency.
    pub fn delay_posts(&self, delay: std::time::Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    /// The most posts the endpoint served at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.lock().unwrap().max_in_flight
    }

    /// Answers 429 `LimitExceededException` to every post to this connection.
    pub fn throttle(&self, connection: &str) {
        self.state
            .lock()
            .unwrap()
            .throttled
            .insert(connection.to_owned());
    }

    pub fn posts(&self) -> Vec<Post> {
        self.state.lock().unwrap().posts.clone()
    }

    pub fn posts_to(&self, connection: &str) -> Vec<serde_json::Value> {
        self.posts()
            .iter()
            .filter(|p| p.connection == connection)
            .map(Post::json)
            .collect()
    }

    pub fn deleted(&self) -> Vec<String> {
        self.state.lock().unwrap().deleted.clone()
    }
}

fn gone() -> Response {
    (
        StatusCode::GONE,
        [
            ("x-amzn-ErrorType", "GoneException"),
            ("content-type", "application/json"),
        ],
        r#"{"message":null}"#,
    )
        .into_response()
}

async fn record(
    State(state): State<Arc<Mutex<Recorded>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: Bytes,
) -> Response {
    let delay = {
        let mut state = state.lock().unwrap();
        if state.gone.contains(&id) {
            return gone();
        }
        if state.throttled.contains(&id) {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [
                    ("x-amzn-ErrorType", "LimitExceededException"),
                    ("content-type", "application/json"),
                ],
                r#"{"message":"Rate exceeded"}"#,
            )
                .into_response();
        }
        state.in_flight += 1;
        state.max_in_flight = state.max_in_flight.max(state.in_flight);
        state.delay
    };
    tokio::time::sleep(delay).await;
    let mut state = state.lock().unwrap();
    state.in_flight -= 1;
    state.posts.push(Post {
        connection: id,
        path: uri.path().to_owned(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        body,
    });
    StatusCode::OK.into_response()
}

async fn disconnect(State(state): State<Arc<Mutex<Recorded>>>, Path(id): Path<String>) -> Response {
    let mut state = state.lock().unwrap();
    if state.gone.contains(&id) {
        return gone();
    }
    state.deleted.push(id);
    StatusCode::NO_CONTENT.into_response()
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn frames_are_posted_signed_to_the_stage_path_and_gone_is_typed() {
    let recorder = Recorder::start().await;
    let clients =
        emulators::aws_with_endpoint(Wants::default(), Some(recorder.endpoint.clone())).await;
    let pusher = clients.pusher().unwrap();

    let frame = br#"{"type":"pong"}"#;
    pusher
        .post(&ConnectionId("abc=".into()), frame)
        .await
        .unwrap();
    let posts = recorder.posts();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].connection, "abc=");
    assert_eq!(posts[0].path, format!("/{STAGE}/@connections/abc%3D"));
    assert_eq!(&posts[0].body[..], frame);
    assert!(
        posts[0]
            .authorization
            .starts_with("AWS4-HMAC-SHA256 Credential=testing/")
            && posts[0].authorization.contains("/execute-api/aws4_request"),
        "SigV4 for execute-api: {}",
        posts[0].authorization
    );

    recorder.mark_gone("left");
    assert_eq!(
        pusher.post(&ConnectionId("left".into()), frame).await,
        Err(PushError::Gone)
    );

    recorder.throttle("busy");
    assert!(matches!(
        pusher.post(&ConnectionId("busy".into()), frame).await,
        Err(PushError::Unavailable(_))
    ));

    let big = vec![b'x'; MAX_FRAME_BYTES + 1];
    assert_eq!(
        pusher.post(&ConnectionId("abc=".into()), &big).await,
        Err(PushError::TooLarge(MAX_FRAME_BYTES + 1))
    );
    assert_eq!(
        recorder.posts().len(),
        1,
        "an oversized frame is never sent"
    );

    pusher
        .disconnect(&ConnectionId("abc=".into()))
        .await
        .unwrap();
    pusher
        .disconnect(&ConnectionId("left".into()))
        .await
        .unwrap();
    assert_eq!(recorder.deleted(), ["abc="]);
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn concurrent_posts_are_bounded_and_all_arrive() {
    let recorder = Recorder::start().await;
    let mut clients =
        emulators::aws_with_endpoint(Wants::default(), Some(recorder.endpoint.clone())).await;
    clients.config.max_concurrent_pushes = 4;
    let pusher = clients.pusher().unwrap();
    recorder.delay_posts(std::time::Duration::from_millis(20));
    let sends = (0..50).map(|i| {
        let pusher = pusher.clone();
        async move {
            pusher
                .post(&ConnectionId(format!("c{i}").into()), b"{}")
                .await
        }
    });
    for result in futures_util::future::join_all(sends).await {
        result.unwrap();
    }
    assert_eq!(recorder.posts().len(), 50);
    assert!(
        recorder.max_in_flight() <= 4,
        "{} posts at once",
        recorder.max_in_flight()
    );
    assert!(recorder.max_in_flight() >= 2, "posts do run concurrently");
}
