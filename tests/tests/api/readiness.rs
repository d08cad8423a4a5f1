//! `/readyz`: ready when the store answers and takes writes and the fan-out runs; 503
//! naming the failing check otherwise, and ready again once it passes. (A read-only
//! data directory is in the `chaos` target's `disk` tests: it needs root to mount.)

use std::sync::Arc;
use std::time::Duration;

use api::AppState;
use reqwest::StatusCode;
use serde_json::Value;
use shared::auth::TokenAuthority;
use shared::clock::{Clock, SystemClock};
use shared::embedded::{DATABASE_FILE, SqliteDocumentStore};
use shared::service::DocumentService;
use stream_handler::sinks::notifications::NoSubscribers;
use stream_handler::{EmbeddedFanout, FanoutConfig};
use tests::{Reply, TEST_SECRET, TestApp};
use tokio::sync::oneshot;

#[tokio::test]
async fn a_running_server_is_ready_and_says_what_it_checked() {
    let app = TestApp::spawn().await;
    let ready = app.send(app.client.get(app.url("/readyz"))).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    assert_eq!(ready.body["status"], "ready");
    for check in [
        "store",
        "store-writable",
        "stream-poller",
        "analysis-worker",
        "sink-search",
        "sink-notifications",
        "sink-audit",
        "sink-analysis",
    ] {
        assert_eq!(ready.body["checks"][check], "ok", "{check}: {}", ready.body);
    }
    let alive = app.send(app.client.get(app.url("/healthz"))).await;
    assert_eq!(alive.status, StatusCode::OK);
}

/// The app's parts wired by hand, so the test can stop and restart the fan-out while
/// the server goes on answering.
struct Parts {
    base: String,
    fanout: EmbeddedFanout,
    feed: shared::embedded::ChangeFeed,
    _dir: tempfile::TempDir,
    _stop_server: oneshot::Sender<()>,
}

async fn serve_without_starting_the_fanout() -> Parts {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteDocumentStore::open(&dir.path().join(DATABASE_FILE)).unwrap());
    let feed = store.change_feed();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let fanout = EmbeddedFanout::open(
        dir.path(),
        store.clone(),
        Arc::new(NoSubscribers),
        Arc::clone(&clock),
        FanoutConfig::default(),
    )
    .unwrap();
    let readiness = api::readiness::embedded(dir.path(), &fanout);
    let state = AppState {
        documents: DocumentService::new(store, Arc::clone(&clock)),
        tokens: Arc::new(TokenAuthority::new(TEST_SECRET).unwrap()),
        clock,
        metrics: shared::metrics::Metrics::new(),
        reads: fanout.reads(),
        rate_limit: Default::default(),
    };
    let router = api::router_with(state, readiness, axum::Router::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    tokio::spawn(api::server::serve(listener, router, async {
        let _ = stop_rx.await;
    }));
    Parts {
        base,
        fanout,
        feed,
        _dir: dir,
        _stop_server: stop_tx,
    }
}

async fn readyz(base: &str) -> Reply {
    let response = reqwest::get(format!("{base}/readyz")).await.unwrap();
    Reply::read(response).await
}

/// Polls `/readyz` until its status is `want` (the fan-out's tasks start and stop
/// asynchronously).
async fn wait_for(base: &str, want: StatusCode) -> Reply {
    let mut last = None;
    for _ in 0..100 {
        let reply = readyz(base).await;
        if reply.status == want {
            return reply;
        }
        last = Some(reply);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("/readyz never answered {want}: {last:?}");
}

fn failing(reply: &Reply) -> Vec<&str> {
    reply.body["failing"]
        .as_array()
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn readiness_follows_the_fanout_stopping_and_starting_again() {
    let parts = serve_without_starting_the_fanout().await;

    let not_started = readyz(&parts.base).await;
    assert_eq!(not_started.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(not_started.problem_type(), "/problems/not-ready");
    assert_eq!(
        not_started.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(
        failing(&not_started),
        ["stream-poller", "live-consumer", "analysis-worker"]
    );
    assert_eq!(not_started.body["checks"]["stream-poller"], "not started");
    assert_eq!(not_started.body["checks"]["store"], "ok");
    assert!(not_started.body["instance"].is_string());

    let (stop, stopped) = oneshot::channel::<()>();
    let running = parts.fanout.start(parts.feed.clone(), async {
        let _ = stopped.await;
    });
    let ready = wait_for(&parts.base, StatusCode::OK).await;
    assert_eq!(ready.body["checks"]["stream-poller"], "ok");
    assert_eq!(ready.body["checks"]["live-consumer"], "ok");

    // The consumers stop while the server goes on: not ready, and the problem says which.
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    let down = wait_for(&parts.base, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(
        failing(&down),
        ["stream-poller", "live-consumer", "analysis-worker"]
    );
    assert_eq!(down.body["checks"]["stream-poller"], "stopped");
    assert!(
        down.body["detail"]
            .as_str()
            .unwrap()
            .contains("stream-poller"),
        "{}",
        down.body
    );

    // Started again: ready again.
    let (_stop, stopped) = oneshot::channel::<()>();
    let _running = parts.fanout.start(parts.feed.clone(), async {
        let _ = stopped.await;
    });
    wait_for(&parts.base, StatusCode::OK).await;
}
