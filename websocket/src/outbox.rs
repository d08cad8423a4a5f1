//! The outbound port: pushing a frame to one connection. The embedded twin,
//! [`LocalOutbox`], is an in-process map of connection id → bounded queue drained by the
//! connection's writer task; the AWS adapter posts to API Gateway's
//! `@connections/{id}` (`post_to_connection`), whose 410 Gone is [`SendError::Gone`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use shared::ports::ConnectionId;
use tokio::sync::{mpsc, watch};

use crate::frames::Frame;

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

struct Mailbox {
    frames: mpsc::Sender<Frame>,
    close: Arc<watch::Sender<Option<Close>>>,
}

/// The receiving end of one local connection's mailbox, for its writer task.
pub struct MailboxReceiver {
    /// Frames to write, in order.
    pub frames: mpsc::Receiver<Frame>,
    /// Becomes `Some` when the connection must close, and why.
    pub close: watch::Receiver<Option<Close>>,
    closer: Arc<watch::Sender<Option<Close>>>,
}

impl MailboxReceiver {
    /// Asks the connection to close (the first reason wins).
    pub fn closer(&self) -> Closer {
        Closer(Arc::clone(&self.closer))
    }
}

/// Requests a connection's close from anywhere.
#[derive(Clone)]
pub struct Closer(Arc<watch::Sender<Option<Close>>>);

impl Closer {
    /// Requests the close unless one was already requested; returns whether this one won.
    pub fn close(&self, why: Close) -> bool {
        self.0.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(why);
                true
            } else {
                false
            }
        })
    }
}

/// The embedded [`Outbox`]: a bounded queue per connection, in process.
pub struct LocalOutbox {
    mailboxes: RwLock<HashMap<ConnectionId, Mailbox>>,
    wait_limit: Duration,
}

impl LocalOutbox {
    /// `wait_limit` bounds [`Outbox::send_waiting`]: a connection whose queue stays full
    /// that long is closed as too slow.
    pub fn new(wait_limit: Duration) -> Self {
        Self {
            mailboxes: RwLock::new(HashMap::new()),
            wait_limit,
        }
    }

    /// Opens the mailbox of a new connection, holding at most `capacity` frames.
    pub fn open(&self, id: ConnectionId, capacity: usize) -> MailboxReceiver {
        let (frames_tx, frames) = mpsc::channel(capacity.max(1));
        let (close_tx, close) = watch::channel(None);
        let closer = Arc::new(close_tx);
        self.mailboxes.write().expect("outbox lock").insert(
            id,
            Mailbox {
                frames: frames_tx,
                close: Arc::clone(&closer),
            },
        );
        MailboxReceiver {
            frames,
            close,
            closer,
        }
    }

    /// Forgets the connection's mailbox (its writer has stopped).
    pub fn remove(&self, id: &ConnectionId) {
        self.mailboxes.write().expect("outbox lock").remove(id);
    }

    /// Closes the connection: its mailbox is removed and its writer told why.
    pub fn close(&self, id: &ConnectionId, why: Close) {
        if let Some(mailbox) = self.mailboxes.write().expect("outbox lock").remove(id) {
            Closer(mailbox.close).close(why);
        }
    }

    /// Closes every connection (server shutdown).
    pub fn close_all(&self, why: Close) {
        let all: Vec<_> = self
            .mailboxes
            .write()
            .expect("outbox lock")
            .drain()
            .collect();
        for (_, mailbox) in all {
            Closer(mailbox.close).close(why);
        }
    }

    /// How many connections have a mailbox.
    pub fn len(&self) -> usize {
        self.mailboxes.read().expect("outbox lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn sender(&self, id: &ConnectionId) -> Option<mpsc::Sender<Frame>> {
        self.mailboxes
            .read()
            .expect("outbox lock")
            .get(id)
            .map(|m| m.frames.clone())
    }
}

#[async_trait]
impl Outbox for LocalOutbox {
    async fn send(&self, to: &ConnectionId, frame: Frame) -> Result<(), SendError> {
        let outcome = {
            let mailboxes = self.mailboxes.read().expect("outbox lock");
            let Some(mailbox) = mailboxes.get(to) else {
                return Err(SendError::Gone);
            };
            mailbox.frames.try_send(frame)
        };
        match outcome {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::info!(connection = %to, "closing a connection that does not keep up");
                self.close(to, Close::TOO_SLOW);
                Err(SendError::Gone)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.remove(to);
                Err(SendError::Gone)
            }
        }
    }

    async fn send_waiting(&self, to: &ConnectionId, frame: Frame) -> Result<(), SendError> {
        let sender = self.sender(to).ok_or(SendError::Gone)?;
        match sender.send_timeout(frame, self.wait_limit).await {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                tracing::info!(connection = %to, "closing a connection that does not keep up");
                self.close(to, Close::TOO_SLOW);
                Err(SendError::Gone)
            }
            Err(mpsc::error::SendTimeoutError::Closed(_)) => {
                self.remove(to);
                Err(SendError::Gone)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames;

    #[tokio::test]
    async fn a_full_queue_closes_the_connection_as_too_slow() {
        let outbox = LocalOutbox::new(Duration::from_millis(10));
        let id = ConnectionId("c1".into());
        let mut mailbox = outbox.open(id.clone(), 2);
        outbox.send(&id, frames::pong()).await.unwrap();
        outbox.send(&id, frames::pong()).await.unwrap();
        assert_eq!(outbox.send(&id, frames::pong()).await, Err(SendError::Gone));
        assert_eq!(*mailbox.close.borrow_and_update(), Some(Close::TOO_SLOW));
        assert!(outbox.is_empty());
        // What was queued before is still delivered before the close.
        assert_eq!(mailbox.frames.recv().await, Some(frames::pong()));
    }

    #[tokio::test]
    async fn unknown_and_finished_connections_are_gone() {
        let outbox = LocalOutbox::new(Duration::from_millis(10));
        let id = ConnectionId("c1".into());
        assert_eq!(outbox.send(&id, frames::pong()).await, Err(SendError::Gone));
        let mailbox = outbox.open(id.clone(), 2);
        drop(mailbox);
        assert_eq!(outbox.send(&id, frames::pong()).await, Err(SendError::Gone));
        assert!(outbox.is_empty());
    }

    #[tokio::test]
    async fn waiting_sends_give_up_after_the_limit() {
        let outbox = LocalOutbox::new(Duration::from_millis(20));
        let id = ConnectionId("c1".into());
        let mailbox = outbox.open(id.clone(), 1);
        outbox.send_waiting(&id, frames::pong()).await.unwrap();
        assert_eq!(
            outbox.send_waiting(&id, frames::pong()).await,
            Err(SendError::Gone)
        );
        assert_eq!(*mailbox.close.borrow(), Some(Close::TOO_SLOW));
    }
}
