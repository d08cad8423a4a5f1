//! Helpers for docfan's end-to-end tests: start the real app (in process on port 0, or
//! as a child `docfan serve` process that a test may SIGKILL), mint tokens, and call the
//! REST API.

// The library's unit tests see the dev-dependencies the integration tests use.
#![cfg_attr(test, allow(unused_crate_dependencies))]

pub mod child;
pub mod data_dir;
pub mod port_suites;
pub mod read_side;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use api::commands::serve::{App, ServeConfig};
use chrono::{TimeDelta, Utc};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use shared::auth::TokenAuthority;
use shared::domain::UserId;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The secret every test app signs with.
pub const TEST_SECRET: &[u8] = b"docfan-test-secret-0123456789abcdef";

/// A token for `user` signed with [`TEST_SECRET`], valid for an hour.
pub fn token_for(user: &str) -> String {
    let authority = TokenAuthority::new(TEST_SECRET).expect("test secret is long enough");
    authority.issue(
        &UserId::parse(user).expect("test user ids are valid"),
        TimeDelta::hours(1),
        Utc::now(),
    )
}

/// The real app, serving on a loopback port with its own data directory.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    pub data_dir: Arc<tempfile::TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// Starts the app on port 0 with a fresh data directory.
    pub async fn spawn() -> Self {
        Self::spawn_in(Arc::new(tempfile::tempdir().expect("tempdir"))).await
    }

    /// Starts the app on port 0 with a fresh data directory and the defaults changed by
    /// `configure` (a test that opens many WebSockets as one user raises
    /// `websocket.max_connections_per_user`; one that hammers as one user,
    /// `rate_limit`).
    pub async fn spawn_with(configure: impl FnOnce(&mut ServeConfig)) -> Self {
        Self::spawn_configured(Arc::new(tempfile::tempdir().expect("tempdir")), configure).await
    }

    /// Starts the app on port 0 over an existing data directory (to test restarts).
    pub async fn spawn_in(data_dir: Arc<tempfile::TempDir>) -> Self {
        Self::spawn_configured(data_dir, |_| {}).await
    }

    /// Starts the app over an existing data directory with the defaults changed by
    /// `configure`.
    pub async fn spawn_in_with(
        data_dir: Arc<tempfile::TempDir>,
        configure: impl FnOnce(&mut ServeConfig),
    ) -> Self {
        Self::spawn_configured(data_dir, configure).await
    }

    async fn spawn_configured(
        data_dir: Arc<tempfile::TempDir>,
        configure: impl FnOnce(&mut ServeConfig),
    ) -> Self {
        let mut config = ServeConfig::new(data_dir.path());
        config.tokens = Some(shared::auth::TokenConfig::secret(TEST_SECRET));
        configure(&mut config);
        let app = App::build(&config).await.expect("app builds");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(app.serve(listener, async {
            let _ = rx.await;
        }));
        Self {
            addr,
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            data_dir,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn data_path(&self) -> &Path {
        self.data_dir.path()
    }

    /// Stops the server and waits until it has.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request as `user` (no Authorization header when `user` is `None`).
    pub fn request(&self, method: Method, path: &str, user: Option<&str>) -> RequestBuilder {
        let builder = self.client.request(method, self.url(path));
        match user {
            Some(user) => builder.bearer_auth(token_for(user)),
            None => builder,
        }
    }

    /// Sends and returns status, headers and the JSON body (`Null` when empty or not JSON).
    pub async fn send(&self, builder: RequestBuilder) -> Reply {
        let response = builder.send().await.expect("request sent");
        Reply::read(response).await
    }

    /// Creates a document as `owner` and returns it.
    pub async fn create(
        &self,
        owner: &str,
        title: &str,
        body: &str,
        collaborators: Value,
    ) -> Value {
        let reply = self
            .send(
                self.request(Method::POST, "/documents", Some(owner))
                    .json(&json!({"title": title, "body": body, "collaborators": collaborators})),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "create failed: {}",
            reply.body
        );
        reply.body
    }

    /// Replaces title and body with `If-Match: "version"`.
    pub async fn put(&self, user: &str, id: &str, version: u64, title: &str, body: &str) -> Reply {
        self.send(
            self.request(Method::PUT, &format!("/documents/{id}"), Some(user))
                .header("If-Match", format!("\"{version}\""))
                .json(&json!({"title": title, "body": body})),
        )
        .await
    }

    pub async fn get(&self, user: &str, path: &str) -> Reply {
        self.send(self.request(Method::GET, path, Some(user))).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub async fn read(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body read");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The problem `type` of an error response.
    pub fn problem_type(&self) -> &str {
        self.body["type"].as_str().unwrap_or("")
    }
}
