//! The shared queue: claims, leases (the reaper is `reap.rs`), published
//! tools, and the hints of [`SharedEvent`]s.
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio::sync::broadcast;
use uuid::Uuid;

use super::PostgresStore;
use super::errors::pg_error;
use super::finish::finish_in;
use super::handed::hand_over;
use super::rows::{exec, heartbeat, prefixed, rows, task_from_row};
use super::writer::{Guard, Op};
use crate::model::{CompletionRecord, Finish, Outcome, TaskRecord, TaskState, codes};
use crate::store::sql::codec::{TASK_COLUMNS, time_to_i64, to_i64};
use crate::store::{
    LostTask, QueuedEnding, Reaped, SharedEvent, SharedQueue, StoreError, ToolAdvert,
};

#[async_trait]
impl SharedQueue for PostgresStore {
    fn server_id(&self) -> &str {
        &self.server_id
    }

    fn lease(&self) -> Duration {
        self.options.lease
    }

    async fn claim(&self, tool: &str, limit: usize) -> Result<Vec<TaskRecord>, StoreError> {
        self.bounded("claim", async {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let client = self.client().await?;
            // Fair between sessions: every session's oldest queued tasks are
            // ranked by their place in their session, then sessions take turns:
            // the one served longest ago (or never) first.
            let sql = format!(
                "WITH heads AS (
                     SELECT t.id, t.created_at, s.session,
                            row_number() OVER (PARTITION BY s.session ORDER BY t.created_at) AS rn
                     FROM (SELECT DISTINCT session FROM errand_tasks WHERE state = 0 AND tool = $1) s
                     CROSS JOIN LATERAL (
                         SELECT id, created_at FROM errand_tasks
                         WHERE state = 0 AND tool = $1 AND session = s.session
                         ORDER BY created_at LIMIT $2) t
                 ), picked AS (
                     SELECT id FROM errand_tasks
                     WHERE id IN (
                         SELECT h.id FROM heads h LEFT JOIN errand_turns u ON u.session = h.session
                         ORDER BY h.rn, u.served_at NULLS FIRST, h.created_at LIMIT $2)
                       AND state = 0
                     FOR UPDATE SKIP LOCKED
                 )
                 UPDATE errand_tasks t SET state = 1, owner = $3,
                     lease_until = now() + $4 * interval '1 millisecond'
                 FROM picked WHERE t.id = picked.id
                 RETURNING {}",
                prefixed("t.")
            );
            let lease_ms = self.options.lease.as_millis() as f64;
            let claimed: Vec<TaskRecord> = rows(
                &client,
                &sql,
                &[&tool, &(limit as i64), &&*self.server_id, &lease_ms],
            )
            .await?
            .iter()
            .map(|r| {
                // The claim is not a dispatch: the task is queued here until a
                // worker takes it, and its attempts count only real dispatches.
                task_from_row(r).map(|mut t| {
                    t.state = TaskState::Queued;
                    t
                })
            })
            .collect::<Result<_, _>>()?;
            if !claimed.is_empty() {
                let mut sessions: Vec<&str> = claimed.iter().map(|t| &*t.session).collect();
                sessions.sort_unstable();
                sessions.dedup();
                // With the sessions' turns, every server is told that these
                // left the queue (the one that accepted each stops watching
                // its queue deadline).
                let ids: Vec<Uuid> = claimed.iter().map(|t| t.id).collect();
                exec(
                    &client,
                    "WITH turns AS (
                         INSERT INTO errand_turns (session, served_at)
                         SELECT s, clock_timestamp() FROM unnest($1::text[]) AS s
                         ON CONFLICT (session) DO UPDATE SET served_at = EXCLUDED.served_at)
                     SELECT pg_notify('errand_left_queue', p) FROM unnest($2::text[]) AS p",
                    &[&sessions, &super::listen::left_queue_payloads(&ids)],
                )
                .await?;
            }
            Ok(claimed)
        })
        .await
    }

    async fn release(&self, task_ids: Vec<Uuid>) -> Result<(), StoreError> {
        if task_ids.is_empty() {
            return Ok(());
        }
        self.write(|reply| Op::Release(task_ids, reply)).await
    }

    async fn renew(&self, held: &[Uuid]) -> Result<Vec<Uuid>, StoreError> {
        self.bounded("renew", async {
            let client = self.client().await?;
            let lease_ms = self.options.lease.as_millis() as f64;
            // One statement: this server's heartbeat, its tools' and its leases
            // are renewed together, so no reaper sees the one without the other.
            let st = client
                .prepare_cached(concat!(
                    "WITH beat AS (",
                    heartbeat!(),
                    "), tools AS (UPDATE errand_tools SET seen_at = now() WHERE server_id = $1)
                     UPDATE errand_tasks SET lease_until = now() + $2 * interval '1 millisecond'
                     WHERE id = ANY($3) AND owner = $1 AND state = 1 RETURNING id"
                ))
                .await
                .map_err(pg_error)?;
            let ids: Vec<Uuid> = held.to_vec();
            Ok(client
                .query(&st, &[&&*self.server_id, &lease_ms, &ids])
                .await
                .map_err(pg_error)?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })
        .await
    }

    async fn lost(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, LostTask)>, StoreError> {
        self.bounded("lost", async {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let client = self.client().await?;
            let sql = format!("SELECT {TASK_COLUMNS} FROM errand_tasks WHERE id = ANY($1)");
            let found: Vec<TaskRecord> = rows(&client, &sql, &[&ids])
                .await?
                .iter()
                .map(task_from_row)
                .collect::<Result<_, _>>()?;
            Ok(ids
                .iter()
                .map(|id| {
                    let why = match found.iter().find(|t| t.id == *id) {
                        Some(t) if !t.state.is_final() => LostTask::Reclaimed,
                        Some(t) => LostTask::Finished(t.state, t.outcome.clone()),
                        None => LostTask::Gone,
                    };
                    (*id, why)
                })
                .collect())
        })
        .await
    }

    async fn reap(&self, max_attempts: u32) -> Result<Reaped, StoreError> {
        self.reap_leases(max_attempts).await
    }

    async fn cancel(
        &self,
        task_id: Uuid,
        reason: &str,
    ) -> Result<Option<CompletionRecord>, StoreError> {
        let finish = Box::new(Finish {
            task_id,
            state: TaskState::Cancelled,
            outcome: Outcome::error(codes::CANCELLED, crate::text::cancelled(reason).0),
            attempts: 0,
            finished_at: SystemTime::now(),
            notes: Default::default(),
        });
        self.write(|reply| Op::Finish(finish, Guard::Cancel, reply))
            .await
    }

    async fn time_out_queued(
        &self,
        task_id: Uuid,
        outcome: Outcome,
    ) -> Result<Option<QueuedEnding>, StoreError> {
        self.bounded("time_out_queued", async {
            // One transaction, the row locked throughout: no worker claims the
            // task between the check that it is queued and its ending.
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg_error)?;
            // A task queued again after a run waits afresh: the timer of the
            // server that gave it back may fire before the stored wait is over
            // (the reaper ends it then).
            let sql = format!(
                "SELECT {TASK_COLUMNS} FROM errand_tasks WHERE id = $1 AND state = 0
                     AND NOT (attempts > 0 AND COALESCE(requeue_deadline >= $2, true))
                 FOR UPDATE"
            );
            let now = time_to_i64(SystemTime::now());
            let Some(task) = rows(&tx, &sql, &[&task_id, &now])
                .await?
                .first()
                .map(task_from_row)
                .transpose()?
            else {
                return Ok(None);
            };
            let finish = Finish {
                task_id,
                state: TaskState::TimedOut,
                outcome,
                attempts: task.attempts,
                finished_at: SystemTime::now(),
                notes: Default::default(),
            };
            let (kept, mut handed) = hand_over(
                &tx,
                &self.server_id,
                self.options.lease,
                vec![(task, finish)],
            )
            .await?;
            let ended = match handed.pop() {
                Some(h) => Some(QueuedEnding::Handed(Box::new(h))),
                None => {
                    let finishes: Vec<(Finish, Guard)> = kept
                        .into_iter()
                        .map(|(t, f)| queued_timeout(&t, f))
                        .collect();
                    finish_in(&tx, &finishes)
                        .await?
                        .pop()
                        .flatten()
                        .map(|c| QueuedEnding::Finished(Box::new(c)))
                }
            };
            tx.commit().await.map_err(pg_error)?;
            Ok(ended)
        })
        .await
    }

    async fn tell_cancelled(&self, task_id: Uuid, reason: &str) -> Result<(), StoreError> {
        self.bounded("tell_cancelled", async {
            let payload = super::listen::cancel_payload(task_id, reason);
            let client = self.client().await?;
            exec(
                &client,
                "SELECT pg_notify('errand_cancels', $1)",
                &[&payload],
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn publish_tools(&self, tools: Vec<ToolAdvert>) -> Result<(), StoreError> {
        self.bounded("publish_tools", async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg_error)?;
            tx.execute(
                "DELETE FROM errand_tools WHERE server_id = $1",
                &[&&*self.server_id],
            )
            .await
            .map_err(pg_error)?;
            let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
            let descriptions: Vec<&str> = tools.iter().map(|t| t.description.as_str()).collect();
            let schemas: Vec<&str> = tools.iter().map(|t| t.input_schema.as_str()).collect();
            // 0: no default timeout (the column predates `Option`).
            let timeouts: Vec<i64> = tools
                .iter()
                .map(|t| to_i64(t.default_timeout_ms.unwrap_or(0)))
                .collect();
            let workers: Vec<i32> = tools.iter().map(|t| t.workers as i32).collect();
            tx.execute(
                "INSERT INTO errand_tools (server_id, name, description, input_schema_json, timeout_ms, workers)
                 SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::int8[], $6::int4[])",
                &[&&*self.server_id, &names, &descriptions, &schemas, &timeouts, &workers],
            )
            .await
            .map_err(pg_error)?;
            tx.execute("SELECT pg_notify('errand_tools', $1)", &[&&*self.server_id])
                .await
                .map_err(pg_error)?;
            tx.commit().await.map_err(pg_error)
        })
        .await
    }

    async fn remote_tools(&self) -> Result<Vec<ToolAdvert>, StoreError> {
        self.bounded("remote_tools", async {
            let client = self.client().await?;
            let stale_ms = super::tools::stale_ms(self.options.lease);
            let rows = client
                .query(
                    "SELECT name, description, input_schema_json, timeout_ms, workers FROM errand_tools
                     WHERE server_id <> $1 AND seen_at > now() - $2 * interval '1 millisecond'
                     ORDER BY name, seen_at DESC",
                    &[&&*self.server_id, &stale_ms],
                )
                .await
                .map_err(pg_error)?;
            let mut tools: Vec<ToolAdvert> = Vec::new();
            for r in rows {
                let name: String = r.get(0);
                let workers: i32 = r.get(4);
                match tools.last_mut() {
                    Some(t) if t.name == name => t.workers += workers.max(0) as u32,
                    _ => tools.push(ToolAdvert {
                        name,
                        description: r.get(1),
                        input_schema: r.get(2),
                        default_timeout_ms: Some(r.get::<_, i64>(3).max(0) as u64).filter(|&ms| ms > 0),
                        workers: workers.max(0) as u32,
                    }),
                }
            }
            Ok(tools)
        })
        .await
    }

    async fn register_tools(
        &self,
        tools: &[crate::store::StoredTool],
    ) -> Result<Vec<crate::store::StoredTool>, StoreError> {
        self.bounded("register_tools", async {
            let mut client = self.client().await?;
            super::tools::put_checked(
                &mut client,
                &self.server_id,
                self.options.lease,
                tools,
                super::tools::Put::Register,
            )
            .await
        })
        .await
    }

    async fn withdraw_tools(&self) -> Result<(), StoreError> {
        self.bounded("withdraw_tools", async {
            let client = self.client().await?;
            client
                .execute(
                    "DELETE FROM errand_tools WHERE server_id = $1",
                    &[&&*self.server_id],
                )
                .await
                .map_err(pg_error)?;
            Ok(())
        })
        .await
    }

    async fn last_seqs(&self, sessions: &[String]) -> Result<Vec<(String, u64)>, StoreError> {
        self.bounded("last_seqs", async {
            if sessions.is_empty() {
                return Ok(Vec::new());
            }
            let client = self.client().await?;
            Ok(client
                .query(
                    "SELECT session, last_seq FROM errand_sessions WHERE session = ANY($1)",
                    &[&sessions],
                )
                .await
                .map_err(pg_error)?
                .iter()
                .map(|r| (r.get(0), r.get::<_, i64>(1).max(0) as u64))
                .collect())
        })
        .await
    }

    async fn queued_by_tool(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.bounded("queued_by_tool", async {
            let client = self.client().await?;
            // The partial index errand_tasks_queued holds exactly these rows.
            Ok(client
                .query(
                    "SELECT tool, count(*) FROM errand_tasks WHERE state = 0
                     GROUP BY tool ORDER BY tool LIMIT $1",
                    &[&crate::store::MAX_QUEUED_TOOLS],
                )
                .await
                .map_err(pg_error)?
                .iter()
                .map(|r| (r.get(0), r.get::<_, i64>(1).max(0) as u64))
                .collect())
        })
        .await
    }

    fn events(&self) -> broadcast::Receiver<SharedEvent> {
        self.events.subscribe()
    }
}

/// How the store writes the queue timeout `finish` of `task` (locked, still
/// queued) that does not fall back, for the reaper and the queue timers
/// alike: a fallback run's ending is its call's (and drops the run), the
/// call being parked (RUNNING), so not guarded as queued; any other task's
/// is its own, only while it is queued.
pub(super) fn queued_timeout(task: &TaskRecord, finish: Finish) -> (Finish, Guard) {
    match &task.call.fallback_for {
        Some(link) => (
            crate::model::call::run_ending_as_call(task, (**link).clone(), finish),
            Guard::Any,
        ),
        None => (finish, Guard::Queued),
    }
}
