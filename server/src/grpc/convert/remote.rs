//! A remote errand server's side of the [`Agent`] seam: a [`Call`] as the
//! `SubmitToolRequest` it stands for, and the server's answers (tools,
//! tasks, statuses) back as domain types. For the CLI's front ends
//! (`errand mcp --stdio`), which are gRPC clients and convert at their edge.
//!
//! [`Agent`]: crate::agents::Agent
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use errand_proto::v1 as pb;
use tonic::{Code, Status};
use uuid::Uuid;

use crate::{
    Error,
    agents::{Call, Submitted, ToolListing},
    error::quote,
    model::{Delivery, Outcome, ProgressRecord, TaskRecord, TaskState},
    scheduler::{Admitted, views::TaskView},
    text,
};

/// The submit a call stands for: every option left to the tool and the
/// server.
pub fn call(call: Call) -> pb::SubmitToolRequest {
    pb::SubmitToolRequest {
        session_id: call.session,
        tool: call.tool,
        arguments_json: call.arguments_json,
        idempotency_key: call.idempotency_key,
        ..Default::default()
    }
}

/// A listed tool: its own description, without the notice `ListTools`
/// appends ([`text::own_description`]).
pub fn tool(t: pb::Tool) -> ToolListing {
    ToolListing {
        description: text::own_description(&t.description).to_string(),
        name: t.name,
        input_schema_json: t.input_schema_json,
    }
}

/// A `SubmitToolResponse` as a submit's answer. Errors (INTERNAL): no
/// task, or one [`task`] cannot read.
pub fn submitted(r: pb::SubmitToolResponse) -> Result<Submitted, Error> {
    let task = r
        .task
        .ok_or_else(|| Error::Internal("the submit returned no task".into()))?;
    Ok(Submitted {
        task: task_view(task)?,
        ack: r.ack,
        admitted: if r.joined {
            Admitted::Joined
        } else if r.deduplicated {
            Admitted::Repeat
        } else {
            Admitted::New
        },
    })
}

fn time(ts: Option<prost_types::Timestamp>) -> Option<SystemTime> {
    let ts = ts?;
    Some(
        UNIX_EPOCH
            + Duration::from_secs(u64::try_from(ts.seconds).ok()?)
            + Duration::from_nanos(u64::try_from(ts.nanos).ok()?),
    )
}

/// A task as the server showed it. Its session and tool are the names the
/// server gave (the keys of an anonymous caller); a task without a
/// creation time reads as created now. Errors (INTERNAL): an ID that is
/// not a UUID, a status errand does not have.
pub fn task_view(t: pb::Task) -> Result<TaskView, Error> {
    let bad = |what: &str| Error::Internal(format!("the server sent a task with {what}"));
    let id = Uuid::parse_str(&t.task_id)
        .map_err(|_| bad(&format!("the ID {}, not a UUID", quote(&t.task_id))))?;
    let state = match t.status() {
        pb::TaskStatus::Queued => TaskState::Queued,
        pb::TaskStatus::Running => TaskState::Running,
        pb::TaskStatus::Succeeded => TaskState::Succeeded,
        pb::TaskStatus::Failed => TaskState::Failed,
        pb::TaskStatus::Cancelled => TaskState::Cancelled,
        pb::TaskStatus::TimedOut => TaskState::TimedOut,
        pb::TaskStatus::Unspecified => return Err(bad("no status")),
    };
    let delivery = match t.delivery() {
        pb::DeliveryPolicy::Interrupt => Delivery::Interrupt,
        pb::DeliveryPolicy::Silent => Delivery::Silent,
        _ => Delivery::WhenIdle,
    };
    let progress = t.progress.map(|p| {
        std::sync::Arc::new(ProgressRecord {
            task_id: id,
            session: t.session_id.as_str().into(),
            tool: t.tool.as_str().into(),
            index: p.index,
            progress: p.progress,
            total: p.total,
            message: p.message,
            detail_json: p.detail_json.into(),
            elapsed: Duration::from_millis(p.elapsed_ms),
        })
    });
    let runner = t
        .worker_id
        .parse()
        .ok()
        .map(|worker| (worker, t.worker_name.clone()));
    let task = TaskRecord {
        id,
        session: t.session_id.into(),
        tool: t.tool.into(),
        arguments: t.arguments_json.into(),
        timeout: Duration::from_millis(t.timeout_ms),
        queue_deadline: None,
        idempotency_key: (!t.idempotency_key.is_empty()).then(|| t.idempotency_key.into()),
        created_at: time(t.created_at).unwrap_or_else(SystemTime::now),
        state,
        attempts: t.attempts,
        started_at: time(t.started_at),
        finished_at: time(t.finished_at),
        outcome: t.outcome.map(|o| match o {
            pb::task::Outcome::ResultJson(json) => Outcome::Result(json),
            pb::task::Outcome::Error(e) => Outcome::Error {
                code: e.code,
                message: e.message,
            },
        }),
        seq: t.seq,
        delivery,
        call: Default::default(),
        notes: Default::default(),
        retry_of: Uuid::parse_str(&t.retry_of).ok(),
    };
    Ok(TaskView {
        task,
        runner,
        progress,
    })
}

/// A status the server answered with, as an [`Error`] of the same kind
/// and message. Codes errand never sends (UNKNOWN, ABORTED, ...) are
/// INTERNAL; a rate limit's wait is not kept.
pub fn error(status: &Status) -> Error {
    let m = status.message().to_string();
    match status.code() {
        Code::InvalidArgument => Error::InvalidArgument(m),
        Code::NotFound => Error::NotFound(m),
        Code::ResourceExhausted => Error::ResourceExhausted(m),
        Code::FailedPrecondition => Error::FailedPrecondition(m),
        Code::OutOfRange => Error::OutOfRange(m),
        Code::Unauthenticated => Error::Unauthenticated(m),
        Code::PermissionDenied => Error::PermissionDenied(m),
        Code::DeadlineExceeded => Error::DeadlineExceeded(m),
        Code::Unavailable => Error::Unavailable(m),
        _ => Error::Internal(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::Limits, model::ToolDef, model::ToolKey, tools::ToolSpec};

    #[test]
    fn a_task_and_a_tool_read_back_as_the_server_showed_them() {
        let created = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let mut record = crate::agents::tests::task(
            TaskState::Failed,
            Some(Outcome::error("timeout", "ran 1 s")),
        )
        .task;
        record.session = "s".into();
        record.tool = "echo".into();
        record.created_at = created;
        record.finished_at = Some(created + Duration::from_secs(2));
        let back = task_view(super::super::task(&record)).unwrap().task;
        assert_eq!(
            (back.id, &*back.session, &*back.tool, back.state),
            (record.id, "s", "echo", TaskState::Failed)
        );
        assert_eq!(
            (back.created_at, back.finished_at, back.timeout),
            (created, record.finished_at, record.timeout)
        );
        assert_eq!((back.outcome, back.seq), (record.outcome, 7));

        let def = ToolDef {
            name: ToolKey::new("", "echo"),
            description: "Echoes.  ".into(),
            ..Default::default()
        };
        let spec = ToolSpec::new(&def, &Limits::default()).unwrap();
        let listed = tool(super::super::listed_tool(&spec, 1));
        assert_eq!(
            (listed.name.as_str(), listed.description.as_str()),
            ("echo", "Echoes.")
        );

        let unspecified = pb::Task {
            task_id: record.id.to_string(),
            ..Default::default()
        };
        assert!(matches!(task_view(unspecified), Err(Error::Internal(_))));
        let e = error(&Status::failed_precondition("task t is SUCCEEDED"));
        assert!(matches!(e, Error::FailedPrecondition(m) if m == "task t is SUCCEEDED"));
        assert!(matches!(error(&Status::aborted("x")), Error::Internal(_)));
    }
}
