//! One retry policy for everything docfan retries: a sink delivery, a failed batch, a
//! deferred commit, a DynamoDB batch's unprocessed requests.
//!
//! The pause grows exponentially from `initial_backoff` up to `max_backoff`, with
//! "equal jitter": half of it fixed, half random, so that many partitions (or Lambda
//! instances) failing together do not retry in lockstep, while no pause is ever shorter
//! than half its step. [`RetryPolicy::backoff_at`] is the same pause with the random
//! part given, for tests.

use std::time::Duration;

/// Bounded exponential backoff with jitter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts, the first included (`u32::MAX`: until something else gives up).
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// The step after failed attempt number `attempt` (1-based), before jitter:
    /// `initial_backoff × 2^(attempt−1)`, at most `max_backoff`.
    pub fn step(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(31));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }

    /// The pause after failed attempt number `attempt` (1-based): between half the step
    /// and the step.
    pub fn backoff(&self, attempt: u32) -> Duration {
        self.backoff_at(attempt, rand::random::<f64>())
    }

    /// [`RetryPolicy::backoff`] with the random part `unit` (in `0.0..=1.0`) given.
    pub fn backoff_at(&self, attempt: u32, unit: f64) -> Duration {
        let step = self.step(attempt);
        let half = step / 2;
        half + (step - half).mul_f64(unit.clamp(0.0, 1.0))
    }

    /// Whether another attempt may follow failed attempt number `attempt`.
    pub fn allows_another(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        }
    }

    #[test]
    fn the_step_doubles_up_to_the_maximum() {
        let steps: Vec<u128> = (1..=7).map(|a| policy().step(a).as_millis()).collect();
        assert_eq!(steps, [100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(
            policy().step(u32::MAX),
            Duration::from_secs(2),
            "no overflow"
        );
    }

    #[test]
    fn the_jitter_spans_the_upper_half_of_the_step() {
        assert_eq!(policy().backoff_at(3, 0.0), Duration::from_millis(200));
        assert_eq!(policy().backoff_at(3, 1.0), Duration::from_millis(400));
        assert_eq!(policy().backoff_at(3, 0.5), Duration::from_millis(300));
        assert_eq!(
            policy().backoff_at(3, 7.0),
            Duration::from_millis(400),
            "clamped"
        );
    }

    #[test]
    fn random_pauses_differ_so_failing_partitions_do_not_retry_in_lockstep() {
        let pauses: std::collections::BTreeSet<Duration> =
            (0..50).map(|_| policy().backoff(4)).collect();
        assert!(pauses.len() > 10, "{pauses:?}");
    }

    #[test]
    fn attempts_stop_at_the_maximum() {
        assert!(policy().allows_another(4));
        assert!(!policy().allows_another(5));
    }

    proptest! {
        #[test]
        fn every_pause_lies_between_half_the_step_and_the_step(attempt in 1u32..100, unit in 0.0f64..=1.0) {
            let p = policy();
            let pause = p.backoff_at(attempt, unit);
            prop_assert!(pause >= p.step(attempt) / 2 && pause <= p.step(attempt));
            prop_assert!(pause <= p.max_backoff);
        }
    }
}
