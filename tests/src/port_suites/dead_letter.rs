//! The [`DeadLetterQueue`] contract: letters kept whole with their reason, listed
//! oldest first, removed by id.

use std::sync::Arc;

use chrono::TimeDelta;
use serde_json::json;
use shared::Error;
use shared::ports::{DeadLetter, DeadLetterQueue, DeadLetterSource};

use super::now_millis;

/// Runs the suite on a queue that starts empty.
pub async fn run(dlq: Arc<dyn DeadLetterQueue>) {
    let at = now_millis();
    let record = json!({
        "eventID": "1",
        "eventName": "MODIFY",
        "dynamodb": { "Keys": { "id": { "S": "x" } }, "SequenceNumber": "000000000000000000042" }
    });
    let letters = [
        DeadLetter {
            id: String::new(),
            source: DeadLetterSource::Stream,
            payload: record.clone(),
            reason: "undecodable stream record: NewImage is not a document".into(),
            attempts: 1,
            failed_at: at,
        },
        DeadLetter {
            id: String::new(),
            source: DeadLetterSource::Analysis,
            payload: json!({ "documentId": "0190a5f0-0000-7000-8000-000000000000", "version": 3 }),
            reason: "after 5 attempts: boom".into(),
            attempts: 5,
            failed_at: at + TimeDelta::seconds(1),
        },
    ];
    assert_eq!(dlq.depth().await.unwrap(), 0);
    let mut ids = Vec::new();
    for letter in &letters {
        ids.push(dlq.put(letter).await.unwrap());
    }
    assert_ne!(ids[0], ids[1]);
    assert_eq!(dlq.depth().await.unwrap(), 2);

    let listed = dlq.list(10).await.unwrap();
    assert_eq!(listed.len(), 2);
    for (got, (want, id)) in listed.iter().zip(letters.iter().zip(&ids)) {
        let mut want = want.clone();
        want.id = id.clone();
        assert_eq!(got, &want);
    }
    // Listing does not consume.
    assert_eq!(dlq.list(10).await.unwrap().len(), 2);
    assert_eq!(dlq.list(1).await.unwrap().len(), 1);

    dlq.remove(&ids[0]).await.unwrap();
    assert!(matches!(dlq.remove(&ids[0]).await, Err(Error::NotFound)));
    let rest = dlq.list(10).await.unwrap();
    assert_eq!(
        rest.iter().map(|l| l.id.clone()).collect::<Vec<_>>(),
        vec![ids[1].clone()]
    );
    dlq.remove(&ids[1]).await.unwrap();
    assert_eq!(dlq.depth().await.unwrap(), 0);
}
