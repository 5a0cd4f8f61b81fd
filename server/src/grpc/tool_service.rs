//! `errand.v1.ToolService`: what agents call, a translator over
//! [`AgentApi`] (tenant keying, the own-task check, rate and stream quotas
//! live there): each request into domain types, one call, the answer back
//! into the contract's messages, errors into statuses.
use std::sync::Arc;

use errand_proto::v1::{self as pb, tool_service_server::ToolService};
use tonic::{Request, Response, Status};

use super::{auth::caller, completions::CompletionsStream, convert, listing};
use crate::{
    Error,
    agents::{AgentApi, Submitted, ToolView},
    scheduler::Admitted,
};

pub struct ToolApi {
    api: Arc<AgentApi>,
}

impl ToolApi {
    pub fn new(api: Arc<AgentApi>) -> Self {
        Self { api }
    }

    /// How this server's streams render completions.
    fn stream_options(&self, results_by_reference: bool) -> convert::StreamOptions {
        let limits = self.api.limits();
        convert::StreamOptions {
            max_bytes: limits.max_message_bytes,
            results_by_reference,
            default_budget: limits.result_budget_bytes as u64,
        }
    }
}

/// A submit's (or retry's) answer on the wire.
fn submitted(s: Submitted) -> pb::SubmitToolResponse {
    pb::SubmitToolResponse {
        task_id: s.task.task.id.to_string(),
        ack: s.ack,
        task: Some(convert::task(&s.task.task)),
        deduplicated: s.admitted == Admitted::Repeat,
        joined: s.admitted == Admitted::Joined,
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
        let tools = self.api.tools(&caller, req.only_served);
        // Room for the response's framing and its next_page_token.
        let budget = self.api.limits().max_message_bytes.saturating_sub(1024);
        Ok(Response::new(page(&tools, &req, budget)?))
    }

    async fn submit_tool(
        &self,
        request: Request<pb::SubmitToolRequest>,
    ) -> Result<Response<pb::SubmitToolResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let answer = self
            .api
            .submit_with(&caller, |tenant, limits| {
                convert::submission(req, tenant, limits)
            })
            .await?;
        Ok(Response::new(submitted(answer)))
    }

    type CompletionsStream = CompletionsStream;

    async fn completions(
        &self,
        request: Request<pb::CompletionsRequest>,
    ) -> Result<Response<Self::CompletionsStream>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let stream = self
            .api
            .completions(&caller, &req.session_id, req.after_seq)
            .await?;
        Ok(Response::new(CompletionsStream::new(
            stream,
            self.stream_options(false),
        )))
    }

    async fn get_task(
        &self,
        request: Request<pb::GetTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let caller = caller(&request);
        let view = self
            .api
            .task(&caller, &request.into_inner().task_id)
            .await?;
        Ok(Response::new(listing::task(&view)))
    }

    async fn cancel_task(
        &self,
        request: Request<pb::CancelTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let task = self.api.cancel(&caller, &req.task_id, req.reason).await?;
        Ok(Response::new(convert::task(&task)))
    }

    async fn ack_completions(
        &self,
        request: Request<pb::AckCompletionsRequest>,
    ) -> Result<Response<pb::AckCompletionsResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let acked = self
            .api
            .ack(&caller, &req.session_id, req.up_to_seq)
            .await?;
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
        let query = listing::task_query(&req, &caller, self.api.limits())?;
        let page = self.api.list_tasks(&query).await?;
        // Room for the response's framing, total_size and next_page_token.
        let budget = self.api.limits().max_message_bytes.saturating_sub(1024);
        Ok(Response::new(listing::task_page(
            page,
            query.newest_first,
            budget,
        )))
    }

    async fn list_workers(
        &self,
        request: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let page = crate::agents::listing::worker_page(req.page_size, &req.page_token)?;
        let workers = self.api.workers(&caller, &req.tool)?;
        // Room for the response's framing and its next_page_token.
        let budget = self.api.limits().max_message_bytes.saturating_sub(1024);
        Ok(Response::new(listing::worker_page(
            &workers,
            page,
            self.api.server_id(),
            budget,
        )))
    }

    async fn cancel_tasks(
        &self,
        request: Request<pb::CancelTasksRequest>,
    ) -> Result<Response<pb::CancelTasksResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let query = listing::cancel_query(&req, &caller, self.api.limits())?;
        let cancelled = self.api.cancel_tasks(query, req.reason).await?;
        Ok(Response::new(pb::CancelTasksResponse { cancelled }))
    }

    async fn retry_task(
        &self,
        request: Request<pb::RetryTaskRequest>,
    ) -> Result<Response<pb::SubmitToolResponse>, Status> {
        let caller = caller(&request);
        let retried = self
            .api
            .retry(&caller, &request.into_inner().task_id)
            .await?;
        Ok(Response::new(submitted(retried)))
    }

    type SessionEventsStream = CompletionsStream<pb::SessionEvent>;

    async fn session_events(
        &self,
        request: Request<pb::SessionEventsRequest>,
    ) -> Result<Response<Self::SessionEventsStream>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let events = self
            .api
            .session_events(
                &caller,
                &req.session_id,
                req.after_seq,
                req.include_progress,
            )
            .await?;
        Ok(Response::new(CompletionsStream::events(
            events,
            self.stream_options(req.results_by_reference),
        )))
    }

    async fn pending_digest(
        &self,
        request: Request<pb::PendingDigestRequest>,
    ) -> Result<Response<pb::PendingDigestResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let view = self
            .api
            .digest(&caller, &req.session_id, req.max_bytes)
            .await?;
        let (digest, text) = (view.digest, view.text);
        // The listed tasks share what the message limit leaves (their
        // arguments may be large); the rest are counted in pending_count.
        let limit = self.api.limits().max_message_bytes;
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
        let task = self.api.stored_task(&caller, &req.task_id).await?;
        let max_message = self.api.limits().max_message_bytes;
        Ok(Response::new(super::results::chunk(
            &task,
            &req,
            max_message,
        )?))
    }
}

/// One page of `tools` (sorted by name) after `req.page_token`: at most
/// `req.page_size` tools (0: any number) and `budget` encoded bytes, at least
/// one tool when any is left, each with its queue depth. The token carries
/// the last name sent ([`crate::agents::listing::tool_page_token`]).
fn page(
    tools: &[ToolView],
    req: &pb::ListToolsRequest,
    budget: usize,
) -> Result<pb::ListToolsResponse, Error> {
    use prost::Message;
    let after = match req.page_token.as_str() {
        "" => String::new(),
        token => crate::agents::listing::parse_tool_token(token)?,
    };
    let start = tools.partition_point(|t| t.spec.name.name() <= after.as_str());
    let max = if req.page_size == 0 {
        usize::MAX
    } else {
        req.page_size as usize
    };
    let listed = tools[start..].iter().map(|t| {
        let mut tool = convert::listed_tool(&t.spec, t.workers);
        tool.queued = u32::try_from(t.queued).unwrap_or(u32::MAX);
        tool.running = u32::try_from(t.running).unwrap_or(u32::MAX);
        tool
    });
    let (out, more) =
        crate::agents::listing::page_within(listed, |t| t.encoded_len() + 8, budget, max);
    let next_page_token = match out.last() {
        Some(last) if more => crate::agents::listing::tool_page_token(&last.name),
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
        tools::ToolSpec,
    };

    fn tools(n: usize) -> Vec<ToolView> {
        (0..n)
            .map(|i| {
                let def = ToolDef {
                    name: ToolKey::new("t", &format!("tool{i:03}")),
                    description: "d".repeat(100),
                    ..Default::default()
                };
                ToolView {
                    spec: ToolSpec::new(&def, &Limits::default()).unwrap(),
                    workers: 1,
                    queued: 0,
                    running: 0,
                }
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
        let whole = page(&all, &req(0, ""), usize::MAX).unwrap();
        assert_eq!(whole.tools.len(), 5);
        assert!(whole.next_page_token.is_empty());
        let first = page(&all, &req(2, ""), usize::MAX).unwrap();
        assert_eq!(names(&first), ["tool000", "tool001"]);
        let second = page(&all, &req(2, &first.next_page_token), usize::MAX).unwrap();
        assert_eq!(names(&second), ["tool002", "tool003"]);
        let last = page(&all, &req(2, &second.next_page_token), usize::MAX).unwrap();
        assert_eq!(names(&last), ["tool004"]);
        assert!(last.next_page_token.is_empty());
        // A byte budget smaller than one tool still sends one per page.
        let tiny = page(&all, &req(0, ""), 1).unwrap();
        assert_eq!(names(&tiny), ["tool000"]);
        let after_first = page(&all, &req(1, &tiny.next_page_token), usize::MAX).unwrap();
        assert_eq!(names(&after_first), ["tool001"]);
        // Tokens are opaque: a tool name (valid, but not a token) is refused.
        for made_up in ["not a token!", "tool000", "zzzz"] {
            assert!(
                matches!(
                    page(&all, &req(0, made_up), 1),
                    Err(Error::InvalidArgument(_))
                ),
                "{made_up}"
            );
        }
    }
}
