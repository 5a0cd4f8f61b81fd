//! `errand`: run the server, a worker, or talk to a server as an agent would.
//!
//! Layout, one module per command group:
//! - `serve`: `errand serve`: the store, TLS and tokens, and the signals of
//!   a graceful stop; `serve::args` holds its flags, one per setting of
//!   `errand_server::config::Config` with an `ERRAND_*` variable and the
//!   default from `Config::default()`, checked by `Config::validate`.
//! - `worker`: `errand worker`, a tool served by running a program per call.
//! - `token`: `errand token new`, a bearer token and its tokens-file line.
//! - `agent`: `tools`, `submit`, `watch`, `status`, `cancel`, `ack`.
//! - `output`: how those commands print tasks, completions and tools (a
//!   line for people, or JSON with `--json`).
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod agent;
mod output;
mod serve;
mod token;
mod worker;

/// How client commands reach a server that requires a token or TLS.
#[derive(clap::Args, Clone)]
pub struct ConnectArgs {
    /// Bearer token (from `errand token new`), sent on every call.
    #[arg(long, env = "ERRAND_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Connect with TLS, trusting this CA certificate (PEM).
    #[arg(long, env = "ERRAND_TLS_CA")]
    tls_ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM), for servers that require mutual TLS.
    #[arg(long, env = "ERRAND_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// Private key of --tls-cert (PEM).
    #[arg(long, env = "ERRAND_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// The name the server's certificate must carry (default: the host).
    #[arg(long, env = "ERRAND_TLS_DOMAIN")]
    tls_domain: Option<String>,
}

impl ConnectArgs {
    pub fn options(&self) -> anyhow::Result<errand_client::ConnectOptions> {
        use anyhow::Context;
        let read = |p: &std::path::PathBuf| {
            std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
        };
        let tls_wanted = self.tls_ca.is_some() || self.tls_cert.is_some();
        let tls = if tls_wanted {
            Some(errand_client::TlsOptions {
                ca_pem: self.tls_ca.as_ref().map(read).transpose()?,
                identity: match (&self.tls_cert, &self.tls_key) {
                    (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
                    _ => None,
                },
                domain: self.tls_domain.clone(),
            })
        } else {
            None
        };
        Ok(errand_client::ConnectOptions {
            token: self.token.clone().filter(|t| !t.is_empty()),
            tls,
        })
    }
}

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
    /// Make tokens for the server's --tokens-file.
    #[command(subcommand)]
    Token(token::Command),
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
        Command::Token(cmd) => token::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("errand: {e:#}");
            ExitCode::FAILURE
        }
    }
}
