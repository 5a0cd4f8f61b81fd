//! A worker's life: connect, register, run assignments with a [`Handler`],
//! send results, stop what the server cancels, and reconnect when the
//! server goes away.
use std::{collections::HashMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use errand_proto::v1::{
    self as pb, worker_command::Kind as Command, worker_service_client::WorkerServiceClient,
};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Status, transport::Channel};
use tracing::{info, warn};

use crate::error::{Error, is_transient};

/// Runs one tool call. Returns the result as JSON text, or the error to
/// report. `cancel` fires when the server cancels the task or times it out;
/// a handler should stop soon after (its result is then ignored).
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn run(
        &self,
        task: pb::Assignment,
        cancel: CancellationToken,
    ) -> Result<String, pb::ToolError>;
}

/// What a worker registers.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub name: String,
    pub tools: Vec<pb::Tool>,
    pub max_concurrency: u32,
    /// A worker token, sent as `authorization: Bearer <token>`.
    pub token: Option<String>,
}

/// Serves `handler` through the server at `channel` until `shutdown` fires.
/// Reconnects with backoff while the server is away; returns an error only
/// when the server refuses the registration itself (for example an invalid
/// schema), which retrying cannot fix. `on_registered` is called after each
/// successful (re)registration.
pub async fn run(
    channel: Channel,
    config: WorkerConfig,
    handler: Arc<dyn Handler>,
    shutdown: CancellationToken,
    on_registered: impl Fn(&pb::Registered) + Send + Sync,
) -> Result<(), Error> {
    let mut backoff = Duration::from_millis(100);
    loop {
        match session(
            channel.clone(),
            &config,
            &handler,
            &shutdown,
            &on_registered,
            &mut backoff,
        )
        .await
        {
            Ok(()) => return Ok(()),
            Err(Error::Status(status)) if !is_transient(status.code()) => return Err(status.into()),
            Err(e) => {
                warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "worker connection lost; reconnecting")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.cancelled() => return Ok(()),
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One connection: `Ok` when `shutdown` fired, `Err` when the stream ended.
async fn session(
    channel: Channel,
    config: &WorkerConfig,
    handler: &Arc<dyn Handler>,
    shutdown: &CancellationToken,
    on_registered: &(impl Fn(&pb::Registered) + Send + Sync),
    backoff: &mut Duration,
) -> Result<(), Error> {
    let capacity = 2 * config.max_concurrency.max(1) as usize + 8;
    let (out, outbound) = mpsc::channel(capacity);
    let register = pb::Register {
        worker_name: config.name.clone(),
        tools: config.tools.clone(),
        max_concurrency: config.max_concurrency,
    };
    out.send(message(pb::worker_message::Kind::Register(register)))
        .await
        .map_err(|_| Error::Protocol("outbound stream closed".into()))?;
    let credentials = crate::Credentials::new(config.token.as_deref())?;
    let mut rpc = WorkerServiceClient::with_interceptor(channel, credentials)
        .max_decoding_message_size(crate::client::MAX_RECEIVE_BYTES);
    let mut commands = tokio::select! {
        r = rpc.connect(ReceiverStream::new(outbound)) => r?.into_inner(),
        _ = shutdown.cancelled() => return Ok(()),
    };
    let connection = shutdown.child_token();
    // Cancel whatever still runs when this connection ends, however it ends:
    // the server gives those tasks to another attempt.
    let _stop_running = connection.clone().drop_guard();
    let mut running: HashMap<String, CancellationToken> = HashMap::new();
    // What the server accepts in one message; it says so in Registered.
    let mut max_message = DEFAULT_MAX_MESSAGE_BYTES;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    loop {
        let command = tokio::select! {
            c = commands.message() => c?,
            Some(task_id) = done_rx.recv() => {
                running.remove(&task_id);
                continue;
            }
            _ = shutdown.cancelled() => return Ok(()),
        };
        let Some(command) = command.and_then(|c| c.kind) else {
            return Err(Status::unavailable("the server ended the worker stream").into());
        };
        match command {
            Command::Registered(registered) => {
                *backoff = Duration::from_millis(100);
                max_message = message_limit(registered.max_message_bytes);
                info!(worker_id = %registered.worker_id, max_message, "registered");
                on_registered(&registered);
            }
            Command::Assignment(task) => {
                let cancel = connection.child_token();
                running.insert(task.task_id.clone(), cancel.clone());
                let (handler, out, done) = (handler.clone(), out.clone(), done_tx.clone());
                tokio::spawn(async move {
                    let task_id = task.task_id.clone();
                    let attempt = task.attempt;
                    let outcome = handler.run(task, cancel.clone()).await;
                    if !cancel.is_cancelled() {
                        let outcome = match outcome {
                            Ok(json) => pb::task_result::Outcome::ResultJson(json),
                            Err(e) => pb::task_result::Outcome::Error(e),
                        };
                        let result = pb::TaskResult {
                            task_id: task_id.clone(),
                            outcome: Some(outcome),
                            attempt,
                            summary: String::new(),
                        };
                        let result = fit(result, max_message);
                        let _ = out
                            .send(message(pb::worker_message::Kind::Result(result)))
                            .await;
                    }
                    let _ = done.send(task_id);
                });
            }
            Command::Cancel(cancel) => {
                if let Some(token) = running.remove(&cancel.task_id) {
                    info!(task_id = %cancel.task_id, reason = %cancel.reason, "task cancelled by the server");
                    token.cancel();
                }
            }
            // Answers a later Register, which this worker never sends.
            Command::RegisterRefused(refused) => {
                warn!(code = refused.code, message = %refused.message, "a Register was refused");
            }
        }
    }
}

/// gRPC's default message limit, assumed when the server does not say.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// The limit a `Registered.max_message_bytes` means (0: not said).
fn message_limit(said: u64) -> usize {
    match usize::try_from(said) {
        Ok(0) => DEFAULT_MAX_MESSAGE_BYTES,
        Ok(n) => n,
        Err(_) => usize::MAX,
    }
}

/// `result` made to fit in one message of `max_message` bytes, because a
/// message over the server's limit would end the stream and the task
/// would go on to kill the next worker the same way. A failure keeps its
/// code, its text cut to fit (the server cuts it to its own bound anyway),
/// saying so; a result JSON that does not fit fails with `invalid_result`,
/// saying the size and the limit. (This worker sends no progress; heartbeats
/// and Register, sent before the limit is known, are small.)
fn fit(result: pb::TaskResult, max_message: usize) -> pb::TaskResult {
    // As a WorkerMessage: the oneof field's tag, its length, the result.
    let inner = result.encoded_len();
    let size = 1 + prost::length_delimiter_len(inner) + inner;
    if size <= max_message {
        return result;
    }
    let over = size - max_message + FIELD_OVERHEAD;
    let error = match result.outcome {
        Some(pb::task_result::Outcome::Error(e)) => {
            warn!(task_id = %result.task_id, size, max_message, "failure text too large to send; cutting it");
            let note = format!(" [cut to fit the server's message limit of {max_message} bytes]");
            let mut keep = e.message.len().saturating_sub(over + note.len());
            while !e.message.is_char_boundary(keep) {
                keep -= 1;
            }
            let mut message = e.message;
            message.truncate(keep);
            message.push_str(&note);
            pb::ToolError { message, ..e }
        }
        _ => {
            warn!(task_id = %result.task_id, size, max_message, "result too large to send; failing the task");
            pb::ToolError {
                code: "invalid_result".into(),
                message: too_large(size, max_message),
            }
        }
    };
    pb::TaskResult {
        outcome: Some(pb::task_result::Outcome::Error(error)),
        summary: String::new(),
        ..result
    }
}

/// Room for a field's tag and length when a text is cut to fit.
const FIELD_OVERHEAD: usize = 16;

/// The error message of a result too large to send, worded as the
/// server's own `invalid_result` for a result over `--max-result-bytes`.
fn too_large(size: usize, max_message: usize) -> String {
    format!(
        "the tool's result is {size} bytes, the limit is {max_message} \
         (the server's largest message, --max-message-bytes)"
    )
}

fn message(kind: pb::worker_message::Kind) -> pb::WorkerMessage {
    pb::WorkerMessage { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(message: String) -> pb::TaskResult {
        pb::TaskResult {
            task_id: "t".into(),
            outcome: Some(pb::task_result::Outcome::Error(pb::ToolError {
                code: "exit_status".into(),
                message,
            })),
            ..Default::default()
        }
    }

    #[test]
    fn a_failure_keeps_its_code_and_is_cut_to_fit_on_a_character() {
        let fitted = fit(failure("é".repeat(10_000)), 4096);
        assert!(fitted.encoded_len() + 3 <= 4096, "{}", fitted.encoded_len());
        let Some(pb::task_result::Outcome::Error(e)) = fitted.outcome else {
            panic!("not a failure: {fitted:?}");
        };
        assert_eq!(e.code, "exit_status");
        assert!(e.message.starts_with("éé"), "{:.20}", e.message);
        assert!(e.message.ends_with("message limit of 4096 bytes]"));
        // Small enough: as it was.
        assert_eq!(fit(failure("short".into()), 4096), failure("short".into()));
    }

    #[test]
    fn a_result_that_does_not_fit_fails_with_invalid_result() {
        let result = pb::TaskResult {
            task_id: "t".into(),
            outcome: Some(pb::task_result::Outcome::ResultJson("1".repeat(10_000))),
            ..Default::default()
        };
        let Some(pb::task_result::Outcome::Error(e)) = fit(result, 4096).outcome else {
            panic!("not failed");
        };
        assert_eq!(e.code, "invalid_result");
        assert!(e.message.contains("the limit is 4096"), "{}", e.message);
    }
}
