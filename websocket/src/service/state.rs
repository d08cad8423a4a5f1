//! What a [`ConnectionService`](super::ConnectionService) is made of, and shares with its
//! [`LiveNotifier`](crate::LiveNotifier) and the presence frames: its knobs, its ports,
//! and the state behind both.

use std::sync::Arc;
use std::time::Duration;

use shared::auth::TokenAuthority;
use shared::clock::Clock;
use shared::metrics::LiveMetrics;
use shared::ports::{AuditLog, ConnectionRegistry, DocumentStore};

use crate::cursors::Cursors;
use crate::frames::MAX_FRAME_BYTES;
use crate::outbox::Outbox;
use crate::presence::limit::{PresenceLimit, PresenceLimiter};

/// The service's knobs.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The largest client frame accepted. Default: 128 KiB, API Gateway's limit.
    pub max_frame_bytes: usize,
    /// Audit entries read per page during a replay. Default: 100.
    pub replay_page: usize,
    /// How long a replay waits for the audit trail to catch up with the document (the
    /// audit sink may lag the notifier) before reporting `replay_incomplete`.
    /// Default: 5 seconds.
    pub replay_wait: Duration,
    /// How many subscriptions a change that ends them (a revocation, a deletion) ends
    /// at once: each unsubscribes, then is pushed its frame. Broadcasts go through
    /// [`Outbox::send_to_each`], whose adapter sets
    /// its own concurrency. Default: 64.
    pub send_concurrency: usize,
    /// The most documents one connection may be subscribed to. Default: 100.
    pub max_subscriptions: usize,
    /// How often one connection may share its cursor.
    pub presence_limit: PresenceLimit,
    /// Connections one user may hold, counted in the registry at `$connect` (the next
    /// is refused with [`ConnectError::TooMany`](super::ConnectError::TooMany)).
    /// `None`: not counted here. The Lambda driver sets it; the local driver counts its
    /// own sockets before it upgrades one and leaves it unset. Default: `None`.
    pub max_connections_per_user: Option<usize>,
    /// Whether this process's notifier delivers to its connections (the local server),
    /// so a live subscription keeps its replay cursor to admit frames. `false` for the
    /// websocket Lambda, whose notifications are another function's: a subscription's
    /// cursor is dropped once its replay is done, so a long-lived container holds none
    /// (its `$disconnect` may reach another one). Default: `true`.
    pub notifies_here: bool,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: MAX_FRAME_BYTES,
            replay_page: 100,
            replay_wait: Duration::from_secs(5),
            send_concurrency: 64,
            max_subscriptions: 100,
            presence_limit: PresenceLimit::default(),
            max_connections_per_user: None,
            notifies_here: true,
        }
    }
}

/// What the service needs from the outside world.
#[derive(Clone)]
pub struct ServicePorts {
    pub registry: Arc<dyn ConnectionRegistry>,
    pub documents: Arc<dyn DocumentStore>,
    pub audit: Arc<dyn AuditLog>,
    pub outbox: Arc<dyn Outbox>,
    pub tokens: TokenAuthority,
    pub clock: Arc<dyn Clock>,
}

/// The state one service shares with its notifier.
pub(crate) struct Inner {
    pub ports: ServicePorts,
    pub config: ServiceConfig,
    pub cursors: Cursors,
    pub metrics: LiveMetrics,
    pub presence: PresenceLimiter,
}
