//! The embedded [`ConnectionRegistry`]: connections and subscriptions in process memory,
//! indexed both ways (connection → documents, document → connections) so finding a
//! document's subscribers costs in proportion to them.

use std::collections::HashMap;
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
    /// Each connection with the documents it follows: a list, not a set, since a
    /// connection follows few (at most the service's `max_subscriptions`) and every
    /// held connection pays for it.
    connections: HashMap<ConnectionId, (Connection, Vec<DocumentId>)>,
    by_document: HashMap<DocumentId, HashMap<ConnectionId, Subscription>>,
    /// How many subscriptions of each document share a cursor (documents with none
    /// are absent), so a new subscriber's presence snapshot costs nothing when nobody
    /// shares one, however many follow the document.
    cursors_shared: HashMap<DocumentId, usize>,
}

struct Subscription {
    user: UserId,
    options: SubscribeOptions,
    cursor: Option<PresenceCursor>,
    /// The connection's token expiry, kept here (and by `refresh`) so listing a
    /// document's subscribers looks nothing else up.
    token_expires_at: DateTime<Utc>,
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
            let dropped = subscribers.remove(id);
            if subscribers.is_empty() {
                self.by_document.remove(document);
            }
            if dropped.is_some_and(|s| s.cursor.is_some()) {
                self.cursor_changed(document, -1);
            }
        }
    }

    fn cursor_changed(&mut self, document: &DocumentId, by: isize) {
        let count = self.cursors_shared.entry(*document).or_default();
        *count = count.saturating_add_signed(by);
        if *count == 0 {
            self.cursors_shared.remove(document);
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
            .insert(connection.id.clone(), (connection.clone(), Vec::new()));
        Ok(())
    }

    async fn get(&self, id: &ConnectionId) -> Result<Option<Connection>> {
        let state = self.state.read().expect("registry lock");
        Ok(state.connections.get(id).map(|(c, _)| c.clone()))
    }

    async fn refresh(&self, id: &ConnectionId, expires_at: DateTime<Utc>) -> Result<()> {
        let mut state = self.state.write().expect("registry lock");
        let (connection, documents) = state.connections.get_mut(id).ok_or(Error::NotFound)?;
        connection.expires_at = expires_at;
        let documents = documents.clone();
        for document in documents {
            if let Some(subscription) = state
                .by_document
                .get_mut(&document)
                .and_then(|subscribers| subscribers.get_mut(id))
            {
                subscription.token_expires_at = expires_at;
            }
        }
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
        if !documents.contains(document) {
            documents.push(*document);
        }
        let (user, token_expires_at) = (connection.user.clone(), connection.expires_at);
        let replaced = state.by_document.entry(*document).or_default().insert(
            id.clone(),
            Subscription {
                user,
                options,
                cursor: None,
                token_expires_at,
            },
        );
        if replaced.is_some_and(|s| s.cursor.is_some()) {
            state.cursor_changed(document, -1);
        }
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
        let by = isize::from(cursor.is_some()) - isize::from(subscription.cursor.is_some());
        subscription.cursor = cursor;
        if by != 0 {
            state.cursor_changed(document, by);
        }
        Ok(())
    }

    async fn unsubscribe(&self, id: &ConnectionId, document: &DocumentId) -> Result<()> {
        let mut state = self.state.write().expect("registry lock");
        if let Some((_, documents)) = state.connections.get_mut(id) {
            documents.retain(|d| d != document);
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
                        token_expires_at: Some(subscription.token_expires_at),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn cursors(&self, document: &DocumentId) -> Result<Vec<(UserId, PresenceCursor)>> {
        let state = self.state.read().expect("registry lock");
        if !state.cursors_shared.contains_key(document) {
            return Ok(Vec::new());
        }
        Ok(state
            .by_document
            .get(document)
            .map(|subscribers| {
                subscribers
                    .values()
                    .filter_map(|s| Some((s.user.clone(), s.cursor?)))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn follows(&self, document: &DocumentId, user: &UserId) -> Result<bool> {
        let state = self.state.read().expect("registry lock");
        Ok(state
            .by_document
            .get(document)
            .is_some_and(|subscribers| subscribers.values().any(|s| &s.user == user)))
    }

    async fn expired(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<ConnectionId>> {
        let state = self.state.read().expect("registry lock");
        Ok(state
            .connections
            .values()
            .filter(|(c, _)| c.expires_at <= now)
            .map(|(c, _)| c.id.clone())
            .take(limit)
            .collect())
    }

    async fn user_connections(&self, user: &UserId, at_most: usize) -> Result<usize> {
        let state = self.state.read().expect("registry lock");
        Ok(state
            .connections
            .values()
            .filter(|(c, _)| &c.user == user)
            .take(at_most)
            .count())
    }

    async fn subscriptions(&self, id: &ConnectionId) -> Result<Vec<DocumentId>> {
        let state = self.state.read().expect("registry lock");
        Ok(state
            .connections
            .get(id)
            .map(|(_, documents)| documents.clone())
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
            .map(|s| s.connection.to_string())
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

    #[tokio::test]
    async fn shared_cursors_are_counted_through_every_change_of_a_subscription() {
        let registry = InProcessRegistry::new();
        let (a, b, a2) = (
            connection("a", "ann"),
            connection("b", "bob"),
            connection("a2", "ann"),
        );
        for c in [&a, &b, &a2] {
            registry.register(c).await.unwrap();
        }
        let d = DocumentId::generate();
        for c in [&a, &b, &a2] {
            registry
                .subscribe(&c.id, &d, SubscribeOptions::default())
                .await
                .unwrap();
        }
        let at = |n| Some(PresenceCursor { anchor: n, head: n });
        let shared = async |registry: &InProcessRegistry| {
            let mut cursors = registry.cursors(&d).await.unwrap();
            cursors.sort_by_key(|(_, c)| c.anchor);
            cursors
                .into_iter()
                .map(|(u, c)| (u.to_string(), c.anchor))
                .collect::<Vec<_>>()
        };
        assert!(shared(&registry).await.is_empty());
        registry.set_cursor(&a.id, &d, at(1)).await.unwrap();
        registry.set_cursor(&b.id, &d, at(2)).await.unwrap();
        registry.set_cursor(&b.id, &d, at(3)).await.unwrap();
        assert_eq!(
            shared(&registry).await,
            [("ann".into(), 1), ("bob".into(), 3)]
        );
        // Subscribing again clears the cursor; so does sharing none.
        registry
            .subscribe(&a.id, &d, SubscribeOptions::default())
            .await
            .unwrap();
        assert_eq!(shared(&registry).await, [("bob".to_string(), 3)]);
        registry.set_cursor(&b.id, &d, None).await.unwrap();
        assert!(shared(&registry).await.is_empty());
        assert!(registry.state.read().unwrap().cursors_shared.is_empty());
        // Leaving with a cursor shared takes it away.
        registry.set_cursor(&b.id, &d, at(4)).await.unwrap();
        registry.unsubscribe(&b.id, &d).await.unwrap();
        registry.set_cursor(&a2.id, &d, at(5)).await.unwrap();
        registry.remove(&a2.id).await.unwrap();
        assert!(shared(&registry).await.is_empty());
        assert!(registry.state.read().unwrap().cursors_shared.is_empty());

        let (ann, bob) = (UserId::parse("ann").unwrap(), UserId::parse("bob").unwrap());
        assert!(registry.follows(&d, &ann).await.unwrap());
        assert!(!registry.follows(&d, &bob).await.unwrap());
    }
}
