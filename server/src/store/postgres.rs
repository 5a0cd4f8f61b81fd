//! The shared store: PostgreSQL, through `tokio-postgres` with a
//! `deadpool-postgres` pool. Several errand servers on one database act as one
//! service: the queue lives in the database ([`SharedQueue`]), each server
//! claims work for its own workers, and completions are numbered per session
//! by the database.
//!
//! **Group commit.** Inserts, dispatch records, completions and releases go
//! through one writer task: it takes everything queued (up to [`MAX_BATCH`]),
//! applies it in one transaction with a handful of multi-row statements
//! (`unnest` of arrays), commits once, and only then answers each caller. A
//! submit is acknowledged only after its commit.
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
//! again, or failed with `worker_lost` once its attempts are used up.
//!
//! **Wake-ups.** `LISTEN`/`NOTIFY` on `errand_tasks` (a tool got work),
//! `errand_completions` (session and seq), `errand_cancels` (task id) and
//! `errand_tools` are hints, delivered to the core as [`SharedEvent`]s; the
//! core also checks periodically, so a lost notification delays, never loses.
//!
//! **Schema.** Versioned migrations ([`MIGRATIONS`]) embedded in the binary run
//! at start under an advisory lock; a database whose schema is newer than this
//! binary knows is refused.
use std::{
    collections::{HashMap, HashSet},
    str::FromStr,
    sync::Arc,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Transaction,
};
use futures::StreamExt;
use tokio::{
    sync::{broadcast, mpsc, oneshot},
    task::JoinHandle,
};
use tokio_postgres::{AsyncMessage, NoTls, Row, error::SqlState, types::ToSql};
use tracing::{debug, error, info, warn};
use uuid::Uuid;

use super::codec::{
    self, duration_to_i64, outcome_columns, state_code, state_from_code, time_from_i64,
    time_to_i64, to_i64,
};
use super::{Inserted, SharedEvent, SharedQueue, Store, StoreError, ToolAdvert};
use crate::model::{CompletionRecord, Finish, Outcome, TaskRecord, TaskState, codes};

/// Most changes applied in one transaction.
pub const MAX_BATCH: usize = 1024;
/// Rows one purge statement deletes.
const PURGE_CHUNK: i64 = 5_000;
/// Advisory lock keys ("ERND" + n).
const MIGRATE_LOCK: i64 = 0x4552_4e44_0001;
const REAPER_LOCK: i64 = 0x4552_4e44_0002;
/// How long the writer keeps retrying a batch on a lost database before it
/// fails the callers (who may retry: nothing was acknowledged).
const WRITE_RETRY_FOR: Duration = Duration::from_secs(10);

/// Schema migrations, applied in order; `errand_schema` records each one.
/// Only ever append.
pub const MIGRATIONS: &[&str] = &[
    // 1: tasks carrying their completion and lease; per-session seq counters;
    //    the tools each server's workers serve.
    "CREATE TABLE errand_tasks (
        id              uuid PRIMARY KEY,
        session         text NOT NULL,
        tool            text NOT NULL,
        arguments       text NOT NULL,
        timeout_ns      bigint NOT NULL,
        idempotency_key text,
        created_at      bigint NOT NULL,
        state           smallint NOT NULL,
        attempts        integer NOT NULL,
        started_at      bigint,
        finished_at     bigint,
        result          text,
        error_code      text,
        error_message   text,
        seq             bigint NOT NULL DEFAULT 0,
        owner           text,
        lease_until     timestamptz
    );
    CREATE INDEX errand_tasks_queued ON errand_tasks (tool, session, created_at) WHERE state = 0;
    CREATE INDEX errand_tasks_unfinished ON errand_tasks (session) WHERE state < 2;
    CREATE INDEX errand_tasks_leases ON errand_tasks (lease_until) WHERE state = 1;
    CREATE UNIQUE INDEX errand_tasks_idempotency ON errand_tasks (session, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX errand_tasks_completions ON errand_tasks (session, seq) WHERE seq > 0;
    CREATE INDEX errand_tasks_finished ON errand_tasks (finished_at) WHERE seq > 0;
    CREATE TABLE errand_sessions (
        session  text PRIMARY KEY,
        last_seq bigint NOT NULL
    );
    CREATE TABLE errand_turns (
        session   text PRIMARY KEY,
        served_at timestamptz NOT NULL
    );
    CREATE TABLE errand_tools (
        server_id         text NOT NULL,
        name              text NOT NULL,
        description       text NOT NULL,
        input_schema_json text NOT NULL,
        timeout_ms        bigint NOT NULL,
        workers           integer NOT NULL,
        seen_at           timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (server_id, name)
    );",
];

const TASK_COLUMNS: &str = "id, session, tool, arguments, timeout_ns, idempotency_key, \
     created_at, state, attempts, started_at, finished_at, result, error_code, error_message, seq";

/// How the store behaves; `Default` is what `errand serve` uses.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// How long a claimed task stays this server's without a renewal.
    pub lease: Duration,
    /// Unfinished tasks one session may have, across all servers.
    pub max_pending_per_session: usize,
    /// Connections in the pool (reads, claims, renewals; the writer takes one).
    pub pool_size: usize,
    /// Give up connecting at start after this long (`None`: keep trying).
    pub connect_timeout: Option<Duration>,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(10),
            max_pending_per_session: 10_000,
            pool_size: 8,
            connect_timeout: None,
        }
    }
}

/// A store on PostgreSQL, shared by every server pointed at the database.
pub struct PostgresStore {
    pool: Pool,
    tx: mpsc::UnboundedSender<Op>,
    server_id: Arc<str>,
    options: PostgresOptions,
    events: broadcast::Sender<SharedEvent>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl PostgresStore {
    /// Connects to `url` (a `postgres://` URL or `key=value` string), runs
    /// the migrations and starts the writer and the listener. While the
    /// database is unreachable it logs why and retries with backoff (up to
    /// `options.connect_timeout`); a schema newer than this binary is refused.
    pub async fn connect(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let config = tokio_postgres::Config::from_str(url).map_err(|e| {
            StoreError::Internal(format!(
                "the database URL is not valid ({e}): use postgres://USER@HOST:PORT/DBNAME"
            ))
        })?;
        let target = describe(&config);
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(2))
            .build()
            .map_err(|e| StoreError::Internal(format!("building the connection pool: {e}")))?;
        let started = tokio::time::Instant::now();
        let mut backoff = Duration::from_millis(100);
        loop {
            match migrate(&pool).await {
                Ok(()) => break,
                Err(StoreError::Unavailable(why)) => {
                    if options
                        .connect_timeout
                        .is_some_and(|limit| started.elapsed() >= limit)
                    {
                        return Err(StoreError::Unavailable(format!(
                            "cannot reach PostgreSQL at {target}: {why}"
                        )));
                    }
                    error!(database = %target, error = %why, retry_in_ms = backoff.as_millis() as u64,
                        "cannot reach PostgreSQL; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
        let server_id: Arc<str> = format!(
            "{}-{}",
            std::process::id(),
            &Uuid::new_v4().simple().to_string()[..8]
        )
        .into();
        let (events, _) = broadcast::channel(4096);
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = Writer {
            pool: pool.clone(),
            server_id: server_id.clone(),
            options: options.clone(),
        };
        let tasks = vec![
            tokio::spawn(writer.run(rx)),
            tokio::spawn(listen(config, events.clone())),
        ];
        info!(database = %target, server_id = %server_id, "PostgreSQL store ready");
        Ok(Self {
            pool,
            tx,
            server_id,
            options,
            events,
            tasks,
        })
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    async fn write<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(op(reply)).map_err(|_| writer_gone())?;
        answer.await.map_err(|_| writer_gone())?
    }
}

fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("(default)");
    format!("{host}:{port}/{db}")
}

/// Creates or upgrades the schema, one server at a time.
async fn migrate(pool: &Pool) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
        .await
        .map_err(pg_error)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS errand_schema (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .map_err(pg_error)?;
    let version: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM errand_schema", &[])
        .await
        .map_err(pg_error)?
        .get(0);
    let known = MIGRATIONS.len() as i32;
    if version > known {
        return Err(StoreError::Internal(format!(
            "the database has errand schema version {version}, newer than this errand knows \
             ({known}): it was written by a newer errand; run that version or a later one"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.batch_execute(sql).await.map_err(pg_error)?;
        tx.execute(
            "INSERT INTO errand_schema (version) VALUES ($1)",
            &[&(i as i32 + 1)],
        )
        .await
        .map_err(pg_error)?;
        info!(version = i + 1, "database schema migrated");
    }
    tx.commit().await.map_err(pg_error)
}

// ---------------------------------------------------------------- Store

#[async_trait]
impl Store for PostgresStore {
    async fn unfinished_tasks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        let client = self.client().await?;
        let sql =
            format!("SELECT {TASK_COLUMNS} FROM errand_tasks WHERE state < 2 ORDER BY created_at");
        rows(&client, &sql, &[])
            .await?
            .iter()
            .map(task_from_row)
            .collect()
    }

    async fn insert_task(&self, task: &TaskRecord) -> Result<Inserted, StoreError> {
        let task = Box::new(task.clone());
        self.write(|reply| Op::Insert(task, reply)).await
    }

    fn record_dispatch(&self, task_id: Uuid, attempt: u32, at: SystemTime) {
        let _ = self.tx.send(Op::Dispatch {
            task_id,
            attempt,
            at,
        });
    }

    async fn finish_task(&self, finish: &Finish) -> Result<Option<CompletionRecord>, StoreError> {
        let finish = Box::new(finish.clone());
        self.write(|reply| Op::Finish(finish, Guard::Attempt, reply))
            .await
    }

    async fn get_task(&self, task_id: Uuid) -> Result<Option<TaskRecord>, StoreError> {
        let client = self.client().await?;
        let sql = format!("SELECT {TASK_COLUMNS} FROM errand_tasks WHERE id = $1");
        rows(&client, &sql, &[&task_id])
            .await?
            .first()
            .map(task_from_row)
            .transpose()
    }

    async fn completions_after(
        &self,
        session: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<CompletionRecord>, StoreError> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM errand_tasks
             WHERE session = $1 AND seq > 0 AND seq > $2 ORDER BY seq LIMIT $3"
        );
        rows(
            &client,
            &sql,
            &[&session, &to_i64(after_seq), &to_i64(limit as u64)],
        )
        .await?
        .iter()
        .map(|r| task_from_row(r).and_then(|t| completion_of(&t)))
        .collect()
    }

    async fn ack_completions(&self, session: &str, up_to_seq: u64) -> Result<u64, StoreError> {
        // After what this server has already sent, as the other stores do.
        self.write(Op::Barrier).await?;
        let client = self.client().await?;
        let st = client
            .prepare_cached("DELETE FROM errand_tasks WHERE session = $1 AND seq > 0 AND seq <= $2")
            .await
            .map_err(pg_error)?;
        client
            .execute(&st, &[&session, &to_i64(up_to_seq)])
            .await
            .map_err(pg_error)
    }

    async fn purge_finished_before(&self, cutoff: SystemTime) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let st = client
            .prepare_cached(
                "DELETE FROM errand_tasks WHERE id IN (
                     SELECT id FROM errand_tasks WHERE seq > 0 AND finished_at < $1 LIMIT $2)",
            )
            .await
            .map_err(pg_error)?;
        let mut removed = 0;
        loop {
            let n = client
                .execute(&st, &[&time_to_i64(cutoff), &PURGE_CHUNK])
                .await
                .map_err(pg_error)?;
            removed += n;
            if n < PURGE_CHUNK as u64 {
                break;
            }
        }
        // Seq counters stay (seqs never repeat); turns of idle sessions go.
        client
            .execute(
                "DELETE FROM errand_turns WHERE served_at < now() - interval '1 hour'",
                &[],
            )
            .await
            .map_err(pg_error)?;
        Ok(removed)
    }

    fn shared(&self) -> Option<&dyn SharedQueue> {
        Some(self)
    }
}

// ---------------------------------------------------------------- SharedQueue

#[async_trait]
impl SharedQueue for PostgresStore {
    fn server_id(&self) -> &str {
        &self.server_id
    }

    fn lease(&self) -> Duration {
        self.options.lease
    }

    async fn claim(&self, tool: &str, limit: usize) -> Result<Vec<TaskRecord>, StoreError> {
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
            exec(
                &client,
                "INSERT INTO errand_turns (session, served_at)
                 SELECT s, clock_timestamp() FROM unnest($1::text[]) AS s
                 ON CONFLICT (session) DO UPDATE SET served_at = EXCLUDED.served_at",
                &[&sessions],
            )
            .await?;
        }
        Ok(claimed)
    }

    async fn release(&self, task_ids: Vec<Uuid>) -> Result<(), StoreError> {
        if task_ids.is_empty() {
            return Ok(());
        }
        self.write(|reply| Op::Release(task_ids, reply)).await
    }

    async fn renew(&self, held: &[Uuid]) -> Result<Vec<Uuid>, StoreError> {
        let client = self.client().await?;
        let lease_ms = self.options.lease.as_millis() as f64;
        client
            .execute(
                "UPDATE errand_tools SET seen_at = now() WHERE server_id = $1",
                &[&&*self.server_id],
            )
            .await
            .map_err(pg_error)?;
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let st = client
            .prepare_cached(
                "UPDATE errand_tasks SET lease_until = now() + $2 * interval '1 millisecond'
                 WHERE id = ANY($3) AND owner = $1 AND state = 1 RETURNING id",
            )
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
    }

    async fn reap(&self, max_attempts: u32) -> Result<usize, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let locked: bool = tx
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&REAPER_LOCK])
            .await
            .map_err(pg_error)?
            .get(0);
        if !locked {
            return Ok(0);
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
            return Ok(0);
        }
        let now = SystemTime::now();
        let (spent, again): (Vec<_>, Vec<_>) = expired
            .iter()
            .partition(|t| t.attempts >= max_attempts.max(1));
        let finishes: Vec<(Finish, Guard)> = spent
            .iter()
            .map(|t| {
                let message = format!(
                    "the server running the task stopped, on each of its {} attempts",
                    t.attempts
                );
                (
                    Finish {
                        task_id: t.id,
                        state: TaskState::Failed,
                        outcome: Outcome::error(codes::WORKER_LOST, message),
                        attempts: t.attempts,
                        finished_at: now,
                    },
                    Guard::Any,
                )
            })
            .collect();
        finish_in(&tx, &finishes).await?;
        let ids: Vec<Uuid> = again.iter().map(|t| t.id).collect();
        tx.execute(
            "UPDATE errand_tasks SET state = 0, owner = NULL, lease_until = NULL WHERE id = ANY($1)",
            &[&ids],
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
            failed = spent.len(),
            "reclaimed tasks whose server stopped renewing their lease"
        );
        Ok(expired.len())
    }

    async fn cancel(&self, task_id: Uuid) -> Result<Option<CompletionRecord>, StoreError> {
        let finish = Box::new(Finish {
            task_id,
            state: TaskState::Cancelled,
            outcome: Outcome::error(codes::CANCELLED, "cancelled by the client"),
            attempts: 0,
            finished_at: SystemTime::now(),
        });
        self.write(|reply| Op::Finish(finish, Guard::Cancel, reply))
            .await
    }

    async fn publish_tools(&self, tools: Vec<ToolAdvert>) -> Result<(), StoreError> {
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
    }

    async fn remote_tools(&self) -> Result<Vec<ToolAdvert>, StoreError> {
        let client = self.client().await?;
        let stale_ms = 3.0 * self.options.lease.as_millis() as f64;
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
    }

    async fn withdraw_tools(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM errand_tools WHERE server_id = $1",
                &[&&*self.server_id],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn last_seqs(&self, sessions: &[String]) -> Result<Vec<(String, u64)>, StoreError> {
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
    }

    fn events(&self) -> broadcast::Receiver<SharedEvent> {
        self.events.subscribe()
    }
}

// ---------------------------------------------------------------- writer

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// Which finishes a stored task accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// Not a result of an older attempt than the one running.
    Attempt,
    /// Any unfinished task (the reaper).
    Any,
    /// Any unfinished task, keeping its attempts; its holder is told.
    Cancel,
}

enum Op {
    Insert(Box<TaskRecord>, Reply<Inserted>),
    Dispatch {
        task_id: Uuid,
        attempt: u32,
        at: SystemTime,
    },
    Finish(Box<Finish>, Guard, Reply<Option<CompletionRecord>>),
    Release(Vec<Uuid>, Reply<()>),
    /// Answered once every change sent before it is applied.
    Barrier(Reply<()>),
}

struct Writer {
    pool: Pool,
    server_id: Arc<str>,
    options: PostgresOptions,
}

/// The answers of one batch, sent after its commit.
#[derive(Default)]
struct Answers {
    inserted: Vec<Result<Inserted, StoreError>>,
    finished: Vec<Option<CompletionRecord>>,
}

impl Writer {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Op>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(op) = rx.recv().await {
            batch.push(op);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            self.apply_batch(std::mem::take(&mut batch)).await;
        }
    }

    async fn apply_batch(&self, batch: Vec<Op>) {
        let mut inserts = Vec::new();
        let mut dispatches: HashMap<Uuid, (u32, SystemTime)> = HashMap::new();
        let mut finishes = Vec::new();
        let mut releases = Vec::new();
        let mut barriers = Vec::new();
        for op in batch {
            match op {
                Op::Insert(t, r) => inserts.push((t, r)),
                Op::Dispatch {
                    task_id,
                    attempt,
                    at,
                } => {
                    let e = dispatches.entry(task_id).or_insert((attempt, at));
                    if attempt >= e.0 {
                        *e = (attempt, at);
                    }
                }
                Op::Finish(f, g, r) => finishes.push((f, g, r)),
                Op::Release(ids, r) => releases.push((ids, r)),
                Op::Barrier(r) => barriers.push(r),
            }
        }
        let tasks: Vec<&TaskRecord> = inserts.iter().map(|(t, _)| &**t).collect();
        let fins: Vec<(Finish, Guard)> = finishes
            .iter()
            .map(|(f, g, _)| ((**f).clone(), *g))
            .collect();
        let released: Vec<Uuid> = releases.iter().flat_map(|(ids, _)| ids.clone()).collect();
        let started = tokio::time::Instant::now();
        let mut backoff = Duration::from_millis(50);
        let result = loop {
            match self.apply(&tasks, &dispatches, &fins, &released).await {
                Ok(a) => break Ok(a),
                Err(e @ StoreError::Unavailable(_)) if started.elapsed() < WRITE_RETRY_FOR => {
                    warn!(error = %e, "writing a batch to PostgreSQL failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(e) => break Err(e),
            }
        };
        for reply in barriers {
            let _ = reply.send(Ok(()));
        }
        match result {
            Ok(answers) => {
                for ((_, reply), a) in inserts.into_iter().zip(answers.inserted) {
                    let _ = reply.send(a);
                }
                for ((_, _, reply), a) in finishes.into_iter().zip(answers.finished) {
                    let _ = reply.send(Ok(a));
                }
                for (_, reply) in releases {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(e) => {
                error!(error = %e, "writing a batch to PostgreSQL failed");
                for (_, reply) in inserts {
                    let _ = reply.send(Err(e.clone()));
                }
                for (_, _, reply) in finishes {
                    let _ = reply.send(Err(e.clone()));
                }
                for (_, reply) in releases {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }

    async fn apply(
        &self,
        inserts: &[&TaskRecord],
        dispatches: &HashMap<Uuid, (u32, SystemTime)>,
        finishes: &[(Finish, Guard)],
        releases: &[Uuid],
    ) -> Result<Answers, StoreError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(pg_error)?;
        // Inserts, dispatch records and completions touch different rows:
        // their statements are pipelined on the connection (sent without
        // waiting for each other's answers). Releases follow the dispatch
        // records they may undo.
        let dispatch = async {
            if dispatches.is_empty() {
                return Ok(());
            }
            let ids: Vec<Uuid> = dispatches.keys().copied().collect();
            let attempts: Vec<i32> = ids.iter().map(|id| dispatches[id].0 as i32).collect();
            let at: Vec<i64> = ids.iter().map(|id| time_to_i64(dispatches[id].1)).collect();
            let lease_ms = self.options.lease.as_millis() as f64;
            exec(
                &tx,
                "UPDATE errand_tasks t SET state = 1, attempts = u.a, started_at = u.at,
                     owner = $4, lease_until = coalesce(t.lease_until, now() + $5 * interval '1 millisecond')
                 FROM unnest($1::uuid[], $2::int4[], $3::int8[]) AS u(id, a, at)
                 WHERE t.id = u.id AND t.state < 2 AND t.attempts < u.a
                   AND (t.owner IS NULL OR t.owner = $4)",
                &[&ids, &attempts, &at, &&*self.server_id, &lease_ms],
            )
            .await
        };
        let (inserted, dispatched, finished) = tokio::join!(
            self.insert_in(&tx, inserts),
            dispatch,
            finish_in(&tx, finishes)
        );
        let (inserted, (), finished) = (inserted?, dispatched?, finished?);
        if !releases.is_empty() {
            let tools: Vec<String> = rows(
                &tx,
                "UPDATE errand_tasks SET state = 0, owner = NULL, lease_until = NULL
                 WHERE id = ANY($1) AND owner = $2 AND state = 1 RETURNING tool",
                &[&releases, &&*self.server_id],
            )
            .await?
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
            notify_tools(&tx, &tools).await?;
        }
        tx.commit().await.map_err(pg_error)?;
        Ok(Answers { inserted, finished })
    }

    /// Inserts new tasks; returns each one's answer in order.
    async fn insert_in(
        &self,
        tx: &Transaction<'_>,
        tasks: &[&TaskRecord],
    ) -> Result<Vec<Result<Inserted, StoreError>>, StoreError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let mut answers: Vec<Option<Result<Inserted, StoreError>>> = vec![None; tasks.len()];
        // Earlier tasks with the same idempotency key.
        let existing = self.existing_by_key(tx, tasks).await?;
        for (i, t) in tasks.iter().enumerate() {
            if let Some(key) = &t.idempotency_key
                && let Some(e) = existing.get(&(t.session.to_string(), key.to_string()))
                && e.id != t.id
            {
                answers[i] = Some(Ok(Inserted::Existing(Box::new(e.clone()))));
            }
        }
        // The per-session limit on unfinished tasks, across every server.
        let sessions: Vec<String> = tasks
            .iter()
            .map(|t| t.session.to_string())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut pending: HashMap<String, usize> = rows(
            tx,
            "SELECT session, count(*) FROM errand_tasks
             WHERE session = ANY($1) AND state < 2 GROUP BY session",
            &[&sessions],
        )
        .await?
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1).max(0) as usize))
        .collect();
        let limit = self.options.max_pending_per_session;
        let mut seen_keys = HashSet::new();
        let mut new = Vec::new();
        for (i, t) in tasks.iter().enumerate() {
            if answers[i].is_some() {
                continue;
            }
            if let Some(key) = &t.idempotency_key
                && !seen_keys.insert((t.session.clone(), key.clone()))
            {
                // A second task with this key in the same batch: answered
                // with the first once it is stored.
                continue;
            }
            let count = pending.entry(t.session.to_string()).or_default();
            if *count >= limit {
                answers[i] = Some(Err(StoreError::LimitReached(format!(
                    "session {:?} has {count} unfinished tasks, the limit is {limit}: wait for \
                     completions or cancel some",
                    &*t.session
                ))));
                continue;
            }
            *count += 1;
            new.push(i);
        }
        if !new.is_empty() {
            let ids: Vec<Uuid> = new.iter().map(|&i| tasks[i].id).collect();
            let session: Vec<&str> = new.iter().map(|&i| &*tasks[i].session).collect();
            let tool: Vec<&str> = new.iter().map(|&i| &*tasks[i].tool).collect();
            let args: Vec<&str> = new.iter().map(|&i| &*tasks[i].arguments).collect();
            let timeout: Vec<i64> = new
                .iter()
                .map(|&i| duration_to_i64(tasks[i].timeout))
                .collect();
            let key: Vec<Option<&str>> = new
                .iter()
                .map(|&i| tasks[i].idempotency_key.as_deref())
                .collect();
            let created: Vec<i64> = new
                .iter()
                .map(|&i| time_to_i64(tasks[i].created_at))
                .collect();
            let state: Vec<i16> = new.iter().map(|&i| state_code(tasks[i].state)).collect();
            let attempts: Vec<i32> = new.iter().map(|&i| tasks[i].attempts as i32).collect();
            // A task inserted `Running` is claimed by this server at once
            // (its worker has room); it gets a lease, and attempts count
            // from its dispatch as always.
            let lease_ms = self.options.lease.as_millis() as f64;
            let stored: HashSet<Uuid> = rows(
                tx,
                "INSERT INTO errand_tasks (id, session, tool, arguments, timeout_ns,
                     idempotency_key, created_at, state, attempts, owner, lease_until)
                 SELECT u.*,
                     CASE WHEN u.state = 1 THEN $10 END,
                     CASE WHEN u.state = 1 THEN now() + $11 * interval '1 millisecond' END
                 FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[],
                     $5::int8[], $6::text[], $7::int8[], $8::int2[], $9::int4[])
                     AS u(id, session, tool, arguments, timeout_ns, idempotency_key,
                          created_at, state, attempts)
                 ON CONFLICT DO NOTHING RETURNING id",
                &[
                    &ids,
                    &session,
                    &tool,
                    &args,
                    &timeout,
                    &key,
                    &created,
                    &state,
                    &attempts,
                    &&*self.server_id,
                    &lease_ms,
                ],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
            let mut tools = HashSet::new();
            for &i in &new {
                if stored.contains(&tasks[i].id) {
                    if tasks[i].state == TaskState::Queued {
                        tools.insert(tasks[i].tool.to_string());
                    }
                    answers[i] = Some(Ok(Inserted::New));
                }
            }
            let tools: Vec<String> = tools.into_iter().collect();
            notify_tools(tx, &tools).await?;
        }
        // What is left lost a race on its key (another server, or an earlier
        // task of this batch), or is a retry of a batch that did commit.
        if answers.iter().any(Option::is_none) {
            let existing = self.existing_by_key(tx, tasks).await?;
            for (i, t) in tasks.iter().enumerate() {
                if answers[i].is_some() {
                    continue;
                }
                let found = t
                    .idempotency_key
                    .as_ref()
                    .and_then(|k| existing.get(&(t.session.to_string(), k.to_string())));
                answers[i] = Some(match found {
                    Some(e) if e.id != t.id => Ok(Inserted::Existing(Box::new(e.clone()))),
                    _ => Ok(Inserted::New),
                });
            }
        }
        Ok(answers
            .into_iter()
            .map(|a| a.unwrap_or(Ok(Inserted::New)))
            .collect())
    }

    async fn existing_by_key(
        &self,
        tx: &Transaction<'_>,
        tasks: &[&TaskRecord],
    ) -> Result<HashMap<(String, String), TaskRecord>, StoreError> {
        let (sessions, keys): (Vec<&str>, Vec<&str>) = tasks
            .iter()
            .filter_map(|t| t.idempotency_key.as_deref().map(|k| (&*t.session, k)))
            .unzip();
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "SELECT {} FROM errand_tasks t
             JOIN unnest($1::text[], $2::text[]) AS k(session, key)
               ON t.session = k.session AND t.idempotency_key = k.key",
            prefixed("t.")
        );
        let mut out = HashMap::new();
        for r in rows(tx, &sql, &[&sessions, &keys]).await? {
            let t = task_from_row(&r)?;
            let key = t.idempotency_key.as_deref().unwrap_or_default().to_string();
            out.insert((t.session.to_string(), key), t);
        }
        Ok(out)
    }
}

/// Finishes tasks in `tx`: each gets its session's next seq, at most once.
/// Returns each finish's completion (`None`: unknown, finished, or stale).
async fn finish_in(
    tx: &Transaction<'_>,
    finishes: &[(Finish, Guard)],
) -> Result<Vec<Option<CompletionRecord>>, StoreError> {
    if finishes.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = finishes.iter().map(|(f, _)| f.task_id).collect();
    // Task rows first, in id order, then session rows in name order: one
    // lock order for every server.
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM errand_tasks WHERE id = ANY($1) AND state < 2
         ORDER BY id FOR UPDATE"
    );
    let mut open: HashMap<Uuid, TaskRecord> = rows(tx, &sql, &[&ids])
        .await?
        .iter()
        .map(|r| task_from_row(r).map(|t| (t.id, t)))
        .collect::<Result<_, _>>()?;
    let mut accepted: Vec<Option<(TaskRecord, Finish)>> = Vec::with_capacity(finishes.len());
    for (finish, guard) in finishes {
        let ok = open.get(&finish.task_id).is_some_and(|t| match guard {
            Guard::Attempt => !(t.state == TaskState::Running && t.attempts > finish.attempts),
            Guard::Any | Guard::Cancel => true,
        });
        accepted.push(if ok {
            open.remove(&finish.task_id).map(|t| {
                let mut f = finish.clone();
                if *guard == Guard::Cancel {
                    f.attempts = t.attempts;
                }
                (t, f)
            })
        } else {
            None
        });
    }
    let mut per_session: HashMap<&str, i64> = HashMap::new();
    for (t, _) in accepted.iter().flatten() {
        *per_session.entry(&t.session).or_default() += 1;
    }
    if per_session.is_empty() {
        return Ok(accepted.iter().map(|_| None).collect());
    }
    let mut names: Vec<&str> = per_session.keys().copied().collect();
    names.sort_unstable();
    let counts: Vec<i64> = names.iter().map(|n| per_session[n]).collect();
    // The first seq of each session's share of this batch.
    let mut next: HashMap<String, i64> = rows(
        tx,
        "INSERT INTO errand_sessions (session, last_seq)
         SELECT s, n FROM unnest($1::text[], $2::int8[]) AS u(s, n) ORDER BY s
         ON CONFLICT (session) DO UPDATE SET last_seq = errand_sessions.last_seq + EXCLUDED.last_seq
         RETURNING session, last_seq",
        &[&names, &counts],
    )
    .await?
    .iter()
    .map(|r| {
        let s: String = r.get(0);
        let last: i64 = r.get(1);
        let first = last - per_session[s.as_str()] + 1;
        (s, first)
    })
    .collect();
    let mut out = Vec::with_capacity(accepted.len());
    let (
        mut u_id,
        mut u_state,
        mut u_attempts,
        mut u_fin,
        mut u_res,
        mut u_code,
        mut u_msg,
        mut u_seq,
    ) = (
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
    );
    let mut cancelled = Vec::new();
    let mut latest: HashMap<String, i64> = HashMap::new();
    for (a, (_, guard)) in accepted.into_iter().zip(finishes) {
        let Some((task, finish)) = a else {
            out.push(None);
            continue;
        };
        let slot = next.get_mut(&*task.session).ok_or_else(|| {
            StoreError::Internal("a session's seq counter was not returned".into())
        })?;
        let seq = *slot;
        *slot += 1;
        latest.insert(task.session.to_string(), seq);
        let (res, code, msg) = outcome_columns(Some(&finish.outcome));
        u_id.push(finish.task_id);
        u_state.push(state_code(finish.state));
        u_attempts.push(finish.attempts as i32);
        u_fin.push(time_to_i64(finish.finished_at));
        u_res.push(res.map(str::to_string));
        u_code.push(code.map(str::to_string));
        u_msg.push(msg.map(str::to_string));
        u_seq.push(seq);
        if *guard == Guard::Cancel && task.state == TaskState::Running {
            cancelled.push(task.id.to_string());
        }
        out.push(Some(CompletionRecord::new(&task, &finish, seq as u64)));
    }
    exec(
        tx,
        "UPDATE errand_tasks t SET state = u.state, attempts = u.attempts, finished_at = u.fin,
             result = u.res, error_code = u.code, error_message = u.msg, seq = u.seq,
             owner = NULL, lease_until = NULL
         FROM unnest($1::uuid[], $2::int2[], $3::int4[], $4::int8[], $5::text[], $6::text[],
                     $7::text[], $8::int8[]) AS u(id, state, attempts, fin, res, code, msg, seq)
         WHERE t.id = u.id",
        &[
            &u_id,
            &u_state,
            &u_attempts,
            &u_fin,
            &u_res,
            &u_code,
            &u_msg,
            &u_seq,
        ],
    )
    .await?;
    let payloads: Vec<String> = latest
        .into_iter()
        .map(|(s, seq)| format!("{seq}\t{s}"))
        .collect();
    exec(
        tx,
        "SELECT pg_notify('errand_completions', p) FROM unnest($1::text[]) AS p",
        &[&payloads],
    )
    .await?;
    if !cancelled.is_empty() {
        exec(
            tx,
            "SELECT pg_notify('errand_cancels', p) FROM unnest($1::text[]) AS p",
            &[&cancelled],
        )
        .await?;
    }
    Ok(out)
}

async fn notify_tools(tx: &Transaction<'_>, tools: &[String]) -> Result<(), StoreError> {
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

async fn rows(
    client: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, StoreError> {
    let st = client.prepare_cached(sql).await.map_err(pg_error)?;
    client.query(&st, params).await.map_err(pg_error)
}

async fn exec(
    client: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<(), StoreError> {
    let st = client.prepare_cached(sql).await.map_err(pg_error)?;
    client.execute(&st, params).await.map_err(pg_error)?;
    Ok(())
}

// ---------------------------------------------------------------- listener

/// Follows the notification channels on a connection of its own, turning
/// each into a [`SharedEvent`]; reconnects with backoff, and sends
/// [`SharedEvent::Resync`] after each (re)connection, since notifications
/// may have been missed meanwhile.
async fn listen(config: tokio_postgres::Config, events: broadcast::Sender<SharedEvent>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (note_tx, mut notes) = mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(m) = messages.next().await {
                        match m {
                            Ok(AsyncMessage::Notification(n)) => {
                                if note_tx.send(n).is_err() {
                                    break;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                warn!(error = %e, "the PostgreSQL notification connection failed");
                                break;
                            }
                        }
                    }
                });
                let listening = client
                    .batch_execute(
                        "LISTEN errand_tasks; LISTEN errand_completions; LISTEN errand_cancels; \
                         LISTEN errand_tools;",
                    )
                    .await;
                if let Err(e) = listening {
                    warn!(error = %e, "LISTEN failed");
                    driver.abort();
                } else {
                    backoff = Duration::from_millis(100);
                    let _ = events.send(SharedEvent::Resync);
                    while let Some(n) = notes.recv().await {
                        if let Some(event) = parse_event(n.channel(), n.payload()) {
                            let _ = events.send(event);
                        }
                    }
                    drop(client);
                }
            }
            Err(e) => {
                warn!(error = %e, retry_in_ms = backoff.as_millis() as u64,
                    "cannot open the PostgreSQL notification connection; retrying");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

fn parse_event(channel: &str, payload: &str) -> Option<SharedEvent> {
    match channel {
        "errand_tasks" => Some(SharedEvent::TasksQueued {
            tool: payload.to_string(),
        }),
        "errand_completions" => {
            let (seq, session) = payload.split_once('\t')?;
            Some(SharedEvent::Completed {
                session: session.to_string(),
                seq: seq.parse().ok()?,
            })
        }
        "errand_cancels" => Some(SharedEvent::Cancelled {
            task_id: Uuid::parse_str(payload).ok()?,
        }),
        "errand_tools" => Some(SharedEvent::ToolsChanged),
        other => {
            debug!(
                channel = other,
                "notification on an unknown channel ignored"
            );
            None
        }
    }
}

// ---------------------------------------------------------------- errors

/// Maps a PostgreSQL error to what the caller can do about it.
fn pg_error(e: tokio_postgres::Error) -> StoreError {
    if e.is_closed() {
        return StoreError::Unavailable(format!("the database connection closed ({e})"));
    }
    match e.code() {
        None => StoreError::Unavailable(format!("the database is unreachable ({e})")),
        Some(code) => {
            let class = &code.code()[..2];
            if *code == SqlState::DISK_FULL || *code == SqlState::OUT_OF_MEMORY {
                StoreError::Full(format!("the database is out of space ({e})"))
            } else if class == "08"
                || class == "57"
                || class == "53"
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::T_R_SERIALIZATION_FAILURE
            {
                StoreError::Unavailable(format!("the database is unavailable ({e})"))
            } else {
                let detail = e
                    .as_db_error()
                    .map(|d| d.message().to_string())
                    .unwrap_or_default();
                StoreError::Internal(format!("store: {e} {detail}"))
            }
        }
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_error(e),
        other => StoreError::Unavailable(format!("no database connection ({other})")),
    }
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable("the store is closed (its writer stopped)".into())
}

// ---------------------------------------------------------------- rows

fn prefixed(prefix: &str) -> String {
    TASK_COLUMNS
        .split(", ")
        .map(|c| format!("{prefix}{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn task_from_row(row: &Row) -> Result<TaskRecord, StoreError> {
    let bad = |e: tokio_postgres::Error| StoreError::Internal(format!("reading a task row: {e}"));
    let state: i16 = row.try_get(7).map_err(bad)?;
    let state = state_from_code(state)
        .ok_or_else(|| StoreError::Internal(format!("unknown task state {state}")))?;
    let result: Option<String> = row.try_get(11).map_err(bad)?;
    let error_code: Option<String> = row.try_get(12).map_err(bad)?;
    let outcome = match (result, error_code) {
        (Some(json), _) => Some(Outcome::Result(json)),
        (None, Some(code)) => Some(Outcome::Error {
            code,
            message: row
                .try_get::<_, Option<String>>(13)
                .map_err(bad)?
                .unwrap_or_default(),
        }),
        (None, None) => None,
    };
    Ok(TaskRecord {
        id: row.try_get(0).map_err(bad)?,
        session: row.try_get::<_, String>(1).map_err(bad)?.into(),
        tool: row.try_get::<_, String>(2).map_err(bad)?.into(),
        arguments: row.try_get::<_, String>(3).map_err(bad)?.into(),
        timeout: Duration::from_nanos(row.try_get::<_, i64>(4).map_err(bad)?.max(0) as u64),
        idempotency_key: row
            .try_get::<_, Option<String>>(5)
            .map_err(bad)?
            .map(Into::into),
        created_at: time_from_i64(row.try_get(6).map_err(bad)?),
        state,
        attempts: row.try_get::<_, i32>(8).map_err(bad)?.max(0) as u32,
        started_at: row
            .try_get::<_, Option<i64>>(9)
            .map_err(bad)?
            .map(time_from_i64),
        finished_at: row
            .try_get::<_, Option<i64>>(10)
            .map_err(bad)?
            .map(time_from_i64),
        outcome,
        seq: row.try_get::<_, i64>(14).map_err(bad)?.max(0) as u64,
    })
}

fn completion_of(task: &TaskRecord) -> Result<CompletionRecord, StoreError> {
    codec::completion_of(task)
        .ok_or_else(|| StoreError::Internal(format!("task {} has a seq but no outcome", task.id)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{at, finish_seq, insert_new, succeed, task};

    async fn url() -> Option<String> {
        let Some(cluster) = crate::test_pg::cluster() else {
            eprintln!("skipped: PostgreSQL's binaries are not installed");
            return None;
        };
        Some(cluster.create_database().await)
    }

    async fn open(url: &str) -> PostgresStore {
        PostgresStore::connect(url, PostgresOptions::default())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_result_of_an_older_attempt_never_finishes_a_newer_one() {
        let Some(url) = url().await else { return };
        let store = open(&url).await;
        let t = task("s1", None, at(1));
        insert_new(&store, &t).await;
        store.record_dispatch(t.id, 1, at(2));
        store.record_dispatch(t.id, 2, at(3));
        let mut late = succeed(&t, at(4));
        late.attempts = 1;
        assert!(store.finish_task(&late).await.unwrap().is_none());
        let mut current = succeed(&t, at(5));
        current.attempts = 2;
        assert_eq!(finish_seq(&store, &current).await, 1);
        // Repeated: still one completion.
        assert!(store.finish_task(&current).await.unwrap().is_none());
        assert_eq!(store.completions_after("s1", 0, 10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn two_stores_on_one_database_number_one_sequence() {
        let Some(url) = url().await else { return };
        let (a, b) = (Arc::new(open(&url).await), Arc::new(open(&url).await));
        let tasks: Vec<_> = (0..200).map(|i| task("s1", None, at(i))).collect();
        for (i, t) in tasks.iter().enumerate() {
            insert_new(if i % 2 == 0 { &*a } else { &*b }, t).await;
        }
        let handles: Vec<_> = tasks
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let store = if i % 2 == 0 { a.clone() } else { b.clone() };
                let f = succeed(t, at(1000));
                tokio::spawn(async move { finish_seq(&*store, &f).await })
            })
            .collect();
        let mut seqs = Vec::new();
        for h in handles {
            seqs.push(h.await.unwrap());
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
        // The same task finished through both: one completion.
        let t = task("s1", None, at(2000));
        insert_new(&*a, &t).await;
        let (fa, fb) = (succeed(&t, at(2001)), succeed(&t, at(2002)));
        let (x, y) = tokio::join!(a.finish_task(&fa), b.finish_task(&fb));
        assert_eq!(
            [x.unwrap(), y.unwrap()].iter().flatten().count(),
            1,
            "exactly one completion"
        );
    }

    #[tokio::test]
    async fn claims_are_fair_exclusive_and_leased() {
        let Some(url) = url().await else { return };
        let options = PostgresOptions {
            lease: Duration::from_millis(300),
            ..PostgresOptions::default()
        };
        let a = PostgresStore::connect(&url, options.clone()).await.unwrap();
        let b = PostgresStore::connect(&url, options).await.unwrap();
        let many: Vec<_> = (0..50).map(|i| task("busy", None, at(i))).collect();
        for t in &many {
            insert_new(&a, t).await;
        }
        let lone = task("quiet", None, at(100));
        insert_new(&a, &lone).await;
        let first = a.claim("search", 2).await.unwrap();
        let ids: Vec<_> = first.iter().map(|t| t.id).collect();
        assert!(
            ids.contains(&lone.id),
            "the quiet session's one task is among the first two"
        );
        let rest = b.claim("search", 100).await.unwrap();
        assert_eq!(rest.len(), 49);
        assert!(
            rest.iter().all(|t| !ids.contains(&t.id)),
            "claims are exclusive"
        );
        assert!(b.claim("search", 10).await.unwrap().is_empty());

        // a stops renewing: after its lease, b's reaper queues the two again.
        let held: Vec<_> = rest.iter().map(|t| t.id).collect();
        let mut reaped = 0;
        while reaped < 2 {
            b.renew(&held).await.unwrap();
            reaped += b.reap(3).await.unwrap();
        }
        assert_eq!(
            a.renew(&ids).await.unwrap(),
            Vec::<Uuid>::new(),
            "a lost its claims"
        );
        let again = b.claim("search", 10).await.unwrap();
        assert_eq!(again.len(), 2);
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused() {
        let Some(url) = url().await else { return };
        drop(open(&url).await);
        crate::test_pg::Cluster::execute(&url, "INSERT INTO errand_schema (version) VALUES (99)")
            .await;
        let err = PostgresStore::connect(&url, PostgresOptions::default())
            .await
            .err()
            .expect("refused");
        let msg = err.to_string();
        assert!(
            msg.contains("schema version 99") && msg.contains("newer"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_database_is_a_clear_error() {
        let err = PostgresStore::connect(
            "postgres://errand@127.0.0.1:1/none",
            PostgresOptions {
                connect_timeout: Some(Duration::from_millis(300)),
                ..PostgresOptions::default()
            },
        )
        .await
        .err()
        .expect("refused");
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(
            err.to_string()
                .contains("cannot reach PostgreSQL at 127.0.0.1:1/none"),
            "{err}"
        );
    }
}
