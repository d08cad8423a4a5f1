//! The stream handler's integration tests, in one binary: the handler on real
//! DynamoDB stream event fixtures, and the whole embedded fan-out (SQLite change log,
//! poller, sinks, tantivy index, analysis worker) in temporary data directories.

mod common;
mod crash;
mod fanout;
mod handler;
mod poller;
