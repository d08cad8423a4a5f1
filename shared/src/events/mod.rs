//! Events for consumers outside docfan: every committed change as an event in
//! EventBridge's shape, the EventBridge pattern language that selects them, and the
//! Standard Webhooks signatures that carry them to a receiver on one machine.
//!
//! - [`event`]: [`DocumentEvent`], built from a [`ChangeEvent`](crate::domain::ChangeEvent)
//!   with an id derived from the change, so every delivery of it carries the same id;
//! - [`pattern`]: [`EventPattern`], an event pattern compiled once and matched the way
//!   EventBridge matches it;
//! - [`webhook`]: [`WebhookSecret`], signing (and verifying) deliveries.
//!
//! Everything here is pure: no I/O and no clock of its own.

pub mod event;
pub mod pattern;
pub mod webhook;

pub use event::{DetailType, DocumentEvent, EVENT_SOURCE, EVENT_VERSION, EventDetail};
pub use pattern::{EventPattern, MAX_PATTERN_BYTES, MAX_PATTERN_DEPTH, PatternError};
pub use webhook::{SecretError, VerifyError, WebhookHeaders, WebhookSecret};
