//! Group commit: one writer thread with its own connection that commits, as one
//! transaction, every write queued while the previous commit was in flight, each write in
//! its own savepoint (so one failing write does not undo its neighbours). A caller is
//! answered only once the transaction holding its write is durable, so under concurrency
//! one fsync carries many writes. The document store, the audit trail and the analysis
//! queue write through it. While users write, the fan-out's writers space their commits
//! ([`foreground`](super::foreground)).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::foreground::Foreground;
use super::sqlite::{Durability, open_database_with};
use super::sqlite_error::map_sqlite_error;
use crate::{Error, Result};

/// The most writes one group commits.
const MAX_GROUP: usize = 256;

/// A write queued for the group writer.
trait GroupOp: Send {
    /// Runs the write inside the group's transaction (in its own savepoint); returns
    /// what to do once the group is committed or rolled back, and the error that ended
    /// the whole transaction if SQLite rolled it back (a full disk, an I/O error).
    fn run(self: Box<Self>, conn: &Connection) -> (Completion, Option<Error>);
    /// The group could not start: answer without running.
    fn abort(self: Box<Self>, err: &Error);
}

/// Answers a write's caller with the group's fate (`None`: committed).
type Completion = Box<dyn FnOnce(Option<&Error>) + Send>;

struct Op<F, R> {
    write: F,
    reply: oneshot::Sender<Result<R>>,
}

impl<F, R> GroupOp for Op<F, R>
where
    F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    R: Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> (Completion, Option<Error>) {
        let Op { write, reply } = *self;
        let result = conn
            .execute_batch("SAVEPOINT op")
            .map_err(map_sqlite_error)
            .and_then(|()| match write(conn) {
                Ok(value) => conn
                    .execute_batch("RELEASE op")
                    .map(|()| value)
                    .map_err(map_sqlite_error),
                Err(e) => {
                    // The write's own error is the answer. Its savepoint is undone; if
                    // that fails, the whole group is (nothing half-done is committed).
                    if !conn.is_autocommit()
                        && conn.execute_batch("ROLLBACK TO op; RELEASE op").is_err()
                    {
                        let _ = conn.execute_batch("ROLLBACK");
                    }
                    Err(e)
                }
            });
        // Some failures make SQLite roll back the whole transaction, not just the
        // savepoint: then nothing of the group before this write is in it either.
        let rolled_back = match &result {
            Err(e) if conn.is_autocommit() => Some(retriable(e)),
            _ => None,
        };
        let complete = Box::new(move |group_failure: Option<&Error>| {
            let answer = match (result, group_failure) {
                (Ok(value), None) => Ok(value),
                (Ok(_), Some(e)) => Err(retriable(e)),
                (Err(e), _) => Err(e),
            };
            let _ = reply.send(answer);
        });
        (complete, rolled_back)
    }

    fn abort(self: Box<Self>, err: &Error) {
        let _ = self.reply.send(Err(retriable(err)));
    }
}

/// What the other writes of a failed group are told: the storage faults as they are
/// (the HTTP layer explains them), anything else as a transient failure.
fn retriable(err: &Error) -> Error {
    match err {
        Error::StorageFull(detail) => Error::StorageFull(detail.clone()),
        Error::StorageReadOnly(detail) => Error::StorageReadOnly(detail.clone()),
        other => Error::Unavailable(format!("group commit failed: {other}")),
    }
}

/// The group-commit writer of one database file.
#[derive(Clone)]
pub(crate) struct GroupCommit {
    queue: mpsc::Sender<Box<dyn GroupOp>>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupCommit")
    }
}

impl GroupCommit {
    /// Starts the writer on the database at `path` (opened through
    /// [`open_database`](super::sqlite::open_database)).
    pub(crate) fn open(path: &Path, name: &str) -> Result<Self> {
        Self::open_with(path, name, Durability::Full)
    }

    /// [`GroupCommit::open`] with commits as durable as `durability` says.
    pub(crate) fn open_with(path: &Path, name: &str, durability: Durability) -> Result<Self> {
        let conn = open_database_with(path, durability)?;
        let foreground = Foreground::of(path);
        let (queue, rx) = mpsc::channel(MAX_GROUP * 4);
        std::thread::Builder::new()
            .name(format!("docfan-{name}-writer"))
            .spawn(move || run_group_writer(conn, rx, durability, foreground))
            .map_err(|e| Error::Unknown(e.into()))?;
        Ok(Self { queue })
    }

    /// Runs `write` in the next group; returns its result once the group is durable.
    pub(crate) async fn write<R, F>(&self, write: F) -> Result<R>
    where
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Box::new(Op { write, reply }))
            .await
            .map_err(|_| Error::Unavailable("the writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| Error::Unavailable("the writer has stopped".into()))?
    }
}

fn run_group_writer(
    conn: Connection,
    mut rx: mpsc::Receiver<Box<dyn GroupOp>>,
    durability: Durability,
    foreground: Arc<Foreground>,
) {
    let mut last_commit = None;
    while let Some(first) = rx.blocking_recv() {
        if durability == Durability::Ordered
            && let Some(pause) = foreground.wait_before_commit(last_commit)
        {
            // The group gathers what comes meanwhile.
            std::thread::sleep(pause);
        }
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(op) => group.push(op),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let err = map_sqlite_error(e);
            for op in group {
                op.abort(&err);
            }
            continue;
        }
        let mut completions: Vec<Completion> = Vec::with_capacity(group.len());
        let mut rolled_back = None;
        let mut ops = group.into_iter();
        for op in ops.by_ref() {
            let (complete, ended) = op.run(&conn);
            completions.push(complete);
            if ended.is_some() {
                rolled_back = ended;
                break;
            }
        }
        let failure = match rolled_back {
            Some(err) => {
                // The transaction is gone: the rest of the group is not run, and no
                // write of the group is acknowledged.
                for op in ops {
                    op.abort(&err);
                }
                Some(err)
            }
            None => conn.execute_batch("COMMIT").err().map(|e| {
                let _ = conn.execute_batch("ROLLBACK");
                map_sqlite_error(e)
            }),
        };
        last_commit = Some(Instant::now());
        if durability == Durability::Full {
            foreground.users_committed();
        }
        for complete in completions {
            complete(failure.as_ref());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::embedded::sqlite::open_connection;

    /// A database with a table of the test's own beside docfan's.
    fn database(path: &Path) {
        open_connection(path)
            .unwrap()
            .execute_batch("CREATE TABLE rows (n INTEGER PRIMARY KEY);")
            .unwrap();
    }

    fn insert(n: i64) -> impl FnOnce(&Connection) -> Result<()> + Send + 'static {
        move |conn| {
            conn.execute("INSERT INTO rows (n) VALUES (?1)", [n])
                .map(drop)
                .map_err(map_sqlite_error)
        }
    }

    fn stored(path: &Path) -> Vec<i64> {
        let conn = Connection::open(path).unwrap();
        let mut stmt = conn.prepare("SELECT n FROM rows ORDER BY n").unwrap();
        stmt.query_map([], |row| row.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }

    #[tokio::test]
    async fn a_group_that_sqlite_rolled_back_acknowledges_none_of_its_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("group.db");
        database(&path);
        let writer = GroupCommit::open(&path, "test").unwrap();

        // The first write holds the writer, so the next three queue up as one group.
        let holding = tokio::spawn({
            let writer = writer.clone();
            async move {
                writer
                    .write(|conn| {
                        std::thread::sleep(Duration::from_millis(200));
                        insert(1)(conn)
                    })
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let before = tokio::spawn({
            let writer = writer.clone();
            async move { writer.write(insert(2)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        // What SQLite does on some failures (a full disk, an I/O error): the whole
        // transaction is gone, not just this write's savepoint.
        let failing = tokio::spawn({
            let writer = writer.clone();
            async move {
                writer
                    .write(|conn| -> Result<()> {
                        conn.execute_batch("ROLLBACK").map_err(map_sqlite_error)?;
                        Err(Error::StorageFull("database or disk is full".into()))
                    })
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let after = tokio::spawn({
            let writer = writer.clone();
            async move { writer.write(insert(3)).await }
        });

        assert!(holding.await.unwrap().is_ok());
        assert!(matches!(before.await.unwrap(), Err(Error::StorageFull(_))));
        assert!(matches!(failing.await.unwrap(), Err(Error::StorageFull(_))));
        assert!(matches!(after.await.unwrap(), Err(Error::StorageFull(_))));
        assert_eq!(
            stored(&path),
            vec![1],
            "nothing of the rolled-back group is stored"
        );

        // The writer goes on.
        writer.write(insert(4)).await.unwrap();
        assert_eq!(stored(&path), vec![1, 4]);
    }

    #[tokio::test]
    async fn while_users_write_a_fan_out_writer_spaces_its_commits() {
        use crate::embedded::foreground::SPACING;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("group.db");
        database(&path);
        let users = GroupCommit::open(&path, "users").unwrap();
        let fanout = GroupCommit::open_with(&path, "fanout", Durability::Ordered).unwrap();

        fanout.write(insert(1)).await.unwrap();
        users.write(insert(2)).await.unwrap();
        let first_after = Instant::now();
        fanout.write(insert(3)).await.unwrap();
        fanout.write(insert(4)).await.unwrap();
        assert!(
            first_after.elapsed() >= SPACING,
            "two commits of the fan-out's while a user writes are {SPACING:?} apart: {:?}",
            first_after.elapsed()
        );
        assert_eq!(stored(&path), vec![1, 2, 3, 4]);
    }
}
