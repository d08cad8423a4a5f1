//! The server's side of live administration: the [`router`] of the admin API and the
//! [`AdminSocket`] it is served on.
//!
//! Every operation goes through the running fan-out's own ports: a reindex writes
//! through the one search index writer the search sink uses, a redrive hands records
//! to the fan-out's sinks (so redriven changes also reach the subscribers connected to
//! this server). A reindex runs in a task of its own: a caller that goes away mid-way
//! does not leave a half-rebuilt index behind, and only one runs at a time.
//!
//! What a caller may send is bounded: [`MAX_ADMIN_REQUEST_BYTES`] of body, a request
//! head within [`HEADER_READ_TIMEOUT`], [`MAX_CONNECTIONS`] at once; unknown paths and
//! methods are problems (404, 405), like every malformed request.

use std::future::Future;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::stream;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use shared::embedded::{SqliteDocumentStore, TantivySearchIndex};
use shared::ports::DeadLetterQueue;
use stream_handler::EmbeddedFanout;
use tokio::net::UnixListener;
use tokio::sync::{Mutex, Semaphore, oneshot, watch};
use tower::ServiceExt;

use super::{
    ADMIN_SOCKET, DeadLetterList, MAX_ADMIN_REQUEST_BYTES, MAX_LIST, RedriveReport, RedriveRequest,
    ReindexLine,
};
use crate::http::problem::{ApiError, Problem};
use crate::http::query::QueryParams;

/// Admin connections served at once; the next wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 8;
/// How long a caller may take to send a request's head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long requests in flight (a reindex) may go on after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The least time between two progress lines of a reindex.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// What the admin API works on: the running server's stores and fan-out.
#[derive(Clone)]
pub struct AdminState {
    documents: Arc<SqliteDocumentStore>,
    search: Arc<TantivySearchIndex>,
    fanout: EmbeddedFanout,
    /// Held by the reindex that runs.
    reindexing: Arc<Mutex<()>>,
}

impl AdminState {
    pub fn new(documents: Arc<SqliteDocumentStore>, fanout: EmbeddedFanout) -> Self {
        Self {
            documents,
            search: fanout.search.clone(),
            fanout,
            reindexing: Arc::new(Mutex::new(())),
        }
    }
}

/// The admin API.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/reindex", post(reindex))
        .route("/dead-letters", get(dead_letters))
        .route("/dead-letters/redrive", post(redrive))
        .fallback(crate::routes::system::not_found)
        .method_not_allowed_fallback(crate::routes::system::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_ADMIN_REQUEST_BYTES))
        .with_state(state)
}

async fn reindex(State(state): State<AdminState>) -> Result<Response, ApiError> {
    let running = Arc::clone(&state.reindexing)
        .try_lock_owned()
        .map_err(|_| {
            Problem::new(
                StatusCode::CONFLICT,
                "/problems/reindex-running",
                "A reindex is running",
                "the search index is being rebuilt already; wait for it to finish",
            )
        })?;
    let (progress_tx, progress) = watch::channel((0, 0));
    let (done_tx, done) = oneshot::channel();
    tokio::spawn(async move {
        tracing::info!("rebuilding the search index");
        let result =
            stream_handler::reindex::reindex(&state.search, &state.documents, |done, total| {
                progress_tx.send_replace((done, total));
            })
            .await;
        match &result {
            Ok(indexed) => tracing::info!(indexed, "the search index is rebuilt"),
            Err(e) => tracing::error!(error = %e, "rebuilding the search index failed"),
        }
        drop(progress_tx);
        drop(running);
        let _ = done_tx.send(result);
    });
    let lines = stream::unfold(Some((progress, done, false)), |feed| async move {
        let (mut progress, mut done, paced) = feed?;
        if paced {
            tokio::time::sleep(PROGRESS_EVERY).await;
        }
        let line = tokio::select! {
            biased;
            Ok(()) = progress.changed() => {
                let (done_so_far, total) = *progress.borrow_and_update();
                return Some((
                    Ok::<_, io::Error>(ndjson(&ReindexLine::Progress { done: done_so_far, total })),
                    Some((progress, done, true)),
                ));
            }
            result = &mut done => match result {
                Ok(Ok(indexed)) => ReindexLine::Indexed { indexed },
                Ok(Err(e)) => ReindexLine::Failed { error: e.to_string() },
                Err(_) => ReindexLine::Failed { error: "the reindex task ended early".into() },
            },
        };
        Some((Ok(ndjson(&line)), None))
    });
    let mut response = Body::from_stream(lines).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}

fn ndjson(line: &ReindexLine) -> Bytes {
    let mut bytes = serde_json::to_vec(line).expect("a reindex line encodes");
    bytes.push(b'\n');
    Bytes::from(bytes)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<usize>,
}

async fn dead_letters(
    State(state): State<AdminState>,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<axum::Json<DeadLetterList>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(Problem::invalid("limit", format!("limit is 1..={MAX_LIST}")).into());
    }
    let queue = &state.fanout.dead_letters;
    let letters = queue.list(limit).await?;
    let total = queue.depth().await?;
    Ok(axum::Json(DeadLetterList { letters, total }))
}

async fn redrive(
    State(state): State<AdminState>,
    AdminJson(request): AdminJson<RedriveRequest>,
) -> Result<axum::Json<RedriveReport>, ApiError> {
    let id = request.id.as_deref();
    let outcomes = state.fanout.redrive(id).await.map_err(|e| match e {
        shared::Error::NotFound => ApiError::from(Problem::new(
            StatusCode::NOT_FOUND,
            "/problems/not-found",
            "Not found",
            format!("no dead letter with id {}", id.unwrap_or("")),
        )),
        e => e.into(),
    })?;
    Ok(axum::Json(RedriveReport {
        outcomes: outcomes.into_iter().map(Into::into).collect(),
    }))
}

/// A JSON body of at most [`MAX_ADMIN_REQUEST_BYTES`], failures as problems.
struct AdminJson<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AdminJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(';').next().unwrap_or("").trim() == "application/json");
        if !json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "/problems/unsupported-media-type",
                "Unsupported media type",
                "send Content-Type: application/json",
            )
            .into());
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::too_large(format!(
                    "the request body is over the {MAX_ADMIN_REQUEST_BYTES} byte limit"
                ))
            } else {
                Problem::malformed_json(rejection.body_text())
            }
        })?;
        crate::http::json::decode(&bytes).map(AdminJson)
    }
}

/// The admin socket, bound in a data directory; the file goes when this is dropped.
pub struct AdminSocket {
    listener: UnixListener,
    file: SocketFile,
    /// The only user whose connections are served: the server's own.
    owner: u32,
}

/// Removes the socket's file when dropped.
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.0.display(), error = %e, "could not remove the admin socket");
        }
    }
}

impl AdminSocket {
    /// Binds [`ADMIN_SOCKET`] in `data_dir`, readable and writable by its owner alone.
    /// A socket left there by a server that was killed is replaced: the caller holds the
    /// data directory's lock, so no other server uses it. Anything else in its place is
    /// refused.
    pub fn bind(data_dir: &Path) -> io::Result<Self> {
        let path = data_dir.join(ADMIN_SOCKET);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(&path)?,
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        // Bound in a directory only its owner can enter, made private there, then moved
        // into place: at no moment can another user connect to it.
        let private = data_dir.join(format!(".{ADMIN_SOCKET}.{}", std::process::id()));
        // One left by a server of the same process id that was killed while binding.
        let _ = std::fs::remove_dir_all(&private);
        std::fs::DirBuilder::new().mode(0o700).create(&private)?;
        let bound = (|| {
            let staged = private.join(ADMIN_SOCKET);
            let listener = UnixListener::bind(&staged)?;
            std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
            std::fs::rename(&staged, &path)?;
            io::Result::Ok(listener)
        })();
        let _ = std::fs::remove_dir_all(&private);
        let listener = bound?;
        let file = SocketFile(path);
        let owner = std::fs::metadata(&file.0)?.uid();
        Ok(Self {
            listener,
            file,
            owner,
        })
    }

    /// Where the socket is.
    pub fn path(&self) -> &Path {
        &self.file.0
    }

    /// Serves `app` until `shutdown` resolves, then lets requests in flight finish
    /// (for a while) and removes the socket.
    pub async fn serve(self, app: Router, shutdown: impl Future<Output = ()> + Send + 'static) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let (stopping, stop) = watch::channel(false);
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT);
        tokio::pin!(shutdown);
        loop {
            let slot = tokio::select! {
                slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
                () = &mut shutdown => break,
            };
            let socket = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((socket, _)) => socket,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not accept an admin connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            match socket.peer_cred() {
                Ok(peer) if peer.uid() == self.owner => {}
                Ok(peer) => {
                    tracing::warn!(
                        uid = peer.uid(),
                        "refused an admin connection from another user"
                    );
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "refused an admin connection whose user is unknown");
                    continue;
                }
            }
            let service = TowerToHyperService::new(
                app.clone()
                    .map_request(|request: axum::http::Request<Incoming>| request.map(Body::new)),
            );
            let connection = http.serve_connection(TokioIo::new(socket), service);
            let mut stop = stop.clone();
            tokio::spawn(async move {
                tokio::pin!(connection);
                let ended = tokio::select! {
                    ended = connection.as_mut() => ended,
                    _ = async { stop.wait_for(|stopping| *stopping).await.map(|_| ()) } => {
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    }
                };
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "admin connection ended with an error");
                }
                drop(slot);
            });
        }
        let _ = stopping.send(true);
        let all = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
        if tokio::time::timeout(SHUTDOWN_GRACE, slots.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!("admin requests did not finish in time");
        }
        drop(self);
    }
}

#[cfg(test)]
mod tests {
    use shared::clock::SystemClock;
    use shared::domain::{Body as DocBody, Title, UserId};
    use shared::embedded::DATABASE_FILE;
    use shared::ports::{DeadLetter, DeadLetterSource};
    use shared::service::{DocumentService, NewDocument};
    use stream_handler::FanoutConfig;
    use stream_handler::sinks::notifications::NoSubscribers;

    use super::*;
    use crate::admin::client::AdminClient;

    fn open(dir: &Path) -> AdminState {
        let store = Arc::new(SqliteDocumentStore::open(&dir.join(DATABASE_FILE)).unwrap());
        let fanout = EmbeddedFanout::open(
            dir,
            store.clone(),
            Arc::new(NoSubscribers),
            Arc::new(SystemClock),
            FanoutConfig::default(),
        )
        .unwrap();
        AdminState::new(store, fanout)
    }

    async fn call(app: &Router, request: axum::http::Request<Body>) -> (StatusCode, Vec<u8>) {
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, body.to_vec())
    }

    fn post(path: &str) -> axum::http::Request<Body> {
        axum::http::Request::post(path).body(Body::empty()).unwrap()
    }

    #[test]
    fn the_socket_is_private_replaces_a_stale_one_and_goes_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ADMIN_SOCKET);
        let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(stale);
        assert!(path.exists(), "a dropped std listener leaves its file");
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _guard = rt.enter();
        let socket = AdminSocket::bind(dir.path()).unwrap();
        let meta = std::fs::symlink_metadata(socket.path()).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            [ADMIN_SOCKET],
            "the private directory it was bound in is gone"
        );
        drop(socket);
        assert!(!path.exists());

        std::fs::write(&path, b"not a socket").unwrap();
        let refused = AdminSocket::bind(dir.path()).err().unwrap();
        assert!(refused.to_string().contains("is not a socket"), "{refused}");
        assert_eq!(std::fs::read(&path).unwrap(), b"not a socket");
    }

    #[tokio::test]
    async fn a_second_reindex_waits_its_turn() {
        let dir = tempfile::tempdir().unwrap();
        let state = open(dir.path());
        let app = router(state.clone());
        let running = state.reindexing.lock().await;
        let (status, body) = call(&app, post("/reindex")).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(String::from_utf8_lossy(&body).contains("/problems/reindex-running"));
        drop(running);
        let (status, body) = call(&app, post("/reindex")).await;
        assert_eq!(status, StatusCode::OK);
        let last = String::from_utf8(body).unwrap();
        assert_eq!(last.lines().last(), Some(r#"{"indexed":0}"#));
    }

    #[tokio::test]
    async fn the_client_reindexes_lists_and_redrives_over_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let state = open(dir.path());
        let docs = DocumentService::new(state.documents.clone(), Arc::new(SystemClock));
        let ann = UserId::parse("ann").unwrap();
        for i in 0..3 {
            docs.create(
                &ann,
                NewDocument {
                    title: Title::parse(format!("Note {i}")).unwrap(),
                    body: DocBody::parse("walrus").unwrap(),
                    collaborators: Default::default(),
                },
            )
            .await
            .unwrap();
        }
        let poison = state
            .fanout
            .dead_letters
            .put(&DeadLetter {
                id: String::new(),
                source: DeadLetterSource::Stream,
                payload: serde_json::json!({"poison": true}),
                reason: "undecodable".into(),
                attempts: 1,
                failed_at: chrono::Utc::now(),
            })
            .await
            .unwrap();
        let socket = AdminSocket::bind(dir.path()).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(socket.serve(router(state.clone()), async {
            let _ = stopped.await;
        }));
        let client = AdminClient::connect(dir.path()).await.unwrap();

        let seen = std::sync::Mutex::new(Vec::new());
        let indexed = client
            .reindex(|done, total| seen.lock().unwrap().push((done, total)))
            .await
            .unwrap();
        assert_eq!(indexed, 3);
        assert!(seen.lock().unwrap().iter().all(|(_, total)| *total == 3));
        assert_eq!(state.search.live_documents().await.unwrap(), 3);

        let listed = client.dead_letters(10).await.unwrap();
        assert_eq!(listed.total, 1);
        assert_eq!(listed.letters[0].id, poison);
        let outcomes = client.redrive(None).await.unwrap();
        assert_eq!(outcomes.len(), 1);
        assert!(outcomes[0].result.is_err());
        let missing = client.redrive(Some("999")).await.unwrap_err();
        assert_eq!(missing.to_string(), "no dead letter with id 999");

        stop.send(()).unwrap();
        served.await.unwrap();
        assert!(!dir.path().join(ADMIN_SOCKET).exists());
        assert!(AdminClient::connect(dir.path()).await.is_err());
    }
}
