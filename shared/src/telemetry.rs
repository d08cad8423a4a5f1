//! Logging setup for every driver: human-readable lines on a terminal, JSON lines in
//! Lambda or wherever logs are collected. `RUST_LOG` filters (default
//! [`DEFAULT_FILTER`]: docfan's own crates at INFO, every library at WARN, so a save
//! writes one request line rather than a page of index internals). Colours only when
//! stderr is a terminal.
//!
//! Whatever `RUST_LOG` says, libraries that log the data passing through them are held
//! below the level where they do ([`QUIETED`]): tokens are credentials, and one arrives
//! in every WebSocket `auth` frame.

use std::io::IsTerminal;
use std::str::FromStr;

use tracing::Level;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::layer::Filter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "human" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format `{other}` (human or json)")),
        }
    }
}

/// The filter used when `RUST_LOG` is unset (or does not parse): docfan's crates and
/// binaries at INFO, libraries (tantivy, hyper, the AWS SDK…) at WARN.
pub const DEFAULT_FILTER: &str = "warn,api=info,shared=info,stream_handler=info,websocket=info,\
     docfan=info,lambda_api=info,lambda_websocket=info,lambda_stream_handler=info,\
     lambda_analysis_worker=info";

/// Libraries whose events more verbose than the level given are dropped whatever
/// `RUST_LOG` says: the WebSocket library (tungstenite, under axum's `/ws`) logs every
/// frame it reads or writes at TRACE, text and payload bytes, so an `auth` frame's
/// token (and documents' text) would reach the log.
pub const QUIETED: &[(&str, Level)] = &[
    ("tungstenite", Level::DEBUG),
    ("tokio_tungstenite", Level::DEBUG),
];

/// Whether an event of `target` at `level` is dropped by [`QUIETED`].
pub fn is_quieted(target: &str, level: &Level) -> bool {
    QUIETED.iter().any(|(library, most)| {
        let within = target
            .strip_prefix(library)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"));
        within && level > most
    })
}

/// `env` with [`QUIETED`] applied. The quieting never shows what `env` hides, so the
/// most verbose level `env` shows stays the whole filter's: the `log` crate's records
/// (from libraries that use it, tungstenite among them) above it are then dropped at
/// their call site, instead of each going through the bridge into `tracing` to be
/// filtered there — on a busy WebSocket server that bridge was a tenth of the CPU.
pub fn with_libraries_quieted(env: EnvFilter) -> impl Filter<Registry> {
    let quieted = filter_fn(|meta| !is_quieted(meta.target(), meta.level()))
        .with_max_level_hint(LevelFilter::TRACE);
    env.and(quieted)
}

/// Installs the global subscriber. Calling it twice is harmless (the second call is
/// ignored), so tests may call it freely.
pub fn init(format: LogFormat) {
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let filter = with_libraries_quieted(env);
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let lines = match format {
        LogFormat::Human => lines.boxed(),
        LogFormat::Json => lines
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_filter_parses_and_quiets_libraries() {
        let filter = EnvFilter::try_new(DEFAULT_FILTER).unwrap();
        let shown = filter.to_string();
        assert!(shown.split(',').any(|d| d == "warn"), "{shown}");
        assert!(shown.contains("api=info") && shown.contains("stream_handler=info"));
        assert!(!shown.contains("tantivy"), "{shown}");
    }

    #[test]
    fn the_most_verbose_level_shown_is_known_so_log_records_stop_at_their_call_site() {
        let filter = with_libraries_quieted(EnvFilter::new(DEFAULT_FILTER));
        assert_eq!(
            Filter::<Registry>::max_level_hint(&filter),
            Some(LevelFilter::INFO)
        );
        let verbose = with_libraries_quieted(EnvFilter::new("trace"));
        assert_eq!(
            Filter::<Registry>::max_level_hint(&verbose),
            Some(LevelFilter::TRACE)
        );
    }

    #[test]
    fn the_websocket_library_never_logs_frames() {
        for target in [
            "tungstenite",
            "tungstenite::protocol",
            "tokio_tungstenite::compat",
        ] {
            assert!(is_quieted(target, &Level::TRACE), "{target}");
            assert!(!is_quieted(target, &Level::DEBUG), "{target}");
        }
        for target in ["api", "websocket::service", "hyper", "tungstenites"] {
            assert!(!is_quieted(target, &Level::TRACE), "{target}");
        }
    }
}
