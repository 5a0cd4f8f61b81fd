//! Following a session's completions across server restarts, saying on
//! stderr when the server goes away and when it is back (`watch`,
//! `submit --wait`).
use anyhow::{Context, Result};
use errand_client::{Client, pb};

use crate::agent::failed;

/// A session's completions from one `Completions` stream after another:
/// when the server goes away it says so on stderr, with the cause, and
/// each time it tries again (with backoff, at most every
/// [`MAX_RETRY_WAIT`]), then that it is back; it resumes after the last
/// seq it returned, so nothing is missed or repeated. Until a first stream
/// opens, a failure ends it as any command's call would (unless
/// `connected`: the server answered a call already).
pub struct Follow<'a> {
    client: &'a Client,
    address: String,
    session: String,
    cursor: u64,
    stream: Option<tonic::Streaming<pb::Completion>>,
    connected: bool,
    retries: u32,
    wait: std::time::Duration,
}

/// Longest wait between two tries to reach a server that went away.
pub const MAX_RETRY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// The first wait before trying again; it doubles up to [`MAX_RETRY_WAIT`].
pub const FIRST_RETRY_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

impl<'a> Follow<'a> {
    pub fn new(
        client: &'a Client,
        server: &str,
        session: &str,
        after: u64,
        connected: bool,
    ) -> Self {
        Self {
            client,
            address: crate::shown_address(server),
            session: session.to_string(),
            cursor: after,
            stream: None,
            connected,
            retries: 0,
            wait: FIRST_RETRY_WAIT,
        }
    }

    pub async fn next(&mut self) -> Result<pb::Completion> {
        loop {
            let Some(stream) = self.stream.as_mut() else {
                match self
                    .client
                    .completions_once(&self.session, self.cursor)
                    .await
                {
                    Ok(stream) => {
                        if self.retries > 0 {
                            eprintln!(
                                "errand: reconnected to {}; following session {:?} after seq {}",
                                self.address, self.session, self.cursor
                            );
                        }
                        self.stream = Some(stream);
                        self.connected = true;
                        self.retries = 0;
                        self.wait = FIRST_RETRY_WAIT;
                    }
                    Err(e) if self.connected && e.code().is_some_and(is_transient) => {
                        self.retry(&e.to_string()).await;
                    }
                    Err(e) => return Err(failed(e, "following completions")),
                }
                continue;
            };
            let cause = match stream.message().await {
                Ok(Some(completion)) => {
                    // A server never repeats a seq on one stream; this
                    // guards resumption.
                    if completion.seq <= self.cursor {
                        continue;
                    }
                    self.cursor = completion.seq;
                    return Ok(completion);
                }
                Ok(None) => "the server ended the stream".to_string(),
                Err(status) if is_transient(status.code()) => {
                    errand_client::Error::from(status).to_string()
                }
                Err(status) => {
                    return Err(errand_client::Error::from(status))
                        .context("following completions");
                }
            };
            self.stream = None;
            eprintln!(
                "errand: lost the connection to the errand server at {} ({cause})",
                self.address
            );
            self.retry(&cause).await;
        }
    }

    /// Says when it tries again, and why, then waits that long.
    async fn retry(&mut self, cause: &str) {
        self.retries += 1;
        if self.retries > 1 {
            eprintln!(
                "errand: still no errand server at {} ({cause})",
                self.address
            );
        }
        eprintln!(
            "errand: retrying in {:.1} s (attempt {})",
            self.wait.as_secs_f64(),
            self.retries
        );
        tokio::time::sleep(self.wait).await;
        self.wait = (self.wait * 2).min(MAX_RETRY_WAIT);
    }
}

pub(crate) fn is_transient(code: tonic::Code) -> bool {
    errand_client::error::is_transient(code)
}
