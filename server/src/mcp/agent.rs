//! What the MCP adapter calls: errand's `ToolService`, in process (the
//! gRPC handlers' own code, so tenant keying, quotas, rate limits and the
//! scheduler are the very ones gRPC clients get) or, for `errand mcp
//! --stdio`, over the wire. Both speak the contract's `pb` messages.
use std::{sync::Arc, time::Instant};

use errand_proto::v1::{self as pb, tool_service_server::ToolService};
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Status};

use crate::{auth::Caller, grpc::ToolApi, sessions::SessionHub, tenant};

/// The agent side of errand, as one caller sees it. Errors are the gRPC
/// statuses `ToolService` answers with.
#[tonic::async_trait]
pub trait Agent: Send + Sync + 'static {
    async fn list_tools(&self, caller: &Caller) -> Result<Vec<pb::Tool>, Status>;
    async fn submit(
        &self,
        caller: &Caller,
        req: pb::SubmitToolRequest,
    ) -> Result<pb::SubmitToolResponse, Status>;
    async fn get_task(&self, caller: &Caller, task_id: &str) -> Result<pb::Task, Status>;
    async fn cancel_task(&self, caller: &Caller, task_id: &str) -> Result<pb::Task, Status>;
    /// `task` once it is final, or as it is at `until`.
    async fn wait(
        &self,
        caller: &Caller,
        task: pb::Task,
        until: Instant,
    ) -> Result<pb::Task, Status>;
}

/// `ToolService` in this process.
#[derive(Clone)]
pub struct LocalAgent {
    pub api: Arc<ToolApi>,
    /// Woken by each completion of a watched session.
    pub hub: Arc<SessionHub>,
}

impl LocalAgent {
    /// `ListTasks` as `caller`.
    pub async fn list_tasks(
        &self,
        caller: &Caller,
        req: pb::ListTasksRequest,
    ) -> Result<pb::ListTasksResponse, Status> {
        Ok(self
            .api
            .list_tasks(request(caller, req))
            .await?
            .into_inner())
    }

    /// `SessionEvents` as `caller`: the session's stream, counted against
    /// the tenant's open streams like a gRPC client's.
    pub async fn session_events(
        &self,
        caller: &Caller,
        req: pb::SessionEventsRequest,
    ) -> Result<<ToolApi as ToolService>::SessionEventsStream, Status> {
        Ok(self
            .api
            .session_events(request(caller, req))
            .await?
            .into_inner())
    }
}

/// A request as `caller` makes it: the auth interceptor's extension set.
fn request<T>(caller: &Caller, msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    req.extensions_mut().insert(caller.clone());
    req
}

pub fn is_final(task: &pb::Task) -> bool {
    !matches!(
        task.status(),
        pb::TaskStatus::Queued | pb::TaskStatus::Running | pb::TaskStatus::Unspecified
    )
}

#[tonic::async_trait]
impl Agent for LocalAgent {
    async fn list_tools(&self, caller: &Caller) -> Result<Vec<pb::Tool>, Status> {
        // Every page: a host's tool list is the whole registry it may call.
        let mut tools = Vec::new();
        let mut page_token = String::new();
        loop {
            let req = pb::ListToolsRequest {
                page_token,
                ..Default::default()
            };
            let page = self
                .api
                .list_tools(request(caller, req))
                .await?
                .into_inner();
            tools.extend(page.tools);
            if page.next_page_token.is_empty() {
                return Ok(tools);
            }
            page_token = page.next_page_token;
        }
    }

    async fn submit(
        &self,
        caller: &Caller,
        req: pb::SubmitToolRequest,
    ) -> Result<pb::SubmitToolResponse, Status> {
        Ok(self
            .api
            .submit_tool(request(caller, req))
            .await?
            .into_inner())
    }

    async fn get_task(&self, caller: &Caller, task_id: &str) -> Result<pb::Task, Status> {
        let req = pb::GetTaskRequest {
            task_id: task_id.to_string(),
        };
        Ok(self.api.get_task(request(caller, req)).await?.into_inner())
    }

    async fn cancel_task(&self, caller: &Caller, task_id: &str) -> Result<pb::Task, Status> {
        let req = pb::CancelTaskRequest {
            reason: String::new(),
            task_id: task_id.to_string(),
        };
        Ok(self
            .api
            .cancel_task(request(caller, req))
            .await?
            .into_inner())
    }

    async fn wait(
        &self,
        caller: &Caller,
        mut task: pb::Task,
        until: Instant,
    ) -> Result<pb::Task, Status> {
        // Subscribed before each look, so a completion between the look and
        // the wait still wakes us.
        let mut wakes = self
            .hub
            .subscribe(&tenant::key(&caller.tenant, &task.session_id));
        loop {
            task = self.get_task(caller, &task.task_id).await?;
            if is_final(&task) {
                return Ok(task);
            }
            match tokio::time::timeout_at(until.into(), wakes.recv()).await {
                Err(_) => return Ok(task),
                Ok(Ok(_) | Err(RecvError::Lagged(_))) => {}
                Ok(Err(RecvError::Closed)) => {
                    return Err(Status::unavailable("the server is shutting down"));
                }
            }
        }
    }
}
