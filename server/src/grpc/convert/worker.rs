//! The messages of a worker's stream (`WorkerService.Connect`): its
//! Register, results and progress reports in, the server's commands out.
use errand_proto::v1 as pb;
use uuid::Uuid;

use super::tool_policy;
use crate::{
    error::Error,
    fields,
    model::{Command, Outcome, ProgressReport, Registration, TaskResult, ToolDef, ToolKey, millis},
    tenant,
};

/// A worker's progress report; `Err` holds a `task_id` that is not a UUID.
pub fn progress_report(p: pb::Progress) -> Result<ProgressReport, String> {
    let task_id = Uuid::parse_str(&p.task_id).map_err(|_| p.task_id)?;
    Ok(ProgressReport {
        task_id,
        attempt: p.attempt,
        progress: p.progress,
        total: p.total,
        message: fields::free_text(p.message),
        detail_json: p.detail_json,
    })
}

/// A worker's registration for `tenant`. Errors: a tool name models would
/// refuse ([`crate::tools::check_name`]); a worker name over
/// [`fields::MAX_WORKER_NAME_BYTES`] (INVALID_ARGUMENT).
pub fn registration(reg: pb::Register, tenant: &str) -> Result<Registration, Error> {
    if reg.worker_name.len() > fields::MAX_WORKER_NAME_BYTES {
        return Err(Error::invalid(format!(
            "worker_name is {} bytes, the most is {}: a short name for logs and listings",
            reg.worker_name.len(),
            fields::MAX_WORKER_NAME_BYTES
        )));
    }
    let tools = reg
        .tools
        .into_iter()
        .map(|tool| {
            crate::tools::check_name(&tool.name)?;
            let policy = tool_policy(&tool, tenant)?;
            Ok(ToolDef {
                name: ToolKey::new(tenant, &tool.name),
                description: fields::free_text(tool.description),
                input_schema_json: tool.input_schema_json,
                timeout_ms: tool.timeout_ms,
                policy,
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
        summary: fields::free_text(result.summary),
        outcome: result.outcome.map(|o| match o {
            pb::task_result::Outcome::ResultJson(json) => Outcome::Result(json),
            pb::task_result::Outcome::Error(e) => Outcome::Error {
                code: fields::free_text(e.code),
                message: fields::free_text(e.message),
            },
        }),
    })
}

/// The first command on a worker's stream, telling the worker the most
/// bytes one of its messages may take (`--max-message-bytes`), so it can
/// fail a result too large to send instead of losing its stream.
pub fn registered_within(worker_id: u64, max_message_bytes: usize) -> pb::WorkerCommand {
    pb::WorkerCommand {
        kind: Some(pb::worker_command::Kind::Registered(pb::Registered {
            worker_id: worker_id.to_string(),
            max_message_bytes: u64::try_from(max_message_bytes).unwrap_or(u64::MAX),
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
            resume_detail_json: a.resume_detail.as_deref().unwrap_or_default().to_string(),
        }),
        Command::Cancel { task_id, reason } => {
            pb::worker_command::Kind::Cancel(pb::CancelAssignment {
                task_id: task_id.to_string(),
                reason: reason.to_string(),
            })
        }
        Command::Registered {
            worker_id,
            max_message_bytes,
        } => return registered_within(worker_id, max_message_bytes),
        Command::RegisterRefused { kind, message } => {
            pb::worker_command::Kind::RegisterRefused(pb::RegisterRefused {
                code: super::code(kind) as i32,
                message: message.to_string(),
            })
        }
    };
    pb::WorkerCommand { kind: Some(kind) }
}
