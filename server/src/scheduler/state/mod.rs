//! The scheduler's live state and its transitions: plain synchronous Rust,
//! no clock but the `now` passed in, no store, no tasks spawned.
//!
//! The state reaches the world through an [`Io`]: it sends a worker its
//! commands and stops a run's timer through it, and leaves everything else
//! (arming timers, recording dispatches, waking waiters) to its owner, as
//! [`Effects`] the owner reads back after each transition
//! ([`State::take_effects`]). Workers coming and going are in `workers.rs`;
//! what the state can tell about tools and load, and the questions shared
//! mode asks, are in `registry.rs`.
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, SystemTime},
};

use uuid::Uuid;

use super::queue::FairQueue;
use crate::{
    model::{Assignment, Command, Finish, Outcome, ProgressRecord, TaskRecord, TaskState},
    tools::ToolSpec,
};

mod forget;
mod pending;
mod progress;
mod registry;
mod room;
mod unrecorded;
mod views;
mod workers;

pub use pending::Held;
use pending::TenantPending;
pub use registry::differing_fields;
pub use room::Reservation;
pub use views::WorkerView;

/// Server-side ID of one worker connection.
pub type WorkerId = u64;

/// How the state reaches a worker and a run's timer.
pub trait Io {
    /// A worker's command channel.
    type Tx;
    /// A running attempt's timer.
    type Timer;
    /// Sends without waiting; false when the worker cannot take it now.
    fn send(tx: &Self::Tx, command: Command) -> bool;
    /// Records the dispatch that started at `at` and queues the Assignment
    /// without waiting, to be sent once the record is durable; false when
    /// the worker cannot take it now.
    fn assign(tx: &Self::Tx, assignment: Assignment, at: SystemTime) -> bool;
    fn stop(timer: Self::Timer);
}

/// One attempt handed to a worker by a transition (its dispatch recorded
/// through [`Io::assign`]): its owner arms the timer ([`State::set_timer`]).
#[derive(Debug, Clone, Copy)]
pub struct Dispatched {
    pub id: Uuid,
    pub attempt: u32,
    pub timeout: Duration,
}

/// What the transitions since the last [`State::take_effects`] ask of the
/// state's owner.
#[derive(Debug, Default)]
pub struct Effects {
    pub dispatched: Vec<Dispatched>,
    /// A worker has room and nothing is queued for it here (shared mode:
    /// the store's queue may have some).
    pub wants_work: bool,
    /// A running task ended while the server drains.
    pub running_ended: bool,
}

/// A task taken out of the live state, on its way to the store.
#[derive(Debug)]
pub struct Ended {
    pub task: TaskRecord,
    pub finish: Finish,
}

pub struct State<I: Io> {
    /// Unfinished tasks only; finished ones live in the store.
    /// Boxed: a map stores its values inline in every bucket, empty ones
    /// too, and a live task is several hundred bytes.
    tasks: HashMap<Uuid, Box<Live<I>>>,
    tools: HashMap<Arc<str>, ToolEntry>,
    workers: HashMap<WorkerId, WorkerEntry<I>>,
    /// Queued plus running tasks per session key. The key is the one
    /// `Arc<str>` every task of the session shares.
    pending: HashMap<Arc<str>, usize>,
    /// Queued plus running tasks per tenant (see [`tenant`]; "" when auth is
    /// off), and the bytes of their arguments.
    tenant_pending: HashMap<Box<str>, TenantPending>,
    /// Shutting down: no new submits, registrations or dispatches.
    draining: bool,
    /// A dispatch record could not be written: no dispatches until the
    /// scheduler releases the hold (`unrecorded.rs`).
    dispatch_held: bool,
    next_worker: WorkerId,
    /// Shared mode: tools other servers' workers serve, and how many.
    remote: HashMap<Arc<str>, (ToolSpec, u32)>,
    /// Per session key, its live tasks that have progress now (so a new
    /// session stream finds them without a scan of every task).
    progressing: HashMap<Arc<str>, HashSet<Uuid>>,
    /// Shared mode: progress of tasks handed back to the store's queue.
    parked: progress::ParkedProgress,
    /// Shared mode: which tool the next round of claims serves first.
    claim_turn: usize,
    effects: Effects,
}

struct Live<I: Io> {
    task: TaskRecord,
    /// Its place in the pending counts, given back when it leaves.
    held: Held,
    worker: Option<WorkerId>,
    timer: Option<I::Timer>,
    /// The latest progress of the current run (cleared when it is lost).
    progress: Option<Arc<ProgressRecord>>,
    /// Reports accepted so far, over all attempts: the next one's index
    /// is one more.
    reports: u64,
    /// The last non-empty `detail_json` of any attempt: the next attempt
    /// resumes from it.
    detail: Option<Arc<str>>,
}

#[derive(Default)]
struct ToolEntry {
    /// `None` while the tool is known only from tasks recovered at start.
    spec: Option<ToolSpec>,
    workers: Vec<WorkerId>,
    queue: FairQueue,
    /// Since when no worker has served it (set when the last one leaves,
    /// or by the first sweep that sees it unserved); `None` while served.
    unserved_since: Option<SystemTime>,
}

struct WorkerEntry<I: Io> {
    name: String,
    tools: Vec<Arc<str>>,
    max_concurrency: usize,
    running: HashSet<Uuid>,
    /// Shared mode: free slots held for tasks on their way here (a submit
    /// being stored, a claim in flight), see `room.rs`.
    reserved: usize,
    /// How many of those a claim in flight holds.
    claim_held: usize,
    tx: I::Tx,
    /// Its stream is gone or stuck; cleanup is on the way. Gets no more tasks.
    closed: bool,
    /// Where the next round over its tools starts, so no tool starves another.
    next_tool: usize,
    /// When it started (registered), and when it last sent a result.
    connected_at: SystemTime,
    last_seen: SystemTime,
}

impl<I: Io> WorkerEntry<I> {
    /// A slot neither running a task nor held for one on its way here.
    fn has_room(&self) -> bool {
        !self.closed && self.running.len() + self.reserved < self.max_concurrency
    }

    /// How many such slots.
    fn free(&self) -> usize {
        if self.has_room() {
            self.max_concurrency - self.running.len() - self.reserved
        } else {
            0
        }
    }
}

impl<I: Io> Default for State<I> {
    fn default() -> Self {
        Self {
            tasks: HashMap::new(),
            tools: HashMap::new(),
            workers: HashMap::new(),
            pending: HashMap::new(),
            tenant_pending: HashMap::new(),
            draining: false,
            dispatch_held: false,
            next_worker: 0,
            remote: HashMap::new(),
            progressing: HashMap::new(),
            parked: Default::default(),
            claim_turn: 0,
            effects: Effects::default(),
        }
    }
}

impl<I: Io> State<I> {
    /// Starts a graceful stop: no new submits, registrations or dispatches.
    pub fn start_draining(&mut self) {
        self.draining = true;
    }

    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// What the transitions since the last call asked for.
    pub fn take_effects(&mut self) -> Effects {
        std::mem::take(&mut self.effects)
    }

    /// Takes a task into the live state, queued behind its session's others,
    /// with its reservation (`task` is the one [`Self::reserve`] was given).
    /// Returns false when the task is live already, changing nothing but
    /// giving the reservation back.
    pub fn enqueue(&mut self, mut task: TaskRecord, held: Held) -> bool {
        if self.tasks.contains_key(&task.id) {
            self.release(held);
            return false;
        }
        task.state = TaskState::Queued;
        let (reports, detail) = self.unpark_progress(task.id);
        let entry = self.tools.entry(task.tool.clone()).or_default();
        entry.queue.push_back(&task.session, task.id);
        self.tasks.insert(
            task.id,
            Box::new(Live {
                task,
                held,
                worker: None,
                timer: None,
                progress: None,
                reports,
                detail,
            }),
        );
        true
    }

    /// A live task.
    pub fn task(&self, id: Uuid) -> Option<&TaskRecord> {
        self.tasks.get(&id).map(|l| &l.task)
    }

    /// Every live task's ID.
    pub fn task_ids(&self) -> Vec<Uuid> {
        self.tasks.keys().copied().collect()
    }

    /// Tasks held by a worker.
    pub fn running(&self) -> usize {
        self.tasks.values().filter(|l| l.worker.is_some()).count()
    }

    /// Whether `worker` holds attempt `attempt` (0: any) of task `id`.
    pub fn holds(&self, worker: WorkerId, id: Uuid, attempt: u32) -> bool {
        self.tasks.get(&id).is_some_and(|live| {
            live.worker == Some(worker) && (attempt == 0 || attempt == live.task.attempts)
        })
    }

    /// Whether attempt `attempt` of task `id` is the one running.
    pub fn is_running(&self, id: Uuid, attempt: u32) -> bool {
        self.tasks
            .get(&id)
            .is_some_and(|l| l.task.state == TaskState::Running && l.task.attempts == attempt)
    }

    /// Keeps the timer of a running attempt; stops it if the attempt is over.
    pub fn set_timer(&mut self, id: Uuid, attempt: u32, timer: I::Timer) {
        match self.tasks.get_mut(&id) {
            Some(live) if live.task.attempts == attempt && live.worker.is_some() => {
                if let Some(old) = live.timer.replace(timer) {
                    I::stop(old);
                }
            }
            _ => I::stop(timer),
        }
    }

    /// Forgets the timer of a running attempt without stopping it (the
    /// timer itself is calling).
    pub fn clear_timer(&mut self, id: Uuid) {
        if let Some(live) = self.tasks.get_mut(&id) {
            live.timer = None;
        }
    }

    /// Removes a task from the live state and frees what it held.
    /// `tell_worker` sends the worker a [`Command::Cancel`] with that reason.
    pub fn take(
        &mut self,
        id: Uuid,
        state: TaskState,
        outcome: Outcome,
        tell_worker: Option<Arc<str>>,
        now: SystemTime,
    ) -> Option<Ended> {
        let live = *self.tasks.remove(&id)?;
        if live.progress.is_some() {
            self.forget_progress(&live.task.session, id);
        }
        if let Some(timer) = live.timer {
            I::stop(timer);
        }
        match live.worker {
            None => {
                if let Some(tool) = self.tools.get_mut(&live.task.tool) {
                    tool.queue.remove(&live.task.session, id);
                }
            }
            Some(worker) => {
                if let Some(w) = self.workers.get_mut(&worker) {
                    w.running.remove(&id);
                    if let Some(reason) = tell_worker {
                        let cancel = Command::Cancel {
                            task_id: id,
                            reason,
                        };
                        // Unreachable: its cleanup is on the way.
                        let _ = I::send(&w.tx, cancel);
                    }
                }
                self.fill_worker(worker, now);
                if self.draining {
                    self.effects.running_ended = true;
                }
            }
        }
        self.release(live.held);
        let finish = Finish {
            task_id: id,
            state,
            outcome,
            attempts: live.task.attempts,
            finished_at: now,
            notes: Default::default(),
        };
        Some(Ended {
            task: live.task,
            finish,
        })
    }

    /// Gives queued tasks of `tool` to its workers with room, the least
    /// loaded first.
    pub fn dispatch_tool(&mut self, tool: &str, now: SystemTime) {
        if self.draining || self.dispatch_held {
            return;
        }
        loop {
            let Some(entry) = self.tools.get(tool) else {
                return;
            };
            if entry.queue.is_empty() {
                return;
            }
            let best = entry
                .workers
                .iter()
                .filter_map(|id| self.workers.get(id).map(|w| (*id, w)))
                .filter(|(_, w)| w.has_room())
                .max_by_key(|(_, w)| w.max_concurrency - w.running.len())
                .map(|(id, _)| id);
            let Some(worker) = best else { return };
            let Some((_, task)) = self.tools.get_mut(tool).and_then(|t| t.queue.pop()) else {
                return;
            };
            self.assign(worker, task, now);
        }
    }

    /// Fills a worker's free slots, taking its tools in turn.
    fn fill_worker(&mut self, worker: WorkerId, now: SystemTime) {
        if self.draining || self.dispatch_held {
            return;
        }
        loop {
            let Self { workers, tools, .. } = &mut *self;
            let Some(w) = workers.get_mut(&worker) else {
                return;
            };
            if !w.has_room() {
                return;
            }
            let n = w.tools.len();
            let picked = (0..n).find_map(|i| {
                let idx = (w.next_tool + i) % n;
                tools.get_mut(&w.tools[idx])?.queue.pop()
            });
            let Some((_, task)) = picked else {
                self.effects.wants_work = true;
                return;
            };
            self.assign(worker, task, now);
        }
    }

    fn assign(&mut self, worker: WorkerId, id: Uuid, now: SystemTime) {
        let Self {
            tasks,
            workers,
            effects,
            ..
        } = &mut *self;
        let (Some(live), Some(w)) = (tasks.get_mut(&id), workers.get_mut(&worker)) else {
            return;
        };
        live.task.state = TaskState::Running;
        live.task.attempts += 1;
        live.task.started_at = Some(now);
        live.worker = Some(worker);
        w.running.insert(id);
        if let Some(idx) = w.tools.iter().position(|t| *t == live.task.tool) {
            w.next_tool = (idx + 1) % w.tools.len();
        }
        let attempt = live.task.attempts;
        let assignment = Assignment {
            task_id: id,
            session: live.task.session.clone(),
            tool: live.task.tool.clone(),
            arguments: live.task.arguments.clone(),
            attempt,
            timeout: live.task.timeout,
            resume_detail: live.detail.clone(),
        };
        if !I::assign(&w.tx, assignment, now) {
            // The stream is gone or stuck; its cleanup gives the task back.
            w.closed = true;
        }
        effects.dispatched.push(Dispatched {
            id,
            attempt,
            timeout: live.task.timeout,
        });
    }
}

#[cfg(test)]
mod tests;
