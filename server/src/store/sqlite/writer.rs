//! The writer thread: group commit over the one write connection.
use std::{
    sync::{Arc, OnceLock},
    time::{Duration, Instant, SystemTime},
};

use rusqlite::Connection;
use tracing::{error, info, warn};
use uuid::Uuid;

use super::errors::store_error_in;
use super::rows::{ack, dispatch, finish_task, insert, purge_step, reclaim_space, requeue};
use super::session_seqs::SessionSeqs;
use super::tools::{forget_tools, put_tools};
use crate::model::{CompletionRecord, Finish, TaskHead, TaskRecord};
use crate::store::sql::{
    Purge,
    batch::{self, Counters, MAX_BATCH, Reply},
};
use crate::store::{Acked, Inserted, StoreError, StoredTool, health::WriteHealth};

/// One change for the writer.
pub(super) enum Op {
    Insert(Box<TaskRecord>, Reply<Inserted>),
    /// Made by the writer from the queue's dispatch and requeue records,
    /// never sent. `at`: when the attempt started; `None`: it went back to
    /// the queue.
    Dispatch {
        task_id: Uuid,
        attempt: u32,
        at: Option<SystemTime>,
    },
    /// A finish, with the task's head when the caller held the task.
    Finish(
        Box<Finish>,
        Option<Box<TaskHead>>,
        Reply<Option<CompletionRecord>>,
    ),
    Ack {
        session: String,
        up_to_seq: u64,
        /// The server's result budget in bytes.
        default_budget: u64,
        reply: Reply<Acked>,
    },
    /// Deletes in chunks of `PURGE_CHUNK`; a step that filled its chunk
    /// goes round again with the next batch, so a big purge never holds up
    /// submits for long.
    Purge(Purge, Reply<u64>),
    /// Stores tool definitions (the registry).
    PutTools(Vec<StoredTool>, Reply<()>),
    /// Deletes tool definitions by name.
    ForgetTools(Vec<String>, Reply<u64>),
    /// One small write that changes nothing (see `Store::probe_write`).
    Probe(Reply<()>),
    /// Runs on the writer's connection outside any batch (tests).
    #[cfg(test)]
    Exec(Box<dyn FnOnce(&Connection) + Send>),
}

/// What a change does once its batch is committed (or failed).
type Answer = Box<dyn FnOnce(Result<(), &StoreError>) + Send>;

fn answer<T: Send + 'static>(reply: Reply<T>, result: Result<T, StoreError>) -> Answer {
    Box::new(move |commit| {
        let result = match commit {
            Ok(()) => result,
            Err(e) => Err(e.clone()),
        };
        // A caller that stopped waiting is no error: the change is made.
        let _ = reply.send(result);
    })
}

/// How often at most the WAL is truncated after out-of-space failures
/// (`Writer::reclaim_wal`): each failing batch and each probe would try.
const RECLAIM_EVERY: Duration = Duration::from_secs(5);

/// What applying one change gave: its answer, and maybe a purge to continue.
struct Applied {
    answer: Option<Answer>,
    more: Option<Op>,
    failed: Option<StoreError>,
}

pub(super) struct Writer {
    conn: Connection,
    counters: Arc<Counters>,
    /// Set when a check found the file corrupt: every change is refused,
    /// those already queued and a purge's next steps too.
    corrupt: Arc<OnceLock<StoreError>>,
    /// Each session's seq counters, written back before each COMMIT.
    seqs: SessionSeqs,
    /// Told each commit's outcome.
    health: Arc<WriteHealth>,
    /// When the WAL was last truncated after running out of space.
    last_reclaim: Option<Instant>,
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        counters: Arc<Counters>,
        corrupt: Arc<OnceLock<StoreError>>,
        health: Arc<WriteHealth>,
    ) -> Self {
        Self {
            conn,
            counters,
            corrupt,
            seqs: SessionSeqs::default(),
            health,
            last_reclaim: None,
        }
    }

    pub(super) fn run(mut self, mut rx: batch::Receiver<Op>) {
        // Changes received but not yet applied, in arrival order; a purge
        // with more to do goes back at the end. Stops once every sender is
        // gone (the store closed) and nothing is left.
        let mut pending: Vec<Op> = Vec::with_capacity(MAX_BATCH);
        while rx.blocking_fill(&mut pending) {
            // A test's Exec runs alone; then the batch goes on with what
            // queued meanwhile, so dispatch records whose wake-up it
            // swallowed are written too.
            #[cfg(test)]
            if matches!(pending.first(), Some(Op::Exec(_)))
                && let Op::Exec(f) = pending.remove(0)
            {
                f(&self.conn);
                self.seqs.forget();
                rx.top_up(&mut pending);
            }
            #[cfg(test)]
            let end = (pending.iter())
                .position(|op| matches!(op, Op::Exec(_)))
                .unwrap_or(pending.len());
            #[cfg(not(test))]
            let end = pending.len();
            // Dispatch records first: each is of a task already committed,
            // and must land before any later change of that task.
            let mut dispatches = rx.take_dispatches();
            self.counters.applied(dispatches.merged());
            let latest = std::mem::take(&mut dispatches.latest);
            let mut batch: Vec<Op> = latest
                .into_iter()
                .map(|(task_id, (attempt, at))| Op::Dispatch {
                    task_id,
                    attempt,
                    at,
                })
                .collect();
            batch.extend(pending.drain(..end));
            if batch.is_empty() {
                dispatches.answer(Ok(()));
                continue;
            }
            if let Some(e) = self.corrupt.get() {
                let _ = self.health.failed(e);
                self.counters.applied(batch.len() as u64);
                for op in batch {
                    fail(op, e);
                }
                dispatches.answer(Err(e.clone()));
                continue;
            }
            let (more, recorded, full) = self.apply_batch(&mut batch);
            if full {
                self.reclaim_wal();
            }
            // Only now may the workers be sent what these records explain.
            dispatches.answer(recorded);
            if let Some(more) = more {
                pending.push(more);
            }
        }
        // The checkpointer's connection, closed last, folds the WAL into the file.
        if let Err((_, e)) = self.conn.close() {
            error!(error = %e, "closing the store failed");
        }
    }

    /// After an out-of-space failure: copies the WAL into the file and
    /// truncates it, so the space it held (up to `WAL_PAGES` pages, 32 MiB)
    /// is free for the next writes; without it the WAL only restarts after
    /// a checkpoint, which it asks for past `WAL_PAGES`, and a few MB freed
    /// on the disk were taken again by the WAL's growth. Fails (logged)
    /// while the file itself cannot grow or a reader holds old frames: it
    /// waits for no reader (the busy timeout is 0 meanwhile, or the one
    /// writer thread would stall up to 5 s), and is tried at most once per
    /// [`RECLAIM_EVERY`]; a later failure, or the server's probe, tries
    /// again.
    fn reclaim_wal(&mut self) {
        let now = Instant::now();
        if self
            .last_reclaim
            .is_some_and(|at| now.duration_since(at) < RECLAIM_EVERY)
        {
            return;
        }
        self.last_reclaim = Some(now);
        let conn = &self.conn;
        let busy: i64 = conn
            .query_row("PRAGMA busy_timeout", [], |r| r.get(0))
            .unwrap_or(5000);
        let done = conn
            .execute_batch("PRAGMA busy_timeout = 0")
            .and_then(|()| {
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    r.get::<_, i64>(0)
                })
            });
        if let Err(e) = conn.execute_batch(&format!("PRAGMA busy_timeout = {busy}")) {
            error!(error = %e, "restoring the store writer's busy timeout failed");
        }
        match done {
            Ok(0) => {
                info!("the store's WAL was checkpointed and truncated after running out of space")
            }
            Ok(_) => warn!(
                "truncating the store's WAL after running out of space was blocked by a reader; a later out-of-space failure tries again"
            ),
            Err(e) => {
                warn!(error = %e, "truncating the store's WAL after running out of space failed; a later out-of-space failure tries again")
            }
        }
    }

    /// Applies `batch` in one transaction and answers each change after the
    /// commit. Returns a purge that has more to do, whether the batch's
    /// dispatch records are committed (all or none: they share one answer),
    /// and whether the store ran out of space meanwhile.
    fn apply_batch(&mut self, batch: &mut Vec<Op>) -> (Option<Op>, Result<(), StoreError>, bool) {
        let count = batch.len() as u64;
        let mut answers: Vec<Answer> = Vec::with_capacity(batch.len());
        let mut more = None;
        // Every commit is synchronous (`synchronous = FULL`), dispatch
        // records too: a worker is sent its Assignment only once the record
        // is on disk.
        let mut recorded = Ok(());
        if let Err(e) = begin(&self.conn) {
            let e = store_error_in(&self.conn, e);
            error!(error = %e, "starting a store transaction failed");
            let _ = self.health.failed(&e);
            for op in batch.drain(..) {
                fail(op, &e);
            }
            self.counters.applied(count);
            let full = matches!(e, StoreError::Full(_));
            return (None, Err(e), full);
        }
        let mut full = false;
        // A store failure in this batch: a later commit of the rest says
        // nothing of the next write's chance.
        let mut store_failed = false;
        let mut ops = std::mem::take(batch).into_iter();
        while let Some(op) = ops.next() {
            let dispatch = matches!(op, Op::Dispatch { .. });
            // The batch's dispatch records (first in it) share one answer:
            // once one failed, none is stored, so the rest are not applied.
            if dispatch && let Err(e) = &recorded {
                fail(op, e);
                continue;
            }
            let applied = self.apply(op);
            if let Some(next) = applied.more {
                more = Some(next);
            }
            if let Some(a) = applied.answer {
                answers.push(a);
            }
            // A change can end the transaction without failing itself (a
            // purge's space reclaim only logs its error): that is a
            // rollback all the same.
            let failed = (applied.failed).or_else(|| {
                (self.conn.is_autocommit()).then(|| {
                    StoreError::Internal("the store rolled a batch back: try again".into())
                })
            });
            if let Some(e) = failed {
                store_failed |= self.health.failed(&e);
                full |= matches!(e, StoreError::Full(_));
                if dispatch && recorded.is_ok() {
                    recorded = Err(e.clone());
                }
                // A dispatch record refused within the transaction: those
                // applied before it are undone, as their answer will say.
                if dispatch
                    && !self.conn.is_autocommit()
                    && let Err(rollback) = self.conn.execute_batch("ROLLBACK")
                {
                    error!(error = %rollback, "rolling back a batch's dispatch records failed");
                }
                if self.conn.is_autocommit() {
                    // SQLite gave up the whole transaction (e.g. SQLITE_FULL):
                    // nothing before this change is stored either, the
                    // dispatch records (applied first) included, and so are
                    // the seq counters this batch moved.
                    self.seqs.forget();
                    if recorded.is_ok() {
                        recorded = Err(e.clone());
                    }
                    for a in answers.drain(..) {
                        a(Err(&e));
                    }
                    if let Some(op) = more.take() {
                        fail(op, &e);
                    }
                    if let Err(e) = begin(&self.conn) {
                        let e = store_error_in(&self.conn, e);
                        let _ = self.health.failed(&e);
                        full |= matches!(e, StoreError::Full(_));
                        for op in ops {
                            fail(op, &e);
                        }
                        self.counters.applied(count);
                        return (None, recorded, full);
                    }
                }
            }
        }
        let commit = (self.seqs.write_back(&self.conn))
            .and_then(|()| self.conn.prepare_cached("COMMIT"))
            .and_then(|mut c| c.execute([]))
            .map_err(|e| store_error_in(&self.conn, e));
        if let Err(e) = &commit {
            error!(error = %e, "committing to the store failed");
            let _ = self.health.failed(e);
            full |= matches!(e, StoreError::Full(_));
            self.seqs.forget();
            // A failed COMMIT may leave the transaction open: end it.
            if !self.conn.is_autocommit() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            recorded = Err(e.clone());
        } else {
            if !store_failed {
                self.health.wrote();
            }
            self.counters.committed();
        }
        self.counters.applied(count);
        for a in answers {
            a(commit.as_ref().map(|_| ()));
        }
        // A failed commit loses the purge step too; its caller is told.
        let more = if commit.is_err() { None } else { more };
        (more, recorded, full)
    }

    fn apply(&mut self, op: Op) -> Applied {
        let conn = &self.conn;
        let seqs = &mut self.seqs;
        // Errors met on this connection, read from it at once (an I/O
        // error says what the OS said).
        let store_error = |e| store_error_in(conn, e);
        let (answer, more, failed) = match op {
            Op::Insert(task, reply) => {
                let r = insert(conn, &task).map_err(store_error);
                let failed = r.as_ref().err().cloned();
                (Some(self::answer(reply, r)), None, failed)
            }
            Op::Dispatch {
                task_id,
                attempt,
                at,
            } => {
                let r = match at {
                    Some(at) => dispatch(conn, task_id, attempt, at),
                    None => requeue(conn, task_id, attempt),
                }
                .map_err(store_error);
                let failed = r.err();
                if let Some(e) = &failed {
                    warn!(task_id = %task_id, error = %e, "recording a dispatch failed");
                }
                (None, None, failed)
            }
            Op::Finish(finish, head, reply) => {
                let r = finish_task(conn, seqs, &finish, head.map(|h| *h)).map_err(store_error);
                let failed = r.as_ref().err().cloned();
                (Some(self::answer(reply, r)), None, failed)
            }
            Op::Ack {
                session,
                up_to_seq,
                default_budget,
                reply,
            } => {
                let r = ack(conn, seqs, &session, up_to_seq, default_budget).map_err(store_error);
                let failed = r.as_ref().err().cloned();
                (Some(self::answer(reply, r)), None, failed)
            }
            Op::PutTools(tools, reply) => {
                let r = put_tools(conn, &tools).map_err(store_error);
                let failed = r.as_ref().err().cloned();
                (Some(self::answer(reply, r)), None, failed)
            }
            Op::ForgetTools(names, reply) => {
                let r = forget_tools(conn, &names).map_err(store_error);
                let failed = r.as_ref().err().cloned();
                (Some(self::answer(reply, r)), None, failed)
            }
            Op::Probe(reply) => {
                let r = probe(conn).map_err(store_error);
                let failed = r.as_ref().err().cloned();
                (Some(self::answer(reply, r)), None, failed)
            }
            Op::Purge(mut purge, reply) => match purge_step(conn, purge.cutoff) {
                Ok(n) if purge.step(n) => (None, Some(Op::Purge(purge, reply)), None),
                Ok(_) => {
                    if let Err(e) = reclaim_space(conn) {
                        warn!(error = %e, "returning free space to the file system failed");
                    }
                    (Some(self::answer(reply, Ok(purge.removed))), None, None)
                }
                Err(e) => {
                    let e = store_error(e);
                    (Some(self::answer(reply, Err(e.clone()))), None, Some(e))
                }
            },
            #[cfg(test)]
            Op::Exec(f) => {
                f(conn);
                (None, None, None)
            }
        };
        Applied {
            answer,
            more,
            failed,
        }
    }
}

/// Starts a batch's transaction; the statement stays prepared, as a batch
/// at low load carries a task or two.
fn begin(conn: &Connection) -> rusqlite::Result<usize> {
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])
}

/// Rewrites the schema version as it is: the header page is written, so
/// the commit needs room in the WAL as any change does, and nothing changes.
fn probe(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    conn.execute_batch(&format!("PRAGMA user_version = {version}"))
}

/// Answers a change that could not be applied.
fn fail(op: Op, e: &StoreError) {
    match op {
        Op::Insert(_, reply) => answer(reply, Err(e.clone()))(Ok(())),
        Op::Finish(_, _, reply) => answer(reply, Err(e.clone()))(Ok(())),
        Op::Ack { reply, .. } => answer(reply, Err(e.clone()))(Ok(())),
        Op::Purge(_, reply) | Op::ForgetTools(_, reply) => answer(reply, Err(e.clone()))(Ok(())),
        Op::PutTools(_, reply) | Op::Probe(reply) => answer(reply, Err(e.clone()))(Ok(())),
        Op::Dispatch { task_id, .. } => {
            warn!(task_id = %task_id, error = %e, "recording a dispatch failed");
        }
        #[cfg(test)]
        Op::Exec(_) => {}
    }
}
