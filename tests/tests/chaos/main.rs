//! Chaos: faults injected while several writers edit concurrently, and what must hold
//! afterwards: every acknowledged version is stored, and every consumer of the change
//! stream (audit trail, search, analysis) applies each version once in effect, or the
//! record sits in the dead-letter queue with its reason until it is redriven.
//!
//! - [`sigkill`]: `docfan serve` killed with SIGKILL again and again;
//! - [`sink_outage`]: a sink of the embedded fan-out failing for a while, shorter and
//!   longer than the retry budget;
//! - [`poison`]: a storm of poison records in the change log;
//! - [`disk`]: the data directory filling up, and turning read-only (these mount a
//!   small tmpfs, so they need root: `tests/run` runs them).
//!
//! The same faults on the AWS side (the OpenSearch node stopped and restarted) are in
//! the `aws` target.

// A test target sees all of its package's dependencies; the library is where unused ones are caught.
#![allow(unused_crate_dependencies)]

mod disk;
mod poison;
mod sigkill;
mod sink_outage;
