//! Fallbacks: a call that ends FAILED or TIMED_OUT (after its retries) is
//! answered by its fallback, one hop only, never after a cancel.
//!
//! **A last-good result** is looked up in the store when the call ends
//! ([`crate::store::Store::last_good`]: the session's latest retained
//! SUCCEEDED task of the same tool and canonical arguments, itself not
//! answered by a fallback, at most the given age) and finishes the call at
//! once: SUCCEEDED with that result, [`Answered`] saying how old it is.
//!
//! **A fallback tool** runs as a *fallback run*: a task of its own (same
//! session and arguments, the fallback tool, the call's budget, no dedup
//! and no fallback of its own, so no chains) whose row links to the call
//! with how the call ended ([`FallbackFor`]). The call stays unfinished in
//! the store, parked ([`crate::store::Store::park`]), until the run ends,
//! however it ends; the run's ending then finishes the call with the run's
//! outcome and [`Answered`], and deletes the run's row in the same store
//! write. So each call has one completion, with its own task_id, and a run
//! never takes a completion of its own. Both rows are durable: a restart
//! takes the run up again (recovery skips a call whose run is stored) and
//! any server of a shared store may run it. A crash between the call's
//! ending and the run's insert runs the call again, as any crash does.
use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use tracing::{info, warn};
use uuid::Uuid;

use super::{Scheduler, admission, state::Ended};
use crate::{
    error::Error,
    model::{
        Answered, CallOptions, Fallback, FallbackFor, Finish, FinishNotes, Outcome, Primary,
        TaskRecord, TaskState, ToolKey, call, codes,
    },
    store::{Cursor, Handed, TaskQuery},
};

/// What becomes of an ending once fallbacks are considered.
pub(super) enum Fallen {
    /// Write this ending (perhaps the call's, rewritten by a fallback).
    Finish(Box<Ended>),
    /// A fallback run now answers for the call: nothing to write yet.
    Parked(Box<TaskRecord>),
}

impl Scheduler {
    /// Applies the task's fallback to its ending, if it has one that
    /// applies; a fallback run's ending becomes its call's.
    pub(super) async fn fall_back(self: &Arc<Self>, ended: Ended) -> Fallen {
        if let Some(link) = ended.task.call.fallback_for.clone() {
            return Fallen::Finish(Box::new(answer_call(ended, *link)));
        }
        let state = ended.finish.state;
        let Some(fallback) = ended.task.call.fallback.clone() else {
            return Fallen::Finish(Box::new(ended));
        };
        if !matches!(state, TaskState::Failed | TaskState::TimedOut) {
            return Fallen::Finish(Box::new(ended));
        }
        match fallback {
            Fallback::LastGood { max_age_ms } => {
                Fallen::Finish(Box::new(self.last_good(ended, max_age_ms).await))
            }
            Fallback::Tool(tool) => self.run_fallback(ended, tool).await,
        }
    }

    /// The call answered by its last good result, if one is young enough.
    async fn last_good(&self, mut ended: Ended, max_age_ms: u64) -> Ended {
        let task = &ended.task;
        let now = ended.finish.finished_at;
        let not_before = now
            .checked_sub(Duration::from_millis(max_age_ms))
            .unwrap_or(std::time::UNIX_EPOCH);
        let found = self
            .store
            .last_good(&task.session, &task.tool, &task.call.args_hash, not_before)
            .await;
        let earlier = match found {
            Ok(Some(t)) => t,
            Ok(None) => return ended,
            Err(e) => {
                warn!(task_id = %task.id, error = %e, "looking up a last good result failed: the call ends as it is");
                return ended;
            }
        };
        let (Some(Outcome::Result(json)), Some(at)) = (earlier.outcome, earlier.finished_at) else {
            return ended;
        };
        info!(task_id = %task.id, answered_by = %earlier.id, "a last good result answers the call");
        let primary = primary(&ended);
        ended.finish.notes.answered_by = Some(Box::new(Answered {
            primary,
            tool: String::new(),
            last_good_age_ms: call::age_ms(at, now),
            task_id: earlier.id,
        }));
        ended.finish.state = TaskState::Succeeded;
        ended.finish.outcome = Outcome::Result(json);
        ended
    }

    /// Starts the fallback run of the call; the call ends as it is when the
    /// run cannot start (the tool is gone, the session is full). A drain
    /// does not stop it (see [`admission::check_room`]).
    async fn run_fallback(self: &Arc<Self>, ended: Ended, tool: Arc<str>) -> Fallen {
        let task = &ended.task;
        let spec = match admission::tool_spec(&self.lock(), &ToolKey::from_key(tool)) {
            Ok(spec) => spec,
            Err(e) => {
                warn!(task_id = %task.id, error = %e, "the fallback tool is unknown now: the call ends as it is");
                return Fallen::Finish(Box::new(without_fallback(ended, &e)));
            }
        };
        let run = TaskRecord {
            id: crate::model::new_task_id(),
            session: task.session.clone(),
            tool: spec.name.as_arc().clone(),
            arguments: task.arguments.clone(),
            timeout: spec.timeout.unwrap_or(self.config.default_timeout),
            retry_of: None,
            queue_deadline: Some(
                ended.finish.finished_at
                    + spec
                        .queue_timeout
                        .unwrap_or(self.config.default_queue_timeout),
            ),
            idempotency_key: None,
            created_at: ended.finish.finished_at,
            state: TaskState::Queued,
            attempts: 0,
            started_at: None,
            finished_at: None,
            outcome: None,
            seq: 0,
            // Its ending finishes the call, whose policy it keeps.
            delivery: task.delivery,
            call: CallOptions {
                result_budget: task.call.result_budget,
                args_hash: task.call.args_hash,
                joinable: false,
                fallback: None,
                fallback_for: Some(Box::new(FallbackFor {
                    parent: task.id,
                    primary: primary(&ended),
                })),
            },
            notes: FinishNotes::default(),
        };
        match self.admit(run).await {
            Ok((run, _)) => {
                info!(task_id = %task.id, fallback_task_id = %run.id, "the call failed: its fallback tool runs");
                if let Err(e) = self.store.park(task.id).await {
                    warn!(task_id = %task.id, error = %e, "parking a call for its fallback failed");
                }
                let mut parked = ended.task;
                parked.state = TaskState::Running;
                Fallen::Parked(Box::new(parked))
            }
            Err(e) => {
                warn!(task_id = %task.id, error = %e, "the fallback run could not start: the call ends as it is");
                Fallen::Finish(Box::new(without_fallback(ended, &e)))
            }
        }
    }
}

impl Scheduler {
    /// Ends a task a shared store handed to this server because its ending
    /// falls back (failed by the reaper after its last attempt, or timed out
    /// in the shared queue): through [`Self::end`], as every ending here.
    pub async fn end_handed(self: &Arc<Self>, handed: Handed) -> TaskRecord {
        let Handed { task, finish } = handed;
        self.finisher.started();
        self.end(Ended { task, finish }).await
    }

    /// Cancels a call parked for its fallback run, or a fallback run (by
    /// either ID): the run stops (its worker is told, here or, in shared
    /// mode, by the server holding it, with the cancel's reason) and the
    /// call completes CANCELLED, with FallbackUsed naming the run.
    /// `None` when `id` is neither (or not stored).
    /// `why` is the completion's message, `tell` the worker's reason.
    pub(super) async fn cancel_fallback(
        self: &Arc<Self>,
        id: Uuid,
        why: &str,
        tell: &Arc<str>,
    ) -> Result<Option<TaskRecord>, Error> {
        let Some(task) = self.store.get_task(id).await? else {
            return Ok(None);
        };
        if task.state.is_final() {
            return Ok(None);
        }
        let run = match (&task.call.fallback_for, &task.call.fallback) {
            (Some(_), _) => task,
            (None, Some(Fallback::Tool(_))) => match self.run_of(&task).await? {
                Some(run) => run,
                None => return Ok(None),
            },
            _ => return Ok(None),
        };
        let Some(link) = run.call.fallback_for.clone() else {
            return Ok(None);
        };
        let outcome = Outcome::error(codes::CANCELLED, why);
        let live = {
            let mut st = self.lock();
            self.take(
                &mut st,
                run.id,
                TaskState::Cancelled,
                outcome.clone(),
                Some(tell.clone()),
            )
        };
        let here = live.is_some();
        let ended = live.unwrap_or_else(|| {
            self.finisher.started();
            Ended {
                finish: Finish {
                    task_id: run.id,
                    state: TaskState::Cancelled,
                    outcome,
                    attempts: run.attempts,
                    finished_at: SystemTime::now(),
                    notes: FinishNotes::default(),
                },
                task: run,
            }
        });
        info!(task_id = %link.parent, fallback_task_id = %ended.task.id, "call cancelled during its fallback run");
        let run_id = ended.task.id;
        self.end_detached(ended).await?;
        if !here {
            // Another server may run it: its worker hears why now, not at
            // that server's next lease renewal.
            self.backlog
                .tell_cancelled(run_id, crate::text::cancel_reason(why))
                .await;
        }
        Ok(self.store.get_task(link.parent).await?)
    }

    /// The unfinished fallback run of a parked call, found among its
    /// session's unfinished tasks created after it.
    async fn run_of(&self, call: &TaskRecord) -> Result<Option<TaskRecord>, Error> {
        let query = TaskQuery {
            key_prefix: None,
            session: Some(call.session.to_string()),
            tool: None,
            states: vec![TaskState::Queued, TaskState::Running],
            after: Some(Cursor::of(call)),
            newest_first: false,
            limit: self.config.limits.max_pending_per_session,
            fallback_runs: true,
        };
        let tasks = self.store.list_tasks(&query).await?;
        Ok(tasks.into_iter().find(|t| {
            t.call
                .fallback_for
                .as_ref()
                .is_some_and(|f| f.parent == call.id)
        }))
    }
}

/// How the call ended by itself.
fn primary(ended: &Ended) -> Primary {
    let (code, message) = match &ended.finish.outcome {
        Outcome::Error { code, message } => (code.clone(), message.clone()),
        Outcome::Result(_) => (String::new(), String::new()),
    };
    Primary {
        state: ended.finish.state,
        code,
        message,
        attempts: ended.finish.attempts,
    }
}

/// A fallback run's ending as its call's ([`call::run_ending_as_call`]).
fn answer_call(ended: Ended, link: FallbackFor) -> Ended {
    let Ended { task, finish } = ended;
    let call = call::run_ending_as_call(&task, link, finish);
    Ended { task, finish: call }
}

/// A call whose fallback tool could not run ends with its own failure, and
/// its error says so and why (`why`, cut to a few hundred bytes): the agent
/// and its model learn the fallback was not tried, not just the server's log.
fn without_fallback(mut ended: Ended, why: &Error) -> Ended {
    let tool = match &ended.task.call.fallback {
        Some(Fallback::Tool(key)) => ToolKey::from_key(key.clone()).name().to_string(),
        _ => return ended,
    };
    if let Outcome::Error { message, .. } = &mut ended.finish.outcome {
        let why = why.to_string();
        message.push_str(&format!(
            " (its fallback tool `{tool}` did not run: {})",
            crate::error::cut(&why, 2 * crate::error::QUOTE_BYTES)
        ));
    }
    ended
}
