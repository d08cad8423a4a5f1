//! Live delivery through the whole embedded app: a REST `PUT` answered 200 → the
//! change's frame read by every subscribed WebSocket client, at 1, 100 and 1,000
//! subscribers over loopback, against the real app (`TestApp`): the write goes through
//! the SQLite store and its change log, the in-process stream poller, the fan-out's
//! sinks, the notifier and `/ws`.
//!
//! Latencies are signed: a frame can arrive before the client has read the `PUT`'s
//! answer (the poller wakes on the commit, not on the HTTP response).
//!
//! The measured loop ([`through_the_app`]) and the ways of writing through the app
//! (a `PUT`, or one character typed with `POST …/edits`) are here; `edits` and
//! `sustained` use them too.

use std::time::Instant;

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use tests::{TestApp, token_for};

use super::delivery::{FLOOR, edit_body, sizes};
use super::live::{self, Sequential};
use super::{Mode, count};
use crate::report::{Case, Kind, Scenario};

pub async fn run(mode: Mode, floor: &Scenario) -> anyhow::Result<Scenario> {
    let mut cases = Vec::new();
    for (subscribers, edits) in sizes(mode) {
        let mut case = through_the_app(Write::Put, subscribers, edits).await?;
        if let Some(f) = floor.case_where("subscribers", subscribers as f64) {
            case.compare_with(f);
        }
        cases.push(case);
    }
    Ok(Scenario {
        name: "notifications".into(),
        kind: Kind::Docfan,
        title: "Live delivery: REST write acknowledged → frame received".into(),
        method: "`PUT /documents/{id}` answered 200 → `document.updated` read by every \
                 subscribed client, through the change log, the stream poller, the fan-out \
                 and `/ws` of the whole app; sequential edits; clients in the same process \
                 over loopback. Signed: negative when the frame beat the HTTP answer."
            .into(),
        floor: Some(FLOOR.into()),
        load_average: 0.0,
        seconds: 0.0,
        cases,
        notes: vec![],
    })
}

/// Creates "ann"'s document shared with "bob"; returns its id.
pub async fn shared_document(app: &TestApp, http: &reqwest::Client) -> anyhow::Result<String> {
    create_shared(http, &format!("http://{}", app.addr), "Bench", "v1").await
}

/// Creates "ann"'s document `title` with `body`, shared with "bob" (who reads), on the
/// server at `base`; returns its id.
pub async fn create_shared(
    http: &reqwest::Client,
    base: &str,
    title: &str,
    body: &str,
) -> anyhow::Result<String> {
    let created: Value = http
        .post(format!("{base}/documents"))
        .bearer_auth(token_for("ann"))
        .json(&json!({"title": title, "body": body, "collaborators": {"bob": "viewer"}}))
        .send()
        .await?
        .json()
        .await?;
    Ok(created["id"]
        .as_str()
        .context("the document's id")?
        .to_owned())
}

/// `PUT` of edit `n` as "ann", from `version`.
pub async fn put(
    app: &TestApp,
    http: &reqwest::Client,
    token: &str,
    id: &str,
    version: u64,
    n: usize,
) -> anyhow::Result<()> {
    let response = http
        .put(app.url(&format!("/documents/{id}")))
        .bearer_auth(token)
        .header("If-Match", format!("\"{version}\""))
        .json(&json!({"title": "Bench", "body": edit_body(n)}))
        .send()
        .await?;
    ensure!(response.status() == 200, "PUT: {}", response.status());
    Ok(())
}

/// Creates "ann"'s document shared with "bob" and 99 other collaborators; returns its
/// id.
pub async fn crowded_document(app: &TestApp, http: &reqwest::Client) -> anyhow::Result<String> {
    let mut collaborators: serde_json::Map<String, Value> = (1..100)
        .map(|n| (format!("reader{n:02}"), json!("viewer")))
        .collect();
    collaborators.insert("bob".into(), json!("viewer"));
    let created: Value = http
        .post(app.url("/documents"))
        .bearer_auth(token_for("ann"))
        .json(&json!({"title": "Bench", "body": "", "collaborators": collaborators}))
        .send()
        .await?
        .json()
        .await?;
    Ok(created["id"]
        .as_str()
        .context("the document's id")?
        .to_owned())
}

/// One character typed by "ann" at the end of the body (one character per version
/// before it), made on `version`, to the server at `base` (`http://host:port`).
pub async fn type_one(
    base: &str,
    http: &reqwest::Client,
    token: &str,
    id: &str,
    version: u64,
) -> anyhow::Result<Value> {
    let typed = version - 1;
    let ops = if typed == 0 {
        json!(["x"])
    } else {
        json!([typed, "x"])
    };
    edit(base, http, token, id, version, ops).await
}

/// Applies `ops` to version `version` of `id` with `POST …/edits`.
pub async fn edit(
    base: &str,
    http: &reqwest::Client,
    token: &str,
    id: &str,
    version: u64,
    ops: Value,
) -> anyhow::Result<Value> {
    let response = http
        .post(format!("{base}/documents/{id}/edits"))
        .bearer_auth(token)
        .json(&json!({"baseVersion": version, "ops": ops}))
        .send()
        .await?;
    ensure!(
        response.status() == 200,
        "POST edits: {}",
        response.status()
    );
    Ok(response.json().await?)
}

/// How the measured edits are written.
#[derive(Debug, Clone, Copy)]
pub enum Write {
    /// `PUT` of a whole new body on "ann"'s document shared with "bob".
    Put,
    /// One character typed with `POST …/edits` on a document with 100 collaborators.
    TypedCharacter,
}

/// Sequential edits written as `write` through the whole app, each timed from its HTTP
/// answer to its frame at every one of `subscribers` clients of "bob".
pub async fn through_the_app(
    write: Write,
    subscribers: usize,
    edits: usize,
) -> anyhow::Result<Case> {
    let app = super::crowd_app().await;
    let http = reqwest::Client::new();
    let id = match write {
        Write::Put => shared_document(&app, &http).await?,
        Write::TypedCharacter => crowded_document(&app, &http).await?,
    };
    let url = format!("ws://{}/ws?token={}", app.addr, token_for("bob"));
    let subscribe = json!({"action": "subscribe", "documentId": id}).to_string();
    let sockets = live::subscribers(&url, &subscribe, subscribers).await?;
    let mut received = live::read_updates(sockets);
    let ann = token_for("ann");
    let mut figures = Sequential::default();
    let started = Instant::now();
    for n in 0..edits {
        let version = n as u64 + 1;
        match write {
            Write::Put => put(&app, &http, &ann, &id, version, n).await?,
            Write::TypedCharacter => {
                type_one(&app.url(""), &http, &ann, &id, version).await?;
            }
        }
        let acknowledged = Instant::now();
        figures
            .collect(&mut received, subscribers, version + 1, acknowledged)
            .await?;
    }
    let elapsed = started.elapsed();
    app.stop().await;
    let what = match write {
        Write::Put => "docfan REST → /ws",
        Write::TypedCharacter => "docfan edits → /ws",
    };
    Ok(figures.case(
        format!("{what}, {}", count(subscribers, "subscriber")),
        subscribers,
        edits,
        elapsed,
    ))
}
