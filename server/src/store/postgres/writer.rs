//! The writer task: group commit of inserts, dispatch records, finishes and
//! releases as a handful of multi-row statements per batch.
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, SystemTime},
};

use deadpool_postgres::{GenericClient, Pool, Transaction};
use tracing::{error, warn};
use uuid::Uuid;

use super::PostgresOptions;
use super::errors::{pg_error, pool_error};
use super::finish::finish_in;
use super::rows::{exec, notify_tools, prefixed, rows, task_from_row};
use crate::model::{CompletionRecord, Finish, TaskRecord, TaskState};
use crate::store::sql::{
    batch::{self, Counters, Dispatches, Reply},
    codec::{duration_to_i64, state_code, time_to_i64},
};
use crate::store::{Inserted, StoreError};

/// How long the writer keeps retrying a batch on a lost database before it
/// fails the callers (who may retry: nothing was acknowledged).
const WRITE_RETRY_FOR: Duration = Duration::from_secs(10);

/// Which finishes a stored task accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Guard {
    /// Not a result of an older attempt than the one running.
    Attempt,
    /// Any unfinished task (the reaper).
    Any,
    /// Any unfinished task, keeping its attempts; its holder is told.
    Cancel,
    /// Only a task still queued, keeping its attempts (a queue timeout).
    Queued,
}

/// One change for the writer. Dispatch records come beside the queue
/// ([`batch::Receiver::take_dispatches`]).
pub(super) enum Op {
    Insert(Box<TaskRecord>, Reply<Inserted>),
    Finish(Box<Finish>, Guard, Reply<Option<CompletionRecord>>),
    Release(Vec<Uuid>, Reply<()>),
    /// Answered once every change sent before it is applied.
    Barrier(Reply<()>),
}

pub(super) struct Writer {
    pub(super) pool: Pool,
    pub(super) server_id: Arc<str>,
    pub(super) options: PostgresOptions,
    pub(super) counters: Arc<Counters>,
}

/// The answers of one batch, sent after its commit.
#[derive(Default)]
struct Answers {
    inserted: Vec<Result<Inserted, StoreError>>,
    finished: Vec<Option<CompletionRecord>>,
}

impl Writer {
    pub(super) async fn run(self, mut rx: batch::Receiver<Op>) {
        let mut batch = Vec::with_capacity(batch::MAX_BATCH);
        while rx.fill(&mut batch).await {
            let dispatches = rx.take_dispatches();
            self.apply_batch(std::mem::take(&mut batch), dispatches)
                .await;
        }
    }

    async fn apply_batch(&self, batch: Vec<Op>, dispatches: Dispatches) {
        let count = batch.len() as u64 + dispatches.records;
        let (dispatches, recorded) = (dispatches.latest, dispatches.done);
        if count == 0 {
            return;
        }
        let mut inserts = Vec::new();
        let mut finishes = Vec::new();
        let mut releases = Vec::new();
        let mut barriers = Vec::new();
        for op in batch {
            match op {
                Op::Insert(t, r) => inserts.push((t, r)),
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
        let items = tasks.len() + fins.len() + usize::from(!dispatches.is_empty());
        if let Err(StoreError::Rejected(why)) = &result
            && items + usize::from(!released.is_empty()) > 1
        {
            // One item's data was refused, and the whole transaction with
            // it: apply each item on its own, so only that one fails.
            warn!(error = %why, "PostgreSQL refused an item of a batch: applying the batch's items one by one");
            self.counters.applied(count);
            let none = HashMap::new();
            let alone = self.apply(&[], &dispatches, &[], &released).await;
            if alone.is_ok() {
                self.counters.committed();
            }
            recorded.send_replace(Some(alone.as_ref().map(|_| ()).map_err(Clone::clone)));
            for (_, reply) in releases {
                let _ = reply.send(alone.as_ref().map(|_| ()).map_err(Clone::clone));
            }
            for (t, reply) in inserts {
                let a = self.apply(&[&*t], &none, &[], &[]).await;
                let a =
                    a.and_then(|mut a| a.inserted.pop().unwrap_or(Ok(crate::store::Inserted::New)));
                let _ = reply.send(a);
            }
            for ((_, _, reply), fin) in finishes.into_iter().zip(fins) {
                let a = self
                    .apply(&[], &none, std::slice::from_ref(&fin), &[])
                    .await;
                let _ = reply.send(a.map(|mut a| a.finished.pop().flatten()));
            }
            for reply in barriers {
                let _ = reply.send(Ok(()));
            }
            return;
        }
        self.counters.applied(count);
        if result.is_ok() {
            self.counters.committed();
        }
        // Only now may the workers be sent what the dispatch records explain.
        recorded.send_replace(Some(result.as_ref().map(|_| ()).map_err(Clone::clone)));
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
                    // The client's name, never the tenant's key.
                    crate::tenant::strip(&t.session)
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
            let queue_deadline: Vec<Option<i64>> = new
                .iter()
                .map(|&i| tasks[i].queue_deadline.map(time_to_i64))
                .collect();
            // A task inserted `Running` is claimed by this server at once
            // (its worker has room); it gets a lease, and attempts count
            // from its dispatch as always.
            let lease_ms = self.options.lease.as_millis() as f64;
            let stored: HashSet<Uuid> = rows(
                tx,
                "INSERT INTO errand_tasks (id, session, tool, arguments, timeout_ns,
                     idempotency_key, created_at, state, attempts, queue_deadline, owner,
                     lease_until)
                 SELECT u.*,
                     CASE WHEN u.state = 1 THEN $10 END,
                     CASE WHEN u.state = 1 THEN now() + $11 * interval '1 millisecond' END
                 FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[],
                     $5::int8[], $6::text[], $7::int8[], $8::int2[], $9::int4[], $12::int8[])
                     AS u(id, session, tool, arguments, timeout_ns, idempotency_key,
                          created_at, state, attempts, queue_deadline)
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
                    &queue_deadline,
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
