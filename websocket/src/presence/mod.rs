//! Presence: who else follows a document and where their caret is. Ephemeral — kept
//! with the subscription in the connection registry, never in the change stream or the
//! audit trail — and pushed straight to the other subscribers through the outbox.
//!
//! A user appears to the others with their first presence frame, and to a newcomer in
//! the snapshot after `subscribed` once they share a cursor; `presence.left` goes out
//! when their last connection stops following the document (unsubscribe, disconnect,
//! lost access).

use std::collections::HashMap;

use shared::domain::{DocumentId, UserId};
use shared::ports::{ConnectionId, PresenceCursor, Subscriber};

use crate::frames::{self, Frame};
use crate::outbox::SendError;
use crate::service::state::Inner;

pub mod limit;

pub use limit::PresenceLimit;

/// Sends `frame` to `others` in one call to the outbox (a connection found gone is left
/// to the notifier and the disconnect to forget).
async fn to_others(inner: &Inner, others: Vec<Subscriber>, frame: Frame) {
    let sends: Vec<_> = others
        .into_iter()
        .map(|s| (s.connection, frame.clone()))
        .collect();
    let verdicts = inner.ports.outbox.send_to_each(&sends).await;
    let mut sent = 0;
    for ((connection, _), verdict) in sends.iter().zip(verdicts) {
        match verdict {
            Ok(()) => sent += 1,
            Err(SendError::Gone) => {}
            Err(e) => {
                tracing::debug!(connection = %connection, error = %e, "could not push presence");
            }
        }
    }
    inner.metrics.notifications_sent.inc_by(sent);
}

/// Records the connection's cursor and tells the others. `NotFound` when the connection
/// does not follow the document.
pub(crate) async fn share(
    inner: &Inner,
    id: &ConnectionId,
    user: &UserId,
    document: &DocumentId,
    cursor: Option<PresenceCursor>,
) -> shared::Result<()> {
    inner
        .ports
        .registry
        .set_cursor(id, document, cursor)
        .await?;
    let others: Vec<Subscriber> = inner
        .ports
        .registry
        .subscribers(document)
        .await?
        .into_iter()
        .filter(|s| &s.user != user)
        .collect();
    if !others.is_empty() {
        to_others(inner, others, frames::presence(document, user, cursor)).await;
    }
    Ok(())
}

/// The presence of everyone else following the document who shares a cursor, one frame
/// per user. Those who follow without sharing one are announced by their first presence
/// frame: listing them here would send a thousand frames to each of a thousand readers.
pub(crate) async fn snapshot(
    inner: &Inner,
    user: &UserId,
    document: &DocumentId,
) -> shared::Result<Vec<Frame>> {
    let mut by_user: HashMap<UserId, Option<PresenceCursor>> = HashMap::new();
    for (other, cursor) in inner.ports.registry.cursors(document).await? {
        if &other == user {
            continue;
        }
        by_user.entry(other).or_insert(Some(cursor));
    }
    let mut users: Vec<_> = by_user.into_iter().collect();
    users.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(users
        .into_iter()
        .filter(|(_, cursor)| cursor.is_some())
        .map(|(other, cursor)| frames::presence(document, &other, cursor))
        .collect())
}

/// Tells the document's other subscribers that `user` left, unless another of their
/// connections still follows it.
pub(crate) async fn announce_left(inner: &Inner, document: &DocumentId, user: &UserId) {
    // Another of the user's connections still follows: nobody left.
    match inner.ports.registry.follows(document, user).await {
        Ok(false) => {}
        Ok(true) => return,
        Err(e) => {
            tracing::debug!(document = %document, error = %e, "could not announce a departure");
            return;
        }
    }
    let subscribers = match inner.ports.registry.subscribers(document).await {
        Ok(subscribers) => subscribers,
        Err(e) => {
            tracing::debug!(document = %document, error = %e, "could not announce a departure");
            return;
        }
    };
    if subscribers.is_empty() {
        return;
    }
    to_others(inner, subscribers, frames::presence_left(document, user)).await;
}
