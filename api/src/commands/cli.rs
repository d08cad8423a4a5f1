//! Argument parsing (clap): every command's arguments, which the command's module takes
//! from here. Every flag of the server also reads an environment variable;
//! `docfan --help` lists them all, with the ones that have no flag.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use shared::telemetry::LogFormat;

/// The environment `docfan --help` lists after the options.
pub const ENVIRONMENT_HELP: &str = "\
Environment:
  DOCFAN_DATA_DIR        data directory (--data-dir) [default: ./docfan-data]
  DOCFAN_LISTEN          address `serve` listens on (--listen) [default: 127.0.0.1:8080]
  DOCFAN_JWT_SECRET      HS256 secret tokens are signed with (32+ bytes); unset: the
                         data directory's jwt-secret, which `serve` creates on first start
  DOCFAN_JWT_JWKS_URL    an OpenID Connect provider's JWKS URL: accept only its tokens
                         (RS256, ES256, EdDSA) instead of HS256 ones
  DOCFAN_JWT_ISSUER, DOCFAN_JWT_AUDIENCE
                         the `iss` and an `aud` every token must carry [default: unchecked]
  DOCFAN_JWT_MAX_LIFETIME_SECS
                         refuse tokens whose exp - iat is longer [default: no limit]
  DOCFAN_JWT_JWKS_MIN_REFRESH_SECS
                         least time between two fetches of the provider's keys [default: 30]
  DOCFAN_URL             the server's address in links `token` prints (--url)
  DOCFAN_BACKEND         embedded or aws (--backend)
  DOCFAN_LOG_FORMAT      human or json log lines (--log-format)
  RUST_LOG               log filter [default: docfan at info, libraries at warn]
  DOCFAN_WS_IDLE_TIMEOUT_SECS, DOCFAN_WS_MAX_CONNECTIONS_PER_USER,
  DOCFAN_RATE_LIMIT_PER_SECOND, DOCFAN_RATE_LIMIT_BURST, DOCFAN_STREAM_*,
  DOCFAN_EVENT_RULES, DOCFAN_EVENT_RETRY_HOURS, DOCFAN_EVENT_TIMEOUT_SECS
                         server, stream and event options (see `docfan serve --help`)
  DOCFAN_ALLOW_PRIVATE_TARGETS
                         1: webhook targets may resolve to private, loopback or
                         link-local addresses [default: refused]
  AWS_REGION, AWS_ENDPOINT_URL, DOCFAN_DOCUMENTS_TABLE, DOCFAN_MEMBERS_TABLE,
  DOCFAN_AUDIT_TABLE, DOCFAN_ANALYSIS_TABLE, DOCFAN_ANALYSIS_QUEUE_URL,
  DOCFAN_DEAD_LETTER_QUEUE_URL, DOCFAN_OPENSEARCH_URL, DOCFAN_OPENSEARCH_INDEX,
  DOCFAN_OPENSEARCH_SIGV4
                         the AWS backend (--backend aws; README, \"On AWS\")";

/// The heading of the options every command takes.
const GLOBAL: &str = "Global options";
/// The heading of the server's own options.
const SERVER: &str = "Server options";

#[derive(Debug, Parser)]
#[command(
    name = "docfan",
    version,
    about = "Collaborative documents with change fan-out",
    after_help = ENVIRONMENT_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Where docfan keeps its data (database, search index, secret).
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        env = "DOCFAN_DATA_DIR",
        default_value = "./docfan-data"
    )]
    pub data_dir: PathBuf,

    /// Log lines as `human` text or `json`.
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        env = "DOCFAN_LOG_FORMAT",
        default_value = "human"
    )]
    pub log_format: LogFormat,

    /// Where the data lives: `embedded` (SQLite and tantivy in the data directory) or
    /// `aws` (DynamoDB, SQS and OpenSearch, configured by the `DOCFAN_*` table, queue and
    /// endpoint variables; needs a binary built with `--features api/aws`).
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        env = "DOCFAN_BACKEND",
        default_value = "embedded"
    )]
    pub backend: Backend,

    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The adapters a command runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// SQLite and tantivy in the data directory, the fan-out in process.
    Embedded,
    /// The AWS services; the fan-out runs in Lambda.
    Aws,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default when no command is given).
    #[command(after_help = ENVIRONMENT_HELP)]
    Serve(ServeArgs),
    /// Print a token for a user, signed with the server's secret, and a sign-in link.
    #[command(after_help = ENVIRONMENT_HELP)]
    Token(TokenArgs),
    /// Dead letters: list them, or redrive them once the cause is fixed.
    Dlq(DlqArgs),
    /// Rebuild the search index from the documents (a running server rebuilds its own).
    Reindex,
    /// Copy the data directory (database and secret) into a new directory, consistently,
    /// while the server runs.
    #[command(long_about = BACKUP_ABOUT)]
    Backup(BackupArgs),
    /// Restore a backup into a stopped data directory (--data-dir), rebuilding its
    /// search index.
    #[command(long_about = RESTORE_ABOUT)]
    Restore(RestoreArgs),
}

const BACKUP_ABOUT: &str = "\
Copy the data directory into a new directory, consistently, while `docfan serve` runs.

The copy holds the database as it was when the backup began (every write acknowledged
before then, with the change log, audit trail, queues and dead letters of that same
instant) and the data directory's jwt-secret; docfan-backup.json, written last, marks
it complete. The search index is not copied: `docfan restore` rebuilds it.

  docfan backup --data-dir /var/lib/docfan --to /var/backups/docfan/2026-12-03";

const RESTORE_ABOUT: &str = "\
Restore a backup made by `docfan backup` into the data directory --data-dir.

The backup is checked first (manifest, database integrity, schema version). The data
directory must not be in use (stop `docfan serve`) and must be new or empty; --force
replaces a docfan data directory that is there. The database is migrated to this
docfan's schema version and the search index rebuilt from the documents.

  docfan restore --from /var/backups/docfan/2026-12-03 --data-dir /var/lib/docfan";

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The address to listen on (recorded in the data directory's `server.json`, where
    /// `docfan token` finds it).
    #[arg(long, env = "DOCFAN_LISTEN", default_value = "127.0.0.1:8080", help_heading = SERVER)]
    pub listen: SocketAddr,

    /// Close WebSocket connections that send nothing for this long (seconds), like API
    /// Gateway's idle timeout.
    #[arg(long, env = "DOCFAN_WS_IDLE_TIMEOUT_SECS", default_value_t = 600, help_heading = SERVER,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub ws_idle_timeout_secs: u64,

    /// WebSocket connections one user may hold open at once; the next is refused (429).
    #[arg(long, env = "DOCFAN_WS_MAX_CONNECTIONS_PER_USER", default_value_t = 16, help_heading = SERVER,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub ws_max_connections_per_user: u64,

    /// REST requests one user may make a second, sustained (a token bucket per user;
    /// past it, 429 with Retry-After). Fractions are allowed: 0.5 is one every two seconds.
    #[arg(long, env = "DOCFAN_RATE_LIMIT_PER_SECOND", default_value = "100", help_heading = SERVER,
          value_parser = crate::http::rate_limit::parse_per_second)]
    pub rate_limit_per_second: f64,

    /// REST requests one user may make at once after a pause (the bucket's size).
    #[arg(long, env = "DOCFAN_RATE_LIMIT_BURST", default_value = "1000", help_heading = SERVER,
          value_parser = crate::http::rate_limit::parse_burst)]
    pub rate_limit_burst: u32,

    #[command(flatten)]
    pub stream: StreamArgs,

    #[command(flatten)]
    pub events: EventArgs,
}

/// Events for consumers outside docfan: webhook rules and their delivery.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Event options (webhooks for other consumers)")]
pub struct EventArgs {
    /// A JSON file of webhook rules, `{"rules":[{"name","pattern","target":{"url","secret"}}]}`:
    /// each event a rule's EventBridge pattern matches is POSTed to its URL, signed per
    /// Standard Webhooks. Checked at start: an invalid file stops the server. Without
    /// it, no events are published.
    #[arg(long, env = "DOCFAN_EVENT_RULES", value_name = "FILE")]
    pub event_rules: Option<PathBuf>,

    /// How long a webhook delivery is retried after its first attempt before it goes to
    /// the dead-letter queue, in hours (fractions allowed).
    #[arg(long, env = "DOCFAN_EVENT_RETRY_HOURS", default_value = "24",
          value_parser = parse_retry_hours)]
    pub event_retry_hours: f64,

    /// How long one webhook delivery attempt may take, in seconds.
    #[arg(long, env = "DOCFAN_EVENT_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub event_timeout_secs: u64,
}

/// Parses a retry budget in hours: more than 0, at most 30 days.
pub fn parse_retry_hours(raw: &str) -> Result<f64, String> {
    let hours: f64 = raw
        .trim()
        .parse()
        .map_err(|_| format!("`{raw}` is not a number of hours"))?;
    if !(hours > 0.0 && hours <= 720.0) {
        return Err("the retry budget is more than 0 and at most 720 hours".into());
    }
    Ok(hours)
}

impl ServeArgs {
    /// Each user's REST request budget.
    pub fn rate_limit(&self) -> crate::http::rate_limit::RateLimit {
        crate::http::rate_limit::RateLimit {
            per_second: self.rate_limit_per_second,
            burst: self.rate_limit_burst,
        }
    }
}

/// The knobs of the embedded event source mapping, named and bounded like the Lambda
/// event source mapping's.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Stream options (the embedded event source mapping)")]
pub struct StreamArgs {
    /// Records per handler call (BatchSize).
    #[arg(long, env = "DOCFAN_STREAM_BATCH_SIZE", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub stream_batch_size: u64,

    /// How long to wait for a batch to fill, in milliseconds (MaximumBatchingWindowInSeconds).
    #[arg(long, env = "DOCFAN_STREAM_BATCHING_WINDOW_MS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=300_000))]
    pub stream_batching_window_ms: u64,

    /// Partitions handled concurrently, each in document order (ParallelizationFactor).
    #[arg(long, env = "DOCFAN_STREAM_PARALLELIZATION", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=10))]
    pub stream_parallelization: u32,

    /// Retries of a failing record before it is dead-lettered; -1 retries until the
    /// record is too old (MaximumRetryAttempts).
    #[arg(long, env = "DOCFAN_STREAM_MAX_RETRIES", default_value_t = 10,
          value_parser = clap::value_parser!(i64).range(-1..=10_000), allow_negative_numbers = true)]
    pub stream_max_retries: i64,

    /// Age in seconds after which an unprocessed record is dead-lettered; -1 never
    /// (MaximumRecordAgeInSeconds).
    #[arg(long, env = "DOCFAN_STREAM_MAX_RECORD_AGE_SECS", default_value_t = 86_400,
          value_parser = clap::value_parser!(i64).range(-1..=604_800), allow_negative_numbers = true)]
    pub stream_max_record_age_secs: i64,

    /// Split a batch that failed as a whole and retry the halves (BisectBatchOnFunctionError).
    #[arg(long, env = "DOCFAN_STREAM_BISECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub stream_bisect: bool,
}

impl StreamArgs {
    /// The poller configuration these flags describe.
    pub fn poller(&self) -> stream_handler::PollerConfig {
        let defaults = stream_handler::PollerConfig::default();
        stream_handler::PollerConfig {
            batch_size: self.stream_batch_size as usize,
            maximum_batching_window: std::time::Duration::from_millis(
                self.stream_batching_window_ms,
            ),
            parallelization_factor: self.stream_parallelization,
            bisect_batch_on_error: self.stream_bisect,
            maximum_retry_attempts: u32::try_from(self.stream_max_retries).ok(),
            maximum_record_age: u64::try_from(self.stream_max_record_age_secs)
                .ok()
                .map(std::time::Duration::from_secs),
            ..defaults
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The user id (the token's `sub`).
    pub user: String,
    /// How long the token is valid: e.g. `30m`, `12h`, `7d`, or seconds.
    #[arg(long, default_value = "12h", value_parser = parse_ttl)]
    pub ttl: chrono::TimeDelta,
    /// The server's address for the printed sign-in link, e.g. `https://docs.example`;
    /// by default the address `docfan serve` last recorded in the data directory, else
    /// `DOCFAN_LISTEN`, else http://127.0.0.1:8080.
    #[arg(long, env = "DOCFAN_URL")]
    pub url: Option<String>,
    /// Create a new secret in the data directory when there is none (a running server
    /// keeps its own secret until restarted, and rejects tokens signed with another).
    #[arg(long)]
    pub create_secret: bool,
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

/// `docfan dlq`.
#[derive(Debug, Clone, Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    pub command: DlqCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum DlqCommand {
    /// List the dead letters, oldest first.
    List {
        /// At most this many (1 to 10,000).
        #[arg(long, default_value_t = 100,
              value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
        limit: usize,
        /// Print each letter as a JSON line, payload included.
        #[arg(long)]
        json: bool,
    },
    /// Handle dead letters again; those that succeed leave the queue.
    Redrive {
        /// Only this letter.
        #[arg(long)]
        id: Option<String>,
    },
    /// AWS only: read back from the stream the batches its mappings gave up on (their
    /// on-failure queue holds only metadata, `DOCFAN_STREAM_FAILURE_QUEUE_URL`) and
    /// handle them again, while the stream still holds them (24 hours).
    Replay,
}

/// `docfan backup`.
#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// The directory to write the backup to: new (its parent must exist) or empty.
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
}

/// `docfan restore`.
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The backup directory (`docfan backup --to DIR`).
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,
    /// Replace the docfan data directory that is there: its documents, index and
    /// secret are deleted. Without it, the data directory must be new or empty.
    #[arg(long)]
    pub force: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flags_default_to_the_documented_limits() {
        let cli = Cli::try_parse_from(["docfan"]).unwrap();
        assert_eq!(
            cli.serve.rate_limit(),
            crate::http::rate_limit::RateLimit::default()
        );
        assert_eq!(
            cli.serve.ws_max_connections_per_user,
            websocket::LocalConfig::default().max_connections_per_user as u64
        );
        let cli = Cli::try_parse_from([
            "docfan",
            "serve",
            "--rate-limit-per-second",
            "0.5",
            "--rate-limit-burst",
            "3",
        ])
        .unwrap();
        let Some(Command::Serve(args)) = cli.command else {
            panic!("serve");
        };
        assert_eq!(args.rate_limit().per_second, 0.5);
        assert_eq!(args.rate_limit().burst, 3);
        for bad in [
            ["--rate-limit-per-second", "0"],
            ["--rate-limit-burst", "0"],
        ] {
            assert!(Cli::try_parse_from(["docfan", "serve", bad[0], bad[1]]).is_err());
        }
    }

    #[test]
    fn event_options_parse_and_refuse_out_of_range_values() {
        let cli = Cli::try_parse_from([
            "docfan",
            "serve",
            "--event-rules",
            "rules.json",
            "--event-retry-hours",
            "0.5",
            "--event-timeout-secs",
            "3",
        ])
        .unwrap();
        let Some(Command::Serve(args)) = cli.command else {
            panic!("serve");
        };
        assert_eq!(
            args.events.event_rules.as_deref(),
            Some(std::path::Path::new("rules.json"))
        );
        assert_eq!(args.events.event_retry_hours, 0.5);
        assert_eq!(args.events.event_timeout_secs, 3);
        let defaults = Cli::try_parse_from(["docfan"]).unwrap().serve.events;
        assert_eq!(defaults.event_rules, None);
        assert_eq!(defaults.event_retry_hours, 24.0);
        assert_eq!(defaults.event_timeout_secs, 10);
        for bad in [
            ["--event-retry-hours", "0"],
            ["--event-retry-hours", "-1"],
            ["--event-retry-hours", "721"],
            ["--event-retry-hours", "NaN"],
            ["--event-timeout-secs", "0"],
        ] {
            assert!(Cli::try_parse_from(["docfan", "serve", bad[0], bad[1]]).is_err());
        }
    }

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
