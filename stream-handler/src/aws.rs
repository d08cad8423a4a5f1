//! The fan-out on the AWS adapters (cargo feature `aws`): OpenSearch, the DynamoDB
//! audit table, the SQS analysis queue and the SQS dead-letter queue, with the notifier
//! the caller chooses (API Gateway pushes in Lambda, none for operator redrives). The
//! document store's versions table is its body archive: records of documents over 4 KB
//! carry no body, and the fan-out reads it back from there.

use std::sync::Arc;

use shared::aws::AwsClients;
use shared::clock::Clock;
use shared::ports::Notifier;

use crate::handler::{Fanout, HandlerConfig};
use crate::sinks::Sink;
use crate::sinks::analysis::AnalysisSink;
use crate::sinks::audit::AuditSink;
use crate::sinks::notifications::NotificationSink;
use crate::sinks::search::SearchSink;

/// Which consumer of the documents stream a function is: its event source mapping and
/// `DOCFAN_STREAM_CONSUMER` say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumer {
    /// Notifications alone ([`Fanout::live`]).
    Live,
    /// Search, audit and analysis ([`Fanout::index`]).
    Index,
}

impl Consumer {
    /// `DOCFAN_STREAM_CONSUMER`: `live` or `index`; required, so that a function never
    /// silently delivers another consumer's sinks.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::parse(std::env::var("DOCFAN_STREAM_CONSUMER").ok().as_deref())
    }

    pub fn parse(raw: Option<&str>) -> anyhow::Result<Self> {
        match raw {
            Some("live") => Ok(Consumer::Live),
            Some("index") => Ok(Consumer::Index),
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
/// configuration.
pub fn consumer_fanout(
    clients: &AwsClients,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
    consumer: Consumer,
) -> anyhow::Result<Fanout> {
    Ok(match consumer {
        Consumer::Live => {
            let sinks: Vec<Arc<dyn Sink>> = vec![Arc::new(NotificationSink::new(
                notifier,
                Default::default(),
            ))];
            // The live consumer keeps no dead letters: the poison-record queue is the
            // index consumer's, which dead-letters every record it cannot decode.
            Fanout::without_dead_letters(sinks, clock, HandlerConfig::default())
                .with_body_archive(Arc::new(clients.document_store()))
                .live()
        }
        Consumer::Index => fanout(clients, notifier, clock)?.index(),
    })
}

/// The four sinks and the dead-letter queue over `clients`.
pub fn fanout(
    clients: &AwsClients,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Fanout> {
    let sinks: Vec<Arc<dyn Sink>> = vec![
        Arc::new(SearchSink::new(
            Arc::new(clients.search_index()?),
            Default::default(),
        )),
        Arc::new(NotificationSink::new(notifier, Default::default())),
        Arc::new(AuditSink::new(
            Arc::new(clients.audit_log()),
            Default::default(),
        )),
        Arc::new(AnalysisSink::new(
            Arc::new(clients.analysis_queue(Arc::clone(&clock))?),
            Default::default(),
        )),
    ];
    let dead_letters = Arc::new(clients.dead_letter_queue(Arc::clone(&clock))?);
    Ok(
        Fanout::new(sinks, dead_letters, clock, HandlerConfig::default())
            .with_body_archive(Arc::new(clients.document_store())),
    )
}
