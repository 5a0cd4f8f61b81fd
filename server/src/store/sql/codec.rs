//! How the SQL stores write the core's values in columns and read them back:
//! one encoding and one decoding for SQLite and PostgreSQL, so a task reads
//! back the same from either. Each engine only fetches the columns of a row
//! into a [`TaskRow`]; what they mean is decided here.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use uuid::Uuid;

use crate::model::{CompletionRecord, Finish, Outcome, TaskRecord, TaskState};

/// The task columns both engines select, in [`TaskRow`]'s order (a macro so
/// SQLite can `concat!` it into `const` statements).
macro_rules! task_columns {
    () => {
        "id, session, tool, arguments, timeout_ns, idempotency_key, created_at, state, \
         attempts, started_at, finished_at, result, error_code, error_message, seq, \
         queue_deadline"
    };
}
pub(crate) use task_columns;

/// [`task_columns!`] as a value.
pub(crate) const TASK_COLUMNS: &str = task_columns!();

/// A task row as both engines store it, column for column ([`TASK_COLUMNS`]),
/// before decoding. Integers are widened to `i64` so either engine's column
/// types fit.
#[derive(Debug)]
pub(crate) struct TaskRow {
    pub id: Uuid,
    pub session: String,
    pub tool: String,
    pub arguments: String,
    /// Nanoseconds.
    pub timeout_ns: i64,
    pub idempotency_key: Option<String>,
    /// Nanoseconds since the Unix epoch, as [`time_to_i64`] wrote them.
    pub created_at: i64,
    /// A [`state_code`].
    pub state: i16,
    pub attempts: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub result: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// 0 until the task is finished.
    pub seq: i64,
    /// Nanoseconds since the Unix epoch; `None` in rows from before it.
    pub queue_deadline: Option<i64>,
}

/// A stored row that does not decode: corrupt data or a bug. The message
/// says which column.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub(crate) struct BadRow(pub String);

impl TaskRow {
    /// The task this row stores. The outcome columns decode as
    /// [`outcome_columns`] encoded them: a `result` is a success, else an
    /// `error_code` is a failure, else there is no outcome yet.
    pub fn decode(self) -> Result<TaskRecord, BadRow> {
        let state = state_from_code(self.state)
            .ok_or_else(|| BadRow(format!("unknown task state {}", self.state)))?;
        let outcome = match (self.result, self.error_code) {
            (Some(json), _) => Some(Outcome::Result(json)),
            (None, Some(code)) => Some(Outcome::Error {
                code,
                message: self.error_message.unwrap_or_default(),
            }),
            (None, None) => None,
        };
        let attempts = u32::try_from(self.attempts)
            .map_err(|_| BadRow(format!("attempts out of range: {}", self.attempts)))?;
        let seq =
            u64::try_from(self.seq).map_err(|_| BadRow(format!("negative seq {}", self.seq)))?;
        Ok(TaskRecord {
            id: self.id,
            session: self.session.into(),
            tool: self.tool.into(),
            arguments: self.arguments.into(),
            timeout: Duration::from_nanos(u64::try_from(self.timeout_ns).unwrap_or(0)),
            queue_deadline: self.queue_deadline.map(time_from_i64),
            idempotency_key: self.idempotency_key.map(Into::into),
            created_at: time_from_i64(self.created_at),
            state,
            attempts,
            started_at: self.started_at.map(time_from_i64),
            finished_at: self.finished_at.map(time_from_i64),
            outcome,
            seq,
        })
    }
}

/// The `result`, `error_code` and `error_message` columns of an outcome.
pub(crate) fn outcome_columns(
    outcome: Option<&Outcome>,
) -> (Option<&str>, Option<&str>, Option<&str>) {
    match outcome {
        None => (None, None, None),
        Some(Outcome::Result(json)) => (Some(json), None, None),
        Some(Outcome::Error { code, message }) => (None, Some(code), Some(message)),
    }
}

/// The completion a finished task row carries (its seq, outcome and finish
/// time); an error when the row lacks them.
pub(crate) fn completion_of(task: &TaskRecord) -> Result<CompletionRecord, BadRow> {
    let (Some(outcome), Some(finished_at)) = (&task.outcome, task.finished_at) else {
        return Err(BadRow(format!("task {} has a seq but no outcome", task.id)));
    };
    let finish = Finish {
        task_id: task.id,
        state: task.state,
        outcome: outcome.clone(),
        attempts: task.attempts,
        finished_at,
    };
    Ok(CompletionRecord::new(task, &finish, task.seq))
}

/// Stored state codes: below 2 is unfinished (the stores' indexes rely on it).
pub(crate) fn state_code(state: TaskState) -> i16 {
    match state {
        TaskState::Queued => 0,
        TaskState::Running => 1,
        TaskState::Succeeded => 2,
        TaskState::Failed => 3,
        TaskState::Cancelled => 4,
        TaskState::TimedOut => 5,
    }
}

pub(crate) fn state_from_code(code: i16) -> Option<TaskState> {
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

pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn duration_to_i64(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Nanoseconds since the Unix epoch (negative before it).
pub(crate) fn time_to_i64(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => duration_to_i64(d),
        Err(e) => -duration_to_i64(e.duration()),
    }
}

pub(crate) fn time_from_i64(n: i64) -> SystemTime {
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
        assert!(row(9, 0).decode().is_err(), "unknown state");
        assert!(row(0, -1).decode().is_err(), "negative seq");
        let before_epoch = UNIX_EPOCH - Duration::from_secs(5);
        for t in [UNIX_EPOCH, before_epoch, SystemTime::now()] {
            assert_eq!(time_from_i64(time_to_i64(t)), t);
        }
    }

    fn row(state: i16, seq: i64) -> TaskRow {
        TaskRow {
            id: Uuid::nil(),
            session: "s".into(),
            tool: "t".into(),
            arguments: "{}".into(),
            timeout_ns: 1_000,
            idempotency_key: None,
            created_at: 5,
            state,
            attempts: 2,
            started_at: Some(6),
            finished_at: None,
            result: None,
            error_code: None,
            error_message: None,
            seq,
            queue_deadline: None,
        }
    }

    #[test]
    fn outcomes_decode_as_they_were_encoded() {
        for outcome in [
            None,
            Some(Outcome::Result(r#"{"ok":true}"#.into())),
            Some(Outcome::error("boom", "it broke")),
        ] {
            let (result, code, message) = outcome_columns(outcome.as_ref());
            let mut r = row(state_code(TaskState::Running), 0);
            r.result = result.map(Into::into);
            r.error_code = code.map(Into::into);
            r.error_message = message.map(Into::into);
            let task = r.decode().unwrap();
            assert_eq!(task.outcome, outcome);
            assert_eq!(task.state, TaskState::Running);
            assert_eq!(task.attempts, 2);
            assert_eq!(task.timeout, Duration::from_nanos(1_000));
            assert_eq!(task.started_at, Some(time_from_i64(6)));
        }
        let unfinished = row(state_code(TaskState::Queued), 0).decode().unwrap();
        assert!(
            completion_of(&unfinished).is_err(),
            "no outcome, no completion"
        );
    }
}
