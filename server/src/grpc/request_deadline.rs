//! A deadline on a request's body. Every RPC but a worker's `Connect` takes
//! one message: its body ends once that message is in. A client that sends
//! the headers and part of the message, then only answers pings (which any
//! HTTP/2 stack does by itself), held its stream, and the handler waiting
//! on it, for as long as the connection lived: the idle timeout never fired,
//! since the peer was not idle. Now such a body fails after the deadline
//! (the server's `--idle-timeout-ms`) with DEADLINE_EXCEEDED, which ends the
//! call.
use std::{
    future::Future as _,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};
use tonic::{Status, body::Body, codegen::http};

/// The one RPC whose request is a stream of messages, for its whole life.
const STREAMING_REQUEST: &str = "/errand.v1.WorkerService/Connect";

/// The layer (`tower::util::MapRequestLayer`): each request's body but a
/// worker stream's must end within `limit` of its headers.
pub fn layer(
    limit: Duration,
) -> tower::util::MapRequestLayer<impl Fn(http::Request<Body>) -> http::Request<Body> + Clone> {
    tower::util::MapRequestLayer::new(move |req: http::Request<Body>| {
        if req.uri().path() == STREAMING_REQUEST {
            return req;
        }
        let deadline = Instant::now() + limit;
        req.map(|body| Body::new(Deadlined::new(body, deadline, limit)))
    })
}

/// A request body that fails once `deadline` passes before its end.
struct Deadlined {
    inner: Body,
    deadline: Pin<Box<Sleep>>,
    limit: Duration,
    ended: bool,
}

impl Deadlined {
    fn new(inner: Body, deadline: Instant, limit: Duration) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            limit,
            ended: false,
        }
    }
}

impl http_body::Body for Deadlined {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            if frame.is_none() {
                self.ended = true;
            }
            return Poll::Ready(frame);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.ended = true;
                Poll::Ready(Some(Err(Status::deadline_exceeded(format!(
                    "the request's message did not arrive within {} ms of its headers \
                     (--idle-timeout-ms): send each request whole",
                    self.limit.as_millis()
                )))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
