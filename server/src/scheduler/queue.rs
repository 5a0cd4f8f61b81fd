//! Where queued work waits.
//!
//! Each tool's queue here is a [`FairQueue`]: it serves sessions in turn, so
//! one session with 10,000 queued tasks does not starve another's single
//! task. Whether a new task waits here at all is the [`Backlog`]'s call: a
//! [`LocalBacklog`] keeps every task in this server's memory; a
//! [`SharedBacklog`] (several servers on one database) keeps queued tasks in
//! the store, where [`crate::cluster`] claims them for this server's workers,
//! and keeps here only a task a local worker can take at once.
use std::{
    collections::{HashMap, VecDeque, hash_map::Entry},
    sync::Arc,
};

use async_trait::async_trait;
use tokio::sync::{Notify, watch};
use tracing::{debug, warn};
use uuid::Uuid;

use crate::{
    model::{CompletionRecord, Outcome, TaskState},
    store::{QueuedEnding, SharedQueue, SharedStore, StoreError},
};

/// Where a new task waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// In this server's queue, stored in this state.
    Here(TaskState),
    /// In the store's shared queue, for whichever server claims it.
    Elsewhere,
}

/// The scheduler's queue seam: the one place single-server and shared mode
/// differ.
#[async_trait]
pub trait Backlog: Send + Sync {
    /// Whether a restarted server takes up the unfinished tasks the store
    /// holds (shared: no, expired leases are reclaimed by the reaper).
    fn recovers(&self) -> bool;

    /// Whether the tasks still held here when the server stops go back to
    /// the shared queue at once, for another server (shared: yes, see
    /// `Cluster::stop`), rather than wait for the next start.
    fn gives_back_at_stop(&self) -> bool;

    /// Where a new task goes; `room_here` says whether a local worker could
    /// take it now, holding that room if so (asked only when it matters).
    fn place(&self, room_here: &mut dyn FnMut() -> bool) -> Placement;

    /// A task was stored in the shared queue, or a worker here has room and
    /// nothing queued here.
    fn wants_work(&self);

    /// The tools served here changed.
    fn tools_changed(&self);

    /// Shared mode: changes once the round of claims in flight now has
    /// given back the room it held (see [`SharedBacklog::claims_settled`]);
    /// `None` for a single server.
    fn claim_rounds(&self) -> Option<watch::Receiver<u64>>;

    /// Whether tasks queued here that no local worker serves any more go
    /// back to the store (see [`Self::give_back`]).
    fn hands_back(&self) -> bool;

    /// Gives tasks taken out of the live state back to the shared queue.
    async fn give_back(&self, ids: Vec<Uuid>);

    /// Cancels a task that is not live here, with the client's `reason`;
    /// `None` when there is no such unfinished task elsewhere.
    async fn cancel_elsewhere(
        &self,
        id: Uuid,
        reason: &str,
    ) -> Result<Option<CompletionRecord>, StoreError>;

    /// Tells the server holding task `id` (not live here), if any, that it
    /// was cancelled with `reason`; best effort (its lease renewal finds
    /// out anyway).
    async fn tell_cancelled(&self, id: Uuid, reason: &str);

    /// Ends a task that is not live here as TIMED_OUT with `outcome` if it
    /// is still queued (or hands it here, when that ending falls back);
    /// `None` otherwise.
    async fn time_out_queued(
        &self,
        id: Uuid,
        outcome: Outcome,
    ) -> Result<Option<QueuedEnding>, StoreError>;
}

/// Single-server mode: every queued task waits in memory here.
pub struct LocalBacklog;

#[async_trait]
impl Backlog for LocalBacklog {
    fn recovers(&self) -> bool {
        true
    }
    fn gives_back_at_stop(&self) -> bool {
        false
    }
    fn place(&self, _: &mut dyn FnMut() -> bool) -> Placement {
        Placement::Here(TaskState::Queued)
    }
    fn wants_work(&self) {}
    fn tools_changed(&self) {}
    fn claim_rounds(&self) -> Option<watch::Receiver<u64>> {
        None
    }
    fn hands_back(&self) -> bool {
        false
    }
    async fn give_back(&self, _: Vec<Uuid>) {}
    async fn cancel_elsewhere(
        &self,
        _: Uuid,
        _: &str,
    ) -> Result<Option<CompletionRecord>, StoreError> {
        Ok(None)
    }
    async fn tell_cancelled(&self, _: Uuid, _: &str) {}
    async fn time_out_queued(
        &self,
        _: Uuid,
        _: Outcome,
    ) -> Result<Option<QueuedEnding>, StoreError> {
        Ok(None)
    }
}

/// Shared mode: queued tasks wait in the store's [`SharedQueue`].
pub struct SharedBacklog {
    store: SharedStore,
    /// Wakes the claimer (a worker has room, work was queued).
    claim_wake: Notify,
    /// Wakes the publisher of this server's tools.
    tools_wake: Notify,
    /// Rounds of claims settled, for submits waiting on the room one held.
    claim_rounds: watch::Sender<u64>,
}

impl SharedBacklog {
    /// `None` when `store` offers no shared queue.
    pub fn new(store: SharedStore) -> Option<Arc<Self>> {
        store.shared()?;
        Some(Arc::new(Self {
            store,
            claim_wake: Notify::new(),
            tools_wake: Notify::new(),
            claim_rounds: watch::Sender::new(0),
        }))
    }

    pub fn queue(&self) -> &dyn SharedQueue {
        self.store
            .shared()
            .expect("a SharedBacklog's store has a shared queue")
    }

    pub fn claim_wake(&self) -> &Notify {
        &self.claim_wake
    }

    pub fn tools_wake(&self) -> &Notify {
        &self.tools_wake
    }

    /// A round of claims gave back the room it held: submits waiting on it
    /// decide again.
    pub fn claims_settled(&self) {
        self.claim_rounds.send_modify(|n| *n = n.wrapping_add(1));
    }
}

#[async_trait]
impl Backlog for SharedBacklog {
    fn recovers(&self) -> bool {
        false
    }
    fn gives_back_at_stop(&self) -> bool {
        true
    }
    fn place(&self, room_here: &mut dyn FnMut() -> bool) -> Placement {
        // A task a worker here can take at once is stored as claimed by this
        // server (`Running` at insert) and dispatched here, with no trip
        // through the shared queue.
        if room_here() {
            Placement::Here(TaskState::Running)
        } else {
            Placement::Elsewhere
        }
    }
    fn wants_work(&self) {
        self.claim_wake.notify_one();
    }
    fn tools_changed(&self) {
        self.tools_wake.notify_one();
    }
    fn claim_rounds(&self) -> Option<watch::Receiver<u64>> {
        Some(self.claim_rounds.subscribe())
    }
    fn hands_back(&self) -> bool {
        true
    }
    async fn give_back(&self, ids: Vec<Uuid>) {
        if ids.is_empty() {
            return;
        }
        debug!(
            tasks = ids.len(),
            "claimed tasks given back to the shared queue"
        );
        if let Err(e) = self.queue().release(ids).await {
            // Their leases expire and the reaper queues them again.
            warn!(error = %e, "giving tasks back to the shared queue failed");
        }
    }
    async fn cancel_elsewhere(
        &self,
        id: Uuid,
        reason: &str,
    ) -> Result<Option<CompletionRecord>, StoreError> {
        self.queue().cancel(id, reason).await
    }
    async fn tell_cancelled(&self, id: Uuid, reason: &str) {
        if let Err(e) = self.queue().tell_cancelled(id, reason).await {
            warn!(task_id = %id, error = %e, "telling a task's server of its cancel failed; it finds out at its next lease renewal");
        }
    }
    async fn time_out_queued(
        &self,
        id: Uuid,
        outcome: Outcome,
    ) -> Result<Option<QueuedEnding>, StoreError> {
        self.queue().time_out_queued(id, outcome).await
    }
}

/// Round robin over sessions, FIFO within a session.
#[derive(Debug, Default)]
pub struct FairQueue {
    by_session: HashMap<Arc<str>, VecDeque<Uuid>>,
    /// Sessions with at least one queued task, in serving order.
    turn: VecDeque<Arc<str>>,
    len: usize,
}

impl FairQueue {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues a task behind the session's others.
    pub fn push_back(&mut self, session: &Arc<str>, id: Uuid) {
        self.queue_of(session).push_back(id);
        self.len += 1;
    }

    /// Queues a task ahead of the session's others: a retry keeps its place.
    pub fn push_front(&mut self, session: &Arc<str>, id: Uuid) {
        self.queue_of(session).push_front(id);
        self.len += 1;
    }

    /// The next task: the head of the session whose turn it is.
    pub fn pop(&mut self) -> Option<(Arc<str>, Uuid)> {
        let session = self.turn.pop_front()?;
        let queue = self.by_session.get_mut(&session)?;
        let id = queue.pop_front()?;
        self.len -= 1;
        if queue.is_empty() {
            self.by_session.remove(&session);
        } else {
            self.turn.push_back(session.clone());
        }
        Some((session, id))
    }

    /// Removes a queued task; false when it is not queued here.
    pub fn remove(&mut self, session: &str, id: Uuid) -> bool {
        let Some(queue) = self.by_session.get_mut(session) else {
            return false;
        };
        let Some(pos) = queue.iter().position(|t| *t == id) else {
            return false;
        };
        queue.remove(pos);
        self.len -= 1;
        if queue.is_empty() {
            self.by_session.remove(session);
            self.turn.retain(|s| &**s != session);
        }
        true
    }

    fn queue_of(&mut self, session: &Arc<str>) -> &mut VecDeque<Uuid> {
        match self.by_session.entry(session.clone()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                self.turn.push_back(session.clone());
                e.insert(VecDeque::new())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|_| Uuid::new_v4()).collect()
    }

    #[test]
    fn sessions_take_turns() {
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let many = ids(1000);
        let one = Uuid::new_v4();
        let mut q = FairQueue::default();
        for id in &many {
            q.push_back(&a, *id);
        }
        q.push_back(&b, one);
        assert_eq!(q.pop().unwrap().1, many[0]);
        assert_eq!(q.pop().unwrap(), (b, one), "b's only task goes second");
        assert_eq!(q.pop().unwrap().1, many[1]);
        assert_eq!(q.len(), 998);
    }

    #[test]
    fn retry_goes_first_and_remove_keeps_order() {
        let s: Arc<str> = "s".into();
        let t = ids(3);
        let mut q = FairQueue::default();
        q.push_back(&s, t[0]);
        q.push_back(&s, t[1]);
        q.push_front(&s, t[2]);
        assert!(q.remove("s", t[0]));
        assert!(!q.remove("s", t[0]));
        assert_eq!(q.pop().unwrap().1, t[2]);
        assert_eq!(q.pop().unwrap().1, t[1]);
        assert!(q.pop().is_none());
        assert!(q.is_empty());
    }

    #[test]
    fn removing_a_sessions_last_task_drops_its_turn() {
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let t = ids(2);
        let mut q = FairQueue::default();
        q.push_back(&a, t[0]);
        q.push_back(&b, t[1]);
        assert!(q.remove("a", t[0]));
        assert_eq!(q.pop().unwrap(), (b, t[1]));
        assert!(q.pop().is_none());
    }
}
