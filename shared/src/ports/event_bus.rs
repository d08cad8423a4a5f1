use async_trait::async_trait;

use crate::Result;
use crate::events::DocumentEvent;

/// Where every change goes for consumers outside docfan (the `events` sink): an
/// EventBridge bus on AWS, the webhook rules of `--event-rules` on one machine.
///
/// Each event's `id` is derived from its change, so a change published again (a
/// redelivered record, a redrive) carries the same id: a bus that can deduplicate by it
/// does, and consumers of one that cannot (EventBridge) deduplicate by it themselves.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Publishes the events, in order. Returns once the bus has taken every one of them
    /// durably (EventBridge: `PutEvents` answered with no failed entry; webhooks: each
    /// matching rule's delivery queued, not yet delivered).
    ///
    /// Errors: [`Error::Unavailable`](crate::Error::Unavailable) when the bus cannot take
    /// them now (throttled, unreachable: try again); [`Error::Blocked`](crate::Error::Blocked)
    /// when it refuses until an operator acts (access denied, no such bus: try again,
    /// never dead-letter); [`Error::TooLarge`](crate::Error::TooLarge) or
    /// [`Error::Unknown`](crate::Error::Unknown) for an event it can never take.
    async fn publish(&self, events: &[DocumentEvent]) -> Result<()>;

    /// Whether the bus can take events now.
    async fn health(&self) -> Result<()>;
}
