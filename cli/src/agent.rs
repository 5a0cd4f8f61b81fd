//! The agent-side commands: tools, submit, watch, status, ack (cancel is
//! in `ops`).
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use errand_client::{Client, pb};
use tokio_stream::StreamExt;

use crate::output;

#[derive(ClapArgs)]
pub struct ToolsArgs {
    #[command(flatten)]
    pub conn: crate::ConnectArgs,
    /// One JSON object per tool.
    #[arg(long)]
    json: bool,
}

#[derive(ClapArgs)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub conn: crate::ConnectArgs,
    /// The tool to call.
    tool: String,
    /// Arguments as a JSON object.
    #[arg(long, default_value = "{}")]
    args: String,
    /// The agent session (conversation) the call belongs to.
    #[arg(long, env = "ERRAND_SESSION", default_value = "default")]
    session: String,
    /// Timeout of the run in milliseconds (0: the tool's default).
    #[arg(long, default_value_t = 0)]
    timeout_ms: u64,
    /// How long the call may wait for a worker, in milliseconds from submit,
    /// before it times out (0: the tool's, else the server's default).
    #[arg(long, default_value_t = 0)]
    queue_timeout_ms: u64,
    /// Makes a retried submit return the first one's task.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Wait for the result and print it; exit 1 unless it succeeded.
    #[arg(long)]
    wait: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(ClapArgs)]
pub struct WatchArgs {
    #[command(flatten)]
    pub conn: crate::ConnectArgs,
    /// The session to follow.
    #[arg(long, env = "ERRAND_SESSION", default_value = "default")]
    session: String,
    /// Start after this seq (0: everything retained).
    #[arg(long, default_value_t = 0)]
    after: u64,
    /// Stop after this many completions.
    #[arg(long)]
    count: Option<u64>,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

#[derive(ClapArgs)]
pub struct TaskArgs {
    #[command(flatten)]
    pub conn: crate::ConnectArgs,
    /// The task ID SubmitTool returned.
    task_id: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(ClapArgs)]
pub struct AckArgs {
    #[command(flatten)]
    pub conn: crate::ConnectArgs,
    /// The session whose completions are released.
    #[arg(long, env = "ERRAND_SESSION", default_value = "default")]
    session: String,
    /// Completions with seq up to and including this are released.
    #[arg(long)]
    up_to: u64,
}

async fn connect(server: &str, conn: &crate::ConnectArgs) -> Result<Client> {
    Ok(Client::connect_with(server, &conn.options()?).await?)
}

pub async fn tools(server: &str, args: ToolsArgs) -> Result<ExitCode> {
    let tools = connect(server, &args.conn).await?.list_tools().await?;
    for tool in &tools {
        if args.json {
            println!("{}", output::tool_json(tool));
        } else {
            let first_line = tool.description.lines().next().unwrap_or_default();
            println!(
                "{:<24} workers={:<3} queued={:<4} running={:<4} {}",
                tool.name, tool.workers, tool.queued, tool.running, first_line
            );
        }
    }
    if tools.is_empty() && !args.json {
        eprintln!("no tools yet: start a worker, e.g. errand worker --tool echo --exec cat");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn submit(server: &str, args: SubmitArgs) -> Result<ExitCode> {
    let client = connect(server, &args.conn).await?;
    let ack = client
        .submit_request(pb::SubmitToolRequest {
            session_id: args.session.clone(),
            tool: args.tool,
            arguments_json: args.args,
            timeout_ms: args.timeout_ms,
            queue_timeout_ms: args.queue_timeout_ms,
            idempotency_key: args.idempotency_key.unwrap_or_default(),
            ..Default::default()
        })
        .await?;
    if !args.wait {
        if args.json {
            let task = ack.task.as_ref().map(output::task_json);
            println!(
                "{}",
                serde_json::json!({"task_id": ack.task_id, "ack": ack.ack, "deduplicated": ack.deduplicated, "task": task})
            );
        } else {
            println!("{}", ack.task_id);
            eprintln!("{}", ack.ack);
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Every retained completion is replayed from seq 0, so the task's own
    // cannot slip by between the submit and the stream.
    let mut stream = client.completions(&args.session, 0);
    while let Some(completion) = stream.next().await {
        let completion = completion?;
        if completion.task_id != ack.task_id {
            continue;
        }
        if args.json {
            println!("{}", output::completion_json(&completion));
        } else {
            match &completion.outcome {
                Some(pb::completion::Outcome::ResultJson(r)) => println!("{r}"),
                _ => eprintln!("{}", output::completion_line(&completion)),
            }
        }
        let ok = completion.status == pb::TaskStatus::Succeeded as i32;
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    bail!(
        "the completion stream ended before task {} finished",
        ack.task_id
    )
}

pub async fn watch(server: &str, args: WatchArgs) -> Result<ExitCode> {
    let client = connect(server, &args.conn).await?;
    let mut stream = client.completions(&args.session, args.after);
    let mut seen = 0;
    while let Some(completion) = stream.next().await {
        let completion = completion.context("following completions")?;
        if args.json {
            println!("{}", output::completion_json(&completion));
        } else {
            println!("{}", output::completion_line(&completion));
        }
        seen += 1;
        if args.count.is_some_and(|n| seen >= n) {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn status(server: &str, args: TaskArgs) -> Result<ExitCode> {
    let task = connect(server, &args.conn)
        .await?
        .get_task(&args.task_id)
        .await?;
    output::print_task(&task, args.json);
    Ok(ExitCode::SUCCESS)
}

pub async fn ack(server: &str, args: AckArgs) -> Result<ExitCode> {
    let removed = connect(server, &args.conn)
        .await?
        .ack_completions(&args.session, args.up_to)
        .await?;
    println!(
        "released {removed} completions of session {:?}",
        args.session
    );
    Ok(ExitCode::SUCCESS)
}
