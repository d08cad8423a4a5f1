//! The [`ConnectionRegistry`] contract: connections, subscriptions both ways, refresh,
//! removal with its subscriptions, unknown connections, and what a subscription carries
//! (its options and the connection's presence cursor).

use std::sync::Arc;

use chrono::TimeDelta;
use shared::Error;
use shared::domain::{DocumentId, UserId};
use shared::ports::{
    Connection, ConnectionId, ConnectionRegistry, PresenceCursor, SubscribeOptions, Subscriber,
};

use super::{now_millis, unique_user};

fn connection(user: &shared::domain::UserId) -> Connection {
    let now = now_millis();
    Connection {
        id: ConnectionId(format!("c{}", uuid::Uuid::new_v4().simple()).into()),
        user: user.clone(),
        expires_at: now + TimeDelta::hours(1),
        connected_at: now,
    }
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

pub async fn run(registry: Arc<dyn ConnectionRegistry>) {
    let (ann, bob) = (unique_user("ann"), unique_user("bob"));
    let (a, b) = (connection(&ann), connection(&bob));
    registry.register(&a).await.unwrap();
    registry.register(&b).await.unwrap();
    assert_eq!(registry.get(&a.id).await.unwrap().as_ref(), Some(&a));

    let later = a.expires_at + TimeDelta::minutes(30);
    registry.refresh(&a.id, later).await.unwrap();
    assert_eq!(
        registry.get(&a.id).await.unwrap().unwrap().expires_at,
        later
    );

    let (d1, d2) = (DocumentId::generate(), DocumentId::generate());
    registry
        .subscribe(&a.id, &d1, SubscribeOptions::default())
        .await
        .unwrap();
    registry
        .subscribe(&a.id, &d1, SubscribeOptions::default())
        .await
        .unwrap();
    registry
        .subscribe(&b.id, &d1, SubscribeOptions::default())
        .await
        .unwrap();
    registry
        .subscribe(&b.id, &d2, SubscribeOptions::default())
        .await
        .unwrap();

    let on_d1 = sorted(
        registry
            .subscribers(&d1)
            .await
            .unwrap()
            .into_iter()
            .map(|s| (s.connection, s.user))
            .collect(),
    );
    assert_eq!(
        on_d1,
        sorted(vec![
            (a.id.clone(), ann.clone()),
            (b.id.clone(), bob.clone())
        ])
    );
    // Each subscription carries its connection's token expiry, through a refresh too.
    let expiry_of = |subscribers: Vec<Subscriber>, id: &ConnectionId| {
        subscribers
            .into_iter()
            .find(|s| &s.connection == id)
            .and_then(|s| s.token_expires_at)
    };
    assert_eq!(
        expiry_of(registry.subscribers(&d1).await.unwrap(), &a.id),
        Some(later)
    );
    let renewed = later + TimeDelta::minutes(30);
    registry.refresh(&a.id, renewed).await.unwrap();
    assert_eq!(
        expiry_of(registry.subscribers(&d1).await.unwrap(), &a.id),
        Some(renewed)
    );
    assert_eq!(
        expiry_of(registry.subscribers(&d1).await.unwrap(), &b.id),
        Some(b.expires_at)
    );
    assert_eq!(
        sorted(registry.subscriptions(&b.id).await.unwrap()),
        sorted(vec![d1, d2])
    );

    registry.unsubscribe(&a.id, &d1).await.unwrap();
    registry.unsubscribe(&a.id, &d1).await.unwrap();
    assert_eq!(registry.subscribers(&d1).await.unwrap().len(), 1);
    assert!(registry.subscriptions(&a.id).await.unwrap().is_empty());

    // Removing a connection removes its subscriptions.
    registry.remove(&b.id).await.unwrap();
    assert!(registry.subscribers(&d1).await.unwrap().is_empty());
    assert!(registry.subscribers(&d2).await.unwrap().is_empty());
    assert_eq!(registry.get(&b.id).await.unwrap(), None);
    assert!(registry.subscriptions(&b.id).await.unwrap().is_empty());

    // Registering the same id again starts without subscriptions.
    registry
        .subscribe(&a.id, &d2, SubscribeOptions::default())
        .await
        .unwrap();
    registry.register(&a).await.unwrap();
    assert!(registry.subscribers(&d2).await.unwrap().is_empty());
    assert!(registry.subscriptions(&a.id).await.unwrap().is_empty());

    // Unknown connections: subscribe and refresh fail, the rest is a no-op.
    let ghost = ConnectionId(format!("ghost{}", uuid::Uuid::new_v4().simple()).into());
    assert!(matches!(
        registry
            .subscribe(&ghost, &d1, SubscribeOptions::default())
            .await,
        Err(Error::NotFound)
    ));
    assert!(matches!(
        registry.refresh(&ghost, later).await,
        Err(Error::NotFound)
    ));
    registry.unsubscribe(&ghost, &d1).await.unwrap();
    registry.remove(&ghost).await.unwrap();
    assert_eq!(registry.get(&ghost).await.unwrap(), None);
    assert!(registry.subscribers(&d1).await.unwrap().is_empty());

    options_and_cursors(registry.as_ref()).await;
    connections_per_user(registry.as_ref()).await;
    expired_tokens(registry.as_ref()).await;
}

/// `expired` finds the connections whose token has run out, for the sweep, and no
/// other; a refresh takes a connection out of it.
async fn expired_tokens(registry: &dyn ConnectionRegistry) {
    let now = now_millis();
    let mut stale = connection(&unique_user("old"));
    stale.expires_at = now - TimeDelta::minutes(1);
    let mut renewed = connection(&unique_user("new"));
    renewed.expires_at = now - TimeDelta::minutes(1);
    let fresh = connection(&unique_user("fresh"));
    for c in [&stale, &renewed, &fresh] {
        registry.register(c).await.unwrap();
    }
    registry
        .refresh(&renewed.id, now + TimeDelta::hours(1))
        .await
        .unwrap();
    let expired = registry.expired(now, 1_000).await.unwrap();
    assert!(expired.contains(&stale.id), "{expired:?}");
    assert!(!expired.contains(&renewed.id), "{expired:?}");
    assert!(!expired.contains(&fresh.id), "{expired:?}");
    assert_eq!(registry.expired(now, 0).await.unwrap(), Vec::new());
    assert!(
        registry
            .expired(now - TimeDelta::hours(1), 1_000)
            .await
            .unwrap()
            .is_empty()
    );
    for c in [&stale, &renewed, &fresh] {
        registry.remove(&c.id).await.unwrap();
    }
}

/// `user_connections` counts a user's live connections, stopping at its bound. The
/// DynamoDB adapter reads an eventually consistent index, so each count is awaited for
/// a few seconds rather than read once.
async fn connections_per_user(registry: &dyn ConnectionRegistry) {
    async fn settles(
        registry: &dyn ConnectionRegistry,
        user: &UserId,
        at_most: usize,
        want: usize,
    ) {
        let mut last = None;
        for _ in 0..50 {
            let count = registry.user_connections(user, at_most).await.unwrap();
            if count == want {
                return;
            }
            last = Some(count);
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("{user} has {last:?} connections counted up to {at_most}, not {want}");
    }
    let (cat, dan) = (unique_user("cat"), unique_user("dan"));
    let cats: Vec<Connection> = (0..3).map(|_| connection(&cat)).collect();
    for c in &cats {
        registry.register(c).await.unwrap();
    }
    registry.register(&connection(&dan)).await.unwrap();
    settles(registry, &cat, 16, 3).await;
    settles(registry, &cat, 2, 2).await;
    settles(registry, &dan, 16, 1).await;
    settles(registry, &unique_user("eve"), 16, 0).await;
    registry.remove(&cats[0].id).await.unwrap();
    settles(registry, &cat, 16, 2).await;
    // Registering the same id again is still one connection.
    registry.register(&cats[1]).await.unwrap();
    settles(registry, &cat, 16, 2).await;
}

/// The document's subscribers in connection order.
async fn subscribers(registry: &dyn ConnectionRegistry, document: &DocumentId) -> Vec<Subscriber> {
    let mut subscribers = registry.subscribers(document).await.unwrap();
    subscribers.sort_by(|x, y| x.connection.cmp(&y.connection));
    subscribers
}

fn subscriber(
    connection: &Connection,
    options: SubscribeOptions,
    cursor: Option<PresenceCursor>,
) -> Subscriber {
    Subscriber {
        connection: connection.id.clone(),
        user: connection.user.clone(),
        options,
        cursor,
        token_expires_at: Some(connection.expires_at),
    }
}

/// Options and cursors live on the subscription: set by `subscribe` and `set_cursor`,
/// read back by `subscribers`, replaced or cleared by a repeated subscribe, and gone with
/// the subscription.
async fn options_and_cursors(registry: &dyn ConnectionRegistry) {
    let (a, b) = (
        connection(&unique_user("ann")),
        connection(&unique_user("bob")),
    );
    let (a, b) = if a.id < b.id { (a, b) } else { (b, a) };
    registry.register(&a).await.unwrap();
    registry.register(&b).await.unwrap();
    let (document, elsewhere) = (DocumentId::generate(), DocumentId::generate());
    let whole = SubscribeOptions {
        include_document: true,
    };
    let plain = SubscribeOptions::default();
    registry.subscribe(&a.id, &document, whole).await.unwrap();
    registry.subscribe(&b.id, &document, plain).await.unwrap();

    // Options round-trip; nobody shares a cursor yet.
    assert_eq!(
        subscribers(registry, &document).await,
        vec![subscriber(&a, whole, None), subscriber(&b, plain, None)]
    );

    // A caret, then a backwards selection replacing it; the other subscriber's is its own.
    let caret = PresenceCursor { anchor: 3, head: 3 };
    let selection = PresenceCursor {
        anchor: 12,
        head: 0,
    };
    let far = PresenceCursor {
        anchor: u64::MAX,
        head: 1 << 40,
    };
    registry
        .set_cursor(&a.id, &document, Some(caret))
        .await
        .unwrap();
    assert_eq!(
        subscribers(registry, &document).await,
        vec![
            subscriber(&a, whole, Some(caret)),
            subscriber(&b, plain, None)
        ]
    );
    registry
        .set_cursor(&a.id, &document, Some(selection))
        .await
        .unwrap();
    registry
        .set_cursor(&b.id, &document, Some(far))
        .await
        .unwrap();
    assert_eq!(
        subscribers(registry, &document).await,
        vec![
            subscriber(&a, whole, Some(selection)),
            subscriber(&b, plain, Some(far))
        ]
    );

    // `None` clears the connection's cursor (twice is fine) and leaves the options.
    registry.set_cursor(&a.id, &document, None).await.unwrap();
    registry.set_cursor(&a.id, &document, None).await.unwrap();
    assert_eq!(
        subscribers(registry, &document).await,
        vec![
            subscriber(&a, whole, None),
            subscriber(&b, plain, Some(far))
        ]
    );

    // No cursor without a subscription, and setting one subscribes no one.
    let ghost = ConnectionId(format!("ghost{}", uuid::Uuid::new_v4().simple()).into());
    for (id, on) in [(&a.id, &elsewhere), (&ghost, &document)] {
        for cursor in [Some(caret), None] {
            assert!(
                matches!(
                    registry.set_cursor(id, on, cursor).await,
                    Err(Error::NotFound)
                ),
                "set_cursor({id}, {on}, {cursor:?})"
            );
        }
    }
    assert!(registry.subscribers(&elsewhere).await.unwrap().is_empty());
    assert_eq!(registry.subscribers(&document).await.unwrap().len(), 2);

    // Subscribing again replaces the options and clears the cursor.
    registry
        .set_cursor(&a.id, &document, Some(caret))
        .await
        .unwrap();
    registry.subscribe(&a.id, &document, plain).await.unwrap();
    registry.subscribe(&b.id, &document, whole).await.unwrap();
    assert_eq!(
        subscribers(registry, &document).await,
        vec![subscriber(&a, plain, None), subscriber(&b, whole, None)]
    );

    // The cursor goes with the subscription, and does not bring it back.
    registry
        .set_cursor(&b.id, &document, Some(caret))
        .await
        .unwrap();
    registry.unsubscribe(&b.id, &document).await.unwrap();
    assert!(matches!(
        registry.set_cursor(&b.id, &document, Some(far)).await,
        Err(Error::NotFound)
    ));
    assert_eq!(
        subscribers(registry, &document).await,
        vec![subscriber(&a, plain, None)]
    );
    registry.subscribe(&b.id, &document, plain).await.unwrap();
    assert_eq!(
        subscribers(registry, &document).await,
        vec![subscriber(&a, plain, None), subscriber(&b, plain, None)]
    );

    // So does removing the connection.
    registry
        .set_cursor(&a.id, &document, Some(caret))
        .await
        .unwrap();
    registry.remove(&a.id).await.unwrap();
    assert!(matches!(
        registry.set_cursor(&a.id, &document, Some(caret)).await,
        Err(Error::NotFound)
    ));
    assert_eq!(
        subscribers(registry, &document).await,
        vec![subscriber(&b, plain, None)]
    );
    registry.remove(&b.id).await.unwrap();
    assert!(registry.subscribers(&document).await.unwrap().is_empty());
}
