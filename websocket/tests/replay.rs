//! The switch from replay to live delivery, driven through the transport-free service
//! with the in-process outbox: no gap, no duplicate, whatever the stream and the audit
//! trail do meanwhile.

// A test target sees all of its package's dependencies; the library is where unused ones are caught.
#![allow(unused_crate_dependencies)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{MemoryAuditLog, World, versions};
use serde_json::{Value, json};
use shared::domain::{ChangeEvent, Role};
use shared::ports::{AuditLog, ConnectionId, ConnectionRegistry, Notifier};
use tokio::sync::mpsc;
use websocket::outbox::MailboxReceiver;
use websocket::{ConnectionService, FrameOutcome, LocalOutbox, ServiceConfig, ServicePorts};

struct Rig {
    world: World,
    service: ConnectionService,
    outbox: Arc<LocalOutbox>,
}

impl Rig {
    fn new(config: ServiceConfig) -> Self {
        let world = World::new();
        let outbox = Arc::new(LocalOutbox::new(Duration::from_secs(5)));
        let service = ConnectionService::new(
            ServicePorts {
                registry: world.registry.clone(),
                documents: world.store.clone(),
                audit: world.audit.clone(),
                outbox: outbox.clone(),
                tokens: world.tokens.clone(),
                clock: world.clock.clone(),
            },
            config,
        );
        Self {
            world,
            service,
            outbox,
        }
    }

    async fn connect(&self, who: &str) -> (ConnectionId, MailboxReceiver) {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id =
            ConnectionId(format!("conn-{who}-{}", NEXT.fetch_add(1, Ordering::Relaxed)).into());
        let mailbox = self.outbox.open(id.clone(), 1024);
        self.service
            .connect(id.clone(), &self.world.token(who))
            .await
            .unwrap();
        (id, mailbox)
    }

    /// Creates a document of ann's and edits it up to `version`, every change through
    /// the fan-out (nobody is subscribed yet).
    async fn document_at(&self, version: u64) -> Vec<ChangeEvent> {
        let notifier = self.service.notifier();
        let created = self.world.create("ann", &[("bob", Role::Viewer)]).await;
        self.world.fan_out(&notifier, &created).await;
        let id = created.document_id;
        let mut changes = vec![created];
        while changes.len() < version as usize {
            let change = self
                .world
                .edit("ann", &id, &format!("draft {}", changes.len() + 1))
                .await;
            self.world.fan_out(&notifier, &change).await;
            changes.push(change);
        }
        changes
    }
}

/// Everything queued for the connection, without waiting.
fn drain(mailbox: &mut MailboxReceiver) -> Vec<Value> {
    let mut frames = Vec::new();
    while let Some(frame) = mailbox.try_recv() {
        frames.push(frame.to_json());
    }
    frames
}

fn subscribe(document: &shared::domain::DocumentId, since: u64) -> String {
    json!({"action": "subscribe", "documentId": document, "sinceVersion": since}).to_string()
}

async fn wait_for_lists(audit: &MemoryAuditLog, at_least: u64) {
    let mut lists = audit.lists();
    tokio::time::timeout(common::PATIENCE, lists.wait_for(|n| *n >= at_least))
        .await
        .expect("the replay reads the audit trail")
        .unwrap();
}

#[tokio::test]
async fn changes_during_a_replay_follow_it_without_gap_or_duplicate() {
    let rig = Rig::new(ServiceConfig::default());
    let changes = rig.document_at(6).await;
    let id = changes[0].document_id;
    let notifier = rig.service.notifier();
    let (bob, mut mailbox) = rig.connect("bob").await;

    // The replay stops inside its first audit read…
    rig.world.audit.hold();
    let lists_before = *rig.world.audit.lists().borrow();
    let service = rig.service.clone();
    let (conn, frame) = (bob.clone(), subscribe(&id, 2));
    let subscribing = tokio::spawn(async move { service.handle_frame(&conn, &frame).await });
    wait_for_lists(&rig.world.audit, lists_before + 1).await;

    // …while the stream redelivers version 6 and commits 7 and 8.
    notifier.publish_change(&changes[5]).await.unwrap();
    let v7 = rig.world.edit("ann", &id, "draft 7").await;
    rig.world.fan_out(&notifier, &v7).await;
    let v8 = rig.world.edit("ann", &id, "draft 8").await;
    rig.world.fan_out(&notifier, &v8).await;
    rig.world.audit.release();
    assert_eq!(subscribing.await.unwrap(), FrameOutcome::Continue);

    let frames = drain(&mut mailbox);
    assert_eq!(
        frames[0],
        json!({"type": "subscribed", "documentId": id, "version": 6})
    );
    assert_eq!(versions(&frames[1..]), [3, 4, 5, 6, 7, 8]);
    assert!(frames[1..].iter().all(|f| f["type"] == "document.updated"));
    // Replayed frames come from the audit trail, live ones from the stream: both carry
    // the operation from the version before.
    for frame in &frames[1..] {
        assert!(frame.get("document").is_none(), "{frame}");
        assert_eq!(
            frame["baseVersion"].as_u64(),
            frame["version"].as_u64().map(|v| v - 1)
        );
        assert!(frame["ops"].is_array(), "{frame}");
    }

    // Live now: a redelivered version is dropped, the next one goes through.
    notifier.publish_change(&v8).await.unwrap();
    let v9 = rig.world.edit("ann", &id, "draft 9").await;
    rig.world.fan_out(&notifier, &v9).await;
    assert_eq!(versions(&drain(&mut mailbox)), [9]);
}

#[tokio::test]
async fn a_replay_waits_for_an_audit_trail_that_lags_the_notifier() {
    let rig = Rig::new(ServiceConfig::default());
    let changes = rig.document_at(3).await;
    let id = changes[0].document_id;
    let notifier = rig.service.notifier();
    // Version 4 is committed and notified (nobody listening) before the audit sink
    // writes it.
    let v4 = rig.world.edit("ann", &id, "draft 4").await;
    notifier.publish_change(&v4).await.unwrap();

    let (bob, mut mailbox) = rig.connect("bob").await;
    let lists_before = *rig.world.audit.lists().borrow();
    let service = rig.service.clone();
    let (conn, frame) = (bob.clone(), subscribe(&id, 1));
    let subscribing = tokio::spawn(async move { service.handle_frame(&conn, &frame).await });
    // A second read means the replay found version 4 missing and is waiting for it.
    wait_for_lists(&rig.world.audit, lists_before + 2).await;
    rig.world.audit.append(&World::entry(&v4)).await.unwrap();
    subscribing.await.unwrap();

    let frames = drain(&mut mailbox);
    assert_eq!(frames[0]["version"], 4);
    assert_eq!(versions(&frames[1..]), [2, 3, 4]);
}

#[tokio::test]
async fn a_replay_that_cannot_complete_says_so() {
    let rig = Rig::new(ServiceConfig {
        replay_wait: Duration::from_millis(50),
        ..ServiceConfig::default()
    });
    let changes = rig.document_at(3).await;
    let id = changes[0].document_id;
    // Version 4 never reaches the audit trail.
    let v4 = rig.world.edit("ann", &id, "draft 4").await;
    rig.service.notifier().publish_change(&v4).await.unwrap();

    let (bob, mut mailbox) = rig.connect("bob").await;
    rig.service.handle_frame(&bob, &subscribe(&id, 1)).await;
    let frames = drain(&mut mailbox);
    assert_eq!(frames[0]["type"], "subscribed");
    assert_eq!(versions(&frames[1..3]), [2, 3]);
    assert_eq!(frames[3]["type"], "error");
    assert_eq!(frames[3]["code"], "replay_incomplete");
    assert_eq!(frames[3]["documentId"], json!(id));
    assert!(
        frames[3]["message"].as_str().unwrap().contains("4..=4"),
        "{}",
        frames[3]
    );
    assert_eq!(frames.len(), 4);
}

#[tokio::test]
async fn a_revocation_during_a_replay_comes_after_it_and_ends_the_subscription() {
    let rig = Rig::new(ServiceConfig::default());
    let changes = rig.document_at(3).await;
    let id = changes[0].document_id;
    let notifier = rig.service.notifier();
    let (bob, mut mailbox) = rig.connect("bob").await;

    rig.world.audit.hold();
    let lists_before = *rig.world.audit.lists().borrow();
    let service = rig.service.clone();
    let (conn, frame) = (bob.clone(), subscribe(&id, 1));
    let subscribing = tokio::spawn(async move { service.handle_frame(&conn, &frame).await });
    wait_for_lists(&rig.world.audit, lists_before + 1).await;
    let revoke = rig.world.share(&id, &[]).await;
    rig.world.fan_out(&notifier, &revoke).await;
    rig.world.audit.release();
    subscribing.await.unwrap();

    let frames = drain(&mut mailbox);
    assert_eq!(frames[0]["type"], "subscribed");
    assert_eq!(versions(&frames[1..3]), [2, 3]);
    assert_eq!(
        frames[3],
        json!({"type": "access.revoked", "documentId": id})
    );
    assert_eq!(frames.len(), 4);
    assert!(
        rig.world
            .registry
            .subscribers(&id)
            .await
            .unwrap()
            .is_empty()
    );

    let after = rig.world.edit("ann", &id, "private now").await;
    rig.world.fan_out(&notifier, &after).await;
    assert!(drain(&mut mailbox).is_empty());
}

#[tokio::test]
async fn subscribers_found_gone_are_forgotten() {
    let rig = Rig::new(ServiceConfig::default());
    let changes = rig.document_at(1).await;
    let id = changes[0].document_id;
    let (bob, mailbox) = rig.connect("bob").await;
    rig.service
        .handle_frame(
            &bob,
            &json!({"action": "subscribe", "documentId": id}).to_string(),
        )
        .await;
    // The connection goes away without saying so.
    drop(mailbox);
    let change = rig.world.edit("ann", &id, "anyone there?").await;
    rig.world.fan_out(&rig.service.notifier(), &change).await;
    assert!(
        rig.world
            .registry
            .subscribers(&id)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(rig.world.registry.connection_count(), 0);
}

#[tokio::test]
async fn many_subscribers_share_one_serialized_frame() {
    let rig = Rig::new(ServiceConfig::default());
    let changes = rig.document_at(1).await;
    let id = changes[0].document_id;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut mailboxes = Vec::new();
    for _ in 0..50 {
        let (conn, mailbox) = rig.connect("bob").await;
        rig.service
            .handle_frame(
                &conn,
                &json!({"action": "subscribe", "documentId": id}).to_string(),
            )
            .await;
        mailboxes.push(mailbox);
    }
    let change = rig.world.edit("ann", &id, "for everyone").await;
    rig.world.fan_out(&rig.service.notifier(), &change).await;
    for mailbox in &mut mailboxes {
        let _subscribed = mailbox.try_recv().unwrap();
        tx.send(mailbox.try_recv().unwrap().bytes()).unwrap();
    }
    drop(tx);
    let first = rx.recv().await.unwrap();
    while let Some(bytes) = rx.recv().await {
        // The same allocation, not an equal copy.
        assert_eq!(bytes.as_ptr(), first.as_ptr());
    }
}

#[tokio::test]
async fn a_connection_follows_a_bounded_number_of_documents() {
    let rig = Rig::new(ServiceConfig {
        max_subscriptions: 2,
        ..ServiceConfig::default()
    });
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(rig.document_at(1).await[0].document_id);
    }
    let (bob, mut mailbox) = rig.connect("bob").await;
    let subscribe = |id: &shared::domain::DocumentId| {
        json!({"action": "subscribe", "documentId": id}).to_string()
    };
    rig.service.handle_frame(&bob, &subscribe(&ids[0])).await;
    rig.service.handle_frame(&bob, &subscribe(&ids[1])).await;
    // Subscribing again to a followed document is fine; a third one is not.
    rig.service.handle_frame(&bob, &subscribe(&ids[1])).await;
    rig.service.handle_frame(&bob, &subscribe(&ids[2])).await;
    let frames = drain(&mut mailbox);
    let kinds: Vec<_> = frames
        .iter()
        .map(|f| f["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["subscribed", "subscribed", "subscribed", "error"]);
    assert_eq!(frames[3]["code"], "too_many_subscriptions");
    assert_eq!(
        rig.world.registry.subscriptions(&bob).await.unwrap().len(),
        2
    );
}

#[tokio::test]
async fn versions_still_on_their_way_from_the_stream_follow_the_replay() {
    let rig = Rig::new(ServiceConfig::default());
    let changes = rig.document_at(3).await;
    let id = changes[0].document_id;
    let notifier = rig.service.notifier();
    // Versions 4 and 5 are committed; the stream has delivered neither yet.
    let v4 = rig.world.edit("ann", &id, "draft 4").await;
    let v5 = rig.world.edit("ann", &id, "draft 5").await;
    let (bob, mut mailbox) = rig.connect("bob").await;

    rig.world.audit.hold();
    let lists_before = *rig.world.audit.lists().borrow();
    let service = rig.service.clone();
    let (conn, frame) = (bob.clone(), subscribe(&id, 2));
    let subscribing = tokio::spawn(async move { service.handle_frame(&conn, &frame).await });
    wait_for_lists(&rig.world.audit, lists_before + 1).await;
    // Version 4 reaches the notifier (held) before the audit trail; 5 comes later.
    notifier.publish_change(&v4).await.unwrap();
    rig.world.audit.release();
    subscribing.await.unwrap();
    rig.world.fan_out(&notifier, &v5).await;
    rig.world.audit.append(&World::entry(&v4)).await.unwrap();

    let frames = drain(&mut mailbox);
    assert_eq!(
        frames[0],
        json!({"type": "subscribed", "documentId": id, "version": 5})
    );
    assert_eq!(versions(&frames[1..]), [3, 4, 5]);
}

#[tokio::test]
async fn a_redelivered_old_revocation_does_not_end_a_newer_subscription() {
    let rig = Rig::new(ServiceConfig::default());
    let changes = rig.document_at(1).await;
    let id = changes[0].document_id;
    let notifier = rig.service.notifier();
    let (bob, mut mailbox) = rig.connect("bob").await;
    let subscribe_now = json!({"action": "subscribe", "documentId": id}).to_string();
    rig.service.handle_frame(&bob, &subscribe_now).await;

    let revoke = rig.world.share(&id, &[]).await;
    rig.world.fan_out(&notifier, &revoke).await;
    let regrant = rig.world.share(&id, &[("bob", Role::Viewer)]).await;
    rig.world.fan_out(&notifier, &regrant).await;
    rig.service.handle_frame(&bob, &subscribe_now).await;
    let frames = drain(&mut mailbox);
    let kinds: Vec<_> = frames
        .iter()
        .map(|f| f["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["subscribed", "access.revoked", "subscribed"]);
    assert_eq!(frames[2]["version"], 3);

    // The stream delivers the revocation again (at least once): it is older than what
    // the subscription started from, so nothing is sent and bob stays subscribed.
    notifier.publish_change(&revoke).await.unwrap();
    assert!(drain(&mut mailbox).is_empty());
    assert_eq!(rig.world.registry.subscribers(&id).await.unwrap().len(), 1);
}
