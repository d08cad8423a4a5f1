//! Per-connection flood control: a token bucket, plus a count of refused frames that
//! closes the connection when the flood persists.

use std::time::Duration;

use tokio::time::Instant;

/// How fast a client may send frames.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    /// Frames a client may send in a burst. Default: 20.
    pub burst: u32,
    /// Frames per second sustained. Default: 10.
    pub per_second: f64,
    /// Refused frames within `window` that close the connection. Default: 20.
    pub max_refused: u32,
    /// The window over which refused frames are counted. Default: 10 seconds.
    pub window: Duration,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            burst: 20,
            per_second: 10.0,
            max_refused: 20,
            window: Duration::from_secs(10),
        }
    }
}

/// What to do with one incoming frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Refuse it with an error frame.
    Refuse,
    /// The flood persists: close the connection.
    Close,
}

pub struct FloodGuard {
    limit: RateLimit,
    tokens: f64,
    refilled_at: Instant,
    refused: u32,
    window_started: Instant,
}

impl FloodGuard {
    pub fn new(limit: RateLimit, now: Instant) -> Self {
        Self {
            limit,
            tokens: f64::from(limit.burst),
            refilled_at: now,
            refused: 0,
            window_started: now,
        }
    }

    pub fn check(&mut self, now: Instant) -> Verdict {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * self.limit.per_second).min(f64::from(self.limit.burst));
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Accept;
        }
        if now.saturating_duration_since(self.window_started) >= self.limit.window {
            self.window_started = now;
            self.refused = 0;
        }
        self.refused += 1;
        if self.refused > self.limit.max_refused {
            Verdict::Close
        } else {
            Verdict::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_pass_floods_are_refused_then_closed() {
        let limit = RateLimit {
            burst: 3,
            per_second: 1.0,
            max_refused: 2,
            window: Duration::from_secs(10),
        };
        let t0 = Instant::now();
        let mut guard = FloodGuard::new(limit, t0);
        for _ in 0..3 {
            assert_eq!(guard.check(t0), Verdict::Accept);
        }
        assert_eq!(guard.check(t0), Verdict::Refuse);
        // A second later one token is back.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(guard.check(t1), Verdict::Accept);
        assert_eq!(guard.check(t1), Verdict::Refuse);
        assert_eq!(guard.check(t1), Verdict::Close);
    }

    #[test]
    fn refusals_are_forgotten_after_the_window() {
        let limit = RateLimit {
            burst: 1,
            per_second: 0.001,
            max_refused: 1,
            window: Duration::from_secs(10),
        };
        let t0 = Instant::now();
        let mut guard = FloodGuard::new(limit, t0);
        assert_eq!(guard.check(t0), Verdict::Accept);
        assert_eq!(guard.check(t0), Verdict::Refuse);
        let later = t0 + Duration::from_secs(11);
        assert_eq!(guard.check(later), Verdict::Refuse);
    }
}
