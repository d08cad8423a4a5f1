//! The local `/ws` driver: axum's WebSocket on the REST listener, in front of the
//! [`ConnectionService`], with the [`LocalOutbox`] and the [`InProcessRegistry`].
//!
//! - `mod.rs`: the configuration, the shared state and the upgrade handler (the token is
//!   checked before upgrading: a bad one gets a plain 401);
//! - `handshake.rs`: the opening handshake, checked and answered;
//! - `connection.rs`: one connection's task, owning its socket (pings, idle and expiry
//!   timeouts, flood control, slow clients);
//! - `socket.rs`: the upgraded socket: tungstenite reads and writes control frames, the
//!   server's frames go out as they were built, several to a `writev`;
//! - `gate.rs`: wakers that remember they fired, so the task polls only what woke it;
//! - `rate_limit.rs`: the per-connection token bucket;
//! - `slots.rs`: how many connections one user, and the server, may hold open.

mod connection;
mod gate;
mod handshake;
mod rate_limit;
mod slots;
mod socket;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use shared::auth::{AuthError, TokenAuthority};
use shared::clock::Clock;
use shared::metrics::LiveMetrics;
use shared::ports::{AuditLog, ConnectionId, ConnectionRegistry, DocumentStore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

pub use rate_limit::RateLimit;

use crate::notifier::LiveNotifier;
use crate::outbox::{Close, LocalOutbox};
use crate::registry::InProcessRegistry;
use crate::service::{ConnectError, ConnectionService, ServiceConfig, ServicePorts};
use handshake::{Handshake, NotAHandshake};
use socket::Socket;

/// The initial read and write buffer of each socket.
const SOCKET_BUFFER_BYTES: usize = 4 * 1024;

/// The local driver's knobs; every timing is here so tests can shorten it.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// Frames queued per connection; a client that lets it fill is closed (1008).
    /// Default: 256.
    pub outgoing_queue: usize,
    /// How long a reply or replayed frame waits for room in a full queue before the
    /// connection is closed as too slow. Default: 5 seconds.
    pub reply_wait: Duration,
    /// How long one write to the socket may take before the connection is closed as too
    /// slow. Default: 10 seconds.
    pub write_timeout: Duration,
    /// How long the close frame may take to go out before the socket is dropped.
    /// Default: 1 second.
    pub close_timeout: Duration,
    /// How often the server pings. Default: 30 seconds.
    pub ping_interval: Duration,
    /// A connection from which nothing at all (not even a pong) arrives for this long is
    /// closed (1001). Default: 90 seconds.
    pub pong_timeout: Duration,
    /// A connection whose client sends no frame for this long is closed (1001), like API
    /// Gateway's idle timeout; pongs do not count, `{"action":"ping"}` does.
    /// Default: 10 minutes.
    pub idle_timeout: Duration,
    /// How often idleness and token expiry are checked. Default: 1 second.
    pub check_interval: Duration,
    /// Messages above this are not even read: the connection is closed (1009). Frames
    /// between the service's `max_frame_bytes` and this get an error frame.
    /// Default: 1 MiB.
    pub max_message_bytes: usize,
    /// Flood control per connection.
    pub rate_limit: RateLimit,
    /// Open connections one user may hold; the next upgrade is refused with 429.
    /// Default: 16, far more than one person's tabs and devices; tests and benchmarks
    /// whose crowd of subscribers is one user's raise it.
    pub max_connections_per_user: usize,
    /// Open connections on this server; the next upgrade is refused with 503.
    /// Default: 20,000.
    pub max_connections: usize,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            outgoing_queue: 256,
            reply_wait: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(1),
            ping_interval: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(90),
            idle_timeout: Duration::from_secs(600),
            check_interval: Duration::from_secs(1),
            max_message_bytes: 1024 * 1024,
            rate_limit: RateLimit::default(),
            max_connections_per_user: 16,
            max_connections: 20_000,
        }
    }
}

/// The shortest tick accepted from the configuration (a zero interval would spin).
const MIN_TICK: Duration = Duration::from_millis(1);

impl LocalConfig {
    /// How often a connection checks idleness and expiry.
    fn check_every(&self) -> Duration {
        self.check_interval.max(MIN_TICK)
    }

    /// How often a connection pings.
    fn ping_every(&self) -> Duration {
        self.ping_interval.max(MIN_TICK)
    }
}

/// The ports the local WebSocket needs; the outbox is its own.
#[derive(Clone)]
pub struct LocalPorts {
    pub registry: Arc<dyn ConnectionRegistry>,
    pub documents: Arc<dyn DocumentStore>,
    pub audit: Arc<dyn AuditLog>,
    pub tokens: TokenAuthority,
    pub clock: Arc<dyn Clock>,
}

/// The local WebSocket endpoint: build it once, merge [`router`](LocalWebSocket::router)
/// into the REST router, hand [`notifier`](LocalWebSocket::notifier) to the fan-out.
#[derive(Clone)]
pub struct LocalWebSocket {
    service: ConnectionService,
    outbox: Arc<LocalOutbox>,
    config: Arc<LocalConfig>,
    slots: Arc<slots::Slots>,
}

impl LocalWebSocket {
    /// The endpoint, counting into metrics of its own.
    pub fn new(ports: LocalPorts, service: ServiceConfig, config: LocalConfig) -> Self {
        Self::counting(ports, service, config, LiveMetrics::default())
    }

    /// The endpoint counting into `metrics`, its open connections included.
    pub fn counting(
        ports: LocalPorts,
        service: ServiceConfig,
        config: LocalConfig,
        metrics: LiveMetrics,
    ) -> Self {
        let outbox = Arc::new(LocalOutbox::new(config.reply_wait));
        let open = Arc::downgrade(&outbox);
        metrics.count_open_connections_with(move || open.upgrade().map_or(0, |o| o.len()));
        let service = ConnectionService::counting(
            ServicePorts {
                registry: ports.registry,
                documents: ports.documents,
                audit: ports.audit,
                outbox: outbox.clone(),
                tokens: ports.tokens,
                clock: ports.clock,
            },
            service,
            metrics,
        );
        Self {
            service,
            outbox,
            config: Arc::new(config),
            slots: Arc::default(),
        }
    }

    /// With an [`InProcessRegistry`], the embedded default.
    pub fn embedded(
        documents: Arc<dyn DocumentStore>,
        audit: Arc<dyn AuditLog>,
        tokens: TokenAuthority,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self::new(
            LocalPorts {
                registry: Arc::new(InProcessRegistry::new()),
                documents,
                audit,
                tokens,
                clock,
            },
            ServiceConfig::default(),
            LocalConfig::default(),
        )
    }

    /// `GET /ws?token=…`.
    pub fn router(&self) -> Router {
        router(self.clone())
    }

    /// The fan-out's notifier for these connections.
    pub fn notifier(&self) -> LiveNotifier {
        self.service.notifier()
    }

    pub fn service(&self) -> &ConnectionService {
        &self.service
    }

    /// Open WebSocket connections, for `/metrics`.
    pub fn open_connections(&self) -> usize {
        self.outbox.len()
    }

    /// Closes every connection with 1001 (call on shutdown: upgraded connections do not
    /// hold up the HTTP server's graceful shutdown).
    pub fn close_all(&self) {
        self.outbox.close_all(Close::SHUTDOWN);
    }
}

/// The `/ws` route over `state`, ready to merge into the REST router.
pub fn router(state: LocalWebSocket) -> Router {
    Router::new().route("/ws", get(upgrade)).with_state(state)
}

#[derive(Deserialize)]
struct TokenQuery {
    #[serde(default)]
    token: String,
}

async fn upgrade(
    State(ws): State<LocalWebSocket>,
    query: Result<Query<TokenQuery>, QueryRejection>,
    handshake: Result<Handshake, NotAHandshake>,
) -> Response {
    let token = query.map(|Query(q)| q.token).unwrap_or_default();
    let handshake = match handshake {
        Ok(handshake) => handshake,
        Err(rejection) => {
            // Authentication first: a request without a valid token learns nothing more.
            if let Err(e) = ws.service.authenticate(&token).await {
                return refused(&e);
            }
            return rejection.into_response();
        }
    };
    let id = ConnectionId(format!("local-{}", uuid::Uuid::new_v4().simple()).into());
    let mailbox = ws.outbox.open(id.clone(), ws.config.outgoing_queue);
    let connection = match ws.service.connect(id.clone(), &token).await {
        Ok(connection) => connection,
        Err(e) => {
            ws.outbox.remove(&id);
            return match e {
                ConnectError::Unauthorized(e) => {
                    tracing::debug!(error = %e, "websocket upgrade refused");
                    refused(&e)
                }
                ConnectError::TooMany(most) => too_many(&format!(
                    "one user may hold at most {most} WebSocket connections at once"
                )),
                ConnectError::Unavailable(e) => {
                    tracing::warn!(error = %e, "websocket upgrade failed");
                    unavailable()
                }
            };
        }
    };
    let slot = match ws.slots.take(
        &connection.user,
        ws.config.max_connections_per_user,
        ws.config.max_connections,
    ) {
        Ok(slot) => slot,
        Err(full) => {
            ws.outbox.remove(&id);
            ws.service.disconnect(&id).await;
            return match full {
                slots::Full::User(most) => {
                    tracing::info!(user = %connection.user, most, "websocket refused: too many connections for one user");
                    too_many(&format!(
                        "one user may hold at most {most} WebSocket connections at once"
                    ))
                }
                slots::Full::Server(most) => {
                    tracing::warn!(
                        most,
                        "websocket refused: the server holds as many connections as it may"
                    );
                    unavailable()
                }
            };
        }
    };
    let max_message_bytes = ws.config.max_message_bytes;
    let config = WebSocketConfig::default()
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes))
        // The socket's buffers are allocated per connection up front; the defaults
        // (128 KiB each) would cost ~140 KB per idle connection. They grow on demand for
        // larger messages.
        .read_buffer_size(SOCKET_BUFFER_BYTES)
        .write_buffer_size(SOCKET_BUFFER_BYTES);
    let session = Box::new(connection::Session {
        ws,
        connection,
        mailbox,
        _slot: slot,
    });
    let (response, upgraded) = handshake.accept();
    tokio::spawn(async move {
        match upgraded.await {
            Ok(upgraded) => {
                let socket = Socket::new(upgraded, config).await;
                connection::run(session, socket).await;
            }
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade failed");
                let connection::Session { ws, connection, .. } = *session;
                ws.outbox.remove(&connection.id);
                ws.service.disconnect(&connection.id).await;
            }
        }
    });
    response
}

fn problem(status: StatusCode, kind: &str, title: &str, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": kind,
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

/// A token that does not verify: 401; one that cannot be checked now (the identity
/// provider's keys are unavailable): 503.
fn refused(e: &AuthError) -> Response {
    match e {
        AuthError::Unavailable(_) => unavailable(),
        _ => unauthorized(&e.to_string()),
    }
}

fn unauthorized(detail: &str) -> Response {
    let mut response = problem(
        StatusCode::UNAUTHORIZED,
        "/problems/unauthorized",
        "Unauthorized",
        detail,
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn too_many(detail: &str) -> Response {
    let mut response = problem(
        StatusCode::TOO_MANY_REQUESTS,
        "/problems/too-many-connections",
        "Too many connections",
        detail,
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
    response
}

fn unavailable() -> Response {
    let mut response = problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "/problems/unavailable",
        "Service unavailable",
        "try again shortly",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
