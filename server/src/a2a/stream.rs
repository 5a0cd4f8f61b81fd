//! `SendStreamingMessage` and `SubscribeToTask`: the Task snapshot, a
//! `WORKING` status update for each progress report of the task (at most one
//! per `--progress-interval`, the latest wins), then, once the task
//! finishes, its `result` artifact and its final status, then the end of the
//! stream. A fallback run's stream ends with its call's end (the run's
//! ending is the call's completion; the run takes none of its own).
//!
//! Fed from the session's event feed (the agent API's session events with
//! progress, counted against the tenant's open streams): the feed's cursor is taken
//! before the snapshot, so a task that finishes between the two is still
//! seen, and both come from the store, so a stream opened after a restart
//! follows a task submitted before it.
use std::sync::Arc;

use a2a::{A2AError, StreamResponse};
use futures::{
    StreamExt,
    stream::{self, BoxStream},
};
use uuid::Uuid;

use super::{convert, handler::A2aHandler};
use crate::{
    agents::{AgentApi, listing},
    auth::Caller,
    model::ProgressRecord,
    scheduler::views::TaskView,
    sessions::Event,
    tenant,
};

/// Tasks of the session read to place the cursor (the highest seq among
/// the newest ones).
const CURSOR_PAGE: u32 = 100;

/// The stream of `task` (of `caller`'s): `ack` is the snapshot's status
/// message when the task was just submitted.
pub async fn follow(
    handler: &A2aHandler,
    caller: Caller,
    task: TaskView,
    ack: Option<String>,
) -> Result<BoxStream<'static, Result<StreamResponse, A2AError>>, A2AError> {
    let api = &handler.api;
    let session = tenant::strip(&task.task.session);
    let after_seq = cursor(api, &caller, session).await?;
    // The stream reads the finished task itself.
    let events = api
        .session_events(&caller, session, after_seq, true)
        .await
        .map_err(convert::error)?;
    let snapshot = api
        .task(&caller, &task.task.id.to_string())
        .await
        .map_err(convert::error)?;
    let first = StreamResponse::Task(convert::task(&snapshot, ack));
    if snapshot.task.state.is_final() {
        let events = std::iter::once(first).chain(convert::final_events(&snapshot));
        return Ok(stream::iter(events.map(Ok)).boxed());
    }
    let id = snapshot.task.id;
    let api = api.clone();
    let steps = events
        .filter_map(move |item| {
            let mine = match item {
                Ok(Event::Progress(p)) if p.task_id == id => Some(Ok(Step::Progress(p))),
                // A fallback run (a parked call's) ends in its call's
                // completion, which names it: the stream ends with the call.
                Ok(Event::Completion(c))
                    if c.task_id == id
                        || c.notes
                            .answered_by
                            .as_ref()
                            .is_some_and(|a| a.task_id == id) =>
                {
                    Some(Ok(Step::Finished(c.task_id)))
                }
                Ok(_) => None,
                Err(e) => Some(Err(convert::error(e))),
            };
            std::future::ready(mine)
        })
        .then(move |step| {
            let api = api.clone();
            let caller = caller.clone();
            let snapshot = snapshot.clone();
            async move {
                match step {
                    Ok(Step::Progress(p)) => {
                        (vec![Ok(convert::progress_event(&snapshot.task, &p))], false)
                    }
                    Ok(Step::Finished(id)) => match api.task(&caller, &id.to_string()).await {
                        Ok(t) => (
                            convert::final_events(&t).into_iter().map(Ok).collect(),
                            true,
                        ),
                        Err(e) => (vec![Err(convert::error(e))], true),
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
    Progress(Arc<ProgressRecord>),
    /// The task (this ID) finished: read it, send its end, close.
    Finished(Uuid),
}

/// A seq the session's completions have reached: the highest among its
/// newest tasks. Any lower bound of the session's last seq is correct
/// (the feed replays from it and the stream skips other tasks); this one
/// is close, so little is replayed.
async fn cursor(api: &AgentApi, caller: &Caller, session: &str) -> Result<u64, A2AError> {
    let page = listing::Page {
        size: CURSOR_PAGE,
        token: "",
        newest_first: true,
    };
    let query =
        listing::task_query(caller, session, "", [], page, api.limits()).map_err(convert::error)?;
    let newest = api.list_tasks(&query).await.map_err(convert::error)?;
    Ok(newest.tasks.iter().map(|t| t.task.seq).max().unwrap_or(0))
}
