//! Live delivery without the stream poller: a document commit acknowledged by the SQLite
//! store → the change's frame read by every subscribed WebSocket client, at 1, 100 and
//! 1,000 subscribers over loopback. The fan-out is played by hand (audit entry in
//! memory, then the notifier), so the figures leave out the poller's pickup; edits are
//! sequential, each one measured once all subscribers have the previous one.
//!
//! Also the floor it is compared with: the bare broadcast server ([`crate::bare`])
//! sending a frame of the same size to the same number of clients.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use async_trait::async_trait;
use chrono::TimeDelta;
use serde_json::{Value, json};
use shared::auth::TokenAuthority;
use shared::clock::{Clock, ManualClock};
use shared::domain::{
    AuditDetail, AuditEntry, Body, ChangeEvent, DocumentId, Role, TextOperation, Title, UserId,
};
use shared::embedded::SqliteDocumentStore;
use shared::ports::{AuditLog, DocumentStore, Notifier, WriteOutcome};
use shared::service::{DocumentService, NewDocument, Replacement};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;
use websocket::{InProcessRegistry, LocalConfig, LocalPorts, LocalWebSocket, ServiceConfig};

use super::live::{self, Sequential};
use super::{Mode, count};
use crate::bare::{self, BareServer};
use crate::report::{Kind, Scenario};

pub const FLOOR: &str = "floor-broadcast";
const SECRET: &[u8] = b"docfan-bench-secret-0123456789abcdef";

/// (subscribers, edits) per case, for the floor and every live-delivery scenario
/// compared with it. A p99 over the frames of a few edits is the worst edit's: 300 and
/// 60 edits give the tail a few edits' worth of samples.
pub fn sizes(mode: Mode) -> [(usize, usize); 3] {
    mode.pick(
        [(1, 300), (100, 300), (1000, 60)],
        [(1, 10), (10, 5), (50, 3)],
    )
}

/// The body of edit `n`, as every live-delivery scenario writes it.
pub fn edit_body(n: usize) -> String {
    format!("edit {n}: a short paragraph of text")
}

/// The floor: the bare server broadcasting a real `document.updated` frame (its
/// version set per message) to the same numbers of clients.
pub async fn floor(mode: Mode, template: &Value) -> anyhow::Result<Scenario> {
    let mut cases = Vec::new();
    for (subscribers, edits) in sizes(mode) {
        let server = BareServer::start(Message::text("")).await?;
        let sockets = live::subscribers(&server.url(), bare::SUBSCRIBE, subscribers).await?;
        let mut received = live::read_updates(sockets);
        // Built before the clock starts: the server sends bytes it is given.
        let payloads: Vec<(u64, Message)> = (0..edits)
            .map(|n| {
                let version = n as u64 + 2;
                (version, Message::text(with_version(template, version)))
            })
            .collect();
        let mut figures = Sequential::default();
        let started = Instant::now();
        for (version, payload) in payloads {
            let sent = Instant::now();
            server.broadcast(payload);
            figures
                .collect(&mut received, subscribers, version, sent)
                .await?;
        }
        let elapsed = started.elapsed();
        cases.push(figures.case(
            format!("bare broadcast, {}", count(subscribers, "subscriber")),
            subscribers,
            edits,
            elapsed,
        ));
    }
    Ok(Scenario {
        name: FLOOR.into(),
        kind: Kind::Floor,
        title: "Floor: bare WebSocket broadcast".into(),
        method: format!(
            "A tokio + tokio-tungstenite server with no docfan code: each connection's \
             task forwards a tokio broadcast channel to its socket. It sends a real \
             `document.updated` frame ({} bytes) to all clients; send → frame read by \
             each client, sequential messages, clients in the same process over loopback.",
            with_version(template, 2).len()
        ),
        floor: None,
        load_average: 0.0,
        seconds: 0.0,
        cases,
        notes: vec![],
    })
}

/// `template` with its `version` set.
pub fn with_version(template: &Value, version: u64) -> String {
    let mut frame = template.clone();
    frame["version"] = json!(version);
    frame.to_string()
}

/// docfan's notifier, compared with the floor at the same subscriber counts.
pub async fn run(mode: Mode, floor: &Scenario) -> anyhow::Result<Scenario> {
    let mut cases = Vec::new();
    for (subscribers, edits) in sizes(mode) {
        let mut case = one(subscribers, edits).await?;
        if let Some(f) = floor.case_where("subscribers", subscribers as f64) {
            case.compare_with(f);
        }
        cases.push(case);
    }
    Ok(Scenario {
        name: "delivery".into(),
        kind: Kind::Docfan,
        title: "Live delivery: commit acknowledged → frame received".into(),
        method: "The fan-out played by hand right after the SQLite commit (audit entry, \
                 then docfan's notifier; no stream poller) → `document.updated` read by \
                 every subscribed `/ws` client; sequential edits; clients in the same \
                 process over loopback."
            .into(),
        floor: Some(FLOOR.into()),
        load_average: 0.0,
        seconds: 0.0,
        cases,
        notes: vec![],
    })
}

async fn one(subscribers: usize, edits: usize) -> anyhow::Result<crate::report::Case> {
    let world = World::new()?;
    let server = Server::start(&world).await?;
    let notifier = server.ws.notifier();
    let id = world.create().await?.document_id;
    let url = format!("ws://{}/ws?token={}", server.addr, world.token("bob"));
    let subscribe = json!({"action": "subscribe", "documentId": id}).to_string();
    let sockets = live::subscribers(&url, &subscribe, subscribers).await?;
    let mut received = live::read_updates(sockets);
    let mut figures = Sequential::default();
    let started = Instant::now();
    for n in 0..edits {
        let change = world.edit(&id, &edit_body(n)).await?;
        let acknowledged = Instant::now();
        world.fan_out(&notifier, &change).await?;
        figures
            .collect(&mut received, subscribers, change.version, acknowledged)
            .await?;
    }
    let elapsed = started.elapsed();
    Ok(figures.case(
        format!("docfan notifier, {}", count(subscribers, "subscriber")),
        subscribers,
        edits,
        elapsed,
    ))
}

/// A `document.updated` frame as docfan sends it for the first edit of the scenarios.
pub async fn sample_frame() -> anyhow::Result<Value> {
    let world = World::new()?;
    let id = world.create().await?.document_id;
    let change = world.edit(&id, &edit_body(0)).await?;
    Ok(websocket::frames::change(&change, false).to_json())
}

/// The audit trail in memory: the replay path is not measured here.
#[derive(Default)]
struct MemoryAuditLog {
    entries: Mutex<BTreeMap<(DocumentId, u64), AuditEntry>>,
}

#[async_trait]
impl AuditLog for MemoryAuditLog {
    async fn append(&self, entry: &AuditEntry) -> shared::Result<WriteOutcome> {
        let mut entries = self.entries.lock().expect("not poisoned");
        let key = (entry.document_id, entry.version);
        if entries.contains_key(&key) {
            return Ok(WriteOutcome::AlreadyApplied);
        }
        entries.insert(key, entry.clone());
        Ok(WriteOutcome::Applied)
    }

    async fn list(
        &self,
        document: &DocumentId,
        after_version: Option<u64>,
        limit: usize,
    ) -> shared::Result<Vec<AuditEntry>> {
        let after = after_version.map_or(0, |v| v + 1);
        let entries = self.entries.lock().expect("not poisoned");
        Ok(entries
            .range((*document, after)..=(*document, u64::MAX))
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn get(&self, document: &DocumentId, version: u64) -> shared::Result<Option<AuditEntry>> {
        Ok(self
            .entries
            .lock()
            .expect("not poisoned")
            .get(&(*document, version))
            .cloned())
    }
}

/// Real documents in SQLite ("ann"'s, shared with "bob" as a viewer), their changes
/// turned into `ChangeEvent`s by hand.
struct World {
    _dir: tempfile::TempDir,
    store: Arc<SqliteDocumentStore>,
    documents: DocumentService,
    audit: Arc<MemoryAuditLog>,
    tokens: TokenAuthority,
    clock: Arc<ManualClock>,
    registry: Arc<InProcessRegistry>,
    sequence: AtomicU64,
}

impl World {
    fn new() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let store = Arc::new(SqliteDocumentStore::open(&dir.path().join("docfan.db"))?);
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        Ok(Self {
            documents: DocumentService::new(store.clone(), clock.clone()),
            _dir: dir,
            store,
            audit: Arc::new(MemoryAuditLog::default()),
            tokens: TokenAuthority::new(SECRET)?,
            clock,
            registry: Arc::new(InProcessRegistry::new()),
            sequence: AtomicU64::new(1),
        })
    }

    fn token(&self, who: &str) -> String {
        self.tokens.issue(
            &UserId::parse(who).expect("a valid user id"),
            TimeDelta::hours(1),
            self.clock.now(),
        )
    }

    fn next_sequence(&self) -> String {
        format!("{:021}", self.sequence.fetch_add(1, Ordering::Relaxed))
    }

    async fn create(&self) -> anyhow::Result<ChangeEvent> {
        let doc = self
            .documents
            .create(
                &UserId::parse("ann")?,
                NewDocument {
                    title: Title::parse("Plans")?,
                    body: Body::parse("first draft")?,
                    collaborators: [(UserId::parse("bob")?, Role::Viewer)]
                        .into_iter()
                        .collect(),
                },
            )
            .await?;
        Ok(ChangeEvent::written(None, doc, self.next_sequence()))
    }

    async fn edit(&self, id: &DocumentId, body: &str) -> anyhow::Result<ChangeEvent> {
        let old = self.store.get(id).await?.context("the document exists")?;
        let new = self
            .documents
            .replace(
                &UserId::parse("ann")?,
                id,
                Some(old.version),
                Replacement {
                    title: old.title.clone(),
                    body: Body::parse(body)?,
                },
            )
            .await?;
        // As the stream record carries it: the operation from the version before.
        let ops = TextOperation::diff(old.body.as_str(), new.body.as_str());
        Ok(ChangeEvent::written(Some(old), new, self.next_sequence()).with_ops(Some(ops)))
    }

    /// The fan-out, by hand: audit first, then the notification.
    async fn fan_out(&self, notifier: &dyn Notifier, change: &ChangeEvent) -> anyhow::Result<()> {
        self.audit
            .append(&AuditEntry {
                event_id: format!("event-{}", change.sequence_number),
                document_id: change.document_id,
                version: change.version,
                action: change.kind,
                actor: change.actor.clone(),
                at: change.at,
                changed_fields: change.changed_fields.clone(),
                detail: AuditDetail::default(),
            })
            .await?;
        notifier.publish_change(change).await?;
        Ok(())
    }
}

/// docfan's `/ws` over a world.
struct Server {
    addr: SocketAddr,
    ws: LocalWebSocket,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    async fn start(world: &World) -> anyhow::Result<Self> {
        let ports = LocalPorts {
            registry: world.registry.clone(),
            documents: world.store.clone(),
            audit: world.audit.clone(),
            tokens: world.tokens.clone(),
            clock: world.clock.clone(),
        };
        let config = LocalConfig {
            max_connections_per_user: super::CROWD,
            ..LocalConfig::default()
        };
        let ws = LocalWebSocket::new(ports, ServiceConfig::default(), config);
        let socket = TcpSocket::new_v4()?;
        socket.bind("127.0.0.1:0".parse()?)?;
        let listener = socket.listen(2048)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = ws.router();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self {
            addr,
            ws,
            stop: Some(stop),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.ws.close_all();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
