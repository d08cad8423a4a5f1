//! The AWS adapters of the ports (cargo feature `aws`): the same contracts as the
//! embedded adapters, on DynamoDB, SQS, the API Gateway Management API, OpenSearch and
//! EventBridge.
//!
//! - [`config`]: [`AwsConfig`], read from the environment, and [`AwsClients`], every
//!   client built once per process;
//! - [`tables`]: the tables' key schemas (as `infra/template.yaml` declares them) and
//!   their creation, for emulators and local runs against real accounts;
//! - [`document_store`]: documents and membership items on DynamoDB (the table's stream
//!   is the change stream);
//! - [`connection_registry`]: WebSocket connections and subscriptions on DynamoDB;
//! - [`push`]: `post_to_connection` through the API Gateway Management API;
//!   [`notifier`]: the fan-out's notifier over the registry and the pusher alone;
//! - [`audit_log`], [`analysis_store`]: the audit trail and analysis results on DynamoDB;
//! - [`attempt_log`]: the failed attempts of stream records, so a Lambda consumer
//!   dead-letters a record before the event source mapping gives up on it;
//! - [`analysis_queue`], [`dead_letter`]: the analysis jobs and the dead letters on SQS;
//! - [`search_index`]: the search index on OpenSearch;
//! - [`event_bus`]: events for other consumers, `PutEvents` to an EventBridge bus;
//! - [`stream_replay`]: the records of a batch the stream mapping gave up on, read back
//!   from the stream by its on-failure metadata;
//! - [`errors`]: how SDK failures become [`Error`](crate::Error) variants;
//! - [`xray`]: X-Ray subsegments sent to the daemon beside a traced Lambda function.
//!
//! Conditional-write failures are read from the SDKs' typed error variants
//! (`ConditionalCheckFailedException`, the cancellation reasons of a transaction,
//! OpenSearch's 409), never from error messages.

pub mod analysis_queue;
pub mod analysis_store;
pub mod attempt_log;
pub mod audit_log;
pub mod config;
pub mod connection_registry;
pub mod dead_letter;
pub mod document_store;
pub mod errors;
pub mod event_bus;
pub mod notifier;
pub mod push;
pub mod search_index;
pub mod stream_replay;
pub mod tables;
pub mod xray;

pub use analysis_queue::SqsAnalysisQueue;
pub use analysis_store::DynamoDbAnalysisStore;
pub use attempt_log::DynamoDbAttemptLog;
pub use audit_log::DynamoDbAuditLog;
pub use config::{AwsClients, AwsConfig, OpenSearchConfig, TableNames};
pub use connection_registry::DynamoDbConnectionRegistry;
pub use dead_letter::SqsDeadLetterQueue;
pub use document_store::DynamoDbDocumentStore;
pub use event_bus::{EventBridgeBus, EventBridgeConfig, EventBusName};
pub use notifier::ApiGatewayNotifier;
pub use push::{ConnectionPusher, MAX_FRAME_BYTES, PushError};
pub use search_index::OpenSearchIndex;
