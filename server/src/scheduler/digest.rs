//! What a session is waiting for (`PendingDigest`): its unfinished tasks
//! from the store with what the live state adds (state, progress), and its
//! acknowledgement counters; `AckCompletions`, monotonic; and the one rule
//! for a seq a client names ([`ClientSeq`]).
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
            .ack_completions(
                session.as_key(),
                up_to_seq,
                self.config.limits.result_budget_bytes as u64,
            )
            .await?;
        ClientSeq::UpTo(up_to_seq).check(session, acked.last_seq)?;
        self.hub.record(|| Activity {
            kind: ActivityKind::Acked { up_to_seq },
            task_id: Uuid::nil(),
            session: session.as_arc().clone(),
            tool: "".into(),
            at: SystemTime::now(),
        });
        Ok(acked)
    }

    /// The seq a `Completions` (`above_acked` false) or `SessionEvents`
    /// (`above_acked` true: never below the session's acknowledged seq)
    /// stream of `session` follows from, given the client's `after_seq`.
    /// Errors: OUT_OF_RANGE when `after_seq` is beyond the session's last
    /// seq as the store has it ([`ClientSeq`]); a store error.
    pub async fn stream_start(
        &self,
        session: &SessionKey,
        after_seq: u64,
        above_acked: bool,
    ) -> Result<u64, Error> {
        if after_seq == 0 && !above_acked {
            // Always within: no store read.
            return Ok(0);
        }
        let seqs = self.store.session_seqs(session.as_key()).await?;
        ClientSeq::After(after_seq).check(session, seqs.last_seq)?;
        Ok(if above_acked {
            after_seq.max(seqs.acked_seq)
        } else {
            after_seq
        })
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

/// A seq a client names in a session's completions. One rule for every RPC
/// that takes one: it is at most the session's last assigned seq, as the
/// store has it (on a shared database, whichever server assigned it; a
/// completion is delivered only once stored, so a seq the client received
/// is always within). Beyond it is a typo or another session's seq: waiting
/// for it would skip real completions numbered up to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientSeq {
    /// `AckCompletionsRequest.up_to_seq`.
    UpTo(u64),
    /// `after_seq` of `CompletionsRequest` and `SessionEventsRequest`.
    After(u64),
}

impl ClientSeq {
    /// `Ok` when within `last_seq`, the last seq `session` has assigned (0
    /// when none: only 0 is within). Errors: OUT_OF_RANGE naming the field,
    /// the value, the session and its last seq, and what to pass instead.
    pub fn check(self, session: &SessionKey, last_seq: u64) -> Result<(), Error> {
        let (field, seq, instead) = match self {
            ClientSeq::UpTo(seq) => ("up_to_seq", seq, "acknowledge only seqs you have received"),
            ClientSeq::After(seq) => (
                "after_seq",
                seq,
                "follow from a seq you have received (0: everything retained)",
            ),
        };
        if seq <= last_seq {
            return Ok(());
        }
        Err(Error::OutOfRange(format!(
            "{field} {seq} is beyond session {}'s last seq, {last_seq}: {instead}",
            crate::error::quote(session.name()),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_seq_past_the_last_seq_is_out_of_range_and_says_so() {
        let session = SessionKey::new("", "s", &crate::config::Limits::default()).unwrap();
        assert!(ClientSeq::After(0).check(&session, 0).is_ok());
        assert!(ClientSeq::After(3).check(&session, 3).is_ok());
        assert!(ClientSeq::UpTo(2).check(&session, 3).is_ok());
        let Err(Error::OutOfRange(m)) = ClientSeq::After(1).check(&session, 0) else {
            panic!("after_seq 1 of a session without completions is past the end");
        };
        assert_eq!(
            m,
            "after_seq 1 is beyond session \"s\"'s last seq, 0: follow from a seq you have \
             received (0: everything retained)"
        );
        let Err(Error::OutOfRange(m)) = ClientSeq::UpTo(u64::MAX).check(&session, 7) else {
            panic!("up_to_seq past the end");
        };
        assert!(
            m.starts_with(&format!(
                "up_to_seq {} is beyond session \"s\"'s last seq, 7:",
                u64::MAX
            )),
            "{m}"
        );
    }
}
