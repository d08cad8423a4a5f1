//! Cursor pagination: newest first, no duplicates and no gaps, also while documents are
//! being created.

use std::collections::HashSet;

use serde_json::json;
use tests::TestApp;

#[tokio::test]
async fn pages_cover_everything_once_while_documents_are_created() {
    let app = TestApp::spawn().await;
    let mut before = Vec::new();
    for i in 0..25 {
        let doc = app.create("ann", &format!("doc {i}"), "", json!({})).await;
        before.push(doc["id"].as_str().unwrap().to_owned());
    }
    // Someone else's documents never show up.
    app.create("eve", "not ann's", "", json!({})).await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/documents?limit=7&cursor={c}"),
            None => "/documents?limit=7".to_owned(),
        };
        let page = app.get("ann", &path).await;
        assert_eq!(page.status, reqwest::StatusCode::OK, "{}", page.body);
        for item in page.body["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        pages += 1;
        // New documents arrive between pages; they sort before the cursor.
        app.create("ann", &format!("during page {pages}"), "", json!({}))
            .await;
        match page.body.get("nextCursor").and_then(|c| c.as_str()) {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "duplicates across pages");
    let mut newest_first = before.clone();
    newest_first.reverse();
    assert_eq!(
        seen, newest_first,
        "every document that existed, newest first, no gaps"
    );
    assert_eq!(pages, 4);
}

#[tokio::test]
async fn limits_from_1_to_100_are_accepted() {
    let app = TestApp::spawn().await;
    for i in 0..3 {
        app.create("ann", &format!("d{i}"), "", json!({})).await;
    }
    for limit in [1, 2, 3, 100] {
        let page = app.get("ann", &format!("/documents?limit={limit}")).await;
        assert_eq!(page.body["items"].as_array().unwrap().len(), limit.min(3));
        assert_eq!(page.body.get("nextCursor").is_some(), limit < 3);
    }
}
