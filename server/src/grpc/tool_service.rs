//! `errand.v1.ToolService`: what agents call.
//!
//! Every name a client sends (session, tool) is keyed by the caller's tenant
//! before it reaches the core, and every task is checked to be the caller's
//! before it is shown or cancelled: another tenant's task is NOT_FOUND.
use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use errand_proto::v1::{self as pb, tool_service_server::ToolService};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, metadata::MetadataValue};

use crate::{
    Error,
    auth::Caller,
    core::Core,
    model::TaskRecord,
    quota::{Counter, RateLimiter, Slot},
    sessions, tenant, text,
};

pub struct ToolApi {
    core: Arc<Core>,
    streams: Counter,
    submits: RateLimiter,
}

impl ToolApi {
    pub fn new(core: Arc<Core>) -> Self {
        let rate = core.config().limits.submits_per_second_per_token;
        Self {
            core,
            streams: Counter::default(),
            submits: RateLimiter::new(rate),
        }
    }

    /// The core's key of a session the caller named.
    fn session_key(&self, caller: &Caller, session: &str) -> Result<String, Status> {
        self.core.check_session(session)?;
        if session.contains(tenant::SEP) {
            return Err(Status::invalid_argument(
                "session_id may not contain the control character U+001F",
            ));
        }
        Ok(tenant::key(&caller.tenant, session))
    }

    /// A task of the caller's tenant; anyone else's is NOT_FOUND, with the
    /// very message an unknown ID gets.
    async fn own_task(&self, caller: &Caller, task_id: &str) -> Result<TaskRecord, Status> {
        let task = self.core.get_task(task_id).await?;
        if tenant::of(&task.session) != &*caller.tenant {
            return Err(Error::NotFound(format!(
                "no task {task_id}: it never existed here or is no longer retained"
            ))
            .into());
        }
        Ok(task)
    }

    fn check_rate(&self, caller: &Caller) -> Result<(), Status> {
        if caller.role.is_none() {
            return Ok(()); // auth off: nothing to key a rate by
        }
        self.submits
            .take(&caller.token_id, Instant::now())
            .map_err(|wait| {
                let ms = wait.as_millis().max(1) as u64;
                let mut status = Status::resource_exhausted(format!(
                    "this token submits faster than {} per second: retry in {ms} ms",
                    self.core.config().limits.submits_per_second_per_token
                ));
                status
                    .metadata_mut()
                    .insert("retry-after-ms", MetadataValue::from(ms));
                status
                    .metadata_mut()
                    .insert("retry-after", MetadataValue::from(ms.div_ceil(1000)));
                status
            })
    }
}

/// A `Completions` stream that holds its tenant's stream slot while open.
pub struct CompletionsStream {
    inner: ReceiverStream<Result<pb::Completion, Status>>,
    _slot: Slot,
    core: Arc<Core>,
}

impl Stream for CompletionsStream {
    type Item = Result<pb::Completion, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

impl Drop for CompletionsStream {
    fn drop(&mut self) {
        self.core.metrics().stream_closed();
    }
}

#[tonic::async_trait]
impl ToolService for ToolApi {
    async fn list_tools(
        &self,
        request: Request<pb::ListToolsRequest>,
    ) -> Result<Response<pb::ListToolsResponse>, Status> {
        let caller = Caller::of(&request);
        Ok(Response::new(pb::ListToolsResponse {
            tools: self.core.list_tools(&caller.tenant),
        }))
    }

    async fn submit_tool(
        &self,
        request: Request<pb::SubmitToolRequest>,
    ) -> Result<Response<pb::SubmitToolResponse>, Status> {
        let caller = Caller::of(&request);
        self.check_rate(&caller)?;
        let mut req = request.into_inner();
        req.session_id = self.session_key(&caller, &req.session_id)?;
        req.tool = tenant::key(&caller.tenant, &req.tool);
        let (task, deduplicated) = self.core.submit(req).await?;
        Ok(Response::new(pb::SubmitToolResponse {
            task_id: task.id.to_string(),
            ack: text::ack(&task),
            task: Some(task.to_proto()),
            deduplicated,
        }))
    }

    type CompletionsStream = CompletionsStream;

    async fn completions(
        &self,
        request: Request<pb::CompletionsRequest>,
    ) -> Result<Response<Self::CompletionsStream>, Status> {
        let caller = Caller::of(&request);
        let req = request.into_inner();
        let session = self.session_key(&caller, &req.session_id)?;
        let max = self.core.config().limits.max_streams_per_tenant;
        let slot = self.streams.acquire(&caller.tenant, max).map_err(|open| {
            Status::resource_exhausted(format!(
                "your tenant has {open} Completions streams open, the limit is {max}: close some (one stream per session is enough)"
            ))
        })?;
        self.core.metrics().stream_opened();
        Ok(Response::new(CompletionsStream {
            inner: sessions::completions(self.core.clone(), session, req.after_seq),
            _slot: slot,
            core: self.core.clone(),
        }))
    }

    async fn get_task(
        &self,
        request: Request<pb::GetTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let caller = Caller::of(&request);
        let task = self
            .own_task(&caller, &request.into_inner().task_id)
            .await?;
        Ok(Response::new(task.to_proto()))
    }

    async fn cancel_task(
        &self,
        request: Request<pb::CancelTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let caller = Caller::of(&request);
        let task_id = request.into_inner().task_id;
        // A task's session never changes: checked once, it stays the caller's.
        self.own_task(&caller, &task_id).await?;
        let task = self.core.cancel(&task_id).await?;
        Ok(Response::new(task.to_proto()))
    }

    async fn ack_completions(
        &self,
        request: Request<pb::AckCompletionsRequest>,
    ) -> Result<Response<pb::AckCompletionsResponse>, Status> {
        let caller = Caller::of(&request);
        let req = request.into_inner();
        let session = self.session_key(&caller, &req.session_id)?;
        let removed = self.core.ack_completions(&session, req.up_to_seq).await?;
        Ok(Response::new(pb::AckCompletionsResponse { removed }))
    }
}
