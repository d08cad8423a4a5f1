//! Live administration: the operator commands (`docfan reindex`, `docfan dlq list`,
//! `docfan dlq redrive`) run inside a running `docfan serve`, through a Unix domain
//! socket in its data directory, [`ADMIN_SOCKET`].
//!
//! A command that finds the data directory locked by a server asks that server over the
//! socket instead of opening the stores itself: the search index has one writer (the
//! fan-out's), and only the server holds it. The socket is the only way in: created
//! with mode 0600 by the server (which also refuses a peer of another user), removed on
//! shutdown, a stale one left by a killed server replaced at start; nothing listens on
//! TCP for it.
//!
//! - [`server`]: the small HTTP API on the socket and its accept loop;
//! - [`client`]: the command line's side, and how it decides where a command runs;
//! - this module: the messages both sides exchange.
//!
//! The API, JSON in and out, errors as RFC 9457 problems:
//!
//! | request | answer |
//! |---|---|
//! | `POST /reindex` | 200 NDJSON: `{"done":N,"total":M}` lines, then `{"indexed":N}` or `{"error":"…"}`; 409 while another runs |
//! | `GET /dead-letters?limit=N` | 200 `{"letters":[…],"total":T}` (N in 1..=10,000, default 100) |
//! | `POST /dead-letters/redrive` `{"id"?}` | 200 `{"outcomes":[{"id","stillFailing"?}]}`; 404 for an unknown id |

pub mod client;
pub mod server;

use serde::{Deserialize, Serialize};
use shared::ports::DeadLetter;
use stream_handler::redrive::RedriveOutcome;

/// The socket's name in the data directory.
pub const ADMIN_SOCKET: &str = "admin.sock";

/// The largest request body the socket accepts, in bytes (a redrive names one id).
pub const MAX_ADMIN_REQUEST_BYTES: usize = 4 * 1024;

/// The most letters one listing returns (as many as one redrive goes through).
pub const MAX_LIST: usize = stream_handler::redrive::MAX_REDRIVE;

/// `GET /dead-letters`: the oldest letters, and how many there are in all.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterList {
    pub letters: Vec<DeadLetter>,
    pub total: u64,
}

/// `POST /dead-letters/redrive`: every letter, or the one with `id`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// What became of the redriven letters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RedriveReport {
    pub outcomes: Vec<RedrivenLetter>,
}

/// One redriven letter: gone from the queue, or still failing and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedrivenLetter {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub still_failing: Option<String>,
}

impl From<RedriveOutcome> for RedrivenLetter {
    fn from(outcome: RedriveOutcome) -> Self {
        Self {
            id: outcome.id,
            still_failing: outcome.result.err(),
        }
    }
}

impl From<RedrivenLetter> for RedriveOutcome {
    fn from(letter: RedrivenLetter) -> Self {
        Self {
            id: letter.id,
            result: letter.still_failing.map_or(Ok(()), Err),
        }
    }
}

/// One line of `POST /reindex`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ReindexLine {
    Progress { done: u64, total: u64 },
    Indexed { indexed: u64 },
    Failed { error: String },
}
