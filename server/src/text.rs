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

/// The text a completion carries for the model.
pub fn completion_message(c: &CompletionRecord) -> String {
    let head = format!(
        "Async result for task {} (tool `{}`",
        c.task_id,
        crate::tenant::strip(&c.tool)
    );
    match &c.outcome {
        Outcome::Result(json) => format!("{head}) succeeded: {json}"),
        Outcome::Error { code, message } => {
            format!("{head}) ended as {}: [{code}] {message}", c.state.name())
        }
    }
}
