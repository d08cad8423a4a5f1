//! SQLite plumbing shared by the embedded adapters: opening a connection the durable way
//! and running blocking SQLite work off the async runtime. SQLite's failures become
//! domain errors in [`sqlite_error`](super::sqlite_error).
//!
//! Every adapter keeps its tables in the same database file (`docfan.db` in the data
//! directory) but opens its own connections, so one adapter's work does not queue behind
//! another's. WAL mode lets readers run beside the single writer; `synchronous = FULL`
//! makes a commit durable before it is acknowledged, except on the fan-out's own
//! connections ([`Durability::Ordered`]). The tables belong to the database,
//! not to an adapter: every adapter opens the file through [`open_database`], which
//! brings it to the current schema version ([`schema`](super::schema)) first.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;

use super::sqlite_error::map_sqlite_error;
use crate::Error;

/// The database file's name in the data directory.
pub const DATABASE_FILE: &str = "docfan.db";

/// How long a connection waits for a lock before reporting the database busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How many pages of log make a user's commit checkpoint: four times SQLite's default,
/// a backstop for when the [`Checkpointer`](super::checkpointer::Checkpointer) cannot
/// finish one (a writer that never pauses keeps appending to the log it copies).
pub const USERS_CHECKPOINT_PAST: i64 = 4_000;

/// How durable a connection's commits are when they return.
///
/// The database is in WAL mode: every commit is appended to one log, in commit order,
/// and after a power loss SQLite recovers the log up to its first incomplete commit —
/// always a prefix of the commits, never a later one without an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The log is on disk (fsync) before a commit returns: a user's acknowledged write.
    Full,
    /// No fsync of its own (`synchronous = NORMAL`): a killed process loses nothing (the
    /// log is in the operating system's cache), a power loss may lose the latest such
    /// commits — with every commit after them, and never one made before a
    /// [`Durability::Full`] commit that returned. For the fan-out's derived state (audit
    /// trail, analysis queue and results, dead letters, consumer checkpoints): what a
    /// power loss takes of it, it takes with the checkpoints saved after it, so the
    /// changes are delivered again. It holds the write lock for microseconds instead
    /// of an fsync, so users' writes do not queue behind the fan-out's.
    Ordered,
}

/// Opens (creating if needed) the database at `path` with docfan's pragmas.
pub fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    open_connection_with(path, Durability::Full)
}

/// [`open_connection`] with commits as durable as `durability` says.
pub fn open_connection_with(path: &Path, durability: Durability) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let synchronous = match durability {
        Durability::Full => "FULL",
        Durability::Ordered => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", synchronous)?;
    if durability == Durability::Full {
        // A user's commit copies the log into the database only when the
        // [`Checkpointer`](super::checkpointer::Checkpointer) has fallen far behind.
        conn.pragma_update(None, "wal_autocheckpoint", USERS_CHECKPOINT_PAST)?;
    }
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// Opens the database at `path` (creating it if needed) and brings it to the current
/// schema version; refuses a database from a newer docfan
/// ([`NewerSchema`](super::schema::NewerSchema)).
pub fn open_database(path: &Path) -> crate::Result<Connection> {
    open_database_with(path, Durability::Full)
}

/// [`open_database`] with commits as durable as `durability` says.
pub fn open_database_with(path: &Path, durability: Durability) -> crate::Result<Connection> {
    let mut conn = open_connection_with(path, durability).map_err(map_sqlite_error)?;
    super::schema::migrate(&mut conn)?;
    Ok(conn)
}

/// One connection, used from async code through [`Db::call`].
#[derive(Clone)]
pub struct Db {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
    /// One call at a time holds a blocking thread: the others wait here, as tasks, not
    /// as threads blocked on the connection's lock.
    turn: Arc<Semaphore>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

impl Db {
    /// Opens the database through [`open_database`].
    pub fn open(path: &Path) -> crate::Result<Self> {
        Self::open_with(path, Durability::Full)
    }

    /// [`Db::open`] with commits as durable as `durability` says.
    pub fn open_with(path: &Path, durability: Durability) -> crate::Result<Self> {
        let conn = open_database_with(path, durability)?;
        Ok(Self {
            path: path.to_owned(),
            conn: Arc::new(Mutex::new(conn)),
            turn: Arc::new(Semaphore::new(1)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the connection in a blocking thread.
    pub async fn call<R, F>(&self, f: F) -> crate::Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> crate::Result<R> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let turn = Arc::clone(&self.turn)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let mut conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(|e| Error::Unknown(anyhow::anyhow!("sqlite task failed: {e}")))?
    }
}

/// Connections a [`ConnectionPool`] uses at once (and keeps open when idle).
pub const POOL_SIZE: usize = 8;

/// A small pool of connections for reads and small writes outside the group-commit path.
///
/// At most [`POOL_SIZE`] calls run at once, each on a blocking thread with a connection;
/// the rest wait as tasks. Unbounded, a burst of calls (10,000 WebSocket subscriptions
/// opening) would take a thread and open a connection, with its page cache, for each.
pub struct ConnectionPool {
    path: PathBuf,
    durability: Durability,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl ConnectionPool {
    pub fn new(path: &Path) -> Self {
        Self::with_durability(path, Durability::Full)
    }

    /// A pool whose connections commit as durably as `durability` says.
    pub fn with_durability(path: &Path, durability: Durability) -> Self {
        Self {
            path: path.to_owned(),
            durability,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(POOL_SIZE)),
        }
    }

    /// Runs `f` on an idle connection (opening one if none is idle) in a blocking
    /// thread.
    pub async fn call<R, F>(self: &Arc<Self>, f: F) -> crate::Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> crate::Result<R> + Send + 'static,
    {
        let pool = Arc::clone(self);
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = pool.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match conn {
                Some(conn) => conn,
                None => {
                    open_connection_with(&pool.path, pool.durability).map_err(map_sqlite_error)?
                }
            };
            let result = f(&conn);
            let mut idle = pool.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < POOL_SIZE {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| Error::Unknown(anyhow::anyhow!("sqlite task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synchronous(conn: &Connection) -> i64 {
        conn.pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn sqlite_is_built_to_sync_its_files_with_fdatasync() {
        // The workspace's `.cargo/config.toml` hands the flag to every build, SQLite's
        // (libsqlite3-sys) among them; without it SQLite calls fsync(2), and each user's
        // commit makes ext4 commit its journal with every other file's pending writes.
        let flags = option_env!("LIBSQLITE3_FLAGS").unwrap_or_default();
        assert!(
            flags.split_whitespace().any(|f| f == "-DHAVE_FDATASYNC=1"),
            "SQLite was built with LIBSQLITE3_FLAGS = {flags:?}"
        );
    }

    #[test]
    fn users_writes_are_synced_and_the_fan_outs_are_ordered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.db");
        // SQLite's values: 2 = FULL, 1 = NORMAL.
        assert_eq!(synchronous(&open_connection(&path).unwrap()), 2);
        let ordered = open_connection_with(&path, Durability::Ordered).unwrap();
        assert_eq!(synchronous(&ordered), 1);
        let mode: String = ordered
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal", "ordered commits need the write-ahead log");
        let pool = Arc::new(ConnectionPool::with_durability(&path, Durability::Ordered));
        let in_pool = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(pool.call(|conn| Ok(synchronous(conn))))
            .unwrap();
        assert_eq!(in_pool, 1);
    }

    /// Starts every task, then waits for each to succeed.
    async fn all_succeed(tasks: impl Iterator<Item = tokio::task::JoinHandle<crate::Result<()>>>) {
        for task in tasks.collect::<Vec<_>>() {
            task.await.unwrap().unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_calls_runs_at_most_a_pool_at_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.db");
        let pool = Arc::new(ConnectionPool::new(&path));
        let db = Db::open(&dir.path().join("e.db")).unwrap();
        let running = Arc::new(AtomicUsize::new(0));
        let (most_in_pool, most_in_db) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let call = |running: Arc<AtomicUsize>, most: Arc<AtomicUsize>| {
            move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            }
        };
        let pooled = (0..64).map(|_| {
            let f = call(running.clone(), most_in_pool.clone());
            let pool = pool.clone();
            tokio::spawn(async move { pool.call(move |_| f()).await })
        });
        all_succeed(pooled).await;
        let one = (0..16).map(|_| {
            let f = call(running.clone(), most_in_db.clone());
            let db = db.clone();
            tokio::spawn(async move { db.call(move |_| f()).await })
        });
        all_succeed(one).await;
        let most = most_in_pool.load(Ordering::SeqCst);
        assert!((2..=POOL_SIZE).contains(&most), "{most} calls ran at once");
        assert_eq!(
            pool.idle.lock().unwrap().len(),
            most,
            "one connection per concurrent call, kept"
        );
        assert_eq!(most_in_db.load(Ordering::SeqCst), 1);
    }
}
