//! The [`Agent`] seam of the MCP front end: errand's agent side as one
//! caller sees it, in domain types. [`AgentApi`] is it in process;
//! `errand mcp --stdio` implements it over the wire (converting at its own
//! edge), so one handler serves both.
use std::time::Instant;

use crate::{
    Error,
    auth::Caller,
    config::Limits,
    model::{SessionKey, Submission, ToolKey},
    scheduler::{Admitted, views::TaskView},
};

use super::AgentApi;

/// A tool as an agent front end lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolListing {
    /// The client's name of the tool.
    pub name: String,
    /// The tool's own description (without the asynchronous notice
    /// `ListTools` adds for models).
    pub description: String,
    /// Its arguments' JSON Schema as JSON text; "" for any object.
    pub input_schema_json: String,
}

/// A tool call as a front end makes it: names as the client gave them,
/// checked and keyed by [`Call::submission`]; the tool's and the server's
/// defaults for everything else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Call {
    pub session: String,
    pub tool: String,
    /// The arguments as a JSON object's text ("" for none).
    pub arguments_json: String,
    /// "" for none.
    pub idempotency_key: String,
}

/// What a submit (or a retry) answers.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The task as submitted (nothing of the live state added).
    pub task: TaskView,
    /// The acknowledgement text for the model.
    pub ack: String,
    /// New, an idempotent repeat, or joined to an identical call in flight.
    pub admitted: Admitted,
}

impl Submitted {
    /// Whether this submit made the task: not a repeat, not joined to
    /// another caller's call.
    pub fn own_task(&self) -> bool {
        self.admitted == Admitted::New
    }
}

impl Call {
    /// The call as `tenant`'s submission. Errors (INVALID_ARGUMENT), in this
    /// order: a bad session name ([`SessionKey::new`]); a tool or
    /// idempotency key with a NUL; a tool name no tool can have (not
    /// NOT_FOUND: it is wrong whatever is registered).
    pub fn submission(self, tenant: &str, limits: &Limits) -> Result<Submission, Error> {
        let session = SessionKey::new(tenant, &self.session, limits)?;
        crate::fields::identifier("tool", &self.tool)?;
        crate::tools::check_name(&self.tool)?;
        crate::fields::identifier("idempotency_key", &self.idempotency_key)?;
        Ok(Submission {
            session,
            tool: ToolKey::new(tenant, &self.tool),
            arguments_json: self.arguments_json,
            timeout_ms: 0,
            queue_timeout_ms: 0,
            idempotency_key: self.idempotency_key,
            delivery: None,
            result_budget_bytes: 0,
            join_in_flight: None,
            fallback: None,
            retry_of: None,
        })
    }
}

/// The agent side of errand, as one caller sees it. Errors are the
/// [`AgentApi`]'s (or, remotely, the server's, as [`Error`]s of their kind).
#[async_trait::async_trait]
pub trait Agent: Send + Sync + 'static {
    /// Every tool of the caller's tenant, sorted by name.
    async fn list_tools(&self, caller: &Caller) -> Result<Vec<ToolListing>, Error>;
    async fn submit(&self, caller: &Caller, call: Call) -> Result<Submitted, Error>;
    async fn get_task(&self, caller: &Caller, task_id: &str) -> Result<TaskView, Error>;
    /// Cancels a task without a reason; the task as cancelled.
    async fn cancel_task(&self, caller: &Caller, task_id: &str) -> Result<TaskView, Error>;
    /// `task` once it is final, or as it is at `until`.
    async fn wait(
        &self,
        caller: &Caller,
        task: TaskView,
        until: Instant,
    ) -> Result<TaskView, Error>;
    /// `task` once it is final or has a progress report with an index
    /// above `after`, or as it is at `until`.
    async fn wait_progress(
        &self,
        caller: &Caller,
        task: TaskView,
        after: u64,
        until: Instant,
    ) -> Result<TaskView, Error>;
}

#[async_trait::async_trait]
impl Agent for AgentApi {
    async fn list_tools(&self, caller: &Caller) -> Result<Vec<ToolListing>, Error> {
        Ok(self
            .tools(caller, false)
            .into_iter()
            .map(|t| ToolListing {
                name: t.spec.name.name().to_string(),
                description: t.spec.description.to_string(),
                input_schema_json: t.spec.input_schema_json.to_string(),
            })
            .collect())
    }

    async fn submit(&self, caller: &Caller, call: Call) -> Result<Submitted, Error> {
        self.submit_with(caller, |tenant, limits| call.submission(tenant, limits))
            .await
    }

    async fn get_task(&self, caller: &Caller, task_id: &str) -> Result<TaskView, Error> {
        self.task(caller, task_id).await
    }

    async fn cancel_task(&self, caller: &Caller, task_id: &str) -> Result<TaskView, Error> {
        Ok(self.cancel(caller, task_id, String::new()).await?.into())
    }

    async fn wait(
        &self,
        caller: &Caller,
        task: TaskView,
        until: Instant,
    ) -> Result<TaskView, Error> {
        self.wait_final(caller, &task.task, until).await
    }

    async fn wait_progress(
        &self,
        caller: &Caller,
        task: TaskView,
        after: u64,
        until: Instant,
    ) -> Result<TaskView, Error> {
        self.wait_progress(caller, &task.task, after, until).await
    }
}
