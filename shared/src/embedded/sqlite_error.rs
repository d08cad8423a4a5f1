//! What a SQLite failure means to docfan: contention and I/O that may pass, storage an
//! operator must act on, and everything else. Every embedded adapter and the schema
//! migrations translate through [`map_sqlite_error`].

use rusqlite::ErrorCode;

use crate::Error;

/// Translates a SQLite failure: contention and I/O errors may pass (`Unavailable`); a
/// full disk (`StorageFull`) and a read-only database (`StorageReadOnly`) pass once an
/// operator acts; everything else is a bug or corruption (`Unknown`).
pub fn map_sqlite_error(err: rusqlite::Error) -> Error {
    if let rusqlite::Error::SqliteFailure(e, ref msg) = err {
        let detail = msg.clone().unwrap_or_else(|| e.to_string());
        match e.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                return Error::Unavailable(format!("database busy: {detail}"));
            }
            ErrorCode::DiskFull => return Error::StorageFull(detail),
            ErrorCode::ReadOnly => return Error::StorageReadOnly(detail),
            ErrorCode::SystemIoFailure | ErrorCode::CannotOpen => {
                return Error::Unavailable(format!("database I/O error: {detail}"));
            }
            _ => {}
        }
    }
    Error::Unknown(anyhow::Error::new(err).context("sqlite"))
}

#[cfg(test)]
mod tests {
    use rusqlite::ffi;

    use super::*;

    fn failure(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(ffi::Error::new(code), Some(format!("code {code}")))
    }

    #[test]
    fn each_failure_says_who_can_end_it() {
        for code in [
            ffi::SQLITE_BUSY,
            ffi::SQLITE_LOCKED,
            ffi::SQLITE_IOERR,
            ffi::SQLITE_CANTOPEN,
        ] {
            assert!(
                matches!(map_sqlite_error(failure(code)), Error::Unavailable(_)),
                "code {code} may pass"
            );
        }
        assert!(matches!(
            map_sqlite_error(failure(ffi::SQLITE_FULL)),
            Error::StorageFull(detail) if detail == "code 13"
        ));
        assert!(matches!(
            map_sqlite_error(failure(ffi::SQLITE_READONLY)),
            Error::StorageReadOnly(_)
        ));
        for err in [
            failure(ffi::SQLITE_CORRUPT),
            rusqlite::Error::QueryReturnedNoRows,
        ] {
            assert!(matches!(map_sqlite_error(err), Error::Unknown(_)));
        }
    }
}
