//! The database's schema versions: numbered migrations, run in order when docfan opens
//! the database, each in its own transaction.
//!
//! The version a database is at is SQLite's `user_version` (0 for a database made before
//! versions were numbered, or a new file). [`migrate`] brings it to [`LATEST`]: it runs
//! every migration above the stored version, and sets `user_version` to the migration's
//! number in the transaction that ran it, so a migration is either wholly applied and
//! counted, or not at all, and a restart runs none twice. A database whose version is
//! above [`LATEST`] was written by a newer docfan: it is refused ([`NewerSchema`]),
//! since this binary cannot know what the newer tables mean.
//!
//! The migrations are SQL files in `migrations/`, one per version. Migration 1 is the
//! schema of the releases before versions were numbered, statement for statement and
//! idempotent, so their data directories upgrade without a change to their rows. A new
//! migration is a new file and a new entry at the end of [`MIGRATIONS`]; a released one
//! is never edited.

use rusqlite::{Connection, TransactionBehavior};

use super::sqlite_error::map_sqlite_error;
use crate::{Error, Result};

/// One numbered step of the schema.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The schema version the database is at once this migration has run.
    pub version: u32,
    /// What it changes, for errors and logs.
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order; the version of the `n`th (from 1) is `n`.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "the tables of the releases before schema versions",
        sql: include_str!("migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "the change log's shard of each record",
        sql: include_str!("migrations/0002_change_log_shard.sql"),
    },
    Migration {
        version: 3,
        name: "the webhook outbox",
        sql: include_str!("migrations/0003_webhook_outbox.sql"),
    },
    Migration {
        version: 4,
        name: "the tables of whole documents as rowid tables",
        sql: include_str!("migrations/0004_rowid_tables.sql"),
    },
    Migration {
        version: 5,
        name: "the analysis queue's newest version of each document",
        sql: include_str!("migrations/0005_analysis_enqueued.sql"),
    },
];

/// The schema version this docfan writes.
pub const LATEST: u32 = MIGRATIONS.len() as u32;

/// A database from a newer docfan than this one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the database {path} is at schema version {found}, but this docfan knows versions up \
     to {known}: a newer docfan wrote it. Run that version (or a newer one), or restore a \
     backup made by this version"
)]
pub struct NewerSchema {
    pub path: String,
    pub found: u32,
    pub known: u32,
}

/// The schema version the database on `conn` is at.
pub fn version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// Brings the database on `conn` to [`LATEST`]; returns the version it was at. Fails with
/// [`NewerSchema`] (inside [`Error::Unknown`]) when it is above [`LATEST`].
pub fn migrate(conn: &mut Connection) -> Result<u32> {
    migrate_with(conn, MIGRATIONS)
}

/// [`migrate`] with another list of migrations (the tests' own).
pub(crate) fn migrate_with(conn: &mut Connection, migrations: &[Migration]) -> Result<u32> {
    let known = migrations.last().map_or(0, |m| m.version);
    let found = version(conn).map_err(map_sqlite_error)?;
    refuse_newer(conn, found, known)?;
    if found == known {
        return Ok(found);
    }
    for migration in migrations.iter().filter(|m| m.version > found) {
        // Another connection (another adapter opening the same file, or another process)
        // may have run it since the version was read: the write lock taken first makes
        // the check and the migration one step.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_sqlite_error)?;
        let now = version(&tx).map_err(map_sqlite_error)?;
        refuse_newer(&tx, now, known)?;
        if now >= migration.version {
            continue;
        }
        let ran = tx
            .execute_batch(migration.sql)
            .and_then(|()| tx.pragma_update(None, "user_version", migration.version))
            .and_then(|()| tx.commit());
        if let Err(e) = ran {
            return Err(match map_sqlite_error(e) {
                Error::Unknown(cause) => Error::Unknown(cause.context(format!(
                    "schema migration {} ({}) of {} failed; the database is still at version {}",
                    migration.version,
                    migration.name,
                    conn.path().unwrap_or("the database"),
                    migration.version - 1
                ))),
                transient => transient,
            });
        }
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "migrated the database schema"
        );
    }
    Ok(found)
}

fn refuse_newer(conn: &Connection, found: u32, known: u32) -> Result<()> {
    if found <= known {
        return Ok(());
    }
    Err(Error::Unknown(anyhow::Error::new(NewerSchema {
        path: conn.path().unwrap_or("(in memory)").to_owned(),
        found,
        known,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::sqlite::open_connection;

    fn schema_of(conn: &Connection) -> Vec<(String, String, Option<String>)> {
        let mut stmt = conn
            .prepare(
                "SELECT type, name, sql FROM sqlite_master
                 WHERE name NOT LIKE 'sqlite_%' ORDER BY name",
            )
            .unwrap();
        stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }

    const NUMBERS: Migration = Migration {
        version: 1,
        name: "numbers",
        sql: "CREATE TABLE numbers (n INTEGER PRIMARY KEY); INSERT INTO numbers VALUES (1);",
    };
    const WORDS: Migration = Migration {
        version: 2,
        name: "words",
        sql: "CREATE TABLE words (w TEXT); INSERT INTO numbers VALUES (2);",
    };

    #[test]
    fn the_migrations_are_numbered_one_by_one_from_1() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.name);
        }
        assert_eq!(LATEST as usize, MIGRATIONS.len());
    }

    #[test]
    fn a_new_database_gets_every_migration_and_a_second_run_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open_connection(&dir.path().join("d.db")).unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), 0);
        assert_eq!(version(&conn).unwrap(), LATEST);
        let tables = schema_of(&conn);
        assert!(tables.iter().any(|(_, name, _)| name == "documents"));

        assert_eq!(migrate(&mut conn).unwrap(), LATEST, "nothing left to run");
        assert_eq!(schema_of(&conn), tables);
    }

    #[test]
    fn only_the_migrations_above_the_stored_version_run() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open_connection(&dir.path().join("d.db")).unwrap();
        assert_eq!(migrate_with(&mut conn, &[NUMBERS]).unwrap(), 0);
        // Migration 1 inserts 1; were it run again, its CREATE TABLE would fail.
        assert_eq!(migrate_with(&mut conn, &[NUMBERS, WORDS]).unwrap(), 1);
        assert_eq!(version(&conn).unwrap(), 2);
        let numbers: Vec<i64> = conn
            .prepare("SELECT n FROM numbers ORDER BY n")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(numbers, vec![1, 2]);
    }

    #[test]
    fn a_failing_migration_leaves_nothing_of_itself_and_the_version_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open_connection(&dir.path().join("d.db")).unwrap();
        migrate_with(&mut conn, &[NUMBERS]).unwrap();
        let broken = Migration {
            version: 2,
            name: "broken",
            sql: "CREATE TABLE words (w TEXT); INSERT INTO no_such_table VALUES (1);",
        };
        let err = migrate_with(&mut conn, &[NUMBERS, broken]).unwrap_err();
        let said = format!("{err:#}");
        assert!(said.contains("schema migration 2 (broken)"), "{said}");
        assert!(said.contains("still at version 1"), "{said}");
        assert_eq!(version(&conn).unwrap(), 1);
        let words: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'words'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(words, 0, "the failed migration's table was rolled back");
    }

    #[test]
    fn version_4_keeps_every_row_of_the_whole_document_tables_and_gives_them_rowids() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open_connection(&dir.path().join("d.db")).unwrap();
        migrate_with(&mut conn, &MIGRATIONS[..3]).unwrap();
        let big = "x".repeat(20_000);
        conn.execute_batch(&format!(
            "INSERT INTO documents (id, version, doc) VALUES ('d1', 2, '{big}'), ('d2', 1, '{{}}');
             INSERT INTO document_versions (document_id, version, actor, at, title, ops, snapshot)
                 VALUES ('d1', 1, 'ann', 't1', 'T', NULL, '{big}'), ('d1', 2, 'ann', 't2', 'T', '[]', NULL);
             INSERT INTO audit_log (document_id, version, entry)
                 VALUES ('d1', 1, '{big}'), ('d1', 2, 'e2'), ('d2', 1, 'e1');"
        ))
        .unwrap();
        let rows = |conn: &Connection, sql: &str| -> Vec<String> {
            let mut stmt = conn.prepare(sql).unwrap();
            stmt.query_map([], |r| r.get::<_, String>(0))
                .unwrap()
                .map(|r| r.unwrap())
                .collect()
        };
        let queries = [
            "SELECT id || '/' || version || '/' || doc FROM documents ORDER BY id",
            "SELECT document_id || '/' || version || '/' || actor || '/' || at || '/' || title
                 || '/' || IFNULL(ops, '-') || '/' || IFNULL(snapshot, '-')
             FROM document_versions ORDER BY document_id, version",
            "SELECT document_id || '/' || version || '/' || entry FROM audit_log
             ORDER BY document_id, version",
        ];
        let before: Vec<Vec<String>> = queries.iter().map(|q| rows(&conn, q)).collect();

        assert_eq!(migrate(&mut conn).unwrap(), 3);
        let after: Vec<Vec<String>> = queries.iter().map(|q| rows(&conn, q)).collect();
        assert_eq!(after, before);
        for (_, name, sql) in schema_of(&conn) {
            let sql = sql.unwrap_or_default();
            if ["documents", "document_versions", "audit_log"].contains(&name.as_str()) {
                assert!(!sql.contains("WITHOUT ROWID"), "{name}: {sql}");
            }
        }
        // The keys are still unique.
        let again = conn.execute(
            "INSERT INTO audit_log (document_id, version, entry) VALUES ('d1', 2, 'again')
             ON CONFLICT DO NOTHING",
            [],
        );
        assert_eq!(again.unwrap(), 0);
        assert!(
            conn.execute(
                "INSERT INTO documents (id, version, doc) VALUES ('d2', 5, '{}')",
                []
            )
            .is_err()
        );
    }

    #[test]
    fn a_database_from_a_newer_docfan_is_refused_naming_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.db");
        let mut conn = open_connection(&path).unwrap();
        migrate(&mut conn).unwrap();
        conn.pragma_update(None, "user_version", LATEST + 1)
            .unwrap();
        let before = schema_of(&conn);

        let err = migrate(&mut conn).unwrap_err();
        let Error::Unknown(cause) = &err else {
            panic!("refused as Unknown, got {err:?}");
        };
        let newer = cause.downcast_ref::<NewerSchema>().expect("a NewerSchema");
        assert_eq!((newer.found, newer.known), (LATEST + 1, LATEST));
        let said = err.to_string();
        assert!(
            said.contains(&format!("schema version {}", LATEST + 1))
                && said.contains(&format!("versions up to {LATEST}"))
                && said.contains(&path.display().to_string()),
            "{said}"
        );
        assert_eq!(version(&conn).unwrap(), LATEST + 1, "left as it was");
        assert_eq!(schema_of(&conn), before);
    }
}
