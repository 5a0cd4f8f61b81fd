//! Opening the data dir: its lock file, the file checks and the schema
//! migrations of `errand.db`.
use std::{
    fs::{File, OpenOptions},
    io::{Read, Seek, Write},
    path::Path,
};

use rusqlite::{Connection, OpenFlags};
use tracing::{info, warn};

use super::errors::{io_error, open_error};
use super::integrity::{Start, StartCheck, quick_check};
use super::lost::no_schema;
use super::wal_vfs;
use super::{LOCK_FILE, StoreError};

/// Marks `errand.db` as errand's ("ERND"), so a foreign SQLite file is refused.
pub(super) const APPLICATION_ID: i32 = 0x4552_4e44;

/// Schema migrations; `PRAGMA user_version` is how many have been applied.
/// Only ever append.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: tasks carrying their completion; per-session seq counters.
    "CREATE TABLE tasks (
        id              BLOB NOT NULL UNIQUE,
        session         TEXT NOT NULL,
        tool            TEXT NOT NULL,
        arguments       TEXT NOT NULL,
        timeout_ns      INTEGER NOT NULL,
        idempotency_key TEXT,
        created_at      INTEGER NOT NULL,
        state           INTEGER NOT NULL,
        attempts        INTEGER NOT NULL,
        started_at      INTEGER,
        finished_at     INTEGER,
        result          TEXT,
        error_code      TEXT,
        error_message   TEXT,
        seq             INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX tasks_unfinished ON tasks (created_at) WHERE state < 2;
    CREATE UNIQUE INDEX tasks_idempotency ON tasks (session, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX tasks_completions ON tasks (session, seq) WHERE seq > 0;
    CREATE INDEX tasks_finished ON tasks (finished_at) WHERE seq > 0;
    CREATE TABLE sessions (
        session  TEXT PRIMARY KEY,
        last_seq INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // 2: a queued task's deadline (ns since the epoch), so a queue timeout
    // holds across restarts; NULL in older rows.
    "ALTER TABLE tasks ADD COLUMN queue_deadline INTEGER;",
    // 3: the tool registry, so a known tool outlives a restart; times in ns
    // since the epoch.
    "CREATE TABLE tools (
        name             TEXT PRIMARY KEY,
        description      TEXT NOT NULL,
        input_schema     TEXT NOT NULL,
        timeout_ms       INTEGER NOT NULL,
        queue_timeout_ms INTEGER NOT NULL,
        last_served_at   INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // 4: issue 17's call options (result budget, the arguments' canonical
    //    hash, dedup, fallback) and finish notes (summary, the fallback that
    //    answered). At most one unfinished joinable task per call: the
    //    unique index makes joins atomic.
    "ALTER TABLE tasks ADD COLUMN result_budget INTEGER;
    ALTER TABLE tasks ADD COLUMN args_hash TEXT;
    ALTER TABLE tasks ADD COLUMN joinable INTEGER;
    ALTER TABLE tasks ADD COLUMN fallback TEXT;
    ALTER TABLE tasks ADD COLUMN summary TEXT;
    ALTER TABLE tasks ADD COLUMN answered_by TEXT;
    CREATE UNIQUE INDEX tasks_in_flight ON tasks (session, tool, args_hash)
        WHERE joinable = 1 AND state < 2;
    CREATE INDEX tasks_last_good ON tasks (session, tool, args_hash, finished_at)
        WHERE state = 2;",
    // 5 (issue 17): a task's delivery policy, resolved at submit (1
    // WHEN_IDLE, 2 INTERRUPT, 3 SILENT; older rows read WHEN_IDLE), and
    // each session's acknowledged seq.
    "ALTER TABLE tasks ADD COLUMN delivery INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE sessions ADD COLUMN acked_seq INTEGER NOT NULL DEFAULT 0;",
    // 6: a tool's delivery, dedup, budget, fallback and cancel policy, kept
    // beside its definition (JSON text; empty: none set).
    "ALTER TABLE tools ADD COLUMN policy TEXT NOT NULL DEFAULT '';",
    // 7: the task a retry repeats (`RetryTask`); NULL for submitted tasks.
    "ALTER TABLE tasks ADD COLUMN retry_of BLOB;",
    // 8 (issue 20): the last-good index holds only the successes that can
    //    answer a last-good fallback (see `last_good_candidate!`).
    concat!(
        "DROP INDEX tasks_last_good;
        CREATE INDEX tasks_last_good ON tasks (session, tool, args_hash, finished_at) WHERE ",
        crate::store::sql::call_columns::last_good_candidate!(),
        ";"
    ),
    // 9: listings across sessions (the dashboard's newest first, a tenant's
    //    tasks) walk this index and stop at their page, instead of sorting
    //    every retained task for each page. It grows at its end (times
    //    increase), so it costs a task's write next to nothing (A/B: 98.0
    //    against 98.3 µs of server CPU per task); an index per session
    //    measured +9 % and was left out.
    "CREATE INDEX tasks_listed ON tasks (created_at, id);",
];

/// Takes the data dir's lock file, or says who holds it.
pub(super) fn lock_data_dir(data_dir: &Path) -> Result<File, StoreError> {
    let path = data_dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io_error(format!("cannot open the lock file {}", path.display()), e))?;
    match fs4::FileExt::try_lock(&file) {
        Ok(()) => {}
        Err(fs4::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let by = if holder.is_empty() {
                String::new()
            } else {
                format!(" (process {holder})")
            };
            return Err(StoreError::Unavailable(format!(
                "the data dir {} is in use by another errand server{by}: stop that server or \
                 choose another --data-dir",
                data_dir.display()
            )));
        }
        Err(fs4::TryLockError::Error(e)) => {
            return Err(io_error(format!("cannot lock {}", path.display()), e));
        }
    }
    // Who holds the lock, for the message above; only a hint.
    let _ = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| write!(file, "{}", std::process::id()));
    Ok(file)
}

/// The schema version of `errand.db` as `conn` reads it: 0 for a file
/// with no errand store in it yet. Refuses (with what to do) another
/// program's SQLite file and a file written by a newer errand: what both
/// `errand serve` and `errand check-store` refuse.
pub(super) fn schema_version(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    let (app_id, version): (i32, i64) = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .and_then(|app| {
            Ok((
                app,
                conn.query_row("PRAGMA user_version", [], |r| r.get(0))?,
            ))
        })
        .map_err(|e| open_error(path, e))?;
    if app_id != 0 && app_id != APPLICATION_ID || app_id == 0 && version != 0 {
        return Err(StoreError::Internal(format!(
            "{} is not an errand database (another program's SQLite file): move it away or \
             choose another --data-dir",
            path.display()
        )));
    }
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::Internal(format!(
            "{} has schema version {version}, newer than this errand knows ({known}): it was \
             written by a newer errand; run that version or a later one",
            path.display()
        )));
    }
    Ok(version)
}

/// Opens the write connection: refuses a file with no errand store where
/// the data dir says one was written (`start`; see `integrity.rs`), checks
/// the file (the whole of it with [`StartCheck::Now`], and with
/// [`StartCheck::Beside`] when a migration is to run), migrates the
/// schema. Returns the connection and the check still to run beside the
/// store.
pub(super) fn open_writer(
    path: &Path,
    start: &Start,
) -> Result<(Connection, StartCheck), StoreError> {
    let err = |e| open_error(path, e);
    let check = start.check;
    // WAL appends gathered into one write per commit (`wal_vfs.rs`), which
    // needs the `synchronous = FULL` set below.
    let conn = match wal_vfs::register() {
        Ok(vfs) => Connection::open_with_flags_and_vfs(path, OpenFlags::default(), vfs),
        Err(code) => {
            warn!(
                code,
                "cannot register the store's WAL VFS: SQLite's default is used"
            );
            Connection::open(path)
        }
    }
    .map_err(err)?;
    // Read before anything is written.
    let version = schema_version(&conn, path)?;
    if version == 0 {
        no_schema(path, start)?;
    }
    let known = MIGRATIONS.len() as i64;
    // Before any table exists this takes effect; on an existing file it is a
    // no-op. It lets purges give space back to the file system.
    conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL")
        .map_err(err)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Internal(format!(
            "{}: cannot switch to WAL mode (got {mode})",
            path.display()
        )));
    }
    // cache_size: 16 MiB of pages, so the pages a batch touches are mostly
    // still cached (the default 2 MiB cost a read per few changes under
    // load). temp_store: a savepoint (a tool registration) or a statement
    // that may fail midway journals the pages it changes; in memory that is
    // a copy, not a write to a temporary file.
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA busy_timeout = 5000;
         PRAGMA journal_size_limit = 67108864;
         PRAGMA cache_size = -16384;
         PRAGMA temp_store = MEMORY;",
    )
    .map_err(err)?;
    // A migration rewrites tables: not on a file that may be corrupt.
    let now = check == StartCheck::Now || check == StartCheck::Beside && version < known;
    if now {
        quick_check(&conn, path)?;
    }
    let left = if now { StartCheck::Skip } else { check };
    let mut conn = conn;
    if version < known {
        let tx = conn.transaction().map_err(err)?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql).map_err(err)?;
            info!(version = i + 1, "store schema migrated");
        }
        tx.execute_batch(&format!(
            "PRAGMA user_version = {known}; PRAGMA application_id = {APPLICATION_ID};"
        ))
        .map_err(err)?;
        tx.commit().map_err(err)?;
    }
    conn.set_prepared_statement_cache_capacity(32);
    Ok((conn, left))
}
