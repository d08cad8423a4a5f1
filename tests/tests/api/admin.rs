//! Live administration through the real binary: `docfan reindex` and `docfan dlq` while
//! `docfan serve` runs on the same data directory go through the server's admin socket
//! (the index is rebuilt with the writes made meanwhile kept, dead letters are listed and
//! redriven), the socket refuses what it does not expect, a second server still cannot
//! start, and a socket left by a killed server is neither trusted nor in the way.

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::embedded::{DATABASE_FILE, DataDirLock, SqliteDeadLetterQueue};
use shared::ports::{DeadLetter, DeadLetterQueue, DeadLetterSource};
use tests::child::{ChildServer, run_docfan};
use tests::data_dir::change_log;
use tests::token_for;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const SOCKET: &str = "admin.sock";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

async fn create(client: &reqwest::Client, base: &str, title: &str, body: &str) -> Value {
    let created = client
        .post(format!("{base}/documents"))
        .bearer_auth(token_for("ann"))
        .json(&json!({"title": title, "body": body}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    created.json().await.unwrap()
}

/// Every hit of `q` for ann, all pages: id → version.
async fn search_all(client: &reqwest::Client, base: &str, q: &str) -> HashMap<String, u64> {
    let mut hits = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("q", q.to_owned()), ("limit", "100".to_owned())];
        if let Some(c) = &cursor {
            query.push(("cursor", c.clone()));
        }
        let page: Value = client
            .get(format!("{base}/search"))
            .query(&query)
            .bearer_auth(token_for("ann"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for hit in page["results"].as_array().expect("results") {
            hits.insert(
                hit["id"].as_str().unwrap().to_owned(),
                hit["version"].as_u64().unwrap(),
            );
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return hits,
        }
    }
}

/// Waits until searching `q` finds exactly `expected` (id → version).
async fn wait_for_search(
    client: &reqwest::Client,
    base: &str,
    q: &str,
    expected: &HashMap<String, u64>,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = search_all(client, base, q).await;
        if &found == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "search for {q} found {} of {} documents, or older versions",
            found.len(),
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn reindex_runs_in_the_running_server_and_keeps_the_writes_made_meanwhile() {
    const BEFORE: usize = 400;
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start(dir.path()).await;
    let socket = dir.path().join(SOCKET);
    let meta = std::fs::symlink_metadata(&socket).expect("serve made its admin socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    let client = reqwest::Client::new();
    let mut before = HashMap::new();
    for i in 0..BEFORE {
        let doc = create(&client, &server.base, &format!("note {i}"), "walrus before").await;
        before.insert(doc["id"].as_str().unwrap().to_owned(), 1);
    }
    wait_for_search(&client, &server.base, "walrus", &before).await;

    // A writer creates and edits documents for as long as the reindex runs.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let writer = {
        let (base, stop, acked) = (server.base.clone(), stop.clone(), acked.clone());
        let edited: Vec<String> = before.keys().take(20).cloned().collect();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) || n < 10 {
                let doc = create(&client, &base, &format!("during {n}"), "narwhal during").await;
                acked
                    .lock()
                    .unwrap()
                    .insert(doc["id"].as_str().unwrap().to_owned(), 1);
                let id = &edited[n % edited.len()];
                let version = acked.lock().unwrap().get(id).copied().unwrap_or(1);
                let put = client
                    .put(format!("{base}/documents/{id}"))
                    .bearer_auth(token_for("ann"))
                    .header("If-Match", format!("\"{version}\""))
                    .json(&json!({"title": "edited", "body": format!("narwhal edit {n}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(put.status(), StatusCode::OK);
                acked.lock().unwrap().insert(id.clone(), version + 1);
                n += 1;
            }
        })
    };
    let reindexed = run_docfan(&["reindex", "--data-dir", &path(dir.path())]).await;
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    let out = text(&reindexed.stdout);
    assert!(reindexed.status.success(), "{reindexed:?}");
    let indexed: usize = out
        .trim()
        .strip_prefix("indexed ")
        .and_then(|rest| rest.strip_suffix(" documents"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    let during = acked.lock().unwrap().clone();
    let made = BEFORE + during.keys().filter(|id| !before.contains_key(*id)).count();
    assert!(
        (BEFORE..=made).contains(&indexed),
        "indexed {indexed}, not within {BEFORE}..={made}"
    );

    // Every write acknowledged during the reindex is searchable at its latest version.
    wait_for_search(&client, &server.base, "narwhal", &during).await;
    let mut walrus = before.clone();
    walrus.retain(|id, _| !during.contains_key(id));
    wait_for_search(&client, &server.base, "walrus", &walrus).await;

    // The server still serves, and its socket goes with it.
    assert!(server.terminate().await);
    assert!(!socket.exists(), "the admin socket outlived the server");
}

/// Puts a stream letter into the data directory's queue beside the running server.
async fn dead_letter(data_dir: &Path, payload: Value, reason: &str) -> String {
    let queue = SqliteDeadLetterQueue::open(&data_dir.join(DATABASE_FILE)).unwrap();
    queue
        .put(&DeadLetter {
            id: String::new(),
            source: DeadLetterSource::Stream,
            payload,
            reason: reason.into(),
            attempts: 11,
            failed_at: chrono::Utc::now(),
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn dead_letters_are_listed_and_redriven_through_the_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = path(dir.path());
    let server = ChildServer::start(dir.path()).await;
    let client = reqwest::Client::new();
    let doc = create(&client, &server.base, "Lost", "found again").await;
    let record = change_log(dir.path())
        .into_iter()
        .map(|(_, r)| r)
        .find(|r| r["dynamodb"]["Keys"]["id"]["S"] == doc["id"])
        .expect("the creation's record");
    let good = dead_letter(dir.path(), record, "search: index on fire").await;
    let poison = dead_letter(dir.path(), json!({"poison": 1}), "does not decode").await;

    let listed = run_docfan(&["dlq", "list", "--data-dir", &data]).await;
    let out = text(&listed.stdout);
    assert!(listed.status.success(), "{listed:?}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "id\tsource\tfailed at\tattempts\tabout\treason");
    assert!(lines[1].starts_with(&format!("{good}\tstream\t")), "{out}");
    assert!(
        lines[1].contains(&format!(
            "INSERT document {} version 1",
            doc["id"].as_str().unwrap()
        )),
        "{out}"
    );
    assert!(lines[1].ends_with("search: index on fire"), "{out}");
    assert!(
        lines[2].starts_with(&format!("{poison}\tstream\t")),
        "{out}"
    );

    let limited = run_docfan(&["dlq", "list", "--limit", "1", "--data-dir", &data]).await;
    let out = text(&limited.stdout);
    assert!(out.contains("… and 1 more (use --limit)"), "{out}");
    let json_lines = run_docfan(&["dlq", "list", "--json", "--data-dir", &data]).await;
    let letters: Vec<Value> = text(&json_lines.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[1]["payload"], json!({"poison": 1}));
    assert_eq!(letters[1]["attempts"], 11);

    let missing = run_docfan(&["dlq", "redrive", "--id", "999", "--data-dir", &data]).await;
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("no dead letter with id 999"),
        "{missing:?}"
    );

    let one = run_docfan(&["dlq", "redrive", "--id", &good, "--data-dir", &data]).await;
    let out = text(&one.stdout);
    assert!(one.status.success(), "{one:?}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            format!("{good}\tredriven").as_str(),
            "1 redriven, 0 still failing"
        ]
    );

    let rest = run_docfan(&["dlq", "redrive", "--data-dir", &data]).await;
    let out = text(&rest.stdout);
    assert!(!rest.status.success(), "the poison letter still fails");
    assert!(
        out.starts_with(&format!("{poison}\tstill failing: ")),
        "{out}"
    );
    assert!(out.contains("0 redriven, 1 still failing"), "{out}");
    assert!(
        text(&rest.stderr).contains("1 dead letters still fail"),
        "{rest:?}"
    );
    let left = run_docfan(&["dlq", "list", "--json", "--data-dir", &data]).await;
    let left: Vec<Value> = text(&left.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["id"], poison.as_str());
    assert!(server.terminate().await);
}

/// Sends `request` as is on the admin socket and reads the answer until the server
/// closes the connection (which it may do before reading all of a refused body).
async fn raw(socket: &Path, request: &[u8]) -> String {
    let mut stream = UnixStream::connect(socket).await.unwrap();
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the socket answers and closes");
    text(&answer)
}

fn request(method: &str, target: &str, content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: docfan\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn assert_problem(answer: &str, status: &str, kind: &str) {
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status}")),
        "{answer}"
    );
    assert!(
        answer.contains("content-type: application/problem+json"),
        "{answer}"
    );
    assert!(answer.contains(&format!("\"type\":\"{kind}\"")), "{answer}");
}

#[tokio::test]
async fn the_admin_socket_refuses_what_it_does_not_expect() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start(dir.path()).await;
    let socket = dir.path().join(SOCKET);
    let json = Some("application/json");

    let answer = raw(
        &socket,
        &request("POST", "/dead-letters/redrive", json, b"{\"id\": "),
    )
    .await;
    assert_problem(&answer, "400", "/problems/malformed-json");
    let answer = raw(
        &socket,
        &request("POST", "/dead-letters/redrive", json, b"[1]"),
    )
    .await;
    assert_problem(&answer, "400", "/problems/invalid-input");
    let answer = raw(
        &socket,
        &request("POST", "/dead-letters/redrive", json, b"{\"ids\": [\"1\"]}"),
    )
    .await;
    assert_problem(&answer, "400", "/problems/invalid-input");
    let answer = raw(
        &socket,
        &request("POST", "/dead-letters/redrive", Some("text/plain"), b"{}"),
    )
    .await;
    assert_problem(&answer, "415", "/problems/unsupported-media-type");
    let huge = format!("{{\"id\": \"{}\"}}", "9".repeat(64 * 1024));
    let answer = raw(
        &socket,
        &request("POST", "/dead-letters/redrive", json, huge.as_bytes()),
    )
    .await;
    assert_problem(&answer, "413", "/problems/payload-too-large");

    let answer = raw(&socket, &request("GET", "/documents", None, b"")).await;
    assert_problem(&answer, "404", "/problems/not-found");
    let answer = raw(&socket, &request("GET", "/reindex", None, b"")).await;
    assert_problem(&answer, "405", "/problems/method-not-allowed");
    let answer = raw(&socket, &request("DELETE", "/dead-letters", None, b"")).await;
    assert_problem(&answer, "405", "/problems/method-not-allowed");
    for target in [
        "/dead-letters?limit=0",
        "/dead-letters?limit=10001",
        "/dead-letters?limit=many",
        "/dead-letters?limit=1&limit=2",
        "/dead-letters?offset=3",
    ] {
        let answer = raw(&socket, &request("GET", target, None, b"")).await;
        assert_problem(&answer, "400", "/problems/invalid-input");
    }
    let answer = raw(&socket, b"\x16\x03\x01 this is not HTTP\r\n\r\n").await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );

    // After all that, it still answers the real thing.
    let answer = raw(&socket, &request("GET", "/dead-letters?limit=5", None, b"")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("{\"letters\":[],\"total\":0}"), "{answer}");
    assert!(server.terminate().await);
}

#[tokio::test]
async fn a_second_server_is_refused_and_leaves_the_first_ones_socket_alone() {
    let dir = tempfile::tempdir().unwrap();
    let data = path(dir.path());
    let server = ChildServer::start(dir.path()).await;
    let pid = server.pid().unwrap();
    let second = run_docfan(&["serve", "--data-dir", &data, "--listen", "127.0.0.1:0"]).await;
    assert!(!second.status.success());
    let said = text(&second.stderr);
    assert!(
        said.contains("in use") && said.contains(&format!("process {pid}")),
        "{said}"
    );
    let listed = run_docfan(&["dlq", "list", "--data-dir", &data]).await;
    assert!(listed.status.success(), "{listed:?}");
    assert_eq!(text(&listed.stdout), "the dead-letter queue is empty\n");
    let reindexed = run_docfan(&["reindex", "--data-dir", &data]).await;
    assert!(reindexed.status.success(), "{reindexed:?}");
    assert_eq!(text(&reindexed.stdout), "indexed 0 documents\n");
    assert!(server.terminate().await);
}

#[tokio::test]
async fn a_socket_left_by_a_killed_server_is_not_in_the_way() {
    let dir = tempfile::tempdir().unwrap();
    let data = path(dir.path());
    let server = ChildServer::start(dir.path()).await;
    let client = reqwest::Client::new();
    let doc = create(&client, &server.base, "Kept", "sturgeon").await;
    server.kill().await;
    let socket = dir.path().join(SOCKET);
    assert!(socket.exists(), "SIGKILL leaves the socket behind");

    // No server: the commands work on the files, as before.
    let reindexed = run_docfan(&["reindex", "--data-dir", &data]).await;
    assert!(reindexed.status.success(), "{reindexed:?}");
    assert_eq!(text(&reindexed.stdout), "indexed 1 documents\n");
    let redriven = run_docfan(&["dlq", "redrive", "--data-dir", &data]).await;
    assert!(redriven.status.success(), "{redriven:?}");
    assert_eq!(text(&redriven.stdout), "0 redriven, 0 still failing\n");

    // A process that holds the lock and answers on no socket: a clear refusal.
    {
        let _held = DataDirLock::acquire(dir.path()).unwrap();
        let refused = run_docfan(&["reindex", "--data-dir", &data]).await;
        assert!(!refused.status.success());
        let said = text(&refused.stderr);
        assert!(
            said.contains("in use by another docfan process")
                && said.contains("admin socket")
                && said.contains("does not answer"),
            "{said}"
        );
    }

    // The next server replaces the stale socket and answers on it.
    let server = ChildServer::start(dir.path()).await;
    let reindexed = run_docfan(&["reindex", "--data-dir", &data]).await;
    assert!(reindexed.status.success(), "{reindexed:?}");
    assert_eq!(text(&reindexed.stdout), "indexed 1 documents\n");
    let found = search_all(&client, &server.base, "sturgeon").await;
    assert_eq!(found.get(doc["id"].as_str().unwrap()), Some(&1));
    assert!(server.terminate().await);
}
