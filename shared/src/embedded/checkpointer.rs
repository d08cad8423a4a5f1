//! Copies the write-ahead log into the database from a thread of its own, so no
//! user's commit ever does it.
//!
//! SQLite's automatic checkpoint runs inside the commit that finds the log past its
//! threshold: that commit copies a thousand pages into the database file and syncs it
//! before it returns, a stall of several milliseconds in one user's write. The user's
//! connections ([`Durability::Full`](super::sqlite::Durability::Full)) never
//! checkpoint; this thread runs a passive checkpoint every [`CHECKPOINT_EVERY`], which
//! copies what no reader still needs and never blocks a writer or a reader. The
//! fan-out's connections keep SQLite's automatic checkpoint: they write in the
//! background, where the stall holds up nobody.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use rusqlite::Connection;

use super::sqlite::{Durability, open_connection_with};
use super::sqlite_error::map_sqlite_error;
use crate::{Error, Result};

/// How often the log is copied into the database.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// The thread that checkpoints one database; it stops when this is dropped.
#[derive(Debug)]
pub struct Checkpointer {
    _stop: mpsc::Sender<()>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path` every `every`.
    pub fn start(path: &Path, every: Duration) -> Result<Self> {
        let conn = open_connection_with(path, Durability::Ordered).map_err(map_sqlite_error)?;
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("docfan-checkpointer".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    if let Err(e) = checkpoint(&conn) {
                        tracing::warn!(error = %e, "copying the write-ahead log into the database failed");
                    }
                }
            })
            .map_err(|e| Error::Unknown(e.into()))?;
        Ok(Self { _stop: stop })
    }
}

/// One passive checkpoint: how many frames the log holds and how many of them are in
/// the database now.
fn checkpoint(conn: &Connection) -> Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((row.get(1)?, row.get(2)?))
    })
    .map_err(map_sqlite_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::sqlite::{open_connection, open_database};

    /// The log's frame count and how many of them are checkpointed.
    fn log(path: &Path) -> (i64, i64) {
        checkpoint_counts(&open_connection(path).unwrap())
    }

    /// Reads the counts without copying anything (a passive checkpoint of nothing new).
    fn checkpoint_counts(conn: &Connection) -> (i64, i64) {
        checkpoint(conn).unwrap()
    }

    #[test]
    fn a_users_commit_never_copies_the_log_into_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docfan.db");
        let conn = open_database(&path).unwrap();
        let auto: i64 = conn
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            auto, 0,
            "a user's connection leaves checkpoints to the thread"
        );
        let ordered = open_connection_with(&path, Durability::Ordered).unwrap();
        let auto: i64 = ordered
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap();
        assert_eq!(auto, 1000, "the fan-out's connections keep SQLite's own");
    }

    #[test]
    fn the_thread_copies_what_users_committed_into_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docfan.db");
        let conn = open_connection(&path).unwrap();
        conn.execute_batch("CREATE TABLE rows (n INTEGER PRIMARY KEY, pad TEXT)")
            .unwrap();
        // Well past SQLite's own threshold of 1,000 pages: no commit copied any.
        for n in 0..300 {
            conn.execute(
                "INSERT INTO rows (n, pad) VALUES (?1, ?2)",
                rusqlite::params![n, "x".repeat(16_000)],
            )
            .unwrap();
        }
        let db_len = || std::fs::metadata(&path).unwrap().len();
        let before = db_len();
        assert!(before < 64 * 1024, "nothing was copied yet: {before} bytes");

        let checkpointer = Checkpointer::start(&path, Duration::from_millis(10)).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while db_len() < 300 * 16_000 {
            assert!(
                std::time::Instant::now() < deadline,
                "the database file stayed at {} bytes",
                db_len()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let (frames, copied) = log(&path);
        assert_eq!(frames, copied, "every frame of the log is in the database");
        drop(checkpointer);
    }
}
