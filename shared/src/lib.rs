//! docfan's core, shared by every driver (the local server, the Lambda functions and the
//! operator commands):
//!
//! - [`domain`]: documents, access rules, changes, audit entries, analyses;
//! - [`ports`]: the traits the core needs from the outside world;
//! - [`service`]: the document rules (access, versions, merge patch) over the ports;
//! - [`codec`]: the DynamoDB item and stream-record codec both modes share;
//! - [`auth`]: JWTs, HS256 with a shared secret or an OpenID Connect provider's keys;
//! - [`embedded`]: the one-machine adapters (SQLite, tantivy);
//! - [`events`]: changes as EventBridge-shaped events, event patterns, webhook signatures;
//! - [`live`]: the frames the WebSocket contract sends, and who gets which frame of a
//!   change (both deployments' notifiers);
//! - `aws` (cargo feature `aws`): the AWS adapters (DynamoDB, SQS, API Gateway, OpenSearch);
//! - [`metrics`]: the one metrics registry, rendered as Prometheus text on one machine
//!   and as CloudWatch Embedded Metric Format lines in Lambda;
//! - [`retry`]: the one retry policy (exponential backoff with jitter);
//! - [`clock`], [`error`] and [`telemetry`]: time, the error type, logging setup.

// The library's unit tests see the dev-dependencies the integration tests use.
#![cfg_attr(test, allow(unused_crate_dependencies))]

pub mod auth;
#[cfg(feature = "aws")]
pub mod aws;
pub mod clock;
pub mod codec;
pub mod domain;
pub mod embedded;
pub mod error;
pub mod events;
pub mod live;
pub mod metrics;
pub mod ports;
pub mod retry;
pub mod service;
pub mod telemetry;

pub use error::{Error, Result};
