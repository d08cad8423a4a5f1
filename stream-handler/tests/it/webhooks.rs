//! Webhooks on one machine: documents written through the document service, fanned out
//! by the real poller into the real SQLite outbox, and POSTed by the delivery workers to
//! real HTTP receivers on loopback (axum), whose behaviour each test scripts.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use shared::clock::SystemClock;
use shared::domain::Document;
use shared::domain::{Body, Title, UserId};
use shared::embedded::{DATABASE_FILE, SqliteDocumentStore};
use shared::events::{EventRules, RuleName, WebhookHeaders, WebhookSecret};
use shared::metrics::Metrics;
use shared::ports::{AuditLog, DeadLetterQueue, DeadLetterSource};
use shared::retry::RetryPolicy;
use shared::service::{DocumentService, NewDocument, Replacement};
use stream_handler::webhooks::{EventsConfig, Step, WebhookDeliveryConfig};
use stream_handler::{EmbeddedFanout, FanoutConfig};
use tokio::sync::watch;

use crate::common::{RecordingNotifier, quick_retries};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// What a receiver does with its n-th request (1-based).
#[derive(Debug, Clone)]
enum Answer {
    Status(u16),
    /// Waits, then answers.
    After(Duration, u16),
    /// 307 to another URL.
    Redirect(String),
}

type Script = Box<dyn Fn(usize) -> Answer + Send + Sync>;

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    headers: WebhookHeaders,
    content_type: Option<String>,
    body: String,
    status: u16,
}

impl Received {
    fn event(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

struct ReceiverState {
    script: Mutex<Script>,
    requests: Mutex<Vec<Received>>,
    arrived: watch::Sender<usize>,
}

/// A webhook receiver on loopback.
#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let n = state.requests.lock().unwrap().len() + 1;
    let answer = (state.script.lock().unwrap())(n);
    let status = match &answer {
        Answer::Status(s) => *s,
        Answer::After(pause, s) => {
            tokio::time::sleep(*pause).await;
            *s
        }
        Answer::Redirect(_) => 307,
    };
    let read = WebhookHeaders::from_lookup(|name| headers.get(name)?.to_str().ok()).unwrap();
    state.requests.lock().unwrap().push(Received {
        headers: read,
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body,
        status,
    });
    state.arrived.send_modify(|n| *n += 1);
    let status = StatusCode::from_u16(status).unwrap();
    match answer {
        Answer::Redirect(to) => (status, [(header::LOCATION, to)]).into_response(),
        _ => status.into_response(),
    }
}

impl Receiver {
    async fn start(script: impl Fn(usize) -> Answer + Send + Sync + 'static) -> Self {
        let state = Arc::new(ReceiverState {
            script: Mutex::new(Box::new(script)),
            requests: Mutex::new(Vec::new()),
            arrived: watch::channel(0).0,
        });
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, state }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn script(&self, script: impl Fn(usize) -> Answer + Send + Sync + 'static) {
        *self.state.script.lock().unwrap() = Box::new(script);
    }

    fn requests(&self) -> Vec<Received> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The requests answered with a 2xx: the deliveries.
    fn delivered(&self) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }

    async fn wait_for(&self, what: &str, done: impl Fn(&Self) -> bool) {
        let mut arrived = self.state.arrived.subscribe();
        let waited = tokio::time::timeout(Duration::from_secs(30), async {
            while !done(self) {
                arrived.changed().await.unwrap();
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "{what}: timed out with {:?}",
            self.requests()
        );
    }

    async fn wait_delivered(&self, n: usize) {
        self.wait_for(&format!("{n} deliveries"), |r| r.delivered().len() >= n)
            .await;
    }
}

fn rule(name: &str, pattern: Value, url: &str) -> Value {
    json!({"name": name, "pattern": pattern, "target": {"url": url, "secret": SECRET}})
}

fn rules(rules: Vec<Value>) -> EventRules {
    EventRules::parse(&json!({ "rules": rules }).to_string()).unwrap()
}

fn all() -> Value {
    json!({"source": ["docfan"]})
}

fn fast_delivery() -> WebhookDeliveryConfig {
    WebhookDeliveryConfig {
        attempt_timeout: Duration::from_secs(10),
        retry: RetryPolicy {
            max_attempts: u32::MAX,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
        },
        retry_budget: Duration::from_secs(3600),
        allow_private_targets: true,
        idle_poll: Duration::from_millis(20),
        delivered_retention: Duration::from_secs(3600),
    }
}

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

struct Env {
    dir: tempfile::TempDir,
    store: Arc<SqliteDocumentStore>,
    docs: DocumentService,
    embedded: EmbeddedFanout,
    metrics: Metrics,
}

fn config(rules: EventRules, delivery: WebhookDeliveryConfig) -> FanoutConfig {
    FanoutConfig {
        handler: quick_retries(),
        events: Some(EventsConfig { rules, delivery }),
        ..FanoutConfig::default()
    }
}

fn open(dir: tempfile::TempDir, config: FanoutConfig) -> Env {
    let store = Arc::new(SqliteDocumentStore::open(&dir.path().join(DATABASE_FILE)).unwrap());
    let metrics = Metrics::new();
    let embedded = EmbeddedFanout::open_counting(
        dir.path(),
        store.clone(),
        RecordingNotifier::new(),
        Arc::new(SystemClock),
        config,
        &metrics,
    )
    .unwrap();
    Env {
        docs: DocumentService::new(store.clone(), Arc::new(SystemClock)),
        dir,
        store,
        embedded,
        metrics,
    }
}

fn env(rules: EventRules, delivery: WebhookDeliveryConfig) -> Env {
    open(tempfile::tempdir().unwrap(), config(rules, delivery))
}

/// Runs the fan-out's tasks until the returned sender is dropped or sent to.
fn start(env: &Env) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    env.embedded.start(env.store.change_feed(), async move {
        let _ = stopped.await;
    });
    stop
}

impl Env {
    async fn create(&self, title: &str) -> Document {
        self.docs
            .create(
                &user("ann"),
                NewDocument {
                    title: Title::parse(title).unwrap(),
                    body: Body::parse("text").unwrap(),
                    collaborators: Default::default(),
                },
            )
            .await
            .unwrap()
    }

    async fn retitle(&self, doc: &Document, title: &str) -> Document {
        self.docs
            .replace(
                &user("ann"),
                &doc.id,
                Some(doc.version),
                Replacement {
                    title: Title::parse(title).unwrap(),
                    body: doc.body.clone(),
                },
            )
            .await
            .unwrap()
    }

    async fn delete(&self, doc: &Document) {
        self.docs.delete(&user("ann"), &doc.id, None).await.unwrap();
    }

    async fn records(&self) -> Vec<Value> {
        self.store
            .change_feed()
            .read_after(0, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|r| serde_json::from_str(&r.record).unwrap())
            .collect()
    }

    fn worker(&self, rule: &str) -> stream_handler::webhooks::WebhookWorker {
        self.embedded
            .webhook_workers()
            .unwrap()
            .into_iter()
            .find(|w| w.rule().name.as_str() == rule)
            .unwrap()
    }
}

/// The (document, version) of each delivery, in arrival order.
fn versions(received: &[Received]) -> Vec<(String, u64)> {
    received
        .iter()
        .map(|r| {
            let e = r.event();
            (
                e["detail"]["documentId"].as_str().unwrap().to_owned(),
                e["detail"]["version"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn verify(received: &Received) {
    let secret = WebhookSecret::parse(SECRET).unwrap();
    secret
        .verify(
            &received.headers,
            received.body.as_bytes(),
            chrono::Utc::now(),
            Duration::from_secs(300),
        )
        .unwrap_or_else(|e| panic!("{e}: {received:?}"));
    assert_eq!(received.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        received.headers.id,
        received.event()["id"].as_str().unwrap(),
        "webhook-id is the event id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_arrives_signed_in_order_and_a_pattern_rule_gets_only_its_matches() {
    let everything = Receiver::start(|_| Answer::Status(204)).await;
    let deletions = Receiver::start(|_| Answer::Status(200)).await;
    let env = env(
        rules(vec![
            rule("it-everything", all(), &everything.url()),
            rule(
                "it-deletions",
                json!({"detail-type": ["document.deleted"]}),
                &deletions.url(),
            ),
        ]),
        fast_delivery(),
    );
    let _stop = start(&env);
    let doc = env.create("Plan").await;
    let doc = env.retitle(&doc, "Plan B").await;
    env.delete(&doc).await;

    everything.wait_delivered(3).await;
    deletions.wait_delivered(1).await;
    let got = everything.delivered();
    for r in &got {
        verify(r);
    }
    let kinds: Vec<Value> = got
        .iter()
        .map(|r| r.event()["detail-type"].clone())
        .collect();
    assert_eq!(
        kinds,
        [
            json!("document.created"),
            json!("document.updated"),
            json!("document.deleted")
        ]
    );
    let updated = got[1].event();
    assert_eq!(updated["version"], "0");
    assert_eq!(updated["source"], "docfan");
    assert_eq!(
        updated["resources"],
        json!([format!("document/{}", doc.id)])
    );
    assert_eq!(updated["detail"]["documentId"], doc.id.to_string());
    assert_eq!(updated["detail"]["version"], 2);
    assert_eq!(updated["detail"]["actor"], "ann");
    assert_eq!(updated["detail"]["changedFields"], json!(["title"]));
    assert_eq!(updated["detail"]["title"], "Plan B");
    assert!(updated["detail"].get("body").is_none(), "no body");

    tokio::time::sleep(Duration::from_millis(200)).await;
    let only = deletions.requests();
    assert_eq!(only.len(), 1, "the deletions rule gets the deletion alone");
    verify(&only[0]);
    assert_eq!(only[0].event()["detail-type"], "document.deleted");
    assert_eq!(only[0].headers.id, got[2].headers.id);

    let metrics = env.metrics.render();
    assert!(
        metrics.contains(
            "docfan_webhook_deliveries_total{rule=\"it-everything\",outcome=\"delivered\"} 3"
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_for_a_while_gets_every_event_in_order_per_document_once() {
    // The first 7 requests fail (500), then everything succeeds.
    let receiver = Receiver::start(|n| Answer::Status(if n <= 7 { 500 } else { 200 })).await;
    let env = env(
        rules(vec![rule("it-flaky", all(), &receiver.url())]),
        fast_delivery(),
    );
    let _stop = start(&env);
    let a = env.create("A").await;
    let b = env.create("B").await;
    let a = env.retitle(&a, "A2").await;
    let b = env.retitle(&b, "B2").await;
    env.retitle(&a, "A3").await;
    env.delete(&b).await;

    receiver.wait_delivered(6).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let delivered = receiver.delivered();
    let order = versions(&delivered);
    for (doc, expected) in [(a.id, vec![1, 2, 3]), (b.id, vec![1, 2, 3])] {
        let seen: Vec<u64> = order
            .iter()
            .filter(|(d, _)| *d == doc.to_string())
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(seen, expected, "in order for {doc}");
    }
    let ids: std::collections::BTreeSet<&str> =
        delivered.iter().map(|r| r.headers.id.as_str()).collect();
    assert_eq!(
        ids.len(),
        delivered.len(),
        "nothing delivered twice after a success"
    );
    // Every failed attempt was a retry of an event later delivered with the same id.
    let failed = receiver.requests();
    assert_eq!(failed.iter().filter(|r| r.status == 500).count(), 7);
    for r in failed.iter().filter(|r| r.status == 500) {
        assert!(ids.contains(r.headers.id.as_str()), "{r:?}");
        verify(r);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_receiver_delays_neither_another_rule_nor_the_built_in_sinks() {
    let slow = Receiver::start(|_| Answer::After(Duration::from_secs(8), 200)).await;
    let fast = Receiver::start(|_| Answer::Status(200)).await;
    let env = env(
        rules(vec![
            rule("it-slow", all(), &slow.url()),
            rule("it-fast", all(), &fast.url()),
        ]),
        fast_delivery(),
    );
    let _stop = start(&env);
    let started = Instant::now();
    let doc = env.create("One").await;
    let doc = env.retitle(&doc, "Two").await;
    let doc = env.retitle(&doc, "Three").await;

    fast.wait_delivered(3).await;
    let fast_took = started.elapsed();
    let audited = loop {
        let entries = env.embedded.audit.list(&doc.id, None, 10).await.unwrap();
        if entries.len() == 3 || started.elapsed() > Duration::from_secs(10) {
            break entries.len();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let audit_took = started.elapsed();
    assert_eq!(audited, 3);
    assert!(
        fast_took < Duration::from_secs(5) && audit_took < Duration::from_secs(5),
        "the fast rule took {fast_took:?} and the audit trail {audit_took:?} beside a receiver taking 8 s a request"
    );
    assert!(
        slow.requests().is_empty(),
        "the slow receiver has not answered yet"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_out_of_budget_is_dead_lettered_the_next_goes_on_and_redrive_delivers_it() {
    let receiver = Receiver::start(|_| Answer::Status(503)).await;
    let env = env(
        rules(vec![rule("it-budget", all(), &receiver.url())]),
        WebhookDeliveryConfig {
            retry_budget: Duration::from_millis(300),
            ..fast_delivery()
        },
    );
    let _stop = start(&env);
    let doc = env.create("Doomed").await;
    let dead = loop {
        let letters = env.embedded.dead_letters.list(10).await.unwrap();
        if !letters.is_empty() {
            break letters;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(dead.len(), 1);
    let letter = &dead[0];
    assert_eq!(letter.source, DeadLetterSource::Webhook);
    assert_eq!(letter.payload["rule"], "it-budget");
    assert_eq!(letter.payload["event"]["detail"]["version"], 1);
    assert!(letter.attempts >= 2, "{letter:?}");
    assert_eq!(
        letter.attempts as usize,
        receiver.requests().len(),
        "every attempt counted"
    );
    assert!(
        letter
            .reason
            .contains("webhook rule it-budget: gave up after")
            && letter.reason.contains("the receiver answered 503"),
        "{}",
        letter.reason
    );
    let first_id = receiver.requests()[0].headers.id.clone();

    // The next row goes on (and fails on its own budget).
    receiver.script(|_| Answer::Status(200));
    let doc = env.retitle(&doc, "Saved").await;
    receiver.wait_delivered(1).await;
    assert_eq!(versions(&receiver.delivered()), [(doc.id.to_string(), 2)]);

    let outcomes = env.embedded.redrive(None).await.unwrap();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].result, Ok(()));
    assert_eq!(env.embedded.dead_letters.depth().await.unwrap(), 0);
    receiver.wait_delivered(2).await;
    let redriven = &receiver.delivered()[1];
    verify(redriven);
    assert_eq!(
        redriven.headers.id, first_id,
        "the same webhook-id as first sent"
    );
    assert_eq!(redriven.event()["detail"]["version"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_change_is_queued_once_and_delivered_once() {
    let receiver = Receiver::start(|_| Answer::Status(200)).await;
    let env = env(
        rules(vec![rule("it-redelivery", all(), &receiver.url())]),
        fast_delivery(),
    );
    env.create("Once").await;
    let records = env.records().await;
    let index = env.embedded.fanout.index();
    // The same record handled twice (a crash before the checkpoint), and once more
    // after the delivery.
    assert!(
        !index
            .handle_detailed(&records, stream_handler::sinks::Flush::Now)
            .await
            .failed()
    );
    assert!(
        !index
            .handle_detailed(&records, stream_handler::sinks::Flush::Now)
            .await
            .failed()
    );
    let name = RuleName::parse("it-redelivery").unwrap();
    assert_eq!(
        env.embedded
            .webhook_outbox
            .backlog(&name)
            .await
            .unwrap()
            .waiting,
        1
    );
    let worker = env.worker("it-redelivery");
    assert!(matches!(
        worker.step().await.unwrap(),
        Step::Delivered { .. }
    ));
    assert_eq!(worker.step().await.unwrap(), Step::Idle);
    index.handle(&records).await;
    assert_eq!(
        worker.step().await.unwrap(),
        Step::Idle,
        "recognised after delivery too"
    );
    assert_eq!(receiver.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_deliveries_and_their_backoff_survive_a_restart() {
    let receiver = Receiver::start(|_| Answer::Status(500)).await;
    let rules = || rules(vec![rule("it-restart", all(), &receiver.url())]);
    let name = RuleName::parse("it-restart").unwrap();
    let env = env(rules(), fast_delivery());
    let doc = env.create("Kept").await;
    env.retitle(&doc, "Kept too").await;
    env.embedded
        .fanout
        .index()
        .handle(&env.records().await)
        .await;
    let Step::Failed { reason, .. } = env.worker("it-restart").step().await.unwrap() else {
        panic!("the first attempt fails");
    };
    assert_eq!(reason, "the receiver answered 500 Internal Server Error");
    let Env {
        dir,
        embedded,
        store,
        ..
    } = env;
    drop((embedded, store));

    receiver.script(|_| Answer::Status(200));
    let env = open(dir, config(rules(), fast_delivery()));
    let head = env
        .embedded
        .webhook_outbox
        .head(&name)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head.attempts, 1, "the attempt is remembered");
    assert_eq!(head.last_error.as_deref(), Some(reason.as_str()));
    let _stop = start(&env);
    receiver.wait_delivered(2).await;
    assert_eq!(
        versions(&receiver.delivered()),
        [(doc.id.to_string(), 1), (doc.id.to_string(), 2)]
    );
    assert_eq!(receiver.requests().len(), 3);
    let _ = &env.dir;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_targets_are_refused_by_address_and_by_name_unless_allowed() {
    let receiver = Receiver::start(|_| Answer::Status(200)).await;
    let by_name = format!("http://localhost:{}/hook", receiver.addr.port());
    let env = env(
        rules(vec![
            rule("it-ssrf-literal", all(), &receiver.url()),
            rule("it-ssrf-name", all(), &by_name),
        ]),
        WebhookDeliveryConfig {
            allow_private_targets: false,
            // Long enough that the first attempts come within it on a loaded machine.
            retry_budget: Duration::from_secs(1),
            ..fast_delivery()
        },
    );
    env.create("Secret plans").await;
    env.embedded
        .fanout
        .index()
        .handle(&env.records().await)
        .await;
    for (rule, expected) in [
        (
            "it-ssrf-literal",
            "the target 127.0.0.1 is a loopback address",
        ),
        ("it-ssrf-name", "the target localhost resolves to"),
    ] {
        let Step::Failed { reason, .. } = env.worker(rule).step().await.unwrap() else {
            panic!("{rule}: refused");
        };
        assert!(reason.contains(expected), "{rule}: {reason}");
        assert!(
            reason.contains("DOCFAN_ALLOW_PRIVATE_TARGETS=1"),
            "{reason}"
        );
    }
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let Step::DeadLettered { reason, .. } = env.worker("it-ssrf-name").step().await.unwrap() else {
        panic!("dead-lettered once the budget is spent");
    };
    assert!(reason.contains("loopback address"), "{reason}");
    assert!(
        receiver.requests().is_empty(),
        "nothing reached the receiver"
    );

    // The same target with private targets allowed.
    let env2 = open(
        tempfile::tempdir().unwrap(),
        config(
            rules(vec![rule("it-ssrf-allowed", all(), &by_name)]),
            fast_delivery(),
        ),
    );
    env2.create("Fine").await;
    env2.embedded
        .fanout
        .index()
        .handle(&env2.records().await)
        .await;
    assert!(matches!(
        env2.worker("it-ssrf-allowed").step().await.unwrap(),
        Step::Delivered { .. }
    ));
    assert_eq!(receiver.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed_and_a_silent_receiver_times_out() {
    let elsewhere = Receiver::start(|_| Answer::Status(200)).await;
    let to = elsewhere.url();
    let redirecting = Receiver::start(move |_| Answer::Redirect(to.clone())).await;
    let silent = Receiver::start(|_| Answer::After(Duration::from_secs(5), 200)).await;
    let env = env(
        rules(vec![
            rule("it-redirect", all(), &redirecting.url()),
            rule("it-silent", all(), &silent.url()),
        ]),
        WebhookDeliveryConfig {
            attempt_timeout: Duration::from_millis(300),
            ..fast_delivery()
        },
    );
    env.create("Somewhere").await;
    env.embedded
        .fanout
        .index()
        .handle(&env.records().await)
        .await;
    let Step::Failed { reason, .. } = env.worker("it-redirect").step().await.unwrap() else {
        panic!("a redirect is a failure");
    };
    assert!(reason.contains("answered 307"), "{reason}");
    assert!(
        elsewhere.requests().is_empty(),
        "the redirect was not followed"
    );
    let started = Instant::now();
    let Step::Failed { reason, .. } = env.worker("it-silent").step().await.unwrap() else {
        panic!("a timeout is a failure");
    };
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(reason.contains("no answer within"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backoff_and_the_budget_follow_the_clock() {
    use shared::clock::{Clock, ManualClock};
    let receiver = Receiver::start(|_| Answer::Status(502)).await;
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteDocumentStore::open(&dir.path().join(DATABASE_FILE)).unwrap());
    let delivery = WebhookDeliveryConfig {
        retry: RetryPolicy {
            max_attempts: u32::MAX,
            initial_backoff: Duration::from_secs(60),
            max_backoff: Duration::from_secs(600),
        },
        retry_budget: Duration::from_secs(1000),
        ..fast_delivery()
    };
    let embedded = EmbeddedFanout::open(
        dir.path(),
        store.clone(),
        RecordingNotifier::new(),
        clock.clone(),
        config(
            rules(vec![rule("it-clock", all(), &receiver.url())]),
            delivery,
        ),
    )
    .unwrap();
    let docs = DocumentService::new(store.clone(), Arc::new(SystemClock));
    docs.create(
        &user("ann"),
        NewDocument {
            title: Title::parse("Timed").unwrap(),
            body: Body::parse("").unwrap(),
            collaborators: Default::default(),
        },
    )
    .await
    .unwrap();
    let records: Vec<Value> = store
        .change_feed()
        .read_after(0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| serde_json::from_str(&r.record).unwrap())
        .collect();
    embedded.fanout.index().handle(&records).await;
    let worker = embedded.webhook_workers().unwrap().remove(0);
    let name = RuleName::parse("it-clock").unwrap();
    let first = clock.now();

    let mut attempts = 0;
    let mut previous_pause = Duration::ZERO;
    loop {
        let step = worker.step().await.unwrap();
        match step {
            Step::Failed { retry_in, .. } => {
                attempts += 1;
                let head = embedded.webhook_outbox.head(&name).await.unwrap().unwrap();
                assert_eq!(head.attempts, attempts);
                assert_eq!(head.first_attempt_at, Some(first));
                let deadline = first + chrono::TimeDelta::seconds(1000);
                assert!(head.next_attempt_at <= deadline, "never past the budget");
                if head.next_attempt_at < deadline {
                    // Equal jitter: between half the step and the step, doubling.
                    let step = Duration::from_secs(60 * 2u64.pow(attempts - 1))
                        .min(Duration::from_secs(600));
                    assert!(
                        retry_in >= step / 2 && retry_in <= step,
                        "{attempts}: {retry_in:?}"
                    );
                    assert!(
                        retry_in >= previous_pause / 2,
                        "{retry_in:?} after {previous_pause:?}"
                    );
                }
                previous_pause = retry_in;
                // Not due a moment before its time, due at it.
                clock.advance(
                    chrono::TimeDelta::from_std(retry_in).unwrap()
                        - chrono::TimeDelta::milliseconds(1),
                );
                assert!(matches!(worker.step().await.unwrap(), Step::NotDue(_)));
                clock.advance(chrono::TimeDelta::milliseconds(1));
            }
            Step::DeadLettered { reason, .. } => {
                assert!(clock.now() >= first + chrono::TimeDelta::seconds(1000));
                assert!(
                    reason.contains(&format!(
                        "gave up after {} attempts in 1000 s",
                        attempts + 1
                    )),
                    "{reason}"
                );
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(receiver.requests().len() as u32, attempts + 1);
    assert!(
        (4..=10).contains(&attempts),
        "about log2(1000/60) doublings, then 600 s steps: {attempts}"
    );
}
