//! Following a session's completions, or its events (completions and
//! progress), across server restarts and network failures: the one
//! reconnect loop behind [`Client::completions`],
//! [`Client::follow_completions`] and [`Client::follow_session_events`].
use std::{fmt, time::Duration};

use errand_proto::v1::{self as pb, session_event::Event, tool_service_client::ToolServiceClient};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::{
    client::{AuthChannel, Client},
    error::{Error, is_transient},
};

/// How [`Client::follow_completions`] and [`Client::follow_session_events`]
/// retry. The default is
/// [`Client::completions`]'s: retry every transient failure, the first
/// included, waiting 100 ms, then twice as long each time, at most 5 s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowOptions {
    /// When no stream has opened yet, end with the failure (the stream's
    /// one item) rather than retry it: for a caller that has not reached
    /// the server yet and would rather say so than wait. Default `false`.
    pub first_failure_ends: bool,
    /// The wait before the first retry. Each failed attempt doubles it up to
    /// [`max_backoff`](Self::max_backoff); a stream that opens resets it.
    /// Taken as at least [`MIN_BACKOFF`] (1 ms): zero would retry without
    /// a pause.
    pub first_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
}

/// The shortest wait between two attempts, whatever the options say.
pub const MIN_BACKOFF: Duration = Duration::from_millis(1);

impl Default for FollowOptions {
    fn default() -> Self {
        Self {
            first_failure_ends: false,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// What [`Client::follow_completions`] and [`Client::follow_session_events`]
/// yield. A loss is followed by [`Retrying`](Self::Retrying) events, one per
/// attempt, until a stream opens again ([`Reconnected`](Self::Reconnected))
/// or an attempt fails with an error retrying cannot fix (the stream's last
/// item). Non-exhaustive: events may be added.
#[derive(Debug, Clone)]
#[non_exhaustive]
// Completions are nearly every event: boxing them would allocate for each
// to shrink the rare others.
#[allow(clippy::large_enum_variant)]
pub enum FollowEvent {
    /// The next completion of the session, in seq order, each once.
    Completion(pb::Completion),
    /// A running task's progress report, from
    /// [`Client::follow_session_events`] with `include_progress` only.
    /// Progress has no seq and is not replayed: reports made while the
    /// stream was lost are gone, except that each stream opened starts with
    /// the latest report of every task still running (so one may arrive
    /// again after a reconnection); a restarted server has none until
    /// workers report again. The server coalesces reports (at most one per
    /// task per its `--progress-interval`, the latest wins) and sends none
    /// after its task's completion.
    Progress(pb::Progress),
    /// The open stream failed with a transient error or the server ended
    /// it; a [`Retrying`](Self::Retrying) with the same cause follows.
    Lost { cause: Cause },
    /// About to wait `wait` before attempt number `attempt` (1, 2, ... since
    /// the last stream opened) to open a stream again. `cause`: why, the
    /// loss for the first attempt after one, otherwise the previous
    /// attempt's failure (`UNAVAILABLE` while nothing answers, say).
    Retrying {
        attempt: u32,
        wait: Duration,
        cause: Cause,
    },
    /// A stream opened after one or more retries, resuming after
    /// `after_seq`, the seq of the last completion delivered (or the
    /// `after_seq` asked for when none was). Progress events do not move it.
    Reconnected { after_seq: u64 },
}

/// Why a stream was lost or a retry is needed.
#[derive(Debug, Clone)]
pub enum Cause {
    /// The server ended the stream, as one does when it shuts down.
    Ended,
    /// A transient error ([`is_transient`]), of the stream or of the
    /// attempt to open one.
    Failed(Status),
}

impl fmt::Display for Cause {
    /// `the server ended the stream`, or the status as [`Error`] shows it
    /// (`UNAVAILABLE: tcp connect error (connection refused)`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Ended => f.write_str("the server ended the stream"),
            Cause::Failed(status) => fmt::Display::fmt(&Error::Status(status.clone()), f),
        }
    }
}

impl Client {
    /// The session's completions after `after_seq` (0: every retained one),
    /// then live ones, as [`Client::completions`] gives them, with the
    /// reconnections shown: a [`FollowEvent::Lost`] when the server or
    /// network goes away, a [`FollowEvent::Retrying`] before each attempt,
    /// waiting as `options` say, and a [`FollowEvent::Reconnected`] when a
    /// stream opens again, after the last seq delivered, so nothing is
    /// missed or repeated. Runs in a task while the stream is read; dropping
    /// the stream stops it.
    ///
    /// Ends with an `Err`, its last item, on an error that retrying cannot
    /// fix: OUT_OF_RANGE for an `after_seq` beyond the session's last seq,
    /// UNAUTHENTICATED when the token expires, or, with
    /// [`FollowOptions::first_failure_ends`], any failure before a first
    /// stream opens.
    pub fn follow_completions(
        &self,
        session: &str,
        after_seq: u64,
        options: FollowOptions,
    ) -> ReceiverStream<Result<FollowEvent, Error>> {
        let source = Source::completions(session, after_seq);
        spawn(self.rpc.clone(), source, options, Some)
    }

    /// The session's events as [`Client::session_events`] streams them
    /// (completions after `request.after_seq`, and with
    /// `request.include_progress` running tasks' progress), reconnecting as
    /// [`Client::follow_completions`] does and with the same events: each
    /// new stream is opened with `request`, its `after_seq` set to the seq
    /// of the last completion delivered, so no completion is missed or
    /// repeated. Completions come as [`FollowEvent::Completion`], progress
    /// as [`FollowEvent::Progress`] (which says what a reconnection loses
    /// of it); an event kind this client does not know is skipped. Runs in
    /// a task while the stream is read; dropping the stream stops it.
    ///
    /// Ends with an `Err`, its last item, as [`Client::follow_completions`]
    /// does (OUT_OF_RANGE for an `after_seq` beyond the session's last seq,
    /// say).
    pub fn follow_session_events(
        &self,
        request: pb::SessionEventsRequest,
        options: FollowOptions,
    ) -> ReceiverStream<Result<FollowEvent, Error>> {
        spawn(
            self.rpc.clone(),
            Source::SessionEvents(request),
            options,
            Some,
        )
    }
}

/// The stream followed: which RPC, and the request that opens it (its
/// `after_seq` replaced by the loop's cursor on each opening).
pub(crate) enum Source {
    Completions(pb::CompletionsRequest),
    SessionEvents(pb::SessionEventsRequest),
}

impl Source {
    pub(crate) fn completions(session: &str, after_seq: u64) -> Self {
        Source::Completions(pb::CompletionsRequest {
            session_id: session.to_string(),
            after_seq,
        })
    }

    /// The `after_seq` asked for: where the cursor starts.
    fn after_seq(&self) -> u64 {
        match self {
            Source::Completions(request) => request.after_seq,
            Source::SessionEvents(request) => request.after_seq,
        }
    }

    /// Opens a stream of its kind, starting after `after_seq`.
    async fn open(
        &self,
        rpc: &mut ToolServiceClient<AuthChannel>,
        after_seq: u64,
    ) -> Result<Opened, Status> {
        Ok(match self {
            Source::Completions(request) => {
                let request = pb::CompletionsRequest {
                    after_seq,
                    ..request.clone()
                };
                Opened::Completions(rpc.completions(request).await?.into_inner())
            }
            Source::SessionEvents(request) => {
                let request = pb::SessionEventsRequest {
                    after_seq,
                    ..request.clone()
                };
                Opened::SessionEvents(rpc.session_events(request).await?.into_inner())
            }
        })
    }
}

/// An open stream of either kind.
enum Opened {
    Completions(Streaming<pb::Completion>),
    SessionEvents(Streaming<pb::SessionEvent>),
}

impl Opened {
    /// The next item as a [`FollowEvent::Completion`] or
    /// [`FollowEvent::Progress`]; `None` when the server ended the stream.
    async fn next(&mut self) -> Result<Option<FollowEvent>, Status> {
        match self {
            Opened::Completions(stream) => Ok(stream.message().await?.map(FollowEvent::Completion)),
            Opened::SessionEvents(stream) => loop {
                let Some(item) = stream.message().await? else {
                    return Ok(None);
                };
                match item.event {
                    Some(Event::Completion(completion)) => {
                        return Ok(Some(FollowEvent::Completion(completion)));
                    }
                    Some(Event::Progress(progress)) => {
                        return Ok(Some(FollowEvent::Progress(progress)));
                    }
                    // A kind newer than this client.
                    None => {}
                }
            },
        }
    }
}

/// Runs the loop in a task, handing what `keep` makes of each event to the
/// returned stream (`None`: nothing).
pub(crate) fn spawn<T: Send + 'static>(
    rpc: ToolServiceClient<AuthChannel>,
    source: Source,
    options: FollowOptions,
    keep: impl FnMut(FollowEvent) -> Option<T> + Send + 'static,
) -> ReceiverStream<Result<T, Error>> {
    let (tx, rx) = mpsc::channel(64);
    let out = Out { tx, keep };
    tokio::spawn(run(rpc, source, options, out));
    ReceiverStream::new(rx)
}

/// Where events go.
struct Out<T, K> {
    tx: mpsc::Sender<Result<T, Error>>,
    keep: K,
}

impl<T, K: FnMut(FollowEvent) -> Option<T>> Out<T, K> {
    /// False once the receiver is gone.
    async fn send(&mut self, event: FollowEvent) -> bool {
        match (self.keep)(event) {
            Some(item) => self.tx.send(Ok(item)).await.is_ok(),
            None => !self.tx.is_closed(),
        }
    }

    async fn fail(self, status: Status) {
        let _ = self.tx.send(Err(status.into())).await;
    }
}

async fn run<T, K: FnMut(FollowEvent) -> Option<T>>(
    mut rpc: ToolServiceClient<AuthChannel>,
    source: Source,
    options: FollowOptions,
    mut out: Out<T, K>,
) {
    // The seq of the last completion delivered: where the next stream starts.
    let mut cursor = source.after_seq();
    // Retries since the last stream opened, and whether one ever did.
    let (mut attempt, mut opened) = (0u32, false);
    let first = options.first_backoff.max(MIN_BACKOFF);
    let mut wait = first;
    loop {
        let answer = tokio::select! {
            answer = source.open(&mut rpc, cursor) => answer,
            _ = out.tx.closed() => return,
        };
        let cause = match answer {
            Ok(mut stream) => {
                if attempt > 0
                    && !out
                        .send(FollowEvent::Reconnected { after_seq: cursor })
                        .await
                {
                    return;
                }
                (attempt, opened, wait) = (0, true, first);
                let cause = loop {
                    let next = tokio::select! {
                        next = stream.next() => next,
                        _ = out.tx.closed() => return,
                    };
                    match next {
                        // A server never repeats a seq on one stream; this
                        // guards resumption.
                        Ok(Some(FollowEvent::Completion(c))) if c.seq <= cursor => {}
                        Ok(Some(event)) => {
                            if let FollowEvent::Completion(completion) = &event {
                                cursor = completion.seq;
                            }
                            if !out.send(event).await {
                                return;
                            }
                        }
                        Ok(None) => break Cause::Ended,
                        Err(status) if is_transient(status.code()) => break Cause::Failed(status),
                        Err(status) => return out.fail(status).await,
                    }
                };
                if !out
                    .send(FollowEvent::Lost {
                        cause: cause.clone(),
                    })
                    .await
                {
                    return;
                }
                cause
            }
            Err(status)
                if is_transient(status.code()) && (opened || !options.first_failure_ends) =>
            {
                Cause::Failed(status)
            }
            Err(status) => return out.fail(status).await,
        };
        attempt += 1;
        if !out
            .send(FollowEvent::Retrying {
                attempt,
                wait,
                cause,
            })
            .await
        {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = out.tx.closed() => return,
        }
        wait = wait.saturating_mul(2).min(options.max_backoff.max(first));
    }
}
