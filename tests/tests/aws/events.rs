//! The events sink on AWS: changes read from the documents table's stream on moto,
//! handled by the index consumer of the Lambda stream handler
//! (`stream_handler::aws::consumer_fanout`) with `DOCFAN_EVENT_BUS_NAME` set, published
//! with `PutEvents` to a bus of the test's own, and delivered by EventBridge rules to SQS
//! queues, where each message must be the contract's event (`product.md`, "Events for
//! other consumers"). The Lambda binary itself is run once with `DOCFAN_EVENT_BUS_NAME`
//! set, and once with a malformed one, which stops it at start.
//!
//! moto cannot be made to fail chosen entries of a `PutEvents` request, so retrying only
//! the failed entries is tested in `shared::aws::event_bus` over scripted answers; here
//! the requests over ten entries (which moto refuses whole) and a missing bus.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};
use shared::Error;
use shared::aws::{EventBridgeBus, EventBridgeConfig, EventBusName};
use shared::clock::{Clock, SystemClock};
use shared::domain::{Body, ChangeEvent, TextOperation, Title};
use shared::events::DocumentEvent;
use shared::ports::{DocumentStore, EventBus};
use stream_handler::Fanout;
use stream_handler::aws::{Consumer, consumer_fanout, events_sink};
use stream_handler::decode::{Decoded, decode};
use stream_handler::sinks::notifications::NoSubscribers;
use tests::port_suites::{new_document, next_version, unique_user};

use crate::emulators::{self, Wants, create_bus, drain, rule_to_queue};
use crate::lambda::invoke;
use crate::stream::read_stream;

const BODY: &str = "a body that never leaves docfan in an event";

/// The events the records stand for, in stream order.
fn expected_events(records: &[Value]) -> Vec<DocumentEvent> {
    records
        .iter()
        .filter_map(
            |record| match decode(record).expect("every record decodes") {
                Decoded::Change(change) => Some(DocumentEvent::from_change(&change)),
                Decoded::Skip => None,
                Decoded::Unfinished(u) => panic!("a short body is never paged out: {u:?}"),
            },
        )
        .collect()
}

/// The parts of a delivered message the contract fixes (EventBridge adds `id`,
/// `account`, `region` of its own), checked against the event docfan meant.
fn assert_contract(delivered: &Value, expected: &DocumentEvent) {
    assert_eq!(delivered["version"], "0", "{delivered}");
    assert_eq!(delivered["source"], "docfan");
    assert_eq!(delivered["detail-type"], expected.detail_type.as_str());
    assert_eq!(
        delivered["resources"],
        json!([format!("document/{}", expected.detail.document_id)])
    );
    // The detail exactly: these fields and no others, so no body.
    assert_eq!(
        delivered["detail"],
        serde_json::to_value(&expected.detail).unwrap()
    );
    let keys: Vec<&str> = delivered["detail"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "actor",
            "at",
            "changedFields",
            "documentId",
            "title",
            "version"
        ]
    );
    assert!(!delivered.to_string().contains(BODY), "{delivered}");
    // EventBridge writes `time` as RFC 3339 to the second; moto echoes the entry's
    // `Time` as the epoch seconds the SDK sent. Either way it is the change's second.
    let time = &delivered["time"];
    let seconds = match time {
        Value::String(text) => chrono::DateTime::parse_from_rfc3339(text)
            .unwrap_or_else(|e| panic!("time {text:?}: {e}"))
            .timestamp(),
        Value::Number(n) => n.as_f64().unwrap() as i64,
        other => panic!("time {other}"),
    };
    assert_eq!(seconds, expected.time.timestamp());
}

/// Delivered messages by `(documentId, version)`, the key consumers deduplicate on.
fn by_change(delivered: &[Value]) -> BTreeMap<(String, u64), Vec<&Value>> {
    let mut map: BTreeMap<(String, u64), Vec<&Value>> = BTreeMap::new();
    for message in delivered {
        let key = (
            message["detail"]["documentId"].as_str().unwrap().to_owned(),
            message["detail"]["version"].as_u64().unwrap(),
        );
        map.entry(key).or_default().push(message);
    }
    map
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn changes_reach_a_rules_queue_through_the_index_consumer_in_the_contracts_shape() {
    let mut clients = emulators::aws(Wants {
        search: true,
        ..Wants::default()
    })
    .await;
    let eventbridge = aws_sdk_eventbridge::Client::new(&clients.sdk);
    let sqs = clients.sqs.clone();
    let bus = create_bus(&eventbridge).await;
    let everything = rule_to_queue(
        &eventbridge,
        &sqs,
        &bus,
        "docfan-all",
        json!({"source": ["docfan"]}),
    )
    .await;
    // The template's example rule: deletions only.
    let deletions = rule_to_queue(
        &eventbridge,
        &sqs,
        &bus,
        "docfan-deletions",
        json!({"source": ["docfan"], "detail-type": ["document.deleted"]}),
    )
    .await;
    clients.config.event_bus_name = Some(EventBusName::parse(&bus).unwrap());

    let ann = unique_user("ann");
    let v1 = new_document(&ann, "Plan", BODY, &[]);
    let v2 = next_version(&v1, &ann, |d| d.title = Title::parse("Plans").unwrap());
    let v3 = next_version(&v2, &ann, |d| {
        d.body = Body::parse(format!("{BODY}, edited")).unwrap()
    });
    let v4 = next_version(&v3, &ann, |_| {});
    let store = clients.document_store();
    store.create(&v1).await.unwrap();
    store
        .update(&v2, &TextOperation::diff(BODY, BODY))
        .await
        .unwrap();
    store
        .update(
            &v3,
            &TextOperation::diff(v2.body.as_str(), v3.body.as_str()),
        )
        .await
        .unwrap();
    store.delete(&v4).await.unwrap();
    let records = read_stream(&clients).await;
    let expected = expected_events(&records);
    assert_eq!(
        expected
            .iter()
            .map(|e| (e.detail_type.as_str(), e.detail.version))
            .collect::<Vec<_>>(),
        [
            ("document.created", 1),
            ("document.updated", 2),
            ("document.updated", 3),
            ("document.deleted", 4)
        ]
    );

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let index = Consumer::Index(stream_handler::give_up::GiveUpRules {
        max_retries: 8,
        max_age: std::time::Duration::from_secs(3000),
    });
    let fanout = consumer_fanout(&clients, Arc::new(NoSubscribers), clock, index)
        .expect("the index consumer builds");
    assert!(fanout.sinks().iter().any(|s| s.name() == "events"));
    let response = fanout.handle_event(&json!({ "Records": records })).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "{:?}",
        response.batch_item_failures
    );
    assert_eq!(fanout.dead_letters().unwrap().depth().await.unwrap(), 0);

    let delivered = drain(&sqs, &everything).await;
    let delivered = by_change(&delivered);
    assert_eq!(delivered.len(), 4, "{delivered:?}");
    for event in &expected {
        let key = (event.detail.document_id.to_string(), event.detail.version);
        let messages = &delivered[&key];
        assert_eq!(messages.len(), 1, "{key:?}: {messages:?}");
        assert_contract(messages[0], event);
    }

    let deleted = drain(&sqs, &deletions).await;
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert_contract(&deleted[0], &expected[3]);
    assert_eq!(deleted[0]["detail"]["title"], "Plans", "its last title");

    // A redelivered batch publishes the same changes again: EventBridge gives every put
    // an id of its own, and `detail.documentId` + `detail.version` name the duplicate.
    let first_ids: Vec<Value> = delivered.values().map(|m| m[0]["id"].clone()).collect();
    let response = fanout.handle_event(&json!({ "Records": records })).await;
    assert!(response.batch_item_failures.is_empty());
    let again = drain(&sqs, &everything).await;
    let again = by_change(&again);
    assert_eq!(
        again.keys().collect::<Vec<_>>(),
        delivered.keys().collect::<Vec<_>>()
    );
    for messages in again.values() {
        assert!(!first_ids.contains(&messages[0]["id"]), "a new envelope id");
    }
}

/// `count` creations, as events, by one owner.
fn creations(count: usize) -> Vec<DocumentEvent> {
    let ann = unique_user("ann");
    (0..count)
        .map(|i| {
            let document = new_document(&ann, &format!("Doc {i}"), BODY, &[]);
            DocumentEvent::from_change(&ChangeEvent::written(None, document, i.to_string()))
        })
        .collect()
}

#[tokio::test]
#[ignore = "needs moto: run tests/run"]
async fn more_than_ten_events_go_in_requests_of_ten() {
    let sdk = emulators::sdk_config(&emulators::moto_endpoint()).await;
    let eventbridge = aws_sdk_eventbridge::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let bus = create_bus(&eventbridge).await;
    let queue = rule_to_queue(
        &eventbridge,
        &sqs,
        &bus,
        "docfan-all",
        json!({"source": ["docfan"]}),
    )
    .await;
    let events = creations(25);
    // moto, like EventBridge, refuses a request of more than ten entries.
    let refused = eventbridge
        .put_events()
        .set_entries(Some(
            events
                .iter()
                .map(|e| {
                    aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                        .event_bus_name(&bus)
                        .source("docfan")
                        .detail_type(e.detail_type.as_str())
                        .detail(serde_json::to_string(&e.detail).unwrap())
                        .build()
                })
                .collect(),
        ))
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");

    let events_bus = EventBridgeBus::new(
        eventbridge.clone(),
        EventBridgeConfig::new(EventBusName::parse(&bus).unwrap()),
    );
    events_bus.health().await.unwrap();
    events_bus.publish(&events).await.unwrap();
    let delivered = drain(&sqs, &queue).await;
    let delivered = by_change(&delivered);
    assert_eq!(delivered.len(), 25);
    for event in &events {
        let messages = &delivered[&(event.detail.document_id.to_string(), 1)];
        assert_eq!(messages.len(), 1);
        assert_contract(messages[0], event);
    }
}

#[tokio::test]
#[ignore = "needs moto: run tests/run"]
async fn a_missing_bus_blocks_the_batch_and_dead_letters_nothing() {
    let mut clients = emulators::aws(Wants::default()).await;
    let missing = emulators::unique("docfan-no-such-bus");
    clients.config.event_bus_name = Some(EventBusName::parse(&missing).unwrap());

    let bus = clients.event_bus().expect("a bus is configured");
    let health = bus.health().await.unwrap_err();
    assert!(matches!(health, Error::Blocked(_)), "{health:?}");
    let publish = bus.publish(&creations(1)).await.unwrap_err();
    assert!(matches!(publish, Error::Blocked(_)), "{publish:?}");

    // Through the handler: the record fails (the mapping retries it, the alarm on the
    // function's errors and iterator age fires) and nothing is dead-lettered.
    let ann = unique_user("ann");
    clients
        .document_store()
        .create(&new_document(&ann, "Plan", BODY, &[]))
        .await
        .unwrap();
    let records = read_stream(&clients).await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let dead_letters = Arc::new(clients.dead_letter_queue(Arc::clone(&clock)).unwrap());
    let fanout = Fanout::new(
        events_sink(&clients).into_iter().collect(),
        dead_letters,
        clock,
        Default::default(),
    );
    let report = fanout
        .handle_detailed(&records, stream_handler::sinks::Flush::Now)
        .await;
    assert_eq!(report.response.batch_item_failures.len(), 1);
    let reason = report.reasons.values().next().unwrap();
    assert!(reason.contains("ResourceNotFound"), "{reason}");
    assert_eq!(fanout.dead_letters().unwrap().depth().await.unwrap(), 0);
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn the_lambda_index_consumer_publishes_to_its_bus_and_refuses_a_malformed_name() {
    // A malformed bus name stops the function at its cold start, naming the variable.
    let mut env: Vec<(&str, &str)> = shared::aws::config::required::INDEX_CONSUMER
        .iter()
        .map(|name| (*name, "set"))
        .collect();
    env.extend([
        ("DOCFAN_STREAM_CONSUMER", "index"),
        ("DOCFAN_STREAM_MAX_RETRIES", "8"),
        ("DOCFAN_STREAM_MAX_RECORD_AGE_SECS", "3000"),
        ("DOCFAN_EVENT_BUS_NAME", "docfan dev"),
    ]);
    let said = crate::lambda::refused_at_start("lambda-stream-handler", &env).await;
    assert!(said.contains("DOCFAN_EVENT_BUS_NAME"), "{said}");

    let clients = emulators::aws(Wants {
        search: true,
        ..Wants::default()
    })
    .await;
    let eventbridge = aws_sdk_eventbridge::Client::new(&clients.sdk);
    let bus = create_bus(&eventbridge).await;
    let queue = rule_to_queue(
        &eventbridge,
        &clients.sqs,
        &bus,
        "docfan-all",
        json!({"source": ["docfan"]}),
    )
    .await;
    let ann = unique_user("ann");
    clients
        .document_store()
        .create(&new_document(&ann, "Plan", BODY, &[]))
        .await
        .unwrap();
    let records = read_stream(&clients).await;
    let expected = expected_events(&records);
    let (kind, response) = invoke(
        "lambda-stream-handler",
        &clients,
        &[
            ("DOCFAN_STREAM_CONSUMER", "index".to_owned()),
            ("DOCFAN_EVENT_BUS_NAME", bus.clone()),
        ],
        json!({ "Records": records }),
    )
    .await;
    assert_eq!(kind, "response", "{response}");
    assert_eq!(response["batchItemFailures"], json!([]), "{response}");
    let delivered = drain(&clients.sqs, &queue).await;
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_contract(&delivered[0], &expected[0]);
}
