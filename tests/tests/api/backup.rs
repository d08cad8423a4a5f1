//! `docfan backup` and `docfan restore` through the real binary: a backup taken while
//! writers edit holds every write acknowledged before it began, and a server started on
//! its restored copy serves them, searches them and fans out what was left, each
//! version once; the secret travels with it; restore refuses a directory in use, a
//! non-empty one without --force, and anything that is not a backup it can restore.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::auth::{SECRET_FILE, TokenAuthority};
use shared::domain::UserId;
use shared::embedded::DATABASE_FILE;
use shared::embedded::schema::LATEST;
use tests::child::{ChildServer, run_docfan};
use tests::data_dir::{change_log, integrity_check, made_by_47fbc70, schema_version};
use tests::read_side::{Expected, wait_until_converged};
use tests::token_for;

const WRITERS: usize = 8;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

async fn backup(data_dir: &Path, to: &Path) -> Output {
    run_docfan(&["backup", "--data-dir", &path(data_dir), "--to", &path(to)]).await
}

async fn restore(from: &Path, data_dir: &Path, force: bool) -> Output {
    let (from, data_dir) = (path(from), path(data_dir));
    let mut args = vec!["restore", "--from", &from, "--data-dir", &data_dir];
    if force {
        args.push("--force");
    }
    run_docfan(&args).await
}

/// Asserts that `docfan` failed and said every one of `words` on stderr.
fn assert_refused(output: &Output, words: &[&str]) {
    let said = text(&output.stderr);
    assert!(!output.status.success(), "succeeded; said {said}");
    for word in words {
        assert!(said.contains(word), "expected {word:?} in: {said}");
    }
}

/// One acknowledged write.
#[derive(Debug, Clone)]
struct Ack {
    id: String,
    owner: String,
    title_word: String,
    version: u64,
}

/// Creates a document as `user`, then replaces its body until `stop`; records each
/// acknowledged version.
async fn writer(base: String, user: String, acked: Arc<Mutex<Vec<Ack>>>, stop: Arc<AtomicBool>) {
    let client = reqwest::Client::new();
    let token = token_for(&user);
    let title_word = user.replace('-', "");
    let title = format!("backup {title_word}");
    let doc: Value = client
        .post(format!("{base}/documents"))
        .bearer_auth(&token)
        .json(&json!({"title": title, "body": "version 1"}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("a document");
    let id = doc["id"].as_str().expect("an id").to_owned();
    let ack = |version| Ack {
        id: id.clone(),
        owner: user.clone(),
        title_word: title_word.clone(),
        version,
    };
    acked.lock().unwrap().push(ack(1));
    let mut version = 1;
    while !stop.load(Ordering::SeqCst) {
        let r = client
            .put(format!("{base}/documents/{id}"))
            .bearer_auth(&token)
            .header("If-Match", format!("\"{version}\""))
            .json(&json!({"title": title, "body": format!("version {}", version + 1)}))
            .send()
            .await
            .expect("replace");
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
        version += 1;
        acked.lock().unwrap().push(ack(version));
    }
}

/// The highest acknowledged version of each document among `acks`.
fn latest(acks: &[Ack]) -> HashMap<String, Ack> {
    let mut last: HashMap<String, Ack> = HashMap::new();
    for ack in acks {
        let entry = last.entry(ack.id.clone()).or_insert_with(|| ack.clone());
        if ack.version > entry.version {
            *entry = ack.clone();
        }
    }
    last
}

async fn wait_for_acks(acked: &Mutex<Vec<Ack>>, at_least: usize) {
    for _ in 0..6000 {
        if acked.lock().unwrap().len() >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the writers did not reach {at_least} acknowledged writes");
}

#[tokio::test]
async fn a_backup_taken_during_writes_restores_every_write_acknowledged_before_it() {
    let original = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let backup_dir = scratch.path().join("backup");
    let restored = scratch.path().join("restored");

    let server = ChildServer::start(original.path()).await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(writer(
                server.base.clone(),
                format!("writer-{w}"),
                Arc::clone(&acked),
                Arc::clone(&stop),
            ))
        })
        .collect();
    wait_for_acks(&acked, 200).await;

    let before_backup = acked.lock().unwrap().clone();
    let made = backup(original.path(), &backup_dir).await;
    assert!(made.status.success(), "{}", text(&made.stderr));
    // The writers go on after the backup, so it was taken among their writes.
    let after_backup = acked.lock().unwrap().len();
    wait_for_acks(&acked, after_backup + 60).await;
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    let all_acks = acked.lock().unwrap().clone();
    assert!(server.terminate().await);

    let manifest: Value =
        serde_json::from_slice(&std::fs::read(backup_dir.join("docfan-backup.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["schemaVersion"], LATEST);
    assert!(
        !backup_dir.join("search-index").exists(),
        "the index is rebuilt, not copied"
    );

    let put_back = restore(&backup_dir, &restored, false).await;
    assert!(put_back.status.success(), "{}", text(&put_back.stderr));
    let said = text(&put_back.stdout);
    assert!(said.contains("search index:  rebuilt"), "{said}");
    assert_eq!(integrity_check(&restored), "ok");
    assert_eq!(schema_version(&restored), LATEST);

    // Every write acknowledged before the backup began is there; later ones may be.
    let server = ChildServer::start(&restored).await;
    let client = reqwest::Client::new();
    let before = latest(&before_backup);
    let overall = latest(&all_acks);
    let mut expected = Vec::new();
    let mut missing_later_writes = 0;
    for ack in overall.values() {
        let r = client
            .get(format!("{}/documents/{}", server.base, ack.id))
            .bearer_auth(token_for(&ack.owner))
            .send()
            .await
            .unwrap();
        let Some(acked_before) = before.get(&ack.id) else {
            continue;
        };
        assert_eq!(r.status(), StatusCode::OK, "{} is missing", ack.id);
        let doc: Value = r.json().await.unwrap();
        let stored = doc["version"].as_u64().unwrap();
        assert!(
            stored >= acked_before.version,
            "{}: version {} was acknowledged before the backup, the restore has {stored}",
            ack.id,
            acked_before.version
        );
        // A write whose answer was on its way when the backup began may be in it too.
        assert!(stored <= ack.version + 1, "{}: {stored}", ack.id);
        assert_eq!(doc["body"], format!("version {stored}"), "{}", ack.id);
        if stored < ack.version {
            missing_later_writes += 1;
        }
        expected.push(Expected {
            id: ack.id.clone(),
            owner: ack.owner.clone(),
            title_word: ack.title_word.clone(),
            version: stored,
        });
    }
    assert_eq!(expected.len(), before.len());
    assert!(
        missing_later_writes > 0,
        "the backup is of its instant, not of the end of the writes"
    );

    // Search (the rebuilt index), history and analysis hold each restored version, once.
    wait_until_converged(&client, &server.base, &expected, Duration::from_secs(120)).await;
    assert!(server.terminate().await);
    let mut recorded: BTreeMap<(String, u64), usize> = BTreeMap::new();
    for (_, record) in change_log(&restored) {
        let image = &record["dynamodb"]["NewImage"];
        let id = image["id"]["S"].as_str().unwrap().to_owned();
        let version = image["version"]["N"].as_str().unwrap().parse().unwrap();
        *recorded.entry((id, version)).or_default() += 1;
    }
    assert!(
        recorded.values().all(|n| *n == 1),
        "a version recorded twice"
    );
    for doc in &expected {
        for version in 1..=doc.version {
            assert_eq!(
                recorded.get(&(doc.id.clone(), version)),
                Some(&1),
                "{} v{version}",
                doc.id
            );
        }
    }
    eprintln!(
        "backup: {} writes acknowledged before the backup began, {} in all; the restore \
         holds {} versions of {} documents, every one acknowledged before the backup among \
         them; {missing_later_writes} documents have later writes it does not",
        before_backup.len(),
        all_acks.len(),
        recorded.len(),
        expected.len()
    );
}

#[tokio::test]
async fn the_secret_travels_with_the_backup_and_old_tokens_still_work() {
    let original = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    // No DOCFAN_JWT_SECRET: the server makes its own secret in the data directory.
    let server = ChildServer::start_with_env(original.path(), &[("DOCFAN_JWT_SECRET", "")]).await;
    let secret = std::fs::read_to_string(original.path().join(SECRET_FILE)).unwrap();
    let token = TokenAuthority::new(secret.trim().as_bytes())
        .unwrap()
        .issue(
            &UserId::parse("ann").unwrap(),
            TimeDelta::hours(1),
            Utc::now(),
        );
    let client = reqwest::Client::new();
    let doc: Value = client
        .post(format!("{}/documents", server.base))
        .bearer_auth(&token)
        .json(&json!({"title": "kept secret", "body": "signed"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let backup_dir = scratch.path().join("b");
    let made = backup(original.path(), &backup_dir).await;
    assert!(made.status.success(), "{}", text(&made.stderr));
    assert!(server.terminate().await);

    let restored = scratch.path().join("r");
    let put_back = restore(&backup_dir, &restored, false).await;
    assert!(put_back.status.success(), "{}", text(&put_back.stderr));
    assert_eq!(
        std::fs::read_to_string(restored.join(SECRET_FILE)).unwrap(),
        secret
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for file in [backup_dir.join(SECRET_FILE), restored.join(SECRET_FILE)] {
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{} is private", file.display());
        }
    }
    let server = ChildServer::start_with_env(&restored, &[("DOCFAN_JWT_SECRET", "")]).await;
    let read = client
        .get(format!(
            "{}/documents/{}",
            server.base,
            doc["id"].as_str().unwrap()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK, "the old token is accepted");
    assert!(server.terminate().await);
}

#[tokio::test]
async fn a_backup_of_a_data_directory_from_47fbc70_restores_upgraded() {
    let old = made_by_47fbc70();
    let scratch = tempfile::tempdir().unwrap();
    let backup_dir = scratch.path().join("b");
    let made = backup(old.path(), &backup_dir).await;
    assert!(made.status.success(), "{}", text(&made.stderr));
    assert_eq!(schema_version(old.path()), 0, "backup changes nothing");

    let restored = scratch.path().join("r");
    let put_back = restore(&backup_dir, &restored, false).await;
    assert!(put_back.status.success(), "{}", text(&put_back.stderr));
    let said = text(&put_back.stdout);
    assert!(
        said.contains(&format!("schema version 0, migrated to {LATEST}")),
        "{said}"
    );
    assert!(said.contains("(2 indexed)"), "{said}");
    assert_eq!(schema_version(&restored), LATEST);

    let server = ChildServer::start(&restored).await;
    let found: Value = reqwest::Client::new()
        .get(format!("{}/search", server.base))
        .query(&[("q", "walrus")])
        .bearer_auth(token_for("alice"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["results"][0]["version"], 4, "{found}");
    assert!(server.terminate().await);
}

#[tokio::test]
async fn restore_refuses_a_data_directory_in_use_or_not_empty() {
    let original = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let server = ChildServer::start(original.path()).await;
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{}/documents", server.base))
        .bearer_auth(token_for("ann"))
        .json(&json!({"title": "first", "body": "in the backup"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let backup_dir = scratch.path().join("b");
    assert!(backup(original.path(), &backup_dir).await.status.success());

    // In use: refused even with --force, naming the server's process; it goes on.
    let pid = server.pid().unwrap();
    assert_refused(
        &restore(&backup_dir, original.path(), true).await,
        &["in use", &format!("process {pid}")],
    );
    let second = tokio::time::timeout(
        Duration::from_secs(60),
        run_docfan(&[
            "serve",
            "--data-dir",
            &path(original.path()),
            "--listen",
            "127.0.0.1:0",
        ]),
    )
    .await
    .expect("a second server stops at once");
    assert_refused(&second, &["in use", &format!("process {pid}")]);
    let listed = client
        .get(format!("{}/documents", server.base))
        .bearer_auth(token_for("ann"))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    let later: Value = client
        .post(format!("{}/documents", server.base))
        .bearer_auth(token_for("ann"))
        .json(&json!({"title": "second", "body": "after the backup"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(server.terminate().await);

    // Stopped but not empty: refused without --force, and nothing changed.
    assert_refused(
        &restore(&backup_dir, original.path(), false).await,
        &["not empty", "--force"],
    );
    let server = ChildServer::start(original.path()).await;
    let later_url = format!(
        "{}/documents/{}",
        server.base,
        later["id"].as_str().unwrap()
    );
    let r = client
        .get(&later_url)
        .bearer_auth(token_for("ann"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "untouched");
    assert!(server.terminate().await);

    // With --force the data directory becomes the backup: the later document is gone.
    let put_back = restore(&backup_dir, original.path(), true).await;
    assert!(put_back.status.success(), "{}", text(&put_back.stderr));
    let server = ChildServer::start(original.path()).await;
    let later_url = format!(
        "{}/documents/{}",
        server.base,
        later["id"].as_str().unwrap()
    );
    let r = client
        .get(&later_url)
        .bearer_auth(token_for("ann"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "replaced by the backup");
    assert!(server.terminate().await);

    // A directory with files that are not docfan's is never replaced.
    let elsewhere = scratch.path().join("home");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("notes.txt"), "mine").unwrap();
    assert_refused(
        &restore(&backup_dir, &elsewhere, true).await,
        &["not docfan's", "notes.txt"],
    );
    assert_eq!(
        std::fs::read_to_string(elsewhere.join("notes.txt")).unwrap(),
        "mine"
    );
    assert!(!elsewhere.join(DATABASE_FILE).exists());
}

#[tokio::test]
async fn bad_backup_and_restore_arguments_are_refused_clearly() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    let target = scratch.path().join("target");

    // No --to at all; no database to back up; a --to that cannot be a backup.
    assert_refused(
        &run_docfan(&["backup", "--data-dir", &path(&data)]).await,
        &["--to"],
    );
    assert_refused(
        &backup(&data, &scratch.path().join("b0")).await,
        &["no docfan database", &path(&data)],
    );
    assert!(!scratch.path().join("b0").exists());
    let old = made_by_47fbc70();
    assert_refused(
        &backup(
            old.path(),
            &scratch.path().join("no").join("such").join("dir"),
        )
        .await,
        &["parent directory does not exist"],
    );
    std::fs::create_dir(scratch.path().join("full")).unwrap();
    std::fs::write(scratch.path().join("full").join("x"), "x").unwrap();
    assert_refused(
        &backup(old.path(), &scratch.path().join("full")).await,
        &["is not empty"],
    );

    // No backup there; a directory that is not a backup; an interrupted one.
    assert_refused(
        &restore(&scratch.path().join("missing"), &target, false).await,
        &["no such directory"],
    );
    assert_refused(
        &restore(old.path(), &target, false).await,
        &["is not a docfan backup", "docfan-backup.json"],
    );
    let good = scratch.path().join("good");
    assert!(backup(old.path(), &good).await.status.success());

    let interrupted = scratch.path().join("interrupted");
    std::fs::create_dir(&interrupted).unwrap();
    std::fs::copy(good.join(DATABASE_FILE), interrupted.join(DATABASE_FILE)).unwrap();
    assert_refused(
        &restore(&interrupted, &target, false).await,
        &["interrupted"],
    );

    // A database cut short, or replaced by something that is not one.
    let cut = copy_backup(&good, &scratch.path().join("cut"));
    let bytes = std::fs::read(cut.join(DATABASE_FILE)).unwrap();
    std::fs::write(cut.join(DATABASE_FILE), &bytes[..bytes.len() / 2]).unwrap();
    assert_refused(&restore(&cut, &target, false).await, &["cut short"]);

    let garbage = copy_backup(&good, &scratch.path().join("garbage"));
    std::fs::write(garbage.join(DATABASE_FILE), vec![b'x'; bytes.len()]).unwrap();
    assert_refused(
        &restore(&garbage, &target, false).await,
        &["not a SQLite database"],
    );

    // A backup from a newer docfan.
    let newer = copy_backup(&good, &scratch.path().join("newer"));
    rusqlite::Connection::open(newer.join(DATABASE_FILE))
        .unwrap()
        .pragma_update(None, "user_version", LATEST + 1)
        .unwrap();
    let manifest_path = newer.join("docfan-backup.json");
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["schemaVersion"] = json!(LATEST + 1);
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    assert_refused(
        &restore(&newer, &target, false).await,
        &[
            &format!("schema version {}", LATEST + 1),
            &format!("versions up to {LATEST}"),
        ],
    );

    // None of them left anything in the target.
    let left: Vec<_> = std::fs::read_dir(&target)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|name| name != shared::embedded::LOCK_FILE)
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

/// A copy of the backup directory `from` at `to`.
fn copy_backup(from: &Path, to: &Path) -> std::path::PathBuf {
    std::fs::create_dir(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    to.to_owned()
}
