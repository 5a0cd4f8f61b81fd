//! The bench worker: errand's Rust worker runtime serving three tools.
//!
//! - `noop` answers at once with `{"t": NS}`, the send time in Unix
//!   nanoseconds, so an agent can measure delivery latency.
//! - `sleep` sleeps `ms` from its arguments and answers `{"id": ID, "t": NS}`.
//! - `stall` never answers (until cancelled): it holds one slot so that the
//!   rest of the tasks stay queued, for the submit and memory workloads.
use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use errand_client::{
    pb,
    worker::{self, Handler, WorkerConfig},
};
use tokio_util::sync::CancellationToken;

use crate::stats::now_ns;

pub const TOOLS: [&str; 3] = ["noop", "sleep", "stall"];

struct BenchTools;

fn tool_error(code: &str, message: impl Into<String>) -> pb::ToolError {
    pb::ToolError {
        code: code.into(),
        message: message.into(),
    }
}

#[async_trait]
impl Handler for BenchTools {
    async fn run(
        &self,
        task: pb::Assignment,
        cancel: CancellationToken,
    ) -> Result<String, pb::ToolError> {
        match task.tool.as_str() {
            "noop" => Ok(format!("{{\"t\":{}}}", now_ns())),
            "sleep" => {
                let args: serde_json::Value = serde_json::from_str(&task.arguments_json)
                    .map_err(|e| tool_error("bad_arguments", e.to_string()))?;
                let ms = args["ms"].as_u64().unwrap_or(0);
                let id = args["id"].as_u64().unwrap_or(0);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
                    _ = cancel.cancelled() => return Err(tool_error("cancelled", "cancelled")),
                }
                Ok(format!("{{\"id\":{id},\"t\":{}}}", now_ns()))
            }
            "stall" => {
                cancel.cancelled().await;
                Err(tool_error("cancelled", "cancelled"))
            }
            other => Err(tool_error("unknown_tool", other)),
        }
    }
}

/// Serves the bench tools at `addr` until SIGTERM, Ctrl-C or `max_secs`.
pub async fn serve(
    addr: &str,
    tools: &[String],
    concurrency: u32,
    max_secs: u64,
) -> anyhow::Result<()> {
    let channel = errand_client::endpoint(addr)?.connect().await?;
    let config = WorkerConfig {
        name: format!("errand-bench-{}", std::process::id()),
        tools: tools
            .iter()
            .map(|name| pb::Tool {
                name: name.clone(),
                description: format!("bench tool {name}"),
                ..Default::default()
            })
            .collect(),
        max_concurrency: concurrency,
        token: None,
    };
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = tokio::time::sleep(Duration::from_secs(max_secs)) => {}
        }
        stop.cancel();
    });
    worker::run(channel, config, Arc::new(BenchTools), shutdown, |r| {
        eprintln!("errand-bench worker registered as {}", r.worker_id)
    })
    .await?;
    Ok(())
}
