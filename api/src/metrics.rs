//! HTTP metrics: requests and latencies by route and status class, in Prometheus text.
//!
//! Every label comes from a fixed set, so no request can grow the metrics: the method
//! is one of [`METHODS`] or `other`, the route is the matched route template (never
//! the raw path) or `other`, and the status is a number below 1000.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// Latency buckets, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// The methods that get their own label; any other is `other`.
pub const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// The method's label: itself when it is one of [`METHODS`], else `other`.
fn method_label(method: &axum::http::Method) -> &'static str {
    METHODS
        .into_iter()
        .find(|m| *m == method.as_str())
        .unwrap_or("other")
}

#[derive(Default)]
struct RouteStats {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

/// Request counts and latencies of one router.
#[derive(Default)]
pub struct HttpMetrics(Mutex<BTreeMap<(&'static str, String, u16), RouteStats>>);

/// Middleware recording each request under its route template (never the raw path, so
/// ids do not explode the label set).
pub async fn record(
    State(metrics): State<Arc<HttpMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let elapsed = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    let mut stats = metrics.0.lock().unwrap_or_else(|p| p.into_inner());
    let entry = stats.entry((method, route, status)).or_default();
    entry.count += 1;
    entry.sum += elapsed;
    for (i, bound) in BUCKETS.iter().enumerate() {
        if elapsed <= *bound {
            entry.buckets[i] += 1;
        }
    }
    response
}

impl HttpMetrics {
    /// Writes the HTTP metrics.
    pub fn render(&self, out: &mut String) {
        let stats = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(
            out,
            "# HELP docfan_http_requests_total HTTP requests by route and status."
        );
        let _ = writeln!(out, "# TYPE docfan_http_requests_total counter");
        for ((method, route, status), s) in stats.iter() {
            let _ = writeln!(
                out,
                "docfan_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {}",
                s.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP docfan_http_request_duration_seconds HTTP request latency."
        );
        let _ = writeln!(out, "# TYPE docfan_http_request_duration_seconds histogram");
        let mut by_route: BTreeMap<(&str, &str), RouteStats> = BTreeMap::new();

        for ((method, route, _), s) in stats.iter() {
            let agg = by_route.entry((method, route)).or_default();
            agg.count += s.count;
            agg.sum += s.sum;
            for (a, b) in agg.buckets.iter_mut().zip(s.buckets) {
                *a += b;
            }
        }
        for ((method, route), s) in by_route {
            let labels = format!("method=\"{method}\",route=\"{route}\"");
            for (bound, n) in BUCKETS.iter().zip(s.buckets) {
                let _ = writeln!(
                    out,
                    "docfan_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "docfan_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "docfan_http_request_duration_seconds_sum{{{labels}}} {}",
                s.sum
            );
            let _ = writeln!(
                out,
                "docfan_http_request_duration_seconds_count{{{labels}}} {}",
                s.count
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn methods_outside_the_set_are_other() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::OPTIONS), "OPTIONS");
        assert_eq!(method_label(&Method::TRACE), "other");
        assert_eq!(method_label(&Method::from_bytes(b"GETX").unwrap()), "other");
        assert_eq!(method_label(&Method::from_bytes(b"get").unwrap()), "other");
    }
}
