//! Following a session's completions (`watch`, `submit --wait`) or its
//! events with progress (`watch --progress`) across server restarts,
//! saying on stderr when the server goes away and when it is back.
use std::time::Duration;

use anyhow::{Result, anyhow};
use errand_client::{Client, FollowEvent, FollowOptions, pb, pb::session_event::Event};
use tokio_stream::{StreamExt, wrappers::ReceiverStream};

use crate::agent::failed;

/// A session's completions from [`Client::follow_completions`], or its
/// events from [`Client::follow_session_events`], their reconnections told
/// on stderr: when the server goes away (with the cause), each retry (with
/// backoff, at most every [`MAX_RETRY_WAIT`]), and when it is back; it
/// resumes after the last completion's seq, so no completion is missed or
/// repeated. Until a first stream opens, a failure ends it as any command's
/// call would (unless `connected`: the server answered a call already).
pub struct Follow {
    address: String,
    session: String,
    /// What a failure says was being done.
    doing: &'static str,
    events: ReceiverStream<Result<FollowEvent, errand_client::Error>>,
}

/// Longest wait between two tries to reach a server that went away.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(5);
/// The first wait before trying again; it doubles up to [`MAX_RETRY_WAIT`].
const FIRST_RETRY_WAIT: Duration = Duration::from_millis(250);

fn options(connected: bool) -> FollowOptions {
    FollowOptions {
        first_failure_ends: !connected,
        first_backoff: FIRST_RETRY_WAIT,
        max_backoff: MAX_RETRY_WAIT,
    }
}

impl Follow {
    /// The session's completions after `after`.
    pub fn new(client: &Client, server: &str, session: &str, after: u64, connected: bool) -> Self {
        Self {
            address: crate::shown_address(server),
            session: session.to_string(),
            doing: "following completions",
            events: client.follow_completions(session, after, options(connected)),
        }
    }

    /// The events `request` asks for (completions after its `after_seq`,
    /// progress with `include_progress`).
    pub fn session_events(
        client: &Client,
        server: &str,
        request: pb::SessionEventsRequest,
        connected: bool,
    ) -> Self {
        Self {
            address: crate::shown_address(server),
            session: request.session_id.clone(),
            doing: "following session events",
            events: client.follow_session_events(request, options(connected)),
        }
    }

    /// The next completion, past any progress.
    pub async fn next(&mut self) -> Result<pb::Completion> {
        loop {
            if let Event::Completion(completion) = self.next_event().await? {
                return Ok(completion);
            }
        }
    }

    /// The next completion or progress report.
    pub async fn next_event(&mut self) -> Result<Event> {
        let address = &self.address;
        loop {
            let event = match self.events.next().await {
                Some(Ok(event)) => event,
                Some(Err(e)) => return Err(failed(e, self.doing)),
                None => return Err(anyhow!("{}: the stream stopped", self.doing)),
            };
            match event {
                FollowEvent::Completion(completion) => return Ok(Event::Completion(completion)),
                FollowEvent::Progress(progress) => return Ok(Event::Progress(progress)),
                FollowEvent::Lost { cause } => eprintln!(
                    "errand: lost the connection to the errand server at {address} ({cause})"
                ),
                FollowEvent::Retrying {
                    attempt,
                    wait,
                    cause,
                } => {
                    if attempt > 1 {
                        eprintln!("errand: still no errand server at {address} ({cause})");
                    }
                    eprintln!(
                        "errand: retrying in {:.1} s (attempt {attempt})",
                        wait.as_secs_f64()
                    );
                }
                FollowEvent::Reconnected { after_seq } => eprintln!(
                    "errand: reconnected to {address}; following session {:?} after seq {after_seq}",
                    self.session
                ),
                _ => {}
            }
        }
    }
}
