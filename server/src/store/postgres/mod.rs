//! The shared store: PostgreSQL, through `tokio-postgres` with a
//! `deadpool-postgres` pool. Several errand servers on one database act as one
//! service: the queue lives in the database ([`SharedQueue`]), each server
//! claims work for its own workers, and completions are numbered per session
//! by the database.
//!
//! **Group commit.** Inserts, dispatch records, completions and releases go
//! through one writer task, fed by the bounded queue of `sql/batch.rs`: it
//! takes everything queued (up to `MAX_BATCH`), applies it in one
//! transaction with a handful of multi-row statements (`unnest` of arrays),
//! commits once, and only then answers each caller. A submit is
//! acknowledged only after its commit.
//!
//! **Seq.** A completion takes its `seq` from the session's counter row in
//! `errand_sessions`, updated in the transaction that finishes the task. The
//! task row is locked first (`FOR UPDATE`) and must still be unfinished, and a
//! result of an older attempt cannot finish a newer running attempt, so a
//! repeated or late result never makes a second completion. The counter row
//! stays locked until commit, so a session's seqs become visible in order with
//! no gap, whichever server wrote them. Rows are locked in a fixed order
//! (tasks by id, then sessions by name) so concurrent batches do not deadlock;
//! a batch that meets a deadlock or a lost connection is retried whole.
//!
//! **Leases.** A claimed task carries `owner` (the server's id) and
//! `lease_until` (database clock), renewed by its owner. An expired lease is
//! reclaimed by one reaper at a time (`pg_try_advisory_xact_lock`): queued
//! again, or failed with `worker_lost` once its attempts are used up. Only
//! when its holder really stopped, not because nobody could reach the
//! database: each server's heartbeat (`errand_servers`, renewed with its
//! leases in one statement) records when it last came back from a silence
//! longer than a lease, and a server reaps no lease until a lease after
//! that, so after an outage every live server renews first.
//!
//! **Bounded.** Every operation (pool checkout, query, transaction, the
//! writer's tries) ends within `op_timeout` (`--database-timeout-ms`) as
//! UNAVAILABLE, so a database that accepts connections and never answers
//! fails calls as a stopped one does.
//!
//! **Wake-ups.** `LISTEN`/`NOTIFY` on `errand_tasks` (a tool got work),
//! `errand_completions` (session and seq), `errand_cancels` (task id),
//! `errand_tools` and `errand_left_queue` (task ids claimed, or ended while
//! queued) are hints, delivered to the core as [`SharedEvent`]s; the core
//! also checks periodically, so a lost notification delays, never loses.
//!
//! **Schema.** Versioned migrations (`MIGRATIONS` in `schema.rs`), embedded
//! in the binary, run at start under an advisory lock; a database whose
//! schema is newer than this binary knows is refused.
use std::{
    str::FromStr,
    sync::Arc,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio::{sync::broadcast, task::JoinHandle};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;
use tracing::{error, info, warn};
use uuid::Uuid;

use crate::model::{CompletionRecord, Finish, TaskRecord};
pub use crate::store::sql::batch::WriterStats;
use crate::store::sql::{
    PURGE_CHUNK, Purge,
    batch::{self, Reply},
    codec::{TASK_COLUMNS, time_to_i64, to_i64},
};
use crate::store::{
    Acked, Durable, Inserted, SessionSeqs, SharedEvent, SharedQueue, Store, StoreError, StoredTool,
    health::WriteHealth,
};
pub use connection::check_url;
use connection::{bounded, bounded_within};
use errors::{pg_error, pool_error};
use listen::listen;
use rows::{completion_of, rows, task_from_row};
use schema::migrate;
use tls::{TlsFailure, tls_failure, tls_settings};
use writer::{Guard, Op, Writer};

mod connection;
mod contact;
mod errors;
mod finish;
mod handed;
mod insert;
mod listen;
mod queue;
mod reap;
mod rows;
mod schema;
#[cfg(test)]
mod tests;
mod tls;
mod tools;
mod writer;

/// How the store behaves: part of the one server configuration.
pub use crate::config::PostgresOptions;

/// A store on PostgreSQL, shared by every server pointed at the database.
pub struct PostgresStore {
    pool: Pool,
    tx: batch::Sender<Op>,
    server_id: Arc<str>,
    options: PostgresOptions,
    events: broadcast::Sender<SharedEvent>,
    tasks: Vec<JoinHandle<()>>,
    /// Whether this server's latest reap found it in steady contact with
    /// the database (back for a lease): logged when it stops being so.
    steady: std::sync::atomic::AtomicBool,
    /// Whether the calls reach the database: logged when it answers again.
    contact: Arc<contact::Contact>,
    /// Whether the writer's batches go through (health, metrics).
    health: Arc<WriteHealth>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl PostgresStore {
    async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    /// Runs one store operation within the operation timeout (see
    /// [`bounded`]).
    async fn bounded<T>(
        &self,
        what: &'static str,
        op: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let result = bounded(self.options.op_timeout, what, op).await;
        self.contact.observe(&result);
        result
    }

    /// Sends a change to the writer and waits until it is committed.
    async fn write<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T, StoreError> {
        self.tx.write(op).await
    }

    /// What this store's writer has done so far.
    pub fn stats(&self) -> WriterStats {
        self.tx.stats()
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn unfinished_tasks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        self.bounded("unfinished_tasks", async {
            let client = self.client().await?;
            let sql = format!(
                "SELECT {TASK_COLUMNS} FROM errand_tasks WHERE state < 2 ORDER BY created_at"
            );
            rows(&client, &sql, &[])
                .await?
                .iter()
                .map(task_from_row)
                .collect()
        })
        .await
    }

    async fn insert_task(&self, task: &TaskRecord) -> Result<Inserted, StoreError> {
        let task = Box::new(task.clone());
        self.write(|reply| Op::Insert(task, reply)).await
    }

    fn record_dispatch(&self, task_id: Uuid, attempt: u32, at: SystemTime) -> Durable {
        match self.tx.record_dispatch(task_id, attempt, at) {
            Ok(durable) => durable,
            Err(e) => {
                warn!(task_id = %task_id, error = %e, "recording a dispatch failed");
                Durable::done(Err(e))
            }
        }
    }

    fn record_requeue(&self, task_id: Uuid, attempt: u32) -> Durable {
        match self.tx.record_requeue(task_id, attempt) {
            Ok(durable) => durable,
            Err(e) => {
                warn!(task_id = %task_id, error = %e, "recording a requeue failed");
                Durable::done(Err(e))
            }
        }
    }

    async fn finish_task(&self, finish: &Finish) -> Result<Option<CompletionRecord>, StoreError> {
        let finish = Box::new(finish.clone());
        self.write(|reply| Op::Finish(finish, Guard::Attempt, reply))
            .await
    }

    async fn get_task(&self, task_id: Uuid) -> Result<Option<TaskRecord>, StoreError> {
        self.bounded("get_task", async {
            let client = self.client().await?;
            let sql = format!("SELECT {TASK_COLUMNS} FROM errand_tasks WHERE id = $1");
            rows(&client, &sql, &[&task_id])
                .await?
                .first()
                .map(task_from_row)
                .transpose()
        })
        .await
    }

    async fn last_good(
        &self,
        session: &str,
        tool: &str,
        args_hash: &crate::model::ArgsHash,
        not_before: SystemTime,
    ) -> Result<Option<TaskRecord>, StoreError> {
        self.bounded("last_good", async {
            let args_hash = args_hash.hex();
            let client = self.client().await?;
            let sql = format!(
                "SELECT {TASK_COLUMNS} FROM errand_tasks
                 WHERE session = $1 AND tool = $2 AND args_hash = $3 AND {}
                   AND finished_at >= $4 AND answered_by IS NULL
                 ORDER BY finished_at DESC LIMIT 1",
                crate::store::sql::call_columns::pg_last_good_candidate!()
            );
            rows(
                &client,
                &sql,
                &[&session, &tool, &args_hash, &time_to_i64(not_before)],
            )
            .await?
            .first()
            .map(task_from_row)
            .transpose()
        })
        .await
    }

    async fn park(&self, task_id: Uuid) -> Result<(), StoreError> {
        self.bounded("park", async {
            // Running with no owner and no lease: no claim (queued only) and no
            // reaper (expired leases only) takes it; its fallback run finishes it.
            let client = self.client().await?;
            rows(
                &client,
                "UPDATE errand_tasks SET state = 1, owner = NULL, lease_until = NULL
                 WHERE id = $1 AND state < 2 RETURNING id",
                &[&task_id],
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn task_by_key(
        &self,
        session: &str,
        key: &str,
    ) -> Result<Option<TaskRecord>, StoreError> {
        self.bounded("task_by_key", async {
            let client = self.client().await?;
            let sql = format!(
                "SELECT {TASK_COLUMNS} FROM errand_tasks WHERE session = $1 AND idempotency_key = $2"
            );
            rows(&client, &sql, &[&session, &key])
                .await?
                .first()
                .map(task_from_row)
                .transpose()
        })
        .await
    }

    async fn list_tasks(
        &self,
        query: &crate::store::TaskQuery,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        self.bounded("list_tasks", async {
            let (sql, params) =
                crate::store::sql::listing::select(query, "errand_tasks", |n| format!("${n}"));
            let params = listing_values(params);
            let client = self.client().await?;
            rows(&client, &sql, &listing_refs(&params))
                .await?
                .iter()
                .map(task_from_row)
                .collect()
        })
        .await
    }

    async fn count_tasks(&self, query: &crate::store::TaskQuery) -> Result<u64, StoreError> {
        self.bounded("count_tasks", async {
            let (sql, params) =
                crate::store::sql::listing::count(query, "errand_tasks", |n| format!("${n}"));
            let params = listing_values(params);
            let client = self.client().await?;
            let n: i64 = rows(&client, &sql, &listing_refs(&params))
                .await?
                .first()
                .map_or(0, |row| row.get(0));
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn completions_within(
        &self,
        session: &str,
        after_seq: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<CompletionRecord>, StoreError> {
        self.bounded("completions_after", async {
            let client = self.client().await?;
            // The byte bound in SQL, so rows past it are not sent:
            // a running sum of each row's texts (CompletionRecord::bytes),
            // a row kept while the ones before it hold less than $4.
            let sql = format!(
                "SELECT {TASK_COLUMNS} FROM (
                     SELECT {TASK_COLUMNS}, sum(own) OVER (ORDER BY seq) - own AS before
                     FROM (
                         SELECT {TASK_COLUMNS},
                             octet_length(arguments) + COALESCE(octet_length(result), 0)
                             + COALESCE(octet_length(error_code), 0)
                             + COALESCE(octet_length(error_message), 0)
                             + COALESCE(octet_length(summary), 0) AS own
                         FROM errand_tasks
                         WHERE session = $1 AND seq > 0 AND seq > $2
                           AND seq > COALESCE(
                               (SELECT acked_seq FROM errand_sessions WHERE session = $1), 0)
                         ORDER BY seq LIMIT $3
                     ) page
                 ) counted
                 WHERE before < $4 ORDER BY seq"
            );
            rows(
                &client,
                &sql,
                &[
                    &session,
                    &to_i64(after_seq),
                    &to_i64(limit as u64),
                    &to_i64(max_bytes.max(1) as u64),
                ],
            )
            .await?
            .iter()
            .map(|r| task_from_row(r).and_then(|t| completion_of(&t)))
            .collect()
        })
        .await
    }

    async fn ack_completions(
        &self,
        session: &str,
        up_to_seq: u64,
        default_budget: u64,
    ) -> Result<Acked, StoreError> {
        self.bounded("ack_completions", async {
            // After what this server has already sent, as the other stores do.
            self.write(Op::Barrier).await?;
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg_error)?;
            // The session's row is locked: concurrent acks raise acked_seq in turn.
            let seqs = tx
                .query_opt(
                    "SELECT last_seq, acked_seq FROM errand_sessions WHERE session = $1 FOR UPDATE",
                    &[&session],
                )
                .await
                .map_err(pg_error)?
                .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)));
            let (last, acked) = seqs.unwrap_or((0, 0));
            let (last_seq, acked_seq) = (last.max(0) as u64, acked.max(0) as u64);
            // Beyond the last seq (the caller says OUT_OF_RANGE), or acknowledged
            // already: nothing changes.
            if up_to_seq > last_seq || up_to_seq <= acked_seq {
                return Ok(Acked {
                    removed: 0,
                    acked_seq,
                    last_seq,
                });
            }
            let (from, to) = (to_i64(acked_seq), to_i64(up_to_seq));
            // Those above the acknowledged seq and not purged yet: released now.
            let released: i64 = tx
                .query_one(
                    "SELECT count(*) FROM errand_tasks
                     WHERE session = $1 AND seq > 0 AND seq > $2 AND seq <= $3",
                    &[&session, &from, &to],
                )
                .await
                .map_err(pg_error)?
                .get(0);
            let budget = to_i64(default_budget);
            tx.execute(rows::DELETE_ACKED, &[&session, &from, &to, &budget])
                .await
                .map_err(pg_error)?;
            tx.execute(
                "UPDATE errand_sessions SET acked_seq = $2 WHERE session = $1",
                &[&session, &to],
            )
            .await
            .map_err(pg_error)?;
            tx.commit().await.map_err(pg_error)?;
            Ok(Acked {
                removed: released.max(0) as u64,
                acked_seq: acked_seq.max(up_to_seq),
                last_seq,
            })
        })
        .await
    }

    async fn session_seqs(&self, session: &str) -> Result<SessionSeqs, StoreError> {
        self.bounded("session_seqs", async {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "SELECT s.last_seq, s.acked_seq,
                         (SELECT count(*) FROM errand_tasks t
                          WHERE t.session = s.session AND t.seq > 0 AND t.seq > s.acked_seq)
                     FROM errand_sessions s WHERE s.session = $1",
                    &[&session],
                )
                .await
                .map_err(pg_error)?;
            let (last, acked, count) = row.map_or((0, 0, 0), |r| {
                (r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, i64>(2))
            });
            Ok(SessionSeqs {
                last_seq: last.max(0) as u64,
                acked_seq: acked.max(0) as u64,
                unacknowledged: count.max(0) as u64,
            })
        })
        .await
    }

    async fn purge_finished_before(&self, cutoff: SystemTime) -> Result<u64, StoreError> {
        self.bounded("purge_finished_before", async {
            let client = self.client().await?;
            let st = client
                .prepare_cached(
                    "DELETE FROM errand_tasks WHERE id IN (
                         SELECT id FROM errand_tasks WHERE seq > 0 AND finished_at < $1 LIMIT $2)",
                )
                .await
                .map_err(pg_error)?;
            let mut purge = Purge::new(cutoff);
            while purge.step(
                client
                    .execute(&st, &[&time_to_i64(purge.cutoff), &PURGE_CHUNK])
                    .await
                    .map_err(pg_error)?,
            ) {}
            // Seq counters stay (seqs never repeat); turns of idle sessions go,
            // and the heartbeats of servers long gone.
            client
                .batch_execute(
                    "DELETE FROM errand_turns WHERE served_at < now() - interval '1 hour';
                     DELETE FROM errand_servers WHERE seen_at < now() - interval '1 day';",
                )
                .await
                .map_err(pg_error)?;
            Ok(purge.removed)
        })
        .await
    }

    async fn tools(&self) -> Result<Vec<StoredTool>, StoreError> {
        self.bounded("tools", async { tools::tools(&self.client().await?).await })
            .await
    }

    async fn put_tools(&self, defs: &[StoredTool]) -> Result<(), StoreError> {
        self.bounded("put_tools", async {
            let mut client = self.client().await?;
            let kept = tools::put_checked(
                &mut client,
                &self.server_id,
                self.options.lease,
                defs,
                tools::Put::Refresh,
            )
            .await?;
            if !kept.is_empty() {
                // Another server's workers serve these as stored: theirs stay.
                info!(
                    tools = kept.len(),
                    first = %crate::logs::field(&kept[0].name),
                    "tool definitions left as stored: other servers' workers serve them"
                );
            }
            Ok(())
        })
        .await
    }

    async fn forget_tools(&self, names: &[String]) -> Result<u64, StoreError> {
        self.bounded("forget_tools", async {
            let mut client = self.client().await?;
            tools::forget_tools(&mut client, &self.server_id, self.options.lease, names).await
        })
        .await
    }

    fn write_health(&self) -> Option<Arc<WriteHealth>> {
        Some(self.health.clone())
    }

    /// A batch of its own through the writer that rewrites one schema row
    /// unchanged and commits (after the writer's retries, within the
    /// operation timeout): a real write, refused by a full disk or a
    /// read-only database as a task's would be.
    async fn probe_write(&self) -> Result<(), StoreError> {
        self.write(Op::Probe).await
    }

    fn shared(&self) -> Option<&dyn SharedQueue> {
        Some(self)
    }
}

type ListingValue = Box<dyn tokio_postgres::types::ToSql + Sync + Send>;

/// A listing statement's parameters, as PostgreSQL values.
fn listing_values(params: Vec<crate::store::sql::listing::Param>) -> Vec<ListingValue> {
    use crate::store::sql::listing::Param;
    params
        .into_iter()
        .map(|p| -> ListingValue {
            match p {
                Param::Text(s) => Box::new(s),
                Param::Int(n) => Box::new(n),
                Param::Id(id) => Box::new(id),
            }
        })
        .collect()
}

fn listing_refs(values: &[ListingValue]) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    values
        .iter()
        .map(|p| &**p as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}
