//! docfan's metrics: one instance registry per process ([`Metrics`]), whose parts are
//! handed to what counts, rendered as Prometheus text for `/metrics` on one machine and
//! as CloudWatch Embedded Metric Format lines by the Lambda functions.
//!
//! - [`http`]: REST requests and latencies by method, route template and status;
//! - [`live`]: WebSocket connections, frames and pushed notifications;
//! - [`fanout`]: the change stream's consumers: per-sink deliveries, flushes and
//!   latencies, records by outcome, stream and consumer lag, analysis jobs;
//! - [`webhooks`]: per webhook rule deliveries, rows waiting and their age;
//! - [`emf`]: the Embedded Metric Format writer the Lambda entry points flush at the end
//!   of each invocation.
//!
//! Every label comes from a fixed, bounded set (a method from a list, a route template,
//! a sink or consumer name from the code, a cut and sanitised rule name), so no request
//! or event can add a series. Nothing here is process-global: a part made on its own
//! (`Default`) counts for whoever holds it, and [`Metrics::new`] makes the parts
//! registered in one registry.

pub mod emf;
pub mod fanout;
pub mod http;
pub mod live;
pub mod webhooks;

use std::sync::Arc;

use prometheus_client::registry::Registry;

pub use emf::{Emf, EmfSource, Sample, Unit};
pub use fanout::{DeliveryOutcome, FanoutMetrics};
pub use http::HttpMetrics;
pub use live::LiveMetrics;
pub use webhooks::{MAX_RULE_LABEL, WebhookMetrics, WebhookOutcome};

/// The `Content-Type` of [`Metrics::render`]'s text (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Every part of docfan's metrics, registered in one registry. Cloning is cheap: the
/// clones count into the same series.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub http: HttpMetrics,
    pub live: LiveMetrics,
    pub fanout: FanoutMetrics,
    pub webhooks: WebhookMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh parts, each registered under its `docfan_…` names.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let http = HttpMetrics::default();
        let live = LiveMetrics::default();
        let fanout = FanoutMetrics::default();
        let webhooks = WebhookMetrics::default();
        http.register(&mut registry);
        live.register(&mut registry);
        fanout.register(&mut registry);
        webhooks.register(&mut registry);
        Self {
            registry: Arc::new(registry),
            http,
            live,
            fanout,
            webhooks,
        }
    }

    /// Every series, in Prometheus text; the gauges computed from timestamps (lags, ages)
    /// as of now.
    pub fn render(&self) -> String {
        let now = chrono::Utc::now();
        self.live.refresh();
        self.fanout.refresh(now);
        self.webhooks.refresh(now);
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn one_registry_renders_every_part() {
        let metrics = Metrics::new();
        metrics
            .http
            .observe("GET", Some("/documents"), 200, Duration::from_millis(2));
        metrics.live.notifications_sent.inc();
        metrics
            .fanout
            .record_delivery("search", Duration::from_millis(3), DeliveryOutcome::Ok);
        metrics.webhooks.record("rule", WebhookOutcome::Delivered);
        let text = metrics.render();
        for line in [
            "docfan_http_requests_total{method=\"GET\",route=\"/documents\",status=\"200\"} 1\n",
            "docfan_websocket_notifications_sent_total 1\n",
            "docfan_sink_deliveries_total{sink=\"search\",outcome=\"ok\"} 1\n",
            "docfan_webhook_deliveries_total{rule=\"rule\",outcome=\"delivered\"} 1\n",
            "# TYPE docfan_stream_lag_seconds gauge\n",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }

    #[test]
    fn registries_are_instances() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.live.frames_received.inc();
        assert!(
            a.render()
                .contains("docfan_websocket_frames_received_total 1\n")
        );
        assert!(
            b.render()
                .contains("docfan_websocket_frames_received_total 0\n")
        );
    }
}
