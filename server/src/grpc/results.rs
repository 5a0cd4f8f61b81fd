//! `ReadResult`: a task's full result, in pages by byte offset.
use errand_proto::v1 as pb;

use crate::{
    error::Error,
    model::{Outcome, TaskRecord, TaskState},
    results,
};

/// Room in a `ResultChunk` for what is not data.
const CHUNK_OVERHEAD: usize = 1024;

/// The page of `task`'s result that `req` asks for; `max_bytes` is bounded
/// by `max_message` less [`CHUNK_OVERHEAD`]. Errors: FAILED_PRECONDITION
/// when the task has no result (unfinished, or it did not succeed);
/// OUT_OF_RANGE for an offset past the end; INVALID_ARGUMENT for one inside
/// a character.
pub fn chunk(
    task: &TaskRecord,
    req: &pb::ReadResultRequest,
    max_message: usize,
) -> Result<pb::ResultChunk, Error> {
    let json = match (&task.outcome, task.state) {
        (Some(Outcome::Result(json)), TaskState::Succeeded) => json,
        (_, state) => {
            let why = if state.is_final() {
                format!("it ended as {} without a result", state.name())
            } else {
                format!(
                    "it is {} and has no result yet: wait for its completion",
                    state.name()
                )
            };
            return Err(Error::FailedPrecondition(format!(
                "task {} has no result to read: {why}",
                task.id
            )));
        }
    };
    let limit = max_message
        .saturating_sub(CHUNK_OVERHEAD)
        .max(results::MIN_PAGE);
    let max = usize::try_from(req.max_bytes).unwrap_or(usize::MAX);
    let max = if max == 0 { results::DEFAULT_PAGE } else { max };
    let (start, end) = results::page(json, req.offset, max.min(limit))?;
    Ok(pb::ResultChunk {
        data: json[start..end].to_string(),
        offset: start as u64,
        total_bytes: json.len() as u64,
        eof: end == json.len(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use uuid::Uuid;

    use super::*;

    fn task(state: TaskState, outcome: Option<Outcome>) -> TaskRecord {
        TaskRecord {
            id: Uuid::new_v4(),
            session: "s".into(),
            tool: "t".into(),
            arguments: "{}".into(),
            timeout: std::time::Duration::from_secs(1),
            retry_of: None,
            queue_deadline: None,
            idempotency_key: None,
            created_at: SystemTime::now(),
            state,
            attempts: 1,
            started_at: None,
            finished_at: None,
            outcome,
            seq: 0,
            delivery: Default::default(),
            call: Default::default(),
            notes: Default::default(),
        }
    }

    fn req(offset: u64, max_bytes: u64) -> pb::ReadResultRequest {
        pb::ReadResultRequest {
            task_id: String::new(),
            offset,
            max_bytes,
        }
    }

    #[test]
    fn pages_are_bounded_by_the_message_limit_and_say_where_they_end() {
        let t = task(
            TaskState::Succeeded,
            Some(Outcome::Result(format!("\"{}\"", "x".repeat(5000)))),
        );
        let c = chunk(&t, &req(0, 0), 2048).unwrap();
        assert_eq!((c.data.len(), c.total_bytes, c.eof), (1024, 5002, false));
        let c = chunk(&t, &req(5000, 100), 2048).unwrap();
        assert_eq!((c.data.as_str(), c.offset, c.eof), ("x\"", 5000, true));
        let past = chunk(&t, &req(5003, 0), 2048).unwrap_err();
        assert!(matches!(past, Error::OutOfRange(_)), "{past}");
    }

    #[test]
    fn tasks_without_a_result_say_why() {
        for (state, outcome, why) in [
            (TaskState::Running, None, "RUNNING and has no result yet"),
            (
                TaskState::Failed,
                Some(Outcome::error("tool_error", "boom")),
                "ended as FAILED",
            ),
        ] {
            let e = chunk(&task(state, outcome), &req(0, 0), 4096).unwrap_err();
            assert!(
                matches!(&e, Error::FailedPrecondition(m) if m.contains(why)),
                "{e}"
            );
        }
    }
}
