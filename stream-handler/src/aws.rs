//! The fan-out on the AWS adapters (cargo feature `aws`): OpenSearch, the DynamoDB
//! audit table, the SQS analysis queue, the EventBridge bus when `DOCFAN_EVENT_BUS_NAME`
//! names one, and the SQS dead-letter queue, with the notifier the caller chooses (API
//! Gateway pushes in Lambda, none for operator redrives). The
//! document store's versions table is its body archive: records of documents over 4 KB
//! carry no body, and the fan-out reads it back from there.

use std::sync::Arc;

use shared::aws::AwsClients;
use shared::clock::Clock;
use shared::ports::Notifier;

use crate::give_up::{GiveUp, GiveUpRules};
use crate::handler::{Fanout, HandlerConfig};
use crate::sinks::Sink;
use crate::sinks::analysis::{AnalysisSink, AnalysisSinkConfig};
use crate::sinks::audit::AuditSink;
use crate::sinks::events::EventsSink;
use crate::sinks::notifications::NotificationSink;
use crate::sinks::search::SearchSink;
use crate::xray::SinkTrace;

/// Which consumer of the documents stream a function is: its event source mapping and
/// `DOCFAN_STREAM_CONSUMER` say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumer {
    /// Notifications alone ([`Fanout::live`]).
    Live,
    /// Search, audit, analysis and, when a bus is configured, events
    /// ([`Fanout::index`]), dead-lettering a record that keeps failing by these rules
    /// before its mapping gives up on it.
    Index(GiveUpRules),
}

impl Consumer {
    /// `DOCFAN_STREAM_CONSUMER`: `live` or `index`; required, so that a function never
    /// silently delivers another consumer's sinks. The index consumer also requires
    /// its give-up rules ([`GiveUpRules::from_vars`]).
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        match var("DOCFAN_STREAM_CONSUMER").as_deref() {
            Some("live") => Ok(Consumer::Live),
            Some("index") => Ok(Consumer::Index(GiveUpRules::from_vars(var)?)),
            Some(other) => {
                anyhow::bail!("DOCFAN_STREAM_CONSUMER is {other:?}: it must be `live` or `index`")
            }
            None => {
                anyhow::bail!("DOCFAN_STREAM_CONSUMER is not set: it must be `live` or `index`")
            }
        }
    }
}

/// The consumer's share of [`fanout`]: the live one needs no search, queue or audit
/// configuration; the index one counts failed attempts in the attempts table.
pub fn consumer_fanout(
    clients: &AwsClients,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
    consumer: Consumer,
) -> anyhow::Result<Fanout> {
    traced_consumer_fanout(clients, notifier, clock, consumer, None)
}

/// [`consumer_fanout`] with every sink timed into `trace` when there is one (a Lambda
/// function with active tracing).
pub fn traced_consumer_fanout(
    clients: &AwsClients,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
    consumer: Consumer,
    trace: Option<&Arc<SinkTrace>>,
) -> anyhow::Result<Fanout> {
    let traced = |sinks: Vec<Arc<dyn Sink>>| match trace {
        Some(trace) => sinks.into_iter().map(|sink| trace.wrap(sink)).collect(),
        None => sinks,
    };
    Ok(match consumer {
        Consumer::Live => {
            let sinks: Vec<Arc<dyn Sink>> = vec![Arc::new(NotificationSink::new(
                notifier,
                Default::default(),
            ))];
            // The live consumer keeps no dead letters: the poison-record queue is the
            // index consumer's, which dead-letters every record it cannot decode.
            Fanout::without_dead_letters(traced(sinks), clock, HandlerConfig::default())
                .with_body_archive(Arc::new(clients.document_store()))
                .live()
        }
        Consumer::Index(rules) => {
            let attempts = Arc::new(clients.attempt_log(Arc::clone(&clock)));
            let sinks = traced(sinks(clients, notifier, Arc::clone(&clock))?);
            fanout_of(clients, sinks, clock)?
                .index()
                .giving_up(GiveUp::new(rules, attempts))
        }
    })
}

/// The four sinks, the events sink when `DOCFAN_EVENT_BUS_NAME` names a bus, and the
/// dead-letter queue over `clients`.
pub fn fanout(
    clients: &AwsClients,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Fanout> {
    let sinks = sinks(clients, notifier, Arc::clone(&clock))?;
    fanout_of(clients, sinks, clock)
}

/// Search, notifications, audit, analysis and, when a bus is named, events.
fn sinks(
    clients: &AwsClients,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Vec<Arc<dyn Sink>>> {
    let mut sinks: Vec<Arc<dyn Sink>> = vec![
        Arc::new(SearchSink::new(
            Arc::new(clients.search_index()?),
            Default::default(),
        )),
        Arc::new(NotificationSink::new(notifier, Default::default())),
        Arc::new(AuditSink::new(
            Arc::new(clients.audit_log()),
            Default::default(),
        )),
        // A batch's jobs go to SQS together at its flush, ten to a call.
        Arc::new(AnalysisSink::new(
            Arc::new(clients.analysis_queue(clock)?),
            AnalysisSinkConfig {
                enqueue_at_flush: true,
            },
        )),
    ];
    sinks.extend(events_sink(clients));
    Ok(sinks)
}

/// `sinks` with the dead-letter queue and the body archive over `clients`.
fn fanout_of(
    clients: &AwsClients,
    sinks: Vec<Arc<dyn Sink>>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Fanout> {
    let dead_letters = Arc::new(clients.dead_letter_queue(Arc::clone(&clock))?);
    Ok(
        Fanout::new(sinks, dead_letters, clock, HandlerConfig::default())
            .with_body_archive(Arc::new(clients.document_store())),
    )
}

/// The events sink over the EventBridge bus `DOCFAN_EVENT_BUS_NAME` names (the name was
/// checked when the configuration was read); `None` without one.
pub fn events_sink(clients: &AwsClients) -> Option<Arc<dyn Sink>> {
    clients
        .event_bus()
        .map(|bus| Arc::new(EventsSink::new(Arc::new(bus), Default::default())) as Arc<dyn Sink>)
}

#[cfg(test)]
mod tests {
    use shared::aws::{AwsConfig, EventBusName, OpenSearchConfig};
    use shared::clock::SystemClock;

    use super::*;
    use crate::sinks::notifications::NoSubscribers;

    /// Clients for an index consumer's configuration; nothing is called.
    async fn clients(bus: Option<&str>) -> AwsClients {
        let config = AwsConfig {
            region: Some("us-east-1".into()),
            endpoint_url: Some("http://127.0.0.1:9".into()),
            analysis_queue_url: Some("http://127.0.0.1:9/queue/analysis".into()),
            dead_letter_queue_url: Some("http://127.0.0.1:9/queue/dead".into()),
            opensearch: Some(OpenSearchConfig {
                url: "http://127.0.0.1:9".into(),
                index: "documents".into(),
                sign: false,
                service: "es".into(),
                wait_for_refresh: false,
            }),
            event_bus_name: bus.map(|b| EventBusName::parse(b).unwrap()),
            ..AwsConfig::default()
        };
        AwsClients::load(config).await.unwrap()
    }

    fn names(fanout: &Fanout) -> Vec<&'static str> {
        fanout.sinks().iter().map(|s| s.name()).collect()
    }

    #[tokio::test]
    async fn only_the_index_consumer_publishes_events_and_only_to_a_named_bus() {
        let consumer = |clients: AwsClients, consumer| async move {
            let fanout = consumer_fanout(
                &clients,
                Arc::new(NoSubscribers),
                Arc::new(SystemClock),
                consumer,
            )
            .unwrap();
            names(&fanout)
        };
        let index = Consumer::Index(GiveUpRules {
            max_retries: 8,
            max_age: std::time::Duration::from_secs(3000),
        });
        assert_eq!(
            consumer(clients(Some("docfan-dev")).await, index).await,
            ["search", "audit", "analysis", "events"]
        );
        assert_eq!(
            consumer(clients(None).await, index).await,
            ["search", "audit", "analysis"]
        );
        assert_eq!(
            consumer(clients(Some("docfan-dev")).await, Consumer::Live).await,
            ["notifications"]
        );
    }
}
