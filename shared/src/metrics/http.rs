//! HTTP metrics: `docfan_http_requests_total{method,route,status}` and the latency
//! histogram `docfan_http_request_duration_seconds{method,route}`.
//!
//! The method is one of [`METHODS`] or `other`, the route the matched route template
//! (never the raw path) or `other`, the status a number: made-up methods and paths never
//! add a series.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Latency buckets, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// The methods that get their own label; any other is `other`.
pub const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// The method's label: itself when it is one of [`METHODS`], else `other`.
pub fn method_label(method: &str) -> &'static str {
    METHODS
        .into_iter()
        .find(|m| *m == method)
        .unwrap_or("other")
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// Request counts and latencies of one router.
#[derive(Clone, Debug)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily<RouteLabels>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl HttpMetrics {
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "docfan_http_requests",
            "HTTP requests by route and status",
            self.requests.clone(),
        );
        registry.register(
            "docfan_http_request_duration_seconds",
            "HTTP request latency",
            self.duration.clone(),
        );
    }

    /// Counts one request: `method` as received (bounded here), `route` the matched
    /// route template (`None`: no route matched).
    pub fn observe(&self, method: &str, route: Option<&str>, status: u16, elapsed: Duration) {
        let method = method_label(method);
        let route = route.unwrap_or("other").to_owned();
        self.duration
            .get_or_create(&RouteLabels {
                method,
                route: route.clone(),
            })
            .observe(elapsed.as_secs_f64());
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route,
                status,
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_set_are_other() {
        assert_eq!(method_label("GET"), "GET");
        assert_eq!(method_label("OPTIONS"), "OPTIONS");
        assert_eq!(method_label("TRACE"), "other");
        assert_eq!(method_label("GETX"), "other");
        assert_eq!(method_label("get"), "other");
    }

    #[test]
    fn unmatched_routes_and_odd_methods_share_one_series() {
        let metrics = HttpMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        for method in ["BREW", "PROPFIND", "get"] {
            metrics.observe(method, None, 404, Duration::from_millis(1));
        }
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(
                "docfan_http_requests_total{method=\"other\",route=\"other\",status=\"404\"} 3\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "docfan_http_request_duration_seconds_count{method=\"other\",route=\"other\"} 3\n"
            ),
            "{text}"
        );
        assert_eq!(text.matches("docfan_http_requests_total{").count(), 1);
    }
}
