//! `errand.v1.ToolService`: what agents call.
use std::sync::Arc;

use errand_proto::v1::{self as pb, tool_service_server::ToolService};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::{core::Core, sessions, text};

pub struct ToolApi {
    core: Arc<Core>,
}

impl ToolApi {
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }
}

#[tonic::async_trait]
impl ToolService for ToolApi {
    async fn list_tools(
        &self,
        _: Request<pb::ListToolsRequest>,
    ) -> Result<Response<pb::ListToolsResponse>, Status> {
        Ok(Response::new(pb::ListToolsResponse {
            tools: self.core.list_tools(),
        }))
    }

    async fn submit_tool(
        &self,
        request: Request<pb::SubmitToolRequest>,
    ) -> Result<Response<pb::SubmitToolResponse>, Status> {
        let (task, deduplicated) = self.core.submit(request.into_inner()).await?;
        Ok(Response::new(pb::SubmitToolResponse {
            task_id: task.id.to_string(),
            ack: text::ack(&task),
            task: Some(task.to_proto()),
            deduplicated,
        }))
    }

    type CompletionsStream = ReceiverStream<Result<pb::Completion, Status>>;

    async fn completions(
        &self,
        request: Request<pb::CompletionsRequest>,
    ) -> Result<Response<Self::CompletionsStream>, Status> {
        let req = request.into_inner();
        self.core.check_session(&req.session_id)?;
        Ok(Response::new(sessions::completions(
            self.core.clone(),
            req.session_id,
            req.after_seq,
        )))
    }

    async fn get_task(
        &self,
        request: Request<pb::GetTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let task = self.core.get_task(&request.into_inner().task_id).await?;
        Ok(Response::new(task.to_proto()))
    }

    async fn cancel_task(
        &self,
        request: Request<pb::CancelTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let task = self.core.cancel(&request.into_inner().task_id).await?;
        Ok(Response::new(task.to_proto()))
    }

    async fn ack_completions(
        &self,
        request: Request<pb::AckCompletionsRequest>,
    ) -> Result<Response<pb::AckCompletionsResponse>, Status> {
        let req = request.into_inner();
        let removed = self
            .core
            .ack_completions(&req.session_id, req.up_to_seq)
            .await?;
        Ok(Response::new(pb::AckCompletionsResponse { removed }))
    }
}
