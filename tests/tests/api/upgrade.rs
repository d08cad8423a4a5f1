//! Schema versions: a data directory made before they were numbered (docfan at 47fbc70,
//! `tests/fixtures/data-dir-47fbc70`) is upgraded by the current `docfan serve` with
//! every row intact and nothing fanned out again; a restart migrates nothing twice; a
//! data directory from a newer docfan is refused and left as it was.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::embedded::DATABASE_FILE;
use shared::embedded::schema::{LATEST, MIGRATIONS};
use shared::embedded::sqlite::open_database;
use tests::child::{ChildServer, run_docfan};
use tests::data_dir::{checkpoints, made_by_47fbc70, rows, schema, schema_version};
use tests::read_side::{Expected, history_versions, wait_until_converged};
use tests::token_for;

const WALRUS: &str = "01a239eb-bb9d-76fb-bc04-8a65c61b6f4b";
const BOB_PLANS: &str = "01a239eb-bbbb-7706-8bbf-e765a314ad0f";
const SCRATCH: &str = "01a239eb-bc04-7031-8b5f-2f35784e0027";

/// The tables whose rows a server that only reads must leave as they are (the change
/// log is left out: the poller trims handled records older than a day).
const KEPT_TABLES: &[&str] = &[
    "documents",
    "document_members",
    "document_versions",
    "stream_checkpoints",
    "audit_log",
    "analysis_jobs",
    "dead_letters",
    "analyses",
];

fn kept_rows(dir: &std::path::Path) -> Vec<Vec<Vec<String>>> {
    KEPT_TABLES.iter().map(|table| rows(dir, table)).collect()
}

async fn get(server: &ChildServer, user: &str, path: &str) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .get(format!("{}{path}", server.base))
        .bearer_auth(token_for(user))
        .send()
        .await
        .expect("the server answers");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// What the fixture holds, read through the REST API.
async fn assert_fixture_served(server: &ChildServer) {
    let (status, walrus) = get(server, "alice", &format!("/documents/{WALRUS}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(walrus["version"], 4);
    assert_eq!(
        walrus["body"],
        "The walrus hauls out on sea ice. Tusks everywhere."
    );
    assert_eq!(walrus["collaborators"], json!({"bob": "editor"}));
    assert_eq!(
        get(server, "bob", &format!("/documents/{WALRUS}")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        get(server, "carol", &format!("/documents/{WALRUS}"))
            .await
            .0,
        StatusCode::NOT_FOUND,
        "carol was removed at version 4"
    );
    let (_, v2) = get(server, "alice", &format!("/documents/{WALRUS}/versions/2")).await;
    assert_eq!(v2["body"], "The walrus hauls out on sea ice.");
    let (_, v3) = get(server, "bob", &format!("/documents/{WALRUS}/versions/3")).await;
    assert_eq!(v3["actor"], "bob");
    let client = reqwest::Client::new();
    assert_eq!(
        history_versions(&client, &server.base, WALRUS, "alice").await,
        vec![1, 2, 3, 4]
    );
    let (status, plans) = get(server, "bob", &format!("/documents/{BOB_PLANS}/analysis")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(plans["version"], 1);
    assert_eq!(
        get(server, "alice", &format!("/documents/{SCRATCH}"))
            .await
            .0,
        StatusCode::NOT_FOUND,
        "deleted"
    );
    let (_, listed) = get(server, "alice", "/documents").await;
    let ids: Vec<&str> = listed["items"]
        .as_array()
        .expect("a page")
        .iter()
        .map(|d| d["id"].as_str().expect("an id"))
        .collect();
    assert_eq!(ids, vec![WALRUS]);
}

#[test]
fn migration_1_is_the_schema_the_releases_before_it_made() {
    let old = made_by_47fbc70();
    let new = tempfile::tempdir().unwrap();
    drop(open_database(&new.path().join(DATABASE_FILE)).expect("a new database migrates"));
    assert_eq!(schema_version(new.path()), LATEST);
    // Migration 1 alone, on a database of its own.
    let first = tempfile::tempdir().unwrap();
    let conn = rusqlite::Connection::open(first.path().join(DATABASE_FILE)).unwrap();
    conn.execute_batch(MIGRATIONS[0].sql).unwrap();
    drop(conn);
    assert_eq!(schema_version(old.path()), 0, "made before versions");
    let new = first;
    assert_eq!(
        schema(new.path()),
        schema(old.path()),
        "the same tables and indexes, statement for statement"
    );
}

#[tokio::test]
async fn a_data_directory_from_47fbc70_is_upgraded_with_every_row_intact() {
    let dir = made_by_47fbc70();
    let before = kept_rows(dir.path());
    let log_before = rows(dir.path(), "change_log");
    let enqueued_before = rows(dir.path(), "analysis_job_keys");
    assert!(!enqueued_before.is_empty());
    assert_eq!(checkpoints(dir.path()), vec![(0, 7), (1, 7)]);

    let server = ChildServer::start(dir.path()).await;
    assert_eq!(schema_version(dir.path()), LATEST);
    assert_fixture_served(&server).await;
    assert!(server.terminate().await, "a clean stop");

    assert_eq!(kept_rows(dir.path()), before, "every row as it was");
    assert_eq!(
        checkpoints(dir.path()),
        vec![(0, 7), (1, 7)],
        "nothing fanned out again"
    );
    // Migration 5 keeps the newest version the analysis queue enqueued of each document.
    let mut newest: Vec<Vec<String>> = Vec::new();
    for key in &enqueued_before {
        match newest.iter_mut().find(|n| n[0] == key[0]) {
            Some(n) if n[1].parse::<u64>().unwrap() < key[1].parse::<u64>().unwrap() => {
                n[1].clone_from(&key[1]);
            }
            Some(_) => {}
            None => newest.push(key.clone()),
        }
    }
    assert_eq!(rows(dir.path(), "analysis_enqueued"), newest);
    // Migration 2 adds each record's shard, left NULL for the records from before.
    let log_after = rows(dir.path(), "change_log");
    assert!(
        log_after
            .iter()
            .all(|r| r[4] == "NULL" && log_before.contains(&r[..4].to_vec())),
        "no change recorded by reading"
    );

    // A restart migrates nothing twice and still serves every row; a new write fans out.
    let server = ChildServer::start(dir.path()).await;
    assert_eq!(schema_version(dir.path()), LATEST);
    assert_fixture_served(&server).await;
    let client = reqwest::Client::new();
    let updated = client
        .put(format!("{}/documents/{WALRUS}", server.base))
        .bearer_auth(token_for("alice"))
        .header("If-Match", "\"4\"")
        .json(&json!({"title": "Walrus field notes", "body": "Walrus census, version 5."}))
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status(), StatusCode::OK);
    wait_until_converged(
        &client,
        &server.base,
        &[Expected {
            id: WALRUS.into(),
            owner: "alice".into(),
            title_word: "walrus".into(),
            version: 5,
        }],
        Duration::from_secs(60),
    )
    .await;
    assert!(server.terminate().await);
    assert_eq!(checkpoints(dir.path()), vec![(0, 8), (1, 8)]);
}

#[tokio::test]
async fn a_data_directory_from_a_newer_docfan_is_refused_and_left_as_it_was() {
    let dir = made_by_47fbc70();
    let newer = LATEST + 1;
    rusqlite::Connection::open(dir.path().join(DATABASE_FILE))
        .unwrap()
        .pragma_update(None, "user_version", newer)
        .unwrap();
    let before = kept_rows(dir.path());
    let tables = schema(dir.path());
    let data_dir = dir.path().display().to_string();

    let refused = tokio::time::timeout(
        Duration::from_secs(60),
        run_docfan(&["serve", "--data-dir", &data_dir, "--listen", "127.0.0.1:0"]),
    )
    .await
    .expect("docfan stops at once rather than serve");
    assert!(!refused.status.success(), "served a newer data directory");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains(&format!("schema version {newer}"))
            && said.contains(&format!("versions up to {LATEST}"))
            && said.contains(DATABASE_FILE),
        "names both versions and the file: {said}"
    );
    assert_eq!(schema_version(dir.path()), newer, "not downgraded");
    assert_eq!(schema(dir.path()), tables, "no table added");
    assert_eq!(kept_rows(dir.path()), before);
    assert!(
        !dir.path().join(shared::auth::SECRET_FILE).exists(),
        "nothing created beside it"
    );
}
