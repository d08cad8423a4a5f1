//! The [`Notifier`] of the Lambda functions that fan out (the live stream consumer, the
//! analysis worker): the document's subscribers from the DynamoDB registry, their
//! frames decided by [`ChangeDeliveries`] as on one machine, pushed with
//! `post_to_connection`. It needs no connection service: those functions never verify
//! a token nor hold a replay, so nothing here is kept between invocations.
//!
//! - A frame that ends a subscription (a revocation, a deletion) is pushed after the
//!   subscription is removed, so a failure to remove it fails the delivery (the stream
//!   retries) before the client is told anything.
//! - A connection whose token has expired (the expiry is kept with each subscription)
//!   gets nothing more: it is closed (`DELETE @connections`) and forgotten, as the local
//!   server closes it when its token runs out. Clients renew with an `auth` frame before
//!   then.
//! - A connection API Gateway calls gone (410) is forgotten in the registry.
//! - A user who lost access is announced `presence.left` to the others, unless another
//!   of the user's connections still follows the document.
//! - Other push failures (throttling past the SDK's retries, a frame over 128 KB) are
//!   logged and skipped: a client that misses a frame catches up from `sinceVersion`.

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::StreamExt;

use super::push::{ConnectionPusher, PushError};
use crate::Result;
use crate::clock::Clock;
use crate::domain::{Analysis, ChangeEvent, Document, DocumentId, UserId};
use crate::live::delivery::analysis_deliveries;
use crate::live::{ChangeDeliveries, Delivery, Frame, frames};
use crate::ports::{ConnectionId, ConnectionRegistry, Notifier, Subscriber};

/// Posts at most this many frames at once per broadcast (the pusher bounds the process
/// as a whole too).
const CONCURRENCY: usize = 64;

/// Delivers changes and analyses to subscribers through API Gateway.
#[derive(Clone)]
pub struct ApiGatewayNotifier {
    registry: Arc<dyn ConnectionRegistry>,
    pusher: ConnectionPusher,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for ApiGatewayNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiGatewayNotifier { .. }")
    }
}

impl ApiGatewayNotifier {
    pub fn new(
        registry: Arc<dyn ConnectionRegistry>,
        pusher: ConnectionPusher,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            registry,
            pusher,
            clock,
        }
    }

    /// The document's subscribers whose tokens are still valid; the others are closed
    /// and forgotten.
    async fn live_subscribers(&self, document: &DocumentId) -> Result<Vec<Subscriber>> {
        let now = self.clock.now();
        let (expired, live): (Vec<Subscriber>, Vec<Subscriber>) = self
            .registry
            .subscribers(document)
            .await?
            .into_iter()
            .partition(|s| s.expired(now));
        for subscriber in expired {
            let connection = &subscriber.connection;
            tracing::info!(connection = %connection, "closing a connection whose token has expired");
            match self.pusher.disconnect(connection).await {
                Ok(()) | Err(PushError::Gone) => self.forget(connection).await,
                Err(e) => {
                    tracing::warn!(connection = %connection, error = %e, "could not close an expired connection");
                }
            }
        }
        Ok(live)
    }

    /// Posts each frame to its connection; forgets the connections found gone.
    async fn push(&self, sends: Vec<(ConnectionId, Frame)>) {
        let gone: Vec<ConnectionId> = futures_util::stream::iter(sends)
            .map(|(to, frame)| async move {
                match self.pusher.post(&to, &frame.bytes()).await {
                    Ok(()) => None,
                    Err(PushError::Gone) => Some(to),
                    Err(e) => {
                        tracing::warn!(connection = %to, error = %e, "could not push a frame");
                        None
                    }
                }
            })
            .buffer_unordered(CONCURRENCY)
            .filter_map(|gone| async move { gone })
            .collect()
            .await;
        for connection in gone {
            self.forget(&connection).await;
        }
    }

    async fn forget(&self, connection: &ConnectionId) {
        if let Err(e) = self.registry.remove(connection).await {
            tracing::warn!(connection = %connection, error = %e, "could not forget a gone connection");
        }
    }

    /// Removes the subscription, then pushes the frame that ends it.
    async fn end(&self, document: &DocumentId, delivery: Delivery) -> Result<()> {
        let connection = delivery.subscriber.connection;
        self.registry.unsubscribe(&connection, document).await?;
        self.push(vec![(connection, delivery.frame)]).await;
        Ok(())
    }

    /// `presence.left` to the document's subscribers, unless the user still follows it.
    async fn announce_left(&self, document: &DocumentId, user: &UserId) -> Result<()> {
        if self.registry.follows(document, user).await? {
            return Ok(());
        }
        let frame = frames::presence_left(document, user);
        let subscribers = self.live_subscribers(document).await?;
        self.push(
            subscribers
                .into_iter()
                .map(|s| (s.connection, frame.clone()))
                .collect(),
        )
        .await;
        Ok(())
    }
}

#[async_trait]
impl Notifier for ApiGatewayNotifier {
    async fn publish_change(&self, change: &ChangeEvent) -> Result<()> {
        let document = &change.document_id;
        let subscribers = self.live_subscribers(document).await?;
        if subscribers.is_empty() {
            return Ok(());
        }
        let ChangeDeliveries {
            ending,
            live,
            departed,
            ..
        } = ChangeDeliveries::of(change, subscribers);
        let ended: Vec<Result<()>> = futures_util::stream::iter(ending)
            .map(|delivery| self.end(document, delivery))
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        self.push(
            live.into_iter()
                .map(|d| (d.subscriber.connection, d.frame))
                .collect(),
        )
        .await;
        for user in departed {
            if let Err(e) = self.announce_left(document, &user).await {
                tracing::debug!(document = %document, error = %e, "could not announce a departure");
            }
        }
        ended.into_iter().collect()
    }

    async fn publish_analysis(&self, document: &Document, analysis: &Analysis) -> Result<()> {
        let subscribers = self.live_subscribers(&document.id).await?;
        if !subscribers.is_empty() {
            self.push(analysis_deliveries(document, analysis, subscribers))
                .await;
        }
        Ok(())
    }
}
