//! The wire mapping, in one place: every `errand.v1` message to and from
//! its domain type, and every [`Error`] to its gRPC status.
use std::time::SystemTime;

use errand_proto::v1 as pb;
use tonic::{Code, Status, metadata::MetadataValue};
use uuid::Uuid;

use super::fields;
use crate::{
    config::Limits,
    error::Error,
    model::{
        Command, CompletionRecord, Outcome, Registration, SessionKey, Submission, TaskRecord,
        TaskResult, TaskState, ToolDef, ToolKey, millis,
    },
    store::StoreError,
    tenant, text,
    tools::ToolSpec,
};

/// Each error's code, as gRPC's status-code table defines them:
/// INVALID_ARGUMENT for input that is wrong whatever the server's state,
/// NOT_FOUND for a task or tool that is not there, RESOURCE_EXHAUSTED for a
/// quota, a rate or a size limit (and a full disk), FAILED_PRECONDITION for a
/// request the task's state refuses (retrying will not help until it
/// changes), UNAUTHENTICATED and PERMISSION_DENIED for who may call,
/// DEADLINE_EXCEEDED for a wait that ran out, UNAVAILABLE for what a retry
/// may fix (draining, the store unreachable), INTERNAL for a broken
/// invariant. The message is bounded ([`crate::error::bound`]).
impl From<Error> for Status {
    fn from(err: Error) -> Self {
        let code = match &err {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::ResourceExhausted(_) | Error::RateLimited { .. } => Code::ResourceExhausted,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::Unavailable(_) => Code::Unavailable,
            Error::Store(StoreError::Full(_)) => Code::ResourceExhausted,
            Error::Store(StoreError::Unavailable(_)) => Code::Unavailable,
            Error::Store(StoreError::LimitReached(_)) => Code::ResourceExhausted,
            Error::Store(StoreError::Internal(_)) => Code::Internal,
            Error::Store(StoreError::Rejected(_)) => Code::InvalidArgument,
        };
        let retry_after = match &err {
            Error::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        let message = match err {
            Error::Store(StoreError::LimitReached(m)) => m,
            other => other.to_string(),
        };
        let mut status = Status::new(code, crate::error::bound(message));
        if let Some(wait) = retry_after {
            let ms = wait.as_millis().max(1) as u64;
            let meta = status.metadata_mut();
            meta.insert("retry-after-ms", MetadataValue::from(ms));
            meta.insert("retry-after", MetadataValue::from(ms.div_ceil(1000)));
        }
        status
    }
}

pub fn status(state: TaskState) -> pb::TaskStatus {
    match state {
        TaskState::Queued => pb::TaskStatus::Queued,
        TaskState::Running => pb::TaskStatus::Running,
        TaskState::Succeeded => pb::TaskStatus::Succeeded,
        TaskState::Failed => pb::TaskStatus::Failed,
        TaskState::Cancelled => pb::TaskStatus::Cancelled,
        TaskState::TimedOut => pb::TaskStatus::TimedOut,
    }
}

pub fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

fn tool_error(code: &str, message: &str) -> pb::ToolError {
    pb::ToolError {
        code: code.to_string(),
        message: message.to_string(),
    }
}

/// A task as `GetTask`, `CancelTask` and `SubmitTool` show it.
pub fn task(task: &TaskRecord) -> pb::Task {
    let end = task.finished_at.unwrap_or_else(SystemTime::now);
    pb::Task {
        task_id: task.id.to_string(),
        session_id: tenant::strip(&task.session).to_string(),
        tool: tenant::strip(&task.tool).to_string(),
        arguments_json: task.arguments.to_string(),
        status: status(task.state) as i32,
        outcome: task.outcome.as_ref().map(|o| match o {
            Outcome::Result(json) => pb::task::Outcome::ResultJson(json.clone()),
            Outcome::Error { code, message } => pb::task::Outcome::Error(tool_error(code, message)),
        }),
        attempts: task.attempts,
        created_at: Some(timestamp(task.created_at)),
        started_at: task.started_at.map(timestamp),
        finished_at: task.finished_at.map(timestamp),
        timeout_ms: millis(task.timeout),
        seq: task.seq,
        elapsed_ms: millis(end.duration_since(task.created_at).unwrap_or_default()),
        idempotency_key: task
            .idempotency_key
            .as_deref()
            .unwrap_or_default()
            .to_string(),
        // Set by the listings, which know the runner ([`super::listing`]).
        worker_id: String::new(),
        worker_name: String::new(),
        retry_of: String::new(),
        ..Default::default()
    }
}

/// A completion as `Completions` streams it.
pub fn completion(c: &CompletionRecord) -> pb::Completion {
    pb::Completion {
        seq: c.seq,
        task_id: c.task_id.to_string(),
        session_id: tenant::strip(&c.session).to_string(),
        tool: tenant::strip(&c.tool).to_string(),
        arguments_json: c.arguments.to_string(),
        status: status(c.state) as i32,
        outcome: Some(match &c.outcome {
            Outcome::Result(json) => pb::completion::Outcome::ResultJson(json.clone()),
            Outcome::Error { code, message } => {
                pb::completion::Outcome::Error(tool_error(code, message))
            }
        }),
        elapsed_ms: millis(c.elapsed),
        attempts: c.attempts,
        message: text::completion_message(c),
        completed_at: Some(timestamp(c.completed_at)),
        ..Default::default()
    }
}

/// A tool as `ListTools` shows it: the client's name, the async notice
/// appended, an empty schema shown as any object.
pub fn listed_tool(spec: &ToolSpec, workers: u32) -> pb::Tool {
    pb::Tool {
        name: spec.name.name().to_string(),
        description: text::tool_description(&spec.description),
        input_schema_json: if spec.input_schema_json.is_empty() {
            r#"{"type":"object"}"#.to_string()
        } else {
            spec.input_schema_json.to_string()
        },
        timeout_ms: spec.timeout.map_or(0, millis),
        workers,
        queue_timeout_ms: spec.queue_timeout.map_or(0, millis),
        // Set by `ListTools` from the live state ([`super::listing`]).
        queued: 0,
        running: 0,
        ..Default::default()
    }
}

/// A submit of `tenant`'s. Errors: a bad session name (see
/// [`SessionKey::new`]); a tool name no tool can have (INVALID_ARGUMENT, not
/// NOT_FOUND: it is wrong whatever is registered).
pub fn submission(
    req: pb::SubmitToolRequest,
    tenant: &str,
    limits: &Limits,
) -> Result<Submission, Error> {
    let session = SessionKey::new(tenant, &req.session_id, limits)?;
    fields::identifier("tool", &req.tool)?;
    crate::tools::check_name(&req.tool)?;
    fields::identifier("idempotency_key", &req.idempotency_key)?;
    Ok(Submission {
        session,
        tool: ToolKey::new(tenant, &req.tool),
        arguments_json: req.arguments_json,
        timeout_ms: req.timeout_ms,
        queue_timeout_ms: req.queue_timeout_ms,
        idempotency_key: req.idempotency_key,
    })
}

/// A worker's registration for `tenant`. Errors: a tool name models would
/// refuse ([`crate::tools::check_name`]).
pub fn registration(reg: pb::Register, tenant: &str) -> Result<Registration, Error> {
    let tools = reg
        .tools
        .into_iter()
        .map(|tool| {
            crate::tools::check_name(&tool.name)?;
            Ok(ToolDef {
                name: ToolKey::new(tenant, &tool.name),
                description: fields::free_text(tool.description),
                input_schema_json: tool.input_schema_json,
                timeout_ms: tool.timeout_ms,
                queue_timeout_ms: tool.queue_timeout_ms,
            })
        })
        .collect::<Result<_, Error>>()?;
    Ok(Registration {
        worker_name: fields::free_text(reg.worker_name),
        tools,
        max_concurrency: reg.max_concurrency,
    })
}

/// A worker's result; `Err` holds a `task_id` that is not a UUID.
pub fn task_result(result: pb::TaskResult) -> Result<TaskResult, String> {
    let task_id = Uuid::parse_str(&result.task_id).map_err(|_| result.task_id)?;
    Ok(TaskResult {
        task_id,
        attempt: result.attempt,
        outcome: result.outcome.map(|o| match o {
            pb::task_result::Outcome::ResultJson(json) => Outcome::Result(json),
            pb::task_result::Outcome::Error(e) => Outcome::Error {
                code: fields::free_text(e.code),
                message: fields::free_text(e.message),
            },
        }),
    })
}

/// The first command on a worker's stream.
pub fn registered(worker_id: u64) -> pb::WorkerCommand {
    pb::WorkerCommand {
        kind: Some(pb::worker_command::Kind::Registered(pb::Registered {
            worker_id: worker_id.to_string(),
        })),
    }
}

pub fn command(command: Command) -> pb::WorkerCommand {
    let kind = match command {
        Command::Assign(a) => pb::worker_command::Kind::Assignment(pb::Assignment {
            task_id: a.task_id.to_string(),
            session_id: tenant::strip(&a.session).to_string(),
            tool: tenant::strip(&a.tool).to_string(),
            arguments_json: a.arguments.to_string(),
            attempt: a.attempt,
            timeout_ms: millis(a.timeout),
            ..Default::default()
        }),
        Command::Cancel { task_id, reason } => {
            pb::worker_command::Kind::Cancel(pb::CancelAssignment {
                task_id: task_id.to_string(),
                reason: reason.to_string(),
            })
        }
    };
    pb::WorkerCommand { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn listing_appends_the_async_notice() {
        let def = ToolDef {
            name: ToolKey::new("acme", "search"),
            description: "Search the web.".into(),
            ..Default::default()
        };
        let s = ToolSpec::new(&def, &Limits::default()).unwrap();
        let p = listed_tool(&s, 2);
        assert!(p.description.starts_with("Search the web.\n\n"));
        assert!(p.description.contains("asynchronous"));
        assert_eq!(p.workers, 2);
        assert_eq!(p.name, "search");
    }

    #[test]
    fn every_error_has_the_code_grpc_s_table_gives_it() {
        use StoreError as S;
        let m = || "m".to_string();
        let rate = Error::RateLimited {
            message: m(),
            retry_after: Duration::from_secs(1),
        };
        let table = [
            (Error::InvalidArgument(m()), Code::InvalidArgument),
            (Error::NotFound(m()), Code::NotFound),
            (Error::ResourceExhausted(m()), Code::ResourceExhausted),
            (rate, Code::ResourceExhausted),
            (Error::FailedPrecondition(m()), Code::FailedPrecondition),
            (Error::Unauthenticated(m()), Code::Unauthenticated),
            (Error::PermissionDenied(m()), Code::PermissionDenied),
            (Error::DeadlineExceeded(m()), Code::DeadlineExceeded),
            (Error::Unavailable(m()), Code::Unavailable),
            (Error::Store(S::Full(m())), Code::ResourceExhausted),
            (Error::Store(S::Unavailable(m())), Code::Unavailable),
            (Error::Store(S::LimitReached(m())), Code::ResourceExhausted),
            (Error::Store(S::Internal(m())), Code::Internal),
        ];
        for (err, code) in table {
            let what = format!("{err:?}");
            assert_eq!(Status::from(err).code(), code, "{what}");
        }
        // Never OUT_OF_RANGE (tonic's choice for oversized messages, mapped
        // in `status_codes`), UNKNOWN or OK.
    }

    #[test]
    fn every_message_is_bounded() {
        let s = Status::from(Error::invalid("x".repeat(100_000)));
        assert!(s.message().len() <= crate::error::MAX_MESSAGE_BYTES);
        assert!(
            s.message().ends_with("(100000 bytes in all)"),
            "{}",
            s.message()
        );
    }

    #[test]
    fn statuses_keep_their_codes_and_rate_limits_say_when_to_retry() {
        let s = Status::from(Error::Store(StoreError::LimitReached("full".into())));
        assert_eq!((s.code(), s.message()), (Code::ResourceExhausted, "full"));
        let s = Status::from(Error::RateLimited {
            message: "slow down".into(),
            retry_after: Duration::from_millis(1500),
        });
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(s.metadata().get("retry-after-ms").unwrap(), "1500");
        assert_eq!(s.metadata().get("retry-after").unwrap(), "2");
        let s = Status::from(Error::Store(StoreError::Internal("bug".into())));
        assert_eq!((s.code(), s.message()), (Code::Internal, "store: bug"));
    }
}
