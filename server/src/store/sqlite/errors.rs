//! What SQLite's errors mean to the store's callers.
use std::path::Path;

use rusqlite::ErrorCode;

use super::StoreError;

/// An error met opening `path`, with what to do about it.
pub(super) fn open_error(path: &Path, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            StoreError::Internal(format!(
                "{} is not a readable errand database ({e}): restore it from a backup, or move it \
             away to start empty",
                path.display()
            ))
        }
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => {
            StoreError::Internal(format!(
                "cannot open {} for writing ({e}): check that it and its directory are \
                 writable by this user",
                path.display()
            ))
        }
        _ => match store_error(e) {
            StoreError::Internal(m) => StoreError::Internal(format!("{}: {m}", path.display())),
            other => other,
        },
    }
}

/// Maps an SQLite error to what the caller can do about it.
pub(super) fn store_error(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => {
            StoreError::Full(format!("the disk holding the data dir is full ({e})"))
        }
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(format!("the database is busy ({e})"))
        }
        Some(ErrorCode::TooBig | ErrorCode::TypeMismatch) => StoreError::Rejected(e.to_string()),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
            StoreError::Internal(format!(
                "the server's store file errand.db is corrupt ({e}): its operator must stop \
                 the server, check it with `errand check-store`, and restore it from a \
                 backup or move it away to start empty"
            ))
        }
        _ => StoreError::Internal(format!("store: {e}")),
    }
}

/// A file-system error: `Full` when the disk is.
pub(super) fn io_error(what: String, e: std::io::Error) -> StoreError {
    // ENOSPC: 28 on Linux and the BSDs.
    if e.raw_os_error() == Some(28) {
        StoreError::Full(format!("{what}: {e}"))
    } else {
        StoreError::Internal(format!("{what}: {e}"))
    }
}
