//! `errand.v1.ToolService`: what agents call.
//!
//! Every name a client sends (session, tool) is keyed by the caller's tenant
//! before it reaches the scheduler, and every task is checked to be the
//! caller's before it is shown or cancelled: another tenant's task is
//! NOT_FOUND.
use std::{sync::Arc, time::Instant};

use errand_proto::v1::{self as pb, tool_service_server::ToolService};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{auth::caller, completions::CompletionsStream, convert, listing};
use crate::{
    Error,
    auth::Caller,
    metrics::Metrics,
    model::{SessionKey, TaskRecord},
    quota::{RateLimiter, SlotCounter},
    scheduler::{self, Scheduler},
    sessions::Feed,
    tenant, text,
};

pub struct ToolApi {
    sched: Arc<Scheduler>,
    feed: Feed,
    metrics: Arc<Metrics>,
    streams: SlotCounter,
    submits: RateLimiter,
}

impl ToolApi {
    pub fn new(sched: Arc<Scheduler>, feed: Feed, metrics: Arc<Metrics>) -> Self {
        let rate = sched.config().limits.submits_per_second_per_token;
        Self {
            sched,
            feed,
            metrics,
            streams: SlotCounter::default(),
            submits: RateLimiter::new(rate),
        }
    }

    /// The key of a session the caller named.
    fn session_key(&self, caller: &Caller, session: &str) -> Result<SessionKey, Error> {
        SessionKey::new(&caller.tenant, session, &self.sched.config().limits)
    }

    /// A task of the caller's tenant; anyone else's is NOT_FOUND, with the
    /// very message an unknown ID gets.
    async fn own_task(&self, caller: &Caller, task_id: &str) -> Result<(Uuid, TaskRecord), Error> {
        let id = scheduler::parse_task_id(task_id)?;
        let task = self.sched.get_task(id).await?;
        if tenant::of(&task.session) != &*caller.tenant {
            return Err(scheduler::not_found(id));
        }
        Ok((id, task))
    }

    fn check_rate(&self, caller: &Caller) -> Result<(), Error> {
        if caller.role.is_none() {
            return Ok(()); // auth off: nothing to key a rate by
        }
        self.submits
            .take(&caller.token_id, Instant::now())
            .map_err(|wait| Error::RateLimited {
                message: format!(
                    "this token submits faster than {} per second: retry in {} ms",
                    self.sched.config().limits.submits_per_second_per_token,
                    wait.as_millis().max(1)
                ),
                retry_after: wait,
            })
    }
}

#[tonic::async_trait]
impl ToolService for ToolApi {
    async fn list_tools(
        &self,
        request: Request<pb::ListToolsRequest>,
    ) -> Result<Response<pb::ListToolsResponse>, Status> {
        let caller = caller(&request);
        let tools = self.sched.list_tools(&caller.tenant);
        let depth = self.sched.depth(&caller.tenant);
        Ok(Response::new(pb::ListToolsResponse {
            tools: tools
                .iter()
                .map(|(spec, workers)| {
                    let mut tool = convert::listed_tool(spec, *workers);
                    let (queued, running) =
                        depth.get(spec.name.as_key()).copied().unwrap_or_default();
                    tool.queued = u32::try_from(queued).unwrap_or(u32::MAX);
                    tool.running = u32::try_from(running).unwrap_or(u32::MAX);
                    tool
                })
                .collect(),
        }))
    }

    async fn submit_tool(
        &self,
        request: Request<pb::SubmitToolRequest>,
    ) -> Result<Response<pb::SubmitToolResponse>, Status> {
        let caller = caller(&request);
        self.check_rate(&caller)?;
        let limits = &self.sched.config().limits;
        let sub = convert::submission(request.into_inner(), &caller.tenant, limits)?;
        let (task, deduplicated) = self.sched.submit(sub).await?;
        Ok(Response::new(pb::SubmitToolResponse {
            task_id: task.id.to_string(),
            ack: text::ack(&task),
            task: Some(convert::task(&task)),
            deduplicated,
        }))
    }

    type CompletionsStream = CompletionsStream;

    async fn completions(
        &self,
        request: Request<pb::CompletionsRequest>,
    ) -> Result<Response<Self::CompletionsStream>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let session = self.session_key(&caller, &req.session_id)?;
        let max = self.sched.config().limits.max_streams_per_tenant;
        let slot = self.streams.acquire(&caller.tenant, max).map_err(|open| {
            Error::ResourceExhausted(format!(
                "your tenant has {open} Completions streams open, the limit is {max}: close some (one stream per session is enough)"
            ))
        })?;
        let feed = self.feed.open(session, req.after_seq);
        Ok(Response::new(CompletionsStream::new(
            feed,
            self.metrics.clone(),
            slot,
        )))
    }

    async fn get_task(
        &self,
        request: Request<pb::GetTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let caller = caller(&request);
        let (id, _) = self
            .own_task(&caller, &request.into_inner().task_id)
            .await?;
        let view = self.sched.task_view(id).await?;
        Ok(Response::new(listing::task(&view)))
    }

    async fn cancel_task(
        &self,
        request: Request<pb::CancelTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let caller = caller(&request);
        // A task's session never changes: checked once, it stays the caller's.
        let (id, _) = self
            .own_task(&caller, &request.into_inner().task_id)
            .await?;
        let task = self.sched.cancel(id).await?;
        Ok(Response::new(convert::task(&task)))
    }

    async fn ack_completions(
        &self,
        request: Request<pb::AckCompletionsRequest>,
    ) -> Result<Response<pb::AckCompletionsResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let session = self.session_key(&caller, &req.session_id)?;
        let removed = self.sched.ack_completions(&session, req.up_to_seq).await?;
        Ok(Response::new(pb::AckCompletionsResponse { removed }))
    }

    async fn list_tasks(
        &self,
        request: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let query = listing::task_query(&req, &caller, &self.sched.config().limits)?;
        let views = self.sched.list_tasks(&query).await?;
        let next_page_token = match views.last() {
            Some(last) if views.len() == query.limit => {
                listing::page_token(&crate::store::Cursor::of(&last.task), query.newest_first)
            }
            _ => String::new(),
        };
        Ok(Response::new(pb::ListTasksResponse {
            tasks: views.iter().map(listing::task).collect(),
            next_page_token,
        }))
    }

    async fn list_workers(
        &self,
        request: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let tool = if req.tool.is_empty() {
            None
        } else {
            crate::tools::check_name(&req.tool)?;
            Some(crate::model::ToolKey::new(&caller.tenant, &req.tool))
        };
        let tenant = (caller.role.is_some()).then_some(&*caller.tenant);
        let workers = self
            .sched
            .list_workers(tenant, tool.as_ref().map(|t| t.as_key()));
        let server = self.sched.server_id();
        Ok(Response::new(pb::ListWorkersResponse {
            workers: workers.iter().map(|w| listing::worker(w, server)).collect(),
        }))
    }

    async fn cancel_tasks(
        &self,
        request: Request<pb::CancelTasksRequest>,
    ) -> Result<Response<pb::CancelTasksResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let query = listing::cancel_query(&req, &caller, &self.sched.config().limits)?;
        let cancelled = self.sched.cancel_matching(query, &req.reason).await?;
        Ok(Response::new(pb::CancelTasksResponse { cancelled }))
    }

    async fn retry_task(
        &self,
        request: Request<pb::RetryTaskRequest>,
    ) -> Result<Response<pb::SubmitToolResponse>, Status> {
        let caller = caller(&request);
        self.check_rate(&caller)?;
        let (_, original) = self
            .own_task(&caller, &request.into_inner().task_id)
            .await?;
        let (task, deduplicated) = self.sched.retry(&original).await?;
        let mut out = convert::task(&task);
        out.retry_of = original.id.to_string();
        Ok(Response::new(pb::SubmitToolResponse {
            task_id: task.id.to_string(),
            ack: text::ack(&task),
            task: Some(out),
            deduplicated,
        }))
    }
}
