//! Events for consumers outside docfan: every committed change as an event in
//! EventBridge's shape, the EventBridge pattern language that selects them, and the
//! Standard Webhooks signatures that carry them to a receiver on one machine.
//!
//! - [`event`]: [`DocumentEvent`], built from a [`ChangeEvent`](crate::domain::ChangeEvent)
//!   with an id derived from the change, so every delivery of it carries the same id;
//! - [`pattern`]: [`EventPattern`], an event pattern compiled once and matched the way
//!   EventBridge matches it;
//! - [`webhook`]: [`WebhookSecret`], signing (and verifying) deliveries;
//! - [`rules`]: [`EventRules`], the webhook rules of `--event-rules`, validated whole;
//! - [`address`]: which addresses a webhook may reach (public ones, unless private
//!   targets are allowed).
//!
//! Everything here is pure: no I/O and no clock of its own.

pub mod address;
pub mod event;
pub mod pattern;
pub mod rules;
pub mod webhook;

pub use address::{ALLOW_PRIVATE_TARGETS_ENV, RefusedAddress};
pub use event::{DetailType, DocumentEvent, EVENT_SOURCE, EVENT_VERSION, EventDetail};
pub use pattern::{EventPattern, MAX_PATTERN_BYTES, MAX_PATTERN_DEPTH, PatternError};
pub use rules::{EventRule, EventRules, RuleName, RulesError, WebhookTarget};
pub use webhook::{SecretError, VerifyError, WebhookHeaders, WebhookSecret};
