//! Statement helpers and the decoding of task rows through the shared codec.

use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::{
    Row,
    types::{FromSql, ToSql},
};
use uuid::Uuid;

use super::errors::pg_error;

use crate::model::{CompletionRecord, TaskRecord};
use crate::store::StoreError;
use crate::store::sql::call_columns::{CallRow, pg_last_good_candidate};
use crate::store::sql::codec::{self, TASK_COLUMNS, TaskRow};

/// Deletes session `$1`'s tasks acknowledged now (seq in `($2, $3]`)
/// except those kept until retention (see
/// [`crate::store::Store::ack_completions`]): submitted with an idempotency
/// key, which a retried submit still finds; SUCCEEDED with a result over
/// its budget (`result_budget`, or `$4`, the server's, where that is 0 or
/// NULL), which `ReadResult` still reads; or SUCCEEDED by itself in a call
/// with a last-good fallback. Lengths in bytes.
pub(super) const DELETE_ACKED: &str = concat!(
    "DELETE FROM errand_tasks WHERE session = $1 AND seq > 0 AND seq > $2 AND seq <= $3
     AND NOT (idempotency_key IS NOT NULL
              OR state = 2 AND COALESCE(octet_length(result), 0)
                  > COALESCE(NULLIF(result_budget, 0), $4)
              OR answered_by IS NULL AND COALESCE(",
    pg_last_good_candidate!(),
    ", false))"
);

/// What a task queued again (state 0) after a run sets: the end of its
/// fresh wait for a worker, `$N` (now, ns since the epoch) plus its queue
/// timeout (see [`crate::model::TaskRecord::queue_deadline_from`]); NULL
/// for rows stored before queue deadlines were.
macro_rules! requeue_deadline_from {
    ($now:literal) => {
        concat!(
            "requeue_deadline = ",
            $now,
            "::int8 + (queue_deadline - created_at)"
        )
    };
}
pub(super) use requeue_deadline_from;

/// Whether a queued task's wait for a worker is over at `$N` (now, ns since
/// the epoch): its first wait, from submit, while no worker took it; its
/// fresh wait ([`requeue_deadline_from`]) once one did.
macro_rules! queue_wait_over {
    ($now:literal) => {
        concat!(
            "(attempts = 0 AND queue_deadline < ",
            $now,
            " OR attempts > 0 AND requeue_deadline < ",
            $now,
            ")"
        )
    };
}
pub(super) use queue_wait_over;

/// Tells every server (`errand_tasks`) that `tools` have queued work.
pub(super) async fn notify_tools(tx: &Transaction<'_>, tools: &[String]) -> Result<(), StoreError> {
    if tools.is_empty() {
        return Ok(());
    }
    exec(
        tx,
        "SELECT pg_notify('errand_tasks', p) FROM unnest($1::text[]) AS p",
        &[&tools],
    )
    .await
}

/// Tells every server (`errand_left_queue`) that tasks `ids` left the
/// shared queue (claimed, or ended while queued).
pub(super) async fn notify_left_queue(
    client: &impl GenericClient,
    ids: &[Uuid],
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    exec(
        client,
        "SELECT pg_notify('errand_left_queue', p) FROM unnest($1::text[]) AS p",
        &[&super::listen::left_queue_payloads(ids)],
    )
    .await
}

/// Runs a query through the connection's statement cache.
pub(super) async fn rows(
    client: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, StoreError> {
    let st = client.prepare_cached(sql).await.map_err(pg_error)?;
    client.query(&st, params).await.map_err(pg_error)
}

/// Runs a statement through the connection's statement cache.
pub(super) async fn exec(
    client: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<(), StoreError> {
    let st = client.prepare_cached(sql).await.map_err(pg_error)?;
    client.execute(&st, params).await.map_err(pg_error)?;
    Ok(())
}

/// The task columns, each qualified with `prefix` ("t.").
pub(super) fn prefixed(prefix: &str) -> String {
    TASK_COLUMNS
        .split(", ")
        .map(|c| format!("{prefix}{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decodes a task row through the shared codec.
pub(super) fn task_from_row(row: &Row) -> Result<TaskRecord, StoreError> {
    TaskRow {
        id: col(row, 0)?,
        session: col(row, 1)?,
        tool: col(row, 2)?,
        arguments: col(row, 3)?,
        timeout_ns: col(row, 4)?,
        idempotency_key: col(row, 5)?,
        created_at: col(row, 6)?,
        state: col(row, 7)?,
        attempts: col::<i32>(row, 8)?.into(),
        started_at: col(row, 9)?,
        finished_at: col(row, 10)?,
        result: col(row, 11)?,
        error_code: col(row, 12)?,
        error_message: col(row, 13)?,
        seq: col(row, 14)?,
        queue_deadline: col(row, 15)?,
        call: CallRow {
            result_budget: col(row, 16)?,
            args_hash: col(row, 17)?,
            joinable: col::<Option<i32>>(row, 18)?.map(i64::from),
            fallback: col(row, 19)?,
            summary: col(row, 20)?,
            answered_by: col(row, 21)?,
        },
        delivery: col(row, 22)?,
        retry_of: col(row, 23)?,
    }
    .decode()
    .map_err(|e| StoreError::Internal(format!("reading a task row: {e}")))
}

/// Column `i` of `row`.
fn col<'a, T: FromSql<'a>>(row: &'a Row, i: usize) -> Result<T, StoreError> {
    row.try_get(i).map_err(|e| {
        StoreError::Internal(format!("reading a task row: {}", super::errors::chain(&e)))
    })
}

/// The completion a finished task row carries.
pub(super) fn completion_of(task: &TaskRecord) -> Result<CompletionRecord, StoreError> {
    codec::completion_of(task).map_err(|e| StoreError::Internal(e.to_string()))
}

/// This server's heartbeat (`$1` its id, `$2` its lease in ms): `seen_at`
/// now, and `back_at` now too when its previous contact is older than a
/// lease (it could not reach the database meanwhile) or it is new. The
/// database's clock throughout: a stopped, frozen or unreachable database
/// all look the same.
macro_rules! heartbeat {
    () => {
        "INSERT INTO errand_servers AS s (server_id, seen_at, back_at) VALUES ($1, now(), now())
         ON CONFLICT (server_id) DO UPDATE SET seen_at = now(),
             back_at = CASE WHEN s.seen_at < now() - $2 * interval '1 millisecond'
                            THEN now() ELSE s.back_at END"
    };
}
pub(super) use heartbeat;
