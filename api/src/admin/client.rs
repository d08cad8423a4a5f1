//! The command line's side of live administration: where a command runs ([`reach`]),
//! and the calls to a running server's admin socket ([`AdminClient`]).

use std::path::{Path, PathBuf};

use anyhow::Context;
use axum::body::Body;
use axum::http::{Method, Request, header};
use futures_util::StreamExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use shared::embedded::DataDirLock;
use shared::embedded::lock::LockError;
use stream_handler::redrive::RedriveOutcome;
use tokio::net::UnixStream;

use super::{
    ADMIN_SOCKET, DeadLetterList, RedriveReport, RedriveRequest, RedrivenLetter, ReindexLine,
};

/// The most bytes of a JSON answer read (a listing of the most letters, payloads
/// included, fits).
const MAX_ANSWER_BYTES: usize = 512 * 1024 * 1024;
/// The longest reindex answer line accepted.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// Where an operator command runs.
pub enum Reach {
    /// Here, on the data directory's files: no server runs, and the lock keeps one from
    /// starting meanwhile.
    Here(DataDirLock),
    /// In the server that holds the data directory, through its admin socket.
    Server(AdminClient),
}

/// Takes the data directory's lock, or else reaches the server that holds it. Fails,
/// saying both, when a process holds the lock and its admin socket does not answer.
pub async fn reach(data_dir: &Path) -> anyhow::Result<Reach> {
    match DataDirLock::acquire(data_dir) {
        Ok(lock) => Ok(Reach::Here(lock)),
        Err(held @ LockError::Held { .. }) => match AdminClient::connect(data_dir).await {
            Ok(client) => Ok(Reach::Server(client)),
            Err(e) => anyhow::bail!(
                "{held}. Its admin socket {} does not answer either ({e}): a running `docfan \
                 serve` answers there when run by the data directory's owner",
                data_dir.join(ADMIN_SOCKET).display()
            ),
        },
        Err(e) => Err(e.into()),
    }
}

/// Calls to the admin socket of the server on one data directory.
#[derive(Debug, Clone)]
pub struct AdminClient {
    socket: PathBuf,
}

impl AdminClient {
    /// A client of the server on `data_dir`, once its socket has taken a connection.
    pub async fn connect(data_dir: &Path) -> std::io::Result<Self> {
        let socket = data_dir.join(ADMIN_SOCKET);
        drop(UnixStream::connect(&socket).await?);
        Ok(Self { socket })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        json: Option<Vec<u8>>,
    ) -> anyhow::Result<axum::http::Response<Incoming>> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .with_context(|| format!("connecting to {}", self.socket.display()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("talking to the server's admin socket")?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
        });
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "docfan");
        let request = match json {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body)),
            None => request.body(Body::empty()),
        }?;
        let response = sender
            .send_request(request)
            .await
            .context("the server's admin socket did not answer")?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = axum::body::to_bytes(Body::new(response.into_body()), MAX_LINE_BYTES)
            .await
            .unwrap_or_default();
        let problem: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        match problem["detail"].as_str() {
            Some(detail) => anyhow::bail!("{detail}"),
            None => anyhow::bail!("the server answered {status}"),
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(
        response: axum::http::Response<Incoming>,
    ) -> anyhow::Result<T> {
        let body = axum::body::to_bytes(Body::new(response.into_body()), MAX_ANSWER_BYTES)
            .await
            .context("reading the server's answer")?;
        serde_json::from_slice(&body).context("the server's answer does not decode")
    }

    /// Rebuilds the server's search index, calling `progress(done, total)` as the
    /// server reports it; returns how many documents were indexed.
    pub async fn reindex(&self, mut progress: impl FnMut(u64, u64)) -> anyhow::Result<u64> {
        let response = self.send(Method::POST, "/reindex", None).await?;
        let mut body = Body::new(response.into_body()).into_data_stream();
        let mut pending: Vec<u8> = Vec::new();
        while let Some(chunk) = body.next().await {
            pending.extend_from_slice(&chunk.context("the reindex answer broke off")?);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                match serde_json::from_slice(&line)
                    .context("a reindex answer line does not decode")?
                {
                    ReindexLine::Progress { done, total } => progress(done, total),
                    ReindexLine::Indexed { indexed } => return Ok(indexed),
                    ReindexLine::Failed { error } => anyhow::bail!("the reindex failed: {error}"),
                }
            }
            anyhow::ensure!(
                pending.len() <= MAX_LINE_BYTES,
                "a reindex answer line is too long"
            );
        }
        anyhow::bail!("the server ended the reindex answer without a result")
    }

    /// The oldest `limit` dead letters, and how many there are.
    pub async fn dead_letters(&self, limit: usize) -> anyhow::Result<DeadLetterList> {
        let response = self
            .send(Method::GET, &format!("/dead-letters?limit={limit}"), None)
            .await?;
        Self::json(response).await
    }

    /// Redrives every dead letter, or the one with id `only`.
    pub async fn redrive(&self, only: Option<&str>) -> anyhow::Result<Vec<RedriveOutcome>> {
        let request = RedriveRequest {
            id: only.map(str::to_owned),
        };
        let response = self
            .send(
                Method::POST,
                "/dead-letters/redrive",
                Some(serde_json::to_vec(&request)?),
            )
            .await?;
        let report: RedriveReport = Self::json(response).await?;
        Ok(report
            .outcomes
            .into_iter()
            .map(|letter: RedrivenLetter| letter.into())
            .collect())
    }
}
