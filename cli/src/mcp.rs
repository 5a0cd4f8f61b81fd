//! `errand mcp --stdio`: the MCP adapter over stdin/stdout, for hosts that
//! start MCP servers as a subprocess (Claude Desktop, Cursor). It talks to a
//! running errand server as an agent client: the token and session come
//! from flags or the environment, and the server checks them as on any
//! gRPC call.
use std::{
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use clap::Args as ClapArgs;
use errand_client::Client;
use errand_server::{
    Error,
    agents::{Agent, Call, Submitted, ToolListing},
    auth::Caller,
    grpc::convert::remote,
    mcp::{McpHandler, Settings, convert::TaskTiming},
    scheduler::views::TaskView,
};
use rmcp::ServiceExt;

/// Most bytes of tool definitions one `tools/list` page carries over stdio
/// (8 MiB, the server's default message limit).
const MCP_STDIO_PAGE_BYTES: usize = 8 << 20;

#[derive(ClapArgs)]
pub struct Args {
    #[command(flatten)]
    pub conn: crate::ConnectArgs,
    /// Speak MCP over stdin/stdout (the only transport of this command;
    /// `errand serve --mcp-listen` serves MCP over HTTP).
    #[arg(long, required = true)]
    stdio: bool,
    /// The errand session every call of this host belongs to.
    #[arg(long, env = "ERRAND_SESSION", default_value = "mcp")]
    session: String,
    /// How often a waiting call (or a Tasks client) looks at its task, in
    /// milliseconds.
    #[arg(long, env = "ERRAND_MCP_POLL_INTERVAL_MS", default_value_t = 1000)]
    poll_interval_ms: u64,
    /// How long the server keeps finished tasks, in seconds (for `ttlMs`).
    #[arg(long, env = "ERRAND_RETENTION_SECS", default_value_t = 24 * 3600)]
    retention_secs: u64,
}

/// The agent side of a remote errand server, over its `ToolService`: the
/// wire's messages converted at this edge ([`remote`]).
struct RemoteAgent {
    client: Client,
    poll: Duration,
    /// For the words of a lost connection (see [`RemoteAgent::error`]).
    conn: crate::ConnectArgs,
}

impl RemoteAgent {
    /// A client error as the agent API's: the server's status of its kind;
    /// a failure to reach it UNAVAILABLE, with the CLI's advice (a TLS
    /// server breaks the connection of a client without its CA: "transport
    /// error" would not say so).
    fn error(&self, e: errand_client::Error) -> Error {
        if let Some(line) = self.conn.transport_line(&e) {
            return Error::Unavailable(line);
        }
        match e {
            errand_client::Error::Status(s) => remote::error(&s),
            other => Error::Unavailable(other.to_string()),
        }
    }
}

#[tonic::async_trait]
impl Agent for RemoteAgent {
    async fn list_tools(&self, _: &Caller) -> Result<Vec<ToolListing>, Error> {
        let tools = self.client.list_tools().await.map_err(|e| self.error(e))?;
        Ok(tools.into_iter().map(remote::tool).collect())
    }

    async fn submit(&self, _: &Caller, call: Call) -> Result<Submitted, Error> {
        let resp = self
            .client
            .submit_request(remote::call(call))
            .await
            .map_err(|e| self.error(e))?;
        remote::submitted(resp)
    }

    async fn get_task(&self, _: &Caller, task_id: &str) -> Result<TaskView, Error> {
        remote::task_view(
            self.client
                .get_task(task_id)
                .await
                .map_err(|e| self.error(e))?,
        )
    }

    async fn cancel_task(&self, _: &Caller, task_id: &str) -> Result<TaskView, Error> {
        remote::task_view(
            self.client
                .cancel(task_id)
                .await
                .map_err(|e| self.error(e))?,
        )
    }

    async fn wait(
        &self,
        caller: &Caller,
        mut task: TaskView,
        until: Instant,
    ) -> Result<TaskView, Error> {
        let id = task.task.id.to_string();
        // One look per poll interval: a host waits on one call at a time.
        loop {
            task = self.get_task(caller, &id).await?;
            if task.task.state.is_final() || Instant::now() >= until {
                return Ok(task);
            }
            tokio::time::sleep(
                self.poll
                    .min(until.saturating_duration_since(Instant::now())),
            )
            .await;
        }
    }

    async fn wait_progress(
        &self,
        caller: &Caller,
        mut task: TaskView,
        after: u64,
        until: Instant,
    ) -> Result<TaskView, Error> {
        let id = task.task.id.to_string();
        // One look per poll interval, each answered as it was read.
        loop {
            task = self.get_task(caller, &id).await?;
            let newer = task.progress.as_ref().is_some_and(|p| p.index > after);
            if task.task.state.is_final() || newer || Instant::now() >= until {
                return Ok(task);
            }
            tokio::time::sleep(
                self.poll
                    .min(until.saturating_duration_since(Instant::now())),
            )
            .await;
        }
    }
}

pub async fn run(server: &str, args: Args) -> Result<ExitCode> {
    if !args.stdio {
        bail!("pass --stdio");
    }
    crate::init_logs(false); // stderr: stdout carries MCP
    let client = args.conn.client(server).await?;
    let poll = Duration::from_millis(args.poll_interval_ms.max(1));
    let handler = McpHandler::new(
        Arc::new(RemoteAgent {
            client,
            poll,
            conn: args.conn.clone(),
        }),
        Settings {
            default_session: args.session,
            timing: TaskTiming {
                retention: Duration::from_secs(args.retention_secs),
                poll_interval: poll,
            },
            // The server's message limit is not known here; a host's own
            // reader takes what stdout carries.
            page_bytes: MCP_STDIO_PAGE_BYTES,
            // Reports are polled here: at most one per look.
            progress_interval: poll,
        },
    );
    let (stdin, stdout) = rmcp::transport::stdio();
    // Lines as long as the server's default message limit.
    let max_line = errand_server::config::Limits::default().max_message_bytes;
    let transport = errand_server::mcp::lines::Lines::new(stdin, stdout, max_line);
    let running = handler.serve(transport).await?;
    running.waiting().await?;
    Ok(ExitCode::SUCCESS)
}
