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
use errand_client::{Client, pb};
use errand_server::{
    auth::Caller,
    mcp::{
        McpHandler, Settings,
        agent::{Agent, is_final},
        convert::TaskTiming,
    },
};
use rmcp::ServiceExt;
use tonic::Status;

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

/// `ToolService` of a remote errand server.
struct RemoteAgent {
    client: Client,
    poll: Duration,
}

fn status(e: errand_client::Error) -> Status {
    match e {
        errand_client::Error::Status(s) => s,
        other => Status::unavailable(other.to_string()),
    }
}

#[tonic::async_trait]
impl Agent for RemoteAgent {
    async fn list_tools(&self, _: &Caller) -> Result<Vec<pb::Tool>, Status> {
        self.client.list_tools().await.map_err(status)
    }

    async fn submit(
        &self,
        _: &Caller,
        req: pb::SubmitToolRequest,
    ) -> Result<pb::SubmitToolResponse, Status> {
        self.client.submit_request(req).await.map_err(status)
    }

    async fn get_task(&self, _: &Caller, task_id: &str) -> Result<pb::Task, Status> {
        self.client.get_task(task_id).await.map_err(status)
    }

    async fn cancel_task(&self, _: &Caller, task_id: &str) -> Result<pb::Task, Status> {
        self.client.cancel(task_id).await.map_err(status)
    }

    async fn wait(
        &self,
        caller: &Caller,
        mut task: pb::Task,
        until: Instant,
    ) -> Result<pb::Task, Status> {
        // One look per poll interval: a host waits on one call at a time.
        loop {
            task = self.get_task(caller, &task.task_id).await?;
            if is_final(&task) || Instant::now() >= until {
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
    let options = args.conn.options()?;
    let client = Client::connect_with(server, &options).await?;
    let poll = Duration::from_millis(args.poll_interval_ms.max(1));
    let handler = McpHandler::new(
        Arc::new(RemoteAgent { client, poll }),
        Settings {
            default_session: args.session,
            timing: TaskTiming {
                retention: Duration::from_secs(args.retention_secs),
                poll_interval: poll,
            },
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
