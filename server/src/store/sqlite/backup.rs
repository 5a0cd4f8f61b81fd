//! `errand backup`: a consistent copy of a data dir's `errand.db`, also
//! while a server writes it.
//!
//! A copy of the file alone misses every commit still in the WAL (under
//! [`super::checkpoint::WAL_PAGES`] pages, that is all recent work), so the
//! copy is taken through SQLite: a read-only connection opens one read
//! transaction, a snapshot of the last commit that includes the WAL, and
//! SQLite's online backup API copies its pages [`STEP_PAGES`] at a time.
//! Holding that one snapshot across the steps is what makes the copy
//! finish on a busy server: without it, every commit of the server's
//! between two steps would restart the copy. A WAL reader never blocks
//! the server's writer; while it holds its snapshot the server's
//! (PASSIVE) checkpoints cannot copy past it, so the WAL grows by what the
//! server commits meanwhile, and restarts after. The server's data-dir
//! lock is not taken: this is a reader, as `errand check-store` is.
//!
//! The copy is written in a directory of its own beside `OUTPUT` (so
//! SQLite's journal files stay in it), switched to a rollback journal (one
//! self-contained file), checked as `errand check-store` checks a store
//! (`PRAGMA integrity_check`, every row decoded), fsynced, and only then
//! put under `OUTPUT` (a link, which fails if `OUTPUT` appeared meanwhile;
//! with `force`, a rename over it) and the directory fsynced. A failure or
//! a crash at any point leaves no file under `OUTPUT`: at worst a hidden
//! `.NAME.errand-backup-*` directory beside it.
use std::{
    fs::{self, DirBuilder, File, OpenOptions},
    io::ErrorKind,
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use rusqlite::{
    Connection, ErrorCode, OpenFlags,
    backup::{Backup, StepResult},
};

use super::errors::{io_error, open_error};
use super::files::{DIR_MODE, FILE_MODE};
use super::integrity::{CLEAN_FILE, CREATING, SUSPECT_FILE};
use super::lost::{DbFile, db_file, lost, store_evidence};
use super::{DB_FILE, LOCK_FILE, StoreError, decode, schema};

/// Pages (4 KiB each: 4 MiB) copied per step of the online backup.
const STEP_PAGES: i32 = 1024;

/// Longest the copy retries a step that found its file locked.
const BUSY_LIMIT: Duration = Duration::from_secs(5);

/// What `errand backup` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackedUp {
    /// Task rows in the copy (queued, running and finished ones).
    pub tasks: u64,
    /// Of those, tasks not finished (queued or running).
    pub unfinished: u64,
    /// Sessions (each keeps its last completion seq).
    pub sessions: u64,
    /// Stored tool definitions.
    pub tools: u64,
    /// The copy's length in bytes.
    pub bytes: u64,
    /// Rows of the copy that do not decode, as `errand check-store` names
    /// them (with the statement that removes each): the store holds them
    /// too, and the copy keeps them as they are. `None`: every row reads.
    pub unreadable: Option<String>,
}

/// Copies the store of `data_dir` to the file `output`, as the module's
/// doc says, beside a running server or none.
///
/// # Errors
/// Before anything is written: no store in `data_dir` (missing, or empty),
/// a file `errand serve` would refuse (another program's, a newer
/// schema's, an emptied one), `output` already there (unless `force`), a
/// directory, one of the store's own files, or in a directory that does
/// not exist. After: an I/O error (a full disk is [`StoreError::Full`]),
/// or a copy that fails its check (the store is corrupt: `errand
/// check-store` says where). No file is left under `output` on any error.
pub fn backup_store(data_dir: &Path, output: &Path, force: bool) -> Result<BackedUp, StoreError> {
    let db = data_dir.join(DB_FILE);
    let evidence = store_evidence(data_dir, data_dir.join(LOCK_FILE).exists());
    match db_file(&db)? {
        DbFile::Missing => {
            return Err(StoreError::Internal(format!(
                "{} does not exist: nothing to back up; is --data-dir (ERRAND_DATA_DIR) the \
                 one given to errand serve?",
                db.display()
            )));
        }
        DbFile::Empty if !evidence.is_empty() => {
            return Err(lost(&db, "is empty (0 bytes)", &evidence));
        }
        DbFile::Empty => return Err(no_store_yet(&db)),
        DbFile::Written => {}
    }
    let target = Target::check(data_dir, output, force)?;
    let src = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.busy_timeout(BUSY_LIMIT).map(|()| c))
        .map_err(|e| open_error(&db, e))?;
    if schema::schema_version(&src, &db)? == 0 {
        let creating = fs::read_to_string(data_dir.join(SUSPECT_FILE))
            .is_ok_and(|said| said.trim() == CREATING);
        return Err(if evidence.is_empty() || creating {
            no_store_yet(&db)
        } else {
            lost(
                &db,
                "holds no errand store (a SQLite file with nothing in it)",
                &evidence,
            )
        });
    }
    let work = WorkDir::create(&target)?;
    let copy = work.path.join(&target.name);
    // 0600 as the store's own files: it holds every tenant's tasks.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(&copy)
        .map_err(|e| io_error(format!("cannot create {}", copy.display()), e))?;
    let mut dst = Connection::open(&copy).map_err(|e| open_error(&copy, e))?;
    copy_snapshot(&src, &mut dst, &db, &copy)?;
    drop(src);
    let mut backed_up = check_copy(&dst, &copy, output)?;
    dst.close().map_err(|(_, e)| open_error(&copy, e))?;
    File::open(&copy)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_error(format!("cannot sync {}", copy.display()), e))?;
    target.place(&copy)?;
    drop(work);
    sync_dir(&target.dir)?;
    backed_up.bytes = fs::metadata(output)
        .map_err(|e| io_error(format!("cannot read {}", output.display()), e))?
        .len();
    Ok(backed_up)
}

fn no_store_yet(db: &Path) -> StoreError {
    StoreError::Internal(format!(
        "{} holds no store yet (no server has written to it): nothing to back up",
        db.display()
    ))
}

/// Copies every page of `src`'s last commit into `dst`, in steps, within
/// one read transaction of `src` (see the module's doc).
fn copy_snapshot(
    src: &Connection,
    dst: &mut Connection,
    db: &Path,
    copy: &Path,
) -> Result<(), StoreError> {
    // The snapshot: a deferred transaction reads nothing until its first
    // read, so read once.
    src.execute_batch("BEGIN; SELECT count(*) FROM sqlite_schema;")
        .map_err(|e| open_error(db, e))?;
    let backup = Backup::new(src, dst).map_err(|e| open_error(copy, e))?;
    let mut busy_since: Option<Instant> = None;
    let mut remaining = i32::MAX;
    loop {
        match backup.step(STEP_PAGES).map_err(|e| open_error(copy, e))? {
            StepResult::Done => break,
            StepResult::More => busy_since = None,
            StepResult::Busy | StepResult::Locked => {
                let since = *busy_since.get_or_insert_with(Instant::now);
                if since.elapsed() > BUSY_LIMIT {
                    return Err(StoreError::Unavailable(format!(
                        "the copy of {} found it locked for {} s: try again",
                        db.display(),
                        BUSY_LIMIT.as_secs()
                    )));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => {}
        }
        // The snapshot is held, so the copy never restarts; were it to,
        // this stops it rather than loop.
        let left = backup.progress().remaining;
        if left > remaining {
            return Err(StoreError::Internal(format!(
                "the copy of {} restarted (the file changed under its snapshot): try again",
                db.display()
            )));
        }
        remaining = left;
    }
    drop(backup);
    src.execute_batch("COMMIT").map_err(|e| open_error(db, e))
}

/// Makes the copy one self-contained file and checks it as `errand
/// check-store` does; what it holds.
fn check_copy(dst: &Connection, copy: &Path, output: &Path) -> Result<BackedUp, StoreError> {
    let err = |e| open_error(copy, e);
    // The copy's header says WAL, as the store's: a rollback journal
    // leaves it one file, with no -wal or -shm to keep beside it.
    let mode: String = dst
        .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
        .map_err(err)?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(StoreError::Internal(format!(
            "{}: cannot leave WAL mode (got {mode})",
            copy.display()
        )));
    }
    // As check-store's check; a page SQLite cannot even read is a problem.
    let problems: Vec<String> = match dst
        .prepare("PRAGMA integrity_check(20)")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
    {
        Ok(problems) => problems,
        Err(e)
            if matches!(
                e.sqlite_error_code(),
                Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
            ) =>
        {
            vec![e.to_string()]
        }
        Err(e) => return Err(err(e)),
    };
    if problems != ["ok"] {
        return Err(StoreError::Internal(format!(
            "the copy failed its check ({}), so the store is likely damaged too: errand \
             check-store on its data dir says what is wrong",
            problems.join("; ")
        )));
    }
    let unreadable = decode::unreadable_rows(dst, &output.display().to_string()).map_err(err)?;
    let count = |sql: &str| {
        dst.query_row(sql, [], |r| r.get::<_, i64>(0))
            .map(|n| n.max(0) as u64)
            .map_err(err)
    };
    Ok(BackedUp {
        tasks: count("SELECT count(*) FROM tasks")?,
        unfinished: count("SELECT count(*) FROM tasks WHERE seq = 0")?,
        sessions: count("SELECT count(*) FROM sessions")?,
        tools: count("SELECT count(*) FROM tools")?,
        bytes: 0,
        unreadable,
    })
}

/// Where the copy goes, checked before anything is copied.
struct Target {
    /// `OUTPUT` as given.
    path: PathBuf,
    /// Its directory ("." for a bare name).
    dir: PathBuf,
    /// Its file name.
    name: String,
    force: bool,
}

impl Target {
    fn check(data_dir: &Path, output: &Path, force: bool) -> Result<Self, StoreError> {
        let refuse = |why: String| Err(StoreError::Internal(why));
        let shown = output.display();
        let Some(name) = output.file_name().and_then(|n| n.to_str()) else {
            return refuse(format!(
                "OUTPUT {shown} names no file (or not in UTF-8): give the path of the file to \
                 write, e.g. /backups/errand.db"
            ));
        };
        let dir = match output.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        match fs::metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return refuse(format!("{} is not a directory", dir.display())),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return refuse(format!(
                    "the directory {} of OUTPUT does not exist: create it first (mkdir -p)",
                    dir.display()
                ));
            }
            Err(e) => return Err(io_error(format!("cannot read {}", dir.display()), e)),
        }
        // By name (it may not exist yet) or by inode (a link to one).
        let own = [
            DB_FILE,
            "errand.db-wal",
            "errand.db-shm",
            LOCK_FILE,
            CLEAN_FILE,
            SUSPECT_FILE,
        ];
        let in_data_dir = same_dir(&dir, data_dir);
        let existing = fs::metadata(output).ok();
        let linked = existing.as_ref().is_some_and(|m| {
            own.iter().any(|f| {
                fs::metadata(data_dir.join(f))
                    .is_ok_and(|o| o.dev() == m.dev() && o.ino() == m.ino())
            })
        });
        if in_data_dir && own.contains(&name) || linked {
            return refuse(format!(
                "OUTPUT {shown} is one of the store's own files in the data dir: write the \
                 backup elsewhere (another directory, or another disk)"
            ));
        }
        match existing {
            Some(m) if m.is_dir() && same_dir(output, data_dir) => {
                return refuse(format!(
                    "OUTPUT {shown} is the data dir: write the backup elsewhere (another \
                     directory, or another disk)"
                ));
            }
            Some(m) if m.is_dir() => {
                return refuse(format!(
                    "OUTPUT {shown} is a directory: give the path of the file to write, e.g. \
                     {}",
                    output.join(DB_FILE).display()
                ));
            }
            Some(_) if !force => {
                return refuse(format!(
                    "OUTPUT {shown} already exists: give --force to replace it (it is replaced \
                     only once the copy is whole and checked), or choose another name"
                ));
            }
            _ => {}
        }
        Ok(Self {
            path: output.to_path_buf(),
            dir,
            name: name.to_string(),
            force,
        })
    }

    /// Puts the finished `copy` under `OUTPUT`: a hard link, which fails if
    /// something appeared there meanwhile; with `force`, or where the file
    /// system has no hard links, a rename.
    fn place(&self, copy: &Path) -> Result<(), StoreError> {
        let failed = |e| io_error(format!("cannot write {}", self.path.display()), e);
        if self.force {
            return fs::rename(copy, &self.path).map_err(failed);
        }
        match fs::hard_link(copy, &self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(StoreError::Internal(format!(
                "OUTPUT {} appeared while the copy was taken: it is kept; give --force to \
                 replace it",
                self.path.display()
            ))),
            // No hard links here (a FAT file system, say).
            Err(_) if !self.path.exists() => fs::rename(copy, &self.path).map_err(failed),
            Err(e) => Err(failed(e)),
        }
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    matches!((fs::canonicalize(a), fs::canonicalize(b)), (Ok(a), Ok(b)) if a == b)
}

/// The directory the copy is made in, beside `OUTPUT`; removed with
/// whatever is left in it when dropped.
struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    fn create(target: &Target) -> Result<Self, StoreError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = target.dir.join(format!(
            ".{}.errand-backup-{}-{nanos}",
            target.name,
            std::process::id()
        ));
        DirBuilder::new()
            .mode(DIR_MODE)
            .create(&path)
            .map_err(|e| io_error(format!("cannot create {}", path.display()), e))?;
        Ok(Self { path })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(format!("cannot sync the directory {}", dir.display()), e))
}
