//! The embedded [`ConnectionRegistry`]: connections and subscriptions in process memory,
//! indexed both ways (connection → documents, document → connections) so finding a
//! document's subscribers costs in proportion to them.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use shared::domain::{DocumentId, UserId};
use shared::ports::{
    Connection, ConnectionId, ConnectionRegistry, PresenceCursor, SubscribeOptions, Subscriber,
};
use shared::{Error, Result};

#[derive(Default)]
struct State {
    connections: HashMap<ConnectionId, (Connection, HashSet<DocumentId>)>,
    by_document: HashMap<DocumentId, HashMap<ConnectionId, Subscription>>,
}

struct Subscription {
    user: UserId,
    options: SubscribeOptions,
    cursor: Option<PresenceCursor>,
}

/// Connections and subscriptions of this process.
#[derive(Default)]
pub struct InProcessRegistry {
    state: RwLock<State>,
}

impl InProcessRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many connections are registered.
    pub fn connection_count(&self) -> usize {
        self.state.read().expect("registry lock").connections.len()
    }
}

impl State {
    fn drop_subscription(&mut self, id: &ConnectionId, document: &DocumentId) {
        if let Some(subscribers) = self.by_document.get_mut(document) {
            subscribers.remove(id);
            if subscribers.is_empty() {
                self.by_document.remove(document);
            }
        }
    }
}

#[async_trait]
impl ConnectionRegistry for InProcessRegistry {
    async fn register(&self, connection: &Connection) -> Result<()> {
        let mut state = self.state.write().expect("registry lock");
        if let Some((_, documents)) = state.connections.remove(&connection.id) {
            for document in documents {
                state.drop_subscription(&connection.id, &document);
            }
        }
        state
            .connections
            .insert(connection.id.clone(), (connection.clone(), HashSet::new()));
        Ok(())
    }

    async fn get(&self, id: &ConnectionId) -> Result<Option<Connection>> {
        let state = self.state.read().expect("registry lock");
        Ok(state.connections.get(id).map(|(c, _)| c.clone()))
    }

    async fn refresh(&self, id: &ConnectionId, expires_at: DateTime<Utc>) -> Result<()> {
        let mut state = self.state.write().expect("registry lock");
        let (connection, _) = state.connections.get_mut(id).ok_or(Error::NotFound)?;
        connection.expires_at = expires_at;
        Ok(())
    }

    async fn remove(&self, id: &ConnectionId) -> Result<()> {
        let mut state = self.state.write().expect("registry lock");
        if let Some((_, documents)) = state.connections.remove(id) {
            for document in documents {
                state.drop_subscription(id, &document);
            }
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        id: &ConnectionId,
        document: &DocumentId,
        options: SubscribeOptions,
    ) -> Result<()> {
        let mut state = self.state.write().expect("registry lock");
        let (connection, documents) = state.connections.get_mut(id).ok_or(Error::NotFound)?;
        documents.insert(*document);
        let user = connection.user.clone();
        state.by_document.entry(*document).or_default().insert(
            id.clone(),
            Subscription {
                user,
                options,
                cursor: None,
            },
        );
        Ok(())
    }

    async fn set_cursor(
        &self,
        id: &ConnectionId,
        document: &DocumentId,
        cursor: Option<PresenceCursor>,
    ) -> Result<()> {
        let mut state = self.state.write().expect("registry lock");
        let subscription = state
            .by_document
            .get_mut(document)
            .and_then(|subscribers| subscribers.get_mut(id))
            .ok_or(Error::NotFound)?;
        subscription.cursor = cursor;
        Ok(())
    }

    async fn unsubscribe(&self, id: &ConnectionId, document: &DocumentId) -> Result<()> {
        let mut state = self.state.write().expect("registry lock");
        if let Some((_, documents)) = state.connections.get_mut(id) {
            documents.remove(document);
        }
        state.drop_subscription(id, document);
        Ok(())
    }

    async fn subscribers(&self, document: &DocumentId) -> Result<Vec<Subscriber>> {
        let state = self.state.read().expect("registry lock");
        Ok(state
            .by_document
            .get(document)
            .map(|subscribers| {
                subscribers
                    .iter()
                    .map(|(connection, subscription)| Subscriber {
                        connection: connection.clone(),
                        user: subscription.user.clone(),
                        options: subscription.options,
                        cursor: subscription.cursor,
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn subscriptions(&self, id: &ConnectionId) -> Result<Vec<DocumentId>> {
        let state = self.state.read().expect("registry lock");
        Ok(state
            .connections
            .get(id)
            .map(|(_, documents)| documents.iter().copied().collect())
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(id: &str, user: &str) -> Connection {
        let now = Utc::now();
        Connection {
            id: ConnectionId(id.into()),
            user: UserId::parse(user).unwrap(),
            expires_at: now + chrono::TimeDelta::hours(1),
            connected_at: now,
        }
    }

    #[tokio::test]
    async fn subscriptions_are_indexed_by_document_and_by_connection() {
        let registry = InProcessRegistry::new();
        let (a, b) = (connection("a", "ann"), connection("b", "bob"));
        registry.register(&a).await.unwrap();
        registry.register(&b).await.unwrap();
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

        let mut on_d1: Vec<_> = registry
            .subscribers(&d1)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.connection.0)
            .collect();
        on_d1.sort();
        assert_eq!(on_d1, ["a", "b"]);
        assert_eq!(registry.subscriptions(&b.id).await.unwrap().len(), 2);

        registry.unsubscribe(&a.id, &d1).await.unwrap();
        assert_eq!(registry.subscribers(&d1).await.unwrap().len(), 1);

        registry.remove(&b.id).await.unwrap();
        assert!(registry.subscribers(&d1).await.unwrap().is_empty());
        assert!(registry.subscribers(&d2).await.unwrap().is_empty());
        assert!(registry.state.read().unwrap().by_document.is_empty());
        assert_eq!(registry.connection_count(), 1);
    }

    #[tokio::test]
    async fn unknown_connections_cannot_subscribe_or_refresh() {
        let registry = InProcessRegistry::new();
        let ghost = ConnectionId("ghost".into());
        let doc = DocumentId::generate();
        assert!(matches!(
            registry
                .subscribe(&ghost, &doc, SubscribeOptions::default())
                .await,
            Err(Error::NotFound)
        ));
        assert!(matches!(
            registry.refresh(&ghost, Utc::now()).await,
            Err(Error::NotFound)
        ));
        registry.unsubscribe(&ghost, &doc).await.unwrap();
        registry.remove(&ghost).await.unwrap();
    }
}
