//! Argument parsing (clap). Every flag also reads an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use shared::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "docfan",
    version,
    about = "Collaborative documents with change fan-out"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Where docfan keeps its data (database, search index, secret).
    #[arg(
        long,
        global = true,
        env = "DOCFAN_DATA_DIR",
        default_value = "./docfan-data"
    )]
    pub data_dir: PathBuf,

    /// Log lines as `human` text or `json`.
    #[arg(
        long,
        global = true,
        env = "DOCFAN_LOG_FORMAT",
        default_value = "human"
    )]
    pub log_format: LogFormat,

    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default when no command is given).
    Serve(ServeArgs),
    /// Print a token for a user, signed with the configured secret, and a sign-in link.
    Token(TokenArgs),
    /// Dead letters: list them, or redrive them once the cause is fixed.
    Dlq(super::dlq::DlqArgs),
    /// Rebuild the search index from the documents (stop the server first).
    Reindex,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The address to listen on.
    #[arg(long, env = "DOCFAN_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The user id (the token's `sub`).
    pub user: String,
    /// How long the token is valid: e.g. `30m`, `12h`, `7d`, or seconds.
    #[arg(long, default_value = "12h", value_parser = parse_ttl)]
    pub ttl: chrono::TimeDelta,
    /// The server address the printed sign-in link points at.
    #[arg(long, env = "DOCFAN_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
}

/// Parses `90`, `90s`, `30m`, `12h` or `7d` into a positive duration of at most a year.
pub fn parse_ttl(raw: &str) -> Result<chrono::TimeDelta, String> {
    let raw = raw.trim();
    let (digits, unit) = match raw.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&raw[..i], c),
        _ => (raw, 's'),
    };
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("`{raw}` is not a duration like 30m, 12h or 7d"))?;
    let seconds = match unit {
        's' => Some(n),
        'm' => n.checked_mul(60),
        'h' => n.checked_mul(3600),
        'd' => n.checked_mul(86_400),
        _ => None,
    }
    .ok_or_else(|| format!("`{raw}`: use s, m, h or d"))?;
    if !(1..=366 * 86_400).contains(&seconds) {
        return Err("the ttl must be between 1 second and a year".into());
    }
    Ok(chrono::TimeDelta::seconds(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_parse() {
        assert_eq!(parse_ttl("90").unwrap().num_seconds(), 90);
        assert_eq!(parse_ttl("30m").unwrap().num_seconds(), 1800);
        assert_eq!(parse_ttl("7d").unwrap().num_seconds(), 604_800);
        for bad in ["", "0", "-5m", "3w", "99999999999999999d", "h"] {
            assert!(parse_ttl(bad).is_err(), "{bad} accepted");
        }
    }
}
