//! Pushing frames to WebSocket clients through the API Gateway Management API
//! (`POST {endpoint}/@connections/{id}`, SigV4-signed for `execute-api`).
//!
//! - A 410 (`GoneException`) means the client has disconnected: [`PushError::Gone`],
//!   and the caller forgets the connection.
//! - Frames over 128 KB (API Gateway's WebSocket message limit) are refused before any
//!   call: [`PushError::TooLarge`].
//! - At most `max_concurrent` posts are in flight per process (a semaphore), so a
//!   document with many subscribers does not open unbounded connections or trip the
//!   API's throttling all at once.
//! - Throttling (429 `LimitExceededException`), 5xx, timeouts and connection failures
//!   are [`PushError::Unavailable`] after the SDK's own retries.

use std::sync::Arc;

use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::operation::delete_connection::DeleteConnectionError;
use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use tokio::sync::Semaphore;

use super::errors::sdk_error;
use crate::Error;
use crate::ports::ConnectionId;

/// API Gateway's limit on one WebSocket message, in bytes.
pub const MAX_FRAME_BYTES: usize = 128 * 1024;

/// Why a frame did not reach a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The connection is gone (410): forget it.
    #[error("the connection is gone")]
    Gone,
    /// The frame is over [`MAX_FRAME_BYTES`]; it was not sent.
    #[error("the frame is {0} bytes, over API Gateway's {MAX_FRAME_BYTES}-byte limit")]
    TooLarge(usize),
    /// Throttling, a timeout, a 5xx: it may pass.
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
    /// Anything else (a forbidden call, a bad endpoint): retrying will not help.
    #[error("{0}")]
    Failed(String),
}

/// The Management API client with a bound on concurrent posts.
#[derive(Debug, Clone)]
pub struct ConnectionPusher {
    client: Client,
    permits: Arc<Semaphore>,
}

impl ConnectionPusher {
    pub fn new(client: Client, max_concurrent: usize) -> Self {
        Self {
            client,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
        }
    }

    /// Posts one frame to one connection.
    pub async fn post(&self, to: &ConnectionId, frame: &[u8]) -> Result<(), PushError> {
        if frame.len() > MAX_FRAME_BYTES {
            return Err(PushError::TooLarge(frame.len()));
        }
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PushError::Failed("the pusher is closed".into()))?;
        let result = self
            .client
            .post_to_connection()
            .connection_id(to.as_str())
            .data(Blob::new(frame.to_vec()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(PostToConnectionError::GoneException(_)) => Err(PushError::Gone),
                Some(PostToConnectionError::PayloadTooLargeException(_)) => {
                    Err(PushError::TooLarge(frame.len()))
                }
                _ if e.raw_response().is_some_and(|r| r.status().as_u16() == 410) => {
                    Err(PushError::Gone)
                }
                _ => Err(classify(sdk_error("PostToConnection", e))),
            },
        }
    }

    /// Closes a connection from the server side (`DELETE @connections/{id}`); a
    /// connection already gone is fine.
    pub async fn disconnect(&self, id: &ConnectionId) -> Result<(), PushError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PushError::Failed("the pusher is closed".into()))?;
        match self
            .client
            .delete_connection()
            .connection_id(id.as_str())
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(DeleteConnectionError::GoneException(_))
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(classify(sdk_error("DeleteConnection", e))),
        }
    }
}

fn classify(err: Error) -> PushError {
    match err {
        Error::Unavailable(reason) => PushError::Unavailable(reason),
        other => PushError::Failed(other.to_string()),
    }
}
