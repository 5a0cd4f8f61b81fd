//! The statements on task rows, and their decoding through the shared codec.
use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension, Row, params, types::Type};
use uuid::Uuid;

use crate::model::{CompletionRecord, Finish, TaskRecord, TaskState};
use crate::store::Inserted;
use crate::store::sql::{
    PURGE_CHUNK,
    codec::{
        self, TaskRow, duration_to_i64, outcome_columns, state_code, task_columns, time_to_i64,
        to_i64,
    },
};

pub(super) const SELECT_TASK: &str =
    concat!("SELECT ", task_columns!(), " FROM tasks WHERE id = ?1");
pub(super) const SELECT_BY_KEY: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE session = ?1 AND idempotency_key = ?2"
);
pub(super) const SELECT_UNFINISHED: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE state < 2 ORDER BY created_at"
);
pub(super) const SELECT_COMPLETIONS: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE session = ?1 AND seq > 0 AND seq > ?2 ORDER BY seq LIMIT ?3"
);

/// Inserts a task, unless its idempotency key is taken: then the earlier task.
pub(super) fn insert(conn: &Connection, task: &TaskRecord) -> rusqlite::Result<Inserted> {
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
             error_message, seq, queue_deadline)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
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
        task.queue_deadline.map(time_to_i64),
    ])?;
    Ok(Inserted::New)
}

/// Marks an unfinished task running its `attempt` since `at`.
pub(super) fn dispatch(
    conn: &Connection,
    id: Uuid,
    attempt: u32,
    at: SystemTime,
) -> rusqlite::Result<()> {
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
pub(super) fn finish_task(
    conn: &Connection,
    finish: &Finish,
) -> rusqlite::Result<Option<CompletionRecord>> {
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

/// Deletes up to `PURGE_CHUNK` finished tasks that finished before `cutoff`.
pub(super) fn purge_step(conn: &Connection, cutoff: SystemTime) -> rusqlite::Result<u64> {
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
pub(super) fn reclaim_space(conn: &Connection) -> rusqlite::Result<()> {
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

/// Decodes a task row through the shared codec.
pub(super) fn task_from_row(row: &Row<'_>) -> rusqlite::Result<TaskRecord> {
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
        queue_deadline: row.get(15)?,
    }
    .decode()
    .map_err(bad_row)
}

/// The completion a finished task row carries.
pub(super) fn completion_of(task: &TaskRecord) -> rusqlite::Result<CompletionRecord> {
    codec::completion_of(task).map_err(bad_row)
}

fn bad_row(e: codec::BadRow) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, Type::Integer, Box::new(e))
}
