//! `docfan serve`: the embedded all-in-one server. Reads configuration, opens the
//! embedded adapters once, wires them into the services and serves the router; nothing
//! here holds business rules.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use shared::auth::{self, TokenAuthority};
use shared::clock::{Clock, SystemClock};
use shared::embedded::{DATABASE_FILE, SqliteDocumentStore};
use shared::service::DocumentService;
use tokio::net::TcpListener;

use super::cli::ServeArgs;
use crate::state::AppState;

/// The environment variable that overrides the generated secret.
pub const SECRET_ENV: &str = "DOCFAN_JWT_SECRET";

/// Everything `serve` needs besides its listener.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    /// The JWT secret; `None` reads `DOCFAN_JWT_SECRET` or the data directory's secret.
    pub secret: Option<Vec<u8>>,
}

/// The secret from `DOCFAN_JWT_SECRET`, or else the one in the data directory (created
/// on first use). There is no built-in secret.
pub fn load_secret(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    if let Ok(secret) = std::env::var(SECRET_ENV) {
        if !secret.is_empty() {
            return Ok(secret.into_bytes());
        }
    }
    let (secret, created) = auth::load_or_create_secret(data_dir)?;
    if created {
        tracing::info!(
            path = %data_dir.join(auth::SECRET_FILE).display(),
            "generated a new JWT secret"
        );
    }
    Ok(secret)
}

/// The running application's parts.
pub struct App {
    pub router: Router,
    pub clock: Arc<dyn Clock>,
}

impl App {
    /// Opens the data directory and wires every adapter.
    pub async fn build(config: &ServeConfig) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!("creating the data directory {}", config.data_dir.display())
        })?;
        let secret = match &config.secret {
            Some(secret) => secret.clone(),
            None => load_secret(&config.data_dir)?,
        };
        let tokens = Arc::new(TokenAuthority::new(&secret)?);
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let db_path = config.data_dir.join(DATABASE_FILE);
        let store = Arc::new(
            SqliteDocumentStore::open(&db_path)
                .map_err(|e| anyhow::anyhow!("opening {}: {e}", db_path.display()))?,
        );
        let documents = DocumentService::new(store, Arc::clone(&clock));
        let state = AppState {
            documents,
            tokens,
            clock: Arc::clone(&clock),
            metrics: Vec::new(),
        };
        Ok(Self {
            router: crate::router(state),
            clock,
        })
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        crate::server::serve(listener, self.router, shutdown).await?;
        Ok(())
    }
}

/// `docfan serve`.
pub async fn run(data_dir: &Path, args: &ServeArgs) -> anyhow::Result<()> {
    let config = ServeConfig {
        data_dir: data_dir.to_owned(),
        secret: None,
    };
    let app = App::build(&config).await?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("docfan is serving on http://{addr}");
    println!("  data directory:  {}", data_dir.display());
    println!("  get a token:     cargo run --release -- token alice   (or: docfan token alice)");
    println!(
        "  web editor:      http://{addr}/#token=<token>   (the token command prints the link)"
    );
    println!("  API description: http://{addr}/openapi.json");
    tracing::info!(%addr, "listening");
    app.serve(listener, crate::server::shutdown_signal()).await
}
