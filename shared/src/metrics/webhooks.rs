//! Per webhook rule (the label is the rule's name, at most [`MAX_RULE_LABEL`]
//! characters of it, anything but `A-Za-z0-9._-` replaced by `_`):
//! `docfan_webhook_deliveries_total{rule,outcome}` (`delivered`, `failed` attempts,
//! `dead_lettered`), `docfan_webhook_retrying{rule}` (rows waiting) and
//! `docfan_webhook_lag_seconds{rule}` (the age of the oldest waiting row).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The longest rule name used as a label; longer ones are cut (rule names are already
/// at most 64 characters of `A-Za-z0-9._-`, so this bounds any other caller).
pub const MAX_RULE_LABEL: usize = 64;

/// A rule name as a label: at most [`MAX_RULE_LABEL`] characters, none that would need
/// escaping.
fn rule_label(rule: &str) -> String {
    rule.chars()
        .take(MAX_RULE_LABEL)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// How one webhook delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// A 2xx answer.
    Delivered,
    /// Any other end; the row stays or is dead-lettered.
    Failed,
    /// The retry budget is spent: the row moved to the dead letters.
    DeadLettered,
}

impl WebhookOutcome {
    fn label(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::DeadLettered => "dead_lettered",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleOutcomeLabels {
    rule: String,
    outcome: &'static str,
}

/// What the webhook workers count.
#[derive(Clone, Debug, Default)]
pub struct WebhookMetrics {
    deliveries: Family<RuleOutcomeLabels, Counter>,
    retrying: Family<RuleLabels, Gauge>,
    lag: Family<RuleLabels, Gauge<f64, AtomicU64>>,
    /// Per rule label: when the oldest waiting row was enqueued.
    oldest: Arc<Mutex<BTreeMap<String, Option<DateTime<Utc>>>>>,
}

impl WebhookMetrics {
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "docfan_webhook_deliveries",
            "Webhook delivery attempts by rule and outcome",
            self.deliveries.clone(),
        );
        registry.register(
            "docfan_webhook_retrying",
            "Webhook deliveries waiting (first attempts and retries) by rule",
            self.retrying.clone(),
        );
        registry.register(
            "docfan_webhook_lag_seconds",
            "Age of the oldest webhook delivery waiting, by rule",
            self.lag.clone(),
        );
    }

    /// Counts one webhook delivery attempt (or dead-lettering) of `rule`.
    pub fn record(&self, rule: &str, outcome: WebhookOutcome) {
        self.deliveries
            .get_or_create(&RuleOutcomeLabels {
                rule: rule_label(rule),
                outcome: outcome.label(),
            })
            .inc();
    }

    /// Sets how many rows wait for `rule` and when the oldest was enqueued.
    pub fn set_backlog(&self, rule: &str, waiting: u64, oldest: Option<DateTime<Utc>>) {
        let rule = rule_label(rule);
        self.retrying
            .get_or_create(&RuleLabels { rule: rule.clone() })
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
        self.oldest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(rule, oldest);
    }

    /// Sets the lag gauges as of `now`.
    pub(crate) fn refresh(&self, now: DateTime<Utc>) {
        let oldest = self.oldest.lock().unwrap_or_else(|p| p.into_inner());
        for (rule, oldest) in oldest.iter() {
            let lag = oldest.map_or(0.0, |o| {
                (now - o).to_std().unwrap_or_default().as_secs_f64()
            });
            self.lag
                .get_or_create(&RuleLabels { rule: rule.clone() })
                .set(lag);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn webhook_metrics_are_per_rule_with_a_bounded_label() {
        let metrics = Metrics::new();
        let webhooks = &metrics.webhooks;
        webhooks.record("metrics-rule", WebhookOutcome::Delivered);
        webhooks.record("metrics-rule", WebhookOutcome::Failed);
        webhooks.record("metrics-rule", WebhookOutcome::Failed);
        webhooks.record("metrics-rule", WebhookOutcome::DeadLettered);
        let oldest = Utc::now() - chrono::TimeDelta::seconds(120);
        webhooks.set_backlog("metrics-rule", 3, Some(oldest));
        let hostile = format!("a\"b}}{}", "x".repeat(500));
        webhooks.record(&hostile, WebhookOutcome::Delivered);
        let out = metrics.render();
        for line in [
            "docfan_webhook_deliveries_total{rule=\"metrics-rule\",outcome=\"delivered\"} 1\n",
            "docfan_webhook_deliveries_total{rule=\"metrics-rule\",outcome=\"failed\"} 2\n",
            "docfan_webhook_deliveries_total{rule=\"metrics-rule\",outcome=\"dead_lettered\"} 1\n",
            "docfan_webhook_retrying{rule=\"metrics-rule\"} 3\n",
        ] {
            assert!(out.contains(line), "{line} in\n{out}");
        }
        let lag: f64 = out
            .lines()
            .find_map(|l| l.strip_prefix("docfan_webhook_lag_seconds{rule=\"metrics-rule\"} "))
            .unwrap()
            .parse()
            .unwrap();
        assert!((120.0..200.0).contains(&lag), "{lag}");
        let label = format!("a_b_{}", "x".repeat(MAX_RULE_LABEL - 4));
        assert!(
            out.contains(&format!(
                "docfan_webhook_deliveries_total{{rule=\"{label}\",outcome=\"delivered\"}} 1\n"
            )),
            "{out}"
        );
    }
}
