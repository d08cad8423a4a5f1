//! Storage faults under the data directory: a disk that fills up, and a file system
//! that turns read-only. Each test mounts a small tmpfs of its own (root only), runs
//! `docfan serve` on it, and checks that writes are refused with a clear problem while
//! reads go on, that nothing acknowledged is lost or corrupted, and that the server
//! takes writes again and the fan-out catches up once the fault is cleared.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use tests::child::{ChildServer, docfan_binary};
use tests::data_dir::integrity_check;
use tests::read_side::{Expected, wait_until_converged};
use tests::{TEST_SECRET, token_for};

const NEEDS_ROOT: &str = "needs root to mount a tmpfs: run tests/run";

/// A tmpfs mounted on a fresh directory for the test's life.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        mount(
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"],
            dir.path(),
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn data_dir(&self) -> PathBuf {
        self.path().join("data")
    }

    /// Changes the mount's options in place (`size=…`, `ro`, `rw`).
    fn remount(&self, options: &str) {
        mount(&["-o", &format!("remount,{options}")], self.path());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

fn mount(args: &[&str], target: &Path) {
    let out = Command::new("mount")
        .args(args)
        .arg(target)
        .output()
        .expect("mount runs");
    assert!(
        out.status.success(),
        "mount {args:?} failed ({NEEDS_ROOT}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Creates a document as `owner`; the status and the body.
async fn create(base: &str, owner: &str, title: &str, body: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/documents"))
        .bearer_auth(token_for(owner))
        .json(&json!({"title": title, "body": body}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get_status(base: &str, owner: &str, id: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{base}/documents/{id}"))
        .bearer_auth(token_for(owner))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
#[ignore = "needs root to mount a tmpfs: run tests/run"]
async fn a_full_disk_refuses_writes_clearly_loses_nothing_and_recovers() {
    let disk = Tmpfs::mount("12m");
    let server = ChildServer::start(&disk.data_dir()).await;
    let owner = "disk-ann";
    let body = "lorem ipsum dolor sit amet ".repeat(2_400); // ~64 KB

    // Fill the disk with documents until it refuses one.
    let mut acked: Vec<Expected> = Vec::new();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut refusal = Value::Null;
    for n in 0..2_000 {
        let word = format!("full{n}");
        let (status, doc) = create(&server.base, owner, &format!("disk {word}"), &body).await;
        *statuses.entry(status).or_default() += 1;
        if status == 201 {
            acked.push(Expected {
                id: doc["id"].as_str().unwrap().to_owned(),
                owner: owner.to_owned(),
                title_word: word,
                version: 1,
            });
        } else {
            refusal = doc;
            break;
        }
    }
    assert!(!acked.is_empty(), "no document fitted: {statuses:?}");
    assert_eq!(
        statuses.keys().copied().collect::<Vec<_>>(),
        vec![201, 507],
        "writes are acknowledged, then refused as insufficient storage: {statuses:?} {refusal}"
    );
    assert_eq!(refusal["type"], "/problems/storage-full");
    assert!(
        refusal["detail"]
            .as_str()
            .unwrap()
            .contains("nothing was written")
    );

    // Refused again while full, and no other error; reads go on.
    for n in 0..5 {
        let (status, problem) = create(&server.base, owner, &format!("more {n}"), &body).await;
        assert_eq!(status, 507, "{problem}");
    }
    for doc in acked.iter().take(20) {
        assert_eq!(get_status(&server.base, owner, &doc.id).await, 200);
    }

    // Space is freed: writes are taken again, and the fan-out catches up with
    // everything acknowledged before and after.
    disk.remount("size=256m");
    let mut taken = None;
    for n in 0..100 {
        let word = format!("freed{n}");
        let (status, doc) = create(&server.base, owner, &format!("disk {word}"), "after").await;
        if status == 201 {
            taken = Some(Expected {
                id: doc["id"].as_str().unwrap().to_owned(),
                owner: owner.to_owned(),
                title_word: word,
                version: 1,
            });
            break;
        }
        assert_eq!(status, 507, "{doc}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    acked.push(taken.expect("writes are taken again once space is freed"));
    let client = reqwest::Client::new();
    wait_until_converged(&client, &server.base, &acked, Duration::from_secs(120)).await;

    // Nothing is corrupted: kill the server, check the file, restart, read everything.
    server.kill().await;
    assert_eq!(integrity_check(&disk.data_dir()), "ok");
    let server = ChildServer::start(&disk.data_dir()).await;
    for doc in &acked {
        assert_eq!(
            get_status(&server.base, owner, &doc.id).await,
            200,
            "{}",
            doc.id
        );
    }
    eprintln!(
        "full disk: {} documents acknowledged before the disk filled, {} refusals all 507 \
         storage-full, 0 lost, integrity ok, fan-out caught up after space was freed",
        acked.len() - 1,
        statuses.get(&507).copied().unwrap_or(0) + 5
    );
}

#[tokio::test]
#[ignore = "needs root to mount a tmpfs: run tests/run"]
async fn a_read_only_data_directory_is_refused_clearly_and_nothing_is_lost() {
    let disk = Tmpfs::mount("64m");
    let server = ChildServer::start(&disk.data_dir()).await;
    let owner = "disk-bob";
    let mut acked = Vec::new();
    for n in 0..10 {
        let word = format!("ro{n}");
        let (status, doc) = create(&server.base, owner, &format!("disk {word}"), "before").await;
        assert_eq!(status, 201);
        acked.push(Expected {
            id: doc["id"].as_str().unwrap().to_owned(),
            owner: owner.to_owned(),
            title_word: word,
            version: 1,
        });
    }
    // Killed with the fan-out possibly behind; the file system comes back read-only
    // (Linux refuses to remount it while the server holds files open for writing).
    server.kill().await;
    disk.remount("ro");

    // A server started on it says why it cannot run, and exits.
    let refused = tokio::task::spawn_blocking({
        let data_dir = disk.data_dir();
        move || {
            Command::new(docfan_binary())
                .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
                .arg(&data_dir)
                .env(
                    "DOCFAN_JWT_SECRET",
                    std::str::from_utf8(TEST_SECRET).unwrap(),
                )
                .env("RUST_LOG", "error")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "docfan served a read-only data directory"
    );
    assert!(
        said.contains("read-only") && said.contains(&disk.data_dir().display().to_string()),
        "the error names the directory and the cause: {said}"
    );
    assert_eq!(integrity_check(&disk.data_dir()), "ok");

    // Writable again: everything acknowledged is there and the fan-out catches up.
    disk.remount("rw");
    let server = ChildServer::start(&disk.data_dir()).await;
    let client = reqwest::Client::new();
    wait_until_converged(&client, &server.base, &acked, Duration::from_secs(60)).await;
    let (status, _) = create(&server.base, owner, "disk after", "after").await;
    assert_eq!(status, 201);
}

async fn readyz(base: &str) -> (u16, Value) {
    let r = reqwest::get(format!("{base}/readyz")).await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
#[ignore = "needs root to mount a tmpfs: run tests/run"]
async fn readiness_turns_503_while_the_data_directory_is_read_only_and_back() {
    let disk = Tmpfs::mount("64m");
    let server = ChildServer::start(&disk.data_dir()).await;
    let (status, ready) = readyz(&server.base).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["checks"]["store-writable"], "ok");

    // Linux refuses to remount a file system read-only while the server holds files
    // open for writing, so a read-only file system is mounted over the data directory:
    // the database the server already holds open stays writable underneath, and
    // everything opened by path, the readiness probe's file included, meets a
    // read-only directory.
    let data_dir = disk.data_dir();
    mount(&["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"], &data_dir);
    let (status, problem) = readyz(&server.base).await;
    let unmounted = Command::new("umount").arg(&data_dir).status();
    assert_eq!(status, 503, "{problem}");
    assert_eq!(problem["type"], "/problems/not-ready");
    assert!(
        problem["failing"]
            .as_array()
            .unwrap()
            .contains(&json!("store-writable")),
        "{problem}"
    );
    assert!(
        problem["checks"]["store-writable"]
            .as_str()
            .unwrap()
            .contains("read-only"),
        "{problem}"
    );
    assert!(unmounted.unwrap().success());

    // Writable again: ready again, and writes are taken.
    let (status, ready) = readyz(&server.base).await;
    assert_eq!(status, 200, "{ready}");
    let (status, _) = create(&server.base, "disk-carol", "disk ready", "after").await;
    assert_eq!(status, 201);
}
