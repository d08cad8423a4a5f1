//! `docfan restore --from DIR --data-dir D`: turns a backup made by `docfan backup` into
//! the data directory D, for `docfan serve` to start on.
//!
//! - The backup is checked before anything in D is touched: its manifest, its database
//!   (size, `PRAGMA integrity_check`, docfan's tables, a schema version this docfan
//!   knows; a backup from a newer docfan is refused).
//! - D must be stopped: restore holds D's lock ([`DataDirLock`]) from start to end, and
//!   stops at once when a server (or another operator command) holds it.
//! - D must be new or empty. With `--force`, a D that holds a docfan data directory is
//!   replaced (its database, search index, secret and recorded address are deleted);
//!   a D with any other file in it is refused even then, so a mistyped path never
//!   deletes anything that is not docfan's.
//! - The database is copied in beside the old one and renamed over it, after the old
//!   write-ahead log is removed (an old log must never be replayed into the restored
//!   file); then it is migrated to this docfan's schema version, the secret restored,
//!   and the search index rebuilt from the documents (backups hold no index: see
//!   [`backup`](super::backup)).
//! - What the restored server will fan out when it starts (changes committed before the
//!   backup but not yet handled then) is reported, with a warning when they are older
//!   than the stream's record age limit, which would dead-letter them instead.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use shared::auth::SECRET_FILE;
use shared::embedded::backup::{DatabaseSummary, inspect_database};
use shared::embedded::schema::LATEST;
use shared::embedded::sqlite::open_database;
use shared::embedded::{
    ChangeFeed, DATABASE_FILE, DataDirLock, LOCK_FILE, SEARCH_INDEX_DIR, TantivySearchIndex,
};
use stream_handler::PollerConfig;
use stream_handler::poller::backlog;

use super::backup::{FORMAT, MANIFEST_FILE, Manifest, sync_dir, write_private};
use super::cli::RestoreArgs;
use super::serve::SERVER_FILE;

/// What a data directory may hold that is docfan's own; `--force` replaces a directory
/// that holds nothing else.
const DATA_DIR_FILES: &[&str] = &[
    DATABASE_FILE,
    "docfan.db-wal",
    "docfan.db-shm",
    "docfan.db-journal",
    "docfan.db.restoring",
    SEARCH_INDEX_DIR,
    SECRET_FILE,
    "jwt-secret.restoring",
    SERVER_FILE,
    "server.json.tmp",
    crate::readiness::PROBE_FILE,
    crate::admin::ADMIN_SOCKET,
    LOCK_FILE,
];

/// A checked backup directory.
#[derive(Debug)]
pub struct CheckedBackup {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub database: DatabaseSummary,
}

/// Checks that `dir` is a complete backup this docfan can restore.
pub fn check_backup(dir: &Path) -> anyhow::Result<CheckedBackup> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => bail!("--from {} is a file, not a backup directory", dir.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("--from {}: there is no such directory", dir.display())
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    }
    let manifest_path = dir.join(MANIFEST_FILE);
    let raw = match std::fs::read(&manifest_path) {
        Ok(raw) => raw,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{} is not a docfan backup: it has no {MANIFEST_FILE} (`docfan backup` writes it \
             last, so a backup that was interrupted has none)",
            dir.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("reading {}", manifest_path.display())),
    };
    let not_a_manifest = || {
        format!(
            "{} is not a docfan backup manifest",
            manifest_path.display()
        )
    };
    let value: serde_json::Value = serde_json::from_slice(&raw).with_context(not_a_manifest)?;
    // The format first: a later format may have other fields.
    if value["format"] != FORMAT {
        bail!(
            "{} is a backup of format {}, which this docfan does not know (it reads {FORMAT:?})",
            dir.display(),
            value["format"]
        );
    }
    let manifest: Manifest = serde_json::from_value(value).with_context(not_a_manifest)?;
    if manifest.database.name != DATABASE_FILE {
        bail!(
            "the backup's manifest names the database {:?}, not {DATABASE_FILE}",
            manifest.database.name
        );
    }
    let db = dir.join(DATABASE_FILE);
    let bytes = std::fs::metadata(&db)
        .with_context(|| format!("the backup's database {} is missing", db.display()))?
        .len();
    if bytes != manifest.database.bytes {
        bail!(
            "the backup's database {} has {bytes} bytes, but the backup wrote {}: it was changed \
             or cut short since",
            db.display(),
            manifest.database.bytes
        );
    }
    let database =
        inspect_database(&db).with_context(|| format!("{} cannot be restored", dir.display()))?;
    if database.schema_version != manifest.schema_version {
        bail!(
            "the backup's database is at schema version {}, but its manifest says {}: it was \
             changed since the backup",
            database.schema_version,
            manifest.schema_version
        );
    }
    if manifest.jwt_secret && !dir.join(SECRET_FILE).is_file() {
        bail!(
            "the backup's {SECRET_FILE} is missing from {}",
            dir.display()
        );
    }
    Ok(CheckedBackup {
        dir: dir.to_owned(),
        manifest,
        database,
    })
}

/// `docfan restore`.
pub async fn run(data_dir: &Path, args: &RestoreArgs) -> anyhow::Result<()> {
    let backup = check_backup(&args.from)?;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let _lock = DataDirLock::acquire(data_dir)?;
    clear_destination(data_dir, args.force)?;

    let db = data_dir.join(DATABASE_FILE);
    place_database(&backup, data_dir)?;
    let from_version = backup.database.schema_version;
    drop(open_database(&db).with_context(|| {
        format!("migrating the restored database from schema version {from_version}")
    })?);
    let secret = data_dir.join(SECRET_FILE);
    if backup.manifest.jwt_secret {
        let contents = std::fs::read(backup.dir.join(SECRET_FILE))?;
        let staged = data_dir.join("jwt-secret.restoring");
        write_private(&staged, &contents)?;
        std::fs::rename(&staged, &secret)?;
    }
    sync_dir(data_dir)?;

    let index = TantivySearchIndex::open(&data_dir.join(SEARCH_INDEX_DIR))
        .context("creating the search index")?;
    let indexed = super::reindex::with_progress(&index, &db).await?;
    drop(index);
    let waiting = backlog(&ChangeFeed::open(&db)?).await?;

    println!(
        "restored the backup {} (started {}) into {}",
        backup.dir.display(),
        backup.manifest.started_at.to_rfc3339(),
        data_dir.display()
    );
    println!(
        "  documents:     {} (schema version {from_version}{})",
        backup.database.documents,
        if from_version < LATEST {
            format!(", migrated to {LATEST}")
        } else {
            String::new()
        }
    );
    println!("  search index:  rebuilt from the documents ({indexed} indexed)");
    if backup.manifest.jwt_secret {
        println!("  jwt secret:    restored");
    } else {
        println!(
            "  jwt secret:    not in the backup: serve with the DOCFAN_JWT_SECRET the backed-up \
             server used, or tokens it issued are refused"
        );
    }
    if waiting.records > 0 {
        println!(
            "  change stream: {} changes committed before the backup were not fanned out yet; \
             `docfan serve` fans them out when it starts",
            waiting.records
        );
        let max_age = PollerConfig::default().maximum_record_age;
        if let (Some(oldest), Some(max_age)) = (waiting.oldest, max_age)
            && chrono::Utc::now() - oldest > chrono::TimeDelta::from_std(max_age)?
        {
            println!(
                "  warning:       the oldest of them was committed {}, longer ago than the \
                 stream's record age limit ({} s): start the server once with \
                 --stream-max-record-age-secs -1 so that they are handled, not dead-lettered",
                oldest.to_rfc3339(),
                max_age.as_secs()
            );
        }
    }
    println!(
        "start it with:  docfan serve --data-dir {}",
        data_dir.display()
    );
    Ok(())
}

/// Makes sure `data_dir` may be restored into: empty, or (with `force`) a docfan data
/// directory, whose files are then deleted.
fn clear_destination(data_dir: &Path, force: bool) -> anyhow::Result<()> {
    let mut present = Vec::new();
    for entry in std::fs::read_dir(data_dir)
        .with_context(|| format!("reading the data directory {}", data_dir.display()))?
    {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name != LOCK_FILE {
            present.push(name);
        }
    }
    present.sort();
    if present.is_empty() {
        return Ok(());
    }
    if !force {
        bail!(
            "the data directory {} is not empty ({}): restore writes into a new or empty data \
             directory. To replace this one, and lose what it holds, pass --force",
            data_dir.display(),
            present.join(", ")
        );
    }
    let foreign: Vec<&String> = present
        .iter()
        .filter(|name| !DATA_DIR_FILES.contains(&name.as_str()))
        .collect();
    if !foreign.is_empty() {
        bail!(
            "{} holds files that are not docfan's ({}): restore --force replaces a docfan data \
             directory and nothing else; choose another --data-dir",
            data_dir.display(),
            foreign
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for name in &present {
        let path = data_dir.join(name);
        if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        }
        .with_context(|| format!("removing {}", path.display()))?;
    }
    sync_dir(data_dir)
}

/// Copies the backup's database into `data_dir`: under another name first (the long
/// part), then renamed into place.
fn place_database(backup: &CheckedBackup, data_dir: &Path) -> anyhow::Result<()> {
    let staged = data_dir.join("docfan.db.restoring");
    let target = data_dir.join(DATABASE_FILE);
    std::fs::copy(backup.dir.join(DATABASE_FILE), &staged)
        .with_context(|| format!("copying the database into {}", data_dir.display()))?;
    std::fs::File::open(&staged)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", staged.display()))?;
    std::fs::rename(&staged, &target)
        .with_context(|| format!("moving the database to {}", target.display()))?;
    sync_dir(data_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_of_another_format_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(MANIFEST_FILE),
            r#"{"format": "docfan-backup/2", "parts": []}"#,
        )
        .unwrap();
        let said = check_backup(dir.path()).unwrap_err().to_string();
        assert!(
            said.contains("format \"docfan-backup/2\"") && said.contains(FORMAT),
            "{said}"
        );

        std::fs::write(dir.path().join(MANIFEST_FILE), "{ not json").unwrap();
        let said = check_backup(dir.path()).unwrap_err().to_string();
        assert!(said.contains("is not a docfan backup manifest"), "{said}");
    }

    #[test]
    fn force_replaces_a_docfan_data_directory_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        clear_destination(dir.path(), false).expect("empty is fine");
        std::fs::write(dir.path().join(LOCK_FILE), "1").unwrap();
        clear_destination(dir.path(), false).expect("the lock file does not count");

        std::fs::write(dir.path().join(DATABASE_FILE), "old").unwrap();
        std::fs::create_dir(dir.path().join(SEARCH_INDEX_DIR)).unwrap();
        std::fs::write(dir.path().join(SEARCH_INDEX_DIR).join("meta.json"), "{}").unwrap();
        let said = clear_destination(dir.path(), false)
            .unwrap_err()
            .to_string();
        assert!(
            said.contains("not empty") && said.contains("docfan.db") && said.contains("--force"),
            "{said}"
        );
        assert!(dir.path().join(DATABASE_FILE).exists(), "nothing removed");

        std::fs::write(dir.path().join("thesis.tex"), "mine").unwrap();
        let said = clear_destination(dir.path(), true).unwrap_err().to_string();
        assert!(
            said.contains("not docfan's") && said.contains("thesis.tex"),
            "{said}"
        );
        assert!(dir.path().join(DATABASE_FILE).exists(), "nothing removed");

        std::fs::remove_file(dir.path().join("thesis.tex")).unwrap();
        clear_destination(dir.path(), true).unwrap();
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, vec![LOCK_FILE.to_owned()]);
    }
}
