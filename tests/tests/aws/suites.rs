//! Each port's suite (`tests::port_suites`) on both adapters: the embedded one here in
//! plain `cargo test`, the AWS one against the emulators.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;
use shared::auth::TokenAuthority;
use shared::ports::{AuditLog, ConnectionId, ConnectionRegistry, DocumentStore};
use tests::TEST_SECRET;
use tests::port_suites::notifier::{Connections, NotifierHarness};
use websocket::apigateway::ApiGatewayOutbox;
use websocket::{ConnectionService, ServiceConfig, ServicePorts};

use shared::aws::SqsDeadLetterQueue;
use shared::clock::{Clock, SystemClock};
use shared::embedded::{
    DATABASE_FILE, SqliteAnalysisQueue, SqliteAnalysisStore, SqliteAuditLog, SqliteDeadLetterQueue,
    SqliteDocumentStore, TantivySearchIndex,
};
use tests::port_suites::{self, analysis_queue::QueueTraits};

use crate::emulators::{self, Wants};
use crate::push::Recorder;

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

fn database() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DATABASE_FILE);
    (dir, path)
}

fn dead_letters(clients: &shared::aws::AwsClients) -> Arc<SqsDeadLetterQueue> {
    let url = clients.config.dead_letter_queue_url.as_deref().unwrap();
    Arc::new(SqsDeadLetterQueue::new(clients.sqs.clone(), url, clock()).with_wait_seconds(0))
}

#[tokio::test]
async fn document_store_embedded() {
    let (_dir, db) = database();
    port_suites::document_store::run(Arc::new(SqliteDocumentStore::open(&db).unwrap())).await;
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn document_store_dynamodb() {
    let clients = emulators::aws(Wants::default()).await;
    port_suites::document_store::run(Arc::new(clients.document_store())).await;
}

#[tokio::test]
async fn connection_registry_embedded() {
    port_suites::connection_registry::run(Arc::new(websocket::InProcessRegistry::new())).await;
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn connection_registry_dynamodb() {
    let clients = emulators::aws(Wants::default()).await;
    port_suites::connection_registry::run(Arc::new(clients.connection_registry(clock()))).await;
}

#[tokio::test]
async fn audit_log_embedded() {
    let (_dir, db) = database();
    port_suites::audit_log::run(Arc::new(SqliteAuditLog::open(&db).unwrap())).await;
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn audit_log_dynamodb() {
    let clients = emulators::aws(Wants::default()).await;
    port_suites::audit_log::run(Arc::new(clients.audit_log())).await;
}

#[tokio::test]
async fn analysis_store_embedded() {
    let (_dir, db) = database();
    port_suites::analysis_store::run(Arc::new(SqliteAnalysisStore::open(&db).unwrap())).await;
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn analysis_store_dynamodb() {
    let clients = emulators::aws(Wants::default()).await;
    port_suites::analysis_store::run(Arc::new(clients.analysis_store())).await;
}

#[tokio::test]
async fn analysis_queue_embedded() {
    let (_dir, db) = database();
    let queue = Arc::new(SqliteAnalysisQueue::open(&db, clock()).unwrap());
    let dead = Arc::new(SqliteDeadLetterQueue::open(&db).unwrap());
    let traits = QueueTraits {
        deduplicates: true,
        coalesces: true,
    };
    port_suites::analysis_queue::run(queue, dead, traits).await;
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn analysis_queue_sqs() {
    let clients = emulators::aws(Wants::default()).await;
    let queue = Arc::new(clients.analysis_queue(clock()).unwrap());
    port_suites::analysis_queue::run(
        queue,
        dead_letters(&clients),
        QueueTraits {
            deduplicates: false,
            coalesces: false,
        },
    )
    .await;
}

#[tokio::test]
async fn dead_letter_queue_embedded() {
    let (_dir, db) = database();
    port_suites::dead_letter::run(Arc::new(SqliteDeadLetterQueue::open(&db).unwrap())).await;
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn dead_letter_queue_sqs() {
    let clients = emulators::aws(Wants::default()).await;
    port_suites::dead_letter::run(dead_letters(&clients)).await;
}

#[tokio::test]
async fn search_index_embedded() {
    let dir = tempfile::tempdir().unwrap();
    port_suites::search_index::run(Arc::new(TantivySearchIndex::open(dir.path()).unwrap())).await;
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn search_index_opensearch() {
    let clients = emulators::aws(Wants {
        search: true,
        ..Wants::default()
    })
    .await;
    port_suites::search_index::run(Arc::new(clients.search_index().unwrap())).await;
}

/// The embedded transport: in-process mailboxes.
struct Mailboxes {
    outbox: Arc<websocket::LocalOutbox>,
    open: Mutex<HashMap<ConnectionId, websocket::outbox::MailboxReceiver>>,
    seen: Mutex<HashMap<ConnectionId, Vec<Value>>>,
}

#[async_trait]
impl Connections for Mailboxes {
    async fn open(&self, id: &ConnectionId) {
        let mailbox = self.outbox.open(id.clone(), 64);
        self.open.lock().unwrap().insert(id.clone(), mailbox);
    }

    async fn received(&self, id: &ConnectionId) -> Vec<Value> {
        let mut open = self.open.lock().unwrap();
        let mut seen = self.seen.lock().unwrap();
        let frames = seen.entry(id.clone()).or_default();
        if let Some(mailbox) = open.get_mut(id) {
            while let Some(frame) = mailbox.try_recv() {
                frames.push(frame.to_json());
            }
        }
        frames.clone()
    }

    async fn leave(&self, id: &ConnectionId) {
        self.received(id).await;
        self.open.lock().unwrap().remove(id);
    }
}

/// The AWS transport: `post_to_connection` to a recording endpoint.
struct Posts(Recorder);

#[async_trait]
impl Connections for Posts {
    async fn open(&self, _id: &ConnectionId) {}

    async fn received(&self, id: &ConnectionId) -> Vec<Value> {
        self.0.posts_to(id.as_str())
    }

    async fn leave(&self, id: &ConnectionId) {
        self.0.mark_gone(id.as_str());
    }
}

fn service(
    registry: Arc<dyn ConnectionRegistry>,
    documents: Arc<dyn DocumentStore>,
    audit: Arc<dyn AuditLog>,
    outbox: Arc<dyn websocket::Outbox>,
) -> ConnectionService {
    ConnectionService::new(
        ServicePorts {
            registry,
            documents,
            audit,
            outbox,
            tokens: TokenAuthority::new(TEST_SECRET).unwrap(),
            clock: clock(),
        },
        ServiceConfig::default(),
    )
}

#[tokio::test]
async fn notifier_embedded() {
    let (_dir, db) = database();
    let registry: Arc<dyn ConnectionRegistry> = Arc::new(websocket::InProcessRegistry::new());
    let documents: Arc<dyn DocumentStore> = Arc::new(SqliteDocumentStore::open(&db).unwrap());
    let outbox = Arc::new(websocket::LocalOutbox::new(std::time::Duration::from_secs(
        1,
    )));
    let service = service(
        Arc::clone(&registry),
        Arc::clone(&documents),
        Arc::new(SqliteAuditLog::open(&db).unwrap()),
        outbox.clone(),
    );
    let connections = Arc::new(Mailboxes {
        outbox,
        open: Default::default(),
        seen: Default::default(),
    });
    port_suites::notifier::run(NotifierHarness {
        notifier: Arc::new(service.notifier()),
        service,
        registry,
        documents,
        connections,
    })
    .await;
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn notifier_api_gateway() {
    let recorder = Recorder::start().await;
    let clients =
        emulators::aws_with_endpoint(Wants::default(), Some(recorder.endpoint.clone())).await;
    let registry: Arc<dyn ConnectionRegistry> = Arc::new(clients.connection_registry(clock()));
    let documents: Arc<dyn DocumentStore> = Arc::new(clients.document_store());
    let service = service(
        Arc::clone(&registry),
        Arc::clone(&documents),
        Arc::new(clients.audit_log()),
        Arc::new(ApiGatewayOutbox::new(clients.pusher().unwrap())),
    );
    port_suites::notifier::run(NotifierHarness {
        // What the live stream consumer and the analysis worker run: no connection
        // service of their own.
        notifier: Arc::new(clients.notifier(clock()).unwrap()),
        service,
        registry,
        documents,
        connections: Arc::new(Posts(recorder)),
    })
    .await;
}
