//! `docfan serve`: the embedded all-in-one server. Reads configuration, opens the
//! embedded adapters once, wires them into the services and serves the router; nothing
//! here holds business rules.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use shared::auth::{self, TokenAuthority, TokenConfig};
use shared::clock::{Clock, SystemClock};
use shared::embedded::{
    ChangeFeed, DATABASE_FILE, DataDirLock, SqliteAuditLog, SqliteDocumentStore,
};
use shared::metrics::Metrics;
use shared::ports::{DocumentStore, Notifier};
use shared::service::DocumentService;
use stream_handler::{EmbeddedFanout, FanoutConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use websocket::{InProcessRegistry, LocalConfig, LocalPorts, LocalWebSocket, ServiceConfig};

use shared::events::EventRules;
use shared::events::address::{ALLOW_PRIVATE_TARGETS_ENV, allows_private};
use stream_handler::webhooks::{EventsConfig, WebhookDeliveryConfig};

use super::cli::{Backend, EventArgs, ServeArgs};
use crate::admin;
use crate::admin::server::{AdminSocket, AdminState};
use crate::http::rate_limit::{RateLimit, UserRateLimiter};
use crate::state::AppState;

/// Everything `serve` needs besides its listener.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    /// How tokens are verified; `None` reads the environment (`shared::auth::env`),
    /// with the data directory's secret when neither a JWKS URL nor
    /// `DOCFAN_JWT_SECRET` is set.
    pub tokens: Option<TokenConfig>,
    /// The stream poller, handler, sinks and analysis worker.
    pub fanout: FanoutConfig,
    /// The local WebSocket endpoint.
    pub websocket: LocalConfig,
    /// Each user's REST request budget.
    pub rate_limit: RateLimit,
}

impl ServeConfig {
    /// The defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            tokens: None,
            fanout: FanoutConfig::default(),
            websocket: LocalConfig::default(),
            rate_limit: RateLimit::default(),
        }
    }
}

/// How tokens are verified, from the environment: an identity provider's keys, or HS256
/// with `DOCFAN_JWT_SECRET`, or else with the data directory's secret (created on first
/// use). There is no built-in secret.
pub fn token_config(data_dir: &Path) -> anyhow::Result<TokenConfig> {
    TokenConfig::from_env(|| data_dir_secret(data_dir))
}

/// The data directory's secret, created on first use.
fn data_dir_secret(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    let (secret, created) = auth::load_or_create_secret(data_dir)?;
    if created {
        tracing::info!(
            path = %data_dir.join(auth::SECRET_FILE).display(),
            "generated a new JWT secret"
        );
    }
    Ok(secret)
}

/// The file in the data directory where `serve` records the address it listens on, for
/// `docfan token`'s links.
pub const SERVER_FILE: &str = "server.json";

/// The base URL of a server listening on `addr`; an unspecified address (all
/// interfaces) is reached on loopback.
pub fn url_of(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// Records where this server listens in the data directory's [`SERVER_FILE`].
fn record_address(data_dir: &Path, addr: SocketAddr) -> anyhow::Result<()> {
    let record = serde_json::json!({
        "url": url_of(addr),
        "listen": addr.to_string(),
        "pid": std::process::id(),
        "startedAt": chrono::Utc::now().to_rfc3339(),
    });
    let path = data_dir.join(SERVER_FILE);
    let staged = data_dir.join(format!("{SERVER_FILE}.tmp"));
    std::fs::write(&staged, serde_json::to_vec_pretty(&record)?)
        .and_then(|()| std::fs::rename(&staged, &path))
        .with_context(|| format!("writing {}", path.display()))
}

/// The URL the last `serve` on this data directory recorded, if any.
pub fn recorded_url(data_dir: &Path) -> Option<String> {
    let raw = std::fs::read(data_dir.join(SERVER_FILE)).ok()?;
    let record: serde_json::Value = serde_json::from_slice(&raw).ok()?;
    record["url"].as_str().map(str::to_owned)
}

/// Fails early, naming the directory and the cause, when the data directory cannot take
/// writes (a read-only file system, a full disk, no permission): every write and the
/// fan-out would fail later otherwise.
fn check_writable(dir: &Path) -> anyhow::Result<()> {
    crate::readiness::probe_writable(dir).map_err(|why| {
        let named = format!("the data directory {}", dir.display());
        anyhow::anyhow!(
            "{}; docfan keeps its documents there and needs to write",
            why.replacen("the data directory", &named, 1)
        )
    })
}

/// The running application's parts: the router, and what runs beside it (the stream
/// poller and analysis worker, the WebSocket connections).
pub struct App {
    pub router: Router,
    pub clock: Arc<dyn Clock>,
    embedded: Option<EmbeddedParts>,
}

/// What runs beside the router on one machine.
struct EmbeddedParts {
    fanout: EmbeddedFanout,
    feed: ChangeFeed,
    websocket: LocalWebSocket,
    /// The admin socket and what it serves (`None` when it could not be bound: the
    /// server runs, and operator commands wait for it to stop).
    admin: Option<(AdminSocket, Router)>,
    /// Held until the server has stopped (dropped with the fan-out, after it): no second
    /// server, and no restore, on this data directory meanwhile.
    _lock: DataDirLock,
}

impl App {
    /// Opens the data directory and wires every adapter.
    pub async fn build(config: &ServeConfig) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!("creating the data directory {}", config.data_dir.display())
        })?;
        check_writable(&config.data_dir)?;
        let lock = DataDirLock::acquire(&config.data_dir)?;
        // The store first: it migrates the database, or refuses one from a newer docfan
        // before anything else is created in the directory.
        let db_path = config.data_dir.join(DATABASE_FILE);
        let store = Arc::new(
            SqliteDocumentStore::open(&db_path)
                .map_err(|e| anyhow::anyhow!("opening {}: {e}", db_path.display()))?,
        );
        let tokens = match &config.tokens {
            Some(tokens) => tokens.clone(),
            None => token_config(&config.data_dir)?,
        };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let tokens = Arc::new(TokenAuthority::start(tokens, clock.now()).await?);
        let feed = store.change_feed();
        let sqlite_store = Arc::clone(&store);
        let store: Arc<dyn DocumentStore> = store;

        // The WebSocket side reads the audit trail for replays through its own
        // connection; the fan-out writes it.
        let replay_audit = Arc::new(
            SqliteAuditLog::open(&db_path)
                .map_err(|e| anyhow::anyhow!("opening the audit trail: {e}"))?,
        );
        // One registry for `/metrics`: the WebSocket, the fan-out and the router count
        // into its parts.
        let metrics = Metrics::new();
        let websocket = LocalWebSocket::counting(
            LocalPorts {
                registry: Arc::new(InProcessRegistry::new()),
                documents: Arc::clone(&store),
                audit: replay_audit,
                tokens: (*tokens).clone(),
                clock: Arc::clone(&clock),
            },
            ServiceConfig::default(),
            config.websocket.clone(),
            metrics.live.clone(),
        );
        let notifier: Arc<dyn Notifier> = Arc::new(websocket.notifier());
        let fanout = EmbeddedFanout::open_counting(
            &config.data_dir,
            Arc::clone(&store),
            notifier,
            Arc::clone(&clock),
            config.fanout.clone(),
            &metrics,
        )
        .map_err(|e| anyhow::anyhow!("opening the fan-out stores: {e}"))?;

        let admin = match AdminSocket::bind(&config.data_dir) {
            Ok(socket) => Some((
                socket,
                admin::server::router(AdminState::new(sqlite_store, fanout.clone())),
            )),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "no admin socket: `docfan reindex` and `docfan dlq` need this server stopped"
                );
                None
            }
        };
        let readiness = crate::readiness::embedded(&config.data_dir, &fanout);
        let state = AppState {
            documents: DocumentService::new(store, Arc::clone(&clock)),
            tokens,
            clock: Arc::clone(&clock),
            metrics,
            reads: fanout.reads(),
            rate_limit: Arc::new(UserRateLimiter::new(config.rate_limit)),
        };
        Ok(Self {
            router: crate::router_with(state, readiness, websocket.router()),
            clock,
            embedded: Some(EmbeddedParts {
                fanout,
                feed,
                websocket,
                admin,
                _lock: lock,
            }),
        })
    }

    /// An app that is only a router (the AWS adapters: the fan-out runs in Lambda).
    pub fn from_router(router: Router, clock: Arc<dyn Clock>) -> Self {
        Self {
            router,
            clock,
            embedded: None,
        }
    }

    /// Serves until `shutdown` resolves, with the stream poller and the analysis worker
    /// running beside the server. On shutdown: stop accepting requests, close the
    /// WebSocket connections (1001), let in-flight requests finish, then let the poller
    /// finish its batch and checkpoint. The admin socket closes with the server, and is
    /// removed.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Some(parts) = self.embedded else {
            crate::server::serve(listener, self.router, shutdown).await?;
            return Ok(());
        };
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let background = parts.fanout.start(parts.feed, async move {
            let _ = stop_rx.wait_for(|stopped| *stopped).await;
        });
        let (admin_stop_tx, mut admin_stop) = watch::channel(false);
        let admin = parts.admin.map(|(socket, router)| {
            tokio::spawn(socket.serve(router, async move {
                let _ = admin_stop.wait_for(|stopped| *stopped).await;
            }))
        });
        let websocket = parts.websocket;
        let served = crate::server::serve(listener, self.router, async move {
            shutdown.await;
            let _ = admin_stop_tx.send(true);
            websocket.close_all();
        })
        .await;
        let _ = stop_tx.send(true);
        match background.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "the fan-out stopped with an error"),
            Err(e) => tracing::error!(error = %e, "the fan-out task failed"),
        }
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        served?;
        Ok(())
    }
}

/// The webhook rules and their delivery from the event options: `None` without a
/// rules file (or with one that has no rules), so nothing publishes events. Fails,
/// naming the file and the rule, when the file is invalid. `allow_private` is the value
/// of `DOCFAN_ALLOW_PRIVATE_TARGETS`.
pub fn events_config(
    args: &EventArgs,
    allow_private: Option<&str>,
) -> anyhow::Result<Option<EventsConfig>> {
    let Some(path) = &args.event_rules else {
        return Ok(None);
    };
    let rules = EventRules::load(path)
        .map_err(|e| anyhow::anyhow!("{e} (in {}; the server does not start)", path.display()))?;
    if rules.is_empty() {
        tracing::info!(path = %path.display(), "the event rules file has no rules: no events are published");
        return Ok(None);
    }
    let allow_private_targets = allows_private(allow_private);
    for rule in rules.rules() {
        if let Err(refused) = rule.target.check_literal()
            && !allow_private_targets
        {
            tracing::warn!(rule = %rule.name, "{refused}: its deliveries will fail and be dead-lettered");
        }
    }
    let delivery = WebhookDeliveryConfig {
        attempt_timeout: std::time::Duration::from_secs(args.event_timeout_secs),
        retry_budget: std::time::Duration::from_secs_f64(args.event_retry_hours * 3600.0),
        allow_private_targets,
        ..WebhookDeliveryConfig::default()
    };
    tracing::info!(
        rules = rules.rules().len(),
        allow_private_targets,
        "publishing events to webhooks"
    );
    Ok(Some(EventsConfig { rules, delivery }))
}

/// Turns transparent huge pages off for this process (and what it starts).
///
/// The allocator asks the kernel for huge pages, and the kernel then backs a fresh
/// stretch of memory with 2 MiB at its first touch, zeroed whole. The search index
/// takes fresh memory at every commit (several a second while people type), and most
/// of what a huge page holds is never used: in the soak benchmark the server's resident
/// memory was about 20 MiB lower without them (`bench/results.md`). Redis and MongoDB
/// advise the same.
fn without_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE only sets a flag on this process.
        let failed = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0;
        if failed {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "could not turn transparent huge pages off"
            );
        }
    }
}

/// mimalloc's `purge_delay` option: its place in `mi_option_t` (mimalloc.h), which
/// `libmimalloc-sys` does not name.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Has mimalloc give memory it freed back to the system at once, not a second later
/// (its default). While people type, the server frees and allocates without a pause (the
/// index's writer starts afresh at every commit), so a purge put off for a second was
/// put off for ever: the resident memory grew with the documents and stayed. Returning
/// it at once halved it in the soak benchmark, for about 0.05 ms more CPU per edit
/// (`bench/results.md`).
fn returning_freed_memory_at_once() {
    // SAFETY: sets one of mimalloc's options, which it reads at every purge.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

/// `docfan serve`.
pub async fn run(data_dir: &Path, backend: Backend, args: &ServeArgs) -> anyhow::Result<()> {
    without_transparent_huge_pages();
    returning_freed_memory_at_once();
    let app = match backend {
        Backend::Embedded => {
            let mut config = ServeConfig::new(data_dir);
            config.fanout.poller = args.stream.poller();
            config.websocket.idle_timeout =
                std::time::Duration::from_secs(args.ws_idle_timeout_secs);
            config.websocket.max_connections_per_user =
                usize::try_from(args.ws_max_connections_per_user).unwrap_or(usize::MAX);
            config.rate_limit = args.rate_limit();
            config.fanout.events = events_config(
                &args.events,
                std::env::var(ALLOW_PRIVATE_TARGETS_ENV).ok().as_deref(),
            )?;
            App::build(&config).await?
        }
        Backend::Aws => aws_app(args.rate_limit()).await?,
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    if backend == Backend::Embedded
        && let Err(e) = record_address(data_dir, addr)
    {
        tracing::warn!(error = %e, "could not record the address for `docfan token`");
    }
    println!("docfan is serving on http://{addr}");
    match backend {
        Backend::Embedded => println!("  data directory:  {}", data_dir.display()),
        Backend::Aws => println!("  backend:         AWS (the fan-out and /ws run in Lambda)"),
    }
    let same_dir = if data_dir == Path::new("./docfan-data") {
        String::new()
    } else {
        format!(" --data-dir {}", data_dir.display())
    };
    println!(
        "  get a token:     cargo run --release -- token alice{same_dir}   (or: docfan token alice{same_dir})"
    );
    println!(
        "  web editor:      http://{addr}/#token=<token>   (the token command prints the link)"
    );
    println!("  API description: http://{addr}/openapi.json");
    tracing::info!(%addr, "listening");
    app.serve(listener, crate::server::shutdown_signal()).await
}

/// The REST API on the AWS adapters, configured from the environment.
#[cfg(feature = "aws")]
pub(crate) async fn aws_app(rate_limit: RateLimit) -> anyhow::Result<App> {
    App::from_aws_env(rate_limit).await
}

#[cfg(not(feature = "aws"))]
pub(crate) async fn aws_app(_: RateLimit) -> anyhow::Result<App> {
    anyhow::bail!("this docfan was built without AWS support: build it with `--features api/aws`")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn args(rules: Option<PathBuf>) -> EventArgs {
        EventArgs {
            event_rules: rules,
            event_retry_hours: 0.5,
            event_timeout_secs: 3,
        }
    }

    #[test]
    fn freed_memory_is_returned_at_once() {
        // SAFETY: reads one of mimalloc's options.
        let purge_delay = || unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // The option's default in mimalloc 3: the options on either side of it
            // default to 1 and 0, so a wrong place would show.
            assert_eq!(purge_delay(), 1000);
        }
        returning_freed_memory_at_once();
        assert_eq!(purge_delay(), 0);
    }

    #[test]
    fn events_are_configured_only_by_a_file_with_rules() {
        let dir = tempfile::tempdir().unwrap();
        assert!(events_config(&args(None), Some("1")).unwrap().is_none());

        let empty = dir.path().join("empty.json");
        std::fs::write(&empty, r#"{"rules": []}"#).unwrap();
        assert!(events_config(&args(Some(empty)), None).unwrap().is_none());

        let file = dir.path().join("rules.json");
        std::fs::write(
            &file,
            r#"{"rules": [{"name": "r", "pattern": {"source": ["docfan"]},
                "target": {"url": "http://127.0.0.1:9/", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}]}"#,
        )
        .unwrap();
        let events = events_config(&args(Some(file.clone())), Some("1"))
            .unwrap()
            .unwrap();
        assert_eq!(events.rules.rules().len(), 1);
        assert!(events.delivery.allow_private_targets);
        assert_eq!(events.delivery.retry_budget, Duration::from_secs(1800));
        assert_eq!(events.delivery.attempt_timeout, Duration::from_secs(3));
        let refused = events_config(&args(Some(file)), Some("0"))
            .unwrap()
            .unwrap();
        assert!(!refused.delivery.allow_private_targets);

        let broken = dir.path().join("broken.json");
        std::fs::write(&broken, r#"{"rules": [{"name": "r"}]}"#).unwrap();
        let said = events_config(&args(Some(broken.clone())), None)
            .unwrap_err()
            .to_string();
        assert!(
            said.contains("event rule \"r\": has no \"pattern\""),
            "{said}"
        );
        assert!(said.contains(&broken.display().to_string()), "{said}");
        assert!(said.contains("the server does not start"), "{said}");
    }
}
