//! What the fan-out's consumers hold for a document, read over the REST API, and
//! waiting until they have caught up with the document's final version.

use std::time::Duration;

use serde_json::Value;

use crate::token_for;

/// Every version in a document's audit trail, oldest first, following the cursor.
pub async fn history_versions(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    user: &str,
) -> Vec<u64> {
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
            .expect("history answers")
            .json()
            .await
            .expect("a history page");
        for item in page["items"].as_array().expect("a history page") {
            versions.push(item["version"].as_u64().expect("a version"));
        }
        match page.get("nextCursor").and_then(Value::as_str) {
            Some(c) => cursor = Some(c.to_owned()),
            None => return versions,
        }
    }
}

/// The version the search index holds for the document that `query` finds, if any.
pub async fn searched_version(
    client: &reqwest::Client,
    base: &str,
    query: &str,
    id: &str,
    user: &str,
) -> Option<u64> {
    let found: Value = client
        .get(format!("{base}/search"))
        .query(&[("q", query), ("limit", "100")])
        .bearer_auth(token_for(user))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    found["results"]
        .as_array()?
        .iter()
        .find(|hit| hit["id"] == id)
        .and_then(|hit| hit["version"].as_u64())
}

/// The version of the document's latest analysis, if there is one.
pub async fn analysed_version(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    user: &str,
) -> Option<u64> {
    let r = client
        .get(format!("{base}/documents/{id}/analysis"))
        .bearer_auth(token_for(user))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json::<Value>().await.ok()?["version"].as_u64()
}

/// A document that the consumers must catch up with.
#[derive(Debug, Clone)]
pub struct Expected {
    pub id: String,
    pub owner: String,
    /// A word only this document's title holds, to find it by search.
    pub title_word: String,
    pub version: u64,
}

/// Waits until every consumer holds each document at its final version: the audit trail
/// has every version exactly once and in order, search finds the final version, and the
/// analysis is of the final version. Panics with what is still missing after `patience`.
pub async fn wait_until_converged(
    client: &reqwest::Client,
    base: &str,
    expected: &[Expected],
    patience: Duration,
) {
    let deadline = tokio::time::Instant::now() + patience;
    for doc in expected {
        let want: Vec<u64> = (1..=doc.version).collect();
        loop {
            let history = history_versions(client, base, &doc.id, &doc.owner).await;
            assert!(
                history
                    .iter()
                    .zip(history.iter().skip(1))
                    .all(|(a, b)| a < b),
                "{}: the audit trail repeats or reorders versions: {history:?}",
                doc.id
            );
            let searched =
                searched_version(client, base, &doc.title_word, &doc.id, &doc.owner).await;
            let analysed = analysed_version(client, base, &doc.id, &doc.owner).await;
            if history == want && searched == Some(doc.version) && analysed == Some(doc.version) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} did not converge to version {}: audit {:?}, search {searched:?}, analysis {analysed:?}",
                doc.id,
                doc.version,
                if history.len() > 12 {
                    format!(
                        "{} versions ending {:?}",
                        history.len(),
                        &history[history.len() - 3..]
                    )
                } else {
                    format!("{history:?}")
                },
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
