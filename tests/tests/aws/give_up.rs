//! The Lambda index consumer gives up on a record that keeps failing before its event
//! source mapping would (which keeps only the batch's metadata): past its retries, the
//! record goes to the poison-record queue whole, with its reason, and a redrive
//! delivers it once the sink is back. Nothing is lost.

use std::sync::Arc;
use std::time::Duration;

use api::commands::aws::{list_dead_letters, redrive_dead_letters};
use shared::aws::{AwsClients, OpenSearchConfig};
use shared::clock::SystemClock;
use shared::ports::{AttemptLog, DeadLetterQueue, DocumentStore};
use stream_handler::aws::{Consumer, consumer_fanout};
use stream_handler::give_up::GiveUpRules;
use stream_handler::sinks::notifications::NoSubscribers;
use tests::port_suites::{new_document, unique_user};

use crate::emulators::{self, Wants};

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn a_sink_down_past_the_retries_dead_letters_every_record_whole_and_a_redrive_delivers_them()
{
    let clients = emulators::aws(Wants {
        search: true,
        ..Wants::default()
    })
    .await;
    let ann = unique_user("ann");
    let docs: Vec<_> = (0..3)
        .map(|i| new_document(&ann, &format!("Doc {i}"), "kept through an outage", &[]))
        .collect();
    for doc in &docs {
        clients.document_store().create(doc).await.unwrap();
    }
    let records = crate::stream::read_stream(&clients).await;
    assert_eq!(records.len(), 3);

    // The same deployment with its search domain unreachable.
    let mut config = clients.config.clone();
    let search = config.opensearch.clone().unwrap();
    config.opensearch = Some(OpenSearchConfig {
        url: crate::emulators::closed_endpoint(),
        ..search
    });
    let down = AwsClients::from_sdk_config(config, clients.sdk.clone()).unwrap();
    let clock = Arc::new(SystemClock);
    let rules = GiveUpRules {
        max_retries: 2,
        max_age: Duration::from_secs(3000),
    };
    let fanout = consumer_fanout(
        &down,
        Arc::new(NoSubscribers),
        clock.clone(),
        Consumer::Index(rules),
    )
    .unwrap();
    let event = serde_json::json!({ "Records": records });

    // The mapping retries the batch: twice it fails as a whole (nothing dead-lettered
    // yet), the third time every record is given up on and the batch succeeds.
    for invocation in 1..=2 {
        let response = fanout.handle_event(&event).await;
        assert_eq!(
            response.batch_item_failures.len(),
            3,
            "invocation {invocation}"
        );
    }
    let dlq = clients.dead_letter_queue(clock.clone()).unwrap();
    assert_eq!(dlq.depth().await.unwrap(), 0);
    let response = fanout.handle_event(&event).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "{:?}",
        response.batch_item_failures
    );
    let letters = list_dead_letters(&clients, 10).await.unwrap();
    assert_eq!(letters.len(), 3);
    for letter in &letters {
        assert!(
            records.contains(&letter.payload),
            "the record is kept whole"
        );
        assert_eq!(letter.attempts, 3);
        assert!(
            letter.reason.contains("search") && letter.reason.contains("failed 3 times"),
            "{}",
            letter.reason
        );
    }
    // The counts live in the attempts table.
    let id = records[0]["eventID"].as_str().unwrap();
    assert_eq!(
        clients.attempt_log(clock.clone()).failed(id).await.unwrap(),
        4
    );

    // Search is back: a redrive delivers each record once.
    let outcomes = redrive_dead_letters(&clients, None).await.unwrap();
    assert!(outcomes.iter().all(|o| o.result.is_ok()), "{outcomes:?}");
    assert_eq!(dlq.depth().await.unwrap(), 0);
    let index = clients.search_index().unwrap();
    for doc in &docs {
        assert_eq!(index.indexed(&doc.id).await.unwrap(), Some((1, false)));
        assert_eq!(
            crate::emulators::audit_count(&clients, &doc.id).await,
            1,
            "the audit entry written during the outage is not written twice"
        );
    }
}
