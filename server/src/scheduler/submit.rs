//! Submit: a call checked, stored, then queued here (or, shared, in the
//! store) and dispatched when a worker has room.
use std::{sync::Arc, time::SystemTime};

use tracing::debug;

use super::{
    Scheduler, admission,
    queue::Placement,
    shared::HeldRoom,
    state::{Held, Reservation, State},
    worker_tx::Tokio,
};
use crate::{
    error::{self, Error},
    logs,
    model::{ArgsHash, SessionKey, Submission, TaskRecord, TaskState, ToolKey},
    sessions::{Activity, ActivityKind},
    store::{Inserted, TaskQuery},
};

/// Longest a submit waits for a claim in flight to give back the room it
/// holds.
const CLAIM_SETTLE: std::time::Duration = std::time::Duration::from_millis(500);

/// How [`Scheduler::submit_call`] took a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// A new task.
    New,
    /// An earlier task with the same idempotency key.
    Repeat,
    /// An identical call in flight (`DEDUP_POLICY_JOIN_IN_FLIGHT`).
    Joined,
}

impl Scheduler {
    /// Accepts one tool call: checked, stored, queued, dispatched if a worker
    /// has room. Returns the task and whether it was an idempotent repeat.
    pub async fn submit(self: &Arc<Self>, sub: Submission) -> Result<(TaskRecord, bool), Error> {
        let (task, admitted) = self.submit_call(sub).await?;
        Ok((task, admitted != Admitted::New))
    }

    /// [`Self::submit`], saying whether the call ran, repeated an
    /// idempotency key or joined an identical call in flight.
    pub async fn submit_call(
        self: &Arc<Self>,
        mut sub: Submission,
    ) -> Result<(TaskRecord, Admitted), Error> {
        let limits = &self.config.limits;
        admission::check_submission(&sub, limits)?;
        let found = admission::tool_spec(&self.lock(), &sub.tool);
        let spec = match found {
            Ok(spec) => spec,
            // A repeat is answered whatever the tool check says (its tool
            // may be unknown here now); for a known tool the insert finds
            // it, without a read on every submit.
            Err(unknown) => {
                if !sub.idempotency_key.is_empty()
                    && let Some(earlier) = self
                        .store
                        .task_by_key(sub.session.as_key(), &sub.idempotency_key)
                        .await?
                {
                    let arguments = crate::tools::stored_arguments(&sub.arguments_json);
                    let earlier = repeated(earlier, sub.tool.as_key(), arguments)?;
                    let current = self.live_task(earlier.id).unwrap_or(earlier);
                    return Ok((current, Admitted::Repeat));
                }
                return Err(unknown);
            }
        };
        admission::check_fallback_tool(&self.lock(), &sub, &spec)?;
        let arguments_json = std::mem::take(&mut sub.arguments_json);
        let arguments = self
            .validation
            .check(&spec, sub.tool.tenant(), arguments_json, limits)
            .await?;
        let timeout = admission::timeout(&sub, &spec, &self.config);
        let delivery = admission::delivery(&sub, &spec, &self.config);
        let call = admission::call_options(&sub, &spec, &arguments, limits);
        let queue_timeout = admission::queue_timeout(&sub, &spec, &self.config);
        let now = SystemTime::now();
        let task = TaskRecord {
            id: crate::model::new_task_id(),
            session: sub.session.as_arc().clone(),
            tool: spec.name.as_arc().clone(),
            arguments,
            timeout,
            queue_deadline: Some(now + queue_timeout),
            idempotency_key: (!sub.idempotency_key.is_empty())
                .then(|| sub.idempotency_key.as_str().into()),
            created_at: now,
            state: TaskState::Queued,
            attempts: 0,
            started_at: None,
            finished_at: None,
            outcome: None,
            seq: 0,
            retry_of: sub.retry_of,
            delivery,
            call,
            notes: Default::default(),
        };
        self.admit(task).await
    }

    /// Stores a new task and queues it (here or, shared, in the store) if
    /// its session and tenant have room; or answers with the earlier task
    /// its idempotency key or its joinable call names.
    pub(super) async fn admit(
        self: &Arc<Self>,
        mut task: TaskRecord,
    ) -> Result<(TaskRecord, Admitted), Error> {
        // Shared mode: the worker slot a task stored as claimed here will
        // take, held meanwhile so no other submit or claim counts it too.
        let mut held = HeldRoom::new(self);
        // A claim in flight may hold the only free room; once it settles
        // (one store round trip) the room is free again if the claim
        // brought nothing, and a submit with room is dispatched here at
        // once, as documented. Waited for until CLAIM_SETTLE, then queued
        // in the store as without room.
        let deadline = tokio::time::Instant::now() + CLAIM_SETTLE;
        let placed = loop {
            let mut settled = {
                let mut st = self.lock();
                let session = SessionKey::from_key(task.session.clone());
                let run = task.call.fallback_for.is_some();
                let bytes = task.arguments.len();
                let room = admission::check_room(&st, &session, bytes, &self.config.limits, run);
                if let Err(full) = room {
                    break Err(full);
                }
                // A draining server dispatches nothing: what it admits (a
                // fallback run) waits in the shared queue, not claimed here.
                let mut room = None;
                let placement = self.backlog.place(&mut || {
                    room = st.reserve_room(&task.tool);
                    room.is_some()
                });
                let wait = placement == Placement::Elsewhere
                    && tokio::time::Instant::now() < deadline
                    && st.claims_hold_room_for(&task.tool);
                match wait.then(|| self.backlog.claim_rounds()).flatten() {
                    Some(settled) => settled,
                    None => {
                        held.room = room;
                        break Ok((placement, st.reserve(&mut task)));
                    }
                }
            };
            let _ = tokio::time::timeout_at(deadline, settled.changed()).await;
        };
        let (placement, pending) = match placed {
            Ok(placed) => placed,
            Err(full) => return self.earlier_or(full, &task).await,
        };
        if let Placement::Here(state) = placement {
            task.state = state;
        }
        let stored = self.store.insert_task(&task).await;
        task.state = TaskState::Queued;
        match stored {
            Ok(Inserted::New) => {}
            Ok(Inserted::Existing(earlier)) => {
                self.lock().release(pending);
                let earlier = repeated(*earlier, &task.tool, &task.arguments)?;
                let current = self.live_task(earlier.id).unwrap_or(earlier);
                return Ok((current, Admitted::Repeat));
            }
            Ok(Inserted::Joined(running)) => {
                self.lock().release(pending);
                let current = self.live_task(running.id).unwrap_or(*running);
                debug!(task_id = %current.id, "identical call joined the one in flight");
                return Ok((current, Admitted::Joined));
            }
            Err(e) => {
                self.lock().release(pending);
                return Err(e.into());
            }
        }
        debug!(task_id = %task.id, tenant = %logs::field(crate::tenant::of(&task.session)), session_id = %logs::field(crate::tenant::strip(&task.session)), tool = %logs::field(crate::tenant::strip(&task.tool)), "task queued");
        self.metrics.submitted(&task.tool);
        // Before it is queued: a dispatch removes it.
        if let Some(deadline) = task.queue_deadline {
            self.arm_queue_timer(&task, deadline);
        }
        self.hub.record(|| Activity {
            kind: ActivityKind::Submitted,
            task_id: task.id,
            session: task.session.clone(),
            tool: task.tool.clone(),
            at: task.created_at,
        });
        match placement {
            Placement::Here(_) => {
                (self.queue_one(task.clone(), pending, held.room.take())).await;
            }
            Placement::Elsewhere => {
                self.lock().release(pending);
                // A claimer (this server's or another's) takes it for a
                // worker with room.
                self.backlog.wants_work();
            }
        }
        Ok((task, Admitted::New))
    }

    /// A submit refused for room (`refused`) that repeats an earlier call
    /// is answered with that call, as it is with room: a retried submit of
    /// an idempotency key, or an identical call in flight that it joins,
    /// adds no task, so no limit on tasks may refuse it (a client whose
    /// first answer was lost would be told its running call failed). The
    /// same order as [`crate::store::Store::insert_task`]: the key first.
    async fn earlier_or(
        &self,
        refused: Error,
        task: &TaskRecord,
    ) -> Result<(TaskRecord, Admitted), Error> {
        if !matches!(refused, Error::ResourceExhausted(_)) {
            return Err(refused);
        }
        if let Some(key) = &task.idempotency_key
            && let Some(earlier) = self.store.task_by_key(&task.session, key).await?
        {
            let earlier = repeated(earlier, &task.tool, &task.arguments)?;
            let current = self.live_task(earlier.id).unwrap_or(earlier);
            return Ok((current, Admitted::Repeat));
        }
        if task.call.joinable {
            // Only on this refusal: at most the session's unfinished tasks.
            let query = TaskQuery {
                key_prefix: None,
                session: Some(task.session.to_string()),
                tool: Some(task.tool.to_string()),
                states: vec![TaskState::Queued, TaskState::Running],
                after: None,
                newest_first: false,
                limit: self.config.limits.max_pending_per_session.saturating_add(1),
                fallback_runs: false,
            };
            let joined = (self.store.list_tasks(&query).await?)
                .into_iter()
                .find(|t| t.call.joinable && t.call.args_hash == task.call.args_hash);
            if let Some(running) = joined {
                let current = self.live_task(running.id).unwrap_or(running);
                return Ok((current, Admitted::Joined));
            }
        }
        Err(refused)
    }

    /// Queues tasks here with their reservations ([`State::reserve`]), and
    /// dispatches them, giving back the `rooms` held for them first. With a
    /// shared backlog, those no local worker serves go back to it.
    pub(super) async fn queue_here(
        self: &Arc<Self>,
        tasks: Vec<(TaskRecord, Held)>,
        rooms: Vec<Reservation>,
    ) {
        let released = {
            let mut st = self.lock();
            self.queue_locked(&mut st, tasks, rooms)
        };
        self.backlog.give_back(released).await;
    }

    /// [`Self::queue_here`] with the lock held; returns the tasks to give
    /// back to the shared queue.
    pub(super) fn queue_locked(
        self: &Arc<Self>,
        st: &mut State<Tokio>,
        tasks: Vec<(TaskRecord, Held)>,
        rooms: Vec<Reservation>,
    ) -> Vec<uuid::Uuid> {
        let now = SystemTime::now();
        for room in rooms {
            st.release_room(room, now);
        }
        let mut tools: Vec<Arc<str>> = Vec::new();
        for (task, held) in tasks {
            let tool = task.tool.clone();
            // One live already gives its reservation back.
            if st.enqueue(task, held) && !tools.contains(&tool) {
                tools.push(tool);
            }
        }
        for tool in &tools {
            st.dispatch_tool(tool, now);
        }
        self.apply(st);
        if self.backlog.hands_back() {
            st.unservable(&tools)
        } else {
            Vec::new()
        }
    }

    /// [`Self::queue_here`] for one task, the submit's hot path; `room` is
    /// the slot held for it (shared mode).
    async fn queue_one(
        self: &Arc<Self>,
        task: TaskRecord,
        pending: Held,
        room: Option<Reservation>,
    ) {
        if self.backlog.hands_back() {
            return self
                .queue_here(vec![(task, pending)], room.into_iter().collect())
                .await;
        }
        let mut st = self.lock();
        if let Some(room) = room {
            st.release_room(room, SystemTime::now());
        }
        let tool = task.tool.clone();
        if !st.enqueue(task, pending) {
            return;
        }
        st.dispatch_tool(&tool, SystemTime::now());
        self.apply(&mut st);
    }
}

/// `earlier`, the task a submit's idempotency key names, if the submit
/// repeats its call: the same tool (`tool`, a key) and the same `arguments`,
/// compared in RFC 8785 canonical form (spacing, key order and `3` against
/// `3.0` do not matter). A key names one call: another call under it is
/// INVALID_ARGUMENT (as HTTP's Idempotency-Key answers 422), never the
/// earlier call's task, which the client would take for its new call's.
fn repeated(earlier: TaskRecord, tool: &str, arguments: &str) -> Result<TaskRecord, Error> {
    let differs = if *earlier.tool != *tool {
        format!(
            "for tool {}",
            error::quote(ToolKey::from_key(earlier.tool.clone()).name())
        )
    } else if ArgsHash::of(&earlier.arguments) != ArgsHash::of(arguments) {
        "with other arguments".to_string()
    } else {
        return Ok(earlier);
    };
    Err(Error::invalid(format!(
        "idempotency_key {} was first used in this session {differs} (task {}): a key names \
         one call; to get that task again, repeat its tool and arguments, and for a new \
         call, use a new key",
        error::quote(earlier.idempotency_key.as_deref().unwrap_or_default()),
        earlier.id
    )))
}
