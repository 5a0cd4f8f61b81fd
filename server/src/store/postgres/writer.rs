//! The writer task: group commit of inserts, dispatch records, finishes and
//! releases as a handful of multi-row statements per batch. The inserts'
//! statements are in `insert.rs`, the finishes' in `finish.rs`.
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, SystemTime},
};

use deadpool_postgres::{GenericClient, Pool};
use tracing::{error, warn};
use uuid::Uuid;

use super::PostgresOptions;
use super::errors::{pg_error, pool_error};
use super::finish::finish_in;
use super::rows::{exec, notify_tools, requeue_deadline_from, rows};
use crate::model::{CompletionRecord, Finish, TaskRecord};
use crate::store::sql::{
    batch::{self, Counters, Dispatches, Reply},
    codec::time_to_i64,
};
use crate::store::{Inserted, StoreError, health::WriteHealth};

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
    /// Answered with its batch's outcome; the batch then makes one real
    /// write ([`PROBE`]), so that a server whose writes failed sees them go
    /// through again only when they do (`Store::probe_write`).
    Probe(Reply<()>),
}

pub(super) struct Writer {
    pub(super) pool: Pool,
    pub(super) server_id: Arc<str>,
    pub(super) options: PostgresOptions,
    pub(super) counters: Arc<Counters>,
    /// Whether the writes reach the database.
    pub(super) contact: Arc<super::contact::Contact>,
    /// Told each batch's outcome, after its retries.
    pub(super) health: Arc<WriteHealth>,
}

/// The probe's write ([`Op::Probe`]): the newest schema row, rewritten as
/// it is.
const PROBE: &str = "UPDATE errand_schema SET applied_at = applied_at \
     WHERE version = (SELECT max(version) FROM errand_schema)";

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
        let mut probes = Vec::new();
        for op in batch {
            match op {
                Op::Insert(t, r) => inserts.push((t, r)),
                Op::Finish(f, g, r) => finishes.push((f, g, r)),
                Op::Release(ids, r) => releases.push((ids, r)),
                Op::Barrier(r) => barriers.push(r),
                Op::Probe(r) => probes.push(r),
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
        // The writer keeps retrying a batch on a lost database for the
        // operation timeout, each try (connection, statements, commit)
        // within what is left of it, then fails the callers (who may retry:
        // nothing was acknowledged).
        let window = self.options.op_timeout;
        let result = loop {
            let left = window.saturating_sub(started.elapsed());
            let attempt = super::bounded_within(
                left,
                window,
                "writing a batch",
                self.apply(&tasks, &dispatches, &fins, &released, !probes.is_empty()),
            );
            let attempt = attempt.await;
            self.contact.observe(&attempt);
            match attempt {
                Ok(a) => break Ok(a),
                Err(e @ StoreError::Unavailable(_)) if started.elapsed() + backoff < window => {
                    warn!(error = %e, "writing a batch to PostgreSQL failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(e) => break Err(e),
            }
        };
        self.note(&result);
        let items = tasks.len() + fins.len() + usize::from(!dispatches.is_empty());
        if let Err(StoreError::Rejected(why)) = &result
            && items + usize::from(!released.is_empty()) > 1
        {
            // One item's data was refused, and the whole transaction with
            // it: apply each item on its own, so only that one fails.
            warn!(error = %why, "PostgreSQL refused an item of a batch: applying the batch's items one by one");
            self.counters.applied(count);
            let none = HashMap::new();
            let alone = super::bounded(
                window,
                "writing a batch",
                self.apply(&[], &dispatches, &[], &released, !probes.is_empty()),
            )
            .await;
            self.note(&alone);
            if alone.is_ok() {
                self.counters.committed();
            }
            for reply in probes {
                let _ = reply.send(alone.as_ref().map(|_| ()).map_err(Clone::clone));
            }
            recorded.send_replace(Some(alone.as_ref().map(|_| ()).map_err(Clone::clone)));
            for (_, reply) in releases {
                let _ = reply.send(alone.as_ref().map(|_| ()).map_err(Clone::clone));
            }
            for (t, reply) in inserts {
                let a = super::bounded(
                    window,
                    "writing a task",
                    self.apply(&[&*t], &none, &[], &[], false),
                )
                .await;
                let a =
                    a.and_then(|mut a| a.inserted.pop().unwrap_or(Ok(crate::store::Inserted::New)));
                let _ = reply.send(a);
            }
            for ((_, _, reply), fin) in finishes.into_iter().zip(fins) {
                let a = super::bounded(
                    window,
                    "writing a result",
                    self.apply(&[], &none, std::slice::from_ref(&fin), &[], false),
                )
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
        for reply in probes {
            let _ = reply.send(result.as_ref().map(|_| ()).map_err(Clone::clone));
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

    /// Tells the write health a batch's outcome (one item's refused data
    /// says nothing of the store: see [`WriteHealth::failed`]).
    fn note<T>(&self, result: &Result<T, StoreError>) {
        match result {
            Ok(_) => self.health.wrote(),
            Err(e) => {
                self.health.failed(e);
            }
        }
    }

    async fn apply(
        &self,
        inserts: &[&TaskRecord],
        dispatches: &HashMap<Uuid, (u32, Option<SystemTime>)>,
        finishes: &[(Finish, Guard)],
        releases: &[Uuid],
        probe: bool,
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
            // A requeue record (no start) leaves the row as it is: held
            // by this server, as a claim leaves it, so no other claims it.
            let started: Vec<(Uuid, u32, SystemTime)> = dispatches
                .iter()
                .filter_map(|(id, (a, at))| at.map(|at| (*id, *a, at)))
                .collect();
            if started.is_empty() {
                return Ok(());
            }
            let ids: Vec<Uuid> = started.iter().map(|d| d.0).collect();
            let attempts: Vec<i32> = started.iter().map(|d| d.1 as i32).collect();
            let at: Vec<i64> = started.iter().map(|d| time_to_i64(d.2)).collect();
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
                concat!(
                    "UPDATE errand_tasks SET state = 0, owner = NULL, lease_until = NULL, ",
                    requeue_deadline_from!("$3"),
                    " WHERE id = ANY($1) AND owner = $2 AND state = 1 RETURNING tool"
                ),
                &[
                    &releases,
                    &&*self.server_id,
                    &time_to_i64(SystemTime::now()),
                ],
            )
            .await?
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
            notify_tools(&tx, &tools).await?;
        }
        if probe {
            // A real write: PostgreSQL commits a transaction that wrote
            // nothing without writing, so BEGIN/COMMIT alone passes on a full
            // disk or a read-only (failed-over) database. One row of the
            // schema table is rewritten unchanged (only while writes fail).
            tx.execute(PROBE, &[]).await.map_err(pg_error)?;
        }
        tx.commit().await.map_err(pg_error)?;
        Ok(Answers { inserted, finished })
    }
}
