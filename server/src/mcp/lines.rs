//! MCP over newline-delimited JSON (`errand mcp --stdio`), in place of
//! rmcp's stdio transport (which drops a line that is not JSON unanswered):
//! each line is screened by [`super::incoming`], so one that is not a
//! JSON-RPC request gets the error the HTTP endpoint gives, and the bridge
//! goes on. Lines are bounded: a longer one is skipped to its end and
//! refused, never buffered whole. rmcp's -32601 errors go out worded by
//! [`super::malformed::explain`], as the HTTP endpoint words them.
//!
//! Until rmcp has answered a request other than `ping` or `discover` (its
//! `initialize`, or the first request of a stateless 2026-07-28 client),
//! notifications and answers from the client are dropped: rmcp ends the
//! bridge on one before its lifecycle has begun (MCP asks clients to start
//! with a request).
use std::{
    future::Future,
    io,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use rmcp::{
    RoleServer,
    model::{ClientJsonRpcMessage, ServerJsonRpcMessage, ServerResult},
    transport::Transport,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader},
    sync::mpsc,
    task::JoinHandle,
};

use super::incoming::{self, Screened};

/// Lines written ahead of a slow reader.
const OUT_BUFFER: usize = 64;

/// How long closing waits for the queued lines to be written.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// One MCP session over a reader and a writer of lines.
pub struct Lines<R> {
    read: BufReader<R>,
    /// The current line so far: `receive` may be dropped mid-line (rmcp
    /// polls it in a `select!`), so the partial line lives here.
    line: Vec<u8>,
    /// Skipping the rest of a line over `max_line`.
    discarding: bool,
    max_line: usize,
    /// Whole lines for the writer task; `None` once closed.
    out: Option<mpsc::Sender<Vec<u8>>>,
    writer: Option<JoinHandle<()>>,
    /// An error answer waiting for room in `out`.
    reply: Option<Vec<u8>>,
    /// Whether rmcp's lifecycle has begun (see the module's doc); set as
    /// its first such answer is sent.
    started: Arc<AtomicBool>,
}

impl<R: AsyncRead + Unpin + Send> Lines<R> {
    /// Reads lines of at most `max_line` bytes from `read`, writes to
    /// `write` (from a task of its own, so no line is ever cut by a
    /// cancelled `receive`). Needs a Tokio runtime.
    pub fn new<W: AsyncWrite + Unpin + Send + 'static>(
        read: R,
        mut write: W,
        max_line: usize,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(OUT_BUFFER);
        let writer = tokio::spawn(async move {
            while let Some(line) = rx.recv().await {
                let written = async {
                    write.write_all(&line).await?;
                    if rx.is_empty() {
                        write.flush().await?;
                    }
                    io::Result::Ok(())
                };
                if let Err(e) = written.await {
                    tracing::debug!(error = %e, "the MCP client's output is closed");
                    return;
                }
            }
            let _ = write.flush().await;
        });
        Self {
            read: BufReader::new(read),
            line: Vec::new(),
            discarding: false,
            max_line,
            out: Some(tx),
            writer: Some(writer),
            reply: None,
            started: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The next whole line (without its newline), `Err(true)` for one over
    /// the limit (skipped), `Err(false)` at the end of input or on an error.
    async fn next_line(&mut self) -> Result<Vec<u8>, bool> {
        loop {
            let (used, done) = {
                let available = match self.read.fill_buf().await {
                    Ok([]) => return Err(false),
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!(error = %e, "reading MCP input failed");
                        return Err(false);
                    }
                };
                let newline = available.iter().position(|&b| b == b'\n');
                let used = newline.map_or(available.len(), |at| at + 1);
                if !self.discarding {
                    if self.line.len() + used > self.max_line + 1 {
                        // Over the limit, newline included: skip to its end.
                        self.line.clear();
                        self.discarding = true;
                    } else {
                        self.line.extend_from_slice(&available[..used]);
                    }
                }
                (used, newline.is_some())
            };
            self.read.consume(used);
            if !done {
                continue;
            }
            if std::mem::take(&mut self.discarding) {
                return Err(true);
            }
            let mut line = std::mem::take(&mut self.line);
            while line.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
                line.pop();
            }
            return Ok(line);
        }
    }

    /// Queues `reply` for the writer; `false` once the output is gone.
    async fn send_reply(&mut self) -> bool {
        let Some(out) = &self.out else {
            return false;
        };
        if self.reply.is_some() {
            // A cancelled wait for room keeps the reply for the next call.
            let Ok(permit) = out.reserve().await else {
                return false;
            };
            permit.send(self.reply.take().unwrap_or_default());
        }
        true
    }

    /// Whether rmcp should see `message` now (see the module's doc).
    fn passes(&self, message: &ClientJsonRpcMessage) -> bool {
        matches!(message, ClientJsonRpcMessage::Request(_)) || self.started.load(Ordering::Relaxed)
    }
}

/// A message as one line.
fn line_of(message: &ServerJsonRpcMessage) -> io::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(message)?;
    line.push(b'\n');
    Ok(line)
}

impl<R: AsyncRead + Unpin + Send> Transport<RoleServer> for Lines<R> {
    type Error = io::Error;

    fn send(
        &mut self,
        mut item: ServerJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        if let ServerJsonRpcMessage::Error(e) = &mut item {
            super::malformed::explain(&mut e.error);
        }
        if let ServerJsonRpcMessage::Response(r) = &item
            && !matches!(
                r.result,
                ServerResult::EmptyResult(_) | ServerResult::DiscoverResult(_)
            )
        {
            self.started.store(true, Ordering::Relaxed);
        }
        let out = self.out.clone();
        async move {
            let line = line_of(&item)?;
            let closed = || io::Error::new(io::ErrorKind::BrokenPipe, "the MCP output is closed");
            out.ok_or_else(closed)?
                .send(line)
                .await
                .map_err(|_| closed())
        }
    }

    async fn receive(&mut self) -> Option<ClientJsonRpcMessage> {
        loop {
            if !self.send_reply().await {
                return None;
            }
            let line = match self.next_line().await {
                Ok(line) if line.iter().all(u8::is_ascii_whitespace) => continue,
                Ok(line) => line,
                Err(true) => {
                    tracing::debug!(
                        max = self.max_line,
                        "an MCP line over the limit was skipped"
                    );
                    self.reply = line_of(&incoming::too_large(self.max_line)).ok();
                    continue;
                }
                Err(false) => return None,
            };
            match incoming::screen(&line) {
                Screened::Message(m) if self.passes(&m) => return Some(m),
                Screened::Message(_) => {
                    tracing::debug!(
                        "dropping an MCP notification or answer sent before any request"
                    );
                }
                Screened::Ignored => {}
                Screened::Refused(error) => self.reply = line_of(&error).ok(),
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        // Everything queued is written before the writer ends, unless the
        // client stopped reading: then it is not waited for past CLOSE_WAIT.
        self.out = None;
        if let Some(mut writer) = self.writer.take()
            && tokio::time::timeout(CLOSE_WAIT, &mut writer).await.is_err()
        {
            writer.abort();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

    use rmcp::model::ClientRequest;

    use super::*;

    #[tokio::test]
    async fn bad_lines_are_answered_and_reading_goes_on() {
        let (mut client, server_in) = tokio::io::duplex(1 << 16);
        let (server_out, answers) = tokio::io::duplex(1 << 16);
        let mut lines = Lines::new(server_in, server_out, 64);
        let note = "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n";
        let long = format!("{}\n", "x".repeat(200));
        let input = [
            note,
            "not json\n",
            "\n",
            long.as_str(),
            "[]\r\n",
            "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"ping\"}\n",
        ]
        .concat();
        client.write_all(input.as_bytes()).await.unwrap();
        let Some(ClientJsonRpcMessage::Request(ping)) = lines.receive().await else {
            panic!("the ping after the bad lines");
        };
        assert!(matches!(ping.request, ClientRequest::PingRequest(_)));
        // A ping's answer does not begin rmcp's lifecycle: a notification
        // is still dropped.
        let pong = ServerJsonRpcMessage::response(ServerResult::empty(()), ping.id.clone());
        lines.send(pong).await.unwrap();
        client.write_all(note.as_bytes()).await.unwrap();
        client
            .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"ping\"}\n")
            .await
            .unwrap();
        let Some(ClientJsonRpcMessage::Request(_)) = lines.receive().await else {
            panic!("the second ping, the notification before it dropped");
        };
        // Another answer does.
        let tools = ServerResult::ListToolsResult(Default::default());
        lines
            .send(ServerJsonRpcMessage::response(tools, ping.id))
            .await
            .unwrap();
        client.write_all(note.as_bytes()).await.unwrap();
        drop(client);
        let Some(ClientJsonRpcMessage::Notification(_)) = lines.receive().await else {
            panic!("the notification, once rmcp has answered a request");
        };
        assert!(lines.receive().await.is_none(), "end of input");
        lines.close().await.unwrap();
        let mut answers = BufReader::new(answers).lines();
        let mut codes = Vec::new();
        while let Some(line) = answers.next_line().await.unwrap() {
            let v: Value = serde_json::from_str(&line).unwrap();
            codes.push(v["error"]["code"].as_i64());
        }
        assert_eq!(
            codes,
            [Some(-32700), Some(-32600), Some(-32600), None, None],
            "parse, too long, batch, then the two answers sent"
        );
    }
}
