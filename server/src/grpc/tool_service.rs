//! `errand.v1.ToolService`: what agents call.
//!
//! Every name a client sends (session, tool) is keyed by the caller's tenant
//! before it reaches the scheduler, and every task is checked to be the
//! caller's before it is shown or cancelled: another tenant's task is
//! NOT_FOUND.
use std::{collections::HashMap, sync::Arc, time::Instant};

use errand_proto::v1::{self as pb, tool_service_server::ToolService};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{auth::caller, completions::CompletionsStream, convert, fields, listing};
use crate::{
    Error,
    auth::Caller,
    metrics::Metrics,
    model::{SessionKey, TaskRecord, TaskState},
    quota::{RateLimiter, SlotCounter},
    scheduler::{self, Scheduler},
    sessions::{Events, Feed},
    tenant, text,
    tools::ToolSpec,
};

pub struct ToolApi {
    sched: Arc<Scheduler>,
    feed: Feed,
    events: Events,
    metrics: Arc<Metrics>,
    streams: SlotCounter,
    submits: RateLimiter,
}

impl ToolApi {
    pub fn new(sched: Arc<Scheduler>, feed: Feed, metrics: Arc<Metrics>) -> Self {
        let rate = sched.config().limits.submits_per_second_per_token;
        let events = Events::new(
            feed.clone(),
            sched.hub().clone(),
            sched.clone(),
            sched.config().progress_interval,
        );
        Self {
            sched,
            feed,
            events,
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

    /// A slot for one more session stream of the caller's tenant.
    fn stream_slot(&self, caller: &Caller) -> Result<crate::quota::Slot, Error> {
        let max = self.sched.config().limits.max_streams_per_tenant;
        self.streams.acquire(&caller.tenant, max).map_err(|open| {
            Error::ResourceExhausted(format!(
                "your tenant has {open} Completions and SessionEvents streams open, the limit is {max}: close some (one stream per session is enough)"
            ))
        })
    }

    /// How this server's streams render completions.
    fn stream_options(&self, results_by_reference: bool) -> convert::StreamOptions {
        let limits = &self.sched.config().limits;
        convert::StreamOptions {
            max_bytes: limits.max_message_bytes,
            results_by_reference,
            default_budget: limits.result_budget_bytes as u64,
        }
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
        let req = request.into_inner();
        let mut tools = self.sched.list_tools(&caller.tenant);
        if req.only_served {
            tools.retain(|(_, workers)| *workers > 0);
        }
        let depth = self.sched.depth(&caller.tenant);
        // Room for the response's framing and its next_page_token.
        let budget = self
            .sched
            .config()
            .limits
            .max_message_bytes
            .saturating_sub(1024);
        Ok(Response::new(page(&tools, &depth, &req, budget)?))
    }

    async fn submit_tool(
        &self,
        request: Request<pb::SubmitToolRequest>,
    ) -> Result<Response<pb::SubmitToolResponse>, Status> {
        let caller = caller(&request);
        self.check_rate(&caller)?;
        let limits = &self.sched.config().limits;
        let sub = convert::submission(request.into_inner(), &caller.tenant, limits)?;
        let (task, admitted) = self.sched.submit_call(sub).await?;
        let joined = admitted == scheduler::Admitted::Joined;
        let mut ack = if joined {
            text::joined_ack(&task)
        } else {
            text::ack(&task)
        };
        if task.state == TaskState::Queued && !self.sched.is_served(&task.tool) {
            ack.push_str(&text::unserved_notice(&task));
        }
        Ok(Response::new(pb::SubmitToolResponse {
            task_id: task.id.to_string(),
            ack,
            task: Some(convert::task(&task)),
            deduplicated: admitted == scheduler::Admitted::Repeat,
            joined,
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
        let slot = self.stream_slot(&caller)?;
        let after_seq = self
            .sched
            .stream_start(&session, req.after_seq, false)
            .await?;
        let feed = self.feed.open(session, after_seq);
        Ok(Response::new(CompletionsStream::new(
            feed,
            self.metrics.clone(),
            self.stream_options(false),
            slot,
            caller,
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
        let req = request.into_inner();
        let reason = fields::cancel_reason(req.reason)?;
        // A task's session never changes: checked once, it stays the caller's.
        let (id, _) = self.own_task(&caller, &req.task_id).await?;
        let task = self.sched.cancel(id, &reason).await?;
        Ok(Response::new(convert::task(&task)))
    }

    async fn ack_completions(
        &self,
        request: Request<pb::AckCompletionsRequest>,
    ) -> Result<Response<pb::AckCompletionsResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let session = self.session_key(&caller, &req.session_id)?;
        let acked = self.sched.ack_completions(&session, req.up_to_seq).await?;
        Ok(Response::new(pb::AckCompletionsResponse {
            removed: acked.removed,
            acked_seq: acked.acked_seq,
        }))
    }

    async fn list_tasks(
        &self,
        request: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let query = listing::task_query(&req, &caller, &self.sched.config().limits)?;
        let views = self.sched.list_tasks(&query).await?;
        let total_size = self.sched.count_tasks(&query).await?;
        let next_page_token = match views.last() {
            Some(last) if views.len() == query.limit => {
                listing::page_token(&crate::store::Cursor::of(&last.task), query.newest_first)
            }
            _ => String::new(),
        };
        Ok(Response::new(pb::ListTasksResponse {
            tasks: views.iter().map(listing::task).collect(),
            next_page_token,
            total_size,
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
        let reason = fields::cancel_reason(req.reason)?;
        let cancelled = self.sched.cancel_matching(query, &reason).await?;
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
        let out = convert::task(&task);
        Ok(Response::new(pb::SubmitToolResponse {
            task_id: task.id.to_string(),
            ack: text::ack(&task),
            task: Some(out),
            deduplicated,
            joined: false,
        }))
    }

    type SessionEventsStream = CompletionsStream<pb::SessionEvent>;

    async fn session_events(
        &self,
        request: Request<pb::SessionEventsRequest>,
    ) -> Result<Response<Self::SessionEventsStream>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let session = self.session_key(&caller, &req.session_id)?;
        let slot = self.stream_slot(&caller)?;
        // Acknowledged completions are never sent again.
        let after_seq = self
            .sched
            .stream_start(&session, req.after_seq, true)
            .await?;
        let buffer = self.sched.config().limits.stream_buffer;
        let events = self
            .events
            .open(session, after_seq, req.include_progress, buffer);
        Ok(Response::new(CompletionsStream::events(
            events,
            self.metrics.clone(),
            self.stream_options(req.results_by_reference),
            slot,
            caller,
        )))
    }

    async fn pending_digest(
        &self,
        request: Request<pb::PendingDigestRequest>,
    ) -> Result<Response<pb::PendingDigestResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let session = self.session_key(&caller, &req.session_id)?;
        let limit = self.sched.config().limits.max_message_bytes;
        let max_bytes = match req.max_bytes {
            0 => DEFAULT_DIGEST_BYTES,
            n if n > limit as u64 => {
                return Err(Error::invalid(format!(
                    "max_bytes {n} is over the server's message limit of {limit} (--max-message-bytes): ask for less, or 0 for {DEFAULT_DIGEST_BYTES}"
                ))
                .into());
            }
            n => n as usize,
        };
        let digest = self.sched.digest(&session).await?;
        let text = text::digest(
            digest
                .pending
                .iter()
                .map(|v| (&v.task, v.progress.as_deref())),
            digest.pending_count,
            digest.seqs.unacknowledged,
            max_bytes,
            std::time::SystemTime::now(),
        );
        // The listed tasks share what the message limit leaves (their
        // arguments may be large); the rest are counted in pending_count.
        let mut room = limit.saturating_sub(text.len() + 1024);
        let mut pending = Vec::new();
        for view in &digest.pending {
            let task = listing::task(view);
            let size = prost::Message::encoded_len(&task) + 8;
            if size > room {
                break;
            }
            room -= size;
            pending.push(task);
        }
        Ok(Response::new(pb::PendingDigestResponse {
            pending,
            last_seq: digest.seqs.last_seq,
            acked_seq: digest.seqs.acked_seq,
            text,
            unacknowledged: digest.seqs.unacknowledged,
            pending_count: digest.pending_count,
        }))
    }

    async fn read_result(
        &self,
        request: Request<pb::ReadResultRequest>,
    ) -> Result<Response<pb::ResultChunk>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let (_, task) = self.own_task(&caller, &req.task_id).await?;
        let max_message = self.sched.config().limits.max_message_bytes;
        Ok(Response::new(super::results::chunk(
            &task,
            &req,
            max_message,
        )?))
    }
}

/// `PendingDigestRequest.max_bytes` when the request gives none.
pub const DEFAULT_DIGEST_BYTES: usize = 4096;

/// One page of `tools` (sorted by name) after `req.page_token`: at most
/// `req.page_size` tools (0: any number) and `budget` encoded bytes, at least
/// one tool when any is left, each with its queue depth from `depth` (by
/// tool key: queued, running). The token is the last name sent.
fn page(
    tools: &[(ToolSpec, u32)],
    depth: &HashMap<Arc<str>, (usize, usize)>,
    req: &pb::ListToolsRequest,
    budget: usize,
) -> Result<pb::ListToolsResponse, Error> {
    use prost::Message;
    if !req.page_token.is_empty() && crate::tools::check_name(&req.page_token).is_err() {
        return Err(Error::invalid(
            "page_token is not one this server gave: pass a next_page_token, or empty to start over",
        ));
    }
    let start = tools.partition_point(|(s, _)| s.name.name() <= req.page_token.as_str());
    let max = if req.page_size == 0 {
        usize::MAX
    } else {
        req.page_size as usize
    };
    let (mut out, mut used) = (Vec::new(), 0);
    for (spec, workers) in &tools[start..] {
        let mut tool = convert::listed_tool(spec, *workers);
        let (queued, running) = depth.get(spec.name.as_key()).copied().unwrap_or_default();
        tool.queued = u32::try_from(queued).unwrap_or(u32::MAX);
        tool.running = u32::try_from(running).unwrap_or(u32::MAX);
        let size = tool.encoded_len() + 8;
        if out.len() == max || (!out.is_empty() && used + size > budget) {
            break;
        }
        used += size;
        out.push(tool);
    }
    let more = start + out.len() < tools.len();
    let next_page_token = match out.last() {
        Some(last) if more => last.name.clone(),
        _ => String::new(),
    };
    Ok(pb::ListToolsResponse {
        tools: out,
        next_page_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::Limits,
        model::{ToolDef, ToolKey},
    };

    fn tools(n: usize) -> Vec<(ToolSpec, u32)> {
        (0..n)
            .map(|i| {
                let def = ToolDef {
                    name: ToolKey::new("t", &format!("tool{i:03}")),
                    description: "d".repeat(100),
                    ..Default::default()
                };
                (ToolSpec::new(&def, &Limits::default()).unwrap(), 1)
            })
            .collect()
    }

    fn names(r: &pb::ListToolsResponse) -> Vec<&str> {
        r.tools.iter().map(|t| t.name.as_str()).collect()
    }

    #[test]
    fn pages_follow_each_other_by_count_and_by_bytes() {
        let all = tools(5);
        let req = |size, token: &str| pb::ListToolsRequest {
            page_size: size,
            page_token: token.into(),
            only_served: false,
        };
        let whole = page(&all, &HashMap::new(), &req(0, ""), usize::MAX).unwrap();
        assert_eq!(whole.tools.len(), 5);
        assert!(whole.next_page_token.is_empty());
        let first = page(&all, &HashMap::new(), &req(2, ""), usize::MAX).unwrap();
        assert_eq!(names(&first), ["tool000", "tool001"]);
        let second = page(
            &all,
            &HashMap::new(),
            &req(2, &first.next_page_token),
            usize::MAX,
        )
        .unwrap();
        assert_eq!(names(&second), ["tool002", "tool003"]);
        let last = page(
            &all,
            &HashMap::new(),
            &req(2, &second.next_page_token),
            usize::MAX,
        )
        .unwrap();
        assert_eq!(names(&last), ["tool004"]);
        assert!(last.next_page_token.is_empty());
        // A byte budget smaller than one tool still sends one per page.
        let tiny = page(&all, &HashMap::new(), &req(0, ""), 1).unwrap();
        assert_eq!(names(&tiny), ["tool000"]);
        assert_eq!(tiny.next_page_token, "tool000");
        assert!(matches!(
            page(&all, &HashMap::new(), &req(0, "not a token!"), 1),
            Err(Error::InvalidArgument(_))
        ));
    }
}
