//! Live delivery metrics: `docfan_websocket_connections` (open connections, where the
//! driver can count them) and the `docfan_websocket_…_total` counters of the connection
//! service, its notifier and the local driver.

use std::sync::{Arc, RwLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::emf::{EmfSource, Sample};

/// Reads how many connections are open, at each render.
type OpenConnections = Arc<dyn Fn() -> i64 + Send + Sync>;

/// What the connection service, its notifier and the local driver count.
#[derive(Clone, Default)]
pub struct LiveMetrics {
    pub connections_accepted: Counter,
    pub upgrades_refused: Counter,
    pub frames_received: Counter,
    pub frames_refused: Counter,
    pub notifications_sent: Counter,
    pub connections_gone: Counter,
    connections: Gauge,
    open: Arc<RwLock<Option<OpenConnections>>>,
}

impl std::fmt::Debug for LiveMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveMetrics").finish_non_exhaustive()
    }
}

impl LiveMetrics {
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "docfan_websocket_connections",
            "Open WebSocket connections",
            self.connections.clone(),
        );
        for (name, help, counter) in [
            (
                "docfan_websocket_connections_accepted",
                "WebSocket connections accepted",
                &self.connections_accepted,
            ),
            (
                "docfan_websocket_upgrades_refused",
                "WebSocket upgrades refused (bad token)",
                &self.upgrades_refused,
            ),
            (
                "docfan_websocket_frames_received",
                "Frames received from clients",
                &self.frames_received,
            ),
            (
                "docfan_websocket_frames_refused",
                "Client frames answered with an error frame",
                &self.frames_refused,
            ),
            (
                "docfan_websocket_notifications_sent",
                "Change and analysis frames pushed to connections",
                &self.notifications_sent,
            ),
            (
                "docfan_websocket_connections_gone",
                "Connections found gone or too slow on a push, and dropped",
                &self.connections_gone,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
    }

    /// Counts the open connections with `open` at each render (the local driver, which
    /// holds them).
    pub fn count_open_connections_with(&self, open: impl Fn() -> usize + Send + Sync + 'static) {
        let open: OpenConnections = Arc::new(move || i64::try_from(open()).unwrap_or(i64::MAX));
        *self.open.write().unwrap_or_else(|p| p.into_inner()) = Some(open);
    }

    pub(crate) fn refresh(&self) {
        let open = self.open.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(open) = open {
            self.connections.set(open());
        }
    }
}

impl EmfSource for LiveMetrics {
    fn sample(&self, sample: &mut Sample) {
        for (name, counter) in [
            ("ConnectionsAccepted", &self.connections_accepted),
            ("UpgradesRefused", &self.upgrades_refused),
            ("FramesReceived", &self.frames_received),
            ("FramesRefused", &self.frames_refused),
            ("NotificationsSent", &self.notifications_sent),
            ("ConnectionsGone", &self.connections_gone),
        ] {
            sample.counter(None, name, counter.get());
        }
    }
}
