//! How the SQL stores write the core's values in columns: one encoding for
//! SQLite and PostgreSQL, so a task reads back the same from either.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::model::{CompletionRecord, Finish, Outcome, TaskRecord, TaskState};

/// The `result`, `error_code` and `error_message` columns of an outcome.
pub(super) fn outcome_columns(
    outcome: Option<&Outcome>,
) -> (Option<&str>, Option<&str>, Option<&str>) {
    match outcome {
        None => (None, None, None),
        Some(Outcome::Result(json)) => (Some(json), None, None),
        Some(Outcome::Error { code, message }) => (None, Some(code), Some(message)),
    }
}

/// The completion a finished task row carries (its seq, outcome and finish
/// time); `None` when the row lacks them.
pub(super) fn completion_of(task: &TaskRecord) -> Option<CompletionRecord> {
    let (Some(outcome), Some(finished_at)) = (&task.outcome, task.finished_at) else {
        return None;
    };
    let finish = Finish {
        task_id: task.id,
        state: task.state,
        outcome: outcome.clone(),
        attempts: task.attempts,
        finished_at,
    };
    Some(CompletionRecord::new(task, &finish, task.seq))
}

/// Stored state codes: below 2 is unfinished (the stores' indexes rely on it).
pub(super) fn state_code(state: TaskState) -> i16 {
    match state {
        TaskState::Queued => 0,
        TaskState::Running => 1,
        TaskState::Succeeded => 2,
        TaskState::Failed => 3,
        TaskState::Cancelled => 4,
        TaskState::TimedOut => 5,
    }
}

pub(super) fn state_from_code(code: i16) -> Option<TaskState> {
    Some(match code {
        0 => TaskState::Queued,
        1 => TaskState::Running,
        2 => TaskState::Succeeded,
        3 => TaskState::Failed,
        4 => TaskState::Cancelled,
        5 => TaskState::TimedOut,
        _ => return None,
    })
}

pub(super) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(super) fn duration_to_i64(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Nanoseconds since the Unix epoch (negative before it).
pub(super) fn time_to_i64(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => duration_to_i64(d),
        Err(e) => -duration_to_i64(e.duration()),
    }
}

pub(super) fn time_from_i64(n: i64) -> SystemTime {
    let d = Duration::from_nanos(n.unsigned_abs());
    if n >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        for state in [
            TaskState::Queued,
            TaskState::Running,
            TaskState::Succeeded,
            TaskState::Failed,
            TaskState::Cancelled,
            TaskState::TimedOut,
        ] {
            assert_eq!(state_from_code(state_code(state)), Some(state));
        }
        assert_eq!(state_from_code(9), None);
        let before_epoch = UNIX_EPOCH - Duration::from_secs(5);
        for t in [UNIX_EPOCH, before_epoch, SystemTime::now()] {
            assert_eq!(time_from_i64(time_to_i64(t)), t);
        }
    }
}
