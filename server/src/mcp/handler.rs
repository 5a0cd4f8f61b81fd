//! The MCP `ServerHandler` over errand's [`Agent`]: `tools/list`,
//! `tools/call` (a task with the Tasks extension, else a wait for the
//! result) and `tasks/get`, `tasks/update`, `tasks/cancel`, all on the
//! store through the agent API: no task lives only in this adapter. The
//! other methods are -32601 ([`malformed::not_found`]).
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    convert::{self, TaskTiming},
    malformed,
    progress::Progress,
};
use crate::{
    agents::{Agent, Call},
    auth::Caller,
    error::Kind,
    scheduler::{LeftRunning, views::TaskView},
};
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams,
        CompleteRequestMethod, CompleteRequestParams, CompleteResult, ConstString, ContentBlock,
        CreateTaskResult, CustomRequest, CustomResult, GetPromptRequestMethod,
        GetPromptRequestParams, GetPromptResponse, GetTaskParams, GetTaskResult, Implementation,
        ListPromptsRequestMethod, ListPromptsResult, ListResourceTemplatesRequestMethod,
        ListResourceTemplatesResult, ListResourcesRequestMethod, ListResourcesResult,
        ListToolsResult, PaginatedRequestParams, ProtocolVersion, ReadResourceRequestMethod,
        ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities, ServerConfig,
        SetLevelRequestMethod, SubscribeRequestMethod, SubscribeRequestParams, TaskAckResult, Tool,
        UnsubscribeRequestMethod, UnsubscribeRequestParams, UpdateTaskParams,
    },
    service::RequestContext,
};
use tokio_util::sync::CancellationToken;

/// The header that names the errand session of an MCP request.
pub const SESSION_HEADER: &str = "errand-session";

/// How the adapter behaves, the same for every request.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The session of requests without an `Errand-Session` header.
    pub default_session: String,
    pub timing: TaskTiming,
    /// Most bytes of tool definitions one `tools/list` page carries (the
    /// server's message limit); a longer list goes on after `nextCursor`.
    pub page_bytes: usize,
    /// Least time between two `notifications/progress` of one call
    /// (`--progress-interval`): the latest report waiting wins.
    pub progress_interval: Duration,
}

/// One handler per MCP connection (or stateless request).
#[derive(Clone)]
pub struct McpHandler {
    agent: Arc<dyn Agent>,
    settings: Arc<Settings>,
    /// Cancelled when the server stops (its drain over): a call still
    /// waiting for its task answers then, not cancelling the task, and
    /// says what becomes of it (`left_running`).
    stopping: CancellationToken,
    left_running: LeftRunning,
}

impl McpHandler {
    pub fn new(agent: Arc<dyn Agent>, settings: Settings) -> Self {
        Self {
            agent,
            settings: Arc::new(settings),
            stopping: CancellationToken::new(),
            left_running: LeftRunning::NextStart,
        }
    }

    /// This handler, telling a call still waiting when the server stops
    /// that its task `left` ([`crate::scheduler::Scheduler::left_running`];
    /// by default, that it runs again at the next start).
    pub fn leaving_running(mut self, left: LeftRunning) -> Self {
        self.left_running = left;
        self
    }

    /// This handler, answering waiting calls once `stopping` is cancelled.
    pub fn stopping_on(mut self, stopping: CancellationToken) -> Self {
        self.stopping = stopping;
        self
    }

    /// The caller (put in the HTTP request by the auth layer; anonymous over
    /// stdio, where the remote server checks the token).
    fn caller(&self, ctx: &RequestContext<RoleServer>) -> Caller {
        ctx.extensions
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.extensions.get::<Caller>().cloned())
            .unwrap_or_else(Caller::anonymous)
    }

    /// The session the `Errand-Session` header names (see
    /// [`super::session_header::session`]).
    fn session(&self, ctx: &RequestContext<RoleServer>) -> Result<String, ErrorData> {
        let header = ctx
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.headers.get(SESSION_HEADER));
        super::session_header::session(header, &self.settings.default_session)
    }

    /// Waits for `task` to finish. When the client gives up first (MCP
    /// `notifications/cancelled`, or the HTTP request dropped), the task is
    /// cancelled only if `own_task`: this request made it. A submit that
    /// joined an identical call in flight or matched an earlier submit's
    /// key got another caller's task, which runs on for that caller.
    async fn wait_for_result(
        &self,
        caller: &Caller,
        task: TaskView,
        own_task: bool,
        unserved: Option<String>,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        // The run's timeout, plus slack for queueing and the result's trip.
        let until = Instant::now() + task.task.timeout + Duration::from_secs(5);
        let id = task.task.id.to_string();
        let mut progress = ctx.meta.get_progress_token().map(Progress::new);
        if let Some(p) = progress.as_mut()
            && let Some(note) = unserved
        {
            let _ = ctx.peer.notify_progress(p.waiting(&note)).await;
        }
        let view = tokio::select! {
            biased;
            t = self.wait_reporting(caller, task, until, progress, ctx) => t.map_err(convert::error)?,
            // Before the request's own token: a stop is not the client's
            // cancel, and the task is kept (`Scheduler::left_running`).
            // The drain is over: a task it finished (its wake-up may not
            // have reached this wait yet) is answered with its result.
            _ = self.stopping.cancelled() => match self.agent.get_task(caller, &id).await {
                Ok(view) if view.task.state.is_final() => view,
                _ => return Err(ErrorData::internal_error(
                    format!(
                        "the server is shutting down before task {id} finished: the task was \
                         not cancelled and {}",
                        self.left_running.for_task(&id)
                    ),
                    None,
                )),
            },
            _ = ctx.ct.cancelled() => {
                if !own_task {
                    return Err(ErrorData::internal_error(
                        format!("the request was cancelled; task {id} was not: it is shared with another call"),
                        None,
                    ));
                }
                let _ = self.agent.cancel_task(caller, &id).await;
                return Err(ErrorData::internal_error("the request was cancelled", None));
            }
        };
        let task = &view.task;
        if !task.state.is_final() {
            return Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                "task {id} is still {} after its timeout; it was not cancelled",
                convert::meta(task).0[convert::META_KEY]["status"]
            ))])
            .into());
        }
        let result = convert::call_result(task).unwrap_or_else(|| {
            let mut r = CallToolResult::error(vec![ContentBlock::text(format!(
                "CANCELLED: task {id} was cancelled"
            ))]);
            r.meta = Some(convert::meta(task));
            r
        });
        Ok(result.into())
    }
}

impl McpHandler {
    /// `task` once final or at `until`; with `progress`, its new reports
    /// go to the client meanwhile: each as it is made, at most one per
    /// [`Settings::progress_interval`] (a report made within the interval
    /// waits for its end, the latest wins; one the result overtakes is not
    /// sent, as no report follows its task's completion on a session's
    /// event stream: the result says more).
    async fn wait_reporting(
        &self,
        caller: &Caller,
        mut task: TaskView,
        until: Instant,
        progress: Option<Progress>,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<TaskView, crate::Error> {
        let Some(mut progress) = progress else {
            return self.agent.wait(caller, task, until).await;
        };
        let interval = self.settings.progress_interval;
        // When the next report may go out.
        let mut free_at = Instant::now();
        loop {
            if Instant::now() < free_at {
                let step = until.min(free_at);
                task = self.agent.wait(caller, task, step).await?;
                if task.task.state.is_final() || step >= until {
                    return Ok(task);
                }
            }
            task = (self.agent)
                .wait_progress(caller, task, progress.last(), until)
                .await?;
            if task.task.state.is_final() || Instant::now() >= until {
                return Ok(task);
            }
            if let Some(note) = progress.report(&task) {
                let _ = ctx.peer.notify_progress(note).await;
                free_at = Instant::now() + interval;
            }
        }
    }
}

impl ServerHandler for McpHandler {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tasks()
                .build(),
        )
        .with_server_info(Implementation::new("errand", env!("CARGO_PKG_VERSION")))
    }

    /// The caller's tools by name, in pages of at most
    /// [`Settings::page_bytes`] (a host reads one page at a time: 800 tools
    /// at the schema and description limits made one answer of 65 MB);
    /// `nextCursor`, opaque, goes on. A usual list is one page. Errors:
    /// invalid params for a cursor this server did not issue.
    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let caller = self.caller(&ctx);
        let after = match request.and_then(|r| r.cursor) {
            Some(cursor) => {
                Some(crate::agents::listing::parse_tool_token(&cursor).map_err(convert::error)?)
            }
            None => None,
        };
        let tools = self
            .agent
            .list_tools(&caller)
            .await
            .map_err(convert::error)?;
        let listed = tools
            .into_iter()
            .filter(|t| after.as_ref().is_none_or(|a| t.name.as_str() > a.as_str()))
            .map(|t| {
                Tool::new(
                    t.name,
                    convert::description(&t.description),
                    convert::input_schema(&t.input_schema_json),
                )
            });
        let size = |tool: &Tool| serde_json::to_vec(tool).map_or(0, |v| v.len());
        let (page, cut) =
            crate::agents::listing::page_within(listed, size, self.settings.page_bytes, usize::MAX);
        let next = (page.last())
            .filter(|_| cut)
            .map(|last| crate::agents::listing::tool_page_token(&last.name));
        let mut result = ListToolsResult::with_all_items(page);
        result.next_cursor = next;
        Ok(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let (caller, session) = (self.caller(&ctx), self.session(&ctx)?);
        // Tasks need the extension and protocol 2026-07-28: a 2025-11-25
        // session waits for the result even if it declared the extension.
        let as_task = ctx
            .client_capabilities()
            .is_some_and(|c| c.supports_tasks())
            && ctx
                .protocol_version()
                .is_none_or(|v| v >= ProtocolVersion::V_2026_07_28);
        let arguments_json = match &request.arguments {
            Some(args) => serde_json::to_string(args)
                .map_err(|e| ErrorData::invalid_params(e.to_string(), None))?,
            None => String::new(),
        };
        let call = Call {
            session,
            tool: request.name.to_string(),
            arguments_json,
            idempotency_key: String::new(),
        };
        // The session comes from a header: an error names it.
        let submitted = match (self.agent.submit(&caller, call).await)
            .map_err(|e| e.renamed(&convert::WORDS))
        {
            Ok(submitted) => submitted,
            // Arguments the schema refuses: a result the model can read and
            // fix, with no task created. Other bad params (a tool name no
            // tool can have, the session header) are the request's: -32602.
            Err(e)
                if e.kind() == Kind::InvalidArgument && e.to_string().starts_with("arguments") =>
            {
                return Ok(
                    CallToolResult::error(vec![ContentBlock::text(e.into_message())]).into(),
                );
            }
            Err(e) => return Err(convert::error(e)),
        };
        // A joined or deduplicated submit got another call's task.
        let own_task = submitted.own_task();
        let task = submitted.task;
        if as_task {
            let created = CreateTaskResult::new(convert::task(
                &task.task,
                Some(submitted.ack),
                self.settings.timing,
            ))
            .with_meta(convert::meta(&task.task));
            return Ok(CallToolResponse::Task(created));
        }
        // The ack says when no worker serves the tool: the first progress.
        let unserved = crate::text::unserved_notice(&task.task);
        let unserved = submitted.ack.ends_with(&unserved).then_some(unserved);
        self.wait_for_result(&caller, task, own_task, unserved, &ctx)
            .await
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        let caller = self.caller(&ctx);
        let task = self
            .agent
            .get_task(&caller, &request.task_id)
            .await
            .map_err(convert::error)?;
        let mut result = GetTaskResult::new(convert::detailed(&task, self.settings.timing));
        result.meta = Some(convert::meta(&task.task));
        Ok(result)
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // errand never asks for input: the task must exist, nothing changes.
        let caller = self.caller(&ctx);
        self.agent
            .get_task(&caller, &request.task_id)
            .await
            .map_err(convert::error)?;
        Ok(())
    }

    async fn on_custom_request(
        &self,
        request: CustomRequest,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CustomResult, ErrorData> {
        let params = request.params.as_ref();
        // `tasks/update` without `inputResponses`: nothing to deliver, the
        // same empty ack as with them.
        if request.method == "tasks/update"
            && let Some(task_id) = malformed::update_task_id(params)
        {
            let caller = self.caller(&ctx);
            self.agent
                .get_task(&caller, task_id)
                .await
                .map_err(convert::error)?;
            let ack = serde_json::to_value(TaskAckResult::new())
                .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
            return Ok(CustomResult::new(ack));
        }
        let parse_error = match request.method.as_str() {
            "tools/call" => request.params_as::<CallToolRequestParams>().err(),
            "tasks/get" => request.params_as::<GetTaskParams>().err(),
            "tasks/update" => request.params_as::<UpdateTaskParams>().err(),
            "tasks/cancel" => request.params_as::<CancelTaskParams>().err(),
            _ => None,
        };
        Err(malformed::error(
            &request.method,
            params,
            parse_error.map(|e| e.to_string()),
        ))
    }

    // The features errand does not serve: -32601 naming the method and what
    // to call (rmcp's defaults answer with the bare method name).
    async fn complete(
        &self,
        _: CompleteRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        Err(malformed::not_found(CompleteRequestMethod::VALUE))
    }

    #[allow(deprecated)] // Logging (SEP-2577), which errand does not serve.
    async fn set_level(
        &self,
        _: rmcp::model::SetLevelRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Err(malformed::not_found(SetLevelRequestMethod::VALUE))
    }

    async fn get_prompt(
        &self,
        _: GetPromptRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        Err(malformed::not_found(GetPromptRequestMethod::VALUE))
    }

    async fn list_prompts(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Err(malformed::not_found(ListPromptsRequestMethod::VALUE))
    }

    async fn list_resources(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Err(malformed::not_found(ListResourcesRequestMethod::VALUE))
    }

    async fn list_resource_templates(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Err(malformed::not_found(
            ListResourceTemplatesRequestMethod::VALUE,
        ))
    }

    async fn read_resource(
        &self,
        _: ReadResourceRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        Err(malformed::not_found(ReadResourceRequestMethod::VALUE))
    }

    async fn subscribe(
        &self,
        _: SubscribeRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Err(malformed::not_found(SubscribeRequestMethod::VALUE))
    }

    async fn unsubscribe(
        &self,
        _: UnsubscribeRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Err(malformed::not_found(UnsubscribeRequestMethod::VALUE))
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let caller = self.caller(&ctx);
        match self.agent.cancel_task(&caller, &request.task_id).await {
            // A finished task does not change; the ack is empty either way.
            Ok(_) => Ok(()),
            Err(e) if e.kind() == Kind::FailedPrecondition => Ok(()),
            Err(e) => Err(convert::error(e)),
        }
    }
}
