//! A call runs to its end, whatever its client does.
//!
//! hyper drops a request's future when its client resets the stream or
//! closes the connection, and tonic when the call's deadline (`grpc-timeout`)
//! passes. A handler dropped at an `.await` stops there: one that awaited a
//! durable write and would then change the live state (queue the task it
//! stored, start the worker stream it registered, tell a session what it
//! cancelled) left the store and the live state disagreeing for good: a
//! task stored but never queued, a worker registered with no stream behind
//! it. So each request's future is spawned, and the connection awaits its
//! handle: the client going away drops the handle, not the call, which
//! finishes and whose answer nobody reads. What a call does before its
//! answer is then all done or (refused before it changed anything) not at
//! all, whether or not the client is still there to read it.
//!
//! One rule for every call, rather than a guard in each handler that
//! writes and then changes state: the gRPC port's calls through
//! `grpc::transport::grpc_server`, A2A's, the dashboard's and the metrics
//! endpoint's through [`super::http::serve_tls`]. MCP's are left to rmcp
//! ([`super::http::Calls::EndWithClient`]), which runs each request's
//! handler as a task of its own already. A response body (a stream) is not
//! covered: it only reads, and ends when its client goes.
//!
//! What a client that leaves costs is what the same call costs when it
//! stays: the request rates and task limits bound both. A call that waits
//! after its work (A2A's blocking `SendMessage`) waits on unread, until its
//! task ends or its timeout passes.
use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use tokio::task::JoinHandle;
use tower::{Layer, Service};
use tracing::Instrument;

/// The layer: [`RunToEnd`] around a service.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunToEndLayer;

impl<S> Layer<S> for RunToEndLayer {
    type Service = RunToEnd<S>;

    fn layer(&self, inner: S) -> RunToEnd<S> {
        RunToEnd::new(inner)
    }
}

/// A service whose calls run as tasks of their own, to their end.
#[derive(Debug, Clone)]
pub struct RunToEnd<S> {
    inner: S,
}

impl<S> RunToEnd<S> {
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S, R> Service<R> for RunToEnd<S>
where
    S: Service<R>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Running<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        Running(tokio::spawn(self.inner.call(req).in_current_span()))
    }
}

/// A call running as its own task; dropping this leaves it running.
pub struct Running<T>(JoinHandle<T>);

impl<T> Future for Running<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match ready!(Pin::new(&mut self.0).poll(cx)) {
            Ok(answer) => Poll::Ready(answer),
            // As if the call had panicked here, as it did before it ran
            // as a task of its own.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Only a runtime shutting down cancels it, and that drops
            // this future too.
            Err(_) => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tokio::sync::oneshot;
    use tower::ServiceExt;

    use super::*;

    /// A call dropped between its write and the state change after it
    /// still makes the change.
    #[tokio::test]
    async fn a_call_dropped_by_its_caller_runs_to_its_end() {
        let (written_tx, written_rx) = oneshot::channel();
        let (resume_tx, resume_rx) = oneshot::channel::<()>();
        let (changed_tx, changed_rx) = oneshot::channel();
        let mut steps = Some((written_tx, resume_rx, changed_tx));
        let svc = tower::service_fn(move |()| {
            let (written, resume, changed) = steps.take().unwrap();
            async move {
                let _ = written.send(());
                let _ = resume.await;
                let _ = changed.send(());
                Ok::<_, Infallible>(())
            }
        });
        let call = RunToEnd::new(svc).oneshot(());
        let call = tokio::spawn(call);
        written_rx.await.unwrap();
        call.abort();
        assert!(call.await.unwrap_err().is_cancelled());
        resume_tx.send(()).unwrap();
        changed_rx.await.expect("the call made its change");
    }

    #[tokio::test]
    #[should_panic(expected = "the handler's panic")]
    async fn a_panic_reaches_the_caller() {
        let svc = tower::service_fn(|()| async {
            panic!("the handler's panic");
            #[allow(unreachable_code)]
            Ok::<(), Infallible>(())
        });
        let _ = RunToEnd::new(svc).oneshot(()).await;
    }
}
