//! `/api/events`: the dashboard's live updates as server-sent events, fed
//! by the session hub's [`Activity`] (the scheduler's submits, starts and
//! finishes, and acks), never by polling the store.
//!
//! Each event is named for what happened (`submitted`, `started`,
//! `finished`, `acked`) and carries JSON `{task_id, session_id, tool,
//! status, seq, at}` (`task_id` and `tool` empty for `acked`). A reader
//! that falls behind gets `lagged` and should reload its page.
use std::{convert::Infallible, sync::Arc, time::SystemTime};

use axum::{
    extract::State,
    http::HeaderMap,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::Stream;
use serde_json::json;
use tokio::sync::broadcast::{Receiver, error::RecvError};

use super::{Access, Ui};
use crate::{
    sessions::{Activity, ActivityKind},
    tenant,
};

pub(super) async fn events(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    let access = match ui.access(&headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let stream = follow(ui.hub.subscribe_activity(), access);
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The event `a` makes on the stream.
fn event(a: &Activity) -> Event {
    let (status, seq) = match &a.kind {
        ActivityKind::Submitted => ("QUEUED", 0),
        ActivityKind::Started { .. } => ("RUNNING", 0),
        ActivityKind::Finished { state, seq, .. } => (state.name(), *seq),
        ActivityKind::Acked { up_to_seq } => ("", *up_to_seq),
    };
    let task_id = if a.task_id.is_nil() {
        String::new()
    } else {
        a.task_id.to_string()
    };
    let data = json!({
        "task_id": task_id,
        "session_id": tenant::strip(&a.session),
        "tool": tenant::strip(&a.tool),
        "status": status,
        "seq": seq,
        "at": a.at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
    });
    Event::default().event(a.name()).data(data.to_string())
}

fn follow(
    rx: Receiver<Arc<Activity>>,
    access: Access,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold((rx, access), |(mut rx, access)| async move {
        loop {
            match rx.recv().await {
                Ok(a) if access.sees(&a.session) => return Some((Ok(event(&a)), (rx, access))),
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    let ev = Event::default().event("lagged").data("{}");
                    return Some((Ok(ev), (rx, access)));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    })
}
