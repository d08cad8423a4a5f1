//! What the websocket tests share: a world of real documents (SQLite in a temp dir), an
//! in-memory audit trail that a test can hold still, the fan-out played by hand, and a
//! server with real WebSocket clients.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::TimeDelta;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use shared::auth::TokenAuthority;
use shared::clock::{Clock, ManualClock};
use shared::domain::{
    AuditDetail, AuditEntry, Body, ChangeEvent, Collaborators, Document, DocumentId, Role,
    TextOperation, Title, UserId,
};
use shared::embedded::SqliteDocumentStore;
use shared::metrics::Metrics;
use shared::ports::{AuditLog, DocumentStore, Notifier, WriteOutcome};
use shared::service::{DocumentService, NewDocument, Replacement};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use websocket::{InProcessRegistry, LocalConfig, LocalPorts, LocalWebSocket, ServiceConfig};

pub const SECRET: &[u8] = b"websocket-tests-secret-0123456789abcdef";
/// How long a test waits for something that should happen.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

/// The audit trail in memory. `hold()` makes `list` wait until `release()`, so a test
/// can act in the middle of a replay; `lists()` counts the calls.
#[derive(Default)]
pub struct MemoryAuditLog {
    entries: Mutex<BTreeMap<(DocumentId, u64), AuditEntry>>,
    gate: Mutex<Option<Arc<Semaphore>>>,
    lists: Mutex<Option<watch::Sender<u64>>>,
}

impl MemoryAuditLog {
    pub fn new() -> Arc<Self> {
        let log = Self::default();
        *log.lists.lock().unwrap() = Some(watch::channel(0).0);
        Arc::new(log)
    }

    /// Makes every `list` wait for `release`.
    pub fn hold(&self) {
        *self.gate.lock().unwrap() = Some(Arc::new(Semaphore::new(0)));
    }

    pub fn release(&self) {
        if let Some(gate) = self.gate.lock().unwrap().take() {
            gate.close();
        }
    }

    /// Watches how many times `list` was called.
    pub fn lists(&self) -> watch::Receiver<u64> {
        self.lists.lock().unwrap().as_ref().unwrap().subscribe()
    }
}

#[async_trait]
impl AuditLog for MemoryAuditLog {
    async fn append(&self, entry: &AuditEntry) -> shared::Result<WriteOutcome> {
        let mut entries = self.entries.lock().unwrap();
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
        if let Some(lists) = self.lists.lock().unwrap().as_ref() {
            lists.send_modify(|n| *n += 1);
        }
        let gate = self.gate.lock().unwrap().clone();
        if let Some(gate) = gate {
            let _ = gate.acquire().await;
        }
        let after = after_version.map_or(0, |v| v + 1);
        let entries = self.entries.lock().unwrap();
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
            .unwrap()
            .get(&(*document, version))
            .cloned())
    }
}

/// Real documents in SQLite, changes turned into ChangeEvents by hand.
pub struct World {
    _dir: tempfile::TempDir,
    pub store: Arc<SqliteDocumentStore>,
    pub documents: DocumentService,
    pub audit: Arc<MemoryAuditLog>,
    pub tokens: TokenAuthority,
    pub clock: Arc<ManualClock>,
    pub registry: Arc<InProcessRegistry>,
    sequence: AtomicU64,
}

impl World {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteDocumentStore::open(&dir.path().join("docfan.db")).unwrap());
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let documents = DocumentService::new(store.clone(), clock.clone());
        Self {
            _dir: dir,
            store,
            documents,
            audit: MemoryAuditLog::new(),
            tokens: TokenAuthority::new(SECRET).unwrap(),
            clock,
            registry: Arc::new(InProcessRegistry::new()),
            sequence: AtomicU64::new(1),
        }
    }

    pub fn token(&self, who: &str) -> String {
        self.token_for(who, TimeDelta::hours(1))
    }

    pub fn token_for(&self, who: &str, ttl: TimeDelta) -> String {
        self.tokens.issue(&user(who), ttl, self.clock.now())
    }

    pub fn ports(&self) -> LocalPorts {
        LocalPorts {
            registry: self.registry.clone(),
            documents: self.store.clone(),
            audit: self.audit.clone(),
            tokens: self.tokens.clone(),
            clock: self.clock.clone(),
        }
    }

    fn next_sequence(&self) -> String {
        format!("{:021}", self.sequence.fetch_add(1, Ordering::Relaxed))
    }

    /// Creates a document of `owner` shared with `collaborators`; returns its creation.
    pub async fn create(&self, owner: &str, collaborators: &[(&str, Role)]) -> ChangeEvent {
        let collaborators: Collaborators =
            collaborators.iter().map(|(u, r)| (user(u), *r)).collect();
        let doc = self
            .documents
            .create(
                &user(owner),
                NewDocument {
                    title: Title::parse("Plans").unwrap(),
                    body: Body::parse("first draft").unwrap(),
                    collaborators,
                },
            )
            .await
            .unwrap();
        ChangeEvent::written(None, doc, self.next_sequence())
    }

    pub async fn current(&self, id: &DocumentId) -> Document {
        self.store.get(id).await.unwrap().unwrap()
    }

    /// Replaces the body as `actor`.
    pub async fn edit(&self, actor: &str, id: &DocumentId, body: &str) -> ChangeEvent {
        let old = self.current(id).await;
        let new = self
            .documents
            .replace(
                &user(actor),
                id,
                Some(old.version),
                Replacement {
                    title: old.title.clone(),
                    body: Body::parse(body).unwrap(),
                },
            )
            .await
            .unwrap();
        // As the stream record carries it: the operation from the version before.
        let ops = TextOperation::diff(old.body.as_str(), new.body.as_str());
        ChangeEvent::written(Some(old), new, self.next_sequence()).with_ops(Some(ops))
    }

    /// Sets the collaborators (as the owner).
    pub async fn share(&self, id: &DocumentId, collaborators: &[(&str, Role)]) -> ChangeEvent {
        let old = self.current(id).await;
        let map: serde_json::Map<String, Value> = old
            .collaborators
            .keys()
            .map(|u| (u.to_string(), Value::Null))
            .chain(collaborators.iter().map(|(u, r)| (u.to_string(), json!(r))))
            .collect();
        let new = self
            .documents
            .patch(
                &old.owner.clone(),
                id,
                Some(old.version),
                &json!({"collaborators": map}),
            )
            .await
            .unwrap();
        ChangeEvent::written(Some(old), new, self.next_sequence())
    }

    pub async fn delete(&self, id: &DocumentId) -> ChangeEvent {
        let old = self.current(id).await;
        self.documents
            .delete(&old.owner.clone(), id, Some(old.version))
            .await
            .unwrap();
        let at = self.clock.now();
        ChangeEvent::deleted(
            old.clone(),
            old.version + 1,
            old.owner.clone(),
            at,
            self.next_sequence(),
        )
    }

    /// The audit entry the audit sink would write for the change.
    pub fn entry(change: &ChangeEvent) -> AuditEntry {
        AuditEntry {
            event_id: format!("event-{}", change.sequence_number),
            document_id: change.document_id,
            version: change.version,
            action: change.kind,
            actor: change.actor.clone(),
            at: change.at,
            changed_fields: change.changed_fields.clone(),
            detail: AuditDetail {
                ops: change.ops.clone(),
                ..AuditDetail::default()
            },
        }
    }

    /// The fan-out, by hand: audit first, then the notification.
    pub async fn fan_out(&self, notifier: &dyn Notifier, change: &ChangeEvent) {
        self.audit.append(&Self::entry(change)).await.unwrap();
        notifier.publish_change(change).await.unwrap();
    }
}

/// A running `/ws` server over a world.
pub struct Server {
    pub addr: SocketAddr,
    pub ws: LocalWebSocket,
    /// The registry the endpoint counts into.
    pub metrics: Metrics,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    pub async fn start(world: &World, config: LocalConfig) -> Self {
        Self::start_with(world, ServiceConfig::default(), config, None).await
    }

    /// `send_buffer`: the accepted sockets' send buffer, small to make slow clients show.
    pub async fn start_with(
        world: &World,
        service: ServiceConfig,
        config: LocalConfig,
        send_buffer: Option<u32>,
    ) -> Self {
        let metrics = Metrics::new();
        let ws = LocalWebSocket::counting(world.ports(), service, config, metrics.live.clone());
        let socket = TcpSocket::new_v4().unwrap();
        if let Some(size) = send_buffer {
            socket.set_send_buffer_size(size).unwrap();
        }
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(2048).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = ws.router();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            addr,
            ws,
            metrics,
            stop: Some(stop),
        }
    }

    pub fn url(&self, token: &str) -> String {
        format!("ws://{}/ws?token={token}", self.addr)
    }

    pub async fn connect(&self, token: &str) -> Client {
        Client::connect(&self.url(token), None).await
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

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A real WebSocket client.
pub struct Client {
    pub socket: Socket,
}

/// How a connection ended, as the client saw it.
#[derive(Debug, PartialEq)]
pub enum Ended {
    Closed(Option<(u16, String)>),
    Dropped,
}

impl Client {
    /// `recv_buffer`: a small receive buffer makes a client that stops reading show soon.
    pub async fn connect(url: &str, recv_buffer: Option<u32>) -> Self {
        let addr: SocketAddr = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let socket = TcpSocket::new_v4().unwrap();
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).unwrap();
        }
        let stream = socket.connect(addr).await.unwrap();
        let (socket, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
            .await
            .expect("websocket handshake");
        Self { socket }
    }

    pub async fn send(&mut self, frame: Value) {
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.socket.send(Message::text(text)).await.unwrap();
    }

    /// The next JSON frame; panics after [`PATIENCE`] or when the connection ends.
    pub async fn next(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.socket.next())
                .await
                .expect("a frame in time")
                .expect("the connection is open")
                .expect("a readable frame");
            match message {
                Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next frame, which must be of `kind`.
    /// The next frame, which must be of `kind`; presence frames on the way are skipped
    /// unless `kind` is one of them.
    pub async fn expect(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.next().await;
            let presence = frame["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("presence"));
            if presence && !kind.starts_with("presence") {
                continue;
            }
            assert_eq!(frame["type"], kind, "unexpected frame {frame}");
            return frame;
        }
    }

    /// Subscribes with `"include": "document"`: change frames carry the whole document.
    pub async fn subscribe_with_document(&mut self, document: &DocumentId) -> Value {
        self.send(json!({"action": "subscribe", "documentId": document, "include": "document"}))
            .await;
        self.next().await
    }

    pub async fn subscribe(&mut self, document: &DocumentId, since: Option<u64>) -> Value {
        let mut frame = json!({"action": "subscribe", "documentId": document});
        if let Some(since) = since {
            frame["sinceVersion"] = json!(since);
        }
        self.send(frame).await;
        self.next().await
    }

    /// Proves nothing is queued for this client: the answer to a ping comes next.
    pub async fn expect_nothing_pending(&mut self) {
        self.send(json!({"action": "ping"})).await;
        let frame = self.next().await;
        assert_eq!(frame, json!({"type": "pong"}), "a frame was pending");
    }

    /// Reads until the connection ends (skipping frames).
    pub async fn ended(&mut self) -> Ended {
        loop {
            match tokio::time::timeout(PATIENCE, self.socket.next())
                .await
                .expect("the connection ends in time")
            {
                Some(Ok(Message::Close(frame))) => {
                    return Ended::Closed(
                        frame.map(|CloseFrame { code, reason }| {
                            (u16::from(code), reason.to_string())
                        }),
                    );
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Ended::Dropped,
            }
        }
    }
}

/// The `version` of every frame, for comparing sequences.
pub fn versions(frames: &[Value]) -> Vec<u64> {
    frames
        .iter()
        .map(|f| f["version"].as_u64().unwrap())
        .collect()
}
