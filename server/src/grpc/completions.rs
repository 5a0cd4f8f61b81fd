//! A session's [`Feed`](crate::sessions::Feed) as a `Completions` response
//! stream, and its [`Events`](crate::sessions::Events) as a
//! `SessionEvents` one: each completion mapped by
//! [`convert::streamed_completion`], the feed's error to a status, and the
//! tenant's stream slot and the open-streams gauge held while it is open.
use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::SystemTime,
};

use errand_proto::v1 as pb;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::Status;

use super::{convert, expiry};
use crate::{
    auth::Caller,
    metrics::Metrics,
    model::CompletionRecord,
    quota::Slot,
    sessions::{Event, EventItem, FeedItem},
};

/// A `Completions` (or, as `CompletionsStream<pb::SessionEvent>`,
/// `SessionEvents`) stream that holds its tenant's stream slot while open,
/// and ends when its token expires.
pub struct CompletionsStream<T = pb::Completion> {
    items: Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>,
    metrics: Arc<Metrics>,
    _slot: Slot,
    /// Resolves at the token's expiry; `None` once the stream has ended.
    expiry: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    caller: Caller,
}

impl<T> CompletionsStream<T> {
    /// Counts the stream open until it is dropped.
    fn with(
        items: Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>,
        metrics: Arc<Metrics>,
        slot: Slot,
        caller: Caller,
    ) -> Self {
        metrics.stream_opened();
        Self {
            items,
            metrics,
            _slot: slot,
            expiry: Some(Box::pin(expiry::reached(expiry::deadline(&caller)))),
            caller,
        }
    }
}

/// Counts a completion's wait from commit to delivery.
fn delivered(metrics: &Metrics, c: &CompletionRecord) {
    let waited = SystemTime::now()
        .duration_since(c.completed_at)
        .unwrap_or_default();
    metrics.delivered_after(waited);
}

impl CompletionsStream<pb::Completion> {
    /// A `Completions` stream over a session's feed; each completion as
    /// [`convert::streamed_completion`] renders it.
    pub fn new(
        feed: mpsc::Receiver<FeedItem>,
        metrics: Arc<Metrics>,
        options: convert::StreamOptions,
        slot: Slot,
        caller: Caller,
    ) -> Self {
        let m = metrics.clone();
        let items = ReceiverStream::new(feed).map(move |item| match item {
            Ok(c) => {
                delivered(&m, &c);
                Ok(convert::streamed_completion(&c, &options))
            }
            Err(e) => Err(e.into()),
        });
        Self::with(Box::pin(items), metrics, slot, caller)
    }
}

impl CompletionsStream<pb::SessionEvent> {
    /// A `SessionEvents` stream; completions rendered as on `Completions`.
    pub fn events(
        events: mpsc::Receiver<EventItem>,
        metrics: Arc<Metrics>,
        options: convert::StreamOptions,
        slot: Slot,
        caller: Caller,
    ) -> Self {
        let m = metrics.clone();
        let items = ReceiverStream::new(events).map(move |item| {
            let event = match item {
                Ok(Event::Completion(c)) => {
                    delivered(&m, &c);
                    pb::session_event::Event::Completion(convert::streamed_completion(&c, &options))
                }
                Ok(Event::Progress(p)) => pb::session_event::Event::Progress(convert::progress(&p)),
                Err(e) => return Err(e.into()),
            };
            Ok(pb::SessionEvent { event: Some(event) })
        });
        Self::with(Box::pin(items), metrics, slot, caller)
    }
}

/// A completion that fits `max_bytes`: one too large to send (the limits
/// are checked to add up at start, so only a store written under larger
/// limits holds one) is delivered with its outcome replaced by an error
/// that says so, and logged, instead of failing the stream on every reopen.
pub fn deliverable(mut c: pb::Completion, max_bytes: usize) -> pb::Completion {
    let size = c.encoded_len();
    if size <= max_bytes {
        return c;
    }
    tracing::error!(task_id = %c.task_id, seq = c.seq, bytes = size, max_bytes, "a completion is too large to send: delivering an error in its place");
    let why = format!(
        "the completion is {size} bytes, over the server's message limit of {max_bytes} \
         (--max-message-bytes): its outcome cannot be delivered"
    );
    c.status = pb::TaskStatus::Failed as i32;
    c.outcome = Some(pb::completion::Outcome::Error(pb::ToolError {
        code: "undeliverable".into(),
        message: why.clone(),
    }));
    c.message = format!(
        "Async result for task {} (tool `{}`) cannot be delivered: {why}",
        c.task_id, c.tool
    );
    if c.encoded_len() > max_bytes {
        c.arguments_json = String::new();
    }
    c
}

impl<T> Stream for CompletionsStream<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(expiry) = self.expiry.as_mut() else {
            return Poll::Ready(None);
        };
        if expiry.as_mut().poll(cx).is_ready() {
            self.expiry = None;
            return Poll::Ready(Some(Err(expiry::expired(&self.caller).into())));
        }
        self.items.as_mut().poll_next(cx)
    }
}

impl<T> Drop for CompletionsStream<T> {
    fn drop(&mut self) {
        self.metrics.stream_closed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completion_too_large_to_send_becomes_an_error_that_says_so() {
        let big = pb::Completion {
            seq: 3,
            task_id: "t".into(),
            tool: "search".into(),
            arguments_json: "{}".into(),
            status: pb::TaskStatus::Succeeded as i32,
            outcome: Some(pb::completion::Outcome::ResultJson("1".repeat(5000))),
            ..Default::default()
        };
        let sent = deliverable(big.clone(), 1000);
        assert!(sent.encoded_len() <= 1000);
        assert_eq!((sent.seq, sent.status), (3, pb::TaskStatus::Failed as i32));
        let Some(pb::completion::Outcome::Error(e)) = sent.outcome else {
            panic!("an error in place of the result");
        };
        assert_eq!(e.code, "undeliverable");
        assert!(e.message.contains("--max-message-bytes"), "{}", e.message);
        assert_eq!(
            deliverable(big.clone(), 100_000),
            big,
            "one that fits is untouched"
        );
    }
}
