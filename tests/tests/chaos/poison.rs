//! A storm of poison records in the change log, interleaved with the writers' edits
//! (some on the very documents being edited): each one is dead-lettered with its reason,
//! and no document's valid changes wait behind them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tests::TestApp;
use tests::data_dir::{change_log, dead_letters};
use tests::read_side::{Expected, wait_until_converged};

const WRITERS: usize = 6;
const MIN_EDITS: u64 = 10;
const POISON: usize = 1200;

/// The poison records: undecodable in every way the handler must survive.
fn poison(n: usize, template: &Value) -> String {
    match n % 6 {
        0 => format!("not json {{{{ {n}"),
        1 => json!({"eventName": "INSERT", "poison": n}).to_string(),
        2 => json!({"eventName": "SHUFFLE", "dynamodb": {"Keys": {"id": {"S": "x"}}}, "poison": n})
            .to_string(),
        3 => {
            // A well-formed record whose image breaks the domain's rules.
            let mut record = template.clone();
            record["dynamodb"]["NewImage"]["title"]["S"] = json!("t".repeat(500));
            record["dynamodb"]["NewImage"]["version"]["N"] = json!("-1");
            record["poison"] = json!(n);
            record.to_string()
        }
        4 => {
            let mut record = template.clone();
            record["dynamodb"]["NewImage"]["body"] = json!({"N": "not a string"});
            record["poison"] = json!(n);
            record.to_string()
        }
        _ => format!(
            "{{\"poison\": {n}, \"padding\": \"{}\"}}",
            "z".repeat(200_000)
        ),
    }
}

#[tokio::test]
async fn a_storm_of_poison_records_is_dead_lettered_and_stalls_no_document() {
    let app = TestApp::spawn().await;
    let mut docs = Vec::new();
    for w in 0..WRITERS {
        let owner = format!("poison-w{w}");
        let word = format!("storm{w}");
        let doc = app
            .create(&owner, &format!("storm {word}"), "version 1", json!({}))
            .await;
        docs.push((doc["id"].as_str().unwrap().to_owned(), owner, word));
    }
    let template = change_log(app.data_path())
        .first()
        .map(|(_, record)| record.clone())
        .expect("a record to copy");

    // The poisoner writes straight into the change log, beside the server, in small
    // transactions; half of the poison claims to belong to a document being edited.
    let db = app.data_path().join(shared::embedded::DATABASE_FILE);
    let ids: Vec<String> = docs.iter().map(|(id, _, _)| id.clone()).collect();
    let poisoner = tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        for chunk in 0..POISON / 20 {
            let tx = conn.unchecked_transaction().unwrap();
            for i in 0..20 {
                let n = chunk * 20 + i;
                let document = if n % 2 == 0 {
                    ids[n % ids.len()].clone()
                } else {
                    uuid::Uuid::now_v7().to_string()
                };
                tx.execute(
                    "INSERT INTO change_log (document_id, record, committed_at_ms) VALUES (?1, ?2, ?3)",
                    rusqlite::params![document, poison(n, &template), Utc::now().timestamp_millis()],
                )
                .unwrap();
            }
            tx.commit().unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    });

    // The writers edit until the storm is over.
    let storm_over = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let writers: Vec<_> = docs
        .iter()
        .cloned()
        .map(|(id, owner, word)| {
            let app_base = app.base.clone();
            let storm_over = Arc::clone(&storm_over);
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut version = 1;
                while version < MIN_EDITS || !storm_over.load(Ordering::SeqCst) {
                    let r = client
                        .put(format!("{app_base}/documents/{id}"))
                        .bearer_auth(tests::token_for(&owner))
                        .header("If-Match", format!("\"{version}\""))
                        .json(&json!({"title": format!("storm {word}"), "body": format!("version {}", version + 1)}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), StatusCode::OK);
                    version += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Expected {
                    id,
                    owner,
                    title_word: word,
                    version,
                }
            })
        })
        .collect();
    poisoner.await.unwrap();
    storm_over.store(true, Ordering::SeqCst);
    let mut expected = Vec::new();
    for w in writers {
        expected.push(w.await.unwrap());
    }
    let written = started.elapsed();
    let edits: u64 = expected.iter().map(|e| e.version).sum();

    wait_until_converged(&app.client, &app.base, &expected, Duration::from_secs(90)).await;
    let converged = started.elapsed();

    // Every poison record is in the dead-letter queue with a reason, and nothing else is.
    let deadline = Instant::now() + Duration::from_secs(60);
    let letters = loop {
        let letters = dead_letters(app.data_path());
        if letters.len() >= POISON || Instant::now() > deadline {
            break letters;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        letters.len(),
        POISON,
        "every poison record, and only those, dead-lettered"
    );
    for letter in &letters {
        assert_eq!(letter.source, "stream");
        assert!(
            !letter.reason.trim().is_empty(),
            "a dead letter without a reason"
        );
        assert!(
            letter.payload.contains("poison") || letter.payload.contains("not json"),
            "a dead letter that is not poison: {}",
            &letter.payload[..letter.payload.len().min(200)]
        );
    }
    eprintln!(
        "poison: {POISON} poison records among {} valid edits; {} dead-lettered with a reason, 0 lost; \
         the storm and the edits took {:.2}s, every consumer had converged {:.2}s after the last edit",
        edits,
        letters.len(),
        written.as_secs_f64(),
        (converged - written).as_secs_f64()
    );
}
