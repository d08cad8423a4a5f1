//! The connection service: API Gateway's routes (`$connect`, the frames, `$disconnect`)
//! as plain async methods, over ports only, so the local `/ws` driver and the WebSocket
//! Lambda share it. Replies go out through the [`Outbox`](crate::Outbox), in order with
//! the notifications the [`LiveNotifier`] sends.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use shared::auth::{AuthError, Identity};
use shared::domain::DocumentId;
use shared::metrics::LiveMetrics;
use shared::ports::{Connection, ConnectionId, SubscribeOptions};
use tokio::time::Instant;
use tracing::Instrument;

use crate::cursors::{Cursors, Drain};
use crate::frames::{self, ClientFrame, ErrorCode, Frame};
use crate::notifier::LiveNotifier;
use crate::outbox::Close;
use crate::presence::{self, limit::PresenceLimiter};

pub(crate) mod state;

use state::Inner;
pub use state::{ServiceConfig, ServicePorts};

/// Why a connection was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The token is missing, invalid or expired: refuse with 401.
    #[error(transparent)]
    Unauthorized(#[from] AuthError),
    /// The user already holds this many connections: refuse with 429.
    #[error("one user may hold at most {0} connections at once")]
    TooMany(usize),
    /// The registry could not record the connection: refuse with 503.
    #[error("the connection registry is unavailable: {0}")]
    Unavailable(shared::Error),
}

/// What the driver does after a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameOutcome {
    /// Keep reading.
    Continue,
    /// The connection's token was replaced; it now expires at this time.
    Refreshed(DateTime<Utc>),
    /// Close the connection.
    Close(Close),
}

/// Connect, frames, disconnect: the connection logic, free of any transport.
#[derive(Clone)]
pub struct ConnectionService {
    inner: Arc<Inner>,
}

/// The replay was cut short because the connection went away.
struct Gone;

impl ConnectionService {
    /// A service counting into metrics of its own.
    pub fn new(ports: ServicePorts, config: ServiceConfig) -> Self {
        Self::counting(ports, config, LiveMetrics::default())
    }

    /// A service (and its notifier) counting into `metrics`.
    pub fn counting(ports: ServicePorts, config: ServiceConfig, metrics: LiveMetrics) -> Self {
        Self {
            inner: Arc::new(Inner {
                ports,
                config,
                cursors: Cursors::default(),
                metrics,
                presence: PresenceLimiter::default(),
            }),
        }
    }

    /// The [`Notifier`](shared::ports::Notifier) that delivers changes to this service's
    /// subscribers (sharing its replay cursors).
    pub fn notifier(&self) -> LiveNotifier {
        LiveNotifier::new(Arc::clone(&self.inner))
    }

    /// How many subscriptions this process holds a replay cursor for.
    pub fn replay_cursors(&self) -> usize {
        self.inner.cursors.tracked()
    }

    /// The service's counters (shared with its notifier).
    pub fn metrics(&self) -> &LiveMetrics {
        &self.inner.metrics
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.inner.config
    }

    /// The current time, by the service's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.ports.clock.now()
    }

    /// Verifies a token against the service's clock.
    pub async fn authenticate(&self, token: &str) -> Result<Identity, AuthError> {
        self.inner.ports.tokens.verify(token, self.now()).await
    }

    /// `$connect`: verifies the token, counts the user's connections when
    /// [`ServiceConfig::max_connections_per_user`] is set, and registers the connection.
    pub async fn connect(&self, id: ConnectionId, token: &str) -> Result<Connection, ConnectError> {
        let ports = &self.inner.ports;
        let now = ports.clock.now();
        let identity = ports.tokens.verify(token, now).await.inspect_err(|_| {
            self.inner.metrics.upgrades_refused.inc();
        })?;
        if let Some(most) = self.inner.config.max_connections_per_user {
            let held = ports
                .registry
                .user_connections(&identity.user, most)
                .await
                .map_err(ConnectError::Unavailable)?;
            if held >= most {
                self.inner.metrics.upgrades_refused.inc();
                return Err(ConnectError::TooMany(most));
            }
        }
        let connection = Connection {
            id,
            user: identity.user,
            expires_at: identity.expires_at,
            connected_at: now,
        };
        ports
            .registry
            .register(&connection)
            .await
            .map_err(ConnectError::Unavailable)?;
        self.inner.metrics.connections_accepted.inc();
        tracing::info!(connection = %connection.id, user = %connection.user, "connected");
        Ok(connection)
    }

    /// Up to `limit` connections whose token has expired by the service's clock.
    pub async fn expired_connections(&self, limit: usize) -> shared::Result<Vec<ConnectionId>> {
        self.inner.ports.registry.expired(self.now(), limit).await
    }

    /// `$disconnect`: forgets the connection and its subscriptions.
    pub async fn disconnect(&self, id: &ConnectionId) {
        let registry = &self.inner.ports.registry;
        self.inner.cursors.forget_connection(id);
        self.inner.presence.forget(id);
        // Who to announce as gone, read before the registry forgets it.
        let user = registry.get(id).await.ok().flatten().map(|c| c.user);
        let documents = registry.subscriptions(id).await.unwrap_or_default();
        if let Err(e) = registry.remove(id).await {
            tracing::warn!(connection = %id, error = %e, "could not forget a connection");
        }
        if let Some(user) = user {
            for document in documents {
                presence::announce_left(&self.inner, &document, &user).await;
            }
        }
        tracing::info!(connection = %id, "disconnected");
    }

    /// One text frame from the client. Replies (and replayed changes) are sent through
    /// the outbox; the outcome tells the driver whether to go on.
    pub async fn handle_frame(&self, id: &ConnectionId, text: &str) -> FrameOutcome {
        let ports = &self.inner.ports;
        self.inner.metrics.frames_received.inc();
        let connection = match ports.registry.get(id).await {
            Ok(Some(connection)) => connection,
            Ok(None) => return FrameOutcome::Close(Close::UNKNOWN_CONNECTION),
            Err(e) => {
                tracing::warn!(connection = %id, error = %e, "registry unavailable");
                self.reply(id, frames::error(ErrorCode::Unavailable, "try again", None))
                    .await;
                return FrameOutcome::Continue;
            }
        };
        if connection.expires_at <= ports.clock.now() {
            return FrameOutcome::Close(Close::TOKEN_EXPIRED);
        }
        let frame = match ClientFrame::parse(text, self.inner.config.max_frame_bytes) {
            Ok(frame) => frame,
            Err(rejection) => {
                tracing::debug!(connection = %id, code = ?rejection.code, "frame refused");
                self.inner.metrics.frames_refused.inc();
                self.reply(id, rejection.to_frame()).await;
                return FrameOutcome::Continue;
            }
        };
        match frame {
            ClientFrame::Ping => {
                self.reply(id, frames::pong()).await;
                FrameOutcome::Continue
            }
            ClientFrame::Subscribe {
                document,
                since_version,
                include_document,
            } => {
                let span = tracing::info_span!("subscribe", connection = %id, document = %document, since_version);
                let options = SubscribeOptions { include_document };
                self.subscribe(&connection, document, since_version, options)
                    .instrument(span)
                    .await;
                FrameOutcome::Continue
            }
            ClientFrame::Unsubscribe { document } => {
                self.inner.cursors.forget(id, &document);
                if let Err(e) = ports.registry.unsubscribe(id, &document).await {
                    tracing::warn!(connection = %id, error = %e, "could not unsubscribe");
                    self.reply(
                        id,
                        frames::error(ErrorCode::Unavailable, "try again", Some(&document)),
                    )
                    .await;
                } else {
                    self.reply(id, frames::unsubscribed(&document)).await;
                    presence::announce_left(&self.inner, &document, &connection.user).await;
                }
                FrameOutcome::Continue
            }
            ClientFrame::Presence { document, cursor } => {
                self.share_presence(&connection, document, cursor).await;
                FrameOutcome::Continue
            }
            ClientFrame::Auth { token } => self.refresh(&connection, &token).await,
        }
    }

    /// `presence`: records the connection's cursor and tells the document's other
    /// subscribers, within the per-connection limit.
    async fn share_presence(
        &self,
        connection: &Connection,
        document: DocumentId,
        cursor: Option<shared::ports::PresenceCursor>,
    ) {
        let id = &connection.id;
        let limit = self.inner.config.presence_limit;
        if !self.inner.presence.admit(limit, id, Instant::now()) {
            let message = format!(
                "share your cursor at most {} times a second",
                limit.per_second
            );
            self.reply(
                id,
                frames::error(ErrorCode::RateLimited, &message, Some(&document)),
            )
            .await;
            return;
        }
        match presence::share(&self.inner, id, &connection.user, &document, cursor).await {
            Ok(()) => {}
            Err(shared::Error::NotFound) => {
                self.reply(
                    id,
                    frames::error(
                        ErrorCode::DocumentNotFound,
                        "subscribe to the document before sharing presence in it",
                        Some(&document),
                    ),
                )
                .await;
            }
            Err(e) => {
                tracing::warn!(connection = %id, error = %e, "could not share presence");
                self.reply(
                    id,
                    frames::error(ErrorCode::Unavailable, "try again", Some(&document)),
                )
                .await;
            }
        }
    }

    /// Sends a reply, waiting briefly for room; whether the connection is still there.
    async fn reply(&self, id: &ConnectionId, frame: Frame) -> bool {
        self.inner
            .ports
            .outbox
            .send_waiting(id, frame)
            .await
            .is_ok()
    }

    async fn refresh(&self, connection: &Connection, token: &str) -> FrameOutcome {
        let ports = &self.inner.ports;
        let id = &connection.id;
        let identity = match ports.tokens.verify(token, ports.clock.now()).await {
            Ok(identity) => identity,
            Err(AuthError::Expired) => {
                self.reply(
                    id,
                    frames::error(ErrorCode::TokenExpired, "the token has expired", None),
                )
                .await;
                return FrameOutcome::Continue;
            }
            Err(AuthError::Unavailable(_)) => {
                self.reply(id, frames::error(ErrorCode::Unavailable, "try again", None))
                    .await;
                return FrameOutcome::Continue;
            }
            Err(e) => {
                self.reply(
                    id,
                    frames::error(ErrorCode::InvalidToken, &e.to_string(), None),
                )
                .await;
                return FrameOutcome::Continue;
            }
        };
        if identity.user != connection.user {
            self.reply(
                id,
                frames::error(
                    ErrorCode::WrongUser,
                    "the token is for another user than this connection's",
                    None,
                ),
            )
            .await;
            return FrameOutcome::Continue;
        }
        if let Err(e) = ports.registry.refresh(id, identity.expires_at).await {
            tracing::warn!(connection = %id, error = %e, "could not refresh a connection");
            self.reply(id, frames::error(ErrorCode::Unavailable, "try again", None))
                .await;
            return FrameOutcome::Continue;
        }
        tracing::info!(connection = %id, expires_at = %identity.expires_at, "token refreshed");
        self.reply(id, frames::authenticated(identity.expires_at))
            .await;
        FrameOutcome::Refreshed(identity.expires_at)
    }

    /// Subscribes with the access of this moment, replays what the client missed, and
    /// switches to live delivery without a gap or a duplicate:
    ///
    /// 1. the cursor starts replaying (live frames of the document are held) and the
    ///    subscription is registered, so every change committed from now on is either
    ///    held or, later, sent live;
    /// 2. the document is read (strongly consistent) and access checked: its version is
    ///    the one `subscribed` announces;
    /// 3. with `sinceVersion`, the audit entries after it up to that version are sent, in
    ///    order; a version the audit trail does not hold yet is waited for, unless the
    ///    held frames already start at or below it;
    /// 4. the held frames above the last version sent are sent, until none are held and
    ///    the cursor turns live from the last version sent (when the held frames took
    ///    over from the audit trail, the rest of the versions up to the current one are
    ///    still on their way from the stream).
    async fn subscribe(
        &self,
        connection: &Connection,
        document: DocumentId,
        since: Option<u64>,
        options: SubscribeOptions,
    ) {
        let ports = &self.inner.ports;
        let cursors = &self.inner.cursors;
        let id = &connection.id;

        match ports.registry.subscriptions(id).await {
            Ok(current)
                if current.len() >= self.inner.config.max_subscriptions
                    && !current.contains(&document) =>
            {
                let message = format!(
                    "a connection may follow at most {} documents: unsubscribe from one first",
                    self.inner.config.max_subscriptions
                );
                self.reply(
                    id,
                    frames::error(ErrorCode::TooManySubscriptions, &message, Some(&document)),
                )
                .await;
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not count subscriptions");
                self.reply(
                    id,
                    frames::error(ErrorCode::Unavailable, "try again", Some(&document)),
                )
                .await;
                return;
            }
        }
        cursors.begin(id, &document);
        if let Err(e) = ports.registry.subscribe(id, &document, options).await {
            cursors.forget(id, &document);
            tracing::warn!(error = %e, "could not subscribe");
            self.reply(
                id,
                frames::error(ErrorCode::Unavailable, "try again", Some(&document)),
            )
            .await;
            return;
        }
        let current = match ports.documents.head(&document).await {
            Ok(Some(doc)) if doc.access_for(&connection.user).is_some() => doc.version,
            outcome => {
                self.abandon(id, &document).await;
                let refusal = match outcome {
                    Err(e) => {
                        tracing::warn!(error = %e, "could not read the document");
                        frames::error(ErrorCode::Unavailable, "try again", Some(&document))
                    }
                    _ => frames::error(
                        ErrorCode::DocumentNotFound,
                        "no such document",
                        Some(&document),
                    ),
                };
                self.reply(id, refusal).await;
                return;
            }
        };
        if !self.reply(id, frames::subscribed(&document, current)).await {
            return;
        }
        // Where the others are: joining is announced by the newcomer's first presence
        // frame, not here, so a thousand subscribers joining cost no million frames.
        match presence::snapshot(&self.inner, &connection.user, &document).await {
            Ok(present) => {
                for frame in present {
                    if !self.reply(id, frame).await {
                        return;
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "could not read presence"),
        }
        let mut sent = since.unwrap_or(current).min(current);
        if sent < current {
            match self.replay(id, &document, sent, current).await {
                Ok(last) => sent = last,
                Err(Gone) => return,
            }
        }
        loop {
            // Live from the last version actually sent: versions up to `current` that the
            // stream has yet to deliver still go out when they come.
            match cursors.drain(id, &document, sent) {
                Drain::Live | Drain::Ended => break,
                Drain::Frames(held) => {
                    for h in held {
                        // A frame that ends the subscription goes out whatever its
                        // version: the replayed entry of that version did not say so.
                        if h.version <= sent && !h.ends {
                            continue;
                        }
                        if !self.push(id, h.frame).await {
                            return;
                        }
                        sent = sent.max(h.version);
                        if h.ends {
                            cursors.forget(id, &document);
                            return;
                        }
                    }
                }
            }
        }
        if !self.inner.config.notifies_here {
            cursors.forget(id, &document);
        }
        tracing::debug!(version = sent, "subscription live");
    }

    /// Sends the audit entries of versions `sent + 1 ..= current`, in order; returns the
    /// last version sent.
    async fn replay(
        &self,
        id: &ConnectionId,
        document: &DocumentId,
        mut sent: u64,
        current: u64,
    ) -> Result<u64, Gone> {
        let ports = &self.inner.ports;
        let config = &self.inner.config;
        let deadline = Instant::now() + config.replay_wait;
        let mut pause = Duration::from_millis(5);
        // While patient, a version missing from the audit trail is waited for; after the
        // deadline, one last pass sends what is there and reports the rest.
        let mut patient = true;
        let mut skipped: Vec<(u64, u64)> = Vec::new();
        while sent < current {
            let page = match ports
                .audit
                .list(document, Some(sent), config.replay_page)
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the audit trail");
                    Vec::new()
                }
            };
            let full = page.len() >= config.replay_page;
            let mut stopped = false;
            for entry in page {
                if entry.version <= sent {
                    continue;
                }
                if entry.version > current {
                    stopped = true;
                    break;
                }
                if entry.version != sent + 1 {
                    if patient {
                        stopped = true;
                        break;
                    }
                    skipped.push((sent + 1, entry.version - 1));
                }
                if !self.push(id, frames::replayed(&entry)).await {
                    return Err(Gone);
                }
                sent = entry.version;
            }
            if sent >= current || (full && !stopped) {
                continue;
            }
            if self.held_from(id, document, sent + 1) || !patient {
                break;
            }
            if Instant::now() >= deadline {
                patient = false;
                continue;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
        if sent < current && !self.held_from(id, document, sent + 1) {
            let held = self.inner.cursors.lowest_held(id, document);
            skipped.push((sent + 1, held.map_or(current, |v| v - 1).min(current)));
        }
        if !skipped.is_empty() {
            let ranges: Vec<String> = skipped.iter().map(|(a, b)| format!("{a}..={b}")).collect();
            tracing::warn!(missing = %ranges.join(","), "replay incomplete");
            let message = format!(
                "versions {} could not be replayed: fetch the document again",
                ranges.join(", ")
            );
            if !self
                .push(
                    id,
                    frames::error(ErrorCode::ReplayIncomplete, &message, Some(document)),
                )
                .await
            {
                return Err(Gone);
            }
        }
        Ok(sent)
    }

    async fn push(&self, id: &ConnectionId, frame: Frame) -> bool {
        self.reply(id, frame).await
    }

    /// Whether the frames held for the subscription start at `version` or below: the
    /// stream delivers a document's changes in order, so they run on from there.
    fn held_from(&self, id: &ConnectionId, document: &DocumentId, version: u64) -> bool {
        self.inner
            .cursors
            .lowest_held(id, document)
            .is_some_and(|v| v <= version)
    }

    /// Undoes a subscription whose access check failed.
    async fn abandon(&self, id: &ConnectionId, document: &DocumentId) {
        self.inner.cursors.forget(id, document);
        if let Err(e) = self.inner.ports.registry.unsubscribe(id, document).await {
            tracing::warn!(error = %e, "could not undo a refused subscription");
        }
    }
}
