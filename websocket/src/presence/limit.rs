//! How often one connection may share its cursor: a token bucket per connection.

use std::collections::HashMap;
use std::sync::Mutex;

use shared::ports::ConnectionId;
use tokio::time::Instant;

/// How often one connection may share its cursor: a bucket of `burst` updates refilled
/// at `per_second`.
#[derive(Debug, Clone, Copy)]
pub struct PresenceLimit {
    /// Default: 10.
    pub burst: u32,
    /// Default: 10 per second.
    pub per_second: f64,
}

impl Default for PresenceLimit {
    fn default() -> Self {
        Self {
            burst: 10,
            per_second: 10.0,
        }
    }
}

/// The cursor-update buckets of this process's connections.
#[derive(Default)]
pub(crate) struct PresenceLimiter {
    buckets: Mutex<HashMap<ConnectionId, (f64, Instant)>>,
}

impl PresenceLimiter {
    /// Whether the connection may share its cursor now (and takes a token if so).
    pub fn admit(&self, limit: PresenceLimit, id: &ConnectionId, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().expect("presence limiter lock");
        let burst = f64::from(limit.burst.max(1));
        let (tokens, at) = buckets.entry(id.clone()).or_insert((burst, now));
        let refill = now.saturating_duration_since(*at).as_secs_f64() * limit.per_second;
        *tokens = (*tokens + refill).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub fn forget(&self, id: &ConnectionId) {
        self.buckets
            .lock()
            .expect("presence limiter lock")
            .remove(id);
    }
}
