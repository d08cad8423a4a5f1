//! The [`AttemptLog`]: how often a stream record has failed, for a consumer that cannot
//! count it itself.

use async_trait::async_trait;

use crate::Result;

/// Counts the failed deliveries of stream records across invocations. A Lambda
/// consumer needs it: each retry of a batch may run in another instance, and the event
/// source mapping keeps only a record's metadata once it gives up, so the handler must
/// dead-letter a record that keeps failing before then, by a count it can observe.
/// The embedded poller counts attempts itself and needs none.
#[async_trait]
pub trait AttemptLog: Send + Sync + 'static {
    /// Records one more failed attempt of the record `record_id` (its `eventID`) and
    /// returns how many there have been, this one included. Counts are kept for a few
    /// days, longer than the stream keeps the record. Errors: `Unavailable`, `Blocked`.
    async fn failed(&self, record_id: &str) -> Result<u32>;
}
