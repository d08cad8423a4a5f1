//! Abuse that a valid token (or none) must not turn into an outage or a leak: bounded
//! search queries, answers free of index-wide statistics, metrics whose labels cannot
//! be made up, cursors that do not wrap, tokens from the future, invisible titles,
//! connections that never send a request.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tests::TestApp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn search(app: &TestApp, user: &str, q: &str) -> tests::Reply {
    app.send(
        app.request(Method::GET, "/search", Some(user))
            .query(&[("q", q)]),
    )
    .await
}

#[tokio::test]
async fn deep_and_long_queries_are_refused_at_once() {
    let app = TestApp::spawn().await;
    app.create("ann", "Zoo", "the zebra", json!({})).await;
    let nested = |depth: usize| format!("{}a{}", "(".repeat(depth), ")".repeat(depth));
    let started = Instant::now();
    for q in [
        nested(9),
        nested(40),
        nested(2_000),
        "(".repeat(2_000),
        "a ".repeat(129),
        format!("{}b", "é".repeat(256)),
    ] {
        let reply = search(&app, "ann", &q).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
        assert_eq!(reply.problem_type(), "/problems/invalid-query");
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    // Within the limits the same shapes are fine, and the server is still there.
    assert_eq!(search(&app, "ann", &nested(8)).await.status, StatusCode::OK);
    let limit = format!("{}b", "é".repeat(255));
    assert_eq!(search(&app, "ann", &limit).await.status, StatusCode::OK);
    for q in ["", "   ", "a OR", "-zebra", "\"open", "z*", "title:"] {
        let reply = search(&app, "ann", q).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{q:?}");
        assert_eq!(reply.problem_type(), "/problems/invalid-query", "{q:?}");
    }
    let health = app.send(app.client.get(app.url("/healthz"))).await;
    assert_eq!(health.status, StatusCode::OK);
}

#[tokio::test]
async fn results_carry_no_score() {
    let app = TestApp::spawn().await;
    let doc = app
        .create("ann", "Zoo plan", "the zebra moves north", json!({}))
        .await;
    let id = doc["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let hit = loop {
        let reply = search(&app, "ann", "zebra (north OR south) -giraffe").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        if let Some(hit) = reply.body["results"].get(0) {
            break hit.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the document never became searchable"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(hit["id"], id);
    let mut keys: Vec<&str> = hit
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["id", "snippet", "title", "version"]);
    assert!(
        hit["snippet"]
            .as_str()
            .unwrap()
            .contains("<mark>zebra</mark>")
    );
}

/// Sends raw HTTP/1.1 requests on one connection and reads until the server closes it.
async fn raw_requests(app: &TestApp, requests: &str) {
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(requests.as_bytes()).await.unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut sink)).await;
}

#[tokio::test]
async fn made_up_methods_and_paths_do_not_grow_the_metrics() {
    let app = TestApp::spawn().await;
    // The HTTP series only: the fan-out's own may come and go.
    let http_metrics = || async {
        let text = app
            .client
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with("docfan_http"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    };
    // Every label that can exist once.
    let warm_up: String = ["GET", "BREW", "PURGE"]
        .iter()
        .flat_map(|m| {
            [
                format!("{m} /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
                format!("{m} /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"),
            ]
        })
        .collect::<String>()
        + "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    raw_requests(&app, &warm_up).await;
    let before = http_metrics().await;

    for batch in 0..6 {
        let mut requests = String::new();
        for i in 0..500 {
            let method = format!("M{batch}X{i}{}", "Q".repeat(i % 50));
            requests.push_str(&format!(
                "{method} /healthz HTTP/1.1\r\nHost: x\r\n\r\n{method} /made/up/{batch}/{i} HTTP/1.1\r\nHost: x\r\n\r\n"
            ));
        }
        requests.push_str("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        raw_requests(&app, &requests).await;
    }
    let after = http_metrics().await;
    assert!(!after.contains("M0X1"), "a made-up method became a label");
    assert!(!after.contains("/made/up"), "a made-up path became a label");
    // Counts grow by a few digits; no new series.
    let series = |text: &str| text.lines().count();
    assert_eq!(series(&after), series(&before), "{after}");
    assert!(
        after.len() < before.len() + 1_024,
        "metrics grew from {} to {} bytes",
        before.len(),
        after.len()
    );
}

#[tokio::test]
async fn history_cursors_past_i64_are_refused() {
    let app = TestApp::spawn().await;
    let doc = app.create("ann", "Zoo", "zebra", json!({})).await;
    let id = doc["id"].as_str().unwrap();
    for position in [u64::MAX.to_string(), (i64::MAX as u64 + 1).to_string()] {
        let cursor = URL_SAFE_NO_PAD.encode(&position);
        let reply = app
            .get("ann", &format!("/documents/{id}/history?cursor={cursor}"))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{position}");
        assert_eq!(reply.body["field"], "cursor");
    }
}

fn signed(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(tests::TEST_SECRET),
    )
    .unwrap()
}

#[tokio::test]
async fn tokens_from_the_future_are_401() {
    let app = TestApp::spawn().await;
    let now = Utc::now().timestamp();
    let exp = now + 3600;
    for (claims, expected) in [
        (
            json!({"sub": "ann", "exp": exp, "iat": now, "nbf": now}),
            StatusCode::OK,
        ),
        (
            json!({"sub": "ann", "exp": exp, "nbf": now + 30}),
            StatusCode::OK,
        ),
        (
            json!({"sub": "ann", "exp": exp, "nbf": now + 600}),
            StatusCode::UNAUTHORIZED,
        ),
        (
            json!({"sub": "ann", "exp": exp, "iat": now + 365 * 86_400}),
            StatusCode::UNAUTHORIZED,
        ),
    ] {
        let reply = app
            .send(
                app.client
                    .get(app.url("/documents"))
                    .bearer_auth(signed(claims.clone())),
            )
            .await;
        assert_eq!(reply.status, expected, "{claims}");
    }
}

#[tokio::test]
async fn invisible_and_bidi_titles_are_refused() {
    let app = TestApp::spawn().await;
    for (title, says) in [
        ("\u{200B}", "blank"),
        ("\u{200B}\u{200D}\u{FEFF}\u{2060}", "blank"),
        (" \u{FE0F} ", "blank"),
        ("invoice\u{202E}fdp.exe", "bidirectional"),
        ("\u{2066}x\u{2069}", "bidirectional"),
    ] {
        let reply = app
            .send(
                app.request(Method::POST, "/documents", Some("ann"))
                    .json(&json!({"title": title, "body": ""})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{title:?}");
        assert_eq!(reply.problem_type(), "/problems/invalid-input");
        assert!(
            reply.body["detail"].as_str().unwrap().contains(says),
            "{title:?}: {}",
            reply.body
        );
    }
}

/// Reads until the server closes the connection; how long that took.
async fn closed_within(mut socket: TcpStream, patience: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(
            tokio::time::Instant::from_std(started + patience),
            socket.read(&mut buffer),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

/// A connection that sends nothing, and one that sends half a request head and stops,
/// are both closed once the header timeout (10 s) passes; the server answers others
/// meanwhile.
#[tokio::test]
async fn silent_and_half_sent_requests_are_closed() {
    let app = TestApp::spawn().await;
    let silent = TcpStream::connect(app.addr).await.unwrap();
    let mut half = TcpStream::connect(app.addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: docfan\r\nX-Slow: ")
        .await
        .unwrap();
    let patience = Duration::from_secs(25);
    let (silent, half, healthz) = tokio::join!(
        closed_within(silent, patience),
        closed_within(half, patience),
        app.send(app.request(Method::GET, "/healthz", None)),
    );
    assert_eq!(healthz.status, StatusCode::OK);
    for (what, took) in [("silent", silent), ("half-sent", half)] {
        let took = took.unwrap_or_else(|| panic!("the {what} connection is still open"));
        assert!(
            took >= Duration::from_secs(9),
            "the {what} connection was closed too soon: {took:?}"
        );
    }
}
