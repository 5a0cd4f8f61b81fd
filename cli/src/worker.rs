//! `errand worker`: serve a tool by running a program per call.
use std::{
    future::Future,
    pin::Pin,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

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
    // A TLS server breaks the connection of a client without its CA (one
    // that requires client certificates, that of a client without one)
    // only after it was made: one look at its health service says so at
    // once, with what to fix. A handshake that failed on a certificate or
    // an alert is the worker's settings: it stops. A connection broken
    // without a handshake (plain text to a TLS server, but also a server
    // at its connection limit or restarting) is said, then tried again as
    // any lost connection is. Any answer, whatever its status, will do.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    if let Err(status) = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        && let Some(source) = std::error::Error::source(&status)
    {
        let settings = errand_client::tls::handshake_failure(source)
            .is_some_and(|f| f != errand_client::tls::HandshakeFailure::Other);
        let error = errand_client::Error::Status(status);
        if settings {
            return Err(error.into());
        }
        let line = args
            .conn
            .transport_line(&error)
            .unwrap_or_else(|| error.to_string());
        tracing::warn!("{line}; trying again");
    }
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
    let mut stop = crate::stop::Stop::new()?;
    let stopped_by = Arc::new(std::sync::OnceLock::new());
    let counted = Counted {
        inner: Arc::new(ExecTool::new(args.exec)),
        running: Arc::new(AtomicUsize::new(0)),
    };
    tokio::spawn({
        let (shutdown, stopped_by) = (shutdown.clone(), stopped_by.clone());
        let running = counted.running.clone();
        async move {
            let signal = stop.next().await;
            // Counted before the stop cancels them.
            let _ = stopped_by.set((signal, running.load(Ordering::SeqCst)));
            shutdown.cancel();
        }
    });
    let tool = args.tool;
    worker::run(channel, config, Arc::new(counted), shutdown, move |r| {
        // A line on stdout that scripts and tests can wait for.
        announce!(
            "errand worker registered tool {tool} as worker {}",
            r.worker_id
        );
    })
    .await
    .context("the server refused the worker")?;
    let Some((signal, running)) = stopped_by.get().copied() else {
        return Ok(ExitCode::SUCCESS);
    };
    // The stream's end stopped the running programs; the server puts their
    // tasks back in the queue (or fails those whose attempts are used up).
    tracing::warn!(
        signal = signal.name(),
        running,
        "errand worker stopping: its {running} running task(s) go back to the queue for another \
worker (a new attempt; a task whose attempts are used up fails with worker_lost)"
    );
    // A stop that was asked for is a clean end (exit 0), as systemd and
    // Kubernetes expect of a service told to stop; an exit code of 143
    // would mark the unit failed.
    Ok(ExitCode::SUCCESS)
}

/// A handler that counts the calls it is running, for the stop's log line.
struct Counted {
    inner: Arc<ExecTool>,
    running: Arc<AtomicUsize>,
}

impl worker::Handler for Counted {
    // `#[async_trait]`'s signature, written out.
    fn run<'life0, 'async_trait>(
        &'life0 self,
        task: pb::Assignment,
        cancel: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = Result<String, pb::ToolError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            self.running.fetch_add(1, Ordering::SeqCst);
            let outcome = worker::Handler::run(&*self.inner, task, cancel).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            outcome
        })
    }
}
