//! Copies of the database for backups: taking one while the server writes, and checking
//! one before it is restored.
//!
//! [`copy_database`] runs SQLite's online backup API in a single step, so the whole copy
//! is read inside one read transaction of the source: it is the database exactly as it
//! was when the step began, with every transaction committed before it and none after,
//! while the server goes on writing (in WAL mode a reader and the writer do not wait for
//! each other). A copy made in several steps would start over whenever another
//! connection wrote between two of them, and might never finish under a steady load.
//! While the copy reads, a checkpoint cannot move the write-ahead log past it, so the
//! log grows by what is written meanwhile and is folded back into the file afterwards.
//!
//! One file holds the documents and their versions, the change log with the poller's
//! checkpoints, the audit trail, the analysis queue with its deduplication keys, the
//! analyses and the dead letters, so one snapshot keeps them consistent with each other:
//! a change is in the copy together with the checkpoint that says whether it was fanned
//! out, and the sinks' own records of it (audit entry, analysis key) are there exactly
//! when they had been written.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::schema::{self, LATEST, NewerSchema};

/// How often a backup step that found the source busy is tried again, and how long it
/// waits in between.
const BUSY_RETRIES: u32 = 250;
const BUSY_PAUSE: Duration = Duration::from_millis(20);

/// What a database holds, in brief.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatabaseSummary {
    /// Its schema version (`user_version`).
    pub schema_version: u32,
    pub documents: u64,
    /// The highest change-log sequence number ever written.
    pub change_log_seq: u64,
}

fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

/// Copies the database at `source` (which a server may be writing) into a new file at
/// `dest`: a consistent snapshot, checked with `PRAGMA integrity_check`, in one file (no
/// write-ahead log beside it) and synced to disk. The source is opened read-only and is
/// neither migrated nor changed.
pub fn copy_database(source: &Path, dest: &Path) -> anyhow::Result<DatabaseSummary> {
    let from = open_read_only(source).with_context(|| format!("opening {}", source.display()))?;
    let mut to = Connection::open(dest).with_context(|| format!("creating {}", dest.display()))?;
    {
        let backup = Backup::new(&from, &mut to).context("starting the online backup")?;
        let mut busy = 0;
        loop {
            match backup.step(-1).context("copying the database")? {
                StepResult::Done => break,
                // Only a step of fewer than all pages leaves more; a busy or locked
                // source (a checkpoint restarting the log) is waited for.
                StepResult::More => {}
                _ if busy < BUSY_RETRIES => {
                    busy += 1;
                    std::thread::sleep(BUSY_PAUSE);
                }
                _ => bail!("the database stayed busy; try again"),
            }
        }
    }
    drop(from);
    // The copied header says WAL, like the source's; the copy is one self-contained file.
    to.pragma_update(None, "journal_mode", "DELETE")
        .context("leaving WAL mode in the copy")?;
    let summary = check(&to).with_context(|| format!("checking the copy {}", dest.display()))?;
    drop(to);
    std::fs::File::open(dest)
        .and_then(|file| file.sync_all())
        .with_context(|| format!("syncing {}", dest.display()))?;
    Ok(summary)
}

/// Checks the database at `path` as a backup to restore: that it is a SQLite database
/// that passes `PRAGMA integrity_check`, and docfan's, at a schema version this docfan
/// knows (a newer one is refused with [`NewerSchema`]). Opens it read-only.
pub fn inspect_database(path: &Path) -> anyhow::Result<DatabaseSummary> {
    let conn = open_read_only(path).with_context(|| format!("opening {}", path.display()))?;
    check(&conn).with_context(|| format!("checking {}", path.display()))
}

fn check(conn: &Connection) -> anyhow::Result<DatabaseSummary> {
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .map_err(|e| match e.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => anyhow::anyhow!("it is not a SQLite database"),
            _ => anyhow::Error::new(e),
        })?;
    if integrity != "ok" {
        bail!("the database is damaged: {integrity}");
    }
    let schema_version = schema::version(conn)?;
    if schema_version > LATEST {
        return Err(NewerSchema {
            path: conn.path().unwrap_or("the database").to_owned(),
            found: schema_version,
            known: LATEST,
        }
        .into());
    }
    let documents: i64 = conn
        .query_row("SELECT COUNT(*) FROM documents", [], |row| row.get(0))
        .map_err(|_| anyhow::anyhow!("it is not a docfan database (no documents table)"))?;
    let change_log_seq: Option<i64> = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'change_log'",
            [],
            |row| row.get(0),
        )
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            other => Err(other),
        })
        .map_err(|_| anyhow::anyhow!("it is not a docfan database (no change log)"))?;
    Ok(DatabaseSummary {
        schema_version,
        documents: documents as u64,
        change_log_seq: change_log_seq.unwrap_or(0) as u64,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use super::*;
    use crate::embedded::sqlite::open_database;

    #[test]
    fn a_copy_taken_while_a_writer_commits_holds_every_commit_made_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("docfan.db");
        let conn = open_database(&source).unwrap();
        drop(conn);
        let committed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = std::thread::spawn({
            let (source, committed, stop) = (source.clone(), committed.clone(), stop.clone());
            move || {
                let conn = open_database(&source).unwrap();
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    conn.execute(
                        "INSERT INTO documents (id, version, doc) VALUES (?1, 1, '{}')",
                        [format!("doc-{n:06}")],
                    )
                    .unwrap();
                    committed.store(n, Ordering::SeqCst);
                }
            }
        });
        while committed.load(Ordering::SeqCst) < 200 {
            std::thread::yield_now();
        }
        let before = committed.load(Ordering::SeqCst);
        let copy = dir.path().join("copy.db");
        let summary = copy_database(&source, &copy).unwrap();
        stop.store(true, Ordering::SeqCst);
        writer.join().unwrap();

        assert!(summary.documents >= before, "{summary:?} < {before}");
        assert_eq!(summary.schema_version, LATEST);
        // Rows are consecutive from the first: a snapshot, not a torn read.
        let conn = Connection::open(&copy).unwrap();
        let (count, last): (i64, String) = conn
            .query_row("SELECT COUNT(*), MAX(id) FROM documents", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(last, format!("doc-{count:06}"));
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "delete", "one self-contained file");
        assert!(!dir.path().join("copy.db-wal").exists());
    }

    #[test]
    fn what_is_not_a_docfan_database_of_a_known_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "not a database at all, just some words ".repeat(200)).unwrap();
        let said = format!("{:#}", inspect_database(&text).unwrap_err());
        assert!(said.contains("not a SQLite database"), "{said}");

        let other = dir.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let said = format!("{:#}", inspect_database(&other).unwrap_err());
        assert!(said.contains("not a docfan database"), "{said}");

        let newer = dir.path().join("newer.db");
        open_database(&newer)
            .unwrap()
            .pragma_update(None, "user_version", LATEST + 1)
            .unwrap();
        let err = inspect_database(&newer).unwrap_err();
        let refused = err
            .chain()
            .find_map(|e| e.downcast_ref::<NewerSchema>())
            .expect("a NewerSchema");
        assert_eq!((refused.found, refused.known), (LATEST + 1, LATEST));
    }
}
