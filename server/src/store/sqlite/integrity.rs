//! When the store checks `errand.db` for corruption, so that start time does
//! not grow with the store.
//!
//! `PRAGMA quick_check` reads every page: seconds for a day of retention. A
//! clean stop therefore leaves a mark, `errand.clean`, naming the file as it
//! was left (length, modification time, inode), after every connection has
//! closed and SQLite has folded the WAL into it. The next start that finds
//! the mark, the same file and no WAL skips the check.
//!
//! - **No mark** (a crash, a kill, a first start by this version): the check
//!   runs beside the serving store, on a connection of its own
//!   ([`BackgroundCheck`]), so a restart after a crash is as quick as after a
//!   clean stop. SQLite's WAL keeps the file whole across crashes; the check
//!   is for what it cannot help (a disk that lied, a file damaged by hand).
//!   If it finds corruption, every later write fails with what it found
//!   (the writer refuses them too) and `errand serve` stops.
//! - **A mark that no longer fits the file** (changed or replaced while the
//!   server was down), a schema migration to run, or **`errand.suspect`**:
//!   the check runs before serving, and a corrupt file is refused.
//!
//! `errand.suspect` is there whenever the file is not known to be sound: a
//! start that must check leaves it before anything is written, and only a
//! check that finds the file sound removes it; one that finds corruption
//! writes what it found into it. So a run that dies before its check ends,
//! or that found corruption, makes the next start check first and refuse a
//! corrupt file, until it is restored (or moved away). The clean mark is
//! removed, durably, before anything is written, so a crash of that run is
//! never mistaken for a clean stop; a stop leaves it only when no check was
//! due or the check found the file sound. `errand check-store` checks the
//! whole file on demand, also beside a running server.
//!
//! An empty or schema-less `errand.db` where a store was written is refused
//! before SQLite opens it (`lost.rs`).
use std::{
    fs::{self, File},
    io::Write,
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::Path,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use rusqlite::{Connection, ErrorCode, InterruptHandle, OpenFlags};
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::lost::{DbFile, db_file, lost, store_evidence, wal_len};
use super::{DB_FILE, LOCK_FILE, StoreError, decode, errors::io_error, errors::open_error, schema};

/// The clean-stop mark inside the data dir.
pub const CLEAN_FILE: &str = "errand.clean";

/// The mark left while `errand.db` is not known to be sound (a check is due,
/// running, or found corruption, which the mark then names): the next start
/// checks before serving.
pub const SUSPECT_FILE: &str = "errand.suspect";

/// What the suspect mark says while a start creates `errand.db` (it was
/// missing, or empty with nothing saying a store was written): an empty
/// file beside it is a store still to be created.
pub(super) const CREATING: &str = "a start began creating errand.db and had not committed to it";

/// What the suspect mark says while a start checks a file that holds data.
const CHECKING: &str = "a start began checking errand.db and did not find it sound";

/// When this start checks `errand.db`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StartCheck {
    /// The last run stopped cleanly and left the file as it is.
    Skip,
    /// Before serving: a corrupt file is refused.
    Now,
    /// Beside the serving store ([`BackgroundCheck`]).
    Beside,
}

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

/// What this start found: when it checks `errand.db`, and whether it may
/// take a file with no errand schema in it as a new store.
#[derive(Debug, Clone)]
pub(super) struct Start {
    pub check: StartCheck,
    /// What says a store was written in this data dir: a file that holds
    /// no errand schema is refused, naming these. Empty when this start
    /// creates the store (the file was missing, or a start was creating
    /// it), or nothing says so.
    pub written_before: Vec<String>,
}

/// When this start must check `errand.db` (see the module's doc), and
/// whether it may create a store in it. Removes the clean-stop mark
/// either way, durably, before the store writes anything; when a check is
/// due, leaves [`SUSPECT_FILE`] until a check finds the file sound, so
/// that a run that dies before its check ends (a file too damaged to
/// recover from, say) makes the next start check before serving. Refuses
/// an empty file, or a missing one beside a WAL, where the data dir says
/// a store was written (see the module's doc), before SQLite opens it.
/// `lock_existed`: the lock file was there before this start made it.
pub(super) fn start_check(data_dir: &Path, lock_existed: bool) -> Result<Start, StoreError> {
    let db = data_dir.join(DB_FILE);
    let suspect = data_dir.join(SUSPECT_FILE);
    let said = fs::read_to_string(&suspect).ok();
    let evidence = store_evidence(data_dir, lock_existed);
    let creating = match db_file(&db)? {
        DbFile::Empty if !evidence.is_empty() => {
            // For every later start, unless a mark says more already.
            if said.as_deref().is_none_or(|s| s.trim() == CHECKING) {
                let why = format!(
                    "errand.db was found empty (0 bytes), though a store was written here: {}",
                    evidence.join("; ")
                );
                write_mark(data_dir, SUSPECT_FILE, &why)?;
            }
            remove_mark(data_dir, CLEAN_FILE)?;
            return Err(lost(&db, "is empty (0 bytes)", &evidence));
        }
        DbFile::Missing if wal_len(&db) > 0 => {
            // SQLite would delete the WAL of the file moved away.
            return Err(StoreError::Internal(format!(
                "{} is missing, but its WAL errand.db-wal ({} bytes) is there: a WAL belongs \
                 to the file it was written beside. Move errand.db-wal (and errand.db-shm) out \
                 of the data dir with the file they belong to, or put that file back",
                db.display(),
                wal_len(&db)
            )));
        }
        DbFile::Missing => {
            // The lock file alone: a start that died before making the file.
            let evidence = store_evidence(data_dir, false);
            if !evidence.is_empty() {
                warn!(
                    evidence = %evidence.join("; "),
                    "errand.db is missing: starting a new, empty store (if it was lost rather \
                     than moved away, stop the server and restore it from a backup)"
                );
            }
            true
        }
        DbFile::Empty => true,
        DbFile::Written => said.as_deref().map(str::trim) == Some(CREATING),
    };
    let check = if creating {
        StartCheck::Now
    } else if let Some(why) = &said {
        info!(mark = %why.trim(), "errand.db was not found sound since: checking it before serving");
        StartCheck::Now
    } else if let Ok(said) = fs::read_to_string(data_dir.join(CLEAN_FILE)) {
        if fingerprint(&db).is_some_and(|now| now == said.trim()) && !wal_present(&db) {
            StartCheck::Skip
        } else {
            info!("errand.db changed since the last clean stop: checking it before serving");
            StartCheck::Now
        }
    } else {
        StartCheck::Beside
    };
    remove_mark(data_dir, CLEAN_FILE)?;
    if creating {
        write_mark(data_dir, SUSPECT_FILE, CREATING)?;
    } else if check != StartCheck::Skip && said.is_none() {
        write_mark(data_dir, SUSPECT_FILE, CHECKING)?;
    }
    Ok(Start {
        check,
        written_before: if creating { Vec::new() } else { evidence },
    })
}

/// Removes the mark `name` from the data dir, durably; no mark is no error.
pub(super) fn remove_mark(data_dir: &Path, name: &str) -> Result<(), StoreError> {
    let mark = data_dir.join(name);
    match fs::remove_file(&mark) {
        Ok(()) => sync_dir(data_dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(format!("cannot remove {}", mark.display()), e)),
    }
}

/// Writes `text` to the mark `name` in the data dir (mode 0600, as the
/// database's files), durably.
fn write_mark(data_dir: &Path, name: &str, text: &str) -> Result<(), StoreError> {
    let mark = data_dir.join(name);
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&mark)
        .and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.sync_all()
        })
        .map_err(|e| io_error(format!("cannot write {}", mark.display()), e))
        .and_then(|()| sync_dir(data_dir))
}

/// Leaves the clean-stop mark; call once every connection is closed. A
/// failure only costs the next start a full check.
pub(super) fn leave_clean_mark(data_dir: &Path) {
    let db = data_dir.join(DB_FILE);
    let (Some(said), false) = (fingerprint(&db), wal_present(&db)) else {
        warn!("the store's WAL outlived its connections: the next start checks the whole store");
        return;
    };
    if let Err(e) = write_mark(data_dir, CLEAN_FILE, &said) {
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
        "{} is corrupt ({}): restore it from a backup (one errand backup made; remove \
         errand.db-wal and errand.db-shm beside it), or move it away, with them, to start empty",
        path.display(),
        problems.join("; ")
    )))
}

/// What `errand check-store` found, when it found nothing wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// Every page read and every row decoded: the file is sound.
    Sound,
    /// `errand.db` holds no store yet (0 bytes, or no schema), and nothing
    /// in the data dir says one was written: `errand serve` creates one.
    Empty,
}

/// Checks the data dir's `errand.db` as `errand check-store` does, on a
/// read-only connection (a running server's dir too: WAL readers see its
/// last commit): refuses what `errand serve` refuses at open (a file that
/// lost its store, another program's file, a schema from a newer errand);
/// then `PRAGMA integrity_check` (at most 20 problems), then every task and
/// tool row decoded (`decode.rs`), naming those that do not, with the
/// statement that removes each. `Ok` when nothing is wrong; what is, or
/// why the file could not be read, otherwise.
pub fn check_store(data_dir: &Path) -> Result<Checked, StoreError> {
    let path = data_dir.join(DB_FILE);
    // Read-only: the lock file counts as it is now.
    let evidence = store_evidence(data_dir, data_dir.join(LOCK_FILE).exists());
    match db_file(&path)? {
        DbFile::Missing => {
            return Err(StoreError::Internal(format!(
                "{} does not exist: is --data-dir right?",
                path.display()
            )));
        }
        // Before SQLite opens it (see `start_check`).
        DbFile::Empty if !evidence.is_empty() => {
            return Err(lost(&path, "is empty (0 bytes)", &evidence));
        }
        DbFile::Empty => return Ok(Checked::Empty),
        DbFile::Written => {}
    }
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| open_error(&path, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| open_error(&path, e))?;
    if schema::schema_version(&conn, &path)? == 0 {
        let creating = fs::read_to_string(data_dir.join(SUSPECT_FILE))
            .is_ok_and(|said| said.trim() == CREATING);
        if creating || evidence.is_empty() {
            return Ok(Checked::Empty);
        }
        return Err(lost(
            &path,
            "holds no errand store (a SQLite file with nothing in it)",
            &evidence,
        ));
    }
    pages_sound(&conn, &path)?;
    match decode::unreadable_rows(&conn, &path.display().to_string()) {
        Ok(None) => Ok(Checked::Sound),
        Ok(Some(report)) => Err(StoreError::Internal(format!(
            "{}: {report}",
            path.display()
        ))),
        Err(e) => Err(open_error(&path, e)),
    }
}

/// `PRAGMA integrity_check` (at most 20 problems), as `errand check-store`
/// runs it: every page, index and constraint of the file at `path`.
pub(super) fn pages_sound(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let problems: Vec<String> = conn
        .prepare("PRAGMA integrity_check(20)")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| open_error(path, e))?;
    verdict(path, problems)
}

/// Where a check beside the serving store stands.
#[derive(Debug, Clone)]
pub enum CheckState {
    /// Still reading the file.
    Running,
    /// Every page read; the file is sound.
    Sound,
    /// Corruption found: what the check found, with the file's path (for
    /// the operator; writes fail from then on with a shorter message).
    Corrupt(StoreError),
    /// Stopped before the end (the store closed first), or the file could
    /// not be read for the check: the next start checks again.
    Unfinished,
}

/// `PRAGMA quick_check` of `errand.db` on a read-only connection of its own,
/// on its own thread, while the store serves (after a crash; see the
/// module's doc). Stopping it interrupts the check.
pub(super) struct BackgroundCheck {
    state: watch::Receiver<CheckState>,
    interrupt: InterruptHandle,
    /// Set before interrupting: a check not yet begun does not begin.
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl BackgroundCheck {
    /// Starts checking `errand.db` in `data_dir`. On corruption the thread
    /// sets `corrupt` (which the store's writes read) before anything else.
    pub(super) fn start(
        data_dir: &Path,
        corrupt: Arc<OnceLock<StoreError>>,
    ) -> Result<Self, StoreError> {
        let path = data_dir.join(DB_FILE);
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| c.busy_timeout(Duration::from_secs(5)).map(|()| c))
            .map_err(|e| open_error(&path, e))?;
        let interrupt = conn.get_interrupt_handle();
        let stopping = Arc::new(AtomicBool::new(false));
        let (tx, state) = watch::channel(CheckState::Running);
        let (dir, stop) = (data_dir.to_path_buf(), stopping.clone());
        let thread = std::thread::Builder::new()
            .name("errand-store-check".into())
            .spawn(move || {
                let verdict = if stop.load(Ordering::Acquire) {
                    CheckState::Unfinished
                } else {
                    check_beside(&conn, &path, &dir, &corrupt)
                };
                tx.send_replace(verdict);
            })
            .map_err(|e| io_error("cannot start the store's check thread".into(), e))?;
        info!("errand.db was not closed cleanly: checking it while serving");
        Ok(Self {
            state,
            interrupt,
            stopping,
            thread: Some(thread),
        })
    }

    /// Waits until the check has ended, and says how.
    pub(super) async fn finished(&self) -> CheckState {
        let mut state = self.state.clone();
        let ended = state.wait_for(|s| !matches!(s, CheckState::Running)).await;
        ended.map_or(CheckState::Unfinished, |s| s.clone())
    }

    /// Interrupts the check if it still runs and waits for its thread.
    pub(super) fn stop(&mut self) -> CheckState {
        self.stopping.store(true, Ordering::Release);
        self.interrupt.interrupt();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            error!("the store's check thread panicked");
        }
        match &*self.state.borrow() {
            CheckState::Running => CheckState::Unfinished,
            state => state.clone(),
        }
    }
}

impl Drop for BackgroundCheck {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The check's thread: reads the whole file. Sound: removes
/// [`SUSPECT_FILE`]. Corrupt: sets `corrupt` first, logs it, and writes
/// what it found into [`SUSPECT_FILE`], so that the next start refuses
/// the file.
fn check_beside(
    conn: &Connection,
    path: &Path,
    data_dir: &Path,
    corrupt: &OnceLock<StoreError>,
) -> CheckState {
    let started = Instant::now();
    let problems: rusqlite::Result<Vec<String>> = conn
        .prepare("PRAGMA quick_check(5)")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect());
    let problems = match problems {
        Ok(problems) => problems,
        // A page SQLite cannot even read is corruption too.
        Err(rusqlite::Error::SqliteFailure(f, m))
            if matches!(f.code, ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) =>
        {
            vec![m.unwrap_or_else(|| f.to_string())]
        }
        Err(e) => {
            if e.sqlite_error_code() == Some(ErrorCode::OperationInterrupted) {
                info!("the check of errand.db was cut short: the next start checks it first");
            } else {
                warn!(error = %e, "errand.db could not be checked: the next start checks it first");
            }
            return CheckState::Unfinished;
        }
    };
    match verdict(path, problems) {
        Ok(()) => {
            let ms = started.elapsed().as_millis() as u64;
            if let Err(e) = remove_mark(data_dir, SUSPECT_FILE) {
                warn!(error = %e, "errand.db is sound, but the next start checks it again");
            }
            info!(ms, "errand.db checked: sound");
            CheckState::Sound
        }
        Err(e) => {
            // What callers are told: the operator's log and mark say where
            // and what was found.
            let _ = corrupt.set(StoreError::Internal(
                "the server's store file errand.db was found corrupt: its operator must \
                 restore it from a backup, or move it away to start empty"
                    .into(),
            ));
            error!(error = %e, "errand.db is corrupt: every write fails from now on");
            if let Err(w) = write_mark(data_dir, SUSPECT_FILE, &e.to_string()) {
                error!(error = %w, "the mark for the next start was not written");
            }
            CheckState::Corrupt(e)
        }
    }
}
