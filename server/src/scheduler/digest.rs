//! What a session is waiting for (`PendingDigest`): its unfinished tasks
//! from the store with what the live state adds (state, progress), and its
//! acknowledgement counters; `AckCompletions`, monotonic.
use std::time::SystemTime;

use uuid::Uuid;

use super::{Scheduler, views::TaskView};
use crate::{
    error::Error,
    model::{SessionKey, TaskState},
    sessions::{Activity, ActivityKind},
    store::{Acked, SessionSeqs, TaskQuery},
};

/// Most tasks a digest lists; more are counted.
pub const MAX_DIGEST_TASKS: usize = 100;

/// A session's pending work and acknowledgement counters.
#[derive(Debug, Clone)]
pub struct Digest {
    /// Its QUEUED and RUNNING tasks, oldest first, at most
    /// [`MAX_DIGEST_TASKS`].
    pub pending: Vec<TaskView>,
    /// Its unfinished tasks in all (`pending` may list fewer).
    pub pending_count: u64,
    pub seqs: SessionSeqs,
}

impl Scheduler {
    /// Acknowledges a session's completions up to `up_to_seq`: releases
    /// them and raises its acknowledged seq (never lowers it). Errors:
    /// OUT_OF_RANGE beyond the session's last seq (nothing changes).
    pub async fn ack_completions(
        &self,
        session: &SessionKey,
        up_to_seq: u64,
    ) -> Result<Acked, Error> {
        let acked = self
            .store
            .ack_completions(session.as_key(), up_to_seq)
            .await?;
        if up_to_seq > acked.last_seq {
            return Err(Error::OutOfRange(format!(
                "up_to_seq {up_to_seq} is beyond session {}'s last seq, {}: acknowledge only \
                 seqs you have received",
                crate::error::quote(session.name()),
                acked.last_seq
            )));
        }
        self.hub.record(|| Activity {
            kind: ActivityKind::Acked { up_to_seq },
            task_id: Uuid::nil(),
            session: session.as_arc().clone(),
            tool: "".into(),
            at: SystemTime::now(),
        });
        Ok(acked)
    }

    /// A session's last and acknowledged seqs, and its unacknowledged count.
    pub async fn session_seqs(&self, session: &SessionKey) -> Result<SessionSeqs, Error> {
        Ok(self.store.session_seqs(session.as_key()).await?)
    }

    /// What `session` is waiting for.
    pub async fn digest(&self, session: &SessionKey) -> Result<Digest, Error> {
        let query = TaskQuery {
            key_prefix: None,
            session: Some(session.as_key().to_string()),
            tool: None,
            states: vec![TaskState::Queued, TaskState::Running],
            after: None,
            newest_first: false,
            limit: MAX_DIGEST_TASKS,
            fallback_runs: false,
        };
        let seqs = self.store.session_seqs(session.as_key()).await?;
        let mut pending = self.list_tasks(&query).await?;
        // A task that ended between the read and the live state's view.
        pending.retain(|v| !v.task.state.is_final());
        // Every unfinished task in the store (all servers' on a shared one),
        // not the listing, which stops at MAX_DIGEST_TASKS; what is live
        // here but not yet stored, or listed, never counts less.
        let stored = self.store.count_tasks(&query).await?;
        let here = self.lock().pending(session.as_key()) as u64;
        let pending_count = stored.max(here).max(pending.len() as u64);
        Ok(Digest {
            pending,
            pending_count,
            seqs,
        })
    }
}
