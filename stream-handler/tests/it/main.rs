//! The stream handler's integration tests, in one binary: the handler on real
//! DynamoDB stream event fixtures, and the whole embedded fan-out (SQLite change log,
//! poller, sinks, tantivy index, analysis worker) in temporary data directories.

// A test target sees all of its package's dependencies; the library is where unused ones are caught.
#![allow(unused_crate_dependencies)]

mod commit_policy;
mod common;
mod crash;
mod fanout;
mod handler;
mod lambda;
mod poller;
mod webhooks;
