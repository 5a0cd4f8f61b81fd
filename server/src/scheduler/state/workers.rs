//! Workers coming and going: registration adds a worker's tools and fills
//! its slots; a departure requeues its running tasks, their place kept.
use std::{collections::HashSet, sync::Arc, time::SystemTime};

use uuid::Uuid;

use super::{Ended, Io, State, WorkerEntry, WorkerId};
use crate::{
    model::{Outcome, TaskState},
    tools::ToolSpec,
};

/// A worker that left, and what became of its running tasks.
pub struct Departed {
    pub name: String,
    pub tools: Vec<Arc<str>>,
    pub running: usize,
    /// Tasks that used up their attempts.
    pub ended: Vec<Ended>,
    /// Tasks queued again for another attempt, with the attempts they used.
    pub requeued: Vec<(Uuid, u32)>,
}

impl<I: Io> State<I> {
    /// Adds a worker serving `specs` (checked, no duplicates). Call
    /// [`Self::start_worker`] once its commands may flow.
    pub fn add_worker(
        &mut self,
        name: String,
        specs: Vec<ToolSpec>,
        max_concurrency: usize,
        tx: I::Tx,
    ) -> WorkerId {
        self.next_worker += 1;
        let id = self.next_worker;
        let mut tools = Vec::with_capacity(specs.len());
        for spec in specs {
            let name = spec.name.as_arc().clone();
            let entry = self.tools.entry(name.clone()).or_default();
            entry.spec = Some(spec);
            entry.workers.push(id);
            entry.unserved_since = None;
            tools.push(name);
        }
        self.workers.insert(
            id,
            WorkerEntry {
                name,
                tools,
                max_concurrency,
                running: HashSet::new(),
                reserved: 0,
                claim_held: 0,
                tx,
                closed: false,
                next_tool: 0,
                connected_at: SystemTime::UNIX_EPOCH,
                last_seen: SystemTime::UNIX_EPOCH,
            },
        );
        id
    }

    /// Adds `specs` to the tools of connected worker `worker` (a later
    /// Register on its stream); a tool it serves already stays, its spec
    /// replaced by the (checked, equal) new one. `false` when the worker is
    /// gone. Call `apply` after, so queued calls of the new tools reach it.
    pub fn add_tools(&mut self, worker: WorkerId, specs: Vec<ToolSpec>) -> bool {
        let Some(w) = self.workers.get_mut(&worker).filter(|w| !w.closed) else {
            return false;
        };
        for spec in specs {
            let name = spec.name.as_arc().clone();
            let entry = self.tools.entry(name.clone()).or_default();
            entry.spec = Some(spec);
            if !entry.workers.contains(&worker) {
                entry.workers.push(worker);
                w.tools.push(name);
            }
            entry.unserved_since = None;
        }
        true
    }

    /// The tools connected worker `worker` serves and its max_concurrency;
    /// `None` when it is gone.
    pub fn worker_tools(&self, worker: WorkerId) -> Option<(&[Arc<str>], usize)> {
        (self.workers.get(&worker))
            .filter(|w| !w.closed)
            .map(|w| (w.tools.as_slice(), w.max_concurrency))
    }

    /// Sends a worker its queued work, up to its free slots.
    pub fn start_worker(&mut self, worker: WorkerId, now: SystemTime) {
        if let Some(w) = self.workers.get_mut(&worker) {
            (w.connected_at, w.last_seen) = (now, now);
        }
        self.fill_worker(worker, now);
    }

    /// Removes a worker whose stream ended because this server stops: a
    /// stop is not the worker going away, so its running tasks stay RUNNING
    /// as stored, for the next start ([`crate::scheduler::Scheduler::recover`])
    /// or another server (the shared queue takes them back at stop); only
    /// their run timers stop. Returns its name and how many it ran.
    pub fn remove_worker_at_stop(
        &mut self,
        worker: WorkerId,
        now: SystemTime,
    ) -> Option<(String, usize)> {
        let entry = self.detach_worker(worker, now)?;
        for id in &entry.running {
            if let Some(live) = self.tasks.get_mut(id) {
                live.worker = None;
                if let Some(timer) = live.timer.take() {
                    I::stop(timer);
                }
            }
        }
        Some((entry.name, entry.running.len()))
    }

    /// Takes a worker out of the registry and its tools' worker lists.
    fn detach_worker(&mut self, worker: WorkerId, now: SystemTime) -> Option<WorkerEntry<I>> {
        let entry = self.workers.remove(&worker)?;
        for tool in &entry.tools {
            if let Some(t) = self.tools.get_mut(tool) {
                t.workers.retain(|w| *w != worker);
                if t.workers.is_empty() {
                    t.unserved_since = Some(now);
                }
            }
        }
        Some(entry)
    }

    /// Removes a worker: its running tasks go back to the queue with their
    /// place kept, or end as `lost(attempts)` says once `max_attempts` are
    /// used up.
    pub fn remove_worker(
        &mut self,
        worker: WorkerId,
        max_attempts: u32,
        lost: impl Fn(u32) -> Outcome,
        now: SystemTime,
    ) -> Option<Departed> {
        let entry = self.detach_worker(worker, now)?;
        let mut ended = Vec::new();
        let mut requeued = Vec::new();
        for id in &entry.running {
            let Some(live) = self.tasks.get_mut(id) else {
                continue;
            };
            live.worker = None;
            if let Some(timer) = live.timer.take() {
                I::stop(timer);
            }
            // Progress belongs to a run; the next one resumes from `detail`.
            if live.progress.take().is_some() {
                let session = live.task.session.clone();
                self.forget_progress(&session, *id);
            }
            let Some(live) = self.tasks.get_mut(id) else {
                continue;
            };
            if live.task.attempts >= max_attempts {
                let outcome = lost(live.task.attempts);
                ended.extend(self.take(*id, TaskState::Failed, outcome, None, now));
            } else {
                live.task.state = TaskState::Queued;
                requeued.push((*id, live.task.attempts));
                let tool = self.tools.entry(live.task.tool.clone()).or_default();
                tool.queue.push_front(&live.task.session, *id);
            }
        }
        for tool in &entry.tools {
            self.dispatch_tool(tool, now);
        }
        if self.draining {
            self.effects.running_ended = true;
        }
        Some(Departed {
            name: entry.name,
            running: entry.running.len(),
            tools: entry.tools,
            ended,
            requeued,
        })
    }
}
