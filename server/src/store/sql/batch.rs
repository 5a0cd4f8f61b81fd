//! The group-commit queue both SQL writers are fed by. Callers send a change
//! with a oneshot [`Reply`] and await it; the writer (a thread for SQLite, a
//! task for PostgreSQL) takes everything queued, up to [`MAX_BATCH`] changes,
//! applies them in one transaction, commits once and only then answers each
//! caller. Changes that arrive while a commit is in flight therefore share
//! the next commit.
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use tokio::sync::{mpsc, oneshot};

use crate::store::StoreError;

/// Most changes applied in one transaction: bounds the latency a batch adds.
pub const MAX_BATCH: usize = 1024;

/// Where a writer sends one change's answer, once its batch is committed.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// Counters of a writer, for tests, benchmarks and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Changes sent to the writer.
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
    let (tx, rx) = mpsc::unbounded_channel();
    let counters = Arc::new(Counters::default());
    (
        Sender {
            tx,
            counters: counters.clone(),
        },
        Receiver { rx, counters },
    )
}

/// The store's side of the queue. Dropping it lets the writer apply what is
/// queued and stop.
pub(crate) struct Sender<Op> {
    tx: mpsc::UnboundedSender<Op>,
    counters: Arc<Counters>,
}

impl<Op> Sender<Op> {
    /// Queues `op` without waiting for its answer. Fails only when the
    /// writer has stopped.
    pub fn send(&self, op: Op) -> Result<(), StoreError> {
        self.tx.send(op).map_err(|_| writer_gone())?;
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Sends the change `op` builds around its reply and waits until the
    /// writer answers, which it does only after the change's batch is
    /// committed (or failed).
    pub async fn write<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(op(reply))?;
        answer.await.map_err(|_| writer_gone())?
    }

    /// What the writer has done so far.
    pub fn stats(&self) -> WriterStats {
        self.counters.stats()
    }
}

/// The writer's side of the queue.
pub(crate) struct Receiver<Op> {
    rx: mpsc::UnboundedReceiver<Op>,
    counters: Arc<Counters>,
}

impl<Op> Receiver<Op> {
    /// Moves queued changes into `ops` until it holds [`MAX_BATCH`]. When
    /// `ops` is empty, first waits for one. `false` once the store is closed
    /// (every sender dropped) and nothing is left to apply.
    pub async fn fill(&mut self, ops: &mut Vec<Op>) -> bool {
        if ops.is_empty() {
            match self.rx.recv().await {
                Some(op) => ops.push(op),
                None => return false,
            }
        }
        self.top_up(ops);
        true
    }

    /// [`Self::fill`] for a writer thread: blocks instead of awaiting. Must
    /// not be called from async code.
    pub fn blocking_fill(&mut self, ops: &mut Vec<Op>) -> bool {
        if ops.is_empty() {
            match self.rx.blocking_recv() {
                Some(op) => ops.push(op),
                None => return false,
            }
        }
        self.top_up(ops);
        true
    }

    fn top_up(&mut self, ops: &mut Vec<Op>) {
        while ops.len() < MAX_BATCH {
            match self.rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
    }

    /// Where the writer counts what it applied and committed.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }
}

/// The error of a change sent to a store whose writer has stopped.
pub(crate) fn writer_gone() -> StoreError {
    StoreError::Unavailable("the store is closed (its writer stopped)".into())
}
