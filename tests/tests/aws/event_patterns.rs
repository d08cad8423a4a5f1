//! One pattern language in both modes: the table in `fixtures/event_patterns.json` run
//! through EventBridge rules on moto and through docfan's embedded matcher
//! (`shared::events::EventPattern`), which must select the same events.
//!
//! Each case becomes a rule on a bus of the test's own, targeting a queue of its own;
//! every event of the table is put once, and each queue must receive exactly the events
//! its case expects. Cases marked `motoDiffers` (moto departs from EventBridge's
//! documented behaviour there) are left out of the moto comparison and reported; the
//! embedded matcher is held to every case, here and in shared's unit tests.

use std::collections::BTreeMap;

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use serde_json::Value;
use shared::events::EventPattern;

use crate::emulators;

const TABLE: &str = include_str!("fixtures/event_patterns.json");

struct Case {
    name: String,
    pattern: Value,
    expected: Vec<String>,
    moto_differs: Option<String>,
    queue_url: String,
}

#[tokio::test]
#[ignore = "needs moto: run tests/run"]
async fn eventbridge_rules_on_moto_and_the_embedded_matcher_select_the_same_events() {
    let table: Value = serde_json::from_str(TABLE).unwrap();
    let events = table["events"].as_object().unwrap();
    let sdk = emulators::sdk_config(&emulators::moto_endpoint()).await;
    let eventbridge = aws_sdk_eventbridge::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);

    let bus = emulators::create_bus(&eventbridge).await;

    let mut cases = Vec::new();
    for (i, case) in table["cases"].as_array().unwrap().iter().enumerate() {
        let name = case["name"].as_str().unwrap().to_owned();
        let queue_url = emulators::rule_to_queue(
            &eventbridge,
            &sqs,
            &bus,
            &format!("case-{i}"),
            case["pattern"].clone(),
        )
        .await;
        cases.push(Case {
            name,
            pattern: case["pattern"].clone(),
            expected: case["matches"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap().to_owned())
                .collect(),
            moto_differs: case["motoDiffers"].as_str().map(str::to_owned),
            queue_url,
        });
    }

    let entries: Vec<PutEventsRequestEntry> = events
        .values()
        .map(|event| {
            PutEventsRequestEntry::builder()
                .event_bus_name(&bus)
                .source(event["source"].as_str().unwrap())
                .detail_type(event["detail-type"].as_str().unwrap())
                .set_resources(Some(
                    event["resources"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| r.as_str().unwrap().to_owned())
                        .collect(),
                ))
                .detail(event["detail"].to_string())
                .build()
        })
        .collect();
    // PutEvents takes at most 10 entries.
    for batch in entries.chunks(10) {
        let put = eventbridge
            .put_events()
            .set_entries(Some(batch.to_vec()))
            .send()
            .await
            .unwrap();
        assert_eq!(put.failed_entry_count, 0, "{put:?}");
    }

    let mut wrong = Vec::new();
    let mut skipped = Vec::new();
    for case in &cases {
        let compiled = EventPattern::compile(&case.pattern)
            .unwrap_or_else(|e| panic!("case {:?}: {e}", case.name));
        let embedded: Vec<String> = events
            .iter()
            .filter(|(_, event)| compiled.matches(event))
            .map(|(name, _)| name.clone())
            .collect();
        if sorted(&embedded) != sorted(&case.expected) {
            wrong.push(format!(
                "{:?}: the embedded matcher selects {embedded:?}, the table says {:?}",
                case.name, case.expected
            ));
        }

        let delivered = drain(&sqs, &case.queue_url, events).await;
        match &case.moto_differs {
            Some(why) => skipped.push(format!(
                "{:?} (moto delivered {delivered:?}, EventBridge selects {:?}): {why}",
                case.name, case.expected
            )),
            None if sorted(&delivered) != sorted(&case.expected) => wrong.push(format!(
                "{:?}: moto delivered {delivered:?}, the table (and the embedded matcher) say {:?}",
                case.name, case.expected
            )),
            None => {}
        }
    }
    if !skipped.is_empty() {
        eprintln!("left out of the moto comparison:\n{}", skipped.join("\n"));
    }
    assert!(wrong.is_empty(), "disagreements:\n{}", wrong.join("\n"));
    // The table keeps most of its cases in the comparison.
    assert!(
        cases.len() - skipped.len() >= 40,
        "{} cases compared",
        cases.len() - skipped.len()
    );
}

fn sorted(names: &[String]) -> Vec<&str> {
    let mut names: Vec<&str> = names.iter().map(String::as_str).collect();
    names.sort_unstable();
    names
}

/// Every message on the queue, named by the table event it carries (the one with the
/// same source, detail-type, resources and detail); an event delivered twice is named
/// twice.
async fn drain(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    events: &serde_json::Map<String, Value>,
) -> Vec<String> {
    emulators::drain(sqs, queue_url)
        .await
        .into_iter()
        .map(|body| {
            let same: BTreeMap<&str, &Value> = ["source", "detail-type", "resources", "detail"]
                .into_iter()
                .map(|field| (field, &body[field]))
                .collect();
            events
                .iter()
                .find(|(_, event)| same.iter().all(|(field, value)| event[*field] == **value))
                .map(|(name, _)| name.clone())
                .unwrap_or_else(|| panic!("a delivered event the table does not hold: {body}"))
        })
        .collect()
}
