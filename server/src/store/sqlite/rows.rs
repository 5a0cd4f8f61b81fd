//! The statements on task rows (read back in `decode.rs`).
use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

use super::decode::{self, Unreadable, task_from_row};
use super::session_seqs::{Seqs, SessionSeqs};
use crate::model::{CompletionRecord, Delivery, Finish, TaskHead, TaskRecord, TaskState};
use crate::store::sql::{
    PURGE_CHUNK,
    call_columns::{self, last_good_candidate},
    codec::{
        self, duration_to_i64, outcome_columns, state_code, task_columns, time_to_i64, to_i64,
    },
};
use crate::store::{Acked, Inserted};

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
const SELECT_IN_FLIGHT: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE session = ?1 AND tool = ?2 AND args_hash = ?3 AND joinable = 1 AND state < 2"
);
pub(super) const SELECT_LAST_GOOD: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE session = ?1 AND tool = ?2 AND args_hash = ?3 AND ",
    last_good_candidate!(),
    " AND finished_at >= ?4 AND answered_by IS NULL ORDER BY finished_at DESC LIMIT 1"
);
/// Acknowledged completions never come back, though some of their tasks are
/// kept until retention (see [`ack`]).
pub(super) const SELECT_COMPLETIONS: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE session = ?1 AND seq > 0 AND seq > ?2
     AND seq > COALESCE((SELECT acked_seq FROM sessions WHERE session = ?1), 0)
     ORDER BY seq LIMIT ?3"
);

/// The acknowledged tasks [`ack`] keeps until retention: submitted with an
/// idempotency key, which a retried submit still finds; SUCCEEDED with a
/// result over its budget (`result_budget`, or `?3`, the server's, where
/// that is 0 or NULL), which `ReadResult` still reads; or SUCCEEDED by
/// itself in a call with a last-good fallback. Lengths in bytes.
macro_rules! kept_on_ack {
    () => {
        concat!(
            "(idempotency_key IS NOT NULL
             OR state = 2 AND COALESCE(length(CAST(result AS BLOB)), 0)
                 > COALESCE(NULLIF(result_budget, 0), ?3)
             OR answered_by IS NULL AND COALESCE(",
            last_good_candidate!(),
            ", 0))"
        )
    };
}

/// Inserts a task, unless its idempotency key is taken (then the earlier
/// task), or it is joinable and its call is in flight (then that task). The
/// one writer thread makes the check and the insert atomic.
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
    if task.call.joinable {
        let running = conn
            .prepare_cached(SELECT_IN_FLIGHT)?
            .query_row(
                params![&*task.session, &*task.tool, task.call.args_hash.hex()],
                task_from_row,
            )
            .optional()?;
        if let Some(running) = running {
            return Ok(Inserted::Joined(Box::new(running)));
        }
    }
    let (result, error_code, error_message) = outcome_columns(task.outcome.as_ref());
    let (budget, args_hash, joinable, fallback) = call_columns::insert_columns(&task.call);
    conn.prepare_cached(
        "INSERT INTO tasks (id, session, tool, arguments, timeout_ns, idempotency_key,
             created_at, state, attempts, started_at, finished_at, result, error_code,
             error_message, seq, queue_deadline, result_budget, args_hash, joinable, fallback,
             delivery, retry_of)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
             ?18, ?19, ?20, ?21, ?22)",
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
        budget,
        args_hash,
        joinable,
        fallback,
        task.delivery.code(),
        task.retry_of.as_ref().map(|id| &id.as_bytes()[..]),
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

/// Marks a task running its `attempt` queued again (its worker left, or the
/// server restarted), keeping its attempts and start; a row that moved on
/// (finished, or running a later attempt) is left alone.
pub(super) fn requeue(conn: &Connection, id: Uuid, attempt: u32) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE tasks SET state = ?2 WHERE id = ?1 AND state = ?3 AND attempts = ?4",
    )?
    .execute(params![
        &id.as_bytes()[..],
        state_code(TaskState::Queued),
        state_code(TaskState::Running),
        attempt,
    ])?;
    Ok(())
}

/// The columns of a task its completion carries, and its state.
const SELECT_HEAD: &str = "SELECT session, tool, arguments, created_at, delivery,
     result_budget, state FROM tasks WHERE id = ?1";

/// The head of task `id` (the query's id, not read back); an unreadable
/// row is an error naming it (`decode.rs`).
fn head_from_row(id: Uuid, row: &Row<'_>) -> rusqlite::Result<(TaskHead, i16)> {
    const COLUMNS: [&str; 7] = [
        "session",
        "tool",
        "arguments",
        "created_at",
        "delivery",
        "result_budget",
        "state",
    ];
    let head = || -> Result<(TaskHead, i16), Unreadable> {
        let delivery: i16 = decode::get_named(row, 4, COLUMNS[4], id)?;
        let head = TaskHead {
            id,
            session: decode::get_named::<String>(row, 0, COLUMNS[0], id)?.into(),
            tool: decode::get_named::<String>(row, 1, COLUMNS[1], id)?.into(),
            arguments: decode::get_named::<String>(row, 2, COLUMNS[2], id)?.into(),
            created_at: codec::time_from_i64(decode::get_named(row, 3, COLUMNS[3], id)?),
            delivery: Delivery::from_code(delivery).ok_or_else(|| {
                Unreadable::of_task(id, format!("unknown delivery policy {delivery}"))
            })?,
            result_budget: u64::try_from(
                decode::get_named::<Option<i64>>(row, 5, COLUMNS[5], id)?.unwrap_or(0),
            )
            .unwrap_or(0),
        };
        Ok((head, decode::get_named(row, 6, COLUMNS[6], id)?))
    };
    head().map_err(Unreadable::into_sqlite)
}

/// The head of task `id` if it is stored and unfinished.
fn unfinished_head(conn: &Connection, id: Uuid) -> rusqlite::Result<Option<TaskHead>> {
    let unfinished = |state| codec::state_from_code(state).is_some_and(|s| !s.is_final());
    Ok(conn
        .prepare_cached(SELECT_HEAD)?
        .query_row([&id.as_bytes()[..]], |row| head_from_row(id, row))
        .optional()?
        .filter(|(_, state)| unfinished(*state))
        .map(|(head, _)| head))
}

/// Finishes a task: takes what its completion carries from `held` (the
/// caller's copy of the task's head, see [`crate::store::Store::finish_held_task`])
/// or else reads it, then writes the outcome with the session's next seq
/// if the task is still unfinished; only then is the seq taken (in `seqs`,
/// written back with the batch), so a finish that changed nothing or
/// failed leaves no gap. Without a savepoint: a savepoint copies every page
/// the finish touches into its journal (8 % of the writer thread's samples).
pub(super) fn finish_task(
    conn: &Connection,
    seqs: &mut SessionSeqs,
    finish: &Finish,
    held: Option<TaskHead>,
) -> rusqlite::Result<Option<CompletionRecord>> {
    let task = match held {
        Some(head) => Some(head),
        None => unfinished_head(conn, finish.task_id)?,
    };
    if let Some(run) = finish.notes.drop_run {
        // The fallback run goes whether or not its call was still open: a
        // run left behind would be taken up again at every start.
        conn.prepare_cached("DELETE FROM tasks WHERE id = ?1")?
            .execute([&run.as_bytes()[..]])?;
    }
    let Some(task) = task else {
        return Ok(None);
    };
    let seq = seqs.next(conn, &task.session)?;
    let (result, error_code, error_message) = outcome_columns(Some(&finish.outcome));
    let (summary, answered_by) = call_columns::finish_columns(&finish.notes);
    // `state < 2`: a held head was not checked against the row; a task
    // ended already (or never stored) changes nothing.
    let changed = conn
        .prepare_cached(
            "UPDATE tasks SET state = ?2, attempts = ?3, finished_at = ?4, result = ?5,
                 error_code = ?6, error_message = ?7, seq = ?8, summary = ?9, answered_by = ?10
             WHERE id = ?1 AND state < 2",
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
            summary,
            answered_by,
        ])?;
    if changed == 0 {
        return Ok(None);
    }
    seqs.took(&task.session, seq);
    Ok(Some(CompletionRecord::of_head(task, finish, seq)))
}

/// Acknowledges a session's completions up to `up_to_seq` (see
/// [`crate::store::Store::ack_completions`]) with the counters in `seqs`;
/// `default_budget`: the server's result budget in bytes.
pub(super) fn ack(
    conn: &Connection,
    seqs: &mut SessionSeqs,
    session: &str,
    up_to_seq: u64,
    default_budget: u64,
) -> rusqlite::Result<Acked> {
    let Seqs {
        last: last_seq,
        acked: acked_seq,
    } = seqs.get(conn, session)?;
    // Beyond the last seq (the caller says OUT_OF_RANGE), or acknowledged
    // already: nothing changes.
    if up_to_seq > last_seq || up_to_seq <= acked_seq {
        return Ok(Acked {
            removed: 0,
            acked_seq,
            last_seq,
        });
    }
    // Those above the acknowledged seq and not purged yet: released now.
    let released: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM tasks WHERE session = ?1 AND seq > 0 AND seq > ?2 AND seq <= ?3",
        )?
        .query_row(
            params![session, to_i64(acked_seq), to_i64(up_to_seq)],
            |r| r.get(0),
        )?;
    conn.prepare_cached(concat!(
        "DELETE FROM tasks WHERE session = ?1 AND seq > 0 AND seq > ?4 AND seq <= ?2 AND NOT ",
        kept_on_ack!()
    ))?
    .execute(params![
        session,
        to_i64(up_to_seq),
        to_i64(default_budget),
        to_i64(acked_seq)
    ])?;
    seqs.ack(session, up_to_seq);
    Ok(Acked {
        removed: released.max(0) as u64,
        acked_seq: acked_seq.max(up_to_seq),
        last_seq,
    })
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
