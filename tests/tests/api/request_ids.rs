//! Request ids: kept from the request when sane, made otherwise, answered on every
//! response and carried by a problem as its `instance`.

use reqwest::StatusCode;
use tests::TestApp;

#[tokio::test]
async fn a_sent_request_id_is_echoed_and_names_the_problem() {
    let app = TestApp::spawn().await;
    let ok = app
        .send(
            app.request(reqwest::Method::GET, "/documents", Some("ann"))
                .header("x-request-id", "client-chosen-42"),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.header("x-request-id"), Some("client-chosen-42"));

    let missing = app
        .send(
            app.request(
                reqwest::Method::GET,
                "/documents/0190b2a4-0000-7000-8000-000000000000",
                Some("ann"),
            )
            .header("x-request-id", "trace-me"),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.header("x-request-id"), Some("trace-me"));
    assert_eq!(missing.body["instance"], "trace-me", "{}", missing.body);
}

#[tokio::test]
async fn an_absent_or_insane_request_id_is_replaced_by_a_fresh_one() {
    let app = TestApp::spawn().await;
    let mut seen = Vec::new();
    for sent in [None, Some("x".repeat(129)), Some("two words".to_owned())] {
        let mut request = app.client.get(app.url("/documents"));
        if let Some(sent) = &sent {
            request = request.header("x-request-id", sent);
        }
        // No token: a problem, which carries the id too.
        let reply = app.send(request).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        let id = reply.header("x-request-id").expect("an id").to_owned();
        assert_ne!(Some(&id), sent.as_ref());
        let uuid = uuid::Uuid::parse_str(&id).expect("a made id is a UUID");
        assert_eq!(uuid.get_version_num(), 7);
        assert_eq!(reply.body["instance"], id.as_str());
        seen.push(id);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 3, "each request gets its own id");
}

#[tokio::test]
async fn every_kind_of_answer_carries_an_id() {
    let app = TestApp::spawn().await;
    for (method, path) in [
        (reqwest::Method::GET, "/healthz"),
        (reqwest::Method::GET, "/readyz"),
        (reqwest::Method::GET, "/metrics"),
        (reqwest::Method::GET, "/"),
        (reqwest::Method::GET, "/no/such/route"),
        (reqwest::Method::DELETE, "/documents"),
        (reqwest::Method::GET, "/ws"),
    ] {
        let reply = app
            .send(app.client.request(method.clone(), app.url(path)))
            .await;
        let id = reply.header("x-request-id");
        assert!(
            id.is_some_and(|id| !id.is_empty()),
            "{method} {path}: {:?}",
            reply.headers
        );
        if reply.header("content-type") == Some("application/problem+json") {
            assert_eq!(reply.body["instance"].as_str(), id, "{method} {path}");
        }
    }
}

/// The log line of a request, and every line written while it is handled, carry its
/// id; at the default level the request is logged once at INFO and tantivy says
/// nothing.
#[tokio::test]
async fn the_request_log_carries_the_id_route_status_and_user() {
    use std::process::Stdio;
    use tests::child::{docfan_binary, free_port};

    let data = tempfile::tempdir().unwrap();
    let log_path = data.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut server = tokio::process::Command::new(docfan_binary())
        .args([
            "serve",
            "--log-format",
            "json",
            "--listen",
            &addr,
            "--data-dir",
        ])
        .arg(data.path().join("data"))
        .env(
            "DOCFAN_JWT_SECRET",
            std::str::from_utf8(tests::TEST_SECRET).unwrap(),
        )
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..200 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(up, "docfan serve did not start");
    let created = client
        .post(format!("{base}/documents"))
        .bearer_auth(tests::token_for("ann"))
        .header("x-request-id", "log-me-1")
        .json(&serde_json::json!({"title": "Logged", "body": "a save, indexed by tantivy"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let id = created.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Let the fan-out index it, so tantivy has had its chance to log.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let fetched = client
        .get(format!("{base}/documents/{id}"))
        .bearer_auth(tests::token_for("ann"))
        .header("x-request-id", "log-me-2")
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.status(), StatusCode::OK);
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(server.id().unwrap().to_string())
        .status();
    let _ = server.wait().await;

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log_path)
        .unwrap()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let answered: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["message"] == "answered" && l["span"]["request_id"] == "log-me-1")
        .collect();
    assert_eq!(answered.len(), 1, "one line per request: {lines:#?}");
    let line = answered[0];
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["status"], 201);
    assert!(line["duration_ms"].is_number(), "{line}");
    assert_eq!(line["span"]["method"], "POST");
    assert_eq!(line["span"]["route"], "/documents");
    assert_eq!(line["span"]["user"], "ann");
    let read = lines
        .iter()
        .find(|l| l["message"] == "answered" && l["span"]["request_id"] == "log-me-2")
        .expect("the read is logged");
    assert_eq!(
        read["span"]["route"], "/documents/{id}",
        "the template, not the id"
    );
    let noisy: Vec<_> = lines
        .iter()
        .filter(|l| {
            l["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("tantivy"))
        })
        .collect();
    assert!(
        noisy.is_empty(),
        "tantivy logs at the default level: {noisy:#?}"
    );
}
