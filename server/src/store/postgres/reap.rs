//! The reaper: times out queued tasks past their deadline and reclaims
//! expired leases, one server at a time (an advisory lock), and only once
//! this server has been in contact with the database for a lease, so that
//! after an outage every live server renews its leases first.
use std::{
    collections::HashSet,
    sync::atomic::Ordering,
    time::{Duration, SystemTime},
};

use tracing::warn;
use uuid::Uuid;

use super::PostgresStore;
use super::errors::pg_error;
use super::finish::finish_in;
use super::handed::hand_over;
use super::queue::queued_timeout;
use super::rows::{
    heartbeat, notify_tools, queue_wait_over, requeue_deadline_from, rows, task_from_row,
};
use super::writer::Guard;
use crate::model::{Finish, Outcome, TaskRecord, TaskState, codes};
use crate::store::sql::codec::{TASK_COLUMNS, time_to_i64};
use crate::store::{Reaped, StoreError};

/// Advisory lock key ("ERND" + n) held by the one reaper at work.
const REAPER_LOCK: i64 = 0x4552_4e44_0002;

impl PostgresStore {
    /// [`SharedQueue::reap`]: times out overdue queued tasks, then, once
    /// this server has been in contact with the database for a lease,
    /// reclaims expired leases (queued again, or ended once their attempts
    /// are used up), one reaper at a time.
    pub(super) async fn reap_leases(&self, max_attempts: u32) -> Result<Reaped, StoreError> {
        self.bounded("reap", async {
            let mut client = self.client().await?;
            let lease_ms = self.options.lease.as_millis() as f64;
            // This server's heartbeat, and whether it has been in contact for a
            // lease since it last came back (`back_at`).
            let steady: bool = client
                .query_one(
                    concat!(
                        heartbeat!(),
                        " RETURNING s.back_at <= now() - $2 * interval '1 millisecond'"
                    ),
                    &[&&*self.server_id, &lease_ms],
                )
                .await
                .map_err(pg_error)?
                .get(0);
            if self.steady.swap(steady, Ordering::Relaxed) && !steady {
                warn!(
                    lease_ms = self.options.lease.as_millis() as u64,
                    "this server could not reach the database for longer than a lease: it reclaims \
                     no expired lease for a lease, so the other servers renew theirs first"
                );
            }
            let tx = client.transaction().await.map_err(pg_error)?;
            let locked: bool = tx
                .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&REAPER_LOCK])
                .await
                .map_err(pg_error)?
                .get(0);
            if !locked {
                return Ok(Reaped::default());
            }
            let lease = self.options.lease;
            let mut reaped = time_out_overdue(&tx, &self.server_id, lease).await?;
            if !steady {
                // Back from a silence longer than a lease (or just started): the
                // other servers may have been cut off too, and get a lease to
                // renew theirs before this one reclaims any.
                if reaped.count > 0 || !reaped.handed.is_empty() {
                    tx.commit().await.map_err(pg_error)?;
                }
                return Ok(reaped);
            }
            let sql = format!(
                "SELECT {TASK_COLUMNS} FROM errand_tasks WHERE state = 1 AND lease_until < now()
                 ORDER BY lease_until LIMIT 1000 FOR UPDATE SKIP LOCKED"
            );
            let expired: Vec<TaskRecord> = rows(&tx, &sql, &[])
                .await?
                .iter()
                .map(task_from_row)
                .collect::<Result<_, _>>()?;
            if expired.is_empty() {
                if reaped.count > 0 || !reaped.handed.is_empty() {
                    tx.commit().await.map_err(pg_error)?;
                }
                return Ok(reaped);
            }
            let now = SystemTime::now();
            let (spent, again): (Vec<_>, Vec<_>) = expired
                .into_iter()
                .partition(|t| t.attempts >= max_attempts.max(1));
            let endings = spent
                .into_iter()
                .map(|t| {
                    let message = format!(
                        "the server running the task stopped, {}",
                        crate::text::on_attempts(t.attempts)
                    );
                    let finish = Finish {
                        task_id: t.id,
                        state: TaskState::Failed,
                        outcome: Outcome::error(codes::WORKER_LOST, message),
                        attempts: t.attempts,
                        finished_at: now,
                        notes: Default::default(),
                    };
                    (t, finish)
                })
                .collect();
            // Endings that fall back go to this server's scheduler.
            let (kept, handed) = hand_over(&tx, &self.server_id, lease, endings).await?;
            let finishes: Vec<(Finish, Guard)> = kept
                .into_iter()
                .map(|(t, finish)| {
                    // A fallback run's ending is its call's (and drops the run).
                    let finish = match &t.call.fallback_for {
                        Some(link) => {
                            crate::model::call::run_ending_as_call(&t, (**link).clone(), finish)
                        }
                        None => finish,
                    };
                    (finish, Guard::Any)
                })
                .collect();
            finish_in(&tx, &finishes).await?;
            let ids: Vec<Uuid> = again.iter().map(|t| t.id).collect();
            tx.execute(
                concat!(
                    "UPDATE errand_tasks SET state = 0, owner = NULL, lease_until = NULL, ",
                    requeue_deadline_from!("$2"),
                    " WHERE id = ANY($1)"
                ),
                &[&ids, &time_to_i64(now)],
            )
            .await
            .map_err(pg_error)?;
            let tools: Vec<String> = again
                .iter()
                .map(|t| t.tool.to_string())
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            notify_tools(&tx, &tools).await?;
            tx.commit().await.map_err(pg_error)?;
            warn!(
                requeued = again.len(),
                failed = finishes.len(),
                falling_back = handed.len(),
                "reclaimed tasks whose server stopped renewing their lease"
            );
            reaped.count += again.len() + finishes.len();
            reaped.handed.extend(handed);
            Ok(reaped)
        })
        .await
    }
}

/// Ends queued tasks past their queue deadline as TIMED_OUT
/// (`queue_timeout`), at most 1000 per call: the timer of the server that
/// took the submit normally does, this covers its restarts. Those whose
/// ending falls back are handed to `server_id` instead.
async fn time_out_overdue(
    tx: &deadpool_postgres::Transaction<'_>,
    server_id: &str,
    lease: Duration,
) -> Result<Reaped, StoreError> {
    let now = SystemTime::now();
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM errand_tasks WHERE state = 0 AND {}
         ORDER BY created_at LIMIT 1000 FOR UPDATE SKIP LOCKED",
        queue_wait_over!("$1")
    );
    let overdue: Vec<TaskRecord> = rows(tx, &sql, &[&time_to_i64(now)])
        .await?
        .iter()
        .map(task_from_row)
        .collect::<Result<_, _>>()?;
    let endings = overdue
        .into_iter()
        .map(|t| {
            let outcome = Outcome::error(codes::QUEUE_TIMEOUT, crate::text::queue_timeout(&t));
            let finish = Finish {
                task_id: t.id,
                state: TaskState::TimedOut,
                outcome,
                attempts: t.attempts,
                finished_at: now,
                notes: Default::default(),
            };
            (t, finish)
        })
        .collect();
    // Endings that fall back go to this server's scheduler.
    let (kept, handed) = hand_over(tx, server_id, lease, endings).await?;
    let finishes: Vec<(Finish, Guard)> = kept
        .into_iter()
        .map(|(t, finish)| queued_timeout(&t, finish))
        .collect();
    finish_in(tx, &finishes).await?;
    Ok(Reaped {
        count: finishes.len(),
        handed,
    })
}
