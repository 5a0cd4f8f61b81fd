//! A session's completions ([`AgentApi::completions`]) as a `Completions`
//! response stream, and its events ([`AgentApi::session_events`]) as a
//! `SessionEvents` one: each completion mapped by
//! [`convert::streamed_completion`], each error to a status. The domain
//! stream holds the tenant's stream slot and the open-streams gauge.
//!
//! [`AgentApi::completions`]: crate::agents::AgentApi::completions
//! [`AgentApi::session_events`]: crate::agents::AgentApi::session_events
use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use errand_proto::v1 as pb;
use prost::Message;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

use super::convert;
use crate::{agents::SessionStream, model::CompletionRecord, sessions::Event};

/// A `Completions` (or, as `CompletionsStream<pb::SessionEvent>`,
/// `SessionEvents`) stream.
pub struct CompletionsStream<T = pb::Completion> {
    items: Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>,
}

impl CompletionsStream<pb::Completion> {
    /// A `Completions` stream over a session's completions; each as
    /// [`convert::streamed_completion`] renders it.
    pub fn new(
        stream: SessionStream<Arc<CompletionRecord>>,
        options: convert::StreamOptions,
    ) -> Self {
        let items = stream.map(move |item| match item {
            Ok(c) => Ok(convert::streamed_completion(&c, &options)),
            Err(e) => Err(e.into()),
        });
        Self {
            items: Box::pin(items),
        }
    }
}

impl CompletionsStream<pb::SessionEvent> {
    /// A `SessionEvents` stream; completions rendered as on `Completions`.
    pub fn events(stream: SessionStream<Event>, options: convert::StreamOptions) -> Self {
        let items = stream.map(move |item| {
            let event = match item {
                Ok(Event::Completion(c)) => {
                    pb::session_event::Event::Completion(convert::streamed_completion(&c, &options))
                }
                Ok(Event::Progress(p)) => pb::session_event::Event::Progress(convert::progress(&p)),
                Err(e) => return Err(e.into()),
            };
            Ok(pb::SessionEvent { event: Some(event) })
        });
        Self {
            items: Box::pin(items),
        }
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
        self.items.as_mut().poll_next(cx)
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
