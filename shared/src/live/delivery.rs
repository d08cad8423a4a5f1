//! Who gets which frame of a change: the decision every notifier makes the same way
//! before it pushes anything.
//!
//! - A subscriber who may still read the document gets the change's frame (with the
//!   document when the subscription asked for it); after a deletion that frame ends
//!   the subscription.
//! - A subscriber who may no longer read it (removed from the collaborators) gets
//!   `access.revoked`, which ends the subscription, and its user has departed: the
//!   others are told `presence.left` unless another of the user's connections still
//!   follows (the notifier asks its registry).
//!
//! Each frame is serialized once, however many subscribers receive it.

use crate::domain::{Analysis, ChangeEvent, ChangeKind, Document, UserId};
use crate::ports::{ConnectionId, Subscriber};

use super::frames::{self, Frame};

/// One frame for one subscriber.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub subscriber: Subscriber,
    pub frame: Frame,
    /// The frame ends the subscription (a revocation or a deletion): unsubscribe it
    /// before the frame is pushed.
    pub ends: bool,
}

/// A change's deliveries.
#[derive(Debug, Clone)]
pub struct ChangeDeliveries {
    /// Those that end their subscription (rare: a revocation, a deletion).
    pub ending: Vec<Delivery>,
    /// The live broadcast: those that keep it.
    pub live: Vec<Delivery>,
    /// Users who lost access with this change, each once; announce their departure
    /// (unless the document was deleted, which ends everyone's subscription).
    pub departed: Vec<UserId>,
    /// The change's frame without the document, as most subscribers get it.
    pub frame: Frame,
}

impl ChangeDeliveries {
    /// The deliveries of `change` to the document's `subscribers`.
    pub fn of(change: &ChangeEvent, subscribers: Vec<Subscriber>) -> Self {
        let frame = frames::change(change, false);
        let with_document = subscribers
            .iter()
            .any(|s| s.options.include_document)
            .then(|| frames::change(change, true));
        let mut revoked: Option<Frame> = None;
        let deleted = change.kind == ChangeKind::Deleted;
        let latest = change.latest();
        let mut plan = Self {
            ending: Vec::new(),
            live: Vec::with_capacity(subscribers.len()),
            departed: Vec::new(),
            frame: frame.clone(),
        };
        for subscriber in subscribers {
            if latest.access_for(&subscriber.user).is_some() {
                let frame = match (&with_document, subscriber.options.include_document) {
                    (Some(full), true) => full.clone(),
                    _ => frame.clone(),
                };
                let delivery = Delivery {
                    subscriber,
                    frame,
                    ends: deleted,
                };
                if deleted {
                    plan.ending.push(delivery);
                } else {
                    plan.live.push(delivery);
                }
            } else {
                if !deleted && !plan.departed.contains(&subscriber.user) {
                    plan.departed.push(subscriber.user.clone());
                }
                plan.ending.push(Delivery {
                    subscriber,
                    frame: revoked
                        .get_or_insert_with(|| frames::access_revoked(&change.document_id))
                        .clone(),
                    ends: true,
                });
            }
        }
        plan
    }
}

/// `analysis.completed` for each subscriber who may read the analysed document.
pub fn analysis_deliveries(
    document: &Document,
    analysis: &Analysis,
    subscribers: Vec<Subscriber>,
) -> Vec<(ConnectionId, Frame)> {
    let frame = frames::analysis_completed(analysis);
    subscribers
        .into_iter()
        .filter(|s| document.access_for(&s.user).is_some())
        .map(|s| (s.connection, frame.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::domain::{Body, Collaborators, DocumentId, Role, Title};
    use crate::ports::SubscribeOptions;

    fn user(name: &str) -> UserId {
        UserId::parse(name).unwrap()
    }

    fn document(collaborators: &[(&str, Role)]) -> Document {
        let now = Utc::now();
        Document {
            id: DocumentId::generate(),
            title: Title::parse("Plan").unwrap(),
            body: Body::parse("draft").unwrap(),
            owner: user("ann"),
            collaborators: collaborators
                .iter()
                .map(|(u, r)| (user(u), *r))
                .collect::<Collaborators>(),
            version: 1,
            created_at: now,
            updated_at: now,
            updated_by: user("ann"),
        }
    }

    fn subscriber(connection: &str, name: &str, include_document: bool) -> Subscriber {
        Subscriber {
            connection: ConnectionId(connection.into()),
            user: user(name),
            options: SubscribeOptions { include_document },
            cursor: None,
            token_expires_at: None,
        }
    }

    fn kind(frame: &Frame) -> String {
        frame.to_json()["type"].as_str().unwrap().to_owned()
    }

    #[test]
    fn readers_get_the_change_and_a_removed_collaborator_is_revoked_once_per_user() {
        let before = document(&[("bob", Role::Editor)]);
        let mut after = before.clone();
        after.collaborators = Collaborators::default();
        after.version = 2;
        let change = ChangeEvent::written(Some(before), after, "2".into());
        let plan = ChangeDeliveries::of(
            &change,
            vec![
                subscriber("a1", "ann", false),
                subscriber("a2", "ann", true),
                subscriber("b1", "bob", false),
                subscriber("b2", "bob", false),
            ],
        );
        let live: Vec<_> = plan
            .live
            .iter()
            .map(|d| {
                (
                    d.subscriber.connection.as_str(),
                    d.frame.to_json().get("document").is_some(),
                )
            })
            .collect();
        assert_eq!(live, [("a1", false), ("a2", true)]);
        assert!(
            plan.live
                .iter()
                .all(|d| !d.ends && kind(&d.frame) == "document.updated")
        );
        assert_eq!(plan.ending.len(), 2);
        assert!(
            plan.ending
                .iter()
                .all(|d| d.ends && kind(&d.frame) == "access.revoked")
        );
        assert_eq!(plan.departed, [user("bob")]);
    }

    #[test]
    fn a_deletion_ends_every_subscription_and_announces_no_departure() {
        let last = document(&[("bob", Role::Viewer)]);
        let change = ChangeEvent::deleted(last, 2, user("ann"), Utc::now(), "2".into());
        let plan = ChangeDeliveries::of(
            &change,
            vec![
                subscriber("a1", "ann", true),
                subscriber("b1", "bob", false),
            ],
        );
        assert!(plan.live.is_empty());
        assert_eq!(plan.ending.len(), 2);
        assert!(
            plan.ending
                .iter()
                .all(|d| d.ends && kind(&d.frame) == "document.deleted")
        );
        assert!(plan.departed.is_empty());
    }
}
