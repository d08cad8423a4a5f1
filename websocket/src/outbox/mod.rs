//! The outbound port: pushing a frame to one connection. The embedded twin,
//! [`LocalOutbox`], is an in-process map of connection id → bounded queue drained by the
//! connection's task; the AWS adapter posts to API Gateway's
//! `@connections/{id}` (`post_to_connection`), whose 410 Gone is [`SendError::Gone`].

mod local;

use async_trait::async_trait;
use futures_util::StreamExt;
use shared::ports::ConnectionId;

use crate::frames::Frame;

pub use local::{LocalOutbox, Mail, MailboxReceiver};

/// Why a frame did not reach a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The connection is gone, or was dropped for not keeping up: forget it.
    #[error("the connection is gone")]
    Gone,
    /// The push service failed in a way that may pass (throttling, a timeout).
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
}

/// How many sends [`Outbox::send_to_each`] runs at once by default.
pub const SEND_CONCURRENCY: usize = 64;

/// Pushes frames to connections.
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Hands the frame to the connection without waiting on its client: a connection that
    /// cannot take it now (its queue is full) is closed and reported [`SendError::Gone`],
    /// so one client that stops reading never delays the others.
    async fn send(&self, to: &ConnectionId, frame: Frame) -> Result<(), SendError>;

    /// Like [`send`](Outbox::send), but may wait a bounded time for room in the queue:
    /// for replies and replays the client itself asked for. Errors as for `send`.
    async fn send_waiting(&self, to: &ConnectionId, frame: Frame) -> Result<(), SendError> {
        self.send(to, frame).await
    }

    /// [`send`](Outbox::send)s each frame to its connection, the verdicts in the same
    /// order: a broadcast in one call. By default up to [`SEND_CONCURRENCY`] sends run
    /// at once (API Gateway answers each `@connections` post over HTTP); the local
    /// outbox serves the whole call with one lookup of its map.
    async fn send_to_each(
        &self,
        deliveries: &[(ConnectionId, Frame)],
    ) -> Vec<Result<(), SendError>> {
        let sends: Vec<_> = deliveries
            .iter()
            .map(|(to, frame)| self.send(to, frame.clone()))
            .collect();
        futures_util::stream::iter(sends)
            .buffered(SEND_CONCURRENCY)
            .collect()
            .await
    }
}

/// How and why the server ends a connection: a WebSocket close code and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close {
    pub code: u16,
    pub reason: &'static str,
}

impl Close {
    /// The client did not read its frames fast enough (1008, policy violation).
    pub const TOO_SLOW: Close = Close {
        code: 1008,
        reason: "too slow: the outgoing queue is full",
    };
    /// The connection's token expired and was not refreshed in time (1008).
    pub const TOKEN_EXPIRED: Close = Close {
        code: 1008,
        reason: "token expired",
    };
    /// Too many frames too fast, for too long (1008).
    pub const RATE_LIMITED: Close = Close {
        code: 1008,
        reason: "rate limit exceeded",
    };
    /// The connection is not registered any more (1008).
    pub const UNKNOWN_CONNECTION: Close = Close {
        code: 1008,
        reason: "unknown connection",
    };
    /// No frame from the client within the idle timeout (1001, going away).
    pub const IDLE: Close = Close {
        code: 1001,
        reason: "idle timeout",
    };
    /// The client stopped answering pings (1001).
    pub const UNRESPONSIVE: Close = Close {
        code: 1001,
        reason: "no answer to pings",
    };
    /// A frame over the hard size limit (1009, message too big).
    pub const TOO_BIG: Close = Close {
        code: 1009,
        reason: "message too big",
    };
    /// The server is shutting down (1001).
    pub const SHUTDOWN: Close = Close {
        code: 1001,
        reason: "server shutting down",
    };
    /// The server could not serve the connection (1011, internal error).
    pub const SERVER_ERROR: Close = Close {
        code: 1011,
        reason: "server error",
    };
}
