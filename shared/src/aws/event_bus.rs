//! The [`EventBus`] on EventBridge: each [`DocumentEvent`] becomes one `PutEvents` entry
//! on the custom bus `infra/template.yaml` creates (`DOCFAN_EVENT_BUS_NAME`).
//!
//! An entry carries the event's `source`, `detail-type`, `resources`, `time` and
//! `detail` (the JSON of [`EventDetail`](crate::events::EventDetail), never a body);
//! EventBridge adds the envelope (`version`, `account`, `region`) and an `id` of its own.
//!
//! **Event ids.** `PutEvents` takes no id: on EventBridge the envelope's `id` is AWS's,
//! new on every put, so a change published twice (a redelivered record, a redrive)
//! arrives with two different envelope ids. Consumers deduplicate on
//! `detail.documentId` + `detail.version` instead: that pair names exactly one change,
//! and docfan's own event id (the `id` webhook receivers get on one machine) is derived
//! from it alone ([`DocumentEvent::id_for`]). The contract's `detail` stays as
//! `product.md` gives it, with no id field of its own.
//!
//! **Batches.** Events go in order, in requests of at most [`MAX_ENTRIES`] entries and
//! [`MAX_REQUEST_BYTES`] (EventBridge's limits, the size counted the way EventBridge
//! counts it: [`entry_size`]). An event that alone exceeds the limit is refused before
//! anything is sent ([`Error::TooLarge`]).
//!
//! **Partial failures.** `PutEvents` answers per entry: some may fail while the others
//! are taken. Only the failed entries are sent again ([`triage`]), after the
//! [`RetryPolicy`]'s backoff and for its bounded number of attempts. EventBridge makes
//! no promise of order between entries, so a retried entry may land after later ones;
//! the fan-out keeps one document's events in order by publishing them one change at a
//! time.
//!
//! **Failures, classified:** throttling, `InternalFailure` and 5xx are
//! [`Error::Unavailable`]; access denied and a missing bus are [`Error::Blocked`] (the
//! deployment is wrong: the batch fails and alarms, nothing is dead-lettered); an entry
//! EventBridge calls malformed is [`Error::Unknown`], so its record is dead-lettered.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_eventbridge::operation::put_events::PutEventsOutput;
use aws_sdk_eventbridge::primitives::DateTime;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use super::errors::{is_blocking_code, is_transient_code, sdk_error};
use crate::events::DocumentEvent;
use crate::ports::EventBus;
use crate::retry::RetryPolicy;
use crate::{Error, Result};

/// The most entries one `PutEvents` request takes.
pub const MAX_ENTRIES: usize = 10;

/// The most bytes of entries one `PutEvents` request takes (256 KiB), counted by
/// [`entry_size`].
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

/// The name (or ARN) of an EventBridge event bus, as `PutEvents` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventBusName(String);

impl EventBusName {
    /// A bus name (`[A-Za-z0-9._/-]`, 1 to 256 characters) or a bus ARN
    /// (`arn:<partition>:events:<region>:<account>:event-bus/<name>`).
    pub fn parse(raw: &str) -> Result<Self> {
        let invalid = |why: String| Error::invalid("DOCFAN_EVENT_BUS_NAME", why);
        let raw = raw.trim();
        let name = match raw.strip_prefix("arn:") {
            None => raw,
            Some(rest) => {
                let parts: Vec<&str> = rest.splitn(5, ':').collect();
                let [partition, service, region, account, resource] = parts[..] else {
                    return Err(invalid(format!(
                        "{raw:?} is not an event bus ARN (arn:aws:events:<region>:<account>:event-bus/<name>)"
                    )));
                };
                let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
                if !partition.starts_with("aws")
                    || service != "events"
                    || region.is_empty()
                    || !account_ok
                {
                    return Err(invalid(format!(
                        "{raw:?} is not an event bus ARN (arn:aws:events:<region>:<account>:event-bus/<name>)"
                    )));
                }
                resource.strip_prefix("event-bus/").ok_or_else(|| {
                    invalid(format!("{raw:?} names a {resource:?}, not an event-bus/"))
                })?
            }
        };
        if name.is_empty() || name.len() > 256 {
            return Err(invalid(format!(
                "a bus name has 1 to 256 characters, {raw:?} has {}",
                name.len()
            )));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/')))
        {
            return Err(invalid(format!(
                "{raw:?}: a bus name is letters, digits and . - _ /, not {bad:?}"
            )));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventBusName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The two EventBridge calls the bus makes, with their failures already classified.
/// The SDK client implements it; tests script it to fail chosen entries.
#[async_trait]
pub trait EventBridgeApi: Send + Sync + 'static {
    /// One `PutEvents` request. Errors: as [`sdk_error`] classifies the
    /// request's failure (not its entries').
    async fn put_events(&self, entries: Vec<PutEventsRequestEntry>) -> Result<PutEventsOutput>;

    /// `DescribeEventBus`. Errors: [`Error::Blocked`] for a bus that does not exist or
    /// may not be described, [`Error::Unavailable`] when EventBridge cannot answer.
    async fn describe_event_bus(&self, name: &str) -> Result<()>;
}

#[async_trait]
impl EventBridgeApi for aws_sdk_eventbridge::Client {
    async fn put_events(&self, entries: Vec<PutEventsRequestEntry>) -> Result<PutEventsOutput> {
        self.put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| sdk_error("PutEvents", e))
    }

    async fn describe_event_bus(&self, name: &str) -> Result<()> {
        self.describe_event_bus()
            .name(name)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("DescribeEventBus", e))
    }
}

/// How the bus publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventBridgeConfig {
    pub bus: EventBusName,
    /// Attempts at each request's failed entries (the first included) and the pauses
    /// between them. The fan-out retries a failed delivery again on its own, so this
    /// stays short.
    pub retry: RetryPolicy,
}

impl EventBridgeConfig {
    /// The bus with the default retry: 3 attempts, pauses from 100 ms up to 1 s.
    pub fn new(bus: EventBusName) -> Self {
        Self {
            bus,
            retry: RetryPolicy {
                max_attempts: 3,
                initial_backoff: std::time::Duration::from_millis(100),
                max_backoff: std::time::Duration::from_secs(1),
            },
        }
    }
}

/// The [`EventBus`] on an EventBridge custom bus.
#[derive(Clone)]
pub struct EventBridgeBus {
    api: Arc<dyn EventBridgeApi>,
    config: EventBridgeConfig,
}

impl fmt::Debug for EventBridgeBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBridgeBus")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl EventBridgeBus {
    /// The bus over the SDK client.
    pub fn new(client: aws_sdk_eventbridge::Client, config: EventBridgeConfig) -> Self {
        Self::with_api(Arc::new(client), config)
    }

    /// The bus over any implementation of the two calls.
    pub fn with_api(api: Arc<dyn EventBridgeApi>, config: EventBridgeConfig) -> Self {
        Self { api, config }
    }

    pub fn config(&self) -> &EventBridgeConfig {
        &self.config
    }

    /// The `PutEvents` entry of an event on this bus.
    pub fn entry(&self, event: &DocumentEvent) -> Result<PutEventsRequestEntry> {
        let detail = serde_json::to_string(&event.detail).map_err(|e| Error::Unknown(e.into()))?;
        Ok(PutEventsRequestEntry::builder()
            .event_bus_name(self.config.bus.as_str())
            .source(&event.source)
            .detail_type(event.detail_type.as_str())
            .set_resources(Some(event.resources.clone()))
            .time(DateTime::from_secs(event.time.timestamp()))
            .detail(detail)
            .build())
    }

    /// Sends one request's entries, then again only those that failed, until all are
    /// taken or the attempts run out.
    async fn put_batch(&self, batch: Vec<PutEventsRequestEntry>) -> Result<()> {
        let policy = &self.config.retry;
        let total = batch.len();
        let mut pending = batch;
        let mut attempt = 1;
        loop {
            let failure = match self.api.put_events(pending.clone()).await {
                Ok(output) => match triage(pending.len(), &output) {
                    Triage::Taken => return Ok(()),
                    Triage::Retry { failed, reason } => {
                        pending = failed.into_iter().map(|i| pending[i].clone()).collect();
                        Error::Unavailable(format!(
                            "PutEvents: {} of {total} entries not taken: {reason}",
                            pending.len()
                        ))
                    }
                    Triage::Fail(e) => return Err(e),
                },
                Err(e) => e,
            };
            // A blocked bus stays blocked for longer than any pause here: the fan-out
            // reports the batch at once.
            if !matches!(failure, Error::Unavailable(_)) || !policy.allows_another(attempt) {
                return Err(match failure {
                    Error::Unavailable(why) => {
                        Error::Unavailable(format!("{why} (after {attempt} attempts)"))
                    }
                    other => other,
                });
            }
            let pause = policy.backoff(attempt);
            tracing::warn!(
                bus = %self.config.bus,
                entries = pending.len(),
                attempt,
                ?pause,
                error = %failure,
                "PutEvents failed; retrying what was not taken"
            );
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }
}

#[async_trait]
impl EventBus for EventBridgeBus {
    async fn publish(&self, events: &[DocumentEvent]) -> Result<()> {
        let entries = events
            .iter()
            .map(|event| self.entry(event))
            .collect::<Result<Vec<_>>>()?;
        for batch in batches(entries)? {
            self.put_batch(batch).await?;
        }
        Ok(())
    }

    async fn health(&self) -> Result<()> {
        self.api.describe_event_bus(self.config.bus.as_str()).await
    }
}

/// An entry's size as EventBridge counts it against [`MAX_REQUEST_BYTES`]: 14 bytes
/// for a `Time`, then the UTF-8 bytes of `Source`, `DetailType`, `Detail` and each
/// resource.
pub fn entry_size(entry: &PutEventsRequestEntry) -> usize {
    let text = |s: Option<&str>| s.map_or(0, str::len);
    entry.time.map_or(0, |_| 14)
        + text(entry.source())
        + text(entry.detail_type())
        + text(entry.detail())
        + entry.resources().iter().map(String::len).sum::<usize>()
}

/// The entries in order, cut into requests of at most [`MAX_ENTRIES`] entries and
/// [`MAX_REQUEST_BYTES`]. Errors: [`Error::TooLarge`] when one entry alone is over the
/// limit (then nothing is sent).
pub fn batches(entries: Vec<PutEventsRequestEntry>) -> Result<Vec<Vec<PutEventsRequestEntry>>> {
    let mut batches: Vec<Vec<PutEventsRequestEntry>> = Vec::new();
    let mut current: Vec<PutEventsRequestEntry> = Vec::new();
    let mut bytes = 0;
    for entry in entries {
        let size = entry_size(&entry);
        if size > MAX_REQUEST_BYTES {
            return Err(Error::TooLarge(format!(
                "an event of {size} bytes (EventBridge takes at most {MAX_REQUEST_BYTES}): {}",
                entry.resources().join(", ")
            )));
        }
        if current.len() == MAX_ENTRIES || bytes + size > MAX_REQUEST_BYTES {
            batches.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(entry);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    Ok(batches)
}

/// What a `PutEvents` answer means for the entries of its request.
#[derive(Debug)]
pub enum Triage {
    /// Every entry was taken.
    Taken,
    /// These entries (indexes into the request, in order) failed transiently and are to
    /// be sent again; the others were taken.
    Retry { failed: Vec<usize>, reason: String },
    /// An entry failed for good ([`Error::Unknown`]) or the deployment is wrong
    /// ([`Error::Blocked`]): retrying the request cannot help.
    Fail(Error),
}

/// Reads the answer to a request of `sent` entries. An entry failed when it has an
/// `ErrorCode` or lacks an `EventId` (EventBridge answers entry `i` of the request in
/// `Entries[i]`). An answer whose entries do not line up with the request counts as
/// all of them failed transiently (sent again: consumers deduplicate), except one with
/// no entries at all and no failure counted, which counts as all taken.
///
/// An entry EventBridge calls malformed (`InvalidArgument`, `MalformedDetail`, any code
/// not known to pass) fails the request for good; otherwise a blocking code
/// (`AccessDeniedException`, `NotAuthorizedForSourceException`, …) blocks it; only
/// transient codes (`ThrottlingException`, `InternalFailure`) are retried.
pub fn triage(sent: usize, output: &PutEventsOutput) -> Triage {
    let entries = output.entries();
    if entries.len() != sent {
        if output.failed_entry_count == 0 && entries.is_empty() {
            return Triage::Taken;
        }
        return Triage::Retry {
            failed: (0..sent).collect(),
            reason: format!(
                "the answer has {} entries for {sent} sent and counts {} failed",
                entries.len(),
                output.failed_entry_count
            ),
        };
    }
    let mut failed = Vec::new();
    let mut transient = Vec::new();
    let mut blocking = Vec::new();
    let mut permanent = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let code = match (entry.error_code(), entry.event_id()) {
            (None, Some(_)) => continue,
            (Some(code), _) => code,
            (None, None) => "no EventId",
        };
        let described = format!("{code}: {}", entry.error_message().unwrap_or(""));
        failed.push(i);
        if code == "no EventId" || is_transient_code(code) {
            transient.push(described);
        } else if is_blocking_code(code) {
            blocking.push(described);
        } else {
            permanent.push(described);
        }
    }
    if !permanent.is_empty() {
        return Triage::Fail(Error::Unknown(anyhow::anyhow!(
            "PutEvents refused {} of {sent} entries: {}",
            permanent.len(),
            permanent.join("; ")
        )));
    }
    if !blocking.is_empty() {
        return Triage::Fail(Error::Blocked(format!(
            "PutEvents refused {} of {sent} entries: {}",
            blocking.len(),
            blocking.join("; ")
        )));
    }
    if failed.is_empty() {
        return Triage::Taken;
    }
    Triage::Retry {
        failed,
        reason: transient.join("; "),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::time::Duration;

    use aws_sdk_eventbridge::config::http::HttpResponse;
    use aws_sdk_eventbridge::error::{ErrorMetadata, SdkError};
    use aws_sdk_eventbridge::operation::put_events::PutEventsError;
    use aws_sdk_eventbridge::types::PutEventsResultEntry;
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::domain::{Body, ChangeEvent, Document, DocumentId, Title, UserId};

    fn event(n: u64, title: &str) -> DocumentEvent {
        let at = Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap();
        let owner = UserId::parse("ann").unwrap();
        let document = Document {
            id: DocumentId::parse(&format!("0190a5f0-0000-7000-8000-{n:012}")).unwrap(),
            title: Title::parse(title).unwrap(),
            body: Body::parse("never in an event").unwrap(),
            owner: owner.clone(),
            collaborators: Default::default(),
            version: 1,
            created_at: at,
            updated_at: at,
            updated_by: owner,
        };
        DocumentEvent::from_change(&ChangeEvent::written(None, document, n.to_string()))
    }

    /// The default attempts, with pauses of a millisecond.
    fn config() -> EventBridgeConfig {
        let mut config = EventBridgeConfig::new(EventBusName::parse("docfan-test").unwrap());
        config.retry.initial_backoff = Duration::from_millis(1);
        config.retry.max_backoff = Duration::from_millis(1);
        config
    }

    fn taken() -> PutEventsResultEntry {
        PutEventsResultEntry::builder().event_id("aws-id").build()
    }

    fn failed(code: &str) -> PutEventsResultEntry {
        PutEventsResultEntry::builder()
            .error_code(code)
            .error_message("no")
            .build()
    }

    fn answer(entries: Vec<PutEventsResultEntry>) -> PutEventsOutput {
        let failures = entries.iter().filter(|e| e.error_code.is_some()).count();
        PutEventsOutput::builder()
            .failed_entry_count(failures as i32)
            .set_entries(Some(entries))
            .build()
    }

    /// EventBridge as a script: each call answers with the next prepared answer for
    /// as many entries as were sent, and records which events (by resource) it got.
    #[derive(Default)]
    struct Scripted {
        answers: Mutex<VecDeque<Result<Vec<&'static str>>>>,
        calls: Mutex<Vec<Vec<String>>>,
    }

    impl Scripted {
        /// `codes[i]` answers entry `i`: `""` taken, anything else its error code.
        fn then(self, codes: Vec<&'static str>) -> Self {
            self.answers.lock().unwrap().push_back(Ok(codes));
            self
        }

        fn then_err(self, err: Error) -> Self {
            self.answers.lock().unwrap().push_back(Err(err));
            self
        }

        fn calls(&self) -> Vec<Vec<String>> {
            self.calls.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl EventBridgeApi for Scripted {
        async fn put_events(&self, entries: Vec<PutEventsRequestEntry>) -> Result<PutEventsOutput> {
            self.calls
                .lock()
                .unwrap()
                .push(entries.iter().map(|e| e.resources()[0].clone()).collect());
            let codes = self
                .answers
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| Ok(vec![""; entries.len()]))?;
            assert!(codes.len() == entries.len() || codes.is_empty());
            let codes = if codes.is_empty() {
                vec![""; entries.len()]
            } else {
                codes
            };
            Ok(answer(
                codes
                    .into_iter()
                    .map(|c| if c.is_empty() { taken() } else { failed(c) })
                    .collect(),
            ))
        }

        async fn describe_event_bus(&self, _name: &str) -> Result<()> {
            Ok(())
        }
    }

    fn resource(n: u64) -> String {
        format!("document/0190a5f0-0000-7000-8000-{n:012}")
    }

    #[test]
    fn an_entry_carries_the_contracts_fields_and_no_body() {
        let bus = EventBridgeBus::with_api(Arc::new(Scripted::default()), config());
        let event = event(1, "Plan");
        let entry = bus.entry(&event).unwrap();
        assert_eq!(entry.event_bus_name(), Some("docfan-test"));
        assert_eq!(entry.source(), Some("docfan"));
        assert_eq!(entry.detail_type(), Some("document.created"));
        assert_eq!(entry.resources(), [resource(1)]);
        assert_eq!(entry.time, Some(DateTime::from_secs(1735787045)));
        let detail: serde_json::Value = serde_json::from_str(entry.detail().unwrap()).unwrap();
        assert_eq!(detail, serde_json::to_value(&event.detail).unwrap());
        assert_eq!(detail["version"], 1);
        assert!(!entry.detail().unwrap().contains("never in an event"));
    }

    #[test]
    fn bus_names_and_arns_parse_and_malformed_ones_say_why() {
        for good in [
            "docfan-dev",
            "a/b.c_d-e",
            "arn:aws:events:eu-west-1:123456789012:event-bus/docfan-prod",
        ] {
            assert_eq!(EventBusName::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "docfan dev",
            "docfan*",
            &"x".repeat(257),
            "arn:aws:events:eu-west-1:123456789012:rule/docfan",
            "arn:aws:sqs:eu-west-1:123456789012:event-bus/docfan",
            "arn:aws:events:eu-west-1:1234:event-bus/docfan",
            "arn:aws:events",
        ] {
            let err = EventBusName::parse(bad).unwrap_err().to_string();
            assert!(err.contains("DOCFAN_EVENT_BUS_NAME"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn batches_hold_at_most_ten_entries_in_order() {
        let bus = EventBridgeBus::with_api(Arc::new(Scripted::default()), config());
        let entries: Vec<_> = (1..=23)
            .map(|n| bus.entry(&event(n, "t")).unwrap())
            .collect();
        let cut = batches(entries).unwrap();
        assert_eq!(cut.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 3]);
        let order: Vec<String> = cut
            .iter()
            .flatten()
            .map(|e| e.resources()[0].clone())
            .collect();
        assert_eq!(order, (1..=23).map(resource).collect::<Vec<_>>());
    }

    #[test]
    fn batches_stay_under_the_request_size_and_refuse_an_entry_over_it() {
        let sized = |detail_bytes: usize| {
            PutEventsRequestEntry::builder()
                .source("docfan")
                .detail_type("document.updated")
                .resources("document/x")
                .time(DateTime::from_secs(0))
                .detail(format!("\"{}\"", "x".repeat(detail_bytes - 2)))
                .build()
        };
        // 14 + 6 + 16 + 10 = 46 bytes besides the detail.
        assert_eq!(entry_size(&sized(100)), 146);
        let big = MAX_REQUEST_BYTES / 3;
        let cut = batches(vec![sized(big), sized(big), sized(big), sized(10)]).unwrap();
        assert_eq!(cut.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2]);
        for batch in &cut {
            assert!(batch.iter().map(entry_size).sum::<usize>() <= MAX_REQUEST_BYTES);
        }
        // Exactly at the limit still goes, alone.
        let at_limit = sized(MAX_REQUEST_BYTES - 46);
        assert_eq!(entry_size(&at_limit), MAX_REQUEST_BYTES);
        assert_eq!(batches(vec![at_limit]).unwrap().len(), 1);
        assert!(matches!(
            batches(vec![sized(10), sized(MAX_REQUEST_BYTES)]),
            Err(Error::TooLarge(_))
        ));
    }

    #[test]
    fn triage_retries_only_the_entries_that_failed_transiently() {
        let output = answer(vec![
            taken(),
            failed("ThrottlingException"),
            taken(),
            failed("InternalFailure"),
        ]);
        match triage(4, &output) {
            Triage::Retry { failed, reason } => {
                assert_eq!(failed, [1, 3]);
                assert!(reason.contains("ThrottlingException"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            triage(2, &answer(vec![taken(), taken()])),
            Triage::Taken
        ));
    }

    #[test]
    fn triage_blocks_on_access_and_fails_for_good_on_a_malformed_entry() {
        let blocked = answer(vec![
            taken(),
            failed("ThrottlingException"),
            failed("NotAuthorizedForSourceException"),
        ]);
        assert!(matches!(
            triage(3, &blocked),
            Triage::Fail(Error::Blocked(_))
        ));
        for code in ["AccessDeniedException", "ResourceNotFoundException"] {
            assert!(matches!(
                triage(1, &answer(vec![failed(code)])),
                Triage::Fail(Error::Blocked(_))
            ));
        }
        // A malformed entry outweighs the rest: its record is dead-lettered.
        let poison = answer(vec![
            failed("AccessDeniedException"),
            failed("MalformedDetail"),
        ]);
        match triage(2, &poison) {
            Triage::Fail(e @ Error::Unknown(_)) => {
                assert!(!e.is_transient());
                assert!(e.to_string().contains("MalformedDetail"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            triage(1, &answer(vec![failed("InvalidArgument")])),
            Triage::Fail(Error::Unknown(_))
        ));
    }

    #[test]
    fn triage_distrusts_an_answer_that_does_not_line_up() {
        // An entry with neither an id nor a code was not taken.
        let silent = answer(vec![taken(), PutEventsResultEntry::builder().build()]);
        assert!(matches!(triage(2, &silent), Triage::Retry { failed, .. } if failed == [1]));
        // Fewer entries than sent, some failed: send them all again.
        let short = PutEventsOutput::builder()
            .failed_entry_count(1)
            .entries(failed("InternalFailure"))
            .build();
        assert!(matches!(triage(3, &short), Triage::Retry { failed, .. } if failed == [0, 1, 2]));
    }

    #[tokio::test]
    async fn publish_sends_again_only_what_failed_until_all_is_taken() {
        let api = Arc::new(
            Scripted::default()
                .then(vec!["", "ThrottlingException", "", "InternalFailure"])
                .then(vec!["", "ThrottlingException"])
                .then(vec![""]),
        );
        let bus = EventBridgeBus::with_api(api.clone(), config());
        let events: Vec<_> = (1..=4).map(|n| event(n, "t")).collect();
        bus.publish(&events).await.unwrap();
        assert_eq!(
            api.calls(),
            [
                (1..=4).map(resource).collect::<Vec<_>>(),
                vec![resource(2), resource(4)],
                vec![resource(4)],
            ]
        );
    }

    #[tokio::test]
    async fn publish_gives_up_after_the_policys_attempts() {
        let api = Arc::new(
            Scripted::default()
                .then(vec!["ThrottlingException"])
                .then(vec!["ThrottlingException"])
                .then(vec!["ThrottlingException"])
                .then(vec![""]),
        );
        let bus = EventBridgeBus::with_api(api.clone(), config());
        let err = bus.publish(&[event(1, "t")]).await.unwrap_err();
        assert!(matches!(err, Error::Unavailable(_)), "{err}");
        assert!(err.to_string().contains("after 3 attempts"), "{err}");
        assert_eq!(api.calls().len(), 3);
    }

    #[tokio::test]
    async fn publish_splits_into_requests_of_ten_and_retries_within_each() {
        let mut first = vec![""; 10];
        first[9] = "ThrottlingException";
        let api = Arc::new(Scripted::default().then(first));
        let bus = EventBridgeBus::with_api(api.clone(), config());
        let events: Vec<_> = (1..=12).map(|n| event(n, "t")).collect();
        bus.publish(&events).await.unwrap();
        let calls = api.calls();
        assert_eq!(
            calls.iter().map(Vec::len).collect::<Vec<_>>(),
            [10, 1, 2],
            "{calls:?}"
        );
        assert_eq!(calls[1], [resource(10)]);
    }

    #[tokio::test]
    async fn a_blocked_or_refused_request_is_not_retried_here() {
        let api =
            Arc::new(Scripted::default().then_err(Error::Blocked("AccessDeniedException".into())));
        let bus = EventBridgeBus::with_api(api.clone(), config());
        let err = bus.publish(&[event(1, "t")]).await.unwrap_err();
        assert!(matches!(err, Error::Blocked(_)));
        assert!(
            err.is_transient(),
            "retried by the fan-out, never dead-lettered"
        );
        assert_eq!(api.calls().len(), 1);

        let api = Arc::new(Scripted::default().then(vec!["MalformedDetail"]));
        let bus = EventBridgeBus::with_api(api.clone(), config());
        let err = bus.publish(&[event(1, "t")]).await.unwrap_err();
        assert!(!err.is_transient(), "{err}");
        assert_eq!(api.calls().len(), 1);
    }

    #[tokio::test]
    async fn a_failed_request_is_retried_whole_when_transient() {
        let api = Arc::new(
            Scripted::default()
                .then_err(Error::Unavailable("503".into()))
                .then(vec![""]),
        );
        let bus = EventBridgeBus::with_api(api.clone(), config());
        bus.publish(&[event(1, "t")]).await.unwrap();
        assert_eq!(api.calls().len(), 2);
    }

    fn sdk_failure(status: u16, code: &str) -> SdkError<PutEventsError, HttpResponse> {
        SdkError::service_error(
            PutEventsError::generic(ErrorMetadata::builder().code(code).message("m").build()),
            HttpResponse::new(status.try_into().unwrap(), "".into()),
        )
    }

    #[test]
    fn request_failures_are_classified_honestly() {
        let classify = |status, code| sdk_error("PutEvents", sdk_failure(status, code));
        for (status, code) in [
            (400, "ThrottlingException"),
            (500, "InternalException"),
            (500, "InternalFailure"),
            (503, "ServiceUnavailable"),
        ] {
            assert!(
                matches!(classify(status, code), Error::Unavailable(_)),
                "{status} {code}"
            );
        }
        for (status, code) in [
            (400, "AccessDeniedException"),
            (400, "ResourceNotFoundException"),
            (403, "UnrecognizedClientException"),
        ] {
            let err = classify(status, code);
            assert!(matches!(err, Error::Blocked(_)), "{status} {code}: {err:?}");
            assert!(err.to_string().contains(code));
        }
        for (status, code) in [(400, "ValidationException"), (413, "RequestEntityTooLarge")] {
            assert!(
                matches!(classify(status, code), Error::Unknown(_)),
                "{status} {code}"
            );
        }
    }
}
