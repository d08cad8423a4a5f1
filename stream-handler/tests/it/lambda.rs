//! One Lambda invocation as the entry points run it: the stream event handled, then the
//! invocation's metrics written as CloudWatch EMF lines.

use std::sync::Arc;

use serde_json::Value;
use shared::Error;
use shared::metrics::Emf;
use stream_handler::lambda::handle_stream_event;
use stream_handler::sinks::Sink;

use crate::common::{MemoryDeadLetters, RecordingSink, fanout_with};

const INSERT: &str = include_str!("../fixtures/insert.json");

/// Each line written, parsed: one JSON object per line.
fn emf_lines(out: Vec<u8>) -> Vec<Value> {
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("an EMF line is a JSON object"))
        .collect()
}

fn of_sink<'a>(lines: &'a [Value], sink: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["Sink"] == sink)
        .unwrap_or_else(|| panic!("no EMF record of {sink} in {lines:?}"))
}

fn of_function(lines: &[Value]) -> &Value {
    lines
        .iter()
        .find(|l| l.get("Sink").is_none())
        .unwrap_or_else(|| panic!("no EMF record of the function in {lines:?}"))
}

#[tokio::test]
async fn an_invocation_writes_its_metrics_as_emf_deltas() {
    let search = RecordingSink::new("search");
    let audit = RecordingSink::failing(
        "audit",
        Box::new(|_, _| Some(Error::invalid("entry", "refused for good"))),
    );
    let dlq = Arc::new(MemoryDeadLetters::default());
    let fanout = fanout_with(
        vec![
            search.clone() as Arc<dyn Sink>,
            audit.clone() as Arc<dyn Sink>,
        ],
        dlq.clone(),
    );
    let emf = Emf::new("docfan", "docfan-test-StreamHandler");
    let event: Value = serde_json::from_str(INSERT).unwrap();

    let mut out = Vec::new();
    let response = handle_stream_event(&fanout, &emf, &event, &mut out).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "dead-lettered, not reported"
    );
    assert_eq!(dlq.letters.lock().unwrap().len(), 1);

    let lines = emf_lines(out);
    for line in &lines {
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "docfan");
        assert_eq!(line["Function"], "docfan-test-StreamHandler");
        for metric in directive["Metrics"].as_array().unwrap() {
            assert!(line[metric["Name"].as_str().unwrap()].is_number(), "{line}");
        }
    }
    let search_line = of_sink(&lines, "search");
    assert_eq!(search_line["Delivered"], 1.0);
    assert_eq!(search_line["DeadLettered"], 0.0);
    assert!(search_line["DeliveryLatency"].is_number());
    let audit_line = of_sink(&lines, "audit");
    assert_eq!(audit_line["Failed"], 1.0);
    assert_eq!(
        audit_line["DeadLettered"], 1.0,
        "blamed on the sink that failed it"
    );
    let function = of_function(&lines);
    assert_eq!(function["RecordsDeadLettered"], 1.0);
    // The fixture's record was written in 2024: the lag is its age.
    assert!(
        function["StreamLag"].as_f64().unwrap() > 86_400.0,
        "{function}"
    );

    // The next invocation counts only its own: the same record again.
    let mut out = Vec::new();
    handle_stream_event(&fanout, &emf, &event, &mut out).await;
    let lines = emf_lines(out);
    assert_eq!(of_sink(&lines, "search")["Delivered"], 1.0);
    assert_eq!(of_sink(&lines, "audit")["DeadLettered"], 1.0);
    assert_eq!(of_function(&lines)["RecordsDeadLettered"], 1.0);
    assert_eq!(
        fanout.metrics().stream_lag(chrono::Utc::now()),
        std::time::Duration::ZERO,
        "no batch waits once the invocation is over"
    );
}
