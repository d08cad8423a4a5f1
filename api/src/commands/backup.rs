//! `docfan backup --to DIR`: a consistent copy of the data directory, taken while
//! `docfan serve` runs (or while it does not), for `docfan restore`.
//!
//! DIR is new or empty (a backup is never mixed with other files); its parent must
//! exist, so a mistyped or unmounted path fails rather than filling another disk. It
//! gets, in this order:
//!
//! - `docfan.db`: the database as it was at one instant, when the copy began
//!   ([`shared::embedded::backup`]): every write acknowledged before the backup started
//!   is in it, and the change log, the stream checkpoints, the audit trail, the analysis
//!   queue and the dead letters are as they were at that same instant, so a server
//!   started on the restored copy fans out exactly the changes that had not been fanned
//!   out, and nothing is lost;
//! - `jwt-secret`: the data directory's secret, when it has one (a server that takes
//!   its secret from `DOCFAN_JWT_SECRET` keeps it elsewhere; keep it with the backup);
//! - [`MANIFEST_FILE`]: what the backup holds, written last, so that a directory with a
//!   manifest is a complete backup and an interrupted one is recognised as such.
//!
//! The search index is not copied: `docfan restore` rebuilds it from the restored
//! documents. The fan-out commits the index on its own schedule, so a copy of it taken
//! beside the database copy would be from another instant: behind the database (whose
//! checkpoints say changes were indexed that the copy lacks, so search would never find
//! them) or ahead of it (hits for documents the restored database does not hold).
//! Copying it from the same instant would mean stopping the fan-out for the length of
//! the copy. Rebuilt, it matches the restored documents exactly and the backup is
//! smaller; the price is a reindex at restore time.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::auth::SECRET_FILE;
use shared::embedded::DATABASE_FILE;
use shared::embedded::backup::copy_database;

use super::cli::BackupArgs;

/// The manifest's name in a backup directory.
pub const MANIFEST_FILE: &str = "docfan-backup.json";
/// The manifest's `format`, for a restore to recognise what it reads.
pub const FORMAT: &str = "docfan-backup/1";

/// What a backup directory holds; its [`MANIFEST_FILE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// When the backup began: every write acknowledged before it is in the backup.
    pub started_at: DateTime<Utc>,
    /// The docfan that made it.
    pub docfan_version: String,
    /// The database's schema version.
    pub schema_version: u32,
    /// The database file and its size in bytes.
    pub database: BackedUpFile,
    /// Whether the data directory's `jwt-secret` is in the backup.
    pub jwt_secret: bool,
    pub documents: u64,
    /// The highest change-log sequence number in the backup.
    pub change_log_sequence: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackedUpFile {
    pub name: String,
    pub bytes: u64,
}

/// `docfan backup`.
pub fn run(data_dir: &Path, args: &BackupArgs) -> anyhow::Result<()> {
    let source = data_dir.join(DATABASE_FILE);
    if !source.is_file() {
        bail!(
            "no docfan database in {} (set --data-dir to the directory `docfan serve` uses)",
            data_dir.display()
        );
    }
    let created = prepare_destination(&args.to)?;
    match write_backup(data_dir, &source, &args.to) {
        Ok(manifest) => {
            println!(
                "backed up {} documents (change log through sequence {}, schema version {}) to {}",
                manifest.documents,
                manifest.change_log_sequence,
                manifest.schema_version,
                args.to.display()
            );
            println!(
                "  every write acknowledged before {} is in it",
                manifest.started_at.to_rfc3339()
            );
            if !manifest.jwt_secret {
                println!(
                    "  no {SECRET_FILE} in {}: the server takes its secret from \
                     DOCFAN_JWT_SECRET; keep that secret with the backup",
                    data_dir.display()
                );
            }
            println!("  the search index is rebuilt from the documents by `docfan restore`");
            Ok(())
        }
        Err(e) => {
            remove_partial(&args.to, created);
            Err(e)
        }
    }
}

/// Makes `to` ready for a backup; returns whether it was created here.
fn prepare_destination(to: &Path) -> anyhow::Result<bool> {
    match std::fs::metadata(to) {
        Ok(meta) if !meta.is_dir() => {
            bail!("--to {} is a file: a backup is a directory", to.display())
        }
        Ok(_) => {
            let mut entries =
                std::fs::read_dir(to).with_context(|| format!("reading {}", to.display()))?;
            if entries.next().is_some() {
                bail!(
                    "--to {} is not empty: a backup goes to a new or empty directory, so that it \
                     is never mixed with other files (name each backup, e.g. after its date)",
                    to.display()
                );
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(to).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => anyhow::anyhow!(
                    "cannot create --to {}: its parent directory does not exist (a backup \
                     creates its own directory only, so that a mistyped or unmounted path \
                     fails here)",
                    to.display()
                ),
                _ => anyhow::Error::new(e).context(format!("creating {}", to.display())),
            })?;
            Ok(true)
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("reading {}", to.display()))),
    }
}

fn write_backup(data_dir: &Path, source: &Path, to: &Path) -> anyhow::Result<Manifest> {
    let started_at = Utc::now();
    let partial = to.join(format!("{DATABASE_FILE}.partial"));
    let copied = to.join(DATABASE_FILE);
    let summary = copy_database(source, &partial)?;
    std::fs::rename(&partial, &copied)
        .with_context(|| format!("moving the copy to {}", copied.display()))?;
    let bytes = std::fs::metadata(&copied)?.len();

    let secret = data_dir.join(SECRET_FILE);
    let jwt_secret = match std::fs::read(&secret) {
        Ok(contents) => {
            write_private(&to.join(SECRET_FILE), &contents)?;
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e).with_context(|| format!("reading {}", secret.display())),
    };

    let manifest = Manifest {
        format: FORMAT.to_owned(),
        started_at,
        docfan_version: env!("CARGO_PKG_VERSION").to_owned(),
        schema_version: summary.schema_version,
        database: BackedUpFile {
            name: DATABASE_FILE.to_owned(),
            bytes,
        },
        jwt_secret,
        documents: summary.documents,
        change_log_sequence: summary.change_log_seq,
    };
    let staged = to.join(format!("{MANIFEST_FILE}.partial"));
    let mut file = std::fs::File::create(&staged)?;
    file.write_all(&serde_json::to_vec_pretty(&manifest)?)?;
    file.sync_all()?;
    std::fs::rename(&staged, to.join(MANIFEST_FILE))?;
    sync_dir(to)?;
    Ok(manifest)
}

/// Writes a file only its owner may read (the secret), synced.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

/// Makes the directory's entries (renames, new files) durable.
pub(crate) fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// After a failure, removes what this backup wrote (and the directory, if it made it).
fn remove_partial(to: &Path, created: bool) {
    for name in [
        format!("{DATABASE_FILE}.partial"),
        format!("{DATABASE_FILE}-journal"),
        format!("{DATABASE_FILE}.partial-journal"),
        DATABASE_FILE.to_owned(),
        SECRET_FILE.to_owned(),
        format!("{MANIFEST_FILE}.partial"),
        MANIFEST_FILE.to_owned(),
    ] {
        let _ = std::fs::remove_file(to.join(name));
    }
    if created {
        let _ = std::fs::remove_dir(to);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_destination_is_new_or_empty_and_its_parent_exists() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("fresh");
        assert!(prepare_destination(&fresh).unwrap(), "created");
        assert!(!prepare_destination(&fresh).unwrap(), "empty: used as is");

        std::fs::write(fresh.join("something"), "x").unwrap();
        let said = prepare_destination(&fresh).unwrap_err().to_string();
        assert!(said.contains("is not empty"), "{said}");

        let said = prepare_destination(&fresh.join("something"))
            .unwrap_err()
            .to_string();
        assert!(said.contains("is a file"), "{said}");

        let deep = dir.path().join("no").join("such").join("place");
        let said = prepare_destination(&deep).unwrap_err().to_string();
        assert!(said.contains("parent directory does not exist"), "{said}");
        assert!(!dir.path().join("no").exists(), "nothing created");
    }
}
