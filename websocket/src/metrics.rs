//! Counters of live delivery, rendered in Prometheus text for `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the connection service, its notifier and the local driver count.
#[derive(Debug, Default)]
pub struct Metrics {
    pub(crate) connections_accepted: AtomicU64,
    pub(crate) upgrades_refused: AtomicU64,
    pub(crate) frames_received: AtomicU64,
    pub(crate) notifications_sent: AtomicU64,
    pub(crate) connections_gone: AtomicU64,
    pub(crate) frames_refused: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn add(counter: &AtomicU64, n: u64) {
    if n > 0 {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

impl Metrics {
    /// Writes the counters, and `open` as the gauge of open connections when known.
    pub fn render(&self, open: Option<usize>, out: &mut String) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        if let Some(open) = open {
            let _ = writeln!(
                out,
                "# HELP docfan_websocket_connections Open WebSocket connections."
            );
            let _ = writeln!(out, "# TYPE docfan_websocket_connections gauge");
            let _ = writeln!(out, "docfan_websocket_connections {open}");
        }
        let counters = [
            (
                "connections_accepted_total",
                "WebSocket connections accepted.",
                &self.connections_accepted,
            ),
            (
                "upgrades_refused_total",
                "WebSocket upgrades refused (bad token).",
                &self.upgrades_refused,
            ),
            (
                "frames_received_total",
                "Frames received from clients.",
                &self.frames_received,
            ),
            (
                "frames_refused_total",
                "Client frames answered with an error frame.",
                &self.frames_refused,
            ),
            (
                "notifications_sent_total",
                "Change and analysis frames pushed to connections.",
                &self.notifications_sent,
            ),
            (
                "connections_gone_total",
                "Connections found gone or too slow on a push, and dropped.",
                &self.connections_gone,
            ),
        ];
        for (name, help, counter) in counters {
            let _ = writeln!(out, "# HELP docfan_websocket_{name} {help}");
            let _ = writeln!(out, "# TYPE docfan_websocket_{name} counter");
            let _ = writeln!(out, "docfan_websocket_{name} {}", get(counter));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let metrics = Metrics::default();
        bump(&metrics.notifications_sent);
        let mut out = String::new();
        metrics.render(Some(3), &mut out);
        assert!(out.contains("docfan_websocket_connections 3\n"));
        assert!(out.contains("docfan_websocket_notifications_sent_total 1\n"));
        assert!(out.contains("# TYPE docfan_websocket_connections_gone_total counter\n"));
    }
}
