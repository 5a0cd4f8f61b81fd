//! A deadline on a request's body, on every listener. Every request errand
//! serves carries one message (a gRPC call's, a JSON-RPC or REST body, a
//! dashboard action), except a worker's `Connect`, whose body is its whole
//! life: a body must end within the deadline (the server's
//! `--idle-timeout-ms`) of its headers. A client that sent part of its
//! message and then only answered pings (which any HTTP/2 stack does by
//! itself), or trickled a byte now and then, held its stream and the
//! handler waiting on it for as long as the connection lived: the idle
//! timeout never fired, since the peer was not idle.
use std::{
    future::Future as _,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// What a body yields once its deadline passed: made from the limit by the
/// listener (a gRPC status for the gRPC listener, an I/O error elsewhere).
pub type Overdue = fn(Duration) -> BoxError;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The words every listener's error says, for `limit`.
pub fn overdue_text(limit: Duration) -> String {
    format!(
        "the request's body did not arrive within {} ms of its headers (--idle-timeout-ms): \
         send each request whole",
        limit.as_millis()
    )
}

/// An I/O error of kind `TimedOut` ([`overdue_text`]): HTTP listeners.
pub fn timed_out(limit: Duration) -> BoxError {
    Box::new(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        overdue_text(limit),
    ))
}

/// A request body that fails once `limit` has passed since it was made,
/// before its end.
pub struct Deadlined<B> {
    inner: B,
    /// When the body must have ended.
    due: Instant,
    /// The timer, made only once the body first has to wait: a request's
    /// message usually comes with its headers, and a timer per request
    /// would cost every call on the hot path.
    timer: Option<Pin<Box<Sleep>>>,
    limit: Duration,
    overdue: Overdue,
    ended: bool,
}

impl<B> Deadlined<B> {
    pub fn new(inner: B, limit: Duration, overdue: Overdue) -> Self {
        Self {
            inner,
            due: Instant::now() + limit,
            timer: None,
            limit,
            overdue,
            ended: false,
        }
    }
}

impl<B> http_body::Body for Deadlined<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            if frame.is_none() {
                self.ended = true;
            }
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let due = self.due;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.ended = true;
                Poll::Ready(Some(Err((self.overdue)(self.limit))))
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
