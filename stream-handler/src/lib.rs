//! docfan's change-stream fan-out: every committed change, decoded once, delivered to
//! independent sinks (the fifth, events, where an event bus is configured).
//!
//! - [`decode`]: a DynamoDB stream record (JSON) into a [`ChangeEvent`](shared::domain::ChangeEvent);
//!   [`bodies`]: reading back the bodies a record left out;
//! - [`handler`]: [`handle`], the batch handler shared by the embedded poller and the
//!   Lambda entry point, with its retries, partial batch response and dead letters;
//!   [`give_up`]: a Lambda consumer dead-letters a record that keeps failing before its
//!   event source mapping gives up on it;
//! - [`sinks`]: search, notifications, audit, analysis and events, one folder each;
//! - [`analysis`]: the analysis worker and the text analysis it runs;
//! - [`poller`]: the embedded event source mapping over the SQLite change log;
//! - [`webhooks`]: the delivery workers of the embedded event bus, one per rule;
//! - [`redrive`]: handling dead letters again; [`reindex`]: rebuilding the search index;
//! - [`lambda`]: one Lambda invocation (the stream event or the analysis batch), ending
//!   with its metrics as CloudWatch EMF lines; the counters are `shared::metrics`';
//! - [`embedded`]: every embedded port and task, opened from the data directory;
//! - `xray` (cargo feature `aws`): X-Ray subsegments per sink in Lambda.

// The library's unit tests see the dev-dependencies the integration tests use.
#![cfg_attr(test, allow(unused_crate_dependencies))]

// The Lambda binaries' runtime, a dependency of the package for them alone.
#[cfg(feature = "lambda")]
use lambda_runtime as _;

pub mod analysis;
#[cfg(feature = "aws")]
pub mod aws;
pub mod bodies;
pub mod decode;
pub mod embedded;
pub mod give_up;
pub mod handler;
pub mod lambda;
pub mod poller;
pub mod redrive;
pub mod reindex;
pub mod sinks;
pub mod webhooks;
#[cfg(feature = "aws")]
pub mod xray;

pub use embedded::{EmbeddedFanout, FanoutConfig};
pub use handler::{BatchOutcome, BatchReport, Fanout, HandlerConfig, RetryPolicy, handle};
pub use poller::{Poller, PollerConfig};
