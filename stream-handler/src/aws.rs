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
