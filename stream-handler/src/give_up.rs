//! Giving up on a record before the event source mapping does.
//!
//! On Lambda, a record the mapping gives up on (too many retries, too old) is gone: the
//! mapping's on-failure destination receives only the batch's metadata. So the index
//! consumer dead-letters a record that keeps failing itself, whole and with its reason,
//! while it still can: once it has failed more than `max_retries` invocations (counted
//! in an [`AttemptLog`], since each retry may run in another instance) or is
//! `max_age` old. Both are set below the mapping's own `MaximumRetryAttempts` and
//! `MaximumRecordAgeInSeconds`, so the on-failure destination only ever sees what the
//! handler could not even write.
//!
//! A record held back by a blocked deployment (access denied, a missing table or
//! queue) is never given up on: it waits for an operator, and the alarm on the batch's
//! failures is what calls one. Nor is a record that only waits behind an earlier
//! failing record of its document: it has not been tried.
//!
//! The embedded poller applies the same rules itself ([`crate::poller`]) and needs none
//! of this.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use shared::ports::AttemptLog;

/// The variables the rules are read from, named as `docfan serve`'s poller reads them.
pub const MAX_RETRIES_VAR: &str = "DOCFAN_STREAM_MAX_RETRIES";
pub const MAX_AGE_VAR: &str = "DOCFAN_STREAM_MAX_RECORD_AGE_SECS";

/// When a failing record is given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GiveUpRules {
    /// A record that has failed more invocations than this is dead-lettered.
    pub max_retries: u32,
    /// A record at least this old (by its `ApproximateCreationDateTime`) that fails
    /// again is dead-lettered.
    pub max_age: Duration,
}

impl GiveUpRules {
    /// Both variables, required: a Lambda consumer must not guess how long its mapping
    /// keeps trying.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let read = |name: &str| -> anyhow::Result<u64> {
            let raw = var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "{name} is not set: the index consumer must dead-letter a failing record before its event source mapping gives up on it"
                    )
                })?;
            raw.parse()
                .map_err(|_| anyhow::anyhow!("{name} must be a whole number, not `{raw}`"))
        };
        let max_retries = u32::try_from(read(MAX_RETRIES_VAR)?)
            .map_err(|_| anyhow::anyhow!("{MAX_RETRIES_VAR} is too large"))?;
        let max_age = read(MAX_AGE_VAR)?;
        anyhow::ensure!(max_age >= 1, "{MAX_AGE_VAR} must be at least 1 second");
        Ok(Self {
            max_retries,
            max_age: Duration::from_secs(max_age),
        })
    }

    /// Why a record that failed again is given up on, if it is: `attempts` is its
    /// count of failed invocations (`None`: unknown, the count could not be kept), `age`
    /// how long ago it was written (`None`: unknown).
    pub fn verdict(&self, attempts: Option<u32>, age: Option<Duration>) -> Option<String> {
        if let Some(attempts) = attempts
            && attempts > self.max_retries
        {
            return Some(format!(
                "failed {attempts} times, more than the {} retries it is given",
                self.max_retries
            ));
        }
        match age {
            Some(age) if age >= self.max_age => Some(format!(
                "still failing {} s after it was written (given up at {} s)",
                age.as_secs(),
                self.max_age.as_secs()
            )),
            _ => None,
        }
    }
}

/// The rules with the log that counts attempts.
#[derive(Clone)]
pub struct GiveUp {
    rules: GiveUpRules,
    attempts: Arc<dyn AttemptLog>,
}

impl GiveUp {
    pub fn new(rules: GiveUpRules, attempts: Arc<dyn AttemptLog>) -> Self {
        Self { rules, attempts }
    }

    /// Counts one more failure of the record `record_id` written at `written_at`, and
    /// says why to give it up, if it is time. A count that cannot be kept leaves the
    /// decision to the record's age.
    pub async fn judge(
        &self,
        record_id: &str,
        written_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> (Option<String>, u32) {
        let attempts = match self.attempts.failed(record_id).await {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!(record_id, error = %e, "could not count the record's attempt; judging by its age alone");
                None
            }
        };
        let age = written_at.and_then(|at| (now - at).to_std().ok());
        (
            self.rules.verdict(attempts, age),
            attempts.unwrap_or_default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> GiveUpRules {
        GiveUpRules {
            max_retries: 2,
            max_age: Duration::from_secs(600),
        }
    }

    #[test]
    fn a_record_is_given_up_after_its_retries_or_at_its_age() {
        let young = Some(Duration::from_secs(5));
        assert_eq!(rules().verdict(Some(1), young), None);
        assert_eq!(rules().verdict(Some(3 - 1), young), None);
        let why = rules().verdict(Some(3), young).unwrap();
        assert!(why.contains("failed 3 times"), "{why}");
        let why = rules()
            .verdict(Some(1), Some(Duration::from_secs(600)))
            .unwrap();
        assert!(why.contains("600 s"), "{why}");
        // Unknown count or age: the other decides.
        assert_eq!(rules().verdict(None, young), None);
        assert!(
            rules()
                .verdict(None, Some(Duration::from_secs(601)))
                .is_some()
        );
        assert_eq!(rules().verdict(Some(1), None), None);
    }

    #[test]
    fn the_rules_are_required_and_checked() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let rules =
            GiveUpRules::from_vars(vars(&[(MAX_RETRIES_VAR, "8"), (MAX_AGE_VAR, " 3000 ")]))
                .unwrap();
        assert_eq!(
            rules,
            GiveUpRules {
                max_retries: 8,
                max_age: Duration::from_secs(3000)
            }
        );
        for (pairs, names) in [
            (&[][..], MAX_RETRIES_VAR),
            (&[(MAX_RETRIES_VAR, "8")][..], MAX_AGE_VAR),
            (
                &[(MAX_RETRIES_VAR, "-1"), (MAX_AGE_VAR, "5")][..],
                MAX_RETRIES_VAR,
            ),
            (
                &[(MAX_RETRIES_VAR, "8"), (MAX_AGE_VAR, "0")][..],
                MAX_AGE_VAR,
            ),
            (
                &[(MAX_RETRIES_VAR, "8"), (MAX_AGE_VAR, "1h")][..],
                MAX_AGE_VAR,
            ),
        ] {
            let e = GiveUpRules::from_vars(vars(pairs)).unwrap_err().to_string();
            assert!(e.contains(names), "{pairs:?}: {e}");
        }
    }
}
