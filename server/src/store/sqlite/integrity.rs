//! When the store checks `errand.db` for corruption, so that start time does
//! not grow with the store.
//!
//! `PRAGMA quick_check` reads every page: seconds for a day of retention. A
//! clean stop therefore leaves a mark, `errand.clean`, naming the file as it
//! was left (length, modification time, inode), after every connection has
//! closed and SQLite has folded the WAL into it. The next start that finds
//! the mark, the same file and no WAL skips the check; anything else (a
//! crash, a kill, a file changed or replaced while the server was down, a
//! first start by this version) runs the check before serving, as before.
//! The mark is removed, durably, before anything is written, so a crash of
//! that run is never mistaken for a clean stop. `errand check-store` checks
//! the whole file on demand, also beside a running server.
use std::{
    fs::{self, File},
    io::Write,
    os::unix::fs::MetadataExt,
    path::Path,
};

use rusqlite::{Connection, OpenFlags};
use tracing::{info, warn};

use super::{DB_FILE, StoreError, errors::io_error, errors::open_error};

/// The clean-stop mark inside the data dir.
pub const CLEAN_FILE: &str = "errand.clean";

/// What the mark says about `errand.db`: "len mtime_ns inode".
fn fingerprint(db: &Path) -> Option<String> {
    let m = fs::metadata(db).ok()?;
    let mtime = m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128;
    Some(format!("{} {mtime} {}", m.len(), m.ino()))
}

fn wal_present(db: &Path) -> bool {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    fs::metadata(Path::new(&name)).is_ok_and(|m| m.len() > 0)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(format!("cannot sync the data dir {}", dir.display()), e))
}

/// Whether the last run stopped cleanly and left `errand.db` as it is now
/// (then the start-up check can be skipped). Removes the mark either way,
/// durably, before the store writes anything.
pub(super) fn take_clean_mark(data_dir: &Path) -> Result<bool, StoreError> {
    let mark = data_dir.join(CLEAN_FILE);
    let Ok(said) = fs::read_to_string(&mark) else {
        return Ok(false);
    };
    let db = data_dir.join(DB_FILE);
    let same = fingerprint(&db).is_some_and(|now| now == said.trim()) && !wal_present(&db);
    fs::remove_file(&mark).map_err(|e| io_error(format!("cannot remove {}", mark.display()), e))?;
    sync_dir(data_dir)?;
    if !same {
        info!("errand.db changed since the last clean stop: checking it");
    }
    Ok(same)
}

/// Leaves the clean-stop mark; call once every connection is closed. A
/// failure only costs the next start a full check.
pub(super) fn leave_clean_mark(data_dir: &Path) {
    let db = data_dir.join(DB_FILE);
    let (Some(said), false) = (fingerprint(&db), wal_present(&db)) else {
        warn!("the store's WAL outlived its connections: the next start checks the whole store");
        return;
    };
    let mark = data_dir.join(CLEAN_FILE);
    let written = File::create(&mark)
        .and_then(|mut f| {
            f.write_all(said.as_bytes())?;
            f.sync_all()
        })
        .map_err(|e| io_error(format!("cannot write {}", mark.display()), e))
        .and_then(|()| sync_dir(data_dir));
    if let Err(e) = written {
        warn!(error = %e, "the clean-stop mark was not written: the next start checks the whole store");
    }
}

/// `PRAGMA quick_check`: a corrupt file is refused at start, not found out
/// by a later write.
pub(super) fn quick_check(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let problems: Vec<String> = conn
        .prepare("PRAGMA quick_check(5)")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| open_error(path, e))?;
    verdict(path, problems)
}

fn verdict(path: &Path, problems: Vec<String>) -> Result<(), StoreError> {
    if problems.len() == 1 && problems[0] == "ok" {
        return Ok(());
    }
    Err(StoreError::Internal(format!(
        "{} is corrupt ({}): restore it from a backup, or move it away to start empty",
        path.display(),
        problems.join("; ")
    )))
}

/// `PRAGMA integrity_check` of the data dir's `errand.db` on a read-only
/// connection (a running server's dir too: WAL readers see its last commit).
/// `Ok` when the file is sound; the corruption found (at most 20 problems)
/// otherwise, or why it could not be read.
pub fn check_store(data_dir: &Path) -> Result<(), StoreError> {
    let path = data_dir.join(DB_FILE);
    if !path.exists() {
        return Err(StoreError::Internal(format!(
            "{} does not exist: is --data-dir right?",
            path.display()
        )));
    }
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| open_error(&path, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| open_error(&path, e))?;
    let problems: Vec<String> = conn
        .prepare("PRAGMA integrity_check(20)")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| open_error(&path, e))?;
    verdict(&path, problems)
}
