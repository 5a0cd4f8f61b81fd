//! Per-attempt timeouts: each dispatch arms a deadline that ends the attempt
//! as TIMED_OUT unless a result, a cancel or a lost worker ends it first
//! (they stop its [`AttemptTimer`]). All of them sit in one ordered
//! structure ([`AttemptDeadlines`]) that one loop serves: a timer task per
//! dispatch cost a spawn, a timer-wheel entry and an abort (a wake and a
//! poll) for every task run.
//!
//! Queue timeouts: one deadline per task submitted or recovered here, in
//! one ordered structure ([`QueueDeadlines`]) that one loop serves, rather
//! than a timer task per submit. A dispatch or an ending removes the task's
//! deadline, so nothing outlives its wait in the queue; a task still queued
//! at its deadline ends as TIMED_OUT (`queue_timeout`). In shared mode a
//! task accepted here may wait in the store's queue instead: its deadline
//! here goes when any server claims or ends it (the store's hint,
//! `Scheduler::left_queue`); one still in that queue at its deadline is
//! timed out there (a hint lost leaves the deadline, which then finds the
//! task no longer queued). A task claimed elsewhere and given back unrun is
//! left to the reaper, which times out every queued task past its stored
//! deadline at each pass (a third of a lease).
use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        Arc, Mutex, MutexGuard, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime},
};

use futures::future::join_all;
use tokio::{sync::Notify, time::Instant};
use tracing::{info, warn};
use uuid::Uuid;

use super::Scheduler;
use crate::{
    model::{Outcome, TaskRecord, TaskState, codes, millis},
    store::QueuedEnding,
    text,
};

/// Most queue timeouts ended at once; more due go round again.
const FIRE_CHUNK: usize = 1024;

/// Queue deadlines, earliest first, keyed by task. Cheap to arm and disarm
/// (a short lock, no task spawned); its loop starts with the first deadline.
#[derive(Default)]
pub(super) struct QueueDeadlines {
    inner: Mutex<Deadlines>,
    served: Served,
}

/// How a set of deadlines reaches the one loop that serves it.
#[derive(Default)]
struct Served {
    /// Woken when a deadline earlier than all others is armed.
    wake: Notify,
    /// Set once the loop is started.
    started: AtomicBool,
}

impl Served {
    /// A deadline was armed; `earliest`: before every other one, so the
    /// loop, asleep until the old earliest, must look again.
    fn armed(&self, earliest: bool) {
        if earliest {
            self.wake.notify_one();
        }
    }
}

#[derive(Default)]
struct Deadlines {
    order: BTreeSet<(Instant, Uuid)>,
    due: HashMap<Uuid, Due>,
}

/// What firing one deadline needs: when, and the message's words.
struct Due {
    at: Instant,
    tool: Arc<str>,
    /// The queue timeout: how long this wait for a worker could last.
    span: Duration,
}

impl QueueDeadlines {
    fn lock(&self) -> MutexGuard<'_, Deadlines> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Arms (or moves) the deadline of `task` to `deadline` (wall clock),
    /// the end of a wait for a worker of `span` (its queue timeout).
    fn arm(&self, task: &TaskRecord, deadline: SystemTime, span: Duration) {
        let wait = deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let at = Instant::now() + wait;
        let earliest = {
            let mut d = self.lock();
            if let Some(old) = d.due.remove(&task.id) {
                d.order.remove(&(old.at, task.id));
            }
            let earliest = d.order.first().is_none_or(|(first, _)| at < *first);
            d.order.insert((at, task.id));
            let tool = task.tool.clone();
            d.due.insert(task.id, Due { at, tool, span });
            earliest
        };
        self.served.armed(earliest);
    }

    /// Removes the deadline of task `id`, if it has one.
    pub(super) fn disarm(&self, id: Uuid) {
        let mut d = self.lock();
        if let Some(old) = d.due.remove(&id) {
            d.order.remove(&(old.at, id));
        }
    }

    /// Takes out up to [`FIRE_CHUNK`] deadlines due at `now`; returns them
    /// and when the next one is due.
    fn take_due(&self, now: Instant) -> (Vec<(Uuid, Due)>, Option<Instant>) {
        let mut d = self.lock();
        let mut fired = Vec::new();
        while fired.len() < FIRE_CHUNK {
            match d.order.first() {
                Some(&(at, id)) if at <= now => {
                    d.order.pop_first();
                    if let Some(due) = d.due.remove(&id) {
                        fired.push((id, due));
                    }
                }
                _ => break,
            }
        }
        let next = d.order.first().map(|(at, _)| *at);
        (fired, next)
    }

    /// Deadlines armed now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().due.len()
    }
}

/// The deadlines of running attempts, earliest first: (when, task, attempt).
#[derive(Default)]
pub(super) struct AttemptDeadlines {
    order: Mutex<BTreeSet<(Instant, Uuid, u32)>>,
    served: Served,
}

/// A running attempt's deadline in [`AttemptDeadlines`]; stopping it takes
/// the deadline out (a deadline already fired is gone, so that is a no-op).
pub struct AttemptTimer {
    deadlines: Arc<AttemptDeadlines>,
    key: (Instant, Uuid, u32),
}

impl AttemptTimer {
    pub(super) fn stop(self) {
        self.deadlines.lock().remove(&self.key);
    }
}

impl AttemptDeadlines {
    fn lock(&self) -> MutexGuard<'_, BTreeSet<(Instant, Uuid, u32)>> {
        self.order.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes out the deadlines due at `now`; returns them and when the next
    /// one is due.
    fn take_due(&self, now: Instant) -> (Vec<(Uuid, u32)>, Option<Instant>) {
        let mut order = self.lock();
        let mut fired = Vec::new();
        while let Some(&(at, id, attempt)) = order.first() {
            if at > now {
                break;
            }
            order.pop_first();
            fired.push((id, attempt));
        }
        (fired, order.first().map(|(at, _, _)| *at))
    }

    /// Deadlines armed now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }
}

impl Scheduler {
    /// Arms the deadline of attempt `attempt` of task `id`, `timeout` from
    /// now.
    pub(super) fn arm_timer(
        self: &Arc<Self>,
        id: Uuid,
        attempt: u32,
        timeout: Duration,
    ) -> AttemptTimer {
        let deadlines = &self.attempt_deadlines;
        let key = (Instant::now() + timeout, id, attempt);
        let earliest = {
            let mut order = deadlines.lock();
            let earliest = order.first().is_none_or(|first| key < *first);
            order.insert(key);
            earliest
        };
        deadlines.served.armed(earliest);
        self.serve(deadlines);
        AttemptTimer {
            deadlines: deadlines.clone(),
            key,
        }
    }

    /// Arms the queue deadline of `task` (at once if it has passed, as
    /// after a restart). At the deadline a task still queued here is timed
    /// out; one no longer here is timed out in the shared store if it is
    /// still queued there.
    pub(super) fn arm_queue_timer(self: &Arc<Self>, task: &TaskRecord, deadline: SystemTime) {
        let span = task.queue_timeout(self.config.default_queue_timeout);
        self.deadlines.arm(task, deadline, span);
        self.serve(&self.deadlines);
    }

    /// Starts the loop that serves `set`, the first time it is armed.
    fn serve<D: DeadlineSet>(self: &Arc<Self>, set: &Arc<D>) {
        let started = &set.served().started;
        if !started.load(Ordering::Acquire) && !started.swap(true, Ordering::AcqRel) {
            tokio::spawn(deadline_loop(
                set.clone(),
                Arc::downgrade(self),
                self.shutdown.clone(),
            ));
        }
    }

    async fn queue_time_out(self: Arc<Self>, id: Uuid, message: String) {
        let outcome = Outcome::error(codes::QUEUE_TIMEOUT, message);
        let ended = {
            let mut st = self.lock();
            match st.task(id).map(|t| t.state) {
                Some(TaskState::Queued) => {
                    Ok(self.take(&mut st, id, TaskState::TimedOut, outcome, None))
                }
                // Running here, or ended: a worker took it, or it is over.
                Some(_) => return,
                None => Err(outcome),
            }
        };
        match ended {
            Ok(Some(ended)) => {
                info!(task_id = %id, "task timed out in the queue");
                self.end(ended).await;
            }
            Ok(None) => {}
            Err(outcome) => self.queue_time_out_elsewhere(id, outcome).await,
        }
    }

    /// A task queued in the shared store (or ended): times it out there if it
    /// is still queued; one whose ending falls back is ended here.
    async fn queue_time_out_elsewhere(self: &Arc<Self>, id: Uuid, outcome: Outcome) {
        match self.backlog.time_out_queued(id, outcome).await {
            Ok(Some(QueuedEnding::Finished(c))) => {
                info!(task_id = %id, "task timed out in the queue");
                self.hub.notify(&c.session, c.seq);
            }
            Ok(Some(QueuedEnding::Handed(handed))) => {
                info!(task_id = %id, "task timed out in the queue");
                self.end_handed(*handed).await;
            }
            Ok(None) => {}
            // Not known to be queued: another server may have claimed or
            // ended it, and a hint of that was lost. If it is still queued,
            // the reaper times it out from its stored deadline.
            Err(e) => warn!(task_id = %id, error = %e,
                "checking whether a task accepted here is still queued at its queue deadline failed; \
                 if it is, the reaper times it out"),
        }
    }

    async fn time_out(self: Arc<Self>, id: Uuid, attempt: u32) {
        let ended = {
            let mut st = self.lock();
            if !st.is_running(id, attempt) {
                return;
            }
            // This deadline is the running attempt's, and has fired.
            st.clear_timer(id);
            let timeout = st.task(id).map(|t| t.timeout).unwrap_or_default();
            let message = format!("no result within {} ms", millis(timeout));
            self.take(
                &mut st,
                id,
                TaskState::TimedOut,
                Outcome::error(codes::TIMEOUT, message),
                Some(codes::TIMEOUT.into()),
            )
        };
        if let Some(ended) = ended {
            info!(task_id = %id, attempt, "task timed out");
            self.end(ended).await;
        }
    }
}

/// A set of deadlines that one [`deadline_loop`] serves.
trait DeadlineSet: Send + Sync + 'static {
    /// What one fired deadline carries.
    type Fired: Send + 'static;
    /// How the set reaches its loop.
    fn served(&self) -> &Served;
    /// Takes out deadlines due at `now`; returns them and when the next one
    /// is due.
    fn take_due(&self, now: Instant) -> (Vec<Self::Fired>, Option<Instant>);
    /// Ends what fired; the loop looks again once this returns.
    fn fire(sched: Arc<Scheduler>, fired: Vec<Self::Fired>) -> impl Future<Output = ()> + Send;
}

impl DeadlineSet for QueueDeadlines {
    type Fired = (Uuid, Due);
    fn served(&self) -> &Served {
        &self.served
    }
    fn take_due(&self, now: Instant) -> (Vec<(Uuid, Due)>, Option<Instant>) {
        QueueDeadlines::take_due(self, now)
    }
    /// Times out the queued tasks due, [`FIRE_CHUNK`] at most per round.
    async fn fire(sched: Arc<Scheduler>, fired: Vec<(Uuid, Due)>) {
        join_all(fired.into_iter().map(|(id, due)| {
            let message = text::queue_timeout_after(&due.tool, due.span);
            sched.clone().queue_time_out(id, message)
        }))
        .await;
    }
}

impl DeadlineSet for AttemptDeadlines {
    type Fired = (Uuid, u32);
    fn served(&self) -> &Served {
        &self.served
    }
    fn take_due(&self, now: Instant) -> (Vec<(Uuid, u32)>, Option<Instant>) {
        AttemptDeadlines::take_due(self, now)
    }
    /// Times out each attempt due in a task of its own: an ending writes to
    /// the store, and the next deadlines must not wait for it.
    async fn fire(sched: Arc<Scheduler>, fired: Vec<(Uuid, u32)>) {
        for (id, attempt) in fired {
            tokio::spawn(sched.clone().time_out(id, attempt));
        }
    }
}

/// Serves `deadlines` until the server stops or the scheduler is gone:
/// sleeps until the earliest, fires what is due.
async fn deadline_loop<D: DeadlineSet>(
    deadlines: Arc<D>,
    sched: Weak<Scheduler>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        // Registered before looking, so an earlier deadline armed meanwhile
        // is not missed.
        let woken = deadlines.served().wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let (fired, next) = deadlines.take_due(Instant::now());
        if !fired.is_empty() {
            let Some(me) = sched.upgrade() else { return };
            D::fire(me, fired).await;
            continue;
        }
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {}
            _ = &mut woken => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
