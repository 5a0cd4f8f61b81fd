//! `SendStreamingMessage` and `SubscribeToTask`: the Task snapshot, a
//! `WORKING` status update for each progress report of the task (at most one
//! per `--progress-interval`, the latest wins), then, once the task
//! finishes, its `result` artifact and its final status, then the end of the
//! stream. A fallback run's stream ends with its call's end (the run's
//! ending is the call's completion; the run takes none of its own).
//!
//! Fed from the session's event feed (ToolService's `SessionEvents` with
//! progress, counted against the tenant's open streams): the feed's cursor is taken
//! before the snapshot, so a task that finishes between the two is still
//! seen, and both come from the store, so a stream opened after a restart
//! follows a task submitted before it.
use a2a::{A2AError, StreamResponse};
use errand_proto::v1 as pb;
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
    let events = agent
        .session_events(
            &caller,
            pb::SessionEventsRequest {
                session_id: task.session_id.clone(),
                after_seq,
                include_progress: true,
                // The stream reads the finished task itself.
                results_by_reference: true,
            },
        )
        .await
        .map_err(|s| convert::error(&s))?;
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
    let agent = agent.clone();
    let steps = events
        .filter_map(move |item| {
            use pb::session_event::Event;
            let mine = match item {
                Ok(pb::SessionEvent {
                    event: Some(Event::Progress(p)),
                }) if p.task_id == id => Some(Ok(Step::Progress(p))),
                // A fallback run (a parked call's) ends in its call's
                // completion, which names it: the stream ends with the call.
                Ok(pb::SessionEvent {
                    event: Some(Event::Completion(c)),
                }) if c.task_id == id || c.fallback.as_ref().is_some_and(|f| f.task_id == id) => {
                    Some(Ok(Step::Finished(c.task_id)))
                }
                Ok(_) => None,
                Err(s) => Some(Err(convert::error(&s))),
            };
            std::future::ready(mine)
        })
        .then(move |step| {
            let agent = agent.clone();
            let caller = caller.clone();
            let snapshot = snapshot.clone();
            async move {
                match step {
                    Ok(Step::Progress(p)) => {
                        (vec![Ok(convert::progress_event(&snapshot, &p))], false)
                    }
                    Ok(Step::Finished(id)) => match agent.get_task(&caller, &id).await {
                        Ok(t) => (
                            convert::final_events(&t).into_iter().map(Ok).collect(),
                            true,
                        ),
                        Err(s) => (vec![Err(convert::error(&s))], true),
                    },
                    Err(e) => (vec![Err(e)], true),
                }
            }
        })
        .boxed();
    // Everything up to and including the task's end (or an error), then
    // close at once rather than on the feed's next event.
    let live = stream::unfold(Some(steps), |steps| async move {
        let mut steps = steps?;
        let (events, last) = steps.next().await?;
        Some((stream::iter(events), (!last).then_some(steps)))
    })
    .flatten();
    Ok(stream::once(async { Ok(first) }).chain(live).boxed())
}

/// What the stream does with one of the task's session events.
enum Step {
    /// A `WORKING` status update with the report.
    Progress(pb::Progress),
    /// The task (this ID) finished: read it, send its end, close.
    Finished(String),
}

/// A seq the session's completions have reached: the highest among its
/// newest tasks. Any lower bound of the session's last seq is correct
/// (the feed replays from it and the stream skips other tasks); this one
/// is close, so little is replayed.
async fn cursor(agent: &LocalAgent, caller: &Caller, session: &str) -> Result<u64, A2AError> {
    let newest = agent
        .list_tasks(
            caller,
            pb::ListTasksRequest {
                session_id: session.to_string(),
                page_size: CURSOR_PAGE,
                newest_first: true,
                ..Default::default()
            },
        )
        .await
        .map_err(|s| convert::error(&s))?;
    Ok(newest.tasks.iter().map(|t| t.seq).max().unwrap_or(0))
}
