//! errand's tasks and errors as A2A 1.0 sees them.
//!
//! | errand            | A2A `TaskState` | what comes with it                          |
//! |-------------------|-----------------|---------------------------------------------|
//! | QUEUED            | `SUBMITTED`     | the ack text as `status.message` on submit  |
//! | RUNNING           | `WORKING`       |                                             |
//! | SUCCEEDED         | `COMPLETED`     | one artifact `result`: the result JSON      |
//! | FAILED, TIMED_OUT | `FAILED`        | `status.message`: the status and the error  |
//! | CANCELLED         | `CANCELED`      |                                             |
//!
//! The exact status, `attempts`, `seq` and the tool ride in
//! `task.metadata["errand"]`; `context_id` is the task's errand session.
use std::{collections::HashMap, time::SystemTime};

use a2a::{
    A2AError, Artifact, Message, Part, Role, Task, TaskArtifactUpdateEvent, TaskState, TaskStatus,
    TaskStatusUpdateEvent,
};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::numbers;
use crate::{
    Error,
    error::{Kind, Vocabulary, phrases},
    model::{Outcome, ProgressRecord, TaskRecord, TaskState as State},
    scheduler::views::TaskView,
    tenant,
};

/// The metadata key of errand's own view of a task.
pub const META_KEY: &str = "errand";

/// The name (and ID suffix) of the one artifact a succeeded task has.
pub const RESULT_ARTIFACT: &str = "result";

pub fn state(task: &TaskRecord) -> TaskState {
    match task.state {
        State::Queued => TaskState::Submitted,
        State::Running => TaskState::Working,
        State::Succeeded => TaskState::Completed,
        State::Failed | State::TimedOut => TaskState::Failed,
        State::Cancelled => TaskState::Canceled,
    }
}

/// A state as the wire writes it, without the `TASK_STATE_` prefix.
pub fn state_name(state: &TaskState) -> &'static str {
    match state {
        TaskState::Unspecified => "UNSPECIFIED",
        TaskState::Submitted => "SUBMITTED",
        TaskState::Working => "WORKING",
        TaskState::Completed => "COMPLETED",
        TaskState::Failed => "FAILED",
        TaskState::Canceled => "CANCELED",
        TaskState::InputRequired => "INPUT_REQUIRED",
        TaskState::Rejected => "REJECTED",
        TaskState::AuthRequired => "AUTH_REQUIRED",
    }
}

/// errand's name of a task's status, as in its proto without the prefix.
pub fn status_name(task: &TaskRecord) -> &'static str {
    task.state.name()
}

/// The context is the session, as the caller named it.
pub fn context_id(task: &TaskRecord) -> String {
    tenant::strip(&task.session).to_string()
}

fn time(t: SystemTime) -> DateTime<Utc> {
    DateTime::<Utc>::from(t)
}

/// A message from the agent (errand) with one text part.
pub fn agent_text(task: &TaskRecord, text: String) -> Message {
    let mut m = Message::new(Role::Agent, vec![Part::text(text)]);
    m.message_id = format!("{}-status", task.id);
    m.task_id = Some(task.id.to_string());
    m.context_id = Some(context_id(task));
    m
}

/// Why a task did not succeed, starting with its exact status.
fn failure_text(task: &TaskRecord) -> String {
    let detail = match &task.outcome {
        Some(Outcome::Error { code, message }) => format!(" [{code}] {message}"),
        _ => String::new(),
    };
    format!(
        "{}: tool `{}`{detail}",
        status_name(task),
        tenant::strip(&task.tool)
    )
}

/// A progress report as a `WORKING` status message.
pub fn progress_text(p: &ProgressRecord) -> String {
    crate::text::progress_status(p.progress, p.total, &p.message)
}

/// The task's status; `message` (the ack on submit) when given and the task
/// is not final (a message sent again after its task ended gets the ended
/// task, never "the result will come later"), else the latest progress of a
/// working task or the failure text of a failed task.
pub fn status(view: &TaskView, message: Option<String>) -> TaskStatus {
    let task = &view.task;
    let state = state(task);
    let ack = message.filter(|_| !task.state.is_final());
    let message = ack.or_else(|| match (&state, &view.progress) {
        (TaskState::Working, Some(p)) => Some(progress_text(p)),
        (TaskState::Failed, _) => Some(failure_text(task)),
        _ => None,
    });
    TaskStatus {
        state,
        message: message.map(|m| agent_text(task, m)),
        timestamp: Some(time(
            task.finished_at
                .or(task.started_at)
                .unwrap_or(task.created_at),
        )),
    }
}

/// The result artifact of a succeeded task: a data part with the result,
/// or, when a data part (a protobuf `Struct`, numbers as doubles) would
/// change one of its numbers ([`numbers::fits_struct`]: a 64-bit ID, say),
/// a text part of media type application/json with the result's exact
/// JSON text (a bare text part when the result is not JSON).
pub fn artifact(task: &TaskRecord) -> Option<Artifact> {
    let (State::Succeeded, Some(Outcome::Result(json))) = (task.state, &task.outcome) else {
        return None;
    };
    let part = match serde_json::from_str::<Value>(json) {
        Ok(v) if numbers::fits_struct(&v) => Part::data(v).with_media_type("application/json"),
        Ok(_) => Part::text(json.clone()).with_media_type("application/json"),
        Err(_) => Part::text(json.clone()),
    };
    Some(Artifact {
        artifact_id: format!("{}-{RESULT_ARTIFACT}", task.id),
        name: Some(RESULT_ARTIFACT.into()),
        description: None,
        parts: vec![part],
        metadata: None,
        extensions: None,
    })
}

/// `{"errand": {status, attempts, seq, tool}}`. Server-made values only
/// (`seq` counts a session's completions, far below 2^53), so the
/// metadata `Struct` carries them exactly.
pub fn metadata(task: &TaskRecord) -> HashMap<String, Value> {
    HashMap::from([(
        META_KEY.to_string(),
        json!({
            "status": status_name(task),
            "attempts": task.attempts,
            "seq": task.seq,
            "tool": tenant::strip(&task.tool),
        }),
    )])
}

/// The A2A task; `message` as in [`status`].
pub fn task(v: &TaskView, message: Option<String>) -> Task {
    let t = &v.task;
    Task {
        id: t.id.to_string(),
        context_id: context_id(t),
        status: status(v, message),
        artifacts: artifact(t).map(|a| vec![a]),
        history: None,
        metadata: Some(metadata(t)),
    }
}

/// A progress report of `t` (running) as a stream's `WORKING` status update.
pub fn progress_event(t: &TaskRecord, p: &ProgressRecord) -> a2a::StreamResponse {
    a2a::StreamResponse::StatusUpdate(TaskStatusUpdateEvent {
        task_id: t.id.to_string(),
        context_id: context_id(t),
        status: TaskStatus {
            state: TaskState::Working,
            message: Some(agent_text(t, progress_text(p))),
            timestamp: Some(Utc::now()),
        },
        metadata: None,
    })
}

/// What a stream sends once the task is final: its artifact (when it
/// succeeded), then its final status.
pub fn final_events(v: &TaskView) -> Vec<a2a::StreamResponse> {
    let t = &v.task;
    debug_assert!(t.state.is_final());
    let mut events = Vec::with_capacity(2);
    if let Some(artifact) = artifact(t) {
        events.push(a2a::StreamResponse::ArtifactUpdate(
            TaskArtifactUpdateEvent {
                task_id: t.id.to_string(),
                context_id: context_id(t),
                artifact,
                append: Some(false),
                last_chunk: Some(true),
                metadata: None,
            },
        ));
    }
    events.push(a2a::StreamResponse::StatusUpdate(TaskStatusUpdateEvent {
        task_id: t.id.to_string(),
        context_id: context_id(t),
        status: status(v, None),
        metadata: Some(metadata(t)),
    }));
    events
}

/// An agent API error as an A2A error, by its kind: NOT_FOUND of a task is
/// `TaskNotFoundError`; the caller's mistakes (INVALID_ARGUMENT, an unknown
/// tool, input over a size limit) are -32602; RESOURCE_EXHAUSTED for lack
/// of room is -32000, marked for [`super::busy`] (429 on HTTP+JSON,
/// RESOURCE_EXHAUSTED on gRPC); auth errors keep their message; anything
/// else is internal.
pub fn error(err: Error) -> A2AError {
    let err = err.renamed(&WORDS);
    if err.is_too_large() {
        // Not "busy": a client told 429 retries the same input for ever.
        return A2AError::invalid_params(err.into_message());
    }
    let kind = err.kind();
    let message = err.into_message();
    match kind {
        Kind::NotFound if message.starts_with("no task ") => A2AError::new(
            a2a::error_code::TASK_NOT_FOUND,
            format!("{message} (unknown, another tenant's, or past retention)"),
        ),
        Kind::NotFound | Kind::InvalidArgument | Kind::OutOfRange => {
            A2AError::invalid_params(message)
        }
        Kind::FailedPrecondition => A2AError::new(a2a::error_code::TASK_NOT_CANCELABLE, message),
        Kind::ResourceExhausted => super::busy::mark(A2AError::new(SERVER_BUSY, message)),
        Kind::Unauthenticated | Kind::PermissionDenied => A2AError::invalid_request(message),
        _ => A2AError::internal(message),
    }
}

/// errand's request fields and gRPC phrases as A2A says them
/// ([`Error::renamed`]): the context is the session, the message ID the
/// idempotency key, the skill the tool.
pub const WORDS: Vocabulary = Vocabulary {
    fields: &[
        ("session_id", "contextId"),
        ("idempotency_key", "messageId"),
        ("arguments_json", "the data part"),
        ("page_token", "pageToken"),
        ("tool name", "skill"),
        ("task_id", "the task id"),
    ],
    phrases: &[
        (phrases::TASK_ID_SOURCE, "the task id SendMessage returned"),
        (phrases::READ_OUTCOME, "read its outcome with GetTask"),
        (
            phrases::STREAMS,
            "streams (SendStreamingMessage and SubscribeToTask among them)",
        ),
        (phrases::NEXT_PAGE, "nextPageToken"),
        (phrases::SAME_ORDER, ","),
    ],
};

/// JSON-RPC code of a call refused for lack of room (too many pending
/// tasks, a rate limit), as on the MCP listener.
pub const SERVER_BUSY: i32 = -32000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ack_is_the_status_message_only_while_the_task_is_open() {
        let ack = || Some("Task submitted: its result will come later".to_string());
        let queued = status(&task_of(State::Queued, None), ack());
        assert!(queued.message.is_some());
        let done = status(
            &task_of(State::Succeeded, Some(Outcome::Result("1".into()))),
            ack(),
        );
        assert_eq!(done.state, TaskState::Completed);
        assert!(done.message.is_none(), "{:?}", done.message);
        let failed = status(
            &task_of(State::Failed, Some(Outcome::error("tool_error", "boom"))),
            ack(),
        );
        let text = format!("{:?}", failed.message);
        assert!(text.contains("boom") && !text.contains("later"), "{text}");
    }

    fn task_of(state: State, outcome: Option<Outcome>) -> TaskView {
        crate::agents::tests::task(state, outcome)
    }

    #[test]
    fn statuses_map_as_the_table_says() {
        for (status, state) in [
            (State::Queued, TaskState::Submitted),
            (State::Running, TaskState::Working),
            (State::Succeeded, TaskState::Completed),
            (State::Failed, TaskState::Failed),
            (State::TimedOut, TaskState::Failed),
            (State::Cancelled, TaskState::Canceled),
        ] {
            assert_eq!(task(&task_of(status, None), None).status.state, state);
        }
        let timed_out = task(
            &task_of(State::TimedOut, Some(Outcome::error("timeout", "ran 1 s"))),
            None,
        );
        let text = timed_out
            .status
            .message
            .unwrap()
            .text()
            .unwrap()
            .to_string();
        assert_eq!(text, "TIMED_OUT: tool `echo` [timeout] ran 1 s");
        assert_eq!(timed_out.metadata.unwrap()[META_KEY]["status"], "TIMED_OUT");
    }

    #[test]
    fn a_result_is_one_data_artifact_then_the_final_status() {
        let ok = task_of(
            State::Succeeded,
            Some(Outcome::Result(r#"{"echo":"hi"}"#.into())),
        );
        let t = task(&ok, None);
        let artifacts = t.artifacts.unwrap();
        assert_eq!(artifacts.len(), 1);
        assert_eq!(artifacts[0].name.as_deref(), Some(RESULT_ARTIFACT));
        assert_eq!(
            artifacts[0].parts[0].content,
            a2a::PartContent::Data(json!({"echo": "hi"}))
        );
        let events = final_events(&ok);
        assert!(matches!(events[0], a2a::StreamResponse::ArtifactUpdate(_)));
        assert!(
            matches!(&events[1], a2a::StreamResponse::StatusUpdate(s) if s.status.state == TaskState::Completed)
        );
        let cancelled = final_events(&task_of(State::Cancelled, None));
        assert_eq!(cancelled.len(), 1);
    }

    #[test]
    fn a_result_a_struct_would_change_is_its_exact_json_text() {
        let json = r#"{"id":9007199254740993,"n":5}"#;
        let big = task_of(State::Succeeded, Some(Outcome::Result(json.into())));
        let part = &artifact(&big.task).unwrap().parts[0];
        assert_eq!(part.content, a2a::PartContent::Text(json.into()));
        assert_eq!(part.media_type.as_deref(), Some("application/json"));
        let text = task_of(State::Succeeded, Some(Outcome::Result("not json".into())));
        assert_eq!(artifact(&text.task).unwrap().parts[0].media_type, None);
    }

    /// Defect: a data part the tool's schema refused was answered "the
    /// data part (errand's arguments_json) fails ...": gRPC's field. Every
    /// error an A2A client may get is in A2A's words.
    #[test]
    fn errors_speak_a2a_not_errands_grpc_api() {
        let schema = crate::error::grpc_worded::errors()
            .into_iter()
            .map(|e| (e.to_string(), error(e).message))
            .find(|(grpc, _)| grpc.contains("input schema"))
            .unwrap();
        assert!(
            schema.1.starts_with("the data part fails the input schema"),
            "{schema:?}"
        );
        for phrase in crate::error::phrases::ALL {
            assert!(WORDS.phrases.iter().any(|(p, _)| p == phrase), "{phrase}");
        }
        for e in crate::error::grpc_worded::errors() {
            let grpc = e.to_string();
            let message = error(e).message;
            for word in crate::error::grpc_worded::GRPC_WORDS
                .iter()
                .chain(&["next_page_token", "tool name"])
            {
                assert!(
                    !message.contains(word),
                    "{word} in {message:?} (gRPC: {grpc:?})"
                );
            }
        }
    }

    #[test]
    fn errors_map_to_a2a_codes() {
        // A task ID that is not errand's is a task not found, as the
        // README says, not the gRPC field's INVALID_ARGUMENT.
        let garbage = super::super::handler::task_id_error(Error::invalid(
            "task_id \"nope\" is not a UUID: pass the task_id SubmitTool returned",
        ));
        assert_eq!(
            garbage.code,
            a2a::error_code::TASK_NOT_FOUND,
            "{}",
            garbage.message
        );
        assert!(
            !garbage.message.contains("SubmitTool"),
            "{}",
            garbage.message
        );
        let unknown = error(Error::NotFound("no task 1234".into()));
        assert_eq!(unknown.code, a2a::error_code::TASK_NOT_FOUND);
        let tool = error(Error::NotFound("unknown tool `x`; known: echo".into()));
        assert_eq!(tool.code, a2a::error_code::INVALID_PARAMS);
        assert_eq!(
            error(Error::ResourceExhausted("10 pending".into())).code,
            SERVER_BUSY
        );
        // Too large is the caller's input, not a busy server: it was -32000
        // (HTTP 429), which clients retry for ever.
        let big = error(Error::TooLarge("arguments_json is 262145 bytes".into()));
        assert_eq!(big.code, a2a::error_code::INVALID_PARAMS);
        assert!(big.message.contains("262145"), "{}", big.message);
        assert_eq!(
            error(Error::Unavailable("x".into())).code,
            a2a::error_code::INTERNAL_ERROR
        );
    }
}
