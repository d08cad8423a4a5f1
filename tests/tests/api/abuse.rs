//! Abuse that a valid token (or none) must not turn into an outage or a leak: bounded
//! search queries, answers free of index-wide statistics, metrics whose labels cannot
//! be made up, cursors that do not wrap, tokens from the future, invisible titles,
//! connections that never send a request, one user's requests past their budget.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tests::TestApp;
use tests::child::ChildServer;
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

/// The HTTP series of a `/metrics` text, parsed as a Prometheus scraper reads it: each
/// series by name and sorted labels, with its value.
fn http_series(text: &str) -> std::collections::BTreeMap<String, f64> {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    // Every sample line was read as a sample: none was skipped as unreadable.
    let sample_lines = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .count();
    let samples: usize = scrape
        .samples
        .iter()
        .map(|s| match &s.value {
            // `_sum` and `_count` are samples of their own.
            prometheus_parse::Value::Histogram(buckets) => buckets.len(),
            _ => 1,
        })
        .sum();
    assert_eq!(
        samples, sample_lines,
        "lines the parser did not read in\n{text}"
    );
    scrape
        .samples
        .iter()
        .filter(|s| s.metric.starts_with("docfan_http"))
        .flat_map(|s| {
            let labels = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<std::collections::BTreeSet<_>>();
            let name = format!(
                "{}{{{}}}",
                s.metric,
                labels.into_iter().collect::<Vec<_>>().join(",")
            );
            match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => vec![(name, *v)],
                prometheus_parse::Value::Histogram(buckets) => buckets
                    .iter()
                    .map(|b| (format!("{name}le={}", b.less_than), b.count))
                    .collect(),
                prometheus_parse::Value::Summary(quantiles) => quantiles
                    .iter()
                    .map(|q| (format!("{name}q={}", q.quantile), q.count))
                    .collect(),
            }
        })
        .collect()
}

#[tokio::test]
async fn made_up_methods_and_paths_do_not_grow_the_metrics() {
    let app = TestApp::spawn().await;
    let metrics = || async {
        app.client
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
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
    let before_text = metrics().await;
    let before = http_series(&before_text);
    assert!(
        before.keys().any(|k| k.contains("method=other")),
        "the warm-up's odd methods are counted as `other`: {before:?}"
    );

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
    let after_text = metrics().await;
    let after = http_series(&after_text);
    assert!(
        !after_text.contains("M0X1"),
        "a made-up method became a label"
    );
    assert!(
        !after_text.contains("/made/up"),
        "a made-up path became a label"
    );
    // The same series, only their counts grown.
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "{after_text}"
    );
    let total = |series: &std::collections::BTreeMap<String, f64>| {
        series
            .iter()
            .filter(|(k, _)| k.starts_with("docfan_http_requests_total"))
            .map(|(_, v)| v)
            .sum::<f64>()
    };
    assert!(
        total(&after) >= total(&before) + 6_000.0,
        "the 6,000 hostile requests are counted: {} then {}",
        total(&before),
        total(&after)
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

/// Sends `request` as `user` with a token of their own, through the real server's
/// environment.
async fn as_user(server: &ChildServer, method: Method, path: &str, user: &str) -> tests::Reply {
    let request = reqwest::Client::new()
        .request(method.clone(), format!("{}{path}", server.base))
        .bearer_auth(tests::token_for(user));
    let request = if method == Method::POST {
        request.json(&json!({"title": "one too many", "body": ""}))
    } else {
        request
    };
    tests::Reply::read(request.send().await.unwrap()).await
}

#[tokio::test]
async fn a_user_past_the_request_budget_gets_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    // Three at once, then one every thousand seconds: no refill during the test.
    let server = ChildServer::start_with_env(
        dir.path(),
        &[
            ("DOCFAN_RATE_LIMIT_BURST", "3"),
            ("DOCFAN_RATE_LIMIT_PER_SECOND", "0.001"),
        ],
    )
    .await;
    for _ in 0..3 {
        let reply = as_user(&server, Method::GET, "/documents", "ann").await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    for (method, path) in [
        (Method::GET, "/documents"),
        (Method::POST, "/documents"),
        (Method::GET, "/search?q=zebra"),
    ] {
        let reply = as_user(&server, method.clone(), path, "ann").await;
        assert_eq!(
            reply.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{method} {path}"
        );
        assert_eq!(reply.problem_type(), "/problems/rate-limited");
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json")
        );
        let retry_after: u64 = reply.header("retry-after").unwrap().parse().unwrap();
        assert!((900..=1000).contains(&retry_after), "{retry_after}");
        assert_eq!(reply.body["retryAfter"], retry_after);
    }
    // Others have budgets of their own; what needs no token is not counted; a bad token
    // is still 401.
    let bob = as_user(&server, Method::GET, "/documents", "bob").await;
    assert_eq!(bob.status, StatusCode::OK);
    let health = reqwest::get(format!("{}/healthz", server.base))
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let forged = reqwest::Client::new()
        .get(format!("{}/documents", server.base))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
}

/// One character typed at the end of a body of `version - 1` characters.
fn typed(version: u64) -> Value {
    match version - 1 {
        0 => json!(["x"]),
        kept => json!([kept, "x"]),
    }
}

#[tokio::test]
async fn the_default_budget_never_troubles_a_person() {
    let app = TestApp::spawn().await;
    // A page load's worth of requests at once, then typing: one edit in flight at a
    // time (about 150 ms apart in the editor; here as fast as the server answers, which
    // is faster than anyone types).
    let doc = app.create("ann", "Notes", "", json!({})).await;
    let id = doc["id"].as_str().unwrap();
    for path in [
        "/documents",
        &format!("/documents/{id}"),
        &format!("/documents/{id}/history"),
    ] {
        assert_eq!(app.get("ann", path).await.status, StatusCode::OK);
    }
    for version in 1..=150u64 {
        let reply = app
            .send(
                app.request(Method::POST, &format!("/documents/{id}/edits"), Some("ann"))
                    .json(&json!({"baseVersion": version, "ops": typed(version)})),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "edit {version}: {}",
            reply.body
        );
    }
}
