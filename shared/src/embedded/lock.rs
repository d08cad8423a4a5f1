//! The data directory's lock: `docfan serve` and `docfan restore` hold an exclusive lock
//! on the data directory's [`LOCK_FILE`] while they run, so a second one stops at once,
//! naming the first, instead of sharing the database and the search index with it (and
//! a restore never replaces the files under a running server).
//!
//! It is the operating system's advisory file lock (`flock` on Unix, `LockFileEx` on
//! Windows), released when the process ends however it ends, so a killed server leaves
//! no stale lock behind. The file stays; it holds the holder's process id, for the
//! message the next one gets. Commands that only read beside a running server (`docfan
//! backup`, `docfan dlq list`) do not take it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = "docfan.lock";

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "the data directory {} is in use by another docfan process{}: stop it first, or use \
         another --data-dir",
        dir.display(),
        holder.map(|pid| format!(" (process {pid})")).unwrap_or_default()
    )]
    Held { dir: PathBuf, holder: Option<u32> },
    #[error("cannot lock the data directory {}: {source}", dir.display())]
    Io {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The lock on one data directory, held until dropped.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the lock on `data_dir` (which must exist) without waiting.
    pub fn acquire(data_dir: &Path) -> Result<Self, LockError> {
        let io = |source| LockError::Io {
            dir: data_dir.to_owned(),
            source,
        };
        let path = data_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|pid| pid.trim().parse().ok());
                return Err(LockError::Held {
                    dir: data_dir.to_owned(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0)
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(io)?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_the_next_is_told_who() {
        let dir = tempfile::tempdir().unwrap();
        let held = DataDirLock::acquire(dir.path()).unwrap();
        let err = DataDirLock::acquire(dir.path()).unwrap_err();
        let LockError::Held { holder, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(*holder, Some(std::process::id()));
        let said = err.to_string();
        assert!(
            said.contains(&dir.path().display().to_string())
                && said.contains(&format!("process {}", std::process::id())),
            "{said}"
        );
        drop(held);
        DataDirLock::acquire(dir.path()).expect("free once dropped");
    }
}
