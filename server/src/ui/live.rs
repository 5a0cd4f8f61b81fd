//! `/api/events`: the dashboard's live updates as server-sent events, fed
//! by the session hub's [`Activity`] (the scheduler's submits, starts and
//! finishes, and acks), never by polling the store.
//!
//! Each event is named for what happened (`submitted`, `started`,
//! `finished`, `acked`) and carries JSON `{task_id, session_id, tool,
//! status, seq, at}` (`task_id` and `tool` empty for `acked`). A reader
//! that falls behind gets `lagged` and should reload its page.
//!
//! The stream ends when the token that opened it expires, as every errand
//! stream does ([`expiry`]): its last event is `expired`, `{error}` saying
//! so, and a reader reconnects with a fresh token (the expired one is
//! refused, 401).
use std::{convert::Infallible, pin::Pin, sync::Arc, time::SystemTime};

use axum::{
    extract::State,
    http::HeaderMap,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::{Future, Stream};
use serde_json::json;
use tokio::sync::broadcast::{Receiver, error::RecvError};

use super::{Access, Ui};
use crate::{
    auth::expiry,
    sessions::{Activity, ActivityKind},
    tenant,
};

pub(super) async fn events(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    let access = match ui.access(&headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let deadline = expiry::deadline(&access.caller);
    let stream = follow(ui.hub.subscribe_activity(), access, deadline);
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

/// What [`follow`] holds between events; `None` once it has said `expired`.
type Following = Option<(
    Receiver<Arc<Activity>>,
    Access,
    Pin<Box<dyn Future<Output = ()> + Send>>,
)>;

/// The events of `rx` that `access` may see, until the hub closes or the
/// caller's token expires at `deadline` (then `expired`, and the end): a
/// token checked once when the stream opened must not keep it open after
/// the token stopped working.
fn follow(
    rx: Receiver<Arc<Activity>>,
    access: Access,
    deadline: Option<tokio::time::Instant>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let expiry: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(expiry::reached(deadline));
    let start: Following = Some((rx, access, expiry));
    futures::stream::unfold(start, |state| async move {
        let (mut rx, access, mut expiry) = state?;
        loop {
            tokio::select! {
                // The expiry first: an event at the same instant is not sent.
                biased;
                () = &mut expiry => {
                    let error = expiry::expired(&access.caller).into_message();
                    let ev = Event::default()
                        .event("expired")
                        .data(json!({ "error": error }).to_string());
                    return Some((Ok(ev), None));
                }
                got = rx.recv() => match got {
                    Ok(a) if access.sees(&a.session) => {
                        return Some((Ok(event(&a)), Some((rx, access, expiry))));
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => {
                        let ev = Event::default().event("lagged").data("{}");
                        return Some((Ok(ev), Some((rx, access, expiry))));
                    }
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    })
}
