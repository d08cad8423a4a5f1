//! The [`Notifier`] contract, for the local server's notifier and for the one the Lambda
//! functions run (the registry and `post_to_connection` alone): changes reach the subscribers who may read them and no one else, a
//! collaborator removed by a change gets `access.revoked` and is unsubscribed, a
//! deletion ends every subscription, and a connection found gone is forgotten.
//!
//! The transport is behind [`Connections`]: the embedded mode's in-process mailboxes,
//! or API Gateway's `post_to_connection` (a recording endpoint standing in for it).

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use shared::domain::{ChangeEvent, DocumentId, Role, TextOperation};
use shared::ports::{ConnectionId, ConnectionRegistry, DocumentStore, Notifier};
use websocket::ConnectionService;

use super::{new_document, next_version, unique_user};
use crate::token_for;

/// One transport's side of the suite.
#[async_trait]
pub trait Connections: Send + Sync {
    /// The client end of a new connection exists (before `$connect` completes).
    async fn open(&self, id: &ConnectionId);
    /// Every frame the connection received so far, oldest first.
    async fn received(&self, id: &ConnectionId) -> Vec<Value>;
    /// The client goes away without the server hearing of it.
    async fn leave(&self, id: &ConnectionId);
}

/// What the suite runs on: the notifier under test, the service that subscribes
/// connections (built on the transport's outbox), its registry and document store,
/// and the transport.
pub struct NotifierHarness {
    pub notifier: Arc<dyn Notifier>,
    pub service: ConnectionService,
    pub registry: Arc<dyn ConnectionRegistry>,
    pub documents: Arc<dyn DocumentStore>,
    pub connections: Arc<dyn Connections>,
}

fn kinds(frames: &[Value]) -> Vec<(String, Option<u64>)> {
    frames
        .iter()
        .map(|f| {
            (
                f["type"].as_str().unwrap_or_default().to_owned(),
                f["version"].as_u64(),
            )
        })
        .collect()
}

fn kind(name: &str, version: Option<u64>) -> (String, Option<u64>) {
    (name.to_owned(), version)
}

/// The frames a connection received, less presence (which comes and goes with the
/// other subscribers, and is tested on its own).
async fn received(h: &NotifierHarness, id: &ConnectionId) -> Vec<Value> {
    h.connections
        .received(id)
        .await
        .into_iter()
        .filter(|f| {
            !f["type"]
                .as_str()
                .unwrap_or_default()
                .starts_with("presence")
        })
        .collect()
}

async fn subscribers(h: &NotifierHarness, document: &DocumentId) -> Vec<String> {
    super::subscriber_ids(h.registry.as_ref(), document).await
}

pub async fn run(h: NotifierHarness) {
    let notifier = Arc::clone(&h.notifier);
    let (ann, bob, cat) = (unique_user("ann"), unique_user("bob"), unique_user("cat"));
    let v1 = new_document(&ann, "Plan", "draft", &[(&bob, Role::Viewer)]);
    h.documents.create(&v1).await.unwrap();

    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let [ann_tab, ann_old_tab, bob_tab, cat_tab] =
        ["ann", "ann-old", "bob", "cat"].map(|n| ConnectionId(format!("{n}-{suffix}=").into()));
    for (id, user) in [
        (&ann_tab, &ann),
        (&ann_old_tab, &ann),
        (&bob_tab, &bob),
        (&cat_tab, &cat),
    ] {
        h.connections.open(id).await;
        h.service
            .connect(id.clone(), &token_for(user.as_str()))
            .await
            .unwrap();
        let subscribe =
            json!({"action": "subscribe", "documentId": v1.id, "include": "document"}).to_string();
        h.service.handle_frame(id, &subscribe).await;
    }
    assert_eq!(
        kinds(&received(&h, &bob_tab).await),
        [kind("subscribed", Some(1))]
    );
    assert_eq!(
        received(&h, &cat_tab).await[0]["type"],
        "error",
        "a stranger cannot subscribe"
    );
    let mut expected = vec![
        ann_old_tab.to_string(),
        ann_tab.to_string(),
        bob_tab.to_string(),
    ];
    expected.sort();
    assert_eq!(subscribers(&h, &v1.id).await, expected);

    // An edit reaches the readers' connections, not the stranger's; one of ann's
    // connections has gone away meanwhile and is forgotten.
    h.connections.leave(&ann_old_tab).await;
    let v2 = next_version(&v1, &ann, |d| {
        d.body = shared::domain::Body::parse("second draft").unwrap()
    });
    h.documents
        .update(
            &v2,
            &TextOperation::diff(v1.body.as_str(), v2.body.as_str()),
        )
        .await
        .unwrap();
    notifier
        .publish_change(&ChangeEvent::written(
            Some(v1.clone()),
            v2.clone(),
            "2".into(),
        ))
        .await
        .unwrap();
    for tab in [&ann_tab, &bob_tab] {
        let frames = received(&h, tab).await;
        assert_eq!(
            kinds(&frames).last(),
            Some(&kind("document.updated", Some(2))),
            "{tab}"
        );
        assert_eq!(frames.last().unwrap()["document"]["body"], "second draft");
    }
    assert_eq!(received(&h, &cat_tab).await.len(), 1);
    assert_eq!(h.registry.get(&ann_old_tab).await.unwrap(), None);
    assert!(
        !subscribers(&h, &v1.id)
            .await
            .contains(&ann_old_tab.to_string())
    );

    // Removing bob revokes his subscription; he hears of it and of nothing after.
    let v3 = next_version(&v2, &ann, |d| {
        d.collaborators.remove(&bob);
        d.collaborators.insert(cat.clone(), Role::Editor);
    });
    h.documents
        .update(
            &v3,
            &TextOperation::diff(v2.body.as_str(), v3.body.as_str()),
        )
        .await
        .unwrap();
    notifier
        .publish_change(&ChangeEvent::written(
            Some(v2.clone()),
            v3.clone(),
            "3".into(),
        ))
        .await
        .unwrap();
    let to_bob = received(&h, &bob_tab).await;
    assert_eq!(kinds(&to_bob).last(), Some(&kind("access.revoked", None)));
    assert_eq!(subscribers(&h, &v1.id).await, vec![ann_tab.to_string()]);

    // A deletion reaches the remaining subscriber and ends the subscription.
    let v4 = next_version(&v3, &ann, |_| {});
    h.documents.delete(&v4).await.unwrap();
    notifier
        .publish_change(&ChangeEvent::deleted(
            v3.clone(),
            4,
            ann.clone(),
            v4.updated_at,
            "4".into(),
        ))
        .await
        .unwrap();
    assert_eq!(
        kinds(&received(&h, &ann_tab).await).last(),
        Some(&kind("document.deleted", Some(4)))
    );
    assert!(subscribers(&h, &v1.id).await.is_empty());
    assert_eq!(
        received(&h, &bob_tab).await.len(),
        to_bob.len(),
        "nothing after the revocation"
    );
}
