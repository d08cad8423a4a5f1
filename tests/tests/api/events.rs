//! Events for other consumers, end to end: `docfan serve --event-rules` as a child
//! process POSTing signed events to a receiver on loopback, `docfan dlq` listing and
//! redriving webhook dead letters, and rules files the server refuses to start with.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use reqwest::Method;
use serde_json::{Value, json};
use shared::clock::SystemClock;
use shared::embedded::{DATABASE_FILE, SqliteWebhookOutbox};
use shared::events::{DocumentEvent, EventRules, RuleName, WebhookHeaders, WebhookSecret};
use shared::ports::EventBus;
use tests::child::{ChildServer, run_docfan};
use tokio::sync::watch;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A receiver on loopback answering `status` (changeable), keeping every request.
#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    status: Arc<Mutex<u16>>,
    requests: Arc<Mutex<Vec<(WebhookHeaders, String, u16)>>>,
    arrived: watch::Sender<usize>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    let status = *r.status.lock().unwrap();
    let read = WebhookHeaders::from_lookup(|name| headers.get(name)?.to_str().ok()).unwrap();
    assert_eq!(
        headers.get("content-type").unwrap().to_str().unwrap(),
        "application/json"
    );
    r.requests.lock().unwrap().push((read, body, status));
    r.arrived.send_modify(|n| *n += 1);
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    async fn start(status: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Self {
            addr: listener.local_addr().unwrap(),
            status: Arc::new(Mutex::new(status)),
            requests: Arc::default(),
            arrived: watch::channel(0).0,
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        receiver
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// The events delivered (answered 2xx), each checked against the secret.
    fn delivered(&self) -> Vec<(WebhookHeaders, Value)> {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, _, status)| (200..300).contains(status))
            .map(|(headers, body, _)| {
                secret
                    .verify(
                        headers,
                        body.as_bytes(),
                        chrono::Utc::now(),
                        Duration::from_secs(300),
                    )
                    .expect("the signature verifies");
                (headers.clone(), serde_json::from_str(body).unwrap())
            })
            .collect()
    }

    async fn wait_delivered(&self, n: usize) -> Vec<(WebhookHeaders, Value)> {
        let mut arrived = self.arrived.subscribe();
        let waited = tokio::time::timeout(Duration::from_secs(30), async {
            while self.delivered().len() < n {
                arrived.changed().await.unwrap();
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "{n} deliveries: {:?}",
            self.requests.lock().unwrap()
        );
        self.delivered()
    }
}

fn write_rules(dir: &Path, url: &str) -> String {
    let path = dir.join("rules.json");
    let rules = json!({"rules": [
        {"name": "e2e", "pattern": {"source": ["docfan"]},
         "target": {"url": url, "secret": SECRET}},
    ]});
    std::fs::write(&path, rules.to_string()).unwrap();
    path.display().to_string()
}

async fn call(server: &ChildServer, method: Method, path: &str, body: Option<Value>) -> Value {
    let mut request = reqwest::Client::new()
        .request(method.clone(), format!("{}{path}", server.base))
        .bearer_auth(tests::token_for("ann"));
    if let Some(body) = body {
        request = request.header("If-Match", "\"1\"").json(&body);
    }
    let reply = tests::Reply::read(request.send().await.unwrap()).await;
    assert!(reply.status.is_success(), "{method} {path}: {reply:?}");
    reply.body
}

#[tokio::test]
async fn create_update_delete_arrive_as_three_signed_events_in_the_contracts_shape() {
    let receiver = Receiver::start(200).await;
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(dir.path(), &receiver.url());
    let data = dir.path().join("data");
    let server = ChildServer::start_with_env(
        &data,
        &[
            ("DOCFAN_EVENT_RULES", &rules),
            ("DOCFAN_ALLOW_PRIVATE_TARGETS", "1"),
        ],
    )
    .await;
    let created = reqwest::Client::new()
        .post(format!("{}/documents", server.base))
        .bearer_auth(tests::token_for("ann"))
        .json(&json!({"title": "Plan", "body": "secret body"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let doc: Value = created.json().await.unwrap();
    let id = doc["id"].as_str().unwrap().to_owned();
    call(
        &server,
        Method::PUT,
        &format!("/documents/{id}"),
        Some(json!({"title": "Plan B", "body": "secret body"})),
    )
    .await;
    call(&server, Method::DELETE, &format!("/documents/{id}"), None).await;

    let events = receiver.wait_delivered(3).await;
    assert_eq!(events.len(), 3);
    let kinds: Vec<&str> = events
        .iter()
        .map(|(_, e)| e["detail-type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["document.created", "document.updated", "document.deleted"]
    );
    for (version, (headers, event)) in (1u64..).zip(&events) {
        assert_eq!(headers.id, event["id"].as_str().unwrap());
        let keys: Vec<&str> = event
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys.len(),
            7,
            "version, id, detail-type, source, time, resources, detail: {keys:?}"
        );
        assert_eq!(event["version"], "0");
        assert_eq!(event["source"], "docfan");
        assert_eq!(event["resources"], json!([format!("document/{id}")]));
        assert!(event["time"].as_str().unwrap().ends_with('Z'));
        let detail = &event["detail"];
        assert_eq!(detail["documentId"], id.as_str());
        assert_eq!(detail["version"], version);
        assert_eq!(detail["actor"], "ann");
        assert!(detail["at"].is_string());
        assert!(detail["changedFields"].is_array());
        assert!(detail.get("body").is_none());
        assert!(!event.to_string().contains("secret body"));
    }
    assert_eq!(events[1].1["detail"]["title"], "Plan B");
    assert_eq!(events[1].1["detail"]["changedFields"], json!(["title"]));
    assert_eq!(events[2].1["detail"]["title"], "Plan B");

    let metrics = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("docfan_webhook_deliveries_total{rule=\"e2e\",outcome=\"delivered\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("docfan_webhook_lag_seconds{rule=\"e2e\"}"));
    let ready: Value = reqwest::get(format!("{}/readyz", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(ready.to_string().contains("webhook-worker-e2e"), "{ready}");
    assert!(ready.to_string().contains("sink-events"), "{ready}");
    assert!(server.terminate().await);
}

#[tokio::test]
async fn a_sigkill_before_the_receiver_recovers_loses_no_event() {
    let receiver = Receiver::start(500).await;
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(dir.path(), &receiver.url());
    let data = dir.path().join("data");
    let env = [
        ("DOCFAN_EVENT_RULES", rules.as_str()),
        ("DOCFAN_ALLOW_PRIVATE_TARGETS", "1"),
    ];
    let server = ChildServer::start_with_env(&data, &env).await;
    for title in ["One", "Two"] {
        let reply = reqwest::Client::new()
            .post(format!("{}/documents", server.base))
            .bearer_auth(tests::token_for("ann"))
            .json(&json!({"title": title, "body": ""}))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), StatusCode::CREATED);
    }
    // At least one attempt failed: the rows are in the outbox, mid-delivery.
    let mut arrived = receiver.arrived.subscribe();
    tokio::time::timeout(Duration::from_secs(30), arrived.wait_for(|n| *n >= 1))
        .await
        .unwrap()
        .unwrap();
    server.kill().await;

    *receiver.status.lock().unwrap() = 200;
    let server = ChildServer::start_with_env(&data, &env).await;
    let events = receiver.wait_delivered(2).await;
    let titles: Vec<&str> = events
        .iter()
        .map(|(_, e)| e["detail"]["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["One", "Two"]);
    server.kill().await;
}

#[tokio::test]
async fn a_webhook_dead_letter_is_listed_and_redriven_while_the_server_runs() {
    let receiver = Receiver::start(200).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let rules_path = write_rules(dir.path(), &receiver.url());
    // A delivery that ran out of budget, as the worker leaves it.
    let event = {
        std::fs::create_dir_all(&data).unwrap();
        let rules = EventRules::load(Path::new(&rules_path)).unwrap();
        let outbox =
            SqliteWebhookOutbox::open(&data.join(DATABASE_FILE), rules, Arc::new(SystemClock))
                .unwrap();
        let doc = shared::domain::Document {
            id: shared::domain::DocumentId::parse("0190a5f0-0000-7000-8000-0000000000aa").unwrap(),
            title: shared::domain::Title::parse("Lost").unwrap(),
            body: shared::domain::Body::parse("").unwrap(),
            owner: shared::domain::UserId::parse("ann").unwrap(),
            collaborators: Default::default(),
            version: 1,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            updated_by: shared::domain::UserId::parse("ann").unwrap(),
        };
        let event = DocumentEvent::from_change(&shared::domain::ChangeEvent::written(
            None,
            doc,
            "1".into(),
        ));
        outbox.publish(std::slice::from_ref(&event)).await.unwrap();
        let head = outbox
            .head(&RuleName::parse("e2e").unwrap())
            .await
            .unwrap()
            .unwrap();
        outbox
            .dead_letter(&head, "webhook rule e2e: gave up after 9 attempts: 503")
            .await
            .unwrap();
        event
    };
    // The server runs with the rule meanwhile: webhook letters are redriven beside it.
    let server = ChildServer::start_with_env(
        &data,
        &[
            ("DOCFAN_EVENT_RULES", &rules_path),
            ("DOCFAN_ALLOW_PRIVATE_TARGETS", "1"),
        ],
    )
    .await;
    let data_arg = data.display().to_string();
    let listed = run_docfan(&["dlq", "list", "--data-dir", &data_arg]).await;
    let out = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{listed:?}");
    assert!(out.contains("\twebhook\t"), "{out}");
    assert!(
        out.contains(&format!(
            "webhook rule e2e event {} (document.created of document {} version 1)",
            event.id, event.detail.document_id
        )),
        "{out}"
    );
    assert!(out.contains("gave up after 9 attempts: 503"), "{out}");

    let redriven = run_docfan(&["dlq", "redrive", "--data-dir", &data_arg]).await;
    let out = String::from_utf8_lossy(&redriven.stdout);
    assert!(redriven.status.success(), "{redriven:?}");
    assert!(out.contains("1 redriven, 0 still failing"), "{out}");
    let events = receiver.wait_delivered(1).await;
    assert_eq!(events[0].0.id, event.id.to_string());
    assert_eq!(events[0].1["detail"]["title"], "Lost");
    assert!(server.terminate().await);
}

#[tokio::test]
async fn serve_refuses_to_start_with_an_invalid_rules_file_naming_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    let cases = [
        ("{\"rules\": [", "event rules: the file is not valid JSON"),
        (
            r#"{"rules":[{"name":"bad-url","pattern":{"source":["docfan"]},"target":{"url":"file:///etc/passwd","secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}]}"#,
            "event rule \"bad-url\": target.url must be http or https, not \"file\"",
        ),
        (
            r#"{"rules":[{"name":"weak","pattern":{"source":["docfan"]},"target":{"url":"https://a.example","secret":"password"}}]}"#,
            "event rule \"weak\": target.secret: a webhook secret starts with \"whsec_\"",
        ),
        (
            r#"{"rules":[{"name":"p","pattern":{"detail":{"version":[{"numeric":["<"]}]}},"target":{"url":"https://a.example","secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}]}"#,
            "event rule \"p\": invalid event pattern at detail.version",
        ),
    ];
    for (text, expected) in cases {
        let path = dir.path().join("rules.json");
        std::fs::write(&path, text).unwrap();
        let rules = path.display().to_string();
        let output = run_docfan(&[
            "serve",
            "--data-dir",
            &data,
            "--listen",
            "127.0.0.1:0",
            "--event-rules",
            &rules,
        ])
        .await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{text}: started");
        assert!(stderr.contains(expected), "{expected:?} in {stderr}");
        assert!(stderr.contains("the server does not start"), "{stderr}");
        assert!(
            !stderr.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            "{stderr}"
        );
    }
    let missing = dir.path().join("nowhere.json").display().to_string();
    let output = run_docfan(&["serve", "--data-dir", &data, "--event-rules", &missing]).await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("cannot read"),
        "{output:?}"
    );
}
