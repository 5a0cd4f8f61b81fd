//! Test doubles' common part: a [`MemoryStore`] with a few calls changed.
//! A double is a [`Doubled`] over its [`Hooks`], which say what it changes
//! (a write held, refused or failed); every call reaches the memory store
//! as it is otherwise, so a double differs from it only where it says.
use std::{ops::Deref, sync::Arc, time::SystemTime};

use async_trait::async_trait;
use uuid::Uuid;

use super::{
    Acked, Durable, Inserted, SessionSeqs, Store, StoreError, StoredTool, TaskQuery,
    health::WriteHealth, memory::MemoryStore,
};
use crate::model::{ArgsHash, CompletionRecord, Finish, TaskRecord};

/// What a double changes; each hook's default changes nothing.
#[async_trait]
pub(crate) trait Hooks: Send + Sync + 'static {
    /// After a task insert was made, before its caller hears of it.
    async fn inserted(&self) {}
    /// Before a dispatch record: an error fails the record instead.
    fn dispatching(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Before a finish (held or not): an error fails it instead.
    fn finishing(&self, _finish: &Finish) -> Result<(), StoreError> {
        Ok(())
    }
    /// After tool definitions were stored, before their caller hears of it.
    async fn tools_put(&self) {}
    /// The write health the store reports (the memory store has none).
    fn write_health(&self) -> Option<Arc<WriteHealth>> {
        None
    }
    /// The store's write probe.
    async fn probe_write(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A memory store and the hooks that change it; derefs to the hooks, so a
/// test reaches its double's controls directly.
#[derive(Default)]
pub(crate) struct Doubled<H> {
    pub memory: MemoryStore,
    pub hooks: H,
}

impl<H> Doubled<H> {
    pub fn new(hooks: H) -> Self {
        Doubled {
            memory: MemoryStore::default(),
            hooks,
        }
    }
}

impl<H> Deref for Doubled<H> {
    type Target = H;

    fn deref(&self) -> &H {
        &self.hooks
    }
}

#[async_trait]
impl<H: Hooks> Store for Doubled<H> {
    async fn unfinished_tasks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        self.memory.unfinished_tasks().await
    }
    async fn insert_task(&self, task: &TaskRecord) -> Result<Inserted, StoreError> {
        let inserted = self.memory.insert_task(task).await;
        self.hooks.inserted().await;
        inserted
    }
    fn record_dispatch(&self, task_id: Uuid, attempt: u32, at: SystemTime) -> Durable {
        match self.hooks.dispatching() {
            Ok(()) => self.memory.record_dispatch(task_id, attempt, at),
            Err(e) => Durable::done(Err(e)),
        }
    }
    fn record_requeue(&self, task_id: Uuid, attempt: u32) -> Durable {
        self.memory.record_requeue(task_id, attempt)
    }
    async fn finish_task(&self, finish: &Finish) -> Result<Option<CompletionRecord>, StoreError> {
        self.hooks.finishing(finish)?;
        self.memory.finish_task(finish).await
    }
    async fn finish_held_task(
        &self,
        task: &TaskRecord,
        finish: &Finish,
    ) -> Result<Option<CompletionRecord>, StoreError> {
        self.hooks.finishing(finish)?;
        self.memory.finish_held_task(task, finish).await
    }
    async fn last_good(
        &self,
        session: &str,
        tool: &str,
        args_hash: &ArgsHash,
        not_before: SystemTime,
    ) -> Result<Option<TaskRecord>, StoreError> {
        (self.memory)
            .last_good(session, tool, args_hash, not_before)
            .await
    }
    async fn park(&self, task_id: Uuid) -> Result<(), StoreError> {
        self.memory.park(task_id).await
    }
    async fn get_task(&self, task_id: Uuid) -> Result<Option<TaskRecord>, StoreError> {
        self.memory.get_task(task_id).await
    }
    async fn task_by_key(
        &self,
        session: &str,
        key: &str,
    ) -> Result<Option<TaskRecord>, StoreError> {
        self.memory.task_by_key(session, key).await
    }
    async fn completions_within(
        &self,
        session: &str,
        after_seq: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<CompletionRecord>, StoreError> {
        (self.memory)
            .completions_within(session, after_seq, limit, max_bytes)
            .await
    }
    async fn ack_completions(
        &self,
        session: &str,
        up_to_seq: u64,
        default_budget: u64,
    ) -> Result<Acked, StoreError> {
        (self.memory)
            .ack_completions(session, up_to_seq, default_budget)
            .await
    }
    async fn session_seqs(&self, session: &str) -> Result<SessionSeqs, StoreError> {
        self.memory.session_seqs(session).await
    }
    async fn list_tasks(&self, query: &TaskQuery) -> Result<Vec<TaskRecord>, StoreError> {
        self.memory.list_tasks(query).await
    }
    async fn count_tasks(&self, query: &TaskQuery) -> Result<u64, StoreError> {
        self.memory.count_tasks(query).await
    }
    async fn purge_finished_before(&self, cutoff: SystemTime) -> Result<u64, StoreError> {
        self.memory.purge_finished_before(cutoff).await
    }
    async fn tools(&self) -> Result<Vec<StoredTool>, StoreError> {
        self.memory.tools().await
    }
    async fn put_tools(&self, tools: &[StoredTool]) -> Result<(), StoreError> {
        let put = self.memory.put_tools(tools).await;
        self.hooks.tools_put().await;
        put
    }
    async fn forget_tools(&self, names: &[String]) -> Result<u64, StoreError> {
        self.memory.forget_tools(names).await
    }
    fn survives_restart(&self) -> bool {
        self.memory.survives_restart()
    }
    fn write_health(&self) -> Option<Arc<WriteHealth>> {
        self.hooks.write_health()
    }
    async fn probe_write(&self) -> Result<(), StoreError> {
        self.hooks.probe_write().await
    }
}
