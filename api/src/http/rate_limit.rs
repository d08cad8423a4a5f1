//! The per-user request budget of the REST API: a token bucket per user, holding up to
//! `burst` requests and refilled at `per_second`. A request past it is answered 429
//! `/problems/rate-limited` with `Retry-After`. It is taken where the caller becomes
//! known ([`Caller`](super::Caller)), so every authenticated route pays for each request
//! and unauthenticated ones (`/healthz`, `/metrics`, the web editor's files) do not.
//!
//! Memory is bounded: a bucket that has refilled completely says nothing a new one would
//! not, so idle buckets are swept away (at most once per refill time), and at most
//! [`MAX_TRACKED_USERS`] are held; past that the fullest one is forgotten first.
//!
//! On AWS each instance of the api function holds its own buckets (a user whose
//! requests are spread over several warm instances gets the budget of each); the HTTP
//! API's stage throttling bounds the total.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use shared::domain::UserId;
use tokio::time::Instant;

/// The most users whose buckets are held at once.
pub const MAX_TRACKED_USERS: usize = 100_000;

/// The environment variables of [`RateLimit::from_env`] (the `serve` flags read them too).
pub const PER_SECOND_ENV: &str = "DOCFAN_RATE_LIMIT_PER_SECOND";
pub const BURST_ENV: &str = "DOCFAN_RATE_LIMIT_BURST";

/// How many REST requests one user may make.
///
/// The defaults are far above what a person makes (the web editor sends an edit at
/// most every 150 ms, one in flight, and a handful of requests when a document opens)
/// and above the project's own heaviest single-user clients: the schemathesis run (about
/// 1,100 requests in 10 s, peaking at 250 a second, which needs a burst of 260 at 100 a
/// second) and the test that types 1,001 edits back to back. The sustained rate is what
/// keeps one user from taking the server over; the burst only lets an idle one catch up.
/// The writes benchmark, which measures how fast one user can write, raises both.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Requests a second, sustained. Default: 100.
    pub per_second: f64,
    /// Requests at once, after a pause. Default: 1,000.
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_second: 100.0,
            burst: 1000,
        }
    }
}

impl RateLimit {
    /// The defaults, overridden by `DOCFAN_RATE_LIMIT_PER_SECOND` and
    /// `DOCFAN_RATE_LIMIT_BURST` when set (the Lambda function reads its limit here).
    pub fn from_env() -> anyhow::Result<Self> {
        let mut limit = Self::default();
        if let Some(raw) = std::env::var(PER_SECOND_ENV).ok().filter(|v| !v.is_empty()) {
            limit.per_second = parse_per_second(&raw).map_err(anyhow::Error::msg)?;
        }
        if let Some(raw) = std::env::var(BURST_ENV).ok().filter(|v| !v.is_empty()) {
            limit.burst = parse_burst(&raw).map_err(anyhow::Error::msg)?;
        }
        Ok(limit)
    }

    /// How long an empty bucket takes to fill.
    fn refill_time(&self) -> Duration {
        Duration::from_secs_f64(f64::from(self.burst) / self.per_second).max(Duration::from_secs(1))
    }
}

/// A sustained rate: a positive number of requests a second, at most a million.
pub fn parse_per_second(raw: &str) -> Result<f64, String> {
    match raw.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 && rate <= 1e6 => Ok(rate),
        _ => Err(format!(
            "`{raw}` is not a rate: a number of requests a second above 0 and at most 1000000 (0.5 is one every two seconds)"
        )),
    }
}

/// A burst: 1 to a million requests.
pub fn parse_burst(raw: &str) -> Result<u32, String> {
    match raw.trim().parse::<u32>() {
        Ok(burst) if (1..=1_000_000).contains(&burst) => Ok(burst),
        _ => Err(format!("`{raw}` is not a burst: 1 to 1000000 requests")),
    }
}

/// A user's bucket: the requests left, as of `at`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

struct Buckets {
    users: HashMap<UserId, Bucket>,
    swept_at: Option<Instant>,
}

/// Every user's bucket; see the module documentation.
pub struct UserRateLimiter {
    limit: RateLimit,
    capacity: usize,
    buckets: Mutex<Buckets>,
}

impl Default for UserRateLimiter {
    fn default() -> Self {
        Self::new(RateLimit::default())
    }
}

impl std::fmt::Debug for UserRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRateLimiter")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl UserRateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        Self::with_capacity(limit, MAX_TRACKED_USERS)
    }

    fn with_capacity(limit: RateLimit, capacity: usize) -> Self {
        Self {
            limit,
            capacity: capacity.max(1),
            buckets: Mutex::new(Buckets {
                users: HashMap::new(),
                swept_at: None,
            }),
        }
    }

    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes one request from `user`'s bucket at `now`; when it is empty, how long until
    /// it holds one again.
    pub fn admit(&self, user: &UserId, now: Instant) -> Result<(), Duration> {
        let limit = self.limit;
        let burst = f64::from(limit.burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !buckets.users.contains_key(user) {
            self.make_room(&mut buckets, now);
        }
        let bucket = buckets.users.entry(user.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        *bucket = refilled(*bucket, limit, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / limit.per_second,
            ))
        }
    }

    /// Forgets the buckets that have refilled (at most once per refill time, or when
    /// full), then, while still full, the fullest.
    fn make_room(&self, buckets: &mut Buckets, now: Instant) {
        let limit = self.limit;
        let due = buckets
            .swept_at
            .is_none_or(|at| now.saturating_duration_since(at) >= limit.refill_time());
        if due || buckets.users.len() >= self.capacity {
            let burst = f64::from(limit.burst);
            buckets
                .users
                .retain(|_, bucket| refilled(*bucket, limit, now).tokens < burst);
            buckets.swept_at = Some(now);
        }
        while buckets.users.len() >= self.capacity {
            let fullest = buckets
                .users
                .iter()
                .max_by(|a, b| {
                    refilled(*a.1, limit, now)
                        .tokens
                        .total_cmp(&refilled(*b.1, limit, now).tokens)
                })
                .map(|(user, _)| user.clone());
            match fullest {
                Some(user) => buckets.users.remove(&user),
                None => break,
            };
        }
    }

    /// How many users' buckets are held (for tests of the memory bound).
    pub fn tracked(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .users
            .len()
    }
}

fn refilled(bucket: Bucket, limit: RateLimit, now: Instant) -> Bucket {
    let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
    Bucket {
        tokens: (bucket.tokens + elapsed * limit.per_second).min(f64::from(limit.burst)),
        at: now.max(bucket.at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserId {
        UserId::parse(name).unwrap()
    }

    fn limit(per_second: f64, burst: u32) -> RateLimit {
        RateLimit { per_second, burst }
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let limiter = UserRateLimiter::new(limit(2.0, 3));
        let t0 = Instant::now();
        let ann = user("ann");
        for _ in 0..3 {
            assert_eq!(limiter.admit(&ann, t0), Ok(()));
        }
        // Empty: one more in half a second at 2 a second.
        assert_eq!(limiter.admit(&ann, t0), Err(Duration::from_millis(500)));
        assert_eq!(
            limiter.admit(&ann, t0 + Duration::from_millis(250)),
            Err(Duration::from_millis(250))
        );
        assert_eq!(limiter.admit(&ann, t0 + Duration::from_millis(500)), Ok(()));
        assert!(
            limiter
                .admit(&ann, t0 + Duration::from_millis(500))
                .is_err()
        );
        // Others have their own bucket.
        assert_eq!(limiter.admit(&user("bob"), t0), Ok(()));
        // A long pause refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(limiter.admit(&ann, later), Ok(()));
        }
        assert!(limiter.admit(&ann, later).is_err());
    }

    #[test]
    fn refilled_buckets_are_forgotten() {
        let limiter = UserRateLimiter::new(limit(10.0, 10));
        let t0 = Instant::now();
        for i in 0..1000 {
            limiter.admit(&user(&format!("u{i}")), t0).unwrap();
        }
        assert_eq!(limiter.tracked(), 1000);
        // A second later every bucket is full again: the next newcomer sweeps them.
        limiter
            .admit(&user("late"), t0 + Duration::from_secs(1))
            .unwrap();
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn at_capacity_the_fullest_bucket_goes_first() {
        let limiter = UserRateLimiter::with_capacity(limit(1.0, 5), 3);
        let t0 = Instant::now();
        let (busy, quiet) = (user("busy"), user("quiet"));
        for _ in 0..5 {
            limiter.admit(&busy, t0).unwrap();
        }
        limiter.admit(&quiet, t0).unwrap();
        limiter.admit(&user("third"), t0).unwrap();
        for i in 0..50 {
            limiter.admit(&user(&format!("new{i}")), t0).unwrap();
            assert!(limiter.tracked() <= 3);
        }
        // The emptied bucket was kept: busy is still limited.
        assert!(limiter.admit(&busy, t0).is_err());
    }

    #[test]
    fn limits_parse() {
        assert_eq!(parse_per_second("0.5"), Ok(0.5));
        assert_eq!(parse_per_second("50"), Ok(50.0));
        assert_eq!(parse_burst("200"), Ok(200));
        for bad in ["0", "-1", "NaN", "inf", "1e7", "", "lots"] {
            assert!(parse_per_second(bad).is_err(), "{bad}");
        }
        for bad in ["0", "-1", "1.5", "2000000", ""] {
            assert!(parse_burst(bad).is_err(), "{bad}");
        }
    }
}
