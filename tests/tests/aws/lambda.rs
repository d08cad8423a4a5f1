//! The four Lambda entry points as Lambda runs them: each binary is started with a
//! Lambda Runtime API of the test's own (the loop every function polls for its next
//! event), handed one event, and its answer read back, with the AWS services on moto.
//!
//! The binaries are built by `cargo test` or `cargo build --workspace --all-targets` at
//! the workspace root: the `tests` crate turns on their `lambda` features, so a
//! workspace build includes them (`cargo test -p tests` alone does not build them).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use shared::aws::AwsClients;
use shared::ports::{AnalysisStore, AuditLog, ConnectionId, ConnectionRegistry, DocumentStore};
use tests::port_suites::{new_document, unique_user};
use tests::{TEST_SECRET, token_for};
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};

use crate::emulators::{self, REGION, Wants};
use crate::push::Recorder;

/// A Lambda binary built alongside the test binaries.
pub(crate) fn lambda_binary(name: &str) -> PathBuf {
    let test = std::env::current_exe().expect("the test executable");
    let profile = test
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executables live in target/<profile>/deps");
    let binary = profile.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "{} is missing: run the tests from the workspace root (`cargo test`), which builds the Lambda binaries",
        binary.display()
    );
    binary
}

/// Starts the function's binary with only `env` (and a runtime API nothing answers),
/// requires it to exit at its cold start without asking for an event, and returns what
/// it said (Lambda would report `Runtime.ExitError`).
pub(crate) async fn refused_at_start(binary: &str, env: &[(&str, &str)]) -> String {
    let refused = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(lambda_binary(binary))
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
            .env("AWS_REGION", REGION)
            .envs(env.iter().copied())
            .output(),
    )
    .await
    .expect("the function exits at once")
    .unwrap();
    assert!(!refused.status.success(), "{binary} started with {env:?}");
    String::from_utf8_lossy(&refused.stderr).into_owned()
        + &String::from_utf8_lossy(&refused.stdout)
}

#[derive(Default)]
struct Invocation {
    event: Option<Value>,
    answer: Option<oneshot::Sender<(String, Value)>>,
}

/// The trace header of every invocation the tests' runtime API hands out.
const TRACE_HEADER: &str =
    "Root=1-6750a1f0-0a1b2c3d4e5f60718293a4b5;Parent=53995c3f42cd8ad8;Sampled=1";

/// Serves `/2018-06-01/runtime/invocation/next` once with `event`, then holds further
/// polls; the function's response (or error) is sent back to the test.
async fn runtime_api(event: Value) -> (String, oneshot::Receiver<(String, Value)>) {
    let (tx, rx) = oneshot::channel();
    let state = Arc::new((
        Mutex::new(Invocation {
            event: Some(event),
            answer: Some(tx),
        }),
        Notify::new(),
    ));
    async fn next(State(state): State<Arc<(Mutex<Invocation>, Notify)>>) -> Response {
        let event = state.0.lock().unwrap().event.take();
        match event {
            Some(event) => {
                let deadline =
                    (chrono::Utc::now() + chrono::TimeDelta::seconds(60)).timestamp_millis();
                (
                    [
                        ("lambda-runtime-aws-request-id", "request-1".to_owned()),
                        ("lambda-runtime-deadline-ms", deadline.to_string()),
                        (
                            "lambda-runtime-invoked-function-arn",
                            "arn:aws:lambda:us-east-1:123456789012:function:docfan".to_owned(),
                        ),
                        // As Lambda sends it with active tracing: sampled, with the
                        // invocation's segment as the parent.
                        ("lambda-runtime-trace-id", TRACE_HEADER.to_owned()),
                        ("content-type", "application/json".to_owned()),
                    ],
                    event.to_string(),
                )
                    .into_response()
            }
            None => {
                // One event per test: the next poll waits until the process is stopped.
                state.1.notified().await;
                StatusCode::GONE.into_response()
            }
        }
    }
    async fn answer(
        State(state): State<Arc<(Mutex<Invocation>, Notify)>>,
        Path((_id, kind)): Path<(String, String)>,
        body: axum::body::Bytes,
    ) -> StatusCode {
        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if let Some(tx) = state.0.lock().unwrap().answer.take() {
            let _ = tx.send((kind, body));
        }
        StatusCode::ACCEPTED
    }
    async fn init_error(
        State(state): State<Arc<(Mutex<Invocation>, Notify)>>,
        body: axum::body::Bytes,
    ) -> StatusCode {
        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if let Some(tx) = state.0.lock().unwrap().answer.take() {
            let _ = tx.send(("init/error".into(), body));
        }
        StatusCode::ACCEPTED
    }
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/{kind}", post(answer))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(state);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (address, rx)
}

/// Runs one binary on one event with the clients' configuration; returns its answer.
pub(crate) async fn invoke(
    binary: &str,
    clients: &AwsClients,
    extra: &[(&str, String)],
    event: Value,
) -> (String, Value) {
    let (kind, answer, _) = invoke_logged(binary, clients, extra, event).await;
    (kind, answer)
}

/// [`invoke`], also returning what the function wrote to standard output by the time
/// it answered (its logs and EMF lines, as Lambda would send them to CloudWatch Logs).
pub(crate) async fn invoke_logged(
    binary: &str,
    clients: &AwsClients,
    extra: &[(&str, String)],
    event: Value,
) -> (String, Value, String) {
    let (runtime, answer) = runtime_api(event).await;
    let config = &clients.config;
    let mut command = tokio::process::Command::new(lambda_binary(binary));
    command
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", runtime)
        .env("AWS_LAMBDA_FUNCTION_NAME", binary)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_ENDPOINT_URL", config.endpoint_url.clone().unwrap())
        .env("DOCFAN_DOCUMENTS_TABLE", &config.tables.documents)
        .env("DOCFAN_MEMBERS_TABLE", &config.tables.members)
        .env("DOCFAN_VERSIONS_TABLE", &config.tables.versions)
        .env("DOCFAN_CONNECTIONS_TABLE", &config.tables.connections)
        .env("DOCFAN_SUBSCRIPTIONS_TABLE", &config.tables.subscriptions)
        .env("DOCFAN_AUDIT_TABLE", &config.tables.audit)
        .env("DOCFAN_ANALYSIS_TABLE", &config.tables.analysis)
        .env("DOCFAN_ATTEMPTS_TABLE", &config.tables.attempts)
        // As the template sets them for the index consumer, below its mapping's limits.
        .env("DOCFAN_STREAM_MAX_RETRIES", "8")
        .env("DOCFAN_STREAM_MAX_RECORD_AGE_SECS", "3000")
        .env(
            "DOCFAN_ANALYSIS_QUEUE_URL",
            config.analysis_queue_url.clone().unwrap(),
        )
        .env(
            "DOCFAN_DEAD_LETTER_QUEUE_URL",
            config.dead_letter_queue_url.clone().unwrap(),
        )
        .env(
            "DOCFAN_JWT_SECRET",
            std::str::from_utf8(TEST_SECRET).unwrap(),
        )
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(search) = &config.opensearch {
        command
            .env("DOCFAN_OPENSEARCH_URL", &search.url)
            .env("DOCFAN_OPENSEARCH_INDEX", &search.index);
    }
    for (name, value) in extra {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("the Lambda binary starts");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let output = tokio::spawn(async move {
        let mut text = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut text).await;
        text
    });
    let (kind, answer) = tokio::time::timeout(Duration::from_secs(60), answer)
        .await
        .expect("the function answers within a minute")
        .expect("the runtime API got an answer");
    // What it wrote after answering (the invocation's metrics) is flushed by then,
    // or at the latest when it is stopped.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = child.kill().await;
    let output = output.await.unwrap_or_default();
    (kind, answer, output)
}

/// The EMF records among `output`'s lines, each checked against the Embedded Metric
/// Format specification's required fields: `_aws.Timestamp` (epoch milliseconds) and
/// `_aws.CloudWatchMetrics`, whose directives each name a `Namespace`, `Dimensions`
/// (sets of at most 30 names, each a string member of the record) and `Metrics` (each
/// a `Name` whose member is a number or an array of numbers, with an optional known
/// `Unit`).
pub(crate) fn emf_records(output: &str) -> Vec<Value> {
    const UNITS: &[&str] = &[
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    ];
    let records: Vec<Value> = output
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|record| record.get("_aws").is_some())
        .collect();
    for record in &records {
        let aws = &record["_aws"];
        assert!(aws["Timestamp"].as_u64().is_some(), "Timestamp: {record}");
        let directives = aws["CloudWatchMetrics"]
            .as_array()
            .expect("CloudWatchMetrics");
        assert!(!directives.is_empty(), "{record}");
        for directive in directives {
            let namespace = directive["Namespace"].as_str().expect("Namespace");
            assert!(!namespace.is_empty() && namespace.len() <= 1024, "{record}");
            for set in directive["Dimensions"].as_array().expect("Dimensions") {
                let set = set.as_array().expect("a dimension set");
                assert!(set.len() <= 30, "{record}");
                for name in set {
                    let name = name.as_str().expect("a dimension name");
                    assert!(record[name].is_string(), "dimension {name} in {record}");
                }
            }
            let metrics = directive["Metrics"].as_array().expect("Metrics");
            assert!(!metrics.is_empty() && metrics.len() <= 100, "{record}");
            for metric in metrics {
                let name = metric["Name"].as_str().expect("a metric Name");
                let value = &record[name];
                assert!(
                    value.is_number()
                        || value
                            .as_array()
                            .is_some_and(|v| v.iter().all(Value::is_number)),
                    "metric {name} in {record}"
                );
                if let Some(unit) = metric.get("Unit") {
                    assert!(UNITS.contains(&unit.as_str().unwrap_or("")), "{record}");
                }
            }
        }
    }
    records
}

const HTTP_API_REQUEST: &str = include_str!("fixtures/http-api-request.json");
const WEBSOCKET_CONNECT: &str = include_str!("fixtures/websocket-connect.json");
const SQS_EVENT: &str = include_str!("fixtures/sqs-analysis-event.json");

/// Each function refuses to start without the tables, queues and endpoints it uses,
/// naming every one missing: no `docfan-*` default is guessed in Lambda.
#[tokio::test]
async fn every_function_names_the_variables_it_is_started_without() {
    for (binary, consumer, wants) in [
        ("lambda-api", None, shared::aws::config::required::API),
        (
            "lambda-websocket",
            None,
            shared::aws::config::required::WEBSOCKET,
        ),
        (
            "lambda-analysis-worker",
            None,
            shared::aws::config::required::ANALYSIS_WORKER,
        ),
        (
            "lambda-stream-handler",
            Some("index"),
            shared::aws::config::required::INDEX_CONSUMER,
        ),
        (
            "lambda-stream-handler",
            Some("live"),
            shared::aws::config::required::LIVE_CONSUMER,
        ),
    ] {
        let secret = std::str::from_utf8(TEST_SECRET).unwrap();
        let mut env = vec![
            ("DOCFAN_JWT_SECRET", secret),
            ("DOCFAN_STREAM_MAX_RETRIES", "8"),
            ("DOCFAN_STREAM_MAX_RECORD_AGE_SECS", "3000"),
            // One of them given: it is not named.
            (wants[0], "given"),
        ];
        env.extend(consumer.map(|c| ("DOCFAN_STREAM_CONSUMER", c)));
        let said = refused_at_start(binary, &env).await;
        assert!(
            said.contains(&wants[1..].join(", ")),
            "{binary} {consumer:?}: {said}"
        );
        assert!(!said.contains(wants[0]), "{binary} {consumer:?}: {said}");
    }
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn lambda_api_serves_the_router_behind_an_http_api() {
    let clients = emulators::aws(Wants {
        search: true,
        ..Wants::default()
    })
    .await;
    let ann = unique_user("ann");
    let doc = new_document(&ann, "Lambda", "served", &[]);
    clients.document_store().create(&doc).await.unwrap();
    let event = HTTP_API_REQUEST.replace("TOKEN", &token_for(ann.as_str()));
    let (kind, response) = invoke(
        "lambda-api",
        &clients,
        &[],
        serde_json::from_str(&event).unwrap(),
    )
    .await;
    assert_eq!(kind, "response", "{response}");
    assert_eq!(response["statusCode"], 200, "{response}");
    let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["items"][0]["id"], doc.id.to_string());
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn lambda_websocket_accepts_a_connect_with_its_token() {
    let recorder = Recorder::start().await;
    let clients =
        emulators::aws_with_endpoint(Wants::default(), Some(recorder.endpoint.clone())).await;
    let ann = unique_user("ann");
    let mut event: Value = serde_json::from_str(WEBSOCKET_CONNECT).unwrap();
    event["requestContext"]["connectionId"] = "lambda=".into();
    event["queryStringParameters"]["token"] = token_for(ann.as_str()).into();
    let extra = [("DOCFAN_WEBSOCKET_ENDPOINT", recorder.endpoint.clone())];
    let (kind, response) = invoke("lambda-websocket", &clients, &extra, event.clone()).await;
    assert_eq!(
        (kind.as_str(), &response["statusCode"]),
        ("response", &json!(200)),
        "{response}"
    );
    let registry = clients.connection_registry(Arc::new(shared::clock::SystemClock));
    assert_eq!(
        registry
            .get(&ConnectionId("lambda=".into()))
            .await
            .unwrap()
            .unwrap()
            .user,
        ann
    );

    event["queryStringParameters"]["token"] = "forged".into();
    let (_, refused) = invoke("lambda-websocket", &clients, &extra, event).await;
    assert_eq!(refused["statusCode"], 401, "{refused}");

    // Its schedule's event runs the sweep: ann's token is still valid, nothing closes.
    let scheduled: Value =
        serde_json::from_str(include_str!("fixtures/scheduled-event.json")).unwrap();
    let (kind, swept) = invoke("lambda-websocket", &clients, &extra, scheduled).await;
    assert_eq!(
        (kind.as_str(), &swept),
        ("response", &json!({"closed": 0})),
        "{swept}"
    );
}

/// The same function is the `$connect` route's REQUEST authorizer: a good token gets an
/// `Allow` policy on the handshake's `methodArn` for its user; any other is the error
/// `Unauthorized`, which API Gateway answers with 401. Nothing is registered either way.
#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn lambda_websocket_authorizes_handshakes_by_their_token() {
    let clients = emulators::aws(Wants::default()).await;
    let ann = unique_user("ann");
    let mut event: Value =
        serde_json::from_str(include_str!("fixtures/websocket-authorizer.json")).unwrap();
    let arn = event["methodArn"].clone();
    event["queryStringParameters"]["token"] = token_for(ann.as_str()).into();
    let extra = [("DOCFAN_WEBSOCKET_ENDPOINT", emulators::closed_endpoint())];
    let (kind, policy) = invoke("lambda-websocket", &clients, &extra, event.clone()).await;
    assert_eq!(kind, "response", "{policy}");
    assert_eq!(policy["principalId"], ann.as_str());
    assert_eq!(
        policy["policyDocument"]["Statement"],
        json!([{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": arn}])
    );
    assert_eq!(policy["context"]["user"], ann.as_str());

    for token in [json!("forged"), json!("")] {
        event["queryStringParameters"]["token"] = token;
        let (kind, refused) = invoke("lambda-websocket", &clients, &extra, event.clone()).await;
        assert_eq!(kind, "error", "{refused}");
        assert_eq!(refused["errorMessage"], "Unauthorized", "{refused}");
    }
    let registry = clients.connection_registry(Arc::new(shared::clock::SystemClock));
    let connection = ConnectionId(
        event["requestContext"]["connectionId"]
            .as_str()
            .unwrap()
            .into(),
    );
    assert!(registry.get(&connection).await.unwrap().is_none());
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn lambda_stream_handler_fans_a_stream_batch_out() {
    let recorder = Recorder::start().await;
    let clients = emulators::aws_with_endpoint(
        Wants {
            search: true,
            ..Wants::default()
        },
        Some(recorder.endpoint.clone()),
    )
    .await;
    let ann = unique_user("ann");
    let doc = new_document(&ann, "Streamed", "through lambda", &[]);
    // ann watches the document from a connection of hers.
    let registry = clients.connection_registry(Arc::new(shared::clock::SystemClock));
    let watching = ConnectionId("ann-tab=".into());
    let now = chrono::Utc::now();
    registry
        .register(&shared::ports::Connection {
            id: watching.clone(),
            user: ann.clone(),
            expires_at: now + chrono::TimeDelta::hours(1),
            connected_at: now,
        })
        .await
        .unwrap();
    registry
        .subscribe(&watching, &doc.id, Default::default())
        .await
        .unwrap();
    clients.document_store().create(&doc).await.unwrap();
    let records = crate::stream::read_stream(&clients).await;
    let event = json!({ "Records": records });
    let consumer = |name: &str| {
        [
            ("DOCFAN_WEBSOCKET_ENDPOINT", recorder.endpoint.clone()),
            ("DOCFAN_STREAM_CONSUMER", name.to_owned()),
        ]
    };

    // Which consumer it is must be said: no silent default. The function exits at its
    // cold start, before it asks for an event (Lambda reports Runtime.ExitError).
    let said = refused_at_start(
        "lambda-stream-handler",
        &[("DOCFAN_WEBSOCKET_ENDPOINT", recorder.endpoint.as_str())],
    )
    .await;
    assert!(said.contains("DOCFAN_STREAM_CONSUMER is not set"), "{said}");
    // Nor when the index consumer is not told when to give up on a failing record.
    let said = refused_at_start(
        "lambda-stream-handler",
        &[("DOCFAN_STREAM_CONSUMER", "index")],
    )
    .await;
    assert!(
        said.contains("DOCFAN_STREAM_MAX_RETRIES is not set"),
        "{said}"
    );

    // The index consumer: search and the audit trail, nobody notified; with active
    // tracing, one X-Ray subsegment per sink reaches the daemon.
    let daemon = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut traced = consumer("index").to_vec();
    traced.push((
        "AWS_XRAY_DAEMON_ADDRESS",
        daemon.local_addr().unwrap().to_string(),
    ));
    let (kind, response, output) =
        invoke_logged("lambda-stream-handler", &clients, &traced, event.clone()).await;
    assert_eq!(kind, "response", "{response}");
    assert_eq!(response["batchItemFailures"], json!([]), "{response}");
    // The invocation's metrics, as CloudWatch would extract them from its log lines.
    let emf = emf_records(&output);
    let delivered = |sink: &str| {
        emf.iter()
            .find(|r| r["Sink"] == sink)
            .and_then(|r| r["Delivered"].as_f64())
    };
    for sink in ["search", "audit", "analysis"] {
        assert_eq!(delivered(sink), Some(1.0), "{sink} in {output}");
    }
    assert!(
        emf.iter()
            .any(|r| r["RecordsProcessed"].as_f64() == Some(1.0)
                && r["Function"] == "lambda-stream-handler"),
        "{output}"
    );
    let mut subsegments = std::collections::BTreeMap::new();
    let mut datagram = vec![0u8; 65_536];
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_secs(2), daemon.recv(&mut datagram)).await
    {
        let text = std::str::from_utf8(&datagram[..n]).unwrap();
        let (header, document) = text.split_once('\n').unwrap();
        assert_eq!(header, r#"{"format": "json", "version": 1}"#);
        let document: Value = serde_json::from_str(document).unwrap();
        subsegments.insert(document["name"].as_str().unwrap().to_owned(), document);
    }
    assert_eq!(
        subsegments.keys().collect::<Vec<_>>(),
        ["analysis", "audit", "search"],
        "{subsegments:?}"
    );
    for (sink, subsegment) in &subsegments {
        assert_eq!(subsegment["type"], "subsegment");
        assert_eq!(
            subsegment["trace_id"],
            "1-6750a1f0-0a1b2c3d4e5f60718293a4b5"
        );
        assert_eq!(subsegment["parent_id"], "53995c3f42cd8ad8");
        assert_eq!(subsegment["annotations"]["sink"], sink.as_str());
        assert_eq!(subsegment["annotations"]["deliveries"], 1, "{subsegment}");
        assert_eq!(subsegment["annotations"]["failures"], 0, "{subsegment}");
        assert!(subsegment["end_time"].as_f64() >= subsegment["start_time"].as_f64());
    }
    let audit = clients.audit_log().list(&doc.id, None, 10).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        clients
            .search_index()
            .unwrap()
            .indexed(&doc.id)
            .await
            .unwrap(),
        Some((1, false))
    );
    assert!(recorder.posts_to("ann-tab=").is_empty());

    // The live consumer: the frame, and nothing written to the index sinks.
    let (kind, response) =
        invoke("lambda-stream-handler", &clients, &consumer("live"), event).await;
    assert_eq!(kind, "response", "{response}");
    assert_eq!(response["batchItemFailures"], json!([]), "{response}");
    let posts = recorder.posts_to("ann-tab=");
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(posts[0]["type"], "document.created");
    assert_eq!(crate::emulators::audit_count(&clients, &doc.id).await, 1);
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn lambda_analysis_worker_analyses_an_sqs_batch() {
    let recorder = Recorder::start().await;
    let clients =
        emulators::aws_with_endpoint(Wants::default(), Some(recorder.endpoint.clone())).await;
    let ann = unique_user("ann");
    let doc = new_document(&ann, "Analysed", "one two three", &[]);
    clients.document_store().create(&doc).await.unwrap();
    let mut event: Value = serde_json::from_str(SQS_EVENT).unwrap();
    let records = event["Records"].as_array_mut().unwrap();
    records.truncate(1);
    records[0]["body"] = json!({"documentId": doc.id, "version": 1})
        .to_string()
        .into();
    let extra = [("DOCFAN_WEBSOCKET_ENDPOINT", recorder.endpoint.clone())];
    let (kind, response) = invoke("lambda-analysis-worker", &clients, &extra, event).await;
    assert_eq!(kind, "response", "{response}");
    assert_eq!(response["batchItemFailures"], json!([]), "{response}");
    let analysis = clients
        .analysis_store()
        .get(&doc.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((analysis.version, analysis.word_count), (1, 3));
}
