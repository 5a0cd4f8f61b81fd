//! The durable embedded store: SQLite in WAL mode with `synchronous=FULL`, in
//! `errand.db` inside the data dir. Once a call returns `Ok`, its change is on
//! disk (the WAL is fsynced at each commit).
//!
//! **Group commit.** One writer thread owns the only write connection. Callers
//! send their change over a channel and await a oneshot answer; the writer
//! takes everything queued (up to [`MAX_BATCH`]), applies it in one
//! transaction, commits with one fsync, and only then answers every caller.
//! Submits and results that arrive while a commit is in flight therefore
//! share the next fsync: the cost of durability is one fsync per batch, not
//! one per task. Each change is one statement, or a savepoint when it takes
//! several, so a change that fails (a full disk) fails alone, unless SQLite
//! abandons the whole transaction, in which case every change of that batch
//! fails with it.
//!
//! **Reads** (`get_task`, `completions_after`, `unfinished_tasks`) use a small
//! pool of separate connections on the blocking thread pool: WAL lets them run
//! while the writer commits, and they only ever see whole commits, so a
//! session's completions appear in `seq` order with no gap.
//!
//! **Data layout.** One `tasks` row per task; a finished task carries its
//! completion (`seq > 0`), so a completion costs no second row and removing a
//! completion removes its task and idempotency key with it. `sessions` keeps
//! each session's last seq, also after its completions are gone, so seqs never
//! repeat. The schema is versioned with `PRAGMA user_version` ([`MIGRATIONS`]);
//! a file written by a newer errand is refused rather than misread.
//!
//! **One server per data dir.** `errand.lock` in the data dir is held with an
//! exclusive advisory lock (`flock` through the `fs4` crate) for the store's
//! lifetime; a second server on the same dir fails at open with a clear error.
use std::{
    fs::{File, OpenOptions},
    io::{Read, Seek, Write},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    thread::JoinHandle,
    time::SystemTime,
};

use async_trait::async_trait;
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, params, types::Type};
use tokio::sync::Semaphore;
use tracing::{error, info, warn};
use uuid::Uuid;

pub use super::sql::batch::WriterStats;
use super::sql::{
    PURGE_CHUNK, Purge,
    batch::{self, Counters, MAX_BATCH, Reply, writer_gone},
    codec::{
        self, TaskRow, duration_to_i64, outcome_columns, state_code, task_columns, time_to_i64,
        to_i64,
    },
};
use super::{Inserted, Store, StoreError};
use crate::model::{CompletionRecord, Finish, TaskRecord, TaskState};

/// The database file inside the data dir.
pub const DB_FILE: &str = "errand.db";
/// The lock file inside the data dir, held while a server runs.
pub const LOCK_FILE: &str = "errand.lock";

/// Read connections kept open, and most reads running at once.
const READERS: usize = 4;
/// Marks `errand.db` as errand's ("ERND"), so a foreign SQLite file is refused.
const APPLICATION_ID: i32 = 0x4552_4e44;

/// Schema migrations; `PRAGMA user_version` is how many have been applied.
/// Only ever append.
const MIGRATIONS: &[&str] = &[
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
];

const SELECT_TASK: &str = concat!("SELECT ", task_columns!(), " FROM tasks WHERE id = ?1");
const SELECT_BY_KEY: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE session = ?1 AND idempotency_key = ?2"
);
const SELECT_UNFINISHED: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE state < 2 ORDER BY created_at"
);
const SELECT_COMPLETIONS: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE session = ?1 AND seq > 0 AND seq > ?2 ORDER BY seq LIMIT ?3"
);

/// The durable store. Dropping it lets the writer finish what is queued,
/// closes the database and releases the data dir.
pub struct SqliteStore {
    // Field order is drop order: the writer channel closes first, then the
    // thread is joined (in `Drop`), then readers close, the lock goes last.
    tx: Option<batch::Sender<Op>>,
    writer: Option<JoinHandle<()>>,
    readers: Arc<Readers>,
    read_permits: Semaphore,
    _lock: File,
}

impl SqliteStore {
    /// Opens (creating when missing) the data dir and `errand.db` in it.
    ///
    /// Fails with a message that says what to do when the dir is in use by
    /// another server, the file is not an errand database or is corrupt, or
    /// it was written by a newer errand.
    pub fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            io_error(
                format!("cannot create the data dir {}", data_dir.display()),
                e,
            )
        })?;
        let lock = lock_data_dir(data_dir)?;
        let path = data_dir.join(DB_FILE);
        let conn = open_writer(&path)?;
        let (tx, rx) = batch::queue();
        let writer = std::thread::Builder::new()
            .name("errand-store-writer".into())
            .spawn(move || Writer::new(conn, rx.counters()).run(rx))
            .map_err(|e| io_error("cannot start the store's writer thread".into(), e))?;
        let readers = Arc::new(Readers {
            path,
            idle: Mutex::new(Vec::new()),
        });
        // Open one reader now so a problem shows at start, not on first read.
        let first = readers.open()?;
        readers.put(first);
        info!(data_dir = %data_dir.display(), "store opened");
        Ok(SqliteStore {
            tx: Some(tx),
            writer: Some(writer),
            readers,
            read_permits: Semaphore::new(READERS),
            _lock: lock,
        })
    }

    /// What the writer has done so far.
    pub fn stats(&self) -> WriterStats {
        self.tx.as_ref().map(|tx| tx.stats()).unwrap_or_default()
    }

    fn queue(&self) -> Result<&batch::Sender<Op>, StoreError> {
        self.tx.as_ref().ok_or_else(writer_gone)
    }

    fn send(&self, op: Op) -> Result<(), StoreError> {
        self.queue()?.send(op)
    }

    /// Sends a change to the writer and waits until it is committed.
    async fn write<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T, StoreError> {
        self.queue()?.write(op).await
    }

    /// Runs a query on a read connection, on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        // At most READERS reads at once, so at most READERS connections.
        let _permit = self
            .read_permits
            .acquire()
            .await
            .map_err(|_| writer_gone())?;
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = readers.take()?;
            let result = query(&conn).map_err(store_error);
            readers.put(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Internal(format!("a store read failed: {e}")))?
    }

    /// Runs `f` on the writer's connection between two batches (tests only).
    #[cfg(test)]
    pub(crate) fn with_writer(&self, f: impl FnOnce(&Connection) + Send + 'static) {
        self.send(Op::Exec(Box::new(f))).expect("writer running");
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the channel lets the writer drain what is queued and stop.
        drop(self.tx.take());
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            error!("the store's writer thread panicked");
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn unfinished_tasks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(SELECT_UNFINISHED)?;
            let rows = stmt.query_map([], task_from_row)?;
            rows.collect()
        })
        .await
    }

    async fn insert_task(&self, task: &TaskRecord) -> Result<Inserted, StoreError> {
        let task = Box::new(task.clone());
        self.write(|reply| Op::Insert(task, reply)).await
    }

    fn record_dispatch(&self, task_id: Uuid, attempt: u32, at: SystemTime) {
        if let Err(e) = self.send(Op::Dispatch {
            task_id,
            attempt,
            at,
        }) {
            warn!(task_id = %task_id, error = %e, "recording a dispatch failed");
        }
    }

    async fn finish_task(&self, finish: &Finish) -> Result<Option<CompletionRecord>, StoreError> {
        let finish = Box::new(finish.clone());
        self.write(|reply| Op::Finish(finish, reply)).await
    }

    async fn get_task(&self, task_id: Uuid) -> Result<Option<TaskRecord>, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached(SELECT_TASK)?
                .query_row([&task_id.as_bytes()[..]], task_from_row)
                .optional()
        })
        .await
    }

    async fn completions_after(
        &self,
        session: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<CompletionRecord>, StoreError> {
        let session = session.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(SELECT_COMPLETIONS)?;
            let rows = stmt.query_map(
                params![session, to_i64(after_seq), to_i64(limit as u64)],
                |row| task_from_row(row).and_then(|t| completion_of(&t)),
            )?;
            rows.collect()
        })
        .await
    }

    async fn ack_completions(&self, session: &str, up_to_seq: u64) -> Result<u64, StoreError> {
        let session = session.to_string();
        self.write(|reply| Op::Ack {
            session,
            up_to_seq,
            reply,
        })
        .await
    }

    async fn purge_finished_before(&self, cutoff: SystemTime) -> Result<u64, StoreError> {
        self.write(|reply| Op::Purge(Purge::new(cutoff), reply))
            .await
    }
}

// ---------------------------------------------------------------- writer

/// One change for the writer.
enum Op {
    Insert(Box<TaskRecord>, Reply<Inserted>),
    Dispatch {
        task_id: Uuid,
        attempt: u32,
        at: SystemTime,
    },
    Finish(Box<Finish>, Reply<Option<CompletionRecord>>),
    Ack {
        session: String,
        up_to_seq: u64,
        reply: Reply<u64>,
    },
    /// Deletes in chunks of [`PURGE_CHUNK`]; a step that filled its chunk
    /// goes round again with the next batch, so a big purge never holds up
    /// submits for long.
    Purge(Purge, Reply<u64>),
    /// Runs on the writer's connection outside any batch (tests).
    #[cfg(test)]
    Exec(Box<dyn FnOnce(&Connection) + Send>),
}

/// What a change does once its batch is committed (or failed).
type Answer = Box<dyn FnOnce(Result<(), &StoreError>) + Send>;

fn answer<T: Send + 'static>(reply: Reply<T>, result: Result<T, StoreError>) -> Answer {
    Box::new(move |commit| {
        let result = match commit {
            Ok(()) => result,
            Err(e) => Err(e.clone()),
        };
        // A caller that stopped waiting is no error: the change is made.
        let _ = reply.send(result);
    })
}

/// What applying one change gave: its answer, and maybe a purge to continue.
struct Applied {
    answer: Option<Answer>,
    more: Option<Op>,
    failed: Option<StoreError>,
}

struct Writer {
    conn: Connection,
    counters: Arc<Counters>,
    /// Whether commits run with `synchronous = FULL` (an fsync each).
    synced_commits: bool,
}

impl Writer {
    fn new(conn: Connection, counters: Arc<Counters>) -> Self {
        Self {
            conn,
            counters,
            synced_commits: true,
        }
    }

    fn run(mut self, mut rx: batch::Receiver<Op>) {
        // Changes received but not yet applied, in arrival order; a purge
        // with more to do goes back at the end. Stops once every sender is
        // gone (the store closed) and nothing is left.
        let mut pending: Vec<Op> = Vec::with_capacity(MAX_BATCH);
        while rx.blocking_fill(&mut pending) {
            #[cfg(test)]
            if matches!(pending.first(), Some(Op::Exec(_))) {
                if let Op::Exec(f) = pending.remove(0) {
                    f(&self.conn);
                }
                continue;
            }
            #[cfg(test)]
            let end = (pending.iter())
                .position(|op| matches!(op, Op::Exec(_)))
                .unwrap_or(pending.len());
            #[cfg(not(test))]
            let end = pending.len();
            let mut batch: Vec<Op> = pending.drain(..end).collect();
            if let Some(more) = self.apply_batch(&mut batch) {
                pending.push(more);
            }
        }
        // Closing the writer connection checkpoints the WAL into the file.
        if let Err((_, e)) = self.conn.close() {
            error!(error = %e, "closing the store failed");
        }
    }

    /// Applies `batch` in one transaction and answers each change after the
    /// commit. Returns a purge that has more to do.
    fn apply_batch(&mut self, batch: &mut Vec<Op>) -> Option<Op> {
        let count = batch.len() as u64;
        let mut answers: Vec<Answer> = Vec::with_capacity(batch.len());
        let mut more = None;
        // A batch of dispatch records only answers nobody: commit it without
        // an fsync. The next synchronous commit syncs the WAL, these frames
        // included; a crash before that only forgets some dispatches, which
        // recovery treats as queued tasks.
        let sync = batch.iter().any(|op| !matches!(op, Op::Dispatch { .. }));
        if sync != self.synced_commits {
            let mode = if sync { "FULL" } else { "NORMAL" };
            if let Err(e) = self
                .conn
                .execute_batch(&format!("PRAGMA synchronous = {mode}"))
            {
                error!(error = %e, "setting the store's synchronous mode failed");
            } else {
                self.synced_commits = sync;
            }
        }
        if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
            let e = store_error(e);
            error!(error = %e, "starting a store transaction failed");
            for op in batch.drain(..) {
                fail(op, &e);
            }
            self.counters.applied(count);
            return None;
        }
        let mut ops = std::mem::take(batch).into_iter();
        while let Some(op) = ops.next() {
            let applied = self.apply(op);
            if let Some(next) = applied.more {
                more = Some(next);
            }
            if let Some(a) = applied.answer {
                answers.push(a);
            }
            if let Some(e) = applied.failed
                && self.conn.is_autocommit()
            {
                // SQLite gave up the whole transaction (e.g. SQLITE_FULL):
                // nothing before this change is stored either.
                for a in answers.drain(..) {
                    a(Err(&e));
                }
                if let Some(op) = more.take() {
                    fail(op, &e);
                }
                if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
                    let e = store_error(e);
                    for op in ops {
                        fail(op, &e);
                    }
                    self.counters.applied(count);
                    return None;
                }
            }
        }
        let commit = self.conn.execute_batch("COMMIT").map_err(store_error);
        if let Err(e) = &commit {
            error!(error = %e, "committing to the store failed");
            // A failed COMMIT may leave the transaction open: end it.
            if !self.conn.is_autocommit() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
        } else {
            self.counters.committed();
        }
        self.counters.applied(count);
        for a in answers {
            a(commit.as_ref().map(|_| ()));
        }
        // A failed commit loses the purge step too; its caller is told.
        if commit.is_err() { None } else { more }
    }

    fn apply(&mut self, op: Op) -> Applied {
        let conn = &self.conn;
        let (answer, more, failed) = match op {
            Op::Insert(task, reply) => {
                let r = insert(conn, &task).map_err(store_error);
                let failed = r.as_ref().err().cloned();
                (Some(self::answer(reply, r)), None, failed)
            }
            Op::Dispatch {
                task_id,
                attempt,
                at,
            } => {
                let r = dispatch(conn, task_id, attempt, at).map_err(store_error);
                let failed = r.err();
                if let Some(e) = &failed {
                    warn!(task_id = %task_id, error = %e, "recording a dispatch failed");
                }
                (None, None, failed)
            }
            Op::Finish(finish, reply) => {
                let r = finish_task(conn, &finish).map_err(store_error);
                let failed = r.as_ref().err().cloned();
                (Some(self::answer(reply, r)), None, failed)
            }
            Op::Ack {
                session,
                up_to_seq,
                reply,
            } => {
                let r = conn
                    .prepare_cached(
                        "DELETE FROM tasks WHERE session = ?1 AND seq > 0 AND seq <= ?2",
                    )
                    .and_then(|mut s| s.execute(params![session, to_i64(up_to_seq)]))
                    .map(|n| n as u64)
                    .map_err(store_error);
                let failed = r.as_ref().err().cloned();
                (Some(self::answer(reply, r)), None, failed)
            }
            Op::Purge(mut purge, reply) => match purge_step(conn, purge.cutoff) {
                Ok(n) if purge.step(n) => (None, Some(Op::Purge(purge, reply)), None),
                Ok(_) => {
                    if let Err(e) = reclaim_space(conn) {
                        warn!(error = %e, "returning free space to the file system failed");
                    }
                    (Some(self::answer(reply, Ok(purge.removed))), None, None)
                }
                Err(e) => {
                    let e = store_error(e);
                    (Some(self::answer(reply, Err(e.clone()))), None, Some(e))
                }
            },
            #[cfg(test)]
            Op::Exec(f) => {
                f(conn);
                (None, None, None)
            }
        };
        Applied {
            answer,
            more,
            failed,
        }
    }
}

/// Answers a change that could not be applied.
fn fail(op: Op, e: &StoreError) {
    match op {
        Op::Insert(_, reply) => answer(reply, Err(e.clone()))(Ok(())),
        Op::Finish(_, reply) => answer(reply, Err(e.clone()))(Ok(())),
        Op::Ack { reply, .. } | Op::Purge(_, reply) => answer(reply, Err(e.clone()))(Ok(())),
        Op::Dispatch { task_id, .. } => {
            warn!(task_id = %task_id, error = %e, "recording a dispatch failed");
        }
        #[cfg(test)]
        Op::Exec(_) => {}
    }
}

fn insert(conn: &Connection, task: &TaskRecord) -> rusqlite::Result<Inserted> {
    if let Some(key) = &task.idempotency_key {
        let earlier = conn
            .prepare_cached(SELECT_BY_KEY)?
            .query_row(params![&*task.session, &**key], task_from_row)
            .optional()?;
        if let Some(earlier) = earlier {
            return Ok(Inserted::Existing(Box::new(earlier)));
        }
    }
    let (result, error_code, error_message) = outcome_columns(task.outcome.as_ref());
    conn.prepare_cached(
        "INSERT INTO tasks (id, session, tool, arguments, timeout_ns, idempotency_key,
             created_at, state, attempts, started_at, finished_at, result, error_code,
             error_message, seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?
    .execute(params![
        &task.id.as_bytes()[..],
        &*task.session,
        &*task.tool,
        &*task.arguments,
        duration_to_i64(task.timeout),
        task.idempotency_key.as_deref(),
        time_to_i64(task.created_at),
        state_code(task.state),
        task.attempts,
        task.started_at.map(time_to_i64),
        task.finished_at.map(time_to_i64),
        result,
        error_code,
        error_message,
        to_i64(task.seq),
    ])?;
    Ok(Inserted::New)
}

fn dispatch(conn: &Connection, id: Uuid, attempt: u32, at: SystemTime) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE tasks SET state = ?2, attempts = ?3, started_at = ?4 WHERE id = ?1 AND state < 2",
    )?
    .execute(params![
        &id.as_bytes()[..],
        state_code(TaskState::Running),
        attempt,
        time_to_i64(at),
    ])?;
    Ok(())
}

/// Finishes a task in a savepoint: the seq counter and the task row change
/// together or not at all (no seq is handed out and lost).
fn finish_task(conn: &Connection, finish: &Finish) -> rusqlite::Result<Option<CompletionRecord>> {
    conn.prepare_cached("SAVEPOINT finish")?.execute([])?;
    match finish_task_inner(conn, finish) {
        Ok(done) => {
            conn.prepare_cached("RELEASE finish")?.execute([])?;
            Ok(done)
        }
        Err(e) => {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK TO finish; RELEASE finish");
            }
            Err(e)
        }
    }
}

fn finish_task_inner(
    conn: &Connection,
    finish: &Finish,
) -> rusqlite::Result<Option<CompletionRecord>> {
    let task = conn
        .prepare_cached(SELECT_TASK)?
        .query_row([&finish.task_id.as_bytes()[..]], task_from_row)
        .optional()?;
    let Some(task) = task.filter(|t| !t.state.is_final()) else {
        return Ok(None);
    };
    let seq: i64 = conn
        .prepare_cached(
            "INSERT INTO sessions (session, last_seq) VALUES (?1, 1)
             ON CONFLICT (session) DO UPDATE SET last_seq = last_seq + 1
             RETURNING last_seq",
        )?
        .query_row([&*task.session], |row| row.get(0))?;
    let seq = u64::try_from(seq).unwrap_or(0);
    let (result, error_code, error_message) = outcome_columns(Some(&finish.outcome));
    conn.prepare_cached(
        "UPDATE tasks SET state = ?2, attempts = ?3, finished_at = ?4, result = ?5,
             error_code = ?6, error_message = ?7, seq = ?8
         WHERE id = ?1",
    )?
    .execute(params![
        &finish.task_id.as_bytes()[..],
        state_code(finish.state),
        finish.attempts,
        time_to_i64(finish.finished_at),
        result,
        error_code,
        error_message,
        to_i64(seq),
    ])?;
    Ok(Some(CompletionRecord::new(&task, finish, seq)))
}

/// Deletes up to [`PURGE_CHUNK`] finished tasks that finished before `cutoff`.
fn purge_step(conn: &Connection, cutoff: SystemTime) -> rusqlite::Result<u64> {
    let n = conn
        .prepare_cached(
            "DELETE FROM tasks WHERE rowid IN (
                 SELECT rowid FROM tasks WHERE seq > 0 AND finished_at < ?1 LIMIT ?2)",
        )?
        .execute(params![time_to_i64(cutoff), PURGE_CHUNK])?;
    Ok(n as u64)
}

/// Gives free pages back to the file system when they are a large share of
/// the file (after a burst has been purged). Smaller amounts stay in the file
/// for the next inserts to reuse.
fn reclaim_space(conn: &Connection) -> rusqlite::Result<()> {
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    if free > 64 && free * 4 > pages {
        // Each step of this pragma frees one page: run it to the end.
        let mut stmt = conn.prepare_cached("PRAGMA incremental_vacuum")?;
        let mut rows = stmt.query([])?;
        while rows.next()?.is_some() {}
    }
    Ok(())
}

// ---------------------------------------------------------------- readers

struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    fn lock(&self) -> MutexGuard<'_, Vec<Connection>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn open(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open(&self.path).map_err(|e| open_error(&self.path, e))?;
        conn.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;")
            .map_err(|e| open_error(&self.path, e))?;
        Ok(conn)
    }

    fn take(&self) -> Result<Connection, StoreError> {
        let idle = self.lock().pop();
        match idle {
            Some(conn) => Ok(conn),
            None => self.open(),
        }
    }

    fn put(&self, conn: Connection) {
        let mut idle = self.lock();
        if idle.len() < READERS {
            idle.push(conn);
        }
    }
}

// ---------------------------------------------------------------- opening

/// Takes the data dir's lock file, or says who holds it.
fn lock_data_dir(data_dir: &Path) -> Result<File, StoreError> {
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

/// Opens the write connection: checks the file, migrates the schema.
fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let err = |e| open_error(path, e);
    let conn = Connection::open(path).map_err(err)?;
    // Before any table exists this takes effect; on an existing file it is a
    // no-op. It lets purges give space back to the file system.
    conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL")
        .map_err(err)?;
    let (app_id, version): (i32, i64) = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .and_then(|app| {
            Ok((
                app,
                conn.query_row("PRAGMA user_version", [], |r| r.get(0))?,
            ))
        })
        .map_err(err)?;
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
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Internal(format!(
            "{}: cannot switch to WAL mode (got {mode})",
            path.display()
        )));
    }
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA busy_timeout = 5000;
         PRAGMA journal_size_limit = 67108864;",
    )
    .map_err(err)?;
    quick_check(&conn, path)?;
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
    Ok(conn)
}

/// `PRAGMA quick_check`: a corrupt file is refused at start, not found out
/// by a later write.
fn quick_check(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let problems: Vec<String> = conn
        .prepare("PRAGMA quick_check(5)")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| open_error(path, e))?;
    if problems.len() == 1 && problems[0] == "ok" {
        return Ok(());
    }
    Err(StoreError::Internal(format!(
        "{} is corrupt ({}): restore it from a backup, or move it away to start empty",
        path.display(),
        problems.join("; ")
    )))
}

fn open_error(path: &Path, e: rusqlite::Error) -> StoreError {
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
fn store_error(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => {
            StoreError::Full(format!("the disk holding the data dir is full ({e})"))
        }
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(format!("the database is busy ({e})"))
        }
        _ => StoreError::Internal(format!("store: {e}")),
    }
}

fn io_error(what: String, e: std::io::Error) -> StoreError {
    // ENOSPC: 28 on Linux and the BSDs.
    if e.raw_os_error() == Some(28) {
        StoreError::Full(format!("{what}: {e}"))
    } else {
        StoreError::Internal(format!("{what}: {e}"))
    }
}

// ---------------------------------------------------------------- rows

/// Decodes a task row through the shared codec.
fn task_from_row(row: &Row<'_>) -> rusqlite::Result<TaskRecord> {
    let id: [u8; 16] = row.get(0)?;
    TaskRow {
        id: Uuid::from_bytes(id),
        session: row.get(1)?,
        tool: row.get(2)?,
        arguments: row.get(3)?,
        timeout_ns: row.get(4)?,
        idempotency_key: row.get(5)?,
        created_at: row.get(6)?,
        state: row.get(7)?,
        attempts: row.get(8)?,
        started_at: row.get(9)?,
        finished_at: row.get(10)?,
        result: row.get(11)?,
        error_code: row.get(12)?,
        error_message: row.get(13)?,
        seq: row.get(14)?,
    }
    .decode()
    .map_err(bad_row)
}

/// The completion a finished task row carries.
fn completion_of(task: &TaskRecord) -> rusqlite::Result<CompletionRecord> {
    codec::completion_of(task).map_err(bad_row)
}

fn bad_row(e: codec::BadRow) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, Type::Integer, Box::new(e))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, mpsc};

    use futures::future::join_all;

    use super::*;
    use crate::store::tests::{assert_same_task, at, finish_seq, insert_new, succeed, task};

    fn open(dir: &Path) -> SqliteStore {
        SqliteStore::open(dir).expect("open")
    }

    fn file_size(dir: &Path) -> u64 {
        std::fs::metadata(dir.join(DB_FILE)).unwrap().len()
    }

    fn row_count(dir: &Path) -> i64 {
        let conn = Connection::open(dir.join(DB_FILE)).unwrap();
        conn.query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))
            .unwrap()
    }

    /// Stops the writer until the returned sender is dropped or sent to.
    fn hold_writer(store: &SqliteStore) -> mpsc::Sender<()> {
        let (release, held) = mpsc::channel::<()>();
        store.with_writer(move |_| {
            let _ = held.recv();
        });
        release
    }

    async fn sent_reaches(store: &SqliteStore, n: u64) {
        while store.stats().sent < n {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn group_commit_shares_one_commit_among_queued_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(open(dir.path()));
        let tasks: Vec<_> = (0..300).map(|i| task("s1", None, at(i))).collect();

        let release = hold_writer(&store);
        let sent = store.stats().sent;
        let inserts: Vec<_> = tasks
            .iter()
            .cloned()
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move { insert_new(&*store, &t).await })
            })
            .collect();
        sent_reaches(&store, sent + 300).await;
        let commits = store.stats().commits;
        drop(release);
        for h in inserts {
            h.await.unwrap();
        }
        assert_eq!(
            store.stats().commits,
            commits + 1,
            "300 queued inserts, one commit"
        );

        // Results (and dispatch records) batch the same way.
        let release = hold_writer(&store);
        let sent = store.stats().sent;
        for t in &tasks {
            store.record_dispatch(t.id, 1, at(500));
        }
        let finishes: Vec<_> = tasks
            .iter()
            .map(|t| {
                let store = store.clone();
                let finish = succeed(t, at(1000));
                tokio::spawn(async move { finish_seq(&*store, &finish).await })
            })
            .collect();
        sent_reaches(&store, sent + 600).await;
        let commits = store.stats().commits;
        drop(release);
        let mut seqs = Vec::new();
        for h in finishes {
            seqs.push(h.await.unwrap());
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=300).collect::<Vec<_>>());
        assert_eq!(
            store.stats().commits,
            commits + 1,
            "600 queued changes, one commit"
        );
    }

    #[tokio::test]
    async fn a_batch_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let tasks: Vec<_> = (0..MAX_BATCH + 10)
            .map(|i| task("s1", None, at(i as u64)))
            .collect();
        let release = hold_writer(&store);
        let commits = store.stats().commits;
        let inserts = join_all(tasks.iter().map(|t| store.insert_task(t)));
        let release_later = async {
            sent_reaches(&store, (MAX_BATCH + 11) as u64).await;
            drop(release);
        };
        let (results, ()) = tokio::join!(inserts, release_later);
        assert!(results.iter().all(|r| matches!(r, Ok(Inserted::New))));
        assert_eq!(store.stats().commits, commits + 2);
    }

    #[tokio::test]
    async fn restart_keeps_seq_completions_and_unfinished_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let (queued, running, done1, done2) = (
            task("s1", None, at(1)),
            task("s1", None, at(2)),
            task("s1", None, at(3)),
            task("s1", None, at(4)),
        );
        {
            let store = open(dir.path());
            for t in [&queued, &running, &done1, &done2] {
                insert_new(&store, t).await;
            }
            store.record_dispatch(running.id, 1, at(5));
            assert_eq!(finish_seq(&store, &succeed(&done1, at(6))).await, 1);
            assert_eq!(finish_seq(&store, &succeed(&done2, at(7))).await, 2);
            // Dropped without waiting for the dispatch record: the writer
            // drains what is queued before it stops.
        }
        let store = open(dir.path());
        let unfinished = store.unfinished_tasks().await.unwrap();
        assert_eq!(unfinished.len(), 2);
        assert_same_task(&unfinished[0], &queued);
        assert_eq!(unfinished[1].id, running.id);
        assert_eq!(unfinished[1].state, TaskState::Running);
        assert_eq!(unfinished[1].attempts, 1);
        assert_eq!(unfinished[1].started_at, Some(at(5)));
        let completions = store.completions_after("s1", 0, 10).await.unwrap();
        assert_eq!(
            completions.iter().map(|c| c.seq).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(completions[0].task_id, done1.id);
        assert_eq!(finish_seq(&store, &succeed(&queued, at(8))).await, 3);

        // An acknowledged, then purged-idle session keeps counting after a
        // restart: seqs never repeat.
        assert_eq!(store.ack_completions("s1", 3).await.unwrap(), 3);
        assert_eq!(finish_seq(&store, &succeed(&running, at(9))).await, 4);
        assert_eq!(store.purge_finished_before(at(100)).await.unwrap(), 1);
        drop(store);
        let store = open(dir.path());
        assert!(store.unfinished_tasks().await.unwrap().is_empty());
        let t = task("s1", None, at(10));
        insert_new(&store, &t).await;
        assert_eq!(finish_seq(&store, &succeed(&t, at(11))).await, 5);
    }

    #[tokio::test]
    async fn idempotency_key_holds_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let first = task("s1", Some("retry-me"), at(1));
        insert_new(&open(dir.path()), &first).await;
        let store = open(dir.path());
        match store
            .insert_task(&task("s1", Some("retry-me"), at(2)))
            .await
            .unwrap()
        {
            Inserted::Existing(t) => assert_same_task(&t, &first),
            Inserted::New => panic!("the key was forgotten across a restart"),
        }
        insert_new(&store, &task("s2", Some("retry-me"), at(3))).await;
    }

    #[tokio::test]
    async fn ack_and_purge_shrink_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let big = format!(r#"{{"text":"{}"}}"#, "x".repeat(4000));
        let fill = |store: Arc<SqliteStore>, round: u64| {
            let big = big.clone();
            async move {
                let tasks: Vec<_> = (0..1000)
                    .map(|i| {
                        let mut t = task(if i % 2 == 0 { "a" } else { "b" }, None, at(round));
                        t.arguments = big.as_str().into();
                        t
                    })
                    .collect();
                join_all(tasks.iter().map(|t| insert_new(&*store, t))).await;
                let finishes: Vec<_> = tasks.iter().map(|t| succeed(t, at(round))).collect();
                join_all(finishes.iter().map(|f| store.finish_task(f)))
                    .await
                    .into_iter()
                    .for_each(|r| assert!(r.unwrap().is_some()));
            }
        };
        let store = Arc::new(open(dir.path()));
        fill(store.clone(), 0).await;
        drop(store);
        let full = file_size(dir.path());
        assert!(full > 4_000_000, "1000 tasks of 4 kB take {full} bytes");

        let store = Arc::new(open(dir.path()));
        assert_eq!(store.ack_completions("a", 500).await.unwrap(), 500);
        assert_eq!(store.purge_finished_before(at(1)).await.unwrap(), 500);
        drop(store);
        assert_eq!(row_count(dir.path()), 0);
        let empty = file_size(dir.path());
        assert!(
            empty < full / 4,
            "emptied file is {empty} bytes, full was {full}"
        );

        // Fill and purge again and again: the file stays the same size.
        for round in 1..4 {
            let store = Arc::new(open(dir.path()));
            fill(store.clone(), round).await;
            assert_eq!(
                store.purge_finished_before(at(round + 1)).await.unwrap(),
                1000
            );
        }
        assert!(file_size(dir.path()) < full / 4);
        assert_eq!(row_count(dir.path()), 0);
    }

    #[tokio::test]
    async fn a_large_purge_runs_in_steps() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let n = PURGE_CHUNK as usize * 2 + 7;
        let tasks: Vec<_> = (0..n).map(|i| task("s1", None, at(i as u64))).collect();
        join_all(tasks.iter().map(|t| insert_new(&store, t))).await;
        let finishes: Vec<_> = tasks.iter().map(|t| succeed(t, at(1))).collect();
        join_all(finishes.iter().map(|f| store.finish_task(f))).await;
        let commits = store.stats().commits;
        assert_eq!(store.purge_finished_before(at(2)).await.unwrap(), n as u64);
        assert_eq!(store.stats().commits, commits + 3);
        assert!(
            store
                .completions_after("s1", 0, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()));
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
        drop(conn);
        let err = SqliteStore::open(dir.path()).err().expect("refused");
        assert!(matches!(err, StoreError::Internal(_)));
        let msg = err.to_string();
        assert!(
            msg.contains("schema version 99") && msg.contains("newer"),
            "{msg}"
        );
    }

    #[test]
    fn a_locked_data_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = open(dir.path());
        let err = SqliteStore::open(dir.path()).err().expect("refused");
        assert!(matches!(err, StoreError::Unavailable(_)));
        let msg = err.to_string();
        assert!(msg.contains("in use by another errand server"), "{msg}");
        assert!(msg.contains(&std::process::id().to_string()), "{msg}");
        drop(first);
        drop(open(dir.path()));
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DB_FILE), "not a database ".repeat(500)).unwrap();
        let msg = SqliteStore::open(dir.path())
            .err()
            .expect("refused")
            .to_string();
        assert!(msg.contains("not a readable errand database"), "{msg}");
    }

    #[test]
    fn another_programs_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.execute_batch("CREATE TABLE t (x); PRAGMA user_version = 1;")
            .unwrap();
        drop(conn);
        let msg = SqliteStore::open(dir.path())
            .err()
            .expect("refused")
            .to_string();
        assert!(msg.contains("not an errand database"), "{msg}");
    }

    #[tokio::test]
    async fn corrupt_pages_are_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path());
            let tasks: Vec<_> = (0..500).map(|i| task("s1", None, at(i))).collect();
            join_all(tasks.iter().map(|t| insert_new(&store, t))).await;
        }
        let path = dir.path().join(DB_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > 40_000);
        // Scribble over pages in the middle of the file.
        bytes[20_000..36_000].fill(0x5a);
        std::fs::write(&path, bytes).unwrap();
        let msg = SqliteStore::open(dir.path())
            .err()
            .expect("refused")
            .to_string();
        assert!(
            msg.contains("corrupt") || msg.contains("not a readable"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn a_full_disk_fails_the_call_with_full() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let small = task("s1", None, at(1));
        insert_new(&store, &small).await;
        // SQLite's page limit gives the same SQLITE_FULL as ENOSPC does.
        store.with_writer(|conn| {
            let pages: i64 = conn
                .query_row("PRAGMA page_count", [], |r| r.get(0))
                .unwrap();
            let _: i64 = conn
                .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                    r.get(0)
                })
                .unwrap();
        });
        let mut big = task("s1", None, at(2));
        big.arguments = format!(r#"{{"x":"{}"}}"#, "y".repeat(200_000)).into();
        let err = store.insert_task(&big).await.expect_err("full");
        assert!(matches!(err, StoreError::Full(_)), "{err:?}");
        assert!(err.to_string().contains("full"), "{err}");

        // Nothing half-done; the store goes on once there is room.
        assert!(store.get_task(big.id).await.unwrap().is_none());
        assert!(store.get_task(small.id).await.unwrap().is_some());
        store.with_writer(|conn| {
            let _: i64 = conn
                .query_row("PRAGMA max_page_count = 1073741823", [], |r| r.get(0))
                .unwrap();
        });
        insert_new(&store, &big).await;
        assert_eq!(finish_seq(&store, &succeed(&small, at(3))).await, 1);
    }

    #[test]
    fn open_creates_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b/data");
        drop(open(&nested));
        assert!(nested.join(DB_FILE).is_file());
        assert!(nested.join(LOCK_FILE).is_file());
    }
}
