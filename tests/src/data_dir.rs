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
