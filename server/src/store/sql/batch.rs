//! The group-commit queue both SQL writers are fed by. Callers send a change
//! with a oneshot [`Reply`] and await it; the writer (a thread for SQLite, a
//! task for PostgreSQL) takes everything queued, up to [`MAX_BATCH`] changes,
//! applies them in one transaction, commits once and only then answers each
//! caller. Changes that arrive while a commit is in flight therefore share
//! the next commit.
//!
//! **Bounded, and no sender blocks a lock.** The queue holds at most
//! [`QUEUE_CAPACITY`] changes. A caller that awaits its answer
//! ([`Sender::write`]: inserts, finishes, acks, purges, releases) also
//! awaits room, so a writer that falls behind slows submitters down instead
//! of growing memory; those callers hold no lock while they wait, and the
//! writer waits on nobody, so this cannot deadlock. Dispatch records
//! ([`Sender::record_dispatch`]) are sent under the scheduler's lock and must
//! never wait, nor be lost: they do not take a place in the queue but go into
//! a map of the latest attempt per task, which the writer takes whole with
//! each batch. The map holds at most one entry per unfinished task, so the
//! scheduler's pending limits bound it; a full queue delays a dispatch record
//! to the next batch and never drops it. The map's own lock is held only to
//! insert a record or to take the map, never while taking another lock.
use std::{
    collections::HashMap,
    mem,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
};

use tokio::sync::{
    mpsc::{self, error::TrySendError},
    oneshot, watch,
};
use uuid::Uuid;

use crate::store::{Durable, StoreError};

/// Most changes applied in one transaction: bounds the latency a batch adds.
pub const MAX_BATCH: usize = 1024;

/// Most changes queued for a writer (dispatch records aside): one batch
/// being applied and a full next one, so group commit still fills its
/// batches while callers beyond that wait for room.
pub const QUEUE_CAPACITY: usize = 2 * MAX_BATCH;

/// Dispatch records waiting for the writer.
#[derive(Debug)]
pub(crate) struct Dispatches {
    /// The latest recorded attempt of each task, and when it started;
    /// `None`: that attempt went back to the queue (a requeue record).
    pub latest: HashMap<Uuid, (u32, Option<SystemTime>)>,
    /// How many records were merged into `latest` (for the counters).
    pub records: u64,
    /// Where the writer says whether these records are committed: every
    /// [`Durable`] of them waits on it.
    pub done: watch::Sender<Option<Result<(), StoreError>>>,
}

impl Default for Dispatches {
    fn default() -> Self {
        Self {
            latest: HashMap::new(),
            records: 0,
            done: watch::channel(None).0,
        }
    }
}

impl Dispatches {
    /// Tells every [`Durable`] of these records whether they are committed.
    /// The writer calls it after the batch's commit (or failure).
    pub fn answer(&self, result: Result<(), StoreError>) {
        self.done.send_replace(Some(result));
    }

    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }

    /// Records merged into another of the same task: counted as applied
    /// with the one that is.
    pub fn merged(&self) -> u64 {
        self.records.saturating_sub(self.latest.len() as u64)
    }

    /// Keeps the later of two records of one task: the later attempt, and
    /// of one attempt its requeue, which only ever follows its dispatch.
    fn merge(&mut self, task_id: Uuid, attempt: u32, at: Option<SystemTime>) {
        self.records += 1;
        let e = self.latest.entry(task_id).or_insert((attempt, at));
        if attempt > e.0 || (attempt == e.0 && (at.is_none() || e.1.is_some())) {
            *e = (attempt, at);
        }
    }
}

/// What goes through the queue: a change, or a wake-up for the writer to
/// take the dispatch records.
enum Msg<Op> {
    Change(Op),
    Wake,
}

/// Where a writer sends one change's answer, once its batch is committed.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// Counters of a writer, for tests, benchmarks and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Changes sent to the writer, dispatch records included.
    pub sent: u64,
    /// Changes applied (committed or failed).
    pub applied: u64,
    /// Transactions committed: one fsync each on SQLite.
    pub commits: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    sent: AtomicU64,
    applied: AtomicU64,
    commits: AtomicU64,
}

impl Counters {
    /// `n` changes were applied (committed or failed).
    pub fn applied(&self, n: u64) {
        self.applied.fetch_add(n, Ordering::Relaxed);
    }

    /// One transaction was committed.
    pub fn committed(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    fn stats(&self) -> WriterStats {
        WriterStats {
            sent: self.sent.load(Ordering::Relaxed),
            applied: self.applied.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
        }
    }
}

/// A queue of changes for one writer: the store keeps the [`Sender`], the
/// writer the [`Receiver`].
pub(crate) fn queue<Op>() -> (Sender<Op>, Receiver<Op>) {
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    let counters = Arc::new(Counters::default());
    let dispatches = Arc::new(Mutex::new(Dispatches::default()));
    (
        Sender {
            tx,
            dispatches: dispatches.clone(),
            counters: counters.clone(),
        },
        Receiver {
            rx,
            dispatches,
            counters,
        },
    )
}

fn lock(dispatches: &Mutex<Dispatches>) -> MutexGuard<'_, Dispatches> {
    // Plain data, consistent after every statement: a panic elsewhere
    // leaves it usable.
    dispatches.lock().unwrap_or_else(|e| e.into_inner())
}

/// The store's side of the queue. Dropping it lets the writer apply what is
/// queued and stop.
pub(crate) struct Sender<Op> {
    tx: mpsc::Sender<Msg<Op>>,
    dispatches: Arc<Mutex<Dispatches>>,
    counters: Arc<Counters>,
}

impl<Op> Sender<Op> {
    /// Sends the change `op` builds around its reply and waits until the
    /// writer answers, which it does only after the change's batch is
    /// committed (or failed). Waits for room first while the queue holds
    /// [`QUEUE_CAPACITY`] changes. Fails with `Unavailable` when the writer
    /// has stopped.
    pub async fn write<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T, StoreError> {
        let permit = self.tx.reserve().await.map_err(|_| writer_gone())?;
        let (reply, answer) = oneshot::channel();
        permit.send(Msg::Change(op(reply)));
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
        answer.await.map_err(|_| writer_gone())?
    }

    /// Records that `task_id` started `attempt` at `at`, for the writer's
    /// next batch; the [`Durable`] resolves once that batch is committed.
    /// Never waits (it is called under the scheduler's lock) and never
    /// drops a record, even when the queue is full. Fails with
    /// `Unavailable` only when the writer has stopped.
    pub fn record_dispatch(
        &self,
        task_id: Uuid,
        attempt: u32,
        at: SystemTime,
    ) -> Result<Durable, StoreError> {
        self.record(task_id, attempt, Some(at))
    }

    /// Records that attempt `attempt` of `task_id` went back to the queue,
    /// as [`Self::record_dispatch`] records a start: never waits, never
    /// dropped, applied after the task's earlier records and before its
    /// later ones.
    pub fn record_requeue(&self, task_id: Uuid, attempt: u32) -> Result<Durable, StoreError> {
        self.record(task_id, attempt, None)
    }

    fn record(
        &self,
        task_id: Uuid,
        attempt: u32,
        at: Option<SystemTime>,
    ) -> Result<Durable, StoreError> {
        if self.tx.is_closed() {
            return Err(writer_gone());
        }
        let (wake, durable) = {
            let mut dispatches = lock(&self.dispatches);
            let wake = dispatches.is_empty();
            dispatches.merge(task_id, attempt, at);
            (wake, Durable::batch(dispatches.done.subscribe()))
        };
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
        // One wake-up per batch of records: the writer takes them all. A
        // full queue needs none, since its writer has a batch to take.
        if wake && let Err(TrySendError::Closed(_)) = self.tx.try_send(Msg::Wake) {
            return Err(writer_gone());
        }
        Ok(durable)
    }

    /// Queues `op` without waiting for room or an answer (tests: the queue
    /// must have room).
    #[cfg(test)]
    pub fn try_send(&self, op: Op) -> Result<(), StoreError> {
        self.tx.try_send(Msg::Change(op)).map_err(|e| {
            StoreError::Internal(format!("the writer's queue refused a change: {e}"))
        })?;
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// What the writer has done so far.
    pub fn stats(&self) -> WriterStats {
        self.counters.stats()
    }
}

/// The writer's side of the queue.
pub(crate) struct Receiver<Op> {
    rx: mpsc::Receiver<Msg<Op>>,
    dispatches: Arc<Mutex<Dispatches>>,
    counters: Arc<Counters>,
}

impl<Op> Receiver<Op> {
    /// Moves queued changes into `ops` until it holds [`MAX_BATCH`]. When
    /// `ops` is empty, first waits for a change or a dispatch record; then
    /// the writer takes the records with [`Self::take_dispatches`]. `false`
    /// once the store is closed (every sender dropped) and nothing is left
    /// to apply.
    pub async fn fill(&mut self, ops: &mut Vec<Op>) -> bool {
        if ops.is_empty() {
            let Some(msg) = self.rx.recv().await else {
                return !lock(&self.dispatches).is_empty();
            };
            push(ops, msg);
        }
        self.top_up(ops);
        true
    }

    /// [`Self::fill`] for a writer thread: blocks instead of awaiting. Must
    /// not be called from async code.
    pub fn blocking_fill(&mut self, ops: &mut Vec<Op>) -> bool {
        if ops.is_empty() {
            let Some(msg) = self.rx.blocking_recv() else {
                return !lock(&self.dispatches).is_empty();
            };
            push(ops, msg);
        }
        self.top_up(ops);
        true
    }

    /// Moves what is queued into `ops`, up to [`MAX_BATCH`], without waiting.
    pub fn top_up(&mut self, ops: &mut Vec<Op>) {
        while ops.len() < MAX_BATCH {
            match self.rx.try_recv() {
                Ok(msg) => push(ops, msg),
                Err(_) => break,
            }
        }
    }

    /// The dispatch records so far, for the batch being built. Taken after
    /// [`Self::fill`], they include every record made before a change of
    /// that batch was sent, so a record is applied before any later change
    /// of the same task. The writer must [`Dispatches::answer`] them once
    /// the batch is committed (dropping them unanswered fails their
    /// [`Durable`]s).
    pub fn take_dispatches(&self) -> Dispatches {
        mem::take(&mut *lock(&self.dispatches))
    }

    /// Where the writer counts what it applied and committed.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }
}

fn push<Op>(ops: &mut Vec<Op>, msg: Msg<Op>) {
    match msg {
        Msg::Change(op) => ops.push(op),
        Msg::Wake => {}
    }
}

/// The error of a change sent to a store whose writer has stopped.
pub(crate) fn writer_gone() -> StoreError {
    StoreError::Unavailable("the store is closed (its writer stopped)".into())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    /// A queue whose changes are bare replies: the test is the writer.
    type Queue = (Arc<Sender<Reply<()>>>, Receiver<Reply<()>>);

    fn test_queue() -> Queue {
        let (tx, rx) = queue();
        (Arc::new(tx), rx)
    }

    #[tokio::test]
    async fn a_full_queue_makes_writes_wait_and_keeps_every_dispatch_record() {
        let (tx, mut rx) = test_queue();
        let writes: Vec<_> = (0..QUEUE_CAPACITY + 3)
            .map(|_| {
                let tx = tx.clone();
                tokio::spawn(async move { tx.write(|reply| reply).await })
            })
            .collect();
        while tx.stats().sent < QUEUE_CAPACITY as u64 {
            tokio::task::yield_now().await;
        }
        assert_eq!(tx.tx.capacity(), 0, "the queue is full");

        // Under the scheduler's lock: returns at once, and nothing is lost.
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        tx.record_dispatch(a, 1, at(1)).unwrap();
        tx.record_dispatch(a, 2, at(2)).unwrap();
        tx.record_dispatch(b, 1, at(3)).unwrap();
        tx.record_dispatch(a, 1, at(4)).unwrap(); // late: the later attempt stays

        let mut ops = Vec::new();
        assert!(rx.fill(&mut ops).await);
        assert_eq!(ops.len(), MAX_BATCH, "a batch is capped");
        let dispatches = rx.take_dispatches();
        assert_eq!(dispatches.records, 4);
        assert_eq!(dispatches.latest.len(), 2);
        assert_eq!(dispatches.latest[&a], (2, Some(at(2))));
        assert_eq!(dispatches.latest[&b], (1, Some(at(3))));

        // Answering frees room: the waiting writes get in and are answered.
        let mut answered = 0;
        loop {
            for reply in ops.drain(..) {
                let _ = reply.send(Ok(()));
                answered += 1;
            }
            if answered == QUEUE_CAPACITY + 3 {
                break;
            }
            assert!(rx.fill(&mut ops).await);
        }
        for w in writes {
            w.await.unwrap().unwrap();
        }
        assert!(rx.take_dispatches().is_empty());
    }

    #[tokio::test]
    async fn a_requeue_record_follows_its_dispatch_and_yields_to_a_later_attempt() {
        let (tx, mut rx) = test_queue();
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        tx.record_dispatch(a, 1, at(1)).unwrap();
        tx.record_requeue(a, 1).unwrap();
        tx.record_dispatch(b, 1, at(2)).unwrap();
        tx.record_requeue(b, 1).unwrap();
        tx.record_dispatch(b, 2, at(3)).unwrap();
        tx.record_requeue(c, 1).unwrap();
        tx.record_dispatch(c, 1, at(4)).unwrap(); // late: the requeue stays
        let mut ops = Vec::new();
        assert!(rx.fill(&mut ops).await);
        let taken = rx.take_dispatches();
        assert_eq!(taken.records, 7);
        assert_eq!(taken.latest[&a], (1, None), "queued again");
        assert_eq!(
            taken.latest[&b],
            (2, Some(at(3))),
            "running its next attempt"
        );
        assert_eq!(taken.latest[&c], (1, None));
    }

    #[tokio::test]
    async fn a_dispatch_record_wakes_an_idle_writer() {
        let (tx, mut rx) = test_queue();
        let id = Uuid::new_v4();
        let writer = tokio::spawn(async move {
            let mut ops = Vec::new();
            assert!(rx.fill(&mut ops).await);
            assert!(ops.is_empty());
            rx.take_dispatches()
        });
        tx.record_dispatch(id, 1, at(1)).unwrap();
        let taken = writer.await.unwrap();
        assert_eq!(taken.latest[&id], (1, Some(at(1))));
    }

    #[tokio::test]
    async fn a_closed_store_still_applies_its_last_records_then_stops() {
        let (tx, mut rx) = test_queue();
        let id = Uuid::new_v4();
        tx.record_dispatch(id, 1, at(1)).unwrap();
        drop(tx);
        let mut ops = Vec::new();
        assert!(rx.fill(&mut ops).await, "the records made before closing");
        assert_eq!(rx.take_dispatches().latest[&id], (1, Some(at(1))));
        assert!(!rx.fill(&mut ops).await, "then nothing is left");
    }

    #[tokio::test]
    async fn a_stopped_writer_fails_writes_and_records() {
        let (tx, rx) = test_queue();
        drop(rx);
        let err = tx.write(|reply| reply).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        let err = tx.record_dispatch(Uuid::new_v4(), 1, at(1)).unwrap_err();
        assert!(err.to_string().contains("writer stopped"), "{err}");
    }
}
