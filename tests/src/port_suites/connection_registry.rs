//! The [`ConnectionRegistry`] contract: connections, subscriptions both ways, refresh,
//! removal with its subscriptions, and unknown connections.

use std::sync::Arc;

use chrono::TimeDelta;
use shared::Error;
use shared::domain::DocumentId;
use shared::ports::{Connection, ConnectionId, ConnectionRegistry};

use super::{now_millis, unique_user};

fn connection(user: &shared::domain::UserId) -> Connection {
    let now = now_millis();
    Connection {
        id: ConnectionId(format!("c{}", uuid::Uuid::new_v4().simple())),
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
    registry.subscribe(&a.id, &d1).await.unwrap();
    registry.subscribe(&a.id, &d1).await.unwrap();
    registry.subscribe(&b.id, &d1).await.unwrap();
    registry.subscribe(&b.id, &d2).await.unwrap();

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
    registry.subscribe(&a.id, &d2).await.unwrap();
    registry.register(&a).await.unwrap();
    assert!(registry.subscribers(&d2).await.unwrap().is_empty());
    assert!(registry.subscriptions(&a.id).await.unwrap().is_empty());

    // Unknown connections: subscribe and refresh fail, the rest is a no-op.
    let ghost = ConnectionId(format!("ghost{}", uuid::Uuid::new_v4().simple()));
    assert!(matches!(
        registry.subscribe(&ghost, &d1).await,
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
}
