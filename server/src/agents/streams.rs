//! A session's [`Feed`](crate::sessions::Feed) of completions, and its
//! [`Events`](crate::sessions::Events) (completions and progress), as
//! streams that hold the tenant's stream slot and count in the open-streams
//! gauge while open, and end when the caller's token expires.
use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::SystemTime,
};

use futures::Stream;
use tokio::sync::mpsc;

use super::AgentApi;
use crate::{
    Error,
    auth::Caller,
    auth::expiry,
    metrics::Metrics,
    model::CompletionRecord,
    quota::Slot,
    sessions::{ByteWindow, Event},
};

/// A session's items (`Arc<CompletionRecord>` from
/// [`AgentApi::completions`], [`Event`] from [`AgentApi::session_events`]),
/// then, when the stream fails, its error, and nothing after. At the
/// token's expiry it yields UNAUTHENTICATED "token expired ..." and ends.
pub struct SessionStream<T> {
    items: mpsc::Receiver<Result<T, Error>>,
    /// The stream's byte window: a completion's bytes are given back as
    /// it leaves for the transport.
    window: ByteWindow,
    metrics: Arc<Metrics>,
    _slot: Slot,
    /// Resolves at the token's expiry; `None` once the stream has ended.
    expiry: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    caller: Caller,
}

/// What of an item counts as delivered (a completion's wait from commit).
pub trait Delivered {
    fn completion(&self) -> Option<&CompletionRecord>;
}

impl Delivered for Arc<CompletionRecord> {
    fn completion(&self) -> Option<&CompletionRecord> {
        Some(self)
    }
}

impl Delivered for Event {
    fn completion(&self) -> Option<&CompletionRecord> {
        match self {
            Event::Completion(c) => Some(c),
            Event::Progress(_) => None,
        }
    }
}

impl<T> SessionStream<T> {
    /// Counts the stream open until it is dropped.
    fn new(
        items: mpsc::Receiver<Result<T, Error>>,
        window: ByteWindow,
        metrics: Arc<Metrics>,
        slot: Slot,
        caller: Caller,
    ) -> Self {
        metrics.stream_opened();
        Self {
            items,
            window,
            metrics,
            _slot: slot,
            expiry: Some(Box::pin(expiry::reached(expiry::deadline(&caller)))),
            caller,
        }
    }
}

impl<T: Delivered> Stream for SessionStream<T> {
    type Item = Result<T, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(expiry) = self.expiry.as_mut() else {
            return Poll::Ready(None);
        };
        if expiry.as_mut().poll(cx).is_ready() {
            self.expiry = None;
            return Poll::Ready(Some(Err(expiry::expired(&self.caller))));
        }
        let item = self.items.poll_recv(cx);
        if let Poll::Ready(Some(Ok(item))) = &item
            && let Some(c) = item.completion()
        {
            self.window.give_back(c);
            let waited = SystemTime::now()
                .duration_since(c.completed_at)
                .unwrap_or_default();
            self.metrics.delivered_after(waited);
        }
        item
    }
}

impl<T> Drop for SessionStream<T> {
    fn drop(&mut self) {
        self.metrics.stream_closed();
    }
}

impl AgentApi {
    /// A slot for one more session stream of the caller's tenant. Errors:
    /// RESOURCE_EXHAUSTED at `--max-streams-per-tenant`.
    fn stream_slot(&self, caller: &Caller) -> Result<Slot, Error> {
        let max = self.limits().max_streams_per_tenant;
        self.streams.acquire(&caller.tenant, max).map_err(|open| {
            Error::ResourceExhausted(format!(
                "your tenant has {open} {} open, the limit is {max}: close some (one stream per session is enough)",
                crate::error::phrases::STREAMS
            ))
        })
    }

    /// A new stream's byte window (`--stream-buffer-bytes`).
    fn stream_window(&self) -> ByteWindow {
        ByteWindow::new(self.limits().stream_buffer_bytes)
    }

    /// The caller's session's completions after `after_seq` (0: every one
    /// retained), replayed then followed, each seq once and in order.
    /// Errors: a bad session name; RESOURCE_EXHAUSTED for the tenant's
    /// streams; OUT_OF_RANGE for an `after_seq` beyond the session's last.
    pub async fn completions(
        &self,
        caller: &Caller,
        session: &str,
        after_seq: u64,
    ) -> Result<SessionStream<Arc<CompletionRecord>>, Error> {
        let session = self.session_key(caller, session)?;
        let slot = self.stream_slot(caller)?;
        let after_seq = self.sched.stream_start(&session, after_seq, false).await?;
        let window = self.stream_window();
        let feed = self.feed.open(session, after_seq, window.clone());
        Ok(SessionStream::new(
            feed,
            window,
            self.metrics.clone(),
            slot,
            caller.clone(),
        ))
    }

    /// The caller's session's events after `after_seq` (never below its
    /// acknowledged seq): its completions as [`Self::completions`] sends
    /// them, and with `include_progress` its running tasks' progress.
    /// Errors: as [`Self::completions`].
    pub async fn session_events(
        &self,
        caller: &Caller,
        session: &str,
        after_seq: u64,
        include_progress: bool,
    ) -> Result<SessionStream<Event>, Error> {
        let session = self.session_key(caller, session)?;
        let slot = self.stream_slot(caller)?;
        // Acknowledged completions are never sent again.
        let after_seq = self.sched.stream_start(&session, after_seq, true).await?;
        let buffer = self.limits().stream_buffer;
        let window = self.stream_window();
        let events =
            (self.events).open(session, after_seq, include_progress, buffer, window.clone());
        Ok(SessionStream::new(
            events,
            window,
            self.metrics.clone(),
            slot,
            caller.clone(),
        ))
    }
}
