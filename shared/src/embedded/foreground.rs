//! Users' writes first: while users are committing to a database, the fan-out's group
//! writers on the same file commit at most once per [`SPACING`] each.
//!
//! Every user's commit syncs the write-ahead log, and with it whatever the fan-out
//! appended to the log since the previous sync: the fan-out's many small commits (an
//! audit group, an analysis-queue group, each rewriting whole pages) are what a lone
//! user's sync waits on beside a drain. Spaced, each of the fan-out's commits carries a
//! larger group, so fewer pages are written for the same changes, and the drain goes on
//! (a group holds up to 256 writes). Like a database's background work that yields to
//! its foreground queries, it costs the fan-out at most [`SPACING`] a commit, and only
//! while users write: a drain with no user writing runs as fast as before.
//!
//! The users' writer and the fan-out's writers are opened separately, by path, so they
//! meet here: one [`Foreground`] per database file in the process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// How recently a user's commit must have ended for the users to count as writing.
pub const USERS_WRITING_WITHIN: Duration = Duration::from_millis(50);

/// The least time between two commits of one fan-out writer while users write.
pub const SPACING: Duration = Duration::from_millis(10);

/// When the users of one database file last committed.
#[derive(Debug)]
pub(crate) struct Foreground {
    epoch: Instant,
    /// Microseconds after `epoch` at which the latest user's commit ended; 0: never.
    users_committed_at_us: AtomicU64,
}

impl Foreground {
    /// The database file at `path`'s (shared by every writer of it in this process).
    pub(crate) fn of(path: &Path) -> Arc<Self> {
        static ALL: OnceLock<Mutex<HashMap<PathBuf, Weak<Foreground>>>> = OnceLock::new();
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        let mut all = ALL
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(foreground) = all.get(&key).and_then(Weak::upgrade) {
            return foreground;
        }
        all.retain(|_, foreground| foreground.strong_count() > 0);
        let foreground = Arc::new(Self {
            epoch: Instant::now(),
            users_committed_at_us: AtomicU64::new(0),
        });
        all.insert(key, Arc::downgrade(&foreground));
        foreground
    }

    fn now_us(&self) -> u64 {
        (self.epoch.elapsed().as_micros() as u64).max(1)
    }

    /// A user's commit has just ended.
    pub(crate) fn users_committed(&self) {
        self.users_committed_at_us
            .store(self.now_us(), Ordering::Relaxed);
    }

    /// How long a fan-out writer whose previous commit ended at `last_commit` waits
    /// before its next one.
    pub(crate) fn wait_before_commit(&self, last_commit: Option<Instant>) -> Option<Duration> {
        let now = self.now_us();
        let last =
            last_commit.map(|at| at.saturating_duration_since(self.epoch).as_micros() as u64);
        pause(
            now,
            self.users_committed_at_us.load(Ordering::Relaxed),
            last,
        )
    }
}

/// The pause before a fan-out commit at `now` (all in microseconds after one epoch):
/// none unless a user committed within [`USERS_WRITING_WITHIN`] (`users_at` 0: never),
/// else what is left of [`SPACING`] since the writer's own `last` commit.
fn pause(now: u64, users_at: u64, last: Option<u64>) -> Option<Duration> {
    let writing =
        users_at != 0 && now.saturating_sub(users_at) < USERS_WRITING_WITHIN.as_micros() as u64;
    let next = last? + SPACING.as_micros() as u64;
    (writing && next > now).then(|| Duration::from_micros(next - now))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1000;

    #[test]
    fn no_pause_while_no_user_writes() {
        assert_eq!(
            pause(100 * MS, 0, Some(99 * MS)),
            None,
            "no user ever wrote"
        );
        assert_eq!(
            pause(200 * MS, 100 * MS, Some(199 * MS)),
            None,
            "the last user's commit is older than the window"
        );
    }

    #[test]
    fn while_users_write_a_fan_out_commit_waits_out_the_spacing() {
        assert_eq!(
            pause(100 * MS, 99 * MS, Some(97 * MS)),
            Some(Duration::from_millis(7))
        );
        assert_eq!(
            pause(100 * MS, 99 * MS, Some(90 * MS)),
            None,
            "its previous commit is a whole spacing ago"
        );
        assert_eq!(
            pause(100 * MS, 99 * MS, None),
            None,
            "a writer's first commit never waits"
        );
    }

    #[test]
    fn one_foreground_per_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.db"), dir.path().join("b.db"));
        std::fs::write(&a, b"").unwrap();
        let first = Foreground::of(&a);
        let again = Foreground::of(&dir.path().join(".").join("a.db"));
        assert!(Arc::ptr_eq(&first, &again), "the same file by another path");
        assert!(!Arc::ptr_eq(&first, &Foreground::of(&b)));
        first.users_committed();
        let last = Some(Instant::now());
        assert!(again.wait_before_commit(last).is_some());
        assert!(Foreground::of(&b).wait_before_commit(last).is_none());
    }
}
