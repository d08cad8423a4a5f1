//! End-to-end tests of the REST API and the change log, against the real app on a
//! loopback port with its own data directory.

mod access;
mod auth;
mod change_log;
mod crash;
mod documents;
mod input;
mod pagination;
mod system;

use std::path::Path;

use serde_json::Value;

/// Every change-log record, in sequence order, read straight from the SQLite file.
pub fn change_log(data_dir: &Path) -> Vec<(u64, Value)> {
    let conn = rusqlite::Connection::open(data_dir.join(shared::embedded::DATABASE_FILE))
        .expect("database opens");
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
