//! What only the DynamoDB adapters have to get right: the two-step deletion when it is
//! interrupted, documents with more readers than one transaction holds, and TTL'd
//! connections that DynamoDB has not deleted yet.

use std::sync::Arc;

use chrono::TimeDelta;
use shared::clock::{Clock, ManualClock};
use shared::codec;
use shared::domain::{DocumentId, Role, UserId};
use shared::ports::{
    Connection, ConnectionId, ConnectionRegistry, DocumentStore, PresenceCursor, SubscribeOptions,
    Subscriber,
};
use tests::port_suites::{new_document, next_version, now_millis, unique_user};

use crate::emulators::{self, Wants};

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn an_interrupted_deletion_reads_as_missing_and_a_retry_completes_it() {
    let clients = emulators::aws(Wants::default()).await;
    let store = clients.document_store();
    let ann = unique_user("ann");
    let doc = new_document(&ann, "Doomed", "text", &[]);
    store.create(&doc).await.unwrap();
    let last = next_version(&doc, &ann, |_| {});

    // The first step alone, as if the process died before the second.
    clients
        .dynamodb
        .put_item()
        .table_name(&clients.config.tables.documents)
        .set_item(Some(codec::tombstone_to_item(&last).into()))
        .send()
        .await
        .unwrap();
    assert_eq!(store.get(&doc.id).await.unwrap(), None);
    assert!(
        store
            .list_for_member(&ann, 10, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(matches!(
        store
            .update(
                &next_version(&doc, &ann, |_| {}),
                &shared::domain::TextOperation::new()
            )
            .await,
        Err(shared::Error::NotFound)
    ));

    // The same deletion again finishes it: the item and its membership are gone.
    store.delete(&last).await.unwrap();
    let item = clients
        .dynamodb
        .get_item()
        .table_name(&clients.config.tables.documents)
        .set_key(Some(codec::document_key(&doc.id).into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item;
    assert_eq!(item, None);
    let memberships = clients
        .dynamodb
        .query()
        .table_name(&clients.config.tables.members)
        .key_condition_expression("userId = :u")
        .expression_attribute_values(
            ":u",
            aws_sdk_dynamodb::types::AttributeValue::S(ann.to_string()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(memberships.count, 0);
    // And once more is NotFound, like any deletion of a missing document.
    assert!(matches!(
        store.delete(&last).await,
        Err(shared::Error::NotFound)
    ));
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn more_readers_than_one_transaction_holds() {
    let clients = emulators::aws(Wants::default()).await;
    let store = clients.document_store();
    let ann = unique_user("ann");
    let many: Vec<UserId> = (0..shared::domain::MAX_COLLABORATORS)
        .map(|i| unique_user(&format!("u{i}")))
        .collect();
    let collaborators: Vec<(&UserId, Role)> = many.iter().map(|u| (u, Role::Viewer)).collect();
    let doc = new_document(&ann, "Company wide", "all hands", &collaborators);
    store.create(&doc).await.unwrap();
    for user in [&ann, &many[0], &many[99]] {
        let page = store.list_for_member(user, 10, None).await.unwrap();
        assert_eq!(
            page.items.iter().map(|d| d.id).collect::<Vec<_>>(),
            vec![doc.id]
        );
    }

    // Replace every collaborator: 100 removals and 100 additions around one update.
    let others: Vec<UserId> = (0..shared::domain::MAX_COLLABORATORS)
        .map(|i| unique_user(&format!("v{i}")))
        .collect();
    let v2 = next_version(&doc, &ann, |d| {
        d.collaborators = others.iter().map(|u| (u.clone(), Role::Editor)).collect();
    });
    store
        .update(&v2, &shared::domain::TextOperation::new())
        .await
        .unwrap();
    assert!(
        store
            .list_for_member(&many[50], 10, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(
        store
            .list_for_member(&others[77], 10, None)
            .await
            .unwrap()
            .items[0],
        v2
    );

    store
        .delete(&next_version(&v2, &ann, |_| {}))
        .await
        .unwrap();
    assert!(
        store
            .list_for_member(&others[0], 10, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn expired_connections_read_as_missing_before_ttl_deletes_them() {
    let clients = emulators::aws(Wants::default()).await;
    let clock = Arc::new(ManualClock::new(now_millis()));
    let registry = clients.connection_registry(Arc::clone(&clock) as Arc<dyn Clock>);
    let ann = unique_user("ann");
    let id = ConnectionId("short-lived".into());
    registry
        .register(&Connection {
            id: id.clone(),
            user: ann,
            expires_at: clock.now() + TimeDelta::minutes(5),
            connected_at: clock.now(),
        })
        .await
        .unwrap();
    let document = DocumentId::generate();
    registry
        .subscribe(&id, &document, SubscribeOptions::default())
        .await
        .unwrap();
    assert_eq!(registry.subscribers(&document).await.unwrap().len(), 1);

    // Past the TTL (two hours by default) but not yet deleted by DynamoDB.
    clock.advance(TimeDelta::hours(2) + TimeDelta::seconds(1));
    assert_eq!(registry.get(&id).await.unwrap(), None);
    assert!(registry.subscribers(&document).await.unwrap().is_empty());
    assert!(matches!(
        registry
            .subscribe(&id, &document, SubscribeOptions::default())
            .await,
        Err(shared::Error::NotFound)
    ));
    assert!(matches!(
        registry.refresh(&id, clock.now()).await,
        Err(shared::Error::NotFound)
    ));
    registry.remove(&id).await.unwrap();
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn a_subscription_set_left_untrimmed_still_counts_only_live_subscriptions() {
    let clients = emulators::aws(Wants::default()).await;
    let registry = clients.connection_registry(Arc::new(shared::clock::SystemClock));
    let id = ConnectionId("untrimmed".into());
    registry
        .register(&Connection {
            id: id.clone(),
            user: unique_user("ann"),
            expires_at: now_millis() + TimeDelta::hours(1),
            connected_at: now_millis(),
        })
        .await
        .unwrap();
    let (kept, ended) = (DocumentId::generate(), DocumentId::generate());
    registry
        .subscribe(&id, &kept, SubscribeOptions::default())
        .await
        .unwrap();
    registry
        .subscribe(&id, &ended, SubscribeOptions::default())
        .await
        .unwrap();
    // Ended by a process that could delete the subscription but not trim the set.
    clients
        .dynamodb
        .delete_item()
        .table_name(&clients.config.tables.subscriptions)
        .key(
            "documentId",
            aws_sdk_dynamodb::types::AttributeValue::S(ended.to_string()),
        )
        .key(
            "connectionId",
            aws_sdk_dynamodb::types::AttributeValue::S(id.to_string()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(registry.subscriptions(&id).await.unwrap(), vec![kept]);
    registry.remove(&id).await.unwrap();
    assert!(registry.subscribers(&kept).await.unwrap().is_empty());
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn subscriptions_written_before_options_and_cursors_still_read() {
    use aws_sdk_dynamodb::types::AttributeValue;

    let clients = emulators::aws(Wants::default()).await;
    let registry = clients.connection_registry(Arc::new(shared::clock::SystemClock));
    let ann = unique_user("ann");
    let id = ConnectionId(format!("c{}", uuid::Uuid::new_v4().simple()).into());
    registry
        .register(&Connection {
            id: id.clone(),
            user: ann.clone(),
            expires_at: now_millis() + TimeDelta::hours(1),
            connected_at: now_millis(),
        })
        .await
        .unwrap();
    let document = DocumentId::generate();
    // The subscription item as `subscribe` wrote it before options and cursors (the
    // connection's set is not needed to read it back).
    clients
        .dynamodb
        .put_item()
        .table_name(&clients.config.tables.subscriptions)
        .item("documentId", AttributeValue::S(document.to_string()))
        .item("connectionId", AttributeValue::S(id.to_string()))
        .item("userId", AttributeValue::S(ann.as_str().to_owned()))
        .send()
        .await
        .unwrap();
    let old = Subscriber {
        connection: id.clone(),
        user: ann,
        options: SubscribeOptions::default(),
        cursor: None,
        token_expires_at: None,
    };
    assert_eq!(
        registry.subscribers(&document).await.unwrap(),
        vec![old.clone()]
    );

    let caret = PresenceCursor { anchor: 5, head: 5 };
    registry
        .set_cursor(&id, &document, Some(caret))
        .await
        .unwrap();
    assert_eq!(
        registry.subscribers(&document).await.unwrap(),
        vec![Subscriber {
            cursor: Some(caret),
            ..old
        }]
    );
    registry.unsubscribe(&id, &document).await.unwrap();
    registry.remove(&id).await.unwrap();
}
