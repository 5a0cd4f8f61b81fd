//! Several servers acting as one, on a store that offers a
//! [`SharedQueue`](crate::store::SharedQueue) (PostgreSQL).
//!
//! The background work of shared mode, beside the core:
//! - the **claimer** takes queued tasks from the store for the tools this
//!   server's workers serve, up to their free slots (each slot counted for
//!   one tool, and held while the claim is in flight), and hands them to
//!   [`Scheduler::adopt`]. It runs when woken (a submit here, a worker with room,
//!   a notification that work was queued elsewhere) and once a second anyway;
//! - the **listener** turns the store's hints into wake-ups: a completion
//!   written by any server wakes this server's streams of that session, a
//!   cancellation through another server stops the worker here, and a task
//!   this server accepted that left the shared queue (claimed, or ended,
//!   anywhere) takes its queue deadline here with it;
//! - **upkeep**, every third of a lease: renews the leases of the tasks held
//!   here (and drops those the store says are no longer ours), reclaims
//!   expired leases of dead servers (one reaper at a time), refreshes the
//!   tools other servers serve and the stored tool registry, and re-reads
//!   the latest seq of every watched session, so a lost notification
//!   delays a delivery and never loses it;
//! - the **publisher** tells the store which tools this server's workers
//!   serve, whenever that changes.
use std::{collections::HashSet, sync::Arc, time::Duration};

use futures::future::join_all;
use tokio::{sync::broadcast::error::RecvError, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    scheduler::{Scheduler, queue::SharedBacklog},
    sessions::SessionHub,
    store::{LostTask, SharedEvent},
};

/// How often the claimer looks at the queue when nothing woke it.
const CLAIM_EVERY: Duration = Duration::from_secs(1);

/// What the shared-mode loops work with.
#[derive(Clone)]
pub struct Cluster {
    pub sched: Arc<Scheduler>,
    pub backlog: Arc<SharedBacklog>,
    pub hub: Arc<SessionHub>,
    /// The loops end when it is cancelled.
    pub shutdown: CancellationToken,
}

impl Cluster {
    /// Starts the shared-mode loops.
    pub fn start(&self) -> Vec<JoinHandle<()>> {
        vec![
            tokio::spawn(self.clone().claimer()),
            tokio::spawn(self.clone().listener()),
            tokio::spawn(self.clone().upkeep()),
            tokio::spawn(self.clone().publisher()),
        ]
    }

    /// On a clean stop: gives held tasks back to the queue and withdraws
    /// this server's tools, so other servers take over at once rather than
    /// after a lease.
    pub async fn stop(&self) {
        let shared = self.backlog.queue();
        let held = self.sched.held();
        let count = held.len();
        if let Err(e) = shared.release(held).await {
            warn!(error = %e, "giving tasks back at stop failed; their leases will expire");
        } else if count > 0 {
            info!(tasks = count, "tasks given back to the shared queue");
        }
        if let Err(e) = shared.withdraw_tools().await {
            warn!(error = %e, "withdrawing this server's tools failed");
        }
    }

    async fn claimer(self) {
        let mut tick = tokio::time::interval(CLAIM_EVERY);
        let mut backoff = Duration::from_millis(50);
        loop {
            tokio::select! {
                _ = self.backlog.claim_wake().notified() => {}
                _ = tick.tick() => {}
                _ = self.shutdown.cancelled() => return,
            }
            if self.claim_pass().await {
                backoff = Duration::from_millis(50);
            } else {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }

    /// Claims queued tasks for this server's free worker slots, in rounds
    /// until no slot is left or the store has no more for the tools with
    /// one. Each round's slots are held from before its claims until the
    /// claimed tasks are queued here, so a submit meanwhile never counts
    /// them too. False when a claim failed.
    async fn claim_pass(&self) -> bool {
        let shared = self.backlog.queue();
        // Tools whose claim came back short: the store has no more of them.
        let mut drained = HashSet::new();
        loop {
            let plan = self.sched.reserve_claims(&drained);
            if plan.is_empty() {
                return true;
            }
            let results = join_all(
                plan.iter()
                    .map(|(tool, room)| shared.claim(tool, room.len())),
            )
            .await;
            let mut claimed = Vec::new();
            let mut rooms = Vec::with_capacity(plan.len());
            let mut failed = false;
            for ((tool, room), result) in plan.into_iter().zip(results) {
                match result {
                    Ok(tasks) => {
                        if tasks.len() < room.len() {
                            drained.insert(tool);
                        }
                        claimed.extend(tasks);
                    }
                    Err(e) => {
                        warn!(tenant = %crate::logs::field(crate::tenant::of(&tool)), tool = %crate::logs::field(crate::tenant::strip(&tool)), error = %e, "claiming queued tasks failed");
                        failed = true;
                    }
                }
                rooms.push(room);
            }
            if !claimed.is_empty() {
                debug!(tasks = claimed.len(), "claimed queued tasks");
            }
            self.sched.adopt(claimed, rooms).await;
            self.backlog.claims_settled();
            if failed {
                return false;
            }
        }
    }

    async fn listener(self) {
        let mut events = self.backlog.queue().events();
        loop {
            let event = tokio::select! {
                e = events.recv() => e,
                _ = self.shutdown.cancelled() => return,
            };
            match event {
                Ok(event) => self.on_event(event).await,
                Err(RecvError::Lagged(_)) => self.on_event(SharedEvent::Resync).await,
                Err(RecvError::Closed) => return,
            }
        }
    }

    /// What the listener does with one hint from the store.
    pub(crate) async fn on_event(&self, event: SharedEvent) {
        match event {
            SharedEvent::TasksQueued { tool } => {
                if self.sched.serves(&tool) {
                    self.backlog.claim_wake().notify_one();
                }
            }
            SharedEvent::Completed { session, seq } => self.hub.notify(&session, seq),
            SharedEvent::Cancelled { task_id, reason } => {
                self.sched.cancelled_elsewhere(task_id, &reason)
            }
            SharedEvent::LeftQueue { task_ids } => self.sched.left_queue(&task_ids),
            SharedEvent::ToolsChanged => self.refresh_tools().await,
            // Hints may have been missed: check everything.
            SharedEvent::Resync => {
                self.backlog.claim_wake().notify_one();
                self.refresh_tools().await;
                self.check_sessions().await;
            }
        }
    }

    async fn upkeep(self) {
        let shared = self.backlog.queue();
        let period = shared.lease() / 3;
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.shutdown.cancelled() => return,
            }
            let Some(()) = self.renew(period).await else {
                return;
            };
            match shared.reap(self.sched.config().max_attempts).await {
                Ok(reaped) => {
                    if reaped.count > 0 {
                        debug!(tasks = reaped.count, "reclaimed expired leases");
                    }
                    // Endings that fall back end here, as on one server.
                    for handed in reaped.handed {
                        self.sched.end_handed(handed).await;
                    }
                }
                Err(e) => warn!(error = %e, "reclaiming expired leases failed"),
            }
            self.refresh_tools().await;
            self.check_sessions().await;
        }
    }

    /// Renews the leases of the tasks held here, and drops those the store
    /// says are no longer ours (telling their workers why). A failed renewal
    /// is tried again soon (100 ms, doubling) for up to `within`, not a
    /// whole period later: a server whose store comes back renews at once,
    /// well within the lease the other servers' reapers wait after their
    /// own return. `None` when shutting down.
    async fn renew(&self, within: std::time::Duration) -> Option<()> {
        let shared = self.backlog.queue();
        let until = tokio::time::Instant::now() + within;
        let mut backoff = Duration::from_millis(100);
        loop {
            let held = self.sched.held();
            match shared.renew(&held).await {
                Ok(still) => {
                    let still: HashSet<_> = still.into_iter().collect();
                    let lost: Vec<_> = held.into_iter().filter(|id| !still.contains(id)).collect();
                    if !lost.is_empty() {
                        let why = match shared.lost(&lost).await {
                            Ok(why) => why,
                            Err(e) => {
                                warn!(error = %e, "asking why tasks are no longer held here failed");
                                lost.iter().map(|id| (*id, LostTask::Gone)).collect()
                            }
                        };
                        self.sched.forget(&why);
                    }
                    return Some(());
                }
                Err(e) => warn!(error = %e, "renewing leases failed"),
            }
            let now = tokio::time::Instant::now();
            if now + backoff >= until {
                return Some(());
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.shutdown.cancelled() => return None,
            }
            backoff = (backoff * 2).min(within);
        }
    }

    async fn publisher(self) {
        let shared = self.backlog.queue();
        loop {
            tokio::select! {
                _ = self.backlog.tools_wake().notified() => {}
                _ = self.shutdown.cancelled() => return,
            }
            let mut backoff = Duration::from_millis(100);
            while let Err(e) = self.sched.publish_tools(shared).await {
                if !e.is_transient() {
                    tracing::error!(error = %e, "this server's tools cannot be published: the store refuses them");
                    break;
                }
                warn!(error = %e, "publishing this server's tools failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = self.shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }

    async fn refresh_tools(&self) {
        // Definitions any server stored first, so a tool whose last worker
        // left another server stays known here.
        self.sched.learn_stored_tools().await;
        match self.backlog.queue().remote_tools().await {
            Ok(tools) => self.sched.set_remote_tools(tools),
            Err(e) => warn!(error = %e, "reading other servers' tools failed"),
        }
    }

    /// Wakes every watched session's streams up to its latest stored seq.
    async fn check_sessions(&self) {
        let watched = self.hub.watched_sessions();
        match self.backlog.queue().last_seqs(&watched).await {
            Ok(seqs) => {
                for (session, seq) in seqs {
                    self.hub.notify(&session, seq);
                }
            }
            Err(e) => warn!(error = %e, "checking watched sessions failed"),
        }
    }
}
