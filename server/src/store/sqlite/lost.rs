//! A data dir whose `errand.db` lost its store.
//!
//! **A file that lost its store.** An empty `errand.db` (0 bytes: a failed
//! copy or restore, `> errand.db`, a file system that lost the file's data
//! in a crash), or one that holds no errand schema, is a new store only
//! when nothing in the data dir says a store was written there. What says
//! so ([`store_evidence`]): the clean-stop mark; a WAL (SQLite writes one
//! only beside a file it has written, and deletes it when it finds the
//! file empty, so the refusal comes before SQLite opens the file); a
//! suspect mark other than [`CREATING`]; or the lock file, left by an
//! earlier start, with no suspect mark. A start that creates the file
//! writes [`CREATING`] into the suspect mark first and removes the mark
//! only after its first commit, so a first start that dies between
//! creating the file and that commit leaves an empty file the next start
//! takes as new. Otherwise the start refuses, and writes why into the
//! suspect mark, so every later start refuses too, until the file is
//! restored or moved away (then the start creates a new store).
use std::{fs, path::Path};

use super::integrity::{CLEAN_FILE, CREATING, SUSPECT_FILE, Start};
use super::{DB_FILE, LOCK_FILE, StoreError, errors::io_error};

/// What `errand.db` is, before SQLite opens it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DbFile {
    Missing,
    /// 0 bytes.
    Empty,
    Written,
}

pub(super) fn db_file(db: &Path) -> Result<DbFile, StoreError> {
    match fs::metadata(db) {
        Ok(m) if m.len() == 0 => Ok(DbFile::Empty),
        Ok(_) => Ok(DbFile::Written),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DbFile::Missing),
        Err(e) => Err(io_error(format!("cannot read {}", db.display()), e)),
    }
}

pub(super) fn wal_len(db: &Path) -> u64 {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    fs::metadata(Path::new(&name)).map_or(0, |m| m.len())
}

/// What in `data_dir` says a store was written there (SQLite committed to
/// its `errand.db`), each as the refusal names it; empty when nothing
/// does (see the module's doc). `lock_existed`: the lock file was there
/// before this start made it (it counts only with no suspect mark: every
/// start that creates the file leaves one, and removes it once the store
/// is written).
pub(super) fn store_evidence(data_dir: &Path, lock_existed: bool) -> Vec<String> {
    let mut evidence = Vec::new();
    if let Ok(said) = fs::read_to_string(data_dir.join(CLEAN_FILE)) {
        let len = said.split_whitespace().next().unwrap_or("?");
        evidence.push(format!(
            "{CLEAN_FILE}, left by the last clean stop, says errand.db was {len} bytes long"
        ));
    }
    let wal = wal_len(&data_dir.join(DB_FILE));
    if wal > 0 {
        evidence.push(format!("errand.db-wal ({wal} bytes) is there"));
    }
    match fs::read_to_string(data_dir.join(SUSPECT_FILE)) {
        Ok(said) if said.trim() == CREATING => {}
        Ok(said) => evidence.push(format!(
            "{SUSPECT_FILE} says: {}",
            crate::error::cut(said.trim(), 300)
        )),
        Err(_) if lock_existed => evidence.push(format!(
            "{LOCK_FILE} says a server ran on this data dir, and no start was left creating \
             the store"
        )),
        Err(_) => {}
    }
    evidence
}

/// The refusal of `db`, which `is` (empty, say) though `evidence` says a
/// store was written in its data dir.
pub(super) fn lost(db: &Path, is: &str, evidence: &[String]) -> StoreError {
    StoreError::Internal(format!(
        "{} {is}, but a store was written in this data dir ({}): a new, empty store over it \
         would lose every task and completion it held. Move errand.db, and errand.db-wal and \
         errand.db-shm if there, out of the data dir (keep them: the WAL may hold its latest \
         changes), then restore errand.db from a backup, or start without one to begin empty",
        db.display(),
        evidence.join("; ")
    ))
}

/// The refusal of `db` when it holds no errand schema (its schema version
/// is 0), if the data dir says a store was written (`start`).
pub(super) fn no_schema(db: &Path, start: &Start) -> Result<(), StoreError> {
    if start.written_before.is_empty() {
        return Ok(());
    }
    Err(lost(
        db,
        "holds no errand store (a SQLite file with nothing in it)",
        &start.written_before,
    ))
}
