//! `errand`: run the server, a worker, or talk to a server as an agent would.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod agent;
mod output;
mod serve;
mod worker;

/// errand: asynchronous tools for AI agents.
///
/// An agent submits a tool call and gets a task ID back at once; a worker runs
/// the tool; the result arrives later on the session's completion stream.
#[derive(Parser)]
#[command(name = "errand", version, propagate_version = true)]
struct Cli {
    /// Server address for client commands (HOST:PORT or http://HOST:PORT).
    #[arg(
        long,
        global = true,
        env = "ERRAND_SERVER",
        default_value = "127.0.0.1:7466"
    )]
    server: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the errand server.
    Serve(serve::Args),
    /// List the tools workers have registered.
    Tools(agent::ToolsArgs),
    /// Submit a tool call; prints the task ID and the ack text (or waits).
    Submit(agent::SubmitArgs),
    /// Follow a session's completions, replaying retained ones first.
    Watch(agent::WatchArgs),
    /// Show one task.
    Status(agent::TaskArgs),
    /// Cancel a queued or running task.
    Cancel(agent::TaskArgs),
    /// Release a session's completions up to a seq.
    Ack(agent::AckArgs),
    /// Serve a tool by running a program per call.
    Worker(worker::Args),
}

/// Logs go to stderr: stdout is for results and the lines scripts wait for.
pub fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Tools(args) => agent::tools(&cli.server, args).await,
        Command::Submit(args) => agent::submit(&cli.server, args).await,
        Command::Watch(args) => agent::watch(&cli.server, args).await,
        Command::Status(args) => agent::status(&cli.server, args).await,
        Command::Cancel(args) => agent::cancel(&cli.server, args).await,
        Command::Ack(args) => agent::ack(&cli.server, args).await,
        Command::Worker(args) => worker::run(&cli.server, args).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("errand: {e:#}");
            ExitCode::FAILURE
        }
    }
}
