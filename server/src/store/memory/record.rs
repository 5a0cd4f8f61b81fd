//! The memory store's form of a task: a [`TaskRecord`] without its id (the
//! map's key) and with what most tasks never set boxed apart: 160 bytes
//! where a `TaskRecord` takes 376. While a task is queued the scheduler
//! holds a full `TaskRecord` of it too, so this is what the store adds per
//! queued task (issue 20: ≤ 1 KiB per queued task, server-wide).
use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use uuid::Uuid;

use crate::model::{
    ArgsHash, CallOptions, Delivery, Fallback, FallbackFor, Finish, FinishNotes, Outcome,
    TaskRecord, TaskState,
};

/// One stored task; [`Self::to_record`] gives it back whole.
pub(super) struct Stored {
    pub session: Arc<str>,
    pub tool: Arc<str>,
    arguments: Arc<str>,
    pub idempotency_key: Option<Arc<str>>,
    timeout: Duration,
    queue_deadline: Option<SystemTime>,
    pub created_at: SystemTime,
    started_at: Option<SystemTime>,
    /// `call.result_budget`.
    result_budget: u64,
    attempts: u32,
    pub state: TaskState,
    delivery: Delivery,
    /// `call.joinable`.
    pub joinable: bool,
    /// `None` while every field of [`Rare`] is unset (most calls).
    rare: Option<Box<Rare>>,
    /// `None` while unfinished (and every field of [`Ended`] unset).
    ended: Option<Box<Ended>>,
}

/// Call options only joins, fallbacks and retries set.
#[derive(Default)]
struct Rare {
    args_hash: ArgsHash,
    fallback: Option<Fallback>,
    fallback_for: Option<Box<FallbackFor>>,
    retry_of: Option<Uuid>,
}

/// What a finish sets.
#[derive(Default)]
struct Ended {
    finished_at: Option<SystemTime>,
    outcome: Option<Outcome>,
    seq: u64,
    notes: FinishNotes,
}

impl Stored {
    pub fn new(task: &TaskRecord) -> Self {
        let call = &task.call;
        let rare = (call.args_hash != ArgsHash::default()
            || call.fallback.is_some()
            || call.fallback_for.is_some()
            || task.retry_of.is_some())
        .then(|| {
            Box::new(Rare {
                args_hash: call.args_hash,
                fallback: call.fallback.clone(),
                fallback_for: call.fallback_for.clone(),
                retry_of: task.retry_of,
            })
        });
        let ended = (task.finished_at.is_some()
            || task.outcome.is_some()
            || task.seq != 0
            || task.notes != FinishNotes::default())
        .then(|| {
            Box::new(Ended {
                finished_at: task.finished_at,
                outcome: task.outcome.clone(),
                seq: task.seq,
                notes: task.notes.clone(),
            })
        });
        Self {
            session: task.session.clone(),
            tool: task.tool.clone(),
            arguments: task.arguments.clone(),
            idempotency_key: task.idempotency_key.clone(),
            timeout: task.timeout,
            queue_deadline: task.queue_deadline,
            created_at: task.created_at,
            started_at: task.started_at,
            result_budget: call.result_budget,
            attempts: task.attempts,
            state: task.state,
            delivery: task.delivery,
            joinable: call.joinable,
            rare,
            ended,
        }
    }

    /// The task whole, as it was stored and updated since.
    pub fn to_record(&self, id: Uuid) -> TaskRecord {
        let rare = self.rare.as_deref();
        let ended = self.ended.as_deref();
        TaskRecord {
            id,
            session: self.session.clone(),
            tool: self.tool.clone(),
            arguments: self.arguments.clone(),
            timeout: self.timeout,
            queue_deadline: self.queue_deadline,
            idempotency_key: self.idempotency_key.clone(),
            created_at: self.created_at,
            state: self.state,
            attempts: self.attempts,
            started_at: self.started_at,
            finished_at: ended.and_then(|e| e.finished_at),
            outcome: ended.and_then(|e| e.outcome.clone()),
            seq: ended.map_or(0, |e| e.seq),
            delivery: self.delivery,
            call: CallOptions {
                result_budget: self.result_budget,
                args_hash: self.args_hash(),
                joinable: self.joinable,
                fallback: rare.and_then(|r| r.fallback.clone()),
                fallback_for: rare.and_then(|r| r.fallback_for.clone()),
            },
            notes: ended.map(|e| e.notes.clone()).unwrap_or_default(),
            retry_of: rare.and_then(|r| r.retry_of),
        }
    }

    pub fn args_hash(&self) -> ArgsHash {
        self.rare.as_ref().map(|r| r.args_hash).unwrap_or_default()
    }

    /// [`CallOptions::asks_last_good`].
    pub fn asks_last_good(&self) -> bool {
        self.rare
            .as_ref()
            .is_some_and(|r| matches!(r.fallback, Some(Fallback::LastGood { .. })))
    }

    /// Whether it is a fallback run (`call.fallback_for` set).
    pub fn is_run(&self) -> bool {
        self.rare.as_ref().is_some_and(|r| r.fallback_for.is_some())
    }

    pub fn finished_at(&self) -> Option<SystemTime> {
        self.ended.as_ref().and_then(|e| e.finished_at)
    }

    /// Whether a fallback answered it (`notes.answered_by` set).
    pub fn answered(&self) -> bool {
        self.ended
            .as_ref()
            .is_some_and(|e| e.notes.answered_by.is_some())
    }

    /// Its result's length in bytes, if it has a result.
    pub fn result_len(&self) -> Option<usize> {
        match self.ended.as_ref()?.outcome.as_ref()? {
            Outcome::Result(json) => Some(json.len()),
            Outcome::Error { .. } => None,
        }
    }

    /// The result budget: its own, or `default_budget` where that is 0.
    pub fn budget(&self, default_budget: u64) -> u64 {
        match self.result_budget {
            0 => default_budget,
            own => own,
        }
    }

    /// Records a dispatch: RUNNING, attempt `attempt` started `at`.
    pub fn dispatch(&mut self, attempt: u32, at: SystemTime) {
        self.state = TaskState::Running;
        self.attempts = attempt;
        self.started_at = Some(at);
    }

    /// Records that attempt `attempt` went back to the queue: QUEUED, its
    /// attempts and start kept; unless the task moved on since.
    pub fn requeue(&mut self, attempt: u32) {
        if self.state == TaskState::Running && self.attempts == attempt {
            self.state = TaskState::Queued;
        }
    }

    /// Records `finish`, whose completion took seq `seq`.
    pub fn finish(&mut self, finish: &Finish, seq: u64) {
        self.state = finish.state;
        self.attempts = finish.attempts;
        let ended = self.ended.get_or_insert_with(Default::default);
        ended.finished_at = Some(finish.finished_at);
        ended.outcome = Some(finish.outcome.clone());
        ended.seq = seq;
        ended.notes = FinishNotes {
            drop_run: None,
            ..finish.notes.clone()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Answered, Primary};

    fn plain() -> TaskRecord {
        TaskRecord {
            id: Uuid::new_v4(),
            session: "s".into(),
            tool: "t".into(),
            arguments: "{}".into(),
            timeout: Duration::new(30, 5),
            queue_deadline: Some(SystemTime::UNIX_EPOCH + Duration::new(90, 7)),
            idempotency_key: None,
            created_at: SystemTime::UNIX_EPOCH + Duration::new(60, 3),
            state: TaskState::Queued,
            attempts: 0,
            started_at: None,
            finished_at: None,
            outcome: None,
            seq: 0,
            delivery: Delivery::Interrupt,
            call: CallOptions {
                result_budget: 512,
                ..Default::default()
            },
            notes: FinishNotes::default(),
            retry_of: None,
        }
    }

    /// Every field set, so a field lost on the way shows.
    fn full() -> TaskRecord {
        let primary = Primary {
            state: TaskState::Failed,
            code: "tool_error".into(),
            message: "boom".into(),
            attempts: 2,
        };
        TaskRecord {
            idempotency_key: Some("k".into()),
            state: TaskState::Succeeded,
            attempts: 3,
            started_at: Some(SystemTime::UNIX_EPOCH + Duration::new(61, 1)),
            finished_at: Some(SystemTime::UNIX_EPOCH + Duration::new(62, 2)),
            outcome: Some(Outcome::Result("[1]".into())),
            seq: 9,
            call: CallOptions {
                result_budget: 7,
                args_hash: ArgsHash::of("{}"),
                joinable: true,
                fallback: Some(Fallback::LastGood { max_age_ms: 5 }),
                fallback_for: Some(Box::new(FallbackFor {
                    parent: Uuid::new_v4(),
                    primary: primary.clone(),
                })),
            },
            notes: FinishNotes {
                summary: Some("one".into()),
                answered_by: Some(Box::new(Answered {
                    primary,
                    tool: "u".into(),
                    last_good_age_ms: 4,
                    task_id: Uuid::new_v4(),
                })),
                drop_run: Some(Uuid::new_v4()),
            },
            retry_of: Some(Uuid::new_v4()),
            ..plain()
        }
    }

    #[test]
    fn a_queued_task_takes_160_bytes_and_no_box() {
        assert_eq!(std::mem::size_of::<Stored>(), 160);
        let stored = Stored::new(&plain());
        assert!(stored.rare.is_none() && stored.ended.is_none());
    }

    #[test]
    fn every_field_comes_back() {
        for task in [plain(), full()] {
            let back = Stored::new(&task).to_record(task.id);
            assert_eq!(format!("{back:?}"), format!("{task:?}"));
        }
    }

    #[test]
    fn a_finish_is_what_a_completion_reads() {
        let mut stored = Stored::new(&plain());
        stored.dispatch(1, SystemTime::UNIX_EPOCH + Duration::new(61, 0));
        let finish = Finish {
            task_id: Uuid::new_v4(),
            state: TaskState::Succeeded,
            outcome: Outcome::Result("[1,2]".into()),
            attempts: 1,
            finished_at: SystemTime::UNIX_EPOCH + Duration::new(63, 0),
            notes: FinishNotes {
                summary: Some("two".into()),
                answered_by: None,
                drop_run: Some(Uuid::new_v4()),
            },
        };
        stored.finish(&finish, 4);
        let task = stored.to_record(finish.task_id);
        assert_eq!(task.state, TaskState::Succeeded);
        assert_eq!(task.attempts, 1);
        assert_eq!(
            task.started_at,
            Some(SystemTime::UNIX_EPOCH + Duration::new(61, 0))
        );
        assert_eq!(task.finished_at, Some(finish.finished_at));
        assert_eq!(task.outcome, Some(finish.outcome));
        assert_eq!(task.seq, 4);
        assert_eq!(task.notes.summary.as_deref(), Some("two"));
        assert_eq!(task.notes.drop_run, None, "the run is gone with the finish");
        assert_eq!(stored.result_len(), Some(5));
        assert_eq!(stored.budget(100), 512);
    }
}
