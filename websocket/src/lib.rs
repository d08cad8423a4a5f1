//! Live updates over WebSocket: who is connected, what they subscribe to, and delivering
//! each change to the subscribers who may read it.
//!
//! - [`service`]: [`ConnectionService`], the connect / frame / disconnect logic as plain
//!   async methods (API Gateway's routes), free of any transport;
//! - [`notifier`]: [`LiveNotifier`], the fan-out's `Notifier`;
//! - [`frames`]: the JSON frames of the contract, parsed and built;
//! - [`outbox`]: the port that pushes a frame to one connection, and its in-process twin;
//! - [`registry`]: the in-process `ConnectionRegistry`;
//! - [`local`]: the `/ws` axum driver of the embedded server;
//! - `apigateway` (cargo feature `aws`): the outbox that posts to API Gateway connections.
//!
//! Replay and live delivery meet in `cursors`, which makes the switch between them exact.

// The library's unit tests see the dev-dependencies the integration tests use.
#![cfg_attr(test, allow(unused_crate_dependencies))]

// The `lambda-websocket` binary's runtime, a dependency of the package for it alone.
#[cfg(feature = "lambda")]
use lambda_runtime as _;

#[cfg(feature = "aws")]
pub mod apigateway;
mod cursors;
pub mod frames;
pub mod local;
pub mod notifier;
pub mod outbox;
pub mod presence;
pub mod registry;
pub mod service;

pub use local::{LocalConfig, LocalPorts, LocalWebSocket, RateLimit, router};
pub use notifier::LiveNotifier;
pub use outbox::{Close, LocalOutbox, Outbox, SendError};
pub use registry::InProcessRegistry;
pub use service::{ConnectError, ConnectionService, FrameOutcome, ServiceConfig, ServicePorts};
