//! A session's [`Feed`](crate::sessions::Feed) as a `Completions` response
//! stream: each completion mapped to `pb::Completion`, the feed's error to a
//! status, and the tenant's stream slot and the open-streams gauge held
//! while it is open.
use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::SystemTime,
};

use errand_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::Status;

use super::{convert, expiry};
use crate::{auth::Caller, metrics::Metrics, quota::Slot, sessions::FeedItem};

/// A `Completions` stream that holds its tenant's stream slot while open,
/// and ends when its token expires.
pub struct CompletionsStream {
    feed: mpsc::Receiver<FeedItem>,
    metrics: Arc<Metrics>,
    _slot: Slot,
    /// Resolves at the token's expiry; `None` once the stream has ended.
    expiry: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    caller: Caller,
}

impl CompletionsStream {
    /// Counts the stream open until it is dropped.
    pub fn new(
        feed: mpsc::Receiver<FeedItem>,
        metrics: Arc<Metrics>,
        slot: Slot,
        caller: Caller,
    ) -> Self {
        metrics.stream_opened();
        Self {
            feed,
            metrics,
            _slot: slot,
            expiry: Some(Box::pin(expiry::reached(expiry::deadline(&caller)))),
            caller,
        }
    }
}

impl Stream for CompletionsStream {
    type Item = Result<pb::Completion, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(expiry) = self.expiry.as_mut() else {
            return Poll::Ready(None);
        };
        if expiry.as_mut().poll(cx).is_ready() {
            self.expiry = None;
            return Poll::Ready(Some(Err(expiry::expired(&self.caller).into())));
        }
        self.feed.poll_recv(cx).map(|item| {
            item.map(|item| match item {
                Ok(c) => {
                    let waited = SystemTime::now()
                        .duration_since(c.completed_at)
                        .unwrap_or_default();
                    self.metrics.delivered_after(waited);
                    Ok(convert::completion(&c))
                }
                Err(e) => Err(e.into()),
            })
        })
    }
}

impl Drop for CompletionsStream {
    fn drop(&mut self) {
        self.metrics.stream_closed();
    }
}
