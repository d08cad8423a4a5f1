//! SIGKILL during concurrent writes: every acknowledged write survives, with exactly one
//! change record.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tests::child::ChildServer;
use tests::token_for;

use super::change_log;

/// Writes as `user` until the server stops answering; records each acknowledged
/// (document, version).
async fn writer(
    base: String,
    user: String,
    acked: Arc<Mutex<Vec<(String, u64)>>>,
    count: Arc<AtomicUsize>,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let token = token_for(&user);
    let Ok(r) = client
        .post(format!("{base}/documents"))
        .bearer_auth(&token)
        .json(&json!({"title": format!("{user}'s"), "body": ""}))
        .send()
        .await
    else {
        return;
    };
    if r.status() != 201 {
        return;
    }
    let doc: Value = r.json().await.unwrap();
    let id = doc["id"].as_str().unwrap().to_owned();
    acked.lock().unwrap().push((id.clone(), 1));
    count.fetch_add(1, Ordering::SeqCst);
    let mut version = 1;
    loop {
        let sent = client
            .put(format!("{base}/documents/{id}"))
            .bearer_auth(&token)
            .header("If-Match", format!("\"{version}\""))
            .json(&json!({"title": format!("{user}'s"), "body": format!("edit {}", version + 1)}))
            .send()
            .await;
        match sent {
            Ok(r) if r.status() == 200 => {
                version += 1;
                acked.lock().unwrap().push((id.clone(), version));
                count.fetch_add(1, Ordering::SeqCst);
            }
            _ => return,
        }
    }
}

#[tokio::test]
async fn sigkill_during_concurrent_writes_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let acked = Arc::new(Mutex::new(Vec::new()));
    for round in 0..3 {
        let server = ChildServer::start(dir.path()).await;
        let count = Arc::new(AtomicUsize::new(0));
        let writers: Vec<_> = (0..6)
            .map(|w| {
                tokio::spawn(writer(
                    server.base.clone(),
                    format!("writer{round}-{w}"),
                    Arc::clone(&acked),
                    Arc::clone(&count),
                ))
            })
            .collect();
        // Kill while writes are flowing: after a good number were acknowledged.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while count.load(Ordering::SeqCst) < 60 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        server.kill().await;
        for w in writers {
            let _ = w.await;
        }
        assert!(
            count.load(Ordering::SeqCst) >= 60,
            "round {round}: writes did not flow"
        );
    }

    // Restart and check every acknowledged write.
    let server = ChildServer::start(dir.path()).await;
    let client = reqwest::Client::new();
    let acked = acked.lock().unwrap().clone();
    let mut latest: HashMap<String, u64> = HashMap::new();
    let mut final_versions: HashMap<String, (String, u64)> = HashMap::new();
    for (id, version) in &acked {
        let v = latest.entry(id.clone()).or_default();
        *v = (*v).max(*version);
    }
    for (id, version) in &latest {
        let owner = acked_owner(&client, &server.base, id).await;
        let doc: Value = client
            .get(format!("{}/documents/{id}", server.base))
            .bearer_auth(token_for(&owner))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let stored = doc["version"].as_u64().unwrap();
        // A write in flight at the kill may have committed without its answer arriving.
        assert!(
            stored == *version || stored == *version + 1,
            "{id}: acked {version}, stored {stored}"
        );
        final_versions.insert(id.clone(), (owner, stored));
    }

    // The restarted server resumes the fan-out from its checkpoints: the audit trail
    // converges to every version of every document, each exactly once, in order.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for (id, (owner, stored)) in &final_versions {
        loop {
            let versions = history_versions(&client, &server.base, id, owner).await;
            if versions.len() as u64 == *stored {
                let expected: Vec<u64> = (1..=*stored).collect();
                assert_eq!(
                    versions, expected,
                    "{id}: the audit trail has gaps or repeats"
                );
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{id}: the audit trail did not converge: {versions:?} of {stored}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    drop(server);

    let mut records: BTreeMap<(String, u64), usize> = BTreeMap::new();
    for (_, record) in change_log(dir.path()) {
        let image = &record["dynamodb"]["NewImage"];
        let id = image["id"]["S"].as_str().unwrap().to_owned();
        let version = image["version"]["N"].as_str().unwrap().parse().unwrap();
        *records.entry((id, version)).or_default() += 1;
    }
    for (id, version) in &acked {
        assert_eq!(
            records.get(&(id.clone(), *version)),
            Some(&1),
            "{id} v{version}"
        );
    }
    assert!(
        records.values().all(|n| *n == 1),
        "a version recorded twice"
    );
    assert!(acked.len() >= 180);
}

/// Every version in a document's audit trail, oldest first, following the cursor.
async fn history_versions(client: &reqwest::Client, base: &str, id: &str, user: &str) -> Vec<u64> {
    let mut versions = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/documents/{id}/history?limit=100");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = client
            .get(url)
            .bearer_auth(token_for(user))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for item in page["items"].as_array().expect("a history page") {
            versions.push(item["version"].as_u64().unwrap());
        }
        match page.get("nextCursor").and_then(Value::as_str) {
            Some(c) => cursor = Some(c.to_owned()),
            None => return versions,
        }
    }
}

/// The owner of a document, found by asking as each writer (writers own their documents).
async fn acked_owner(client: &reqwest::Client, base: &str, id: &str) -> String {
    for round in 0..3 {
        for w in 0..6 {
            let user = format!("writer{round}-{w}");
            let r = client
                .get(format!("{base}/documents/{id}"))
                .bearer_auth(token_for(&user))
                .send()
                .await
                .unwrap();
            if r.status() == 200 {
                return user;
            }
        }
    }
    panic!("no writer owns {id}");
}

#[tokio::test]
async fn sigterm_stops_the_server_gracefully_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start(dir.path()).await;
    let client = reqwest::Client::new();
    let created: Value = client
        .post(format!("{}/documents", server.base))
        .bearer_auth(token_for("ann"))
        .json(&json!({"title": "kept", "body": "across a restart"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        server.terminate().await,
        "docfan did not exit cleanly on SIGTERM"
    );

    let server = ChildServer::start(dir.path()).await;
    let id = created["id"].as_str().unwrap();
    let read = client
        .get(format!("{}/documents/{id}", server.base))
        .bearer_auth(token_for("ann"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    // The change reaches the audit trail, before the stop or after the restart.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let versions = history_versions(&client, &server.base, id, "ann").await;
        if !versions.is_empty() {
            assert_eq!(versions, vec![1]);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the change never reached the audit trail"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
