//! The in-memory store: fast, bounded by retention, gone on restart.
use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::SystemTime,
};

use async_trait::async_trait;
use uuid::Uuid;

use super::{
    Acked, Durable, Inserted, SessionSeqs, Store, StoreError, StoredTool, TaskQuery,
    listing::Listed,
};
use crate::model::{ArgsHash, CompletionRecord, Finish, TaskRecord, TaskState};

mod record;
use record::Stored;

/// Keeps everything in a map behind a short, never-awaited lock.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Boxed: a map stores its values inline in every bucket, empty ones too.
    tasks: HashMap<Uuid, Box<Stored>>,
    idempotency: HashMap<(Arc<str>, Arc<str>), Uuid>,
    /// Unfinished joinable tasks by their call.
    in_flight: HashMap<Call, Uuid>,
    sessions: HashMap<Arc<str>, SessionLog>,
    /// Acknowledged tasks kept until retention ([`kept_on_ack`]), by
    /// finish time: their completions have left the session logs, which
    /// the purge otherwise walks.
    kept: BTreeSet<(SystemTime, Uuid)>,
    tools: HashMap<String, StoredTool>,
}

/// A joinable call: session, tool and arguments hash.
type Call = (Arc<str>, Arc<str>, ArgsHash);

#[derive(Default)]
struct SessionLog {
    /// Last seq handed out; kept after the log empties so seqs never repeat.
    last_seq: u64,
    /// Highest seq acknowledged.
    acked_seq: u64,
    log: VecDeque<CompletionRecord>,
}

impl MemoryStore {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind, still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether an acknowledgement keeps `task` until retention (see
/// [`Store::ack_completions`]): submitted with an idempotency key; SUCCEEDED
/// with a result over its budget (`default_budget` bytes where its own is
/// 0); or SUCCEEDED by itself in a call with a last-good fallback.
fn kept_on_ack(task: &Stored, default_budget: u64) -> bool {
    task.idempotency_key.is_some()
        || task.state == TaskState::Succeeded
            && task.result_len().is_some_and(|len| {
                len as u64 > task.budget(default_budget)
                    || !task.answered() && task.asks_last_good()
            })
}

/// What a listing looks at in task `id`.
fn listed(id: Uuid, task: &Stored) -> Listed<'_> {
    Listed {
        id,
        created_at: task.created_at,
        session: &task.session,
        tool: &task.tool,
        state: task.state,
        run: task.is_run(),
    }
}

impl Inner {
    fn remove_task(&mut self, id: Uuid) {
        let Some(task) = self.tasks.remove(&id) else {
            return;
        };
        Self::leave_flight(&mut self.in_flight, id, &task);
        let Stored {
            session,
            idempotency_key,
            ..
        } = *task;
        if let Some(key) = idempotency_key {
            self.idempotency.remove(&(session, key));
        }
    }

    /// The task whole, if stored.
    fn record(&self, id: Uuid) -> Option<TaskRecord> {
        self.tasks.get(&id).map(|t| t.to_record(id))
    }

    fn flight_key(session: &Arc<str>, tool: &Arc<str>, args_hash: ArgsHash) -> Call {
        (session.clone(), tool.clone(), args_hash)
    }

    fn leave_flight(in_flight: &mut HashMap<Call, Uuid>, id: Uuid, task: &Stored) {
        if !task.joinable {
            return;
        }
        let key = Self::flight_key(&task.session, &task.tool, task.args_hash());
        if in_flight.get(&key) == Some(&id) {
            in_flight.remove(&key);
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn survives_restart(&self) -> bool {
        false
    }

    async fn unfinished_tasks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        let inner = self.lock();
        let mut tasks: Vec<_> = inner
            .tasks
            .iter()
            .filter(|(_, t)| !t.state.is_final())
            .map(|(id, t)| t.to_record(*id))
            .collect();
        tasks.sort_by_key(|t| t.created_at);
        Ok(tasks)
    }

    async fn insert_task(&self, task: &TaskRecord) -> Result<Inserted, StoreError> {
        let mut inner = self.lock();
        if let Some(key) = &task.idempotency_key {
            let slot = (task.session.clone(), key.clone());
            if let Some(t) = inner
                .idempotency
                .get(&slot)
                .and_then(|id| inner.record(*id))
            {
                return Ok(Inserted::Existing(Box::new(t)));
            }
        }
        if task.call.joinable {
            let key = Inner::flight_key(&task.session, &task.tool, task.call.args_hash);
            if let Some(t) = inner.in_flight.get(&key).and_then(|id| inner.record(*id)) {
                return Ok(Inserted::Joined(Box::new(t)));
            }
            inner.in_flight.insert(key, task.id);
        }
        if let Some(key) = &task.idempotency_key {
            inner
                .idempotency
                .insert((task.session.clone(), key.clone()), task.id);
        }
        inner.tasks.insert(task.id, Box::new(Stored::new(task)));
        Ok(Inserted::New)
    }

    fn record_dispatch(&self, task_id: Uuid, attempt: u32, at: SystemTime) -> Durable {
        if let Some(task) = self.lock().tasks.get_mut(&task_id)
            && !task.state.is_final()
        {
            task.dispatch(attempt, at);
        }
        Durable::done(Ok(()))
    }

    fn record_requeue(&self, task_id: Uuid, attempt: u32) -> Durable {
        if let Some(task) = self.lock().tasks.get_mut(&task_id) {
            task.requeue(attempt);
        }
        Durable::done(Ok(()))
    }

    async fn finish_task(&self, finish: &Finish) -> Result<Option<CompletionRecord>, StoreError> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        if let Some(run) = finish.notes.drop_run {
            inner.remove_task(run);
        }
        let Some(task) = inner.tasks.get_mut(&finish.task_id) else {
            return Ok(None);
        };
        if task.state.is_final() {
            return Ok(None);
        }
        let session = inner.sessions.entry(task.session.clone()).or_default();
        session.last_seq += 1;
        let completion =
            CompletionRecord::new(&task.to_record(finish.task_id), finish, session.last_seq);
        task.finish(finish, completion.seq);
        session.log.push_back(completion.clone());
        Inner::leave_flight(&mut inner.in_flight, finish.task_id, task);
        Ok(Some(completion))
    }

    async fn last_good(
        &self,
        session: &str,
        tool: &str,
        args_hash: &crate::model::ArgsHash,
        not_before: SystemTime,
    ) -> Result<Option<TaskRecord>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .tasks
            .iter()
            .filter(|(_, t)| {
                t.state == TaskState::Succeeded
                    && t.asks_last_good()
                    && !t.answered()
                    && &*t.session == session
                    && &*t.tool == tool
                    && t.args_hash() == *args_hash
                    && t.finished_at().is_some_and(|at| at >= not_before)
            })
            .max_by_key(|(_, t)| t.finished_at())
            .map(|(id, t)| t.to_record(*id)))
    }

    async fn get_task(&self, task_id: Uuid) -> Result<Option<TaskRecord>, StoreError> {
        Ok(self.lock().record(task_id))
    }

    async fn task_by_key(
        &self,
        session: &str,
        key: &str,
    ) -> Result<Option<TaskRecord>, StoreError> {
        let inner = self.lock();
        let slot: (Arc<str>, Arc<str>) = (session.into(), key.into());
        Ok(inner
            .idempotency
            .get(&slot)
            .and_then(|id| inner.record(*id)))
    }

    async fn list_tasks(&self, query: &TaskQuery) -> Result<Vec<TaskRecord>, StoreError> {
        let inner = self.lock();
        let mut tasks: Vec<TaskRecord> = inner
            .tasks
            .iter()
            .filter(|(id, t)| query.matches(&listed(**id, t)))
            .map(|(id, t)| t.to_record(*id))
            .collect();
        query.sort(&mut tasks);
        tasks.truncate(query.limit);
        Ok(tasks)
    }

    async fn count_tasks(&self, query: &TaskQuery) -> Result<u64, StoreError> {
        let inner = self.lock();
        let n = inner
            .tasks
            .iter()
            .filter(|(id, t)| query.passes_filter(&listed(**id, t)))
            .count();
        Ok(n as u64)
    }

    async fn completions_within(
        &self,
        session: &str,
        after_seq: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<CompletionRecord>, StoreError> {
        let inner = self.lock();
        let Some(log) = inner.sessions.get(session) else {
            return Ok(Vec::new());
        };
        // The log is sorted by seq: skip to the first one after `after_seq`.
        let start = log.log.partition_point(|c| c.seq <= after_seq);
        Ok(super::within_read_bytes(
            log.log.iter().skip(start).take(limit).cloned(),
            max_bytes,
        ))
    }

    async fn ack_completions(
        &self,
        session: &str,
        up_to_seq: u64,
        default_budget: u64,
    ) -> Result<Acked, StoreError> {
        let mut inner = self.lock();
        let Some(log) = inner.sessions.get_mut(session) else {
            return Ok(Acked::default());
        };
        if up_to_seq > log.last_seq {
            return Ok(Acked {
                removed: 0,
                acked_seq: log.acked_seq,
                last_seq: log.last_seq,
            });
        }
        log.acked_seq = log.acked_seq.max(up_to_seq);
        let (acked_seq, last_seq) = (log.acked_seq, log.last_seq);
        let mut released = Vec::new();
        while log.log.front().is_some_and(|c| c.seq <= up_to_seq) {
            released.extend(log.log.pop_front().map(|c| c.task_id));
        }
        for id in &released {
            match inner.tasks.get(id) {
                Some(task) if kept_on_ack(task, default_budget) => {
                    if let Some(at) = task.finished_at() {
                        inner.kept.insert((at, *id));
                    }
                }
                _ => inner.remove_task(*id),
            }
        }
        Ok(Acked {
            removed: released.len() as u64,
            acked_seq,
            last_seq,
        })
    }

    async fn session_seqs(&self, session: &str) -> Result<SessionSeqs, StoreError> {
        let inner = self.lock();
        let Some(log) = inner.sessions.get(session) else {
            return Ok(SessionSeqs::default());
        };
        let unacknowledged = log.log.iter().filter(|c| c.seq > log.acked_seq).count();
        Ok(SessionSeqs {
            last_seq: log.last_seq,
            acked_seq: log.acked_seq,
            unacknowledged: unacknowledged as u64,
        })
    }

    async fn purge_finished_before(&self, cutoff: SystemTime) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let mut removed = Vec::new();
        for log in inner.sessions.values_mut() {
            while log.log.front().is_some_and(|c| c.completed_at < cutoff) {
                removed.extend(log.log.pop_front().map(|c| c.task_id));
            }
        }
        while inner.kept.first().is_some_and(|(at, _)| *at < cutoff) {
            removed.extend(inner.kept.pop_first().map(|(_, id)| id));
        }
        let count = removed.len() as u64;
        for id in removed {
            inner.remove_task(id);
        }
        // Session counters stay, empty or not: a client resuming with an old
        // after_seq must never meet a seq that starts again at 1.
        Ok(count)
    }

    async fn tools(&self) -> Result<Vec<StoredTool>, StoreError> {
        let mut tools: Vec<StoredTool> = self.lock().tools.values().cloned().collect();
        tools.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(tools)
    }

    async fn put_tools(&self, tools: &[StoredTool]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        for tool in tools {
            let mut tool = tool.clone();
            if let Some(old) = inner.tools.get(&tool.name) {
                tool.last_served_at = tool.last_served_at.max(old.last_served_at);
            }
            inner.tools.insert(tool.name.clone(), tool);
        }
        Ok(())
    }

    async fn forget_tools(&self, names: &[String]) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        Ok(names
            .iter()
            .filter(|n| inner.tools.remove(*n).is_some())
            .count() as u64)
    }
}
