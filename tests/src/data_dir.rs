//! Reading a data directory's SQLite file directly, beside (or after) the server that
//! owns it: what the tests check is what is on disk, not what the server says.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};
use serde_json::Value;
use shared::embedded::DATABASE_FILE;

fn open(data_dir: &Path) -> Connection {
    Connection::open_with_flags(
        data_dir.join(DATABASE_FILE),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .expect("the database opens")
}

/// Every change-log record, in sequence order.
pub fn change_log(data_dir: &Path) -> Vec<(u64, Value)> {
    let conn = open(data_dir);
    let mut stmt = conn
        .prepare("SELECT seq, record FROM change_log ORDER BY seq")
        .expect("change_log exists");
    stmt.query_map([], |row| {
        let seq: i64 = row.get(0)?;
        let record: String = row.get(1)?;
        Ok((
            seq as u64,
            serde_json::from_str(&record).expect("records are JSON"),
        ))
    })
    .expect("query")
    .map(|r| r.expect("row"))
    .collect()
}

/// A dead letter as stored: its source, the payload it keeps and the reason.
#[derive(Debug, Clone)]
pub struct StoredDeadLetter {
    pub source: String,
    pub payload: String,
    pub reason: String,
}

/// Every dead letter, oldest first.
pub fn dead_letters(data_dir: &Path) -> Vec<StoredDeadLetter> {
    let conn = open(data_dir);
    let mut stmt = conn
        .prepare("SELECT source, payload, reason FROM dead_letters ORDER BY id")
        .expect("dead_letters exists");
    stmt.query_map([], |row| {
        Ok(StoredDeadLetter {
            source: row.get(0)?,
            payload: row.get(1)?,
            reason: row.get(2)?,
        })
    })
    .expect("query")
    .map(|r| r.expect("row"))
    .collect()
}

/// `PRAGMA integrity_check`: "ok", or what SQLite found wrong.
pub fn integrity_check(data_dir: &Path) -> String {
    open(data_dir)
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity_check runs")
}

/// The database's schema version (`PRAGMA user_version`).
pub fn schema_version(data_dir: &Path) -> u32 {
    open(data_dir)
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .expect("user_version reads")
}

/// Every row of `table`, each as the text of its columns, in the order of its key.
pub fn rows(data_dir: &Path, table: &str) -> Vec<Vec<String>> {
    let conn = open(data_dir);
    let mut stmt = conn
        .prepare(&format!("SELECT * FROM {table} ORDER BY 1, 2"))
        .expect("the table exists");
    let columns = stmt.column_count();
    stmt.query_map([], |row| {
        (0..columns)
            .map(|i| {
                Ok(match row.get_ref(i)? {
                    rusqlite::types::ValueRef::Null => "NULL".to_owned(),
                    rusqlite::types::ValueRef::Integer(n) => n.to_string(),
                    rusqlite::types::ValueRef::Real(x) => x.to_string(),
                    rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    rusqlite::types::ValueRef::Blob(b) => format!("{b:?}"),
                })
            })
            .collect()
    })
    .expect("query")
    .map(|r| r.expect("row"))
    .collect()
}

/// The stream poller's checkpoints: (partition, sequence number).
pub fn checkpoints(data_dir: &Path) -> Vec<(u32, u64)> {
    rows(data_dir, "stream_checkpoints")
        .into_iter()
        .map(|r| {
            (
                r[0].parse().expect("a partition"),
                r[1].parse().expect("a sequence number"),
            )
        })
        .collect()
}

/// The objects of the database's schema (type, name, table, SQL), by name.
pub fn schema(data_dir: &Path) -> Vec<(String, String, String, Option<String>)> {
    let conn = open(data_dir);
    let mut stmt = conn
        .prepare(
            "SELECT type, name, tbl_name, sql FROM sqlite_master
             WHERE name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .expect("sqlite_master");
    stmt.query_map([], |row| {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
    })
    .expect("query")
    .map(|r| r.expect("row"))
    .collect()
}

/// A fresh copy of the data directory docfan made at commit 47fbc70, before schema
/// versions were numbered (`tests/fixtures/data-dir-47fbc70`, whose README says what it
/// holds). Its server ran with [`TEST_SECRET`](crate::TEST_SECRET).
pub fn made_by_47fbc70() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join("data-dir-47fbc70")
        .join(DATABASE_FILE);
    std::fs::copy(&fixture, dir.path().join(DATABASE_FILE)).expect("the fixture copies");
    dir
}
