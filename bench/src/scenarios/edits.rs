//! Live co-editing through the whole embedded app: a one-character operation
//! `POST /documents/{id}/edits` answered 200 → its `document.updated` frame read by every
//! subscribed WebSocket client, at 1, 100 and 1,000 subscribers, on a document shared
//! with 100 collaborators; and the size of that frame, beside the operation's own bytes
//! (what any server must send) and the whole-document frame it replaces.

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tests::{TestApp, token_for};
use tokio_tungstenite::tungstenite::Message;

use super::Mode;
use super::delivery::{FLOOR, sizes};
use super::live;
use super::notifications::{Write, crowded_document, through_the_app, type_one};
use crate::report::{Kind, Scenario};

/// The frames one subscriber gets for a one-character edit on the crowded document:
/// (the frame it gets, the frame an `"include":"document"` subscription gets).
pub async fn sample_frames() -> anyhow::Result<(String, String)> {
    let app = TestApp::spawn().await;
    let http = reqwest::Client::new();
    let id = crowded_document(&app, &http).await?;
    let url = format!("ws://{}/ws?token={}", app.addr, token_for("bob"));
    let lean = json!({"action": "subscribe", "documentId": id}).to_string();
    let full = json!({"action": "subscribe", "documentId": id, "include": "document"}).to_string();
    let mut sockets = live::subscribers(&url, &lean, 1).await?;
    sockets.extend(live::subscribers(&url, &full, 1).await?);
    // A body of some length first, so the edit keeps characters before it.
    type_one(&app.url(""), &http, &token_for("ann"), &id, 1).await?;
    type_one(&app.url(""), &http, &token_for("ann"), &id, 2).await?;
    let mut texts = Vec::new();
    for socket in &mut sockets {
        loop {
            let message = tokio::time::timeout(std::time::Duration::from_secs(60), socket.next())
                .await
                .context("a frame in time")?;
            match message {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(text.as_str())?;
                    if frame["type"] == "document.updated" && frame["version"] == 3 {
                        texts.push(text.as_str().to_owned());
                        break;
                    }
                }
                Some(Ok(_)) => continue,
                other => bail!("the frame: {other:?}"),
            }
        }
    }
    app.stop().await;
    let full = texts.pop().context("the full frame")?;
    let lean = texts.pop().context("the lean frame")?;
    Ok((lean, full))
}

pub async fn run(mode: Mode, floor: &Scenario) -> anyhow::Result<Scenario> {
    let (lean, full) = sample_frames().await?;
    let frame: Value = serde_json::from_str(&lean)?;
    let ops_bytes = frame["ops"].to_string().len();
    let mut cases = Vec::new();
    for (subscribers, edits) in sizes(mode) {
        let mut case = through_the_app(Write::TypedCharacter, subscribers, edits)
            .await?
            .figure("frame_bytes", lean.len() as f64)
            .figure("operation_bytes", ops_bytes as f64)
            .figure("whole_document_frame_bytes", full.len() as f64);
        if let Some(f) = floor.case_where("subscribers", subscribers as f64) {
            case.compare_with(f);
        }
        cases.push(case);
    }
    Ok(Scenario {
        name: "edits".into(),
        kind: Kind::Docfan,
        title: "Co-editing: operation acknowledged → frame received".into(),
        method: "`POST /documents/{id}/edits` of one typed character answered 200 → its \
                 `document.updated` frame (baseVersion and ops, no document) read by every \
                 subscribed client, through the change log, the stream poller, the fan-out \
                 and `/ws` of the whole app, on a document with 100 collaborators; \
                 sequential edits; clients in the same process over loopback. Signed: \
                 negative when the frame beat the HTTP answer. Each case also gives the \
                 frame's size beside the operation's own JSON (what any server sends) and \
                 the frame an `include: document` subscription gets."
            .into(),
        floor: Some(FLOOR.into()),
        load_average: 0.0,
        seconds: 0.0,
        cases,
        notes: vec![format!(
            "A one-character edit's frame: {} bytes, of which the operation is {ops_bytes}; \
             with the whole document: {} bytes.",
            lean.len(),
            full.len()
        )],
    })
}
