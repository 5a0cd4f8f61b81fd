//! The agent side: submit tool calls, follow a session's completions.
use std::time::Duration;

use errand_proto::v1::{self as pb, tool_service_client::ToolServiceClient};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, transport::Channel, transport::Endpoint};
use tracing::debug;

use crate::error::{Error, is_transient};

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Parses `host:port` or a URL into an endpoint. The connection is made
/// lazily and re-made after failures.
pub fn endpoint(addr: &str) -> Result<Endpoint, Error> {
    let url = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    Endpoint::from_shared(url)
        .map(|e| {
            e.connect_timeout(Duration::from_secs(5))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(15))
                .keep_alive_timeout(Duration::from_secs(20))
                .keep_alive_while_idle(true)
        })
        .map_err(|_| Error::Address(addr.to_string()))
}

/// A connection to errand's `ToolService`. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    rpc: ToolServiceClient<Channel>,
}

impl Client {
    /// Connects to `addr` (`host:port` or a URL), failing at once when the
    /// server cannot be reached.
    pub async fn connect(addr: &str) -> Result<Self, Error> {
        let channel = endpoint(addr)?
            .connect()
            .await
            .map_err(|source| Error::Connect {
                addr: addr.to_string(),
                source,
            })?;
        Ok(Self::from_channel(channel))
    }

    pub fn from_channel(channel: Channel) -> Self {
        Self {
            rpc: ToolServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024),
        }
    }

    pub async fn list_tools(&self) -> Result<Vec<pb::Tool>, Error> {
        let tools = self.rpc.clone().list_tools(pb::ListToolsRequest {}).await?;
        Ok(tools.into_inner().tools)
    }

    /// Submits one call with default options.
    pub async fn submit(
        &self,
        session: &str,
        tool: &str,
        arguments_json: &str,
    ) -> Result<pb::SubmitToolResponse, Error> {
        self.submit_request(pb::SubmitToolRequest {
            session_id: session.to_string(),
            tool: tool.to_string(),
            arguments_json: arguments_json.to_string(),
            ..Default::default()
        })
        .await
    }

    /// Submits one call with every option of the request.
    pub async fn submit_request(
        &self,
        request: pb::SubmitToolRequest,
    ) -> Result<pb::SubmitToolResponse, Error> {
        Ok(self.rpc.clone().submit_tool(request).await?.into_inner())
    }

    pub async fn get_task(&self, task_id: &str) -> Result<pb::Task, Error> {
        let req = pb::GetTaskRequest {
            task_id: task_id.to_string(),
        };
        Ok(self.rpc.clone().get_task(req).await?.into_inner())
    }

    pub async fn cancel(&self, task_id: &str) -> Result<pb::Task, Error> {
        let req = pb::CancelTaskRequest {
            task_id: task_id.to_string(),
        };
        Ok(self.rpc.clone().cancel_task(req).await?.into_inner())
    }

    /// Releases the session's completions up to `up_to_seq`; returns how many
    /// were removed.
    pub async fn ack_completions(&self, session: &str, up_to_seq: u64) -> Result<u64, Error> {
        let req = pb::AckCompletionsRequest {
            session_id: session.to_string(),
            up_to_seq,
        };
        Ok(self
            .rpc
            .clone()
            .ack_completions(req)
            .await?
            .into_inner()
            .removed)
    }

    /// The session's completions after `after_seq`, then live ones, for as
    /// long as the returned stream is read. Reconnects by itself with
    /// backoff when the server or network goes away, resuming after the last
    /// seq it delivered: nothing is missed or repeated. Ends with an error
    /// only for errors that retrying cannot fix.
    pub fn completions(
        &self,
        session: &str,
        after_seq: u64,
    ) -> ReceiverStream<Result<pb::Completion, Error>> {
        let (tx, rx) = mpsc::channel(64);
        let rpc = self.rpc.clone();
        let session = session.to_string();
        tokio::spawn(async move {
            let mut cursor = after_seq;
            let mut backoff = Duration::from_millis(100);
            loop {
                match follow(rpc.clone(), &session, &mut cursor, &tx, &mut backoff).await {
                    Ok(()) => return, // the caller stopped reading
                    Err(status) if is_transient(status.code()) => {
                        debug!(session_id = %session, %status, after_seq = cursor, "completions stream lost; reconnecting");
                    }
                    Err(status) => {
                        let _ = tx.send(Err(status.into())).await;
                        return;
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = tx.closed() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        });
        ReceiverStream::new(rx)
    }
}

/// Follows one stream until it fails (`Err`) or the receiver is dropped.
async fn follow(
    mut rpc: ToolServiceClient<Channel>,
    session: &str,
    cursor: &mut u64,
    tx: &mpsc::Sender<Result<pb::Completion, Error>>,
    backoff: &mut Duration,
) -> Result<(), Status> {
    let req = pb::CompletionsRequest {
        session_id: session.to_string(),
        after_seq: *cursor,
    };
    let mut stream = tokio::select! {
        s = rpc.completions(req) => s?.into_inner(),
        _ = tx.closed() => return Ok(()),
    };
    *backoff = Duration::from_millis(100);
    loop {
        let next = tokio::select! {
            m = stream.message() => m?,
            _ = tx.closed() => return Ok(()),
        };
        let Some(completion) = next else {
            return Err(Status::unavailable("the server ended the stream"));
        };
        // A server never repeats a seq on one stream; this guards resumption.
        if completion.seq <= *cursor {
            continue;
        }
        *cursor = completion.seq;
        if tx.send(Ok(completion)).await.is_err() {
            return Ok(());
        }
    }
}
