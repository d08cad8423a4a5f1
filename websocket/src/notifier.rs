//! The fan-out's [`Notifier`] on one machine: a change goes to the document's
//! subscribers as [`ChangeDeliveries`] decides (its frame serialized once and shared by
//! all of them), admitted through the replay cursors this process holds.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures_util::StreamExt;
use shared::domain::{Analysis, ChangeEvent, Document};
use shared::live::delivery::analysis_deliveries;
use shared::live::{ChangeDeliveries, Delivery};
use shared::ports::{ConnectionId, Notifier};
use shared::{Error, Result};
use tracing::Instrument;

use crate::cursors::Admission;
use crate::frames::Frame;
use crate::outbox::SendError;
use crate::service::state::Inner;

/// Delivers changes and analyses to subscribed connections. Made by
/// [`ConnectionService::notifier`](crate::ConnectionService::notifier).
#[derive(Clone)]
pub struct LiveNotifier {
    inner: Arc<Inner>,
}

impl LiveNotifier {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// Forgets a connection found gone (API Gateway's 410).
    async fn forget(&self, connection: &ConnectionId) {
        self.inner.metrics.connections_gone.inc();
        self.inner.cursors.forget_connection(connection);
        if let Err(e) = self.inner.ports.registry.remove(connection).await {
            tracing::warn!(connection = %connection, error = %e, "could not forget a gone connection");
        }
    }

    /// Pushes frames that end no subscription: admitted under one lock (a replaying
    /// subscription holds its frame, a version already sent is dropped), then handed
    /// to the outbox in one call.
    async fn broadcast(&self, change: &ChangeEvent, live: Vec<Delivery>) {
        if live.is_empty() {
            return;
        }
        let admissions = self.inner.cursors.admit_each(
            &change.document_id,
            change.version,
            live.iter().map(|d| (&d.subscriber.connection, &d.frame)),
        );
        let sends: Vec<(ConnectionId, Frame)> = live
            .into_iter()
            .zip(admissions)
            .filter(|(_, admission)| matches!(admission, Admission::Send | Admission::Untracked))
            .map(|(delivery, _)| (delivery.subscriber.connection, delivery.frame))
            .collect();
        self.push(sends).await;
    }

    /// Hands each frame to its connection; forgets the connections found gone.
    async fn push(&self, sends: Vec<(ConnectionId, Frame)>) {
        let verdicts = self.inner.ports.outbox.send_to_each(&sends).await;
        let mut sent = 0;
        for ((connection, _), verdict) in sends.iter().zip(verdicts) {
            match verdict {
                Ok(()) => sent += 1,
                Err(SendError::Gone) => self.forget(connection).await,
                Err(e) => {
                    tracing::warn!(connection = %connection, error = %e, "could not push a frame");
                }
            }
        }
        self.inner.metrics.notifications_sent.inc_by(sent);
    }

    async fn deliver(&self, change: &ChangeEvent, delivery: Delivery) -> Result<()> {
        let Delivery {
            subscriber,
            frame,
            ends,
        } = delivery;
        let connection = &subscriber.connection;
        let document = &change.document_id;
        let cursors = &self.inner.cursors;
        // Unsubscribe before anything is recorded as sent, so a failure here leaves the
        // change to be delivered again in full — unless it was sent already. (A frame
        // that does not end the subscription needs no such check: `admit` refuses a
        // version already sent.)
        if ends {
            if cursors.already_sent(connection, document, change.version) {
                return Ok(());
            }
            self.inner
                .ports
                .registry
                .unsubscribe(connection, document)
                .await?;
        }
        let admission = cursors.admit(connection, document, change.version, &frame, ends);
        if matches!(admission, Admission::Send | Admission::Untracked) {
            match self.inner.ports.outbox.send(connection, frame).await {
                Ok(()) => {
                    self.inner.metrics.notifications_sent.inc();
                }
                Err(SendError::Gone) => self.forget(connection).await,
                Err(e) => {
                    tracing::warn!(connection = %connection, error = %e, "could not push a frame");
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Notifier for LiveNotifier {
    async fn publish_change(&self, change: &ChangeEvent) -> Result<()> {
        let span = tracing::info_span!(
            "notify",
            document = %change.document_id,
            version = change.version,
            sequence_number = %change.sequence_number,
        );
        async {
            let subscribers = self
                .inner
                .ports
                .registry
                .subscribers(&change.document_id)
                .await?;
            if subscribers.is_empty() {
                return Ok(());
            }
            let count = subscribers.len();
            // Frames that end a subscription (rare) unsubscribe first, one by one; the
            // rest — the live broadcast — are admitted under one lock and pushed in one
            // call to the outbox.
            let ChangeDeliveries {
                ending,
                live,
                departed,
                frame,
            } = ChangeDeliveries::of(change, subscribers);
            let failure: Mutex<Option<Error>> = Mutex::new(None);
            futures_util::stream::iter(ending)
                .for_each_concurrent(self.inner.config.send_concurrency.max(1), |delivery| {
                    let failure = &failure;
                    async move {
                        if let Err(e) = self.deliver(change, delivery).await {
                            failure.lock().expect("failure lock").get_or_insert(e);
                        }
                    }
                })
                .await;
            self.broadcast(change, live).await;
            tracing::debug!(subscribers = count, bytes = frame.len(), "change delivered");
            for user in departed {
                crate::presence::announce_left(&self.inner, &change.document_id, &user).await;
            }
            match failure.into_inner().expect("failure lock") {
                Some(e) => Err(e),
                None => Ok(()),
            }
        }
        .instrument(span)
        .await
    }

    async fn publish_analysis(&self, document: &Document, analysis: &Analysis) -> Result<()> {
        let subscribers = self.inner.ports.registry.subscribers(&document.id).await?;
        if subscribers.is_empty() {
            return Ok(());
        }
        self.push(analysis_deliveries(document, analysis, subscribers))
            .await;
        Ok(())
    }
}
