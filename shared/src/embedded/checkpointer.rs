//! Copies the write-ahead log into the database from a thread of its own, so users'
//! commits do not.
//!
//! SQLite's automatic checkpoint runs inside the commit that finds the log past its
//! threshold (1,000 pages): that commit copies the pages into the database file and
//! syncs it before it returns, several milliseconds in one user's write. This thread
//! runs a passive checkpoint every [`CHECKPOINT_EVERY`], which copies what no reader
//! still needs and blocks neither writers nor readers. The users' connections
//! ([`Durability::Full`](super::sqlite::Durability::Full)) checkpoint only past
//! [`USERS_CHECKPOINT_PAST`](super::sqlite::USERS_CHECKPOINT_PAST) pages, when the log
//! kept growing under this thread (the log starts over only when a checkpoint finishes
//! before the next commit). The fan-out's connections keep SQLite's threshold: they
//! write in the background, where the copying holds up nobody.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use rusqlite::Connection;

use super::sqlite::{Durability, open_connection_with};
use super::sqlite_error::map_sqlite_error;
use crate::{Error, Result};

/// How often the log is copied into the database: at most four checkpoints (each two
/// syncs) a second while users type, where SQLite's threshold would take one every few
/// seconds.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

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
                let mut failures = Failures::new(every);
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    let result = checkpoint(&conn);
                    match failures.record(result.as_ref().err().map(ToString::to_string)) {
                        Some(Report::Failing { error, times }) => tracing::warn!(
                            %error,
                            times,
                            "copying the write-ahead log into the database failed"
                        ),
                        Some(Report::Recovered { times }) => tracing::info!(
                            times,
                            "copying the write-ahead log into the database works again"
                        ),
                        None => {}
                    }
                }
            })
            .map_err(|e| Error::Unknown(e.into()))?;
        Ok(Self { _stop: stop })
    }
}

/// How often a checkpoint that keeps failing is reported again.
const REPORT_AGAIN_EVERY: Duration = Duration::from_secs(60);

/// What the thread logs of its checkpoints' failures.
#[derive(Debug, PartialEq, Eq)]
enum Report {
    /// A checkpoint failed: the first of a run of failures, or one a minute after it.
    Failing { error: String, times: u64 },
    /// A checkpoint worked after `times` failed in a row.
    Recovered { times: u64 },
}

/// A run of failed checkpoints, reported when it starts, once a minute while it lasts
/// and when it ends, instead of at every checkpoint: a disk that refuses writes for an
/// hour gives some sixty warnings, not fourteen thousand.
#[derive(Debug)]
struct Failures {
    /// Failures in a row before the next report.
    report_every: u64,
    times: u64,
}

impl Failures {
    /// For a checkpoint every `every`.
    fn new(every: Duration) -> Self {
        let every = every.as_millis().max(1);
        Self {
            report_every: (REPORT_AGAIN_EVERY.as_millis() / every).max(1) as u64,
            times: 0,
        }
    }

    /// Records one checkpoint's outcome (its error, if it failed); returns what to log.
    fn record(&mut self, error: Option<String>) -> Option<Report> {
        match error {
            Some(error) => {
                self.times += 1;
                (self.times - 1)
                    .is_multiple_of(self.report_every)
                    .then_some(Report::Failing {
                        error,
                        times: self.times,
                    })
            }
            None => {
                let times = std::mem::take(&mut self.times);
                (times > 0).then_some(Report::Recovered { times })
            }
        }
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
    use crate::embedded::sqlite::{USERS_CHECKPOINT_PAST, open_connection, open_database};

    /// How many frames the log holds, and how many of them are in the database.
    fn log(path: &Path) -> (i64, i64) {
        checkpoint(&open_connection(path).unwrap()).unwrap()
    }

    fn autocheckpoint(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_run_of_failures_is_reported_when_it_starts_once_a_minute_and_when_it_ends() {
        // A checkpoint every 250 ms: 240 failures make a minute.
        let mut failures = Failures::new(Duration::from_millis(250));
        let failed = || Some("disk I/O error".to_string());
        assert_eq!(
            failures.record(None),
            None,
            "nothing to say while all is well"
        );
        assert_eq!(
            failures.record(failed()),
            Some(Report::Failing {
                error: "disk I/O error".into(),
                times: 1
            })
        );
        let quiet = (2..=240).filter_map(|_| failures.record(failed())).count();
        assert_eq!(quiet, 0, "no report within the minute");
        assert_eq!(
            failures.record(failed()),
            Some(Report::Failing {
                error: "disk I/O error".into(),
                times: 241
            })
        );
        assert_eq!(
            failures.record(None),
            Some(Report::Recovered { times: 241 })
        );
        assert_eq!(failures.record(None), None);
        assert!(
            matches!(
                failures.record(failed()),
                Some(Report::Failing { times: 1, .. })
            ),
            "a new run starts its own count"
        );
    }

    #[test]
    fn checkpoints_further_apart_than_a_minute_report_every_failure() {
        let mut failures = Failures::new(Duration::from_secs(120));
        assert!(failures.record(Some("e".into())).is_some());
        assert!(
            failures.record(Some("e".into())).is_some(),
            "each failure, at that pace"
        );
    }

    #[test]
    fn a_users_commit_copies_the_log_only_once_it_is_far_past_sqlites_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docfan.db");
        let users = open_database(&path).unwrap();
        assert_eq!(autocheckpoint(&users), USERS_CHECKPOINT_PAST);
        let fanout = open_connection_with(&path, Durability::Ordered).unwrap();
        assert_eq!(autocheckpoint(&fanout), 1000, "SQLite's own threshold");
    }

    #[test]
    fn the_thread_copies_what_users_committed_into_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docfan.db");
        let conn = open_connection(&path).unwrap();
        conn.execute_batch("CREATE TABLE rows (n INTEGER PRIMARY KEY, pad TEXT)")
            .unwrap();
        // Past SQLite's own threshold of 1,000 pages, within the users' 4,000: no
        // commit copied any.
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
