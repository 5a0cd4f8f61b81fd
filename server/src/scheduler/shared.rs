//! Shared mode: what [`crate::cluster`] asks of the live state. Each method
//! holds the lock for one short synchronous section, as everywhere here.
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::SystemTime,
};

use tracing::{info, warn};
use uuid::Uuid;

use super::{Scheduler, state::Reservation};
use crate::{
    model::{Outcome, TaskRecord, TaskState, ToolDef, ToolKey, codes, millis},
    store::{LostTask, SharedQueue, StoreError, ToolAdvert},
    tools::ToolSpec,
};

impl Scheduler {
    /// Holds this server's free worker slots for one round of claims, per
    /// tool served here but those in `skip`; each slot counts for one tool
    /// only (see `State::reserve_claims`). Hand the reservations to
    /// [`Self::adopt`] with what the claims brought.
    pub fn reserve_claims(&self, skip: &HashSet<Arc<str>>) -> Vec<(Arc<str>, Reservation)> {
        self.lock().reserve_claims(skip)
    }

    /// Whether a worker here serves `tool`.
    pub fn serves(&self, tool: &str) -> bool {
        self.lock().serves(tool)
    }

    /// Takes claimed tasks into the live state and dispatches them, giving
    /// back the `rooms` held for their claims in the same step (so no submit
    /// takes a slot meant for them). Tasks no local worker serves any more
    /// go back to the store.
    pub async fn adopt(self: &Arc<Self>, tasks: Vec<TaskRecord>, rooms: Vec<Reservation>) {
        let released = {
            let mut st = self.lock();
            let mut fresh = Vec::with_capacity(tasks.len());
            for mut task in tasks {
                if st.task(task.id).is_none() {
                    // The server that holds a queued task keeps its deadline
                    // (a dispatch removes it): the claim's own left-queue
                    // hint may have disarmed it here before this adoption.
                    if let Some(deadline) = task.queue_deadline {
                        self.arm_queue_timer(&task, deadline);
                    }
                    let held = st.reserve(&mut task);
                    fresh.push((task, held));
                }
            }
            self.queue_locked(&mut st, fresh, rooms)
        };
        self.backlog.give_back(released).await;
    }

    /// Every task this server holds (claimed, queued here or running).
    pub fn held(&self) -> Vec<Uuid> {
        self.lock().task_ids()
    }

    /// Tasks `ids` left the shared queue (a server claimed them, or they
    /// ended while queued): the queue deadlines this server keeps for those
    /// it accepted are over, and nothing more is done for them here, in
    /// memory, timers or the store. A task claimed by this server keeps
    /// its deadline while it waits in the queue here ([`Self::adopt`] arms
    /// it again when the claim's own hint came first).
    pub fn left_queue(&self, ids: &[Uuid]) {
        let st = self.lock();
        for id in ids {
            if st.task(*id).is_none() {
                self.deadlines.disarm(*id);
            }
        }
    }

    /// Drops tasks this server no longer holds in the store, telling each
    /// one's worker why (see [`lost_tell`]); nothing is stored.
    pub fn forget(self: &Arc<Self>, lost: &[(Uuid, LostTask)]) {
        for (id, why) in lost {
            let (outcome, tell) = lost_tell(why);
            self.drop_held(&[*id], &outcome, &tell);
        }
    }

    /// A task of this server cancelled through another one with `reason`:
    /// its worker is told as a cancel here tells it (`cancelled: <reason>`).
    pub fn cancelled_elsewhere(self: &Arc<Self>, id: Uuid, reason: &str) {
        let (why, tell) = crate::text::cancelled(reason);
        self.drop_held(&[id], &Outcome::error(codes::CANCELLED, why), &tell);
    }

    /// Takes `ids` out of the live state, telling their workers `tell`;
    /// nothing is stored (the store has their ending already).
    fn drop_held(self: &Arc<Self>, ids: &[Uuid], outcome: &Outcome, tell: &Arc<str>) {
        let dropped: Vec<_> = {
            let mut st = self.lock();
            ids.iter()
                .filter_map(|id| {
                    self.take(
                        &mut st,
                        *id,
                        TaskState::Cancelled,
                        outcome.clone(),
                        Some(tell.clone()),
                    )
                })
                .collect()
        };
        for ended in dropped {
            info!(task_id = %ended.task.id, "task no longer held here: its worker is told to stop");
            self.ended_one();
        }
    }

    /// Publishes the tools this server's workers serve. Read and written
    /// under the registry's writes, so a registration's advert
    /// (`SharedQueue::register_tools`) is never replaced by a list read
    /// before it.
    pub async fn publish_tools(&self, shared: &dyn SharedQueue) -> Result<(), StoreError> {
        let _writes = self.registry_writes.lock().await;
        shared.publish_tools(self.local_tools()).await
    }

    /// The tools this server's workers serve, to publish.
    pub fn local_tools(&self) -> Vec<ToolAdvert> {
        self.lock()
            .local_tools()
            .into_iter()
            .map(|(spec, workers)| ToolAdvert {
                name: spec.name.as_key().to_string(),
                description: spec.description.to_string(),
                input_schema: spec.input_schema_json.to_string(),
                default_timeout_ms: spec.timeout.map(millis),
                workers,
            })
            .collect()
    }

    /// Replaces what is known of other servers' tools. Each is checked as a
    /// worker's registration is; one that fails is left out.
    pub fn set_remote_tools(&self, tools: Vec<ToolAdvert>) {
        let remote: HashMap<Arc<str>, (ToolSpec, u32)> = tools
            .into_iter()
            .filter_map(|t| {
                let def = ToolDef {
                    name: ToolKey::from_key(t.name),
                    description: t.description,
                    input_schema_json: t.input_schema,
                    timeout_ms: t.default_timeout_ms.unwrap_or(0),
                    // Not advertised between servers: the server's default.
                    queue_timeout_ms: 0,
                    // Adverts carry no policy: the server's defaults apply.
                    ..Default::default()
                };
                match ToolSpec::new(&def, &self.config.limits) {
                    Ok(spec) => Some((spec.name.as_arc().clone(), (spec, t.workers))),
                    Err(e) => {
                        warn!(tool = %crate::logs::field(def.name.name()), error = %e, "another server's tool is not usable here");
                        None
                    }
                }
            })
            .collect();
        self.lock().set_remote_tools(remote);
    }
}

/// What the live state records, and what the worker is told
/// (`CancelAssignment.reason`), for a task this server lost `why`: a task
/// reclaimed after its lease ran out says so ("lease_lost: ..."), not a
/// plain "cancelled" that reads as a user's cancel; one cancelled or timed
/// out through another server says what that server would have said.
pub(crate) fn lost_tell(why: &LostTask) -> (Outcome, Arc<str>) {
    match why {
        LostTask::Reclaimed => {
            let why = "this server could not renew the task's lease in time (it could not reach \
                       the store for longer than --lease-ms), so another server took the task \
                       over; a result sent for it now is ignored";
            (
                Outcome::error(codes::WORKER_LOST, why),
                format!("{LEASE_LOST}: {why}").into(),
            )
        }
        LostTask::Finished(TaskState::Cancelled, Some(Outcome::Error { message, .. })) => {
            let (why, tell) = crate::text::cancelled(crate::text::cancel_reason(message));
            (Outcome::error(codes::CANCELLED, why), tell)
        }
        LostTask::Finished(TaskState::TimedOut, Some(outcome)) => {
            (outcome.clone(), Arc::from(codes::TIMEOUT))
        }
        LostTask::Finished(..) | LostTask::Gone => (
            Outcome::error(codes::CANCELLED, "no longer held by this server"),
            Arc::from(codes::CANCELLED),
        ),
    }
}

/// The `CancelAssignment.reason` of a task whose lease this server lost.
pub const LEASE_LOST: &str = "lease_lost";

/// Room a submit holds on a worker here while its task is stored as
/// claimed by this server. Given back when dropped unless the task took it
/// (a submit's future may be dropped mid-store); drop it with the state's
/// lock free.
pub(super) struct HeldRoom<'a> {
    sched: &'a Arc<Scheduler>,
    pub room: Option<Reservation>,
}

impl<'a> HeldRoom<'a> {
    pub fn new(sched: &'a Arc<Scheduler>) -> Self {
        Self { sched, room: None }
    }
}

impl Drop for HeldRoom<'_> {
    fn drop(&mut self) {
        let Some(room) = self.room.take() else {
            return;
        };
        {
            let mut st = self.sched.lock();
            st.release_room(room, SystemTime::now());
            self.sched.apply(&mut st);
        }
        // Claims meanwhile counted the slot as taken: the shared queue may
        // have work for it.
        self.sched.backlog.wants_work();
    }
}
