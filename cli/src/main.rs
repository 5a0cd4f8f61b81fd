//! `errand`: run the server, a worker, or talk to a server as an agent would.
//!
//! Layout, one module per command group:
//! - `serve`: `errand serve`: the store, TLS and tokens, and the signals of
//!   a graceful stop; `serve::args` holds its flags, one per setting of
//!   `errand_server::config::Config` with an `ERRAND_*` variable and the
//!   default from `Config::default()`, checked by `Config::validate`.
//! - `worker`: `errand worker`, a tool served by running a program per call.
//! - `token`: `errand token new`, a bearer token and its tokens-file line.
//! - `agent`: `tools`, `submit`, `watch`, `status`, `ack`.
//! - `ops`: `tasks`, `workers`, `cancel` (one task or a session's), `retry`.
//! - `output`: how those commands print tasks, completions and tools (a
//!   line for people, or JSON with `--json`).
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc rather than the system allocator: the server frees on one
/// thread what it allocated on another (a task's record crosses from the
/// gRPC handlers to the store's writer), which glibc's malloc makes costly.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `println!` for a command's output on stdout ([`output::Stdout`]): a
/// reader that went away (`errand tasks | head -1`) ends the process as
/// Unix tools end, by SIGPIPE, and no socket write can.
macro_rules! out {
    ($($t:tt)*) => {
        $crate::output::print(format_args!("{}\n", format_args!($($t)*)))
    };
}

/// `print!` by [`out!`]'s rule.
macro_rules! out_raw {
    ($($t:tt)*) => {
        $crate::output::print(format_args!($($t)*))
    };
}

/// `println!` for the lines serve and worker announce themselves with
/// ([`output::announce`]): a closed stdout does not stop them.
macro_rules! announce {
    ($($t:tt)*) => {
        $crate::output::announce(format_args!($($t)*))
    };
}

mod agent;
mod check;
mod follow;
mod mcp;
mod ops;
mod output;
mod serve;
mod stop;
mod token;
mod watch;
mod worker;

/// How client commands reach a server that requires a token or TLS.
#[derive(clap::Args, Clone)]
pub struct ConnectArgs {
    /// Server address: HOST:PORT, HOST (port 7466) or http://HOST:PORT.
    #[arg(long, env = "ERRAND_SERVER", default_value = "127.0.0.1:7466")]
    pub server: String,
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

/// How often a client command pings its server over HTTP/2 when nothing
/// else has arrived, and how long it gives the ping's answer: a server
/// that accepts the connection and never answers (a frozen process, a port
/// that is not errand's) is given up on within their sum,
/// [`ANSWER_DEADLINE`], however long a call itself may wait (`submit
/// --wait`, `watch` wait for hours on a server that answers its pings).
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
pub const ANSWER_DEADLINE: std::time::Duration =
    std::time::Duration::from_secs(KEEPALIVE_INTERVAL.as_secs() + KEEPALIVE_TIMEOUT.as_secs());

impl ConnectArgs {
    /// A channel to `server`, failing at once when nothing listens there
    /// (`no errand server at ADDR (connection refused)`), and within
    /// [`ANSWER_DEADLINE`] of silence from a server that does not answer.
    pub async fn channel(&self, server: &str) -> anyhow::Result<tonic::transport::Channel> {
        let endpoint = errand_client::endpoint_with(server, &self.options()?)?
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        let addr = shown_address(server);
        Ok(endpoint
            .connect()
            .await
            .map_err(|cause| errand_client::Error::Connect { addr, cause })?)
    }

    /// A client of `server` (see [`Self::channel`]) sending the token.
    pub async fn client(&self, server: &str) -> anyhow::Result<errand_client::Client> {
        let credentials = errand_client::Credentials::new(self.token.as_deref())?;
        Ok(errand_client::Client::from_channel_with(
            self.channel(server).await?,
            credentials,
        ))
    }

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the errand server.
    Serve(Box<serve::Args>),
    /// List the tools workers have registered.
    Tools(agent::ToolsArgs),
    /// Submit a tool call; prints the task ID and the ack text (or waits).
    Submit(agent::SubmitArgs),
    /// Follow a session's completions, replaying retained ones first.
    Watch(watch::WatchArgs),
    /// Show one task.
    Status(agent::TaskArgs),
    /// Cancel a queued or running task, or with --session every one of a session.
    #[command(
        override_usage = "errand cancel [OPTIONS] <TASK_ID>\n       errand cancel [OPTIONS] --session <SESSION> [--status <STATUS>] [--tool <TOOL>]"
    )]
    Cancel(ops::CancelArgs),
    /// List tasks, newest first: --session, --status, --tool, --limit.
    Tasks(ops::TasksArgs),
    /// List the workers connected to this server (with a shared PostgreSQL store, not those of other servers).
    Workers(ops::WorkersArgs),
    /// Run a FAILED, TIMED_OUT or CANCELLED task again as a new task.
    Retry(ops::RetryArgs),
    /// Release a session's completions up to a seq.
    Ack(agent::AckArgs),
    /// What a session is waiting for: pending calls and unacknowledged results, as the model reads it.
    Pending(agent::PendingArgs),
    /// Print a task's full result (exactly its bytes), read in pages.
    Result(agent::ResultArgs),
    /// Serve a tool by running a program per call.
    Worker(worker::Args),
    /// Serve MCP over stdin/stdout for a host, over a running errand server.
    Mcp(mcp::Args),
    /// Check the whole store file of a data dir for corruption (read-only).
    CheckStore(check::Args),
    /// Make tokens for the server's --tokens-file.
    #[command(subcommand)]
    Token(token::Command),
}

impl Command {
    /// The `--server` a client command talks to.
    fn server(&self) -> Option<String> {
        let conn = match self {
            Command::Tools(a) => &a.conn,
            Command::Submit(a) => &a.conn,
            Command::Watch(a) => &a.conn,
            Command::Status(a) => &a.conn,
            Command::Cancel(a) => &a.conn,
            Command::Tasks(a) => &a.conn,
            Command::Workers(a) => &a.conn,
            Command::Retry(a) => &a.conn,
            Command::Ack(a) => &a.conn,
            Command::Pending(a) => &a.conn,
            Command::Result(a) => &a.conn,
            Command::Worker(a) => &a.conn,
            Command::Mcp(a) => &a.conn,
            Command::Serve(_) | Command::Token(_) | Command::CheckStore(_) => return None,
        };
        Some(conn.server.clone())
    }
}

/// Logs go to stderr: stdout is for results and the lines scripts wait for.
/// Coloured only on a terminal, and never with `NO_COLOR` set.
pub fn init_logs(json: bool) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Whether logs are coloured: on a terminal, unless `NO_COLOR` is set to
/// anything but the empty string (<https://no-color.org>).
fn colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Whether a call got an HTTP answer without gRPC's status (a web server
/// answered): the HTTP status tonic mapped it from, when it says.
fn answered_http(e: &anyhow::Error) -> Option<String> {
    e.chain().find_map(|c| {
        let Some(errand_client::Error::Status(s)) = c.downcast_ref::<errand_client::Error>() else {
            return None;
        };
        let message = s.message();
        message.contains("grpc-status header missing").then(|| {
            message
                .rsplit_once("HTTP status code ")
                .map_or_else(String::new, |(_, code)| format!(" (HTTP status {code})"))
        })
    })
}

/// `HOST:PORT` as the client reads `--server` (a bare host means port 7466).
pub fn shown_address(server: &str) -> String {
    errand_client::endpoint(server)
        .ok()
        .and_then(|e| e.uri().authority().map(|a| a.to_string()))
        .unwrap_or_else(|| server.to_string())
}

/// The one line an error prints: the causes, each once; a server that
/// cannot be reached says how to start or find one, and an HTTP port given
/// for errand's gRPC one says so.
fn error_line(e: &anyhow::Error, server: Option<&str>) -> String {
    if let (Some(status), Some(server)) = (answered_http(e), server) {
        return format!(
            "{} answered HTTP, not errand's gRPC{status}: is this the MCP, A2A or dashboard \
port? Give --server/ERRAND_SERVER the address of errand serve --listen (port 7466 by default)",
            shown_address(server)
        );
    }
    if let (Some((status, timed_out)), Some(server)) = (transport_failure(e), server) {
        let address = shown_address(server);
        return if timed_out {
            format!(
                "the errand server at {address} did not answer within {} s ({status}): either \
something else accepted the connection (check that {address} is the address of errand serve \
--listen, not another program's port) or the server, or the network to it, stopped answering",
                ANSWER_DEADLINE.as_secs()
            )
        } else {
            format!(
                "lost the connection to the errand server at {address} ({status}): check that \
errand serve is running there and reachable"
            )
        };
    }
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        // Layers that repeat their source's words add nothing.
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    let mut line = parts.join(": ");
    if e.chain().any(|c| {
        matches!(
            c.downcast_ref::<errand_client::Error>(),
            Some(errand_client::Error::Connect { .. })
        )
    }) {
        line.push_str(": start one with errand serve, or set --server/ERRAND_SERVER");
    }
    if sent_no_token(e) {
        line.push_str(": give the CLI a token with --token or ERRAND_TOKEN (errand token new)");
    }
    line
}

/// A call that failed in the transport (the server sent no status; tonic
/// made one from a connection error): its line, and whether it timed out.
fn transport_failure(e: &anyhow::Error) -> Option<(String, bool)> {
    e.chain().find_map(|c| {
        let Some(errand_client::Error::Status(s)) = c.downcast_ref::<errand_client::Error>() else {
            return None;
        };
        let source = std::error::Error::source(s)?;
        let why = errand_client::error::reason(source);
        let timed_out = why.contains("timed out") || s.message().contains("timed out");
        Some((c.to_string(), timed_out))
    })
}

/// Whether the server refused a call that carried no token (its words for
/// it: "no credentials"), where the server's own hint names gRPC metadata.
fn sent_no_token(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<errand_client::Error>(),
            Some(errand_client::Error::Status(s))
                if s.code() == tonic::Code::Unauthenticated
                    && s.message().starts_with("no credentials")
        )
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let server = cli.command.server();
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args).await,
        Command::Tools(args) => agent::tools(&args.conn.server.clone(), args).await,
        Command::Submit(args) => agent::submit(&args.conn.server.clone(), args).await,
        Command::Watch(args) => watch::watch(&args.conn.server.clone(), args).await,
        Command::Status(args) => agent::status(&args.conn.server.clone(), args).await,
        Command::Cancel(args) => ops::cancel(&args.conn.server.clone(), args).await,
        Command::Tasks(args) => ops::tasks(&args.conn.server.clone(), args).await,
        Command::Workers(args) => ops::workers(&args.conn.server.clone(), args).await,
        Command::Retry(args) => ops::retry(&args.conn.server.clone(), args).await,
        Command::Ack(args) => agent::ack(&args.conn.server.clone(), args).await,
        Command::Pending(args) => agent::pending(&args.conn.server.clone(), args).await,
        Command::Result(args) => agent::result(&args.conn.server.clone(), args).await,
        Command::Worker(args) => worker::run(&args.conn.server.clone(), args).await,
        Command::Mcp(args) => mcp::run(&args.conn.server.clone(), args).await,
        Command::Token(cmd) => token::run(cmd),
        Command::CheckStore(args) => check::run(args).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("errand: {}", error_line(&e, server.as_deref()));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Walks clap's command tree: every flag and argument of every command
    /// says what it is for.
    #[test]
    fn every_flag_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if ["help", "version"].contains(&id) {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let cli = Cli::command();
        cli.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&cli, "errand", &mut missing);
        assert!(missing.is_empty(), "flags without help: {missing:?}");
    }

    #[test]
    fn serve_lists_no_client_flags() {
        let mut cli = Cli::command();
        let serve = cli.find_subcommand_mut("serve").unwrap();
        let help = serve.render_long_help().to_string();
        for client_only in ["--server", "--token ", "--tls-ca", "ERRAND_SERVER"] {
            assert!(
                !help.contains(client_only),
                "serve --help lists {client_only}"
            );
        }
        let mut cli = Cli::command();
        let tools = cli.find_subcommand_mut("tools").unwrap();
        assert!(tools.render_long_help().to_string().contains("--server"));
    }

    #[test]
    fn a_call_without_a_token_is_told_the_flag() {
        let refused = |message: &str| {
            anyhow::Error::from(errand_client::Error::Status(
                tonic::Status::unauthenticated(message),
            ))
        };
        let line = error_line(
            &refused("no credentials: send `authorization: Bearer <token>` metadata"),
            None,
        );
        assert!(
            line.ends_with("--token or ERRAND_TOKEN (errand token new)"),
            "{line}"
        );
        let line = error_line(&refused("the token is not valid"), None);
        assert!(!line.contains("--token"), "{line}");
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(colour(true, None));
        assert!(colour(true, Some(OsStr::new(""))));
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(false, None));
    }
}
