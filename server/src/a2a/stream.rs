//! `SendStreamingMessage` and `SubscribeToTask`: the Task snapshot, then,
//! once the task finishes, its `result` artifact and its final status, then
//! the end of the stream.
//!
//! Fed from the session's completion feed (ToolService's `Completions`,
//! counted against the tenant's open streams): the feed's cursor is taken
//! before the snapshot, so a task that finishes between the two is still
//! seen, and both come from the store, so a stream opened after a restart
//! follows a task submitted before it.
use a2a::{A2AError, StreamResponse};
use errand_proto::v1::{self as pb, tool_service_server::ToolService};
use futures::{
    StreamExt,
    stream::{self, BoxStream},
};

use super::{convert, handler::A2aHandler};
use crate::{
    auth::Caller,
    mcp::agent::{Agent, LocalAgent, is_final},
};

/// Tasks of the session read to place the cursor (the highest seq among
/// the newest ones).
const CURSOR_PAGE: u32 = 100;

/// The stream of `task` (of `caller`'s): `ack` is the snapshot's status
/// message when the task was just submitted.
pub async fn follow(
    handler: &A2aHandler,
    caller: Caller,
    task: pb::Task,
    ack: Option<String>,
) -> Result<BoxStream<'static, Result<StreamResponse, A2AError>>, A2AError> {
    let agent = &handler.agent;
    let after_seq = cursor(agent, &caller, &task.session_id).await?;
    let completions = agent
        .api
        .completions(request(
            &caller,
            pb::CompletionsRequest {
                session_id: task.session_id.clone(),
                after_seq,
            },
        ))
        .await
        .map_err(|s| convert::error(&s))?
        .into_inner();
    let snapshot = agent
        .get_task(&caller, &task.task_id)
        .await
        .map_err(|s| convert::error(&s))?;
    let first = StreamResponse::Task(convert::task(&snapshot, ack));
    if is_final(&snapshot) {
        let events = std::iter::once(first).chain(convert::final_events(&snapshot));
        return Ok(stream::iter(events.map(Ok)).boxed());
    }
    let id = snapshot.task_id.clone();
    let api = agent.api.clone();
    let hub = agent.hub.clone();
    let finished = completions
        .filter_map(move |item| {
            let mine = match item {
                Ok(c) if c.task_id == id => Some(Ok(c.task_id)),
                Ok(_) => None,
                Err(s) => Some(Err(convert::error(&s))),
            };
            std::future::ready(mine)
        })
        .take(1)
        .then(move |done| {
            let agent = LocalAgent {
                api: api.clone(),
                hub: hub.clone(),
            };
            let caller = caller.clone();
            async move {
                let id = done?;
                agent
                    .get_task(&caller, &id)
                    .await
                    .map_err(|s| convert::error(&s))
            }
        })
        .flat_map(|task| {
            let events: Vec<_> = match task {
                Ok(t) => convert::final_events(&t).into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            };
            stream::iter(events)
        });
    Ok(stream::once(async { Ok(first) }).chain(finished).boxed())
}

/// A seq the session's completions have reached: the highest among its
/// newest tasks. Any lower bound of the session's last seq is correct
/// (the feed replays from it and the stream skips other tasks); this one
/// is close, so little is replayed.
async fn cursor(agent: &LocalAgent, caller: &Caller, session: &str) -> Result<u64, A2AError> {
    let newest = agent
        .api
        .list_tasks(request(
            caller,
            pb::ListTasksRequest {
                session_id: session.to_string(),
                page_size: CURSOR_PAGE,
                newest_first: true,
                ..Default::default()
            },
        ))
        .await
        .map_err(|s| convert::error(&s))?
        .into_inner();
    Ok(newest.tasks.iter().map(|t| t.seq).max().unwrap_or(0))
}

fn request<T>(caller: &Caller, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.extensions_mut().insert(caller.clone());
    req
}
