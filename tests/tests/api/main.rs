//! End-to-end tests of the REST API and the change log, against the real app on a
//! loopback port with its own data directory.

mod abuse;
mod access;
mod auth;
mod change_log;
mod documents;
mod edits;
mod input;
mod pagination;
mod system;
