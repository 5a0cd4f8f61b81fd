//! What SQLite's errors mean to the store's callers.
//!
//! Messages carry no `store:` prefix of their own: the server's error type
//! (`Error::Store`) adds it once, where a store error reaches a caller.
//! Nor do they name the data dir's path, which callers are not shown: a
//! file is named by its name in the data dir (`errand.db-wal`); the server's
//! log says where the data dir is.
use std::{
    ffi::{c_int, c_void},
    path::Path,
    ptr,
};

use rusqlite::{Connection, ErrorCode, ffi};

use super::{DB_FILE, StoreError, decode::Unreadable};

/// An error met opening `path`, with what to do about it.
pub(super) fn open_error(path: &Path, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            StoreError::Internal(format!(
                "{} is not a readable errand database ({e}): restore it from a backup (one errand \
                 backup made; remove errand.db-wal and errand.db-shm beside it), or move it \
                 away, with them, to start empty",
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

/// Maps an SQLite error to what the caller can do about it. An error met
/// on a connection is better mapped by [`store_error_in`], which can say
/// what the OS said.
pub(super) fn store_error(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::FromSqlConversionFailure(_, _, cause) = &e
        && let Some(unreadable) = cause.downcast_ref::<Unreadable>()
    {
        return StoreError::Internal(unreadable.to_string());
    }
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
        Some(ErrorCode::SystemIoFailure) => {
            let extended = match &e {
                rusqlite::Error::SqliteFailure(f, _) => f.extended_code,
                _ => ffi::SQLITE_IOERR,
            };
            io_failure(extended, None, None)
        }
        _ => StoreError::Internal(e.to_string()),
    }
}

/// [`store_error`] for an error met on `conn`, just after it (before
/// another statement on `conn`): an I/O error also says which of
/// `errand.db`'s files it was met on and what the OS said, when SQLite
/// knows (`sqlite3_system_errno`, and the last error of each file).
pub(super) fn store_error_in(conn: &Connection, e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::SystemIoFailure => {
            let (errno, file) = os_error(conn);
            io_failure(f.extended_code, errno, file)
        }
        _ => store_error(e),
    }
}

/// The OS's error number behind SQLite's last I/O error on `conn`, and
/// which file it was met on when SQLite's files say so (the one whose own
/// last error is that number; the WAL is asked first, as the writer writes
/// only there).
fn os_error(conn: &Connection) -> (Option<i32>, Option<String>) {
    let last_errno = |file: *mut ffi::sqlite3_file| -> c_int {
        let mut errno: c_int = 0;
        // SAFETY: `file` is a file of `conn`'s pager, valid while `conn` is
        // open on this thread; an unopened one has no methods.
        unsafe {
            if !file.is_null()
                && let Some(methods) = (*file).pMethods.as_ref()
                && let Some(control) = methods.xFileControl
            {
                control(
                    file,
                    ffi::SQLITE_FCNTL_LAST_ERRNO,
                    (&mut errno as *mut c_int).cast::<c_void>(),
                );
            }
        }
        errno
    };
    // SAFETY: `conn` is open and used by this thread only; each call gets
    // a pointer to a value of the type its opcode writes.
    let (errno, main, journal) = unsafe {
        let db = conn.handle();
        let schema = c"main".as_ptr();
        let errno = ffi::sqlite3_system_errno(db);
        let mut main: *mut ffi::sqlite3_file = ptr::null_mut();
        let mut journal: *mut ffi::sqlite3_file = ptr::null_mut();
        let asked = [
            (ffi::SQLITE_FCNTL_FILE_POINTER, &mut main),
            (ffi::SQLITE_FCNTL_JOURNAL_POINTER, &mut journal),
        ];
        for (op, out) in asked {
            if ffi::sqlite3_file_control(
                db,
                schema,
                op,
                (out as *mut *mut ffi::sqlite3_file).cast(),
            ) != ffi::SQLITE_OK
            {
                *out = ptr::null_mut();
            }
        }
        (errno, main, journal)
    };
    if errno == 0 {
        return (None, None);
    }
    let file = if last_errno(journal) == errno {
        Some(format!("{DB_FILE}-wal"))
    } else if last_errno(main) == errno {
        Some(DB_FILE.to_string())
    } else {
        None
    };
    (Some(errno), file)
}

/// What SQLite was doing when it met an I/O error, by its extended code,
/// its name, and the file when the code says it.
fn io_operation(extended: c_int) -> (&'static str, &'static str, Option<&'static str>) {
    const SHM: Option<&str> = Some("errand.db-shm");
    match extended {
        ffi::SQLITE_IOERR_READ => ("reading", "SQLITE_IOERR_READ", None),
        ffi::SQLITE_IOERR_SHORT_READ => ("reading", "SQLITE_IOERR_SHORT_READ", None),
        ffi::SQLITE_IOERR_WRITE => ("writing", "SQLITE_IOERR_WRITE", None),
        ffi::SQLITE_IOERR_FSYNC => ("syncing", "SQLITE_IOERR_FSYNC", None),
        ffi::SQLITE_IOERR_DIR_FSYNC => ("syncing", "SQLITE_IOERR_DIR_FSYNC", Some("the data dir")),
        ffi::SQLITE_IOERR_TRUNCATE => ("truncating", "SQLITE_IOERR_TRUNCATE", None),
        ffi::SQLITE_IOERR_FSTAT => ("reading the size of", "SQLITE_IOERR_FSTAT", None),
        ffi::SQLITE_IOERR_DELETE => ("deleting", "SQLITE_IOERR_DELETE", None),
        ffi::SQLITE_IOERR_ACCESS => ("checking", "SQLITE_IOERR_ACCESS", None),
        ffi::SQLITE_IOERR_LOCK
        | ffi::SQLITE_IOERR_RDLOCK
        | ffi::SQLITE_IOERR_UNLOCK
        | ffi::SQLITE_IOERR_CHECKRESERVEDLOCK => ("locking", "SQLITE_IOERR_LOCK", None),
        ffi::SQLITE_IOERR_SHMOPEN => ("opening", "SQLITE_IOERR_SHMOPEN", SHM),
        ffi::SQLITE_IOERR_SHMSIZE => ("growing", "SQLITE_IOERR_SHMSIZE", SHM),
        ffi::SQLITE_IOERR_SHMLOCK => ("locking", "SQLITE_IOERR_SHMLOCK", SHM),
        ffi::SQLITE_IOERR_SHMMAP => ("mapping", "SQLITE_IOERR_SHMMAP", SHM),
        ffi::SQLITE_IOERR_MMAP => ("mapping", "SQLITE_IOERR_MMAP", None),
        ffi::SQLITE_IOERR_SEEK => ("seeking in", "SQLITE_IOERR_SEEK", None),
        _ => ("using", "SQLITE_IOERR", None),
    }
}

/// An I/O error as callers see it: what SQLite was doing, on which file
/// (by its name in the data dir), what the OS said, and what its operator
/// can do. ENOSPC and EDQUOT are [`StoreError::Full`] (the caller may
/// retry later), as SQLite's own "disk full" is. Bounded: no part of it
/// grows with anything.
pub(super) fn io_failure(extended: c_int, errno: Option<i32>, file: Option<String>) -> StoreError {
    let (doing, code, fixed) = io_operation(extended);
    let file = match fixed.map(str::to_string).or(file) {
        Some(dir) if !dir.starts_with("errand") => dir,
        Some(file) => format!("{file} in the data dir"),
        None => "errand.db or its -wal file in the data dir".into(),
    };
    let os = match errno {
        Some(n) => std::io::Error::from_raw_os_error(n).to_string(),
        None => "SQLite gave no OS error".into(),
    };
    let what = format!("{doing} {file} failed ({code}): {os}");
    match errno.unwrap_or(0) {
        libc::ENOSPC => StoreError::Full(format!("{what}: the disk holding the data dir is full")),
        libc::EDQUOT => StoreError::Full(format!(
            "{what}: the disk quota of the server's user is used up"
        )),
        libc::EIO => StoreError::Internal(format!(
            "{what}: the disk or its file system failed; its operator should check the kernel \
             log and the disk"
        )),
        libc::EROFS => StoreError::Internal(format!(
            "{what}: the file system holding the data dir is read-only (after errors?); its \
             operator must make it writable"
        )),
        libc::EFBIG => StoreError::Internal(format!(
            "{what}: the file reached a size limit (the server's `ulimit -f`, or the largest \
             file its file system holds)"
        )),
        libc::EACCES | libc::EPERM => StoreError::Internal(format!(
            "{what}: the server's user may not; its operator should check the owner and mode \
             of the data dir and its files"
        )),
        _ => StoreError::Internal(format!(
            "{what}: its operator should check the disk and the file system holding the data dir"
        )),
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
