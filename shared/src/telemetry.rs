//! Logging setup for every driver: human-readable lines on a terminal, JSON lines in
//! Lambda or wherever logs are collected. `RUST_LOG` filters (default
//! [`DEFAULT_FILTER`]: docfan's own crates at INFO, every library at WARN, so a save
//! writes one request line rather than a page of index internals). Colours only when
//! stderr is a terminal.

use std::io::IsTerminal;
use std::str::FromStr;

use tracing_subscriber::EnvFilter;

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

/// Installs the global subscriber. Calling it twice is harmless (the second call is
/// ignored), so tests may call it freely.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
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
}
