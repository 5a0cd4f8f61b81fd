//! Following a session's completions across server restarts, saying on
//! stderr when the server goes away and when it is back (`watch`,
//! `submit --wait`).
use anyhow::{Result, anyhow};
use errand_client::{Client, FollowEvent, FollowOptions, pb};
use tokio_stream::{StreamExt, wrappers::ReceiverStream};

use crate::agent::failed;

/// A session's completions from [`Client::follow_completions`], its
/// reconnections told on stderr: when the server goes away (with the
/// cause), each retry (with backoff, at most every [`MAX_RETRY_WAIT`]),
/// and when it is back; it resumes after the last seq it returned, so
/// nothing is missed or repeated. Until a first stream opens, a failure
/// ends it as any command's call would (unless `connected`: the server
/// answered a call already).
pub struct Follow {
    address: String,
    session: String,
    events: ReceiverStream<Result<FollowEvent, errand_client::Error>>,
}

/// Longest wait between two tries to reach a server that went away.
pub const MAX_RETRY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// The first wait before trying again; it doubles up to [`MAX_RETRY_WAIT`].
pub const FIRST_RETRY_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

impl Follow {
    pub fn new(client: &Client, server: &str, session: &str, after: u64, connected: bool) -> Self {
        let options = FollowOptions {
            first_failure_ends: !connected,
            first_backoff: FIRST_RETRY_WAIT,
            max_backoff: MAX_RETRY_WAIT,
        };
        Self {
            address: crate::shown_address(server),
            session: session.to_string(),
            events: client.follow_completions(session, after, options),
        }
    }

    pub async fn next(&mut self) -> Result<pb::Completion> {
        let address = &self.address;
        loop {
            let event = match self.events.next().await {
                Some(Ok(event)) => event,
                Some(Err(e)) => return Err(failed(e, "following completions")),
                None => return Err(anyhow!("following completions: the stream stopped")),
            };
            match event {
                FollowEvent::Completion(completion) => return Ok(completion),
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

pub(crate) fn is_transient(code: tonic::Code) -> bool {
    errand_client::error::is_transient(code)
}
