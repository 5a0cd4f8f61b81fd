//! The persistence seam. The core keeps live scheduling state in memory and
//! tells a [`Store`] every fact that must outlive the process: a task accepted,
//! a task dispatched, a task finished with its completion. Implementations:
//! [`memory::MemoryStore`] (nothing survives a restart; tests and throwaway use)
//! and [`sqlite::SqliteStore`] (durable, embedded, the default of `errand serve`).
//! Both pass the same behavioural tests (`store/tests.rs`).
use std::{sync::Arc, time::SystemTime};

use async_trait::async_trait;
use uuid::Uuid;

use crate::model::{CompletionRecord, Finish, TaskRecord};

pub mod memory;
pub mod sqlite;
#[cfg(test)]
mod tests;

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
}

/// What [`Store::insert_task`] did.
#[derive(Debug, Clone)]
pub enum Inserted {
    /// The task is stored.
    New,
    /// A task with the same session and idempotency key exists: this one.
    Existing(Box<TaskRecord>),
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
    /// restarted server must take up again.
    async fn unfinished_tasks(&self) -> Result<Vec<TaskRecord>, StoreError>;

    /// Stores a new task. When the task has an idempotency key already used in
    /// its session, stores nothing and returns the earlier task.
    async fn insert_task(&self, task: &TaskRecord) -> Result<Inserted, StoreError>;

    /// Records that a task was dispatched (RUNNING, `attempt`, `at`). Does not
    /// wait for durability: losing it in a crash only means the restart sees
    /// the task queued with fewer attempts. Applied before any later
    /// `finish_task` of the same task.
    fn record_dispatch(&self, task_id: Uuid, attempt: u32, at: SystemTime);

    /// Finishes a task and appends its completion with the session's next seq.
    /// `None` when the task is unknown or already finished.
    async fn finish_task(&self, finish: &Finish) -> Result<Option<CompletionRecord>, StoreError>;

    /// One task, finished or not.
    async fn get_task(&self, task_id: Uuid) -> Result<Option<TaskRecord>, StoreError>;

    /// Up to `limit` completions of `session` with seq > `after_seq`, in order.
    async fn completions_after(
        &self,
        session: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<CompletionRecord>, StoreError>;

    /// Removes the session's completions with seq <= `up_to_seq`, and their
    /// tasks. Returns how many completions were removed.
    async fn ack_completions(&self, session: &str, up_to_seq: u64) -> Result<u64, StoreError>;

    /// Removes completions and finished tasks that finished before `cutoff`.
    /// Returns how many completions were removed.
    async fn purge_finished_before(&self, cutoff: SystemTime) -> Result<u64, StoreError>;
}

pub type SharedStore = Arc<dyn Store>;
