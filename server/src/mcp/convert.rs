//! errand's tasks and errors as MCP (2026-07-28, Tasks extension) sees them.
//!
//! | errand            | MCP task status | result                              |
//! |-------------------|-----------------|-------------------------------------|
//! | QUEUED, RUNNING   | `working`       | none yet                            |
//! | SUCCEEDED         | `completed`     | the result as text, and as `structuredContent` when a JSON object |
//! | FAILED, TIMED_OUT | `completed`     | `isError: true`, text starts with the status |
//! | CANCELLED         | `cancelled`     | none                                |
//!
//! `failed` is left to JSON-RPC errors, as SEP-2663 reserves it. The exact
//! status, `attempts` and `seq` ride in `_meta["errand/task"]`.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use errand_proto::v1 as pb;
use rmcp::{
    ErrorData,
    model::{
        CallToolResult, ContentBlock, DetailedTask, ErrorCode, JsonObject, MetaObject, Task,
        TaskPayload, TaskStatus,
    },
};
use serde_json::{Value, json};
use tonic::Code;

use crate::text::ASYNC_NOTICE;

/// The `_meta` key of errand's own view of a task.
pub const META_KEY: &str = "errand/task";

/// JSON-RPC code of a call refused for lack of room (too many pending tasks).
pub const SERVER_BUSY: ErrorCode = ErrorCode(-32000);

/// How tasks are advertised: `ttl_ms` = the run's timeout + `retention`.
#[derive(Clone, Copy, Debug)]
pub struct TaskTiming {
    pub retention: Duration,
    pub poll_interval: Duration,
}

/// A tool's description as MCP hosts should see it: its own, without the
/// asynchronous notice ListTools adds for models that get acks (MCP hosts
/// wait for results themselves).
pub fn description(listed: &str) -> String {
    listed
        .strip_suffix(ASYNC_NOTICE)
        .unwrap_or(listed)
        .trim_end()
        .to_string()
}

/// The tool's input schema as a JSON object (`{"type":"object"}` when it
/// is not one).
pub fn input_schema(schema_json: &str) -> JsonObject {
    match serde_json::from_str::<Value>(schema_json) {
        Ok(Value::Object(o)) => o,
        _ => json!({"type": "object"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    }
}

fn iso(ts: Option<&prost_types::Timestamp>) -> Option<String> {
    let ts = ts?;
    let t = UNIX_EPOCH
        + Duration::from_secs(u64::try_from(ts.seconds).ok()?)
        + Duration::from_nanos(u64::try_from(ts.nanos).ok()?);
    Some(humantime::format_rfc3339_millis(t).to_string())
}

fn status_name(task: &pb::Task) -> &'static str {
    match task.status() {
        pb::TaskStatus::Queued => "QUEUED",
        pb::TaskStatus::Running => "RUNNING",
        pb::TaskStatus::Succeeded => "SUCCEEDED",
        pb::TaskStatus::Failed => "FAILED",
        pb::TaskStatus::Cancelled => "CANCELLED",
        pb::TaskStatus::TimedOut => "TIMED_OUT",
        pb::TaskStatus::Unspecified => "UNSPECIFIED",
    }
}

/// `_meta` with `errand/task`: `{status, attempts, seq}`.
pub fn meta(task: &pb::Task) -> MetaObject {
    let mut m = JsonObject::new();
    m.insert(
        META_KEY.into(),
        json!({"status": status_name(task), "attempts": task.attempts, "seq": task.seq}),
    );
    MetaObject(m)
}

/// The base MCP task; `status_message` as given.
pub fn task(t: &pb::Task, status_message: Option<String>, timing: TaskTiming) -> Task {
    let created = iso(t.created_at.as_ref())
        .unwrap_or_else(|| humantime::format_rfc3339_millis(SystemTime::now()).to_string());
    let updated = iso(t.finished_at.as_ref())
        .or_else(|| iso(t.started_at.as_ref()))
        .unwrap_or_else(|| created.clone());
    let ttl = Duration::from_millis(t.timeout_ms).saturating_add(timing.retention);
    let mut out = Task::new(t.task_id.clone(), TaskStatus::Working, created, updated)
        .with_ttl_ms(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
        .with_poll_interval_ms(u64::try_from(timing.poll_interval.as_millis()).unwrap_or(u64::MAX));
    if let Some(m) = status_message {
        out = out.with_status_message(m);
    }
    out
}

/// A finished task as the `tools/call` result it stands for; `None` while
/// it is unfinished or when it was cancelled.
pub fn call_result(t: &pb::Task) -> Option<CallToolResult> {
    let mut result = match (t.status(), &t.outcome) {
        (pb::TaskStatus::Succeeded, Some(pb::task::Outcome::ResultJson(json))) => {
            let mut r = CallToolResult::success(vec![ContentBlock::text(json.clone())]);
            // MCP's structuredContent is an object: other JSON is text only.
            r.structured_content = serde_json::from_str(json).ok().filter(Value::is_object);
            r
        }
        (pb::TaskStatus::Succeeded, _) => CallToolResult::success(vec![]),
        (pb::TaskStatus::Failed | pb::TaskStatus::TimedOut, outcome) => {
            let detail = match outcome {
                Some(pb::task::Outcome::Error(e)) => format!("[{}] {}", e.code, e.message),
                _ => String::new(),
            };
            let text = format!("{}: tool `{}` {}", status_name(t), t.tool, detail);
            CallToolResult::error(vec![ContentBlock::text(text.trim_end().to_string())])
        }
        _ => return None,
    };
    result.meta = Some(meta(t));
    Some(result)
}

/// `tasks/get`'s view of a task: a working task's status message is its
/// latest progress, else its status and attempts.
pub fn detailed(t: &pb::Task, timing: TaskTiming) -> DetailedTask {
    let payload = match t.status() {
        pb::TaskStatus::Cancelled => TaskPayload::Cancelled,
        _ => match call_result(t).and_then(|r| serde_json::to_value(r).ok()) {
            Some(Value::Object(result)) => TaskPayload::Completed { result },
            _ => TaskPayload::Working,
        },
    };
    let message = match (&payload, &t.progress) {
        (TaskPayload::Working, Some(p)) => {
            crate::text::progress_status(p.progress, p.total, &p.message)
        }
        (TaskPayload::Working, None) => {
            format!("{} (attempts so far: {})", status_name(t), t.attempts)
        }
        _ => status_name(t).to_string(),
    };
    DetailedTask::new(task(t, Some(message), timing), payload)
}

/// A `ToolService` status as a JSON-RPC error. NOT_FOUND and INVALID_ARGUMENT
/// are the caller's (-32602), RESOURCE_EXHAUSTED is "busy" (-32000), auth
/// errors keep their message, anything else is internal (-32603).
pub fn error(status: &tonic::Status) -> ErrorData {
    let message = status.message().to_string();
    match status.code() {
        Code::NotFound | Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            ErrorData::invalid_params(message, None)
        }
        Code::ResourceExhausted => ErrorData::new(SERVER_BUSY, message, None),
        Code::Unauthenticated | Code::PermissionDenied => {
            ErrorData::new(ErrorCode::INVALID_REQUEST, message, None)
        }
        _ => ErrorData::internal_error(message, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> TaskTiming {
        TaskTiming {
            retention: Duration::from_secs(60),
            poll_interval: Duration::from_millis(500),
        }
    }

    fn pb_task(status: pb::TaskStatus, outcome: Option<pb::task::Outcome>) -> pb::Task {
        pb::Task {
            task_id: "t1".into(),
            tool: "echo".into(),
            status: status as i32,
            outcome,
            attempts: 1,
            seq: 7,
            timeout_ms: 1000,
            ..Default::default()
        }
    }

    #[test]
    fn a_working_tasks_status_message_is_its_latest_progress() {
        let mut t = pb_task(pb::TaskStatus::Running, None);
        let plain = detailed(&t, timing());
        assert_eq!(
            plain.task.status_message.as_deref(),
            Some("RUNNING (attempts so far: 1)")
        );
        t.progress = Some(pb::Progress {
            progress: 3.0,
            total: 5.0,
            message: "page 3".into(),
            ..Default::default()
        });
        let d = detailed(&t, timing());
        assert_eq!(d.status(), TaskStatus::Working);
        assert_eq!(d.task.status_message.as_deref(), Some("3/5 (60%): page 3"));
    }

    #[test]
    fn statuses_map_as_the_table_says() {
        let working = detailed(&pb_task(pb::TaskStatus::Running, None), timing());
        assert_eq!(working.status(), TaskStatus::Working);
        assert_eq!(working.task.ttl_ms, Some(61_000));
        assert_eq!(working.task.poll_interval_ms, Some(500));

        let ok = pb_task(
            pb::TaskStatus::Succeeded,
            Some(pb::task::Outcome::ResultJson(r#"{"echo":"hi"}"#.into())),
        );
        let d = detailed(&ok, timing());
        let TaskPayload::Completed { result } = &d.payload else {
            panic!("succeeded is completed: {d:?}")
        };
        assert_eq!(result["structuredContent"], json!({"echo": "hi"}));
        assert_eq!(result["content"][0]["text"], r#"{"echo":"hi"}"#);
        assert_eq!(
            result["_meta"][META_KEY],
            json!({"status": "SUCCEEDED", "attempts": 1, "seq": 7})
        );

        let timed_out = pb_task(
            pb::TaskStatus::TimedOut,
            Some(pb::task::Outcome::Error(pb::ToolError {
                code: "timeout".into(),
                message: "ran 1 s".into(),
            })),
        );
        let TaskPayload::Completed { result } = detailed(&timed_out, timing()).payload else {
            panic!("timed out is completed")
        };
        assert_eq!(result["isError"], true);
        let text = result["content"][0]["text"].as_str().unwrap();
        assert!(text.starts_with("TIMED_OUT: "), "{text}");

        let cancelled = detailed(&pb_task(pb::TaskStatus::Cancelled, None), timing());
        assert_eq!(cancelled.status(), TaskStatus::Cancelled);
    }

    #[test]
    fn descriptions_lose_the_async_notice() {
        let listed = crate::text::tool_description("Echoes.");
        assert_eq!(description(&listed), "Echoes.");
        assert_eq!(description(ASYNC_NOTICE), "");
    }

    #[test]
    fn errors_map_to_json_rpc_codes() {
        assert_eq!(
            error(&tonic::Status::not_found("unknown task")).code,
            ErrorCode::INVALID_PARAMS
        );
        assert_eq!(
            error(&tonic::Status::resource_exhausted("10 pending")).code,
            SERVER_BUSY
        );
        assert_eq!(
            error(&tonic::Status::unavailable("x")).code,
            ErrorCode::INTERNAL_ERROR
        );
    }
}
