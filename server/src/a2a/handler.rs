//! A2A's `RequestHandler` over errand's agent API ([`AgentApi`]): what
//! gRPC clients reach (tenant keying, quotas, the scheduler, the store),
//! called in process. No task lives only in this adapter, so task
//! IDs stay valid across restarts and on every server of a shared store.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use a2a::{
    A2AError, AgentCard, CancelTaskRequest, DeleteTaskPushNotificationConfigRequest,
    GetExtendedAgentCardRequest, GetTaskPushNotificationConfigRequest, GetTaskRequest,
    ListTaskPushNotificationConfigsRequest, ListTaskPushNotificationConfigsResponse,
    ListTasksRequest, ListTasksResponse, SendMessageRequest, SendMessageResponse, StreamResponse,
    SubscribeToTaskRequest, Task, TaskPushNotificationConfig, TaskState,
};
use a2a_server::{RequestHandler, ServiceParams};
use axum::http::HeaderValue;
use futures::stream::BoxStream;
use tokio_util::sync::CancellationToken;

use super::{convert, request, stream};
use crate::{
    agents::{Agent, AgentApi, listing},
    auth::Caller,
    model::TaskState as State,
    net::bearer::Bearer,
    scheduler::views::TaskView,
};

/// Tasks listed per `ListTasks` page when the request sets no size.
const DEFAULT_PAGE: i32 = 50;
/// The largest `ListTasks` page the agent API serves.
const MAX_PAGE: i32 = listing::MAX_PAGE as i32;

/// Serves A2A for every binding on the listener.
pub struct A2aHandler {
    pub(super) api: Arc<AgentApi>,
    pub(super) bearer: Bearer,
    /// `http(s)://host:port` of this listener as clients reach it.
    pub(super) public_url: String,
    /// Cancelled when the server stops (its drain over): a blocking
    /// `SendMessage` still waiting answers with its task as it is then,
    /// not cancelled (`Scheduler::left_running` says what becomes of it).
    pub(super) stopping: CancellationToken,
}

impl A2aHandler {
    pub fn new(api: Arc<AgentApi>, bearer: Bearer, public_url: String) -> Self {
        Self {
            api,
            bearer,
            public_url: public_url.trim_end_matches('/').to_string(),
            stopping: CancellationToken::new(),
        }
    }

    /// The version check and the caller of a request. The HTTP layer has
    /// already refused (and counted) bad tokens; this reads the one it let
    /// through, the same way for JSON-RPC, HTTP+JSON and gRPC metadata.
    fn caller(&self, params: &ServiceParams) -> Result<Caller, A2AError> {
        request::check_version(params)?;
        let header = params
            .get("authorization")
            .and_then(|v| v.first())
            .and_then(|v| HeaderValue::from_str(v).ok());
        self.bearer
            .caller(header.as_ref())
            .map_err(|(_, message)| A2AError::invalid_request(message))
    }

    /// The card as `caller` sees it: its tenant's tools as skills.
    pub async fn card(&self, caller: Option<&Caller>) -> AgentCard {
        let tools = match caller {
            Some(c) => self.api.list_tools(c).await.unwrap_or_default(),
            None => Vec::new(),
        };
        super::card::card(&self.public_url, &tools, self.bearer.tokens.is_some())
    }

    async fn skills(&self, caller: &Caller) -> Vec<String> {
        let tools = self.api.list_tools(caller).await.unwrap_or_default();
        tools.into_iter().map(|t| t.name).collect()
    }

    /// Submits the message's tool call; the task as queued (or as it is,
    /// for a message ID seen before) and the ack text.
    async fn submit(
        &self,
        caller: &Caller,
        req: &SendMessageRequest,
    ) -> Result<(TaskView, String, bool), A2AError> {
        if request::skill(req).is_none() {
            return Err(request::no_skill(&self.skills(caller).await));
        }
        let parsed = request::submit(req)?;
        let call = parsed.request;
        let submitted = (self.api.submit(caller, call).await).map_err(convert::error)?;
        Ok((submitted.task, submitted.ack, parsed.return_immediately))
    }

    async fn get(&self, caller: &Caller, id: &str) -> Result<TaskView, A2AError> {
        self.api.task(caller, id).await.map_err(task_id_error)
    }
}

/// An error reading a task by its A2A id: an id that is not an errand task
/// ID (a UUID) names no task, `TaskNotFoundError` as for an unknown one;
/// others as [`convert::error`] maps them.
pub(super) fn task_id_error(e: crate::Error) -> A2AError {
    if e.kind() == crate::error::Kind::InvalidArgument {
        return A2AError::new(
            a2a::error_code::TASK_NOT_FOUND,
            "no task with this id: errand's task ids are UUIDs, as SendMessage returned them",
        );
    }
    convert::error(e)
}

/// errand's states of an A2A state, for `ListTasks`' filter.
fn statuses(state: &TaskState) -> Result<Vec<State>, A2AError> {
    Ok(match state {
        TaskState::Unspecified => Vec::new(),
        TaskState::Submitted => vec![State::Queued],
        TaskState::Working => vec![State::Running],
        TaskState::Completed => vec![State::Succeeded],
        TaskState::Failed => vec![State::Failed, State::TimedOut],
        TaskState::Canceled => vec![State::Cancelled],
        other => {
            return Err(A2AError::invalid_params(format!(
                "no errand task is ever {}: filter by SUBMITTED, WORKING, COMPLETED, \
                 FAILED or CANCELED",
                convert::state_name(other)
            )));
        }
    })
}

#[async_trait::async_trait]
impl RequestHandler for A2aHandler {
    async fn send_message(
        &self,
        params: &ServiceParams,
        req: SendMessageRequest,
    ) -> Result<SendMessageResponse, A2AError> {
        let caller = self.caller(params)?;
        let (task, ack, immediately) = self.submit(&caller, &req).await?;
        if immediately || task.task.state.is_final() {
            return Ok(SendMessageResponse::Task(convert::task(&task, Some(ack))));
        }
        // The run's timeout, plus slack for queueing and the result's trip.
        let until = Instant::now() + task.task.timeout + Duration::from_secs(5);
        let id = task.task.id.to_string();
        let task = tokio::select! {
            biased;
            t = self.api.wait(&caller, task, until) => t.map_err(convert::error)?,
            // Answered before the connection closes: the task as it is,
            // not final, for GetTask (here once the server is back, or on
            // another server sharing its store).
            _ = self.stopping.cancelled() => self.get(&caller, &id).await?,
        };
        Ok(SendMessageResponse::Task(convert::task(&task, None)))
    }

    async fn send_streaming_message(
        &self,
        params: &ServiceParams,
        req: SendMessageRequest,
    ) -> Result<BoxStream<'static, Result<StreamResponse, A2AError>>, A2AError> {
        let caller = self.caller(params)?;
        let (task, ack, _) = self.submit(&caller, &req).await?;
        stream::follow(self, caller, task, Some(ack)).await
    }

    async fn get_task(
        &self,
        params: &ServiceParams,
        req: GetTaskRequest,
    ) -> Result<Task, A2AError> {
        let caller = self.caller(params)?;
        Ok(convert::task(&self.get(&caller, &req.id).await?, None))
    }

    async fn list_tasks(
        &self,
        params: &ServiceParams,
        req: ListTasksRequest,
    ) -> Result<ListTasksResponse, A2AError> {
        let caller = self.caller(params)?;
        let Some(context) = req.context_id.filter(|c| !c.is_empty()) else {
            return Err(A2AError::invalid_params(
                "ListTasks needs context_id: errand lists one context (session) at a time",
            ));
        };
        let page_size = req.page_size.filter(|&n| n > 0).unwrap_or(DEFAULT_PAGE);
        if page_size > MAX_PAGE {
            return Err(A2AError::invalid_params(format!(
                "page_size {page_size} is over {MAX_PAGE}"
            )));
        }
        let states = req
            .status
            .as_ref()
            .map(statuses)
            .transpose()?
            .unwrap_or_default();
        let page = listing::Page {
            size: page_size.unsigned_abs(),
            token: req.page_token.as_deref().unwrap_or_default(),
            newest_first: false,
        };
        let query = listing::task_query(
            &caller,
            &context,
            "",
            states.into_iter().map(Ok),
            page,
            self.api.limits(),
        )
        .map_err(convert::error)?;
        let listed = self.api.list_tasks(&query).await.map_err(convert::error)?;
        let include_artifacts = req.include_artifacts == Some(true);
        let tasks: Vec<Task> = listed
            .tasks
            .iter()
            .map(|t| {
                let mut task = convert::task(t, None);
                if !include_artifacts {
                    task.artifacts = None;
                }
                task
            })
            .collect();
        Ok(ListTasksResponse {
            tasks,
            next_page_token: listed.next_page_token,
            page_size,
            // Every task of the context matching the filter, on all pages.
            total_size: i32::try_from(listed.total_size).unwrap_or(i32::MAX),
        })
    }

    async fn cancel_task(
        &self,
        params: &ServiceParams,
        req: CancelTaskRequest,
    ) -> Result<Task, A2AError> {
        let caller = self.caller(params)?;
        let task = self.get(&caller, &req.id).await?;
        if task.task.state.is_final() {
            return Err(not_cancelable(&task));
        }
        match self.api.cancel(&caller, &req.id, String::new()).await {
            Ok(task) => Ok(convert::task(&task.into(), None)),
            // It finished meanwhile.
            Err(e) if e.kind() == crate::error::Kind::FailedPrecondition => {
                Err(not_cancelable(&self.get(&caller, &req.id).await?))
            }
            Err(e) => Err(convert::error(e)),
        }
    }

    async fn subscribe_to_task(
        &self,
        params: &ServiceParams,
        req: SubscribeToTaskRequest,
    ) -> Result<BoxStream<'static, Result<StreamResponse, A2AError>>, A2AError> {
        let caller = self.caller(params)?;
        let task = self.get(&caller, &req.id).await?;
        if task.task.state.is_final() {
            let t = &task.task;
            return Err(A2AError::unsupported_operation(format!(
                "task {} is already {} ({}): there is nothing to subscribe to; read it with GetTask",
                t.id,
                convert::state_name(&convert::state(t)),
                convert::status_name(t)
            )));
        }
        stream::follow(self, caller, task, None).await
    }

    async fn create_push_config(
        &self,
        params: &ServiceParams,
        _req: TaskPushNotificationConfig,
    ) -> Result<TaskPushNotificationConfig, A2AError> {
        self.caller(params)?;
        Err(request::push_not_supported())
    }

    async fn get_push_config(
        &self,
        params: &ServiceParams,
        _req: GetTaskPushNotificationConfigRequest,
    ) -> Result<TaskPushNotificationConfig, A2AError> {
        self.caller(params)?;
        Err(request::push_not_supported())
    }

    async fn list_push_configs(
        &self,
        params: &ServiceParams,
        _req: ListTaskPushNotificationConfigsRequest,
    ) -> Result<ListTaskPushNotificationConfigsResponse, A2AError> {
        self.caller(params)?;
        Err(request::push_not_supported())
    }

    async fn delete_push_config(
        &self,
        params: &ServiceParams,
        _req: DeleteTaskPushNotificationConfigRequest,
    ) -> Result<(), A2AError> {
        self.caller(params)?;
        Err(request::push_not_supported())
    }

    async fn get_extended_agent_card(
        &self,
        params: &ServiceParams,
        _req: GetExtendedAgentCardRequest,
    ) -> Result<AgentCard, A2AError> {
        let caller = self.caller(params)?;
        // The public card already lists the caller's skills.
        Ok(self.card(Some(&caller)).await)
    }
}

fn not_cancelable(view: &TaskView) -> A2AError {
    let task = &view.task;
    A2AError::new(
        a2a::error_code::TASK_NOT_CANCELABLE,
        format!(
            "task {} is already {} ({}): only SUBMITTED and WORKING tasks can be canceled",
            task.id,
            convert::state_name(&convert::state(task)),
            convert::status_name(task)
        ),
    )
}

/// The handler shared by the three bindings.
pub type Shared = Arc<A2aHandler>;
