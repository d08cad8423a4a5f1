//! End-to-end tests of the REST API and the change log, against the real app on a
//! loopback port with its own data directory.

// A test target sees all of its package's dependencies; the library is where unused ones are caught.
#![allow(unused_crate_dependencies)]

mod abuse;
mod access;
mod admin;
mod auth;
mod backup;
mod change_log;
mod cli;
mod documents;
mod edits;
mod events;
mod input;
mod oidc;
mod openapi;
mod pagination;
mod readiness;
mod request_ids;
mod system;
mod upgrade;
