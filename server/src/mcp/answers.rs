//! The MCP listener's stop, in the order that loses no answer: the server
//! drains its running tasks, then tells handlers it is stopping (a call
//! still waiting answers at once with an error naming its task), and rmcp's
//! sessions are closed only once every call's answer has been written (or
//! [`ANSWER_WAIT`] has passed). Closed with the drain, rmcp dropped the
//! answers of calls whose tasks finished in it ("channel closed").
use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::Body,
    extract::{Request, State},
    http::Method,
    middleware::Next,
    response::Response,
};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio_util::{
    sync::CancellationToken,
    task::{TaskTracker, task_tracker::TaskTrackerToken},
};

/// How long a stop waits for answers still being written.
pub const ANSWER_WAIT: Duration = Duration::from_secs(3);

/// The token to give rmcp: cancelled once `stopping` is and every answer
/// `answers` tracks has been written, or [`ANSWER_WAIT`] after `stopping`.
pub fn closing_after(stopping: CancellationToken, answers: TaskTracker) -> CancellationToken {
    let close = CancellationToken::new();
    let token = close.clone();
    tokio::spawn(async move {
        stopping.cancelled().await;
        answers.close();
        let _ = tokio::time::timeout(ANSWER_WAIT, answers.wait()).await;
        token.cancel();
    });
    close
}

/// Counts each POST (a JSON-RPC call) in `answers` until its response body
/// has been sent or dropped.
pub async fn track(State(answers): State<TaskTracker>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let held = answers.token();
    let response = next.run(req).await;
    response.map(|body| Body::new(Held { body, _held: held }))
}

/// A body that holds a tracker token until it is dropped.
struct Held {
    body: Body,
    _held: TaskTrackerToken,
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
