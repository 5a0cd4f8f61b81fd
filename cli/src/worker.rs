//! `errand worker`: serve a tool by running a program per call.
use std::{process::ExitCode, sync::Arc};

use anyhow::{Context, Result};
use clap::Args as ClapArgs;
use errand_client::{
    exec::ExecTool,
    pb,
    worker::{self, WorkerConfig},
};
use tokio_util::sync::CancellationToken;

#[derive(ClapArgs)]
pub struct Args {
    #[command(flatten)]
    pub conn: crate::ConnectArgs,
    /// Name of the tool to serve.
    #[arg(long)]
    tool: String,
    /// Shell command run per call: arguments JSON on stdin, result on stdout.
    #[arg(long)]
    exec: String,
    /// Most calls run at once (at least 1).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,
    /// What the tool does, for the model.
    #[arg(long, default_value = "")]
    description: String,
    /// JSON Schema of the arguments object.
    #[arg(long, default_value = "")]
    schema: String,
    /// Default timeout of a call in milliseconds (0: the server's default).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    timeout_ms: u64,
    /// How long a call may wait for a worker, in milliseconds from submit
    /// (0: the server's default).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    queue_timeout_ms: u64,
    /// Worker name for logs.
    #[arg(long, default_value = "errand-worker")]
    name: String,
}

pub async fn run(server: &str, args: Args) -> Result<ExitCode> {
    crate::init_logs(false);
    let options = args.conn.options()?;
    // The first connection is made here so that a wrong address fails at
    // once, as submit does; once connected, the worker reconnects for ever.
    let channel = args.conn.channel(server).await?;
    let config = WorkerConfig {
        name: args.name,
        tools: vec![pb::Tool {
            name: args.tool.clone(),
            description: args.description,
            input_schema_json: args.schema,
            timeout_ms: args.timeout_ms,
            queue_timeout_ms: args.queue_timeout_ms,
            ..Default::default()
        }],
        max_concurrency: args.concurrency,
        token: options.token.clone(),
    };
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let _ = tokio::signal::ctrl_c().await;
            shutdown.cancel();
        }
    });
    let tool = args.tool;
    worker::run(
        channel,
        config,
        Arc::new(ExecTool::new(args.exec)),
        shutdown,
        move |r| {
            // A line on stdout that scripts and tests can wait for.
            announce!(
                "errand worker registered tool {tool} as worker {}",
                r.worker_id
            );
        },
    )
    .await
    .context("the server refused the worker")?;
    Ok(ExitCode::SUCCESS)
}
