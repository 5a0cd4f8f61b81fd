//! The persistence seam. The core keeps live scheduling state in memory and
//! tells a [`Store`] every fact that must outlive the process: a task accepted,
//! a task dispatched, a task finished with its completion. Implementations:
//! [`memory::MemoryStore`] (nothing survives a restart; tests and throwaway use)
//! [`sqlite::SqliteStore`] (durable, embedded, the default of `errand serve`)
//! and [`postgres::PostgresStore`] (shared by several servers). All pass the
//! same behavioural tests (`store/tests.rs`).
//!
//! A store that several servers share also offers a [`SharedQueue`]: the
//! queue then lives in the store, and each server claims queued work for its
//! own workers instead of keeping the queue in memory.
//!
//! Layout:
//! - `mod.rs`: the [`Store`] and [`SharedQueue`] traits and their domain types;
//! - `memory.rs`: [`memory::MemoryStore`];
//! - each engine keeps the tool registry ([`StoredTool`]) beside the tasks
//!   (`sqlite/tools.rs`, `postgres/tools.rs`);
//! - `sql/`: what both SQL engines share: column encoding and decoding
//!   (`codec.rs`), the group-commit queue that answers after commit
//!   (`batch.rs`), the purge chunking (`mod.rs`);
//! - `sqlite/`: the embedded engine: the store and its readers (`mod.rs`),
//!   the writer thread (`writer.rs`), statements on task rows (`rows.rs`),
//!   opening and migrations (`schema.rs`), error mapping (`errors.rs`);
//! - `postgres/`: the shared engine: the store (`mod.rs`), connecting and
//!   each connection's bounds (`connection.rs`), the writer task
//!   (`writer.rs`, `finish.rs`), claims and leases (`queue.rs`), the reaper (`reap.rs`),
//!   `LISTEN`/`NOTIFY` (`listen.rs`), migrations (`schema.rs`), row helpers
//!   (`rows.rs`), error mapping (`errors.rs`);
//! - `tests.rs`: the contract tests every engine runs; each engine's own
//!   tests are in its `tests.rs`.
use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use crate::model::{CompletionRecord, Finish, Outcome, TaskRecord};
pub use listing::{Cursor, TaskQuery};

#[cfg(test)]
pub(crate) mod double;
pub mod health;
pub mod listing;
pub mod memory;
pub mod postgres;
mod sql;
pub mod sqlite;
#[cfg(test)]
pub(crate) mod tests;

/// Why the store could not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Out of space: the caller may retry later.
    #[error("out of space: {0}")]
    Full(String),
    /// Temporarily unreachable: the caller may retry.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Corrupt or unreadable data, or a bug.
    #[error("{0}")]
    Internal(String),
    /// The store refused this one item's data (a value it cannot hold):
    /// permanent, retrying cannot help; other items are unaffected.
    #[error("the store refused the data: {0}")]
    Rejected(String),
    /// A limit the store enforces (a shared store counts a session's
    /// unfinished tasks across servers); the message says which.
    #[error("{0}")]
    LimitReached(String),
}

/// Resolves once a dispatch record ([`Store::record_dispatch`]) is durable,
/// or failed to become so. Cheap to make: the SQL stores share one
/// wake-up per group commit between all the records it carries.
pub struct Durable(DurableInner);

enum DurableInner {
    Done(Result<(), StoreError>),
    /// The commit of the batch the record rides: `None` until answered.
    Batch(watch::Receiver<Option<Result<(), StoreError>>>),
}

impl Durable {
    /// A record that is durable already (or failed already).
    pub fn done(result: Result<(), StoreError>) -> Self {
        Self(DurableInner::Done(result))
    }

    pub(crate) fn batch(rx: watch::Receiver<Option<Result<(), StoreError>>>) -> Self {
        Self(DurableInner::Batch(rx))
    }

    /// Waits until the record is durable. Fails with the store's error, or
    /// `Unavailable` when the store stopped before answering.
    pub async fn wait(self) -> Result<(), StoreError> {
        match self.0 {
            DurableInner::Done(r) => r,
            DurableInner::Batch(mut rx) => match rx.wait_for(Option::is_some).await {
                Ok(answer) => answer.clone().unwrap_or(Ok(())),
                Err(_) => Err(StoreError::Unavailable(
                    "the store stopped before the dispatch record was written".into(),
                )),
            },
        }
    }
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Durable")
    }
}

impl StoreError {
    /// Whether the same call may succeed later (out of space, unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Full(_) | StoreError::Unavailable(_))
    }
}

/// What [`Store::insert_task`] did.
#[derive(Debug, Clone)]
pub enum Inserted {
    /// The task is stored.
    New,
    /// A task with the same session and idempotency key exists: this one.
    Existing(Box<TaskRecord>),
    /// The task is joinable ([`crate::model::CallOptions::joinable`]) and
    /// an unfinished joinable task of the same session, tool and
    /// arguments hash exists: this one. Nothing was stored. The stores
    /// decide it atomically (one joinable unfinished task per call, a
    /// unique index in the SQL stores), whichever server submits.
    Joined(Box<TaskRecord>),
}

/// What [`Store::ack_completions`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Acked {
    /// Completions acknowledged (released from replay) by this call; their
    /// tasks are removed, or kept until retention (see
    /// [`Store::ack_completions`]).
    pub removed: u64,
    /// The session's acknowledged seq after the call.
    pub acked_seq: u64,
    /// The session's last seq (0: none yet).
    pub last_seq: u64,
}

/// A session's counters ([`Store::session_seqs`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionSeqs {
    /// The seq of its last completion; 0: none yet.
    pub last_seq: u64,
    /// The highest seq acknowledged.
    pub acked_seq: u64,
    /// Retained completions with seq > `acked_seq`.
    pub unacknowledged: u64,
}

/// Durable home of tasks and completions.
///
/// Invariants every implementation keeps:
/// - A call that returns `Ok` is durable (as durable as the store promises).
/// - A session's completions become visible to [`Store::completions_after`] in
///   `seq` order with no gap: once seq N is readable, every seq below N that
///   was ever assigned is readable too (unless acknowledged or expired).
/// - [`Store::finish_task`] finishes a task at most once; later calls for the
///   same task return `None`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Every unfinished task, queued or running, oldest first: the work a
    /// restarted server must take up again. The SQLite store leaves out a
    /// task whose stored row no longer decodes (a damaged file), logged at
    /// error level, so that it does not hold the others back
    /// (`sqlite/decode.rs`).
    async fn unfinished_tasks(&self) -> Result<Vec<TaskRecord>, StoreError>;

    /// Stores a new task. When the task has an idempotency key already used in
    /// its session, stores nothing and returns the earlier task; else, when
    /// it is joinable and an identical joinable call is unfinished, stores
    /// nothing and returns that one ([`Inserted::Joined`]).
    async fn insert_task(&self, task: &TaskRecord) -> Result<Inserted, StoreError>;

    /// Records that a task was dispatched (RUNNING, `attempt`, `at`) and
    /// returns a [`Durable`] that resolves once the record is durable: the
    /// scheduler sends the worker its Assignment only then, so a crash never
    /// forgets an attempt a worker may have started (and `(task_id,
    /// attempt)` is never handed out twice). Applied before any later
    /// `finish_task` of the same task.
    ///
    /// The scheduler calls this under its lock: it must never block or wait,
    /// and must not drop the record because a queue is full (the SQL stores
    /// keep the latest attempt per task beside their bounded queue, and
    /// commit them with the next group commit). A failure (the store is
    /// closed, the write failed) resolves the [`Durable`] with the error.
    fn record_dispatch(&self, task_id: Uuid, attempt: u32, at: SystemTime) -> Durable;

    /// Records that attempt `attempt` of a running task went back to the
    /// queue (its worker left, or a restart found it running): QUEUED
    /// again, its attempts and `started_at` kept, as the scheduler shows
    /// it, so that listings, status filters, counts and bulk cancels by
    /// status see the task as GetTask does. A stored task that moved on
    /// (finished, or running another attempt) is left alone. Like
    /// [`Self::record_dispatch`]: called under the scheduler's lock, never
    /// blocks, never dropped, applied after the task's earlier records and
    /// before its later ones; the [`Durable`] resolves once it is durable.
    /// A shared store keeps the task as a claim leaves it, held by this
    /// server, so that no other server claims it.
    fn record_requeue(&self, task_id: Uuid, attempt: u32) -> Durable;

    /// Finishes a task and appends its completion with the session's next seq.
    /// `None` when the task is unknown or already finished. Records
    /// `finish.notes` (summary, the fallback that answered), and deletes
    /// the fallback run `finish.notes.drop_run` in the same write.
    async fn finish_task(&self, finish: &Finish) -> Result<Option<CompletionRecord>, StoreError>;

    /// [`Store::finish_task`] for a caller that holds the task: a store may
    /// take what the completion carries and the task's row never changes
    /// after its insert (session, tool, arguments, creation time, delivery,
    /// result budget) from `task` instead of reading them back (the SQLite
    /// store skips a lookup per finish). Where `task.id` is not
    /// `finish.task_id` (a fallback run's task ending its call) the store
    /// reads them as `finish_task` does. Either way the result is what
    /// `finish_task` would return.
    async fn finish_held_task(
        &self,
        task: &TaskRecord,
        finish: &Finish,
    ) -> Result<Option<CompletionRecord>, StoreError> {
        let _ = task;
        self.finish_task(finish).await
    }

    /// The latest task of `session` and `tool` whose arguments hash to
    /// `args_hash`, that SUCCEEDED at or after `not_before` by itself (no
    /// fallback answered it) and asked for a last-good fallback itself
    /// ([`crate::model::CallOptions::asks_last_good`]: the stores index only
    /// those). Only retained tasks count: an acknowledgement keeps these
    /// ([`Self::ack_completions`]), a purged one is gone. The default knows
    /// none (stores for tests).
    async fn last_good(
        &self,
        _session: &str,
        _tool: &str,
        _args_hash: &crate::model::ArgsHash,
        _not_before: SystemTime,
    ) -> Result<Option<TaskRecord>, StoreError> {
        Ok(None)
    }

    /// Parks an unfinished call whose fallback run is stored: it stays
    /// unfinished until that run finishes it, and is neither queued nor
    /// reclaimed meanwhile. Only a shared queue has anything to do: the
    /// others keep no lease, and recovery skips a parked call by its
    /// run's link ([`crate::model::FallbackFor`]).
    async fn park(&self, _task_id: Uuid) -> Result<(), StoreError> {
        Ok(())
    }

    /// One task, finished or not.
    async fn get_task(&self, task_id: Uuid) -> Result<Option<TaskRecord>, StoreError>;

    /// The task of `session` submitted with idempotency key `key`, if any.
    async fn task_by_key(&self, session: &str, key: &str)
    -> Result<Option<TaskRecord>, StoreError>;

    /// Up to `limit` completions of `session` with seq > `after_seq`, in
    /// order, and no more than [`COMPLETIONS_READ_BYTES`] of them: as
    /// [`Self::completions_within`] with that bound.
    async fn completions_after(
        &self,
        session: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<CompletionRecord>, StoreError> {
        self.completions_within(session, after_seq, limit, COMPLETIONS_READ_BYTES)
            .await
    }

    /// Up to `limit` completions of `session` with seq > `after_seq`, in
    /// order, and no more than `max_bytes` of them (counted by
    /// [`CompletionRecord::bytes`]; the one that crosses it is the last, so
    /// one larger than the bound comes alone, and a bound of 0 reads one);
    /// never an acknowledged one (seq <= the acknowledged seq), even while
    /// its task is kept. The SQLite store never skips one whose stored row
    /// no longer decodes: it returns those before it, and a read that
    /// starts with it fails naming it (`sqlite/decode.rs`).
    async fn completions_within(
        &self,
        session: &str,
        after_seq: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<CompletionRecord>, StoreError>;

    /// Acknowledges a session's completions up to `up_to_seq`: raises the
    /// session's acknowledged seq to it (never lowers it), so they are never
    /// returned again ([`Self::completions_after`], [`Self::session_seqs`]),
    /// and removes their tasks, except those still needed, which stay until
    /// retention ([`Self::purge_finished_before`]):
    /// - a task submitted with an idempotency key, whatever its ending: a
    ///   retried submit still finds it ([`Self::insert_task`]) instead of
    ///   running the tool again;
    /// - a SUCCEEDED result over the task's budget (`result_budget`, or
    ///   `default_budget` bytes, the server's `--result-budget-bytes`, where
    ///   it is 0): it was delivered truncated, and `ReadResult` reads it;
    /// - a SUCCEEDED result of a call with a last-good fallback
    ///   ([`crate::model::CallOptions::asks_last_good`]): [`Self::last_good`]
    ///   may answer a later identical call with it.
    ///
    /// When `up_to_seq` is beyond the session's last seq it changes nothing
    /// (the answer's `last_seq` says so).
    async fn ack_completions(
        &self,
        session: &str,
        up_to_seq: u64,
        default_budget: u64,
    ) -> Result<Acked, StoreError>;

    /// A session's last seq, acknowledged seq, and how many retained
    /// completions are above the latter; zeros for a session never seen.
    async fn session_seqs(&self, session: &str) -> Result<SessionSeqs, StoreError>;

    /// Up to `query.limit` stored tasks that match `query`, finished or not,
    /// in its order (by created_at, then id). A dispatch or requeue record
    /// not yet applied may still show a task's earlier state (for the
    /// moment of a group commit). The SQLite store leaves out a task
    /// whose stored row no longer decodes, logged, the next task taking its
    /// place, so a page is short only at the listing's end
    /// (`sqlite/decode.rs`).
    async fn list_tasks(&self, query: &TaskQuery) -> Result<Vec<TaskRecord>, StoreError>;

    /// How many stored tasks pass `query`'s filter, on every page: its
    /// cursor and limit are ignored. As in [`Self::list_tasks`], a record
    /// not yet applied may still count a task in its earlier state.
    async fn count_tasks(&self, query: &TaskQuery) -> Result<u64, StoreError>;

    /// Removes completions and finished tasks that finished before `cutoff`,
    /// acknowledged tasks kept by [`Self::ack_completions`] too. Returns how
    /// many finished tasks were removed.
    async fn purge_finished_before(&self, cutoff: SystemTime) -> Result<u64, StoreError>;

    /// Every stored tool definition (the persisted registry), by name.
    async fn tools(&self) -> Result<Vec<StoredTool>, StoreError>;

    /// Stores tool definitions, each replacing the stored one of its name;
    /// a stored `last_served_at` only ever moves forward.
    async fn put_tools(&self, tools: &[StoredTool]) -> Result<(), StoreError>;

    /// Deletes the definitions of tool keys `names`; returns how many were
    /// deleted. With PostgreSQL, a definition another live server's workers
    /// serve is kept (one definition per tool across the servers).
    async fn forget_tools(&self, names: &[String]) -> Result<u64, StoreError>;

    /// Whether what it holds outlives the server's process, so that a
    /// restarted server takes up the unfinished tasks (the memory store's
    /// does not).
    fn survives_restart(&self) -> bool {
        true
    }

    /// Whether its writes go through, for a store that tracks it (`None`:
    /// it does not, and health and metrics say nothing of it).
    fn write_health(&self) -> Option<Arc<health::WriteHealth>> {
        None
    }

    /// Makes one small write (and, after an out-of-space failure, gives
    /// the space it can back first): how a server whose store refused
    /// writes finds out, without traffic, that it takes them again.
    /// Errors: the store's, as for any write.
    async fn probe_write(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// The shared queue, when several servers share this store. `None` (the
    /// default) keeps the queue in the server's memory.
    fn shared(&self) -> Option<&dyn SharedQueue> {
        None
    }
}

/// A tool's definition as the store keeps it, so that after a restart (and,
/// on a shared store, on every server) the tool is known before a worker
/// registers it again: its calls are accepted and queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTool {
    /// The tool's key (tenant-prefixed when auth is on).
    pub name: String,
    /// What the tool does, for the model.
    pub description: String,
    /// The JSON Schema of its arguments, as JSON text; empty: any object.
    pub input_schema: String,
    /// Default timeout of one run in milliseconds; 0: the server's.
    pub timeout_ms: u64,
    /// Default queue timeout in milliseconds; 0: the server's.
    pub queue_timeout_ms: u64,
    /// Its delivery, dedup, budget, fallback and cancel policy
    /// (`ToolPolicy::to_stored`); empty: none set.
    pub policy: String,
    /// When a worker last served it, as far as the servers wrote it: at
    /// registration, when the last worker left, and every purge interval
    /// while served. Retention (`--tool-retention-secs`) counts from it.
    pub last_served_at: SystemTime,
}

/// A tool as one server advertises it to the others through a shared store:
/// what a worker registered, plus how many of this server's workers serve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolAdvert {
    /// The tool's key (tenant-prefixed when auth is on).
    pub name: String,
    /// What the tool does, for the model.
    pub description: String,
    /// The JSON Schema of its arguments, as JSON text.
    pub input_schema: String,
    /// The worker's default timeout in milliseconds; `None`: the server's.
    pub default_timeout_ms: Option<u64>,
    /// Workers serving it (on one server when published; summed over the
    /// other live servers by [`SharedQueue::remote_tools`]).
    pub workers: u32,
}

/// A task whose ending a shared store leaves to this server's scheduler,
/// because the ending falls back ([`crate::model::CallOptions::falls_back`]),
/// which only the scheduler can apply. The store holds it for this server
/// (claimed, under a lease: if this server dies first, the reaper finds it
/// again); the scheduler ends it with `finish` as it ends every task.
#[derive(Debug, Clone)]
pub struct Handed {
    pub task: TaskRecord,
    pub finish: Finish,
}

/// What [`SharedQueue::reap`] did.
#[derive(Debug, Default)]
pub struct Reaped {
    /// Tasks it queued again or ended in the store.
    pub count: usize,
    /// Endings it left to this server (see [`Handed`]).
    pub handed: Vec<Handed>,
}

/// Why this server no longer holds a task ([`SharedQueue::lost`]), so its
/// worker is told precisely.
#[derive(Debug, Clone, PartialEq)]
pub enum LostTask {
    /// Its lease ran out and another server reclaimed it (queued again, or
    /// running elsewhere): this server could not renew it in time.
    Reclaimed,
    /// Finished through another server (cancelled, timed out, ...).
    Finished(crate::model::TaskState, Option<Outcome>),
    /// No longer stored (a fallback run dropped with its call, purged).
    Gone,
}

/// What [`SharedQueue::time_out_queued`] did with a queued task.
#[derive(Debug)]
pub enum QueuedEnding {
    /// Ended in the store: its completion.
    Finished(Box<CompletionRecord>),
    /// Its ending falls back: left to this server (see [`Handed`]).
    Handed(Box<Handed>),
}

/// A hint from another server (or this one) through the shared store. Hints
/// may be lost; the core also checks periodically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedEvent {
    /// Tasks of `tool` were queued (submitted, released or reclaimed).
    TasksQueued { tool: String },
    /// `session` has a completion numbered `seq`.
    Completed { session: String, seq: u64 },
    /// A running task was cancelled through another server, with the
    /// client's `reason` ("" when none).
    Cancelled { task_id: Uuid, reason: String },
    /// Tasks left the shared queue: claimed by a server (this one too), or
    /// ended (or dropped) while queued. Their queue deadlines are no
    /// longer the accepting server's to watch.
    LeftQueue { task_ids: Vec<Uuid> },
    /// Some server's set of tools changed.
    ToolsChanged,
    /// Hints may have been missed (the store reconnected): check everything.
    Resync,
}

/// The queue of a store shared by several servers.
///
/// A task is claimed by one server at a time, for its own workers, under a
/// lease that server renews; an expired lease is reclaimed by [`Self::reap`]
/// (queued again, or failed once its attempts are used up). Claiming does not
/// count an attempt: [`Store::record_dispatch`] does, as before.
#[async_trait]
pub trait SharedQueue: Send + Sync {
    /// This server's name as a lease holder.
    fn server_id(&self) -> &str;

    /// How long a claim lasts without renewal.
    fn lease(&self) -> Duration;

    /// Claims up to `limit` queued tasks of `tool` for this server, fairly
    /// between sessions. They come back `Queued`, with their attempts so far.
    async fn claim(&self, tool: &str, limit: usize) -> Result<Vec<TaskRecord>, StoreError>;

    /// Gives claimed tasks back to the queue, for any server.
    async fn release(&self, task_ids: Vec<Uuid>) -> Result<(), StoreError>;

    /// Renews the leases of `held`; returns those this server still holds
    /// (the others were finished elsewhere or reclaimed).
    async fn renew(&self, held: &[Uuid]) -> Result<Vec<Uuid>, StoreError>;

    /// Why this server no longer holds each of `ids` (tasks [`Self::renew`]
    /// did not return). The default knows nothing: [`LostTask::Gone`].
    async fn lost(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, LostTask)>, StoreError> {
        Ok(ids.iter().map(|id| (*id, LostTask::Gone)).collect())
    }

    /// Reclaims expired leases, if no other server is doing so right now:
    /// queues them again, or fails those with no attempt left; and times
    /// out queued tasks past their queue deadline. Endings that fall back
    /// are left to this server ([`Reaped::handed`]). A lease is reclaimed
    /// only when its holder really stopped, not because nobody could reach
    /// the store: a server reclaims none until it has been in steady
    /// contact with the store for a lease (after its start, or after a
    /// silence longer than a lease), so that after an outage every live
    /// server renews its leases before any reaps.
    async fn reap(&self, max_attempts: u32) -> Result<Reaped, StoreError>;

    /// Cancels an unfinished task that another server may hold, with the
    /// client's `reason` ("" when none): the completion's message and its
    /// holder's [`SharedEvent::Cancelled`] carry it.
    async fn cancel(
        &self,
        task_id: Uuid,
        reason: &str,
    ) -> Result<Option<CompletionRecord>, StoreError>;

    /// Ends task `task_id` as TIMED_OUT with `outcome` if it is still
    /// queued (no server holds it), or hands it to this server when that
    /// ending falls back; `None` when it is not queued.
    async fn time_out_queued(
        &self,
        task_id: Uuid,
        outcome: Outcome,
    ) -> Result<Option<QueuedEnding>, StoreError>;

    /// Publishes the tools this server's workers serve (`workers` set).
    async fn publish_tools(&self, tools: Vec<ToolAdvert>) -> Result<(), StoreError>;

    /// Withdraws this server's tools (it is stopping).
    async fn withdraw_tools(&self) -> Result<(), StoreError>;

    /// A registration's definitions, decided for every server at once:
    /// while another live server's workers serve a tool (see
    /// [`Self::remote_tools`]), its stored definition stays, and a
    /// different one is refused. Returns the stored definitions that
    /// refused `tools` (then nothing is written); when none does, stores
    /// `tools` (as [`Store::put_tools`]) and advertises them as served by
    /// this server (one worker each, until its next
    /// [`Self::publish_tools`]), so that a registration elsewhere right
    /// after is refused too.
    async fn register_tools(&self, tools: &[StoredTool]) -> Result<Vec<StoredTool>, StoreError>;

    /// The tools other live servers' workers serve, `workers` summed.
    async fn remote_tools(&self) -> Result<Vec<ToolAdvert>, StoreError>;

    /// The last seq of each of `sessions` that has one.
    async fn last_seqs(&self, sessions: &[String]) -> Result<Vec<(String, u64)>, StoreError>;

    /// Tells the server holding `task_id`, if any, that the task was
    /// cancelled with `reason` (its [`SharedEvent::Cancelled`]), for an
    /// ending written otherwise than by [`Self::cancel`]: a fallback run
    /// ended with its call. Without it, the holder learns at its next
    /// renewal, which tells the worker no reason (as it does when a renewal
    /// happens to come before the notification).
    async fn tell_cancelled(&self, task_id: Uuid, reason: &str) -> Result<(), StoreError>;

    /// Tasks waiting in the shared queue (claimed by no server), per tool
    /// key, for the tools with any; at most [`MAX_QUEUED_TOOLS`] tools.
    async fn queued_by_tool(&self) -> Result<Vec<(String, u64)>, StoreError> {
        Ok(Vec::new())
    }

    /// Hints from the store.
    fn events(&self) -> broadcast::Receiver<SharedEvent>;
}

/// Most tools [`SharedQueue::queued_by_tool`] answers for.
pub const MAX_QUEUED_TOOLS: i64 = 10_000;

/// Most bytes of completions (their [`CompletionRecord::bytes`]) one
/// [`Store::completions_after`] read returns, the completion that crosses
/// it included: what a feed replaying a session of large results holds per
/// read, where 256 results of up to `--max-result-bytes` (4 MiB) each
/// could take a gigabyte.
pub const COMPLETIONS_READ_BYTES: usize = 8 << 20;

/// Whether a [`Store::completions_within`] read of `limit` and
/// `max_bytes` that returned `read` may have left completions after it: it
/// stopped at `limit` or at `max_bytes`, not at the end of what is stored.
pub fn read_may_continue(read: &[CompletionRecord], limit: usize, max_bytes: usize) -> bool {
    read.len() >= limit
        || read.iter().map(CompletionRecord::bytes).sum::<usize>() >= max_bytes.max(1)
}

/// The first completions of `read` within `max_bytes`: each while the ones
/// before it hold less than the bound (so always the first).
pub(crate) fn within_read_bytes(
    read: impl IntoIterator<Item = CompletionRecord>,
    max_bytes: usize,
) -> Vec<CompletionRecord> {
    let max_bytes = max_bytes.max(1);
    let mut held = 0usize;
    read.into_iter()
        .take_while(|c| {
            let take = held < max_bytes;
            held = held.saturating_add(c.bytes());
            take
        })
        .collect()
}

pub type SharedStore = Arc<dyn Store>;
