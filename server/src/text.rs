//! The texts errand writes for the model, as the seed's decorator does: an
//! acknowledgement at submit, a notice on each tool's description, and a
//! message with each completion. Kept together so their wording is one voice.
use crate::model::{CompletionRecord, Outcome, TaskRecord};

/// Appended to every tool description in `ListTools`.
pub const ASYNC_NOTICE: &str = "This tool is asynchronous: calling it returns a task ID at once, \
and the result arrives later in a separate message that carries the same task ID. \
Do not guess or fabricate the result while waiting; continue with other work.";

/// The tool description a model sees.
pub fn tool_description(description: &str) -> String {
    if description.trim().is_empty() {
        ASYNC_NOTICE.to_string()
    } else {
        format!("{}\n\n{ASYNC_NOTICE}", description.trim_end())
    }
}

/// The error message of a task no worker took within its queue timeout.
pub fn queue_timeout(task: &TaskRecord) -> String {
    let waited = task
        .queue_deadline
        .and_then(|d| d.duration_since(task.created_at).ok())
        .unwrap_or_default();
    queue_timeout_after(&task.tool, waited)
}

/// [`queue_timeout`] of a call to tool key `tool` whose queue timeout
/// (from submit) was `waited`.
pub fn queue_timeout_after(tool: &str, waited: std::time::Duration) -> String {
    format!(
        "no worker took this call to `{}` within its queue timeout of {} ms: no worker \
serving the tool was connected with room; try again later or use another tool",
        crate::tenant::strip(tool),
        crate::model::millis(waited)
    )
}

/// Appended to the ack of a call to a tool no connected worker serves.
pub fn unserved_notice(task: &TaskRecord) -> String {
    let wait = task
        .queue_deadline
        .and_then(|d| d.duration_since(task.created_at).ok())
        .unwrap_or_default();
    format!(
        " Note: no worker serves tool `{}` right now. The call waits in the queue for one, \
and may time out (error code queue_timeout) if none takes it within {} ms.",
        crate::tenant::strip(&task.tool),
        crate::model::millis(wait)
    )
}

/// The text `SubmitTool` returns for the model.
pub fn ack(task: &TaskRecord) -> String {
    format!(
        "Task {id} submitted: tool `{tool}` is running in the background with arguments {args}. \
Its result is not available yet; it will arrive later in a message that carries task ID {id}. \
Do not guess, invent or fabricate the result. Continue with other work, and use the result only once that message arrives.",
        id = task.id,
        tool = crate::tenant::strip(&task.tool),
        args = task.arguments,
    )
}

/// Most bytes of a result (or error message) a completion's `message`
/// repeats: the whole outcome travels once, in `result_json` or `error`, so
/// a completion is never twice the size of its result.
pub const MAX_QUOTED_BYTES: usize = 64 * 1024;

/// The text a completion carries for the model.
pub fn completion_message(c: &CompletionRecord) -> String {
    let head = format!(
        "Async result for task {} (tool `{}`",
        c.task_id,
        crate::tenant::strip(&c.tool)
    );
    match &c.outcome {
        Outcome::Result(json) if json.len() <= MAX_QUOTED_BYTES => {
            format!("{head}) succeeded: {json}")
        }
        Outcome::Result(json) => format!(
            "{head}) succeeded. Its result is {} bytes, too long to repeat here: it is the \
             completion's result_json.",
            json.len()
        ),
        Outcome::Error { code, message } => {
            let mut end = message.len().min(MAX_QUOTED_BYTES);
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            let cut = if end < message.len() { " [...]" } else { "" };
            format!(
                "{head}) ended as {}: [{code}] {}{cut}",
                c.state.name(),
                &message[..end]
            )
        }
    }
}
