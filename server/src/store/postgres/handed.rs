//! Endings the store leaves to a server's scheduler because they fall back
//! ([`Handed`]): in the caller's transaction, each task is claimed for that
//! server under a fresh lease (RUNNING, attempts kept), so no other server
//! claims or reaps it meanwhile, and a server that dies before ending it
//! leaves it to the reaper again.
use std::time::Duration;

use deadpool_postgres::Transaction;
use uuid::Uuid;

use super::errors::pg_error;
use crate::model::{Finish, TaskRecord, TaskState};
use crate::store::{Handed, StoreError};

/// Splits `endings` into those the store writes itself and those it hands
/// to `server_id` (claimed here for `lease`).
pub(super) async fn hand_over(
    tx: &Transaction<'_>,
    server_id: &str,
    lease: Duration,
    endings: Vec<(TaskRecord, Finish)>,
) -> Result<(Vec<(TaskRecord, Finish)>, Vec<Handed>), StoreError> {
    let (handed, kept): (Vec<_>, Vec<_>) = endings.into_iter().partition(|(t, f)| falls_back(t, f));
    if handed.is_empty() {
        return Ok((kept, Vec::new()));
    }
    let ids: Vec<Uuid> = handed.iter().map(|(t, _)| t.id).collect();
    let lease_ms = lease.as_millis() as f64;
    tx.execute(
        "UPDATE errand_tasks SET state = 1, owner = $1,
             lease_until = now() + $2 * interval '1 millisecond'
         WHERE id = ANY($3)",
        &[&server_id, &lease_ms, &ids],
    )
    .await
    .map_err(pg_error)?;
    let unqueued: Vec<Uuid> = handed
        .iter()
        .filter(|(t, _)| t.state == TaskState::Queued)
        .map(|(t, _)| t.id)
        .collect();
    super::rows::notify_left_queue(tx, &unqueued).await?;
    let handed = handed
        .into_iter()
        .map(|(mut task, finish)| {
            task.state = TaskState::Running;
            Handed { task, finish }
        })
        .collect();
    Ok((kept, handed))
}

/// Whether `finish` of `task` is an ending its fallback answers.
fn falls_back(task: &TaskRecord, finish: &Finish) -> bool {
    task.call.falls_back() && matches!(finish.state, TaskState::Failed | TaskState::TimedOut)
}
