//! errand's tasks and errors as MCP (2026-07-28, Tasks extension) sees them.
//!
//! | errand            | MCP task status | result                              |
//! |-------------------|-----------------|-------------------------------------|
//! | QUEUED, RUNNING   | `working`       | none yet                            |
//! | SUCCEEDED         | `completed`     | the result as text (a JSON string: its value), and as `structuredContent` when a JSON object |
//! | FAILED, TIMED_OUT | `completed`     | `isError: true`, text starts with the status |
//! | CANCELLED         | `cancelled`     | none                                |
//!
//! `failed` is left to JSON-RPC errors, as SEP-2663 reserves it. The exact
//! status, `attempts` and `seq` ride in `_meta["errand/task"]`.
use std::time::{Duration, SystemTime};

use rmcp::{
    ErrorData,
    model::{
        CallToolResult, ContentBlock, DetailedTask, ErrorCode, JsonObject, MetaObject, Task,
        TaskPayload, TaskStatus,
    },
};
use serde_json::{Value, json};

use crate::{
    Error,
    error::{Kind, Vocabulary, phrases},
    model::{Outcome, TaskRecord, TaskState},
    scheduler::views::TaskView,
    tenant,
};

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

/// A tool's description as MCP hosts should see it: its own
/// ([`crate::agents::ToolListing::description`]), without the asynchronous
/// notice ListTools adds for models that get acks (MCP hosts wait for
/// results themselves).
pub fn description(own: &str) -> String {
    own.trim_end().to_string()
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

fn iso(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// `_meta` with `errand/task`: `{status, attempts, seq}`.
pub fn meta(task: &TaskRecord) -> MetaObject {
    let mut m = JsonObject::new();
    m.insert(
        META_KEY.into(),
        json!({"status": task.state.name(), "attempts": task.attempts, "seq": task.seq}),
    );
    MetaObject(m)
}

/// The base MCP task; `status_message` as given.
pub fn task(t: &TaskRecord, status_message: Option<String>, timing: TaskTiming) -> Task {
    let created = iso(t.created_at);
    let updated = t
        .finished_at
        .or(t.started_at)
        .map_or_else(|| created.clone(), iso);
    let ttl = t.timeout.saturating_add(timing.retention);
    let mut out = Task::new(t.id.to_string(), TaskStatus::Working, created, updated)
        .with_ttl_ms(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
        .with_poll_interval_ms(u64::try_from(timing.poll_interval.as_millis()).unwrap_or(u64::MAX));
    if let Some(m) = status_message {
        out = out.with_status_message(m);
    }
    out
}

/// A finished task as the `tools/call` result it stands for; `None` while
/// it is unfinished or when it was cancelled.
pub fn call_result(t: &TaskRecord) -> Option<CallToolResult> {
    let mut result = match (t.state, &t.outcome) {
        (TaskState::Succeeded, Some(Outcome::Result(json))) => {
            let value: Option<Value> = serde_json::from_str(json).ok();
            // A string result is its text, as MCP servers give a tool's
            // returned string (its JSON form would show the model quotes
            // and escapes); any other JSON is its text.
            let text = match &value {
                Some(Value::String(s)) => s.clone(),
                _ => json.to_string(),
            };
            let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
            // MCP's structuredContent is an object: other JSON is text only.
            r.structured_content = value.filter(Value::is_object);
            r
        }
        (TaskState::Succeeded, _) => CallToolResult::success(vec![]),
        (TaskState::Failed | TaskState::TimedOut, outcome) => {
            let detail = match outcome {
                Some(Outcome::Error { code, message }) => format!("[{code}] {message}"),
                _ => String::new(),
            };
            let text = format!(
                "{}: tool `{}` {}",
                t.state.name(),
                tenant::strip(&t.tool),
                detail
            );
            CallToolResult::error(vec![ContentBlock::text(text.trim_end().to_string())])
        }
        _ => return None,
    };
    result.meta = Some(meta(t));
    Some(result)
}

/// `tasks/get`'s view of a task: a working task's status message is its
/// latest progress, else its status and attempts.
pub fn detailed(v: &TaskView, timing: TaskTiming) -> DetailedTask {
    let t = &v.task;
    let payload = match t.state {
        TaskState::Cancelled => TaskPayload::Cancelled,
        _ => match call_result(t).and_then(|r| serde_json::to_value(r).ok()) {
            Some(Value::Object(result)) => TaskPayload::Completed { result },
            _ => TaskPayload::Working,
        },
    };
    let message = match (&payload, &v.progress) {
        (TaskPayload::Working, Some(p)) => {
            crate::text::progress_status(p.progress, p.total, &p.message)
        }
        (TaskPayload::Working, None) => {
            format!("{} (attempts so far: {})", t.state.name(), t.attempts)
        }
        _ => t.state.name().to_string(),
    };
    DetailedTask::new(task(t, Some(message), timing), payload)
}

/// errand's request fields and gRPC phrases as MCP says them
/// ([`Error::renamed`]).
pub const WORDS: Vocabulary = Vocabulary {
    fields: &[
        ("session_id", "the Errand-Session header"),
        ("arguments_json", "arguments"),
        ("task_id", "taskId"),
        ("page_token", "cursor"),
    ],
    phrases: &[
        (
            phrases::TASK_ID_SOURCE,
            "the taskId its tools/call returned",
        ),
        (phrases::READ_OUTCOME, "read its outcome with tasks/get"),
        (phrases::STREAMS, "event streams"),
        (phrases::NEXT_PAGE, "nextCursor"),
        (phrases::SAME_ORDER, ","),
    ],
};

/// An agent API error as a JSON-RPC error, by its kind: NOT_FOUND and
/// INVALID_ARGUMENT are the caller's (-32602), RESOURCE_EXHAUSTED is "busy"
/// (-32000), auth errors keep their message, anything else is internal
/// (-32603).
pub fn error(err: Error) -> ErrorData {
    let err = err.renamed(&WORDS);
    if err.is_too_large() {
        // The caller's input, not a busy server: retrying cannot help.
        return ErrorData::invalid_params(err.into_message(), None);
    }
    let kind = err.kind();
    let message = err.into_message();
    match kind {
        Kind::NotFound | Kind::InvalidArgument | Kind::FailedPrecondition | Kind::OutOfRange => {
            ErrorData::invalid_params(message, None)
        }
        Kind::ResourceExhausted => ErrorData::new(SERVER_BUSY, message, None),
        Kind::Unauthenticated | Kind::PermissionDenied => {
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

    fn task_of(state: TaskState, outcome: Option<Outcome>) -> TaskView {
        crate::agents::tests::task(state, outcome)
    }

    #[test]
    fn a_working_tasks_status_message_is_its_latest_progress() {
        let mut t = task_of(TaskState::Running, None);
        let plain = detailed(&t, timing());
        assert_eq!(
            plain.task.status_message.as_deref(),
            Some("RUNNING (attempts so far: 1)")
        );
        t.progress = Some(crate::agents::tests::progress(3.0, 5.0, "page 3"));
        let d = detailed(&t, timing());
        assert_eq!(d.status(), TaskStatus::Working);
        assert_eq!(d.task.status_message.as_deref(), Some("3/5 (60%): page 3"));
    }

    #[test]
    fn statuses_map_as_the_table_says() {
        let working = detailed(&task_of(TaskState::Running, None), timing());
        assert_eq!(working.status(), TaskStatus::Working);
        assert_eq!(working.task.ttl_ms, Some(61_000));
        assert_eq!(working.task.poll_interval_ms, Some(500));

        let ok = task_of(
            TaskState::Succeeded,
            Some(Outcome::Result(r#"{"echo":"hi"}"#.into())),
        );
        let d = detailed(&ok, timing());
        let TaskPayload::Completed { result } = &d.payload else {
            panic!("succeeded is completed: {d:?}")
        };
        assert_eq!(result["structuredContent"], json!({"echo": "hi"}));
        assert_eq!(result["content"][0]["text"], r#"{"echo":"hi"}"#);
        // A string result is its value, not its JSON (quotes, escapes).
        let said = task_of(
            TaskState::Succeeded,
            Some(Outcome::Result(r#""Definition of \"sun\"""#.into())),
        );
        let TaskPayload::Completed { result: said } = detailed(&said, timing()).payload else {
            panic!("succeeded is completed")
        };
        assert_eq!(said["content"][0]["text"], r#"Definition of "sun""#);
        assert!(said.get("structuredContent").is_none_or(Value::is_null));
        assert_eq!(
            result["_meta"][META_KEY],
            json!({"status": "SUCCEEDED", "attempts": 1, "seq": 7})
        );

        let timed_out = task_of(
            TaskState::TimedOut,
            Some(Outcome::error("timeout", "ran 1 s")),
        );
        let TaskPayload::Completed { result } = detailed(&timed_out, timing()).payload else {
            panic!("timed out is completed")
        };
        assert_eq!(result["isError"], true);
        let text = result["content"][0]["text"].as_str().unwrap();
        assert!(text.starts_with("TIMED_OUT: "), "{text}");

        let cancelled = detailed(&task_of(TaskState::Cancelled, None), timing());
        assert_eq!(cancelled.status(), TaskStatus::Cancelled);
    }

    #[test]
    fn errors_map_to_json_rpc_codes() {
        assert_eq!(
            error(Error::NotFound("unknown task".into())).code,
            ErrorCode::INVALID_PARAMS
        );
        assert_eq!(
            error(Error::ResourceExhausted("10 pending".into())).code,
            SERVER_BUSY
        );
        assert_eq!(
            error(Error::TooLarge("arguments_json is 262145 bytes".into())).code,
            ErrorCode::INVALID_PARAMS
        );
        assert_eq!(
            error(Error::Unavailable("x".into())).code,
            ErrorCode::INTERNAL_ERROR
        );
        // The fields as an MCP client sent them, not as gRPC names them.
        let big = error(Error::TooLarge("arguments_json is 262145 bytes".into()));
        assert_eq!(big.message, "arguments is 262145 bytes");
        let page = error(Error::invalid("page_token is not one this server gave"));
        assert!(
            page.message.starts_with("cursor is not"),
            "{}",
            page.message
        );
    }

    /// Defect: `tasks/get` of "nope" answered `taskId (errand's task_id)
    /// "nope" is not a UUID: pass the task_id SubmitTool returned`, and
    /// schema errors `arguments (errand's arguments_json) fails ...`: an
    /// MCP client never called SubmitTool nor sent arguments_json.
    #[test]
    fn errors_speak_mcp_not_errands_grpc_api() {
        let id = error(crate::scheduler::parse_task_id("nope").unwrap_err());
        assert_eq!(
            id.message,
            "taskId \"nope\" is not a UUID: pass the taskId its tools/call returned"
        );
        for phrase in crate::error::phrases::ALL {
            assert!(WORDS.phrases.iter().any(|(p, _)| p == phrase), "{phrase}");
        }
        for e in crate::error::grpc_worded::errors() {
            let grpc = e.to_string();
            let message = error(e).message;
            for word in crate::error::grpc_worded::GRPC_WORDS
                .iter()
                .chain(&["GetTask", "next_page_token"])
            {
                assert!(
                    !message.contains(word),
                    "{word} in {message:?} (gRPC: {grpc:?})"
                );
            }
        }
    }
}
