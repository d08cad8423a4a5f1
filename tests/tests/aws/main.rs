//! The AWS side of docfan against emulated AWS APIs and a real OpenSearch node:
//! moto (DynamoDB, DynamoDB Streams, SQS, EventBridge) and a single-node OpenSearch,
//! both started by `tests/run` from `tests/emulators/*.start`, which export their
//! endpoints as `DOCFAN_TEST_AWS_ENDPOINT` and `DOCFAN_TEST_OPENSEARCH_URL`.
//!
//! - [`suites`]: every port's behavioural suite on its embedded adapter (plain
//!   `cargo test`) and on its AWS adapter (against the emulators);
//! - [`dead_letters`]: `docfan dlq` listing and redriving the SQS dead-letter queue;
//! - [`documents`]: the REST flow through the real router on the DynamoDB store;
//! - [`stream`]: the table's stream read back from moto, decoded like the embedded change
//!   log, and fanned out by the stream handler to the AWS sinks;
//! - [`dynamodb`]: what only the DynamoDB adapters must get right (an interrupted
//!   deletion, more readers than a transaction holds, expired connections, an
//!   untrimmed subscription set);
//! - [`versions`]: the versions table behind the DynamoDB document store (operations
//!   kept with their version in one transaction, trimmed bases, clean-up on deletion);
//! - [`lambda`]: the four Lambda binaries, each run on one event through a Runtime API
//!   of the test's own;
//! - [`failures`]: unreachable services become `Unavailable` (no emulator needed);
//! - [`analysis_worker`]: the analysis worker on an SQS event fixture;
//! - [`opensearch`]: searching an index nothing was written to yet;
//! - [`sqs`]: a dead letter over SQS's message size limit;
//! - [`events`]: changes through the index consumer to an EventBridge bus, a rule and
//!   its SQS target, in the contract's shape; requests of ten; a missing bus blocks;
//! - [`event_patterns`]: one table of event patterns through EventBridge rules on moto
//!   and through the embedded matcher, selecting the same events;
//! - [`websocket_lambda`]: the WebSocket routes on API Gateway event fixtures;
//! - [`push`]: `post_to_connection` against a recording Management API endpoint;
//! - [`search_outage`]: an OpenSearch node of its own killed and restarted under
//!   concurrent edits;
//! - [`emulators`]: endpoints, unique tables, queues and indices per test.
//!
//! Tests that need the emulators are `#[ignore]`d with the reason; `tests/run` runs
//! them with `--include-ignored`. To run them by hand:
//!
//! ```text
//! bash tests/emulators/moto.start /tmp/env && bash tests/emulators/opensearch.start /tmp/env
//! source /tmp/env && cargo test -p tests --test aws -- --include-ignored
//! ```

// A test target sees all of its package's dependencies; the library is where unused ones are caught.
#![allow(unused_crate_dependencies)]

mod analysis_worker;
mod dead_letters;
mod documents;
mod dynamodb;
mod emulators;
mod event_patterns;
mod events;
mod failures;
mod give_up;
mod lambda;
mod opensearch;
mod push;
mod search_outage;
mod serve;
mod sigv4;
mod sqs;
mod stream;
mod suites;
mod versions;
mod websocket_lambda;
