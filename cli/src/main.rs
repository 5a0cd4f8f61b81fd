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
//! - `check`, `backup`: `check-store` and `backup`, on a data dir's SQLite
//!   store (no server needed, and none disturbed).
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
mod backup;
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
    /// Server address: HOST:PORT, HOST (port 7466), http://HOST:PORT, or
    /// https://HOST:PORT for TLS.
    #[arg(long, env = "ERRAND_SERVER", default_value = "127.0.0.1:7466")]
    pub server: String,
    /// Bearer token (from `errand token new`), sent on every call.
    #[arg(long, env = "ERRAND_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Connect with TLS, trusting only this CA certificate (PEM). Without
    /// it, TLS (an https:// --server, or --tls-cert) trusts the system's
    /// trust store, as other gRPC clients do (SSL_CERT_FILE or SSL_CERT_DIR
    /// replace it): give the CA that signed the server's certificate when
    /// no CA of the system's did (the CA of errand serve's --tls-cert).
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
    /// Whether the connection is TLS: an https:// address, or TLS files
    /// given (as [`errand_client::endpoint_with`] reads them).
    fn tls(&self) -> bool {
        let https = self
            .server
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
        https || self.tls_ca.is_some() || self.tls_cert.is_some()
    }

    /// What to check when a call lost its connection (the transport
    /// failed; the server sent no status), by the TLS settings given: a
    /// TLS server breaks the connection of a client without TLS, and one
    /// that requires client certificates that of a client without one.
    fn lost_connection_advice(&self) -> String {
        let running = "check that errand serve is running there and reachable";
        match (self.tls(), &self.tls_cert) {
            (false, _) => format!(
                "{running}; if it serves TLS (errand serve --tls-cert), connect with https:// \
(trusting the system's trust store) or give the CA that signed its certificate with --tls-ca or \
ERRAND_TLS_CA"
            ),
            (true, None) => format!(
                "{running}; if it requires client certificates (errand serve --tls-client-ca), \
give one with --tls-cert and --tls-key (ERRAND_TLS_CERT, ERRAND_TLS_KEY)"
            ),
            (true, Some(cert)) => format!(
                "{running}; if it requires client certificates, check that --tls-cert {} is \
signed by the CA of its --tls-client-ca",
                cert.display()
            ),
        }
    }

    /// What to do about a connection that failed before any call: no
    /// server there, or a TLS handshake that failed (then which setting).
    fn connect_advice(&self, cause: &tonic::transport::Error) -> String {
        use errand_client::tls::{HandshakeFailure, handshake_failure};
        match handshake_failure(cause) {
            None => "start one with errand serve, or set --server/ERRAND_SERVER".to_string(),
            Some(HandshakeFailure::UntrustedCertificate) => match &self.tls_ca {
                Some(ca) => format!(
                    "--tls-ca {} is not the CA that signed it: give that one (the CA of errand \
serve's --tls-cert) with --tls-ca or ERRAND_TLS_CA",
                    ca.display()
                ),
                // Signed by no CA of the system's trust store.
                None => "give the CA that signed it (the CA of errand serve's --tls-cert) with \
--tls-ca or ERRAND_TLS_CA"
                    .to_string(),
            },
            Some(HandshakeFailure::WrongName) => "connect by a name its certificate carries, or \
give that name with --tls-domain or ERRAND_TLS_DOMAIN"
                .to_string(),
            Some(HandshakeFailure::NotTls) => "connect to it without TLS (HOST:PORT or http://, \
not https://; leave out --tls-ca and --tls-cert, and ERRAND_TLS_CA and ERRAND_TLS_CERT), or \
start errand serve with --tls-cert and --tls-key"
                .to_string(),
            Some(HandshakeFailure::Refused) => self.lost_connection_advice(),
            Some(HandshakeFailure::BadCertificate | HandshakeFailure::Other) => {
                "check the certificate of errand serve's --tls-cert".to_string()
            }
        }
    }

    /// The line for a call whose transport failed (the server sent no
    /// status: tonic made one from a connection error), with what to check;
    /// `None` for an answer of the server. The MCP adapter's errors use it
    /// too.
    pub fn transport_line(&self, e: &errand_client::Error) -> Option<String> {
        let errand_client::Error::Status(s) = e else {
            return None;
        };
        let source = std::error::Error::source(s)?;
        let why = errand_client::error::reason(source);
        let address = shown_address(&self.server);
        Some(
            if why.contains("timed out") || s.message().contains("timed out") {
                format!(
                    "the errand server at {address} did not answer within {} s ({e}): either \
something else accepted the connection (check that {address} is the address of errand serve \
--listen, not another program's port) or the server, or the network to it, stopped answering",
                    ANSWER_DEADLINE.as_secs()
                )
            } else {
                format!(
                    "lost the connection to the errand server at {address} ({e}): {}",
                    self.lost_connection_advice()
                )
            },
        )
    }

    /// A channel to `server`, failing at once when nothing listens there
    /// (`no errand server at ADDR (connection refused)`), and within
    /// [`ANSWER_DEADLINE`] of silence from a server that does not answer.
    pub async fn channel(&self, server: &str) -> anyhow::Result<tonic::transport::Channel> {
        let options = self.options()?;
        let endpoint = errand_client::endpoint_with(server, &options)?
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        let addr = shown_address(server);
        Ok(endpoint
            .connect()
            .await
            .map_err(|cause| errand_client::Error::Connect {
                addr,
                trust: options.trust(),
                cause,
            })?)
    }

    /// A client of `server` (see [`Self::channel`]) sending the token.
    pub async fn client(&self, server: &str) -> anyhow::Result<errand_client::Client> {
        let credentials = errand_client::Credentials::new(self.token.as_deref())?;
        Ok(errand_client::Client::from_channel_with(
            self.channel(server).await?,
            credentials,
        ))
    }

    /// The token and TLS settings, the files read and checked: a CA file
    /// without a certificate, or a client key that is not the
    /// certificate's, is refused here, naming the file, not at the
    /// handshake.
    pub fn options(&self) -> anyhow::Result<errand_client::ConnectOptions> {
        use anyhow::Context;
        use errand_client::tls::{IdentityPart, ca_problem, identity_problem};
        let read = |p: &std::path::PathBuf| {
            std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
        };
        // An https:// address alone would get TLS from endpoint_with too;
        // here it also gets --tls-domain.
        let tls = if self.tls() {
            let ca_pem = self.tls_ca.as_ref().map(read).transpose()?;
            if let (Some(path), Some(pem)) = (&self.tls_ca, &ca_pem)
                && let Some(why) = ca_problem(pem)
            {
                anyhow::bail!("TLS: --tls-ca {} {why}", path.display());
            }
            let identity = match (&self.tls_cert, &self.tls_key) {
                (Some(c), Some(k)) => {
                    let (cert, key) = (read(c)?, read(k)?);
                    if let Some((part, why)) = identity_problem(&cert, &key) {
                        let (c, k) = (c.display(), k.display());
                        anyhow::bail!(match part {
                            IdentityPart::Cert => format!("TLS: --tls-cert {c} {why}"),
                            IdentityPart::Key => format!("TLS: --tls-key {k} {why}"),
                            IdentityPart::Pair => format!(
                                "TLS: --tls-key {k} and --tls-cert {c} do not go together: {why}"
                            ),
                        });
                    }
                    Some((cert, key))
                }
                _ => None,
            };
            Some(errand_client::TlsOptions {
                ca_pem,
                identity,
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
    /// Copy a data dir's store to a file, also while a server runs on it.
    Backup(backup::Args),
    /// Make tokens for the server's --tokens-file.
    #[command(subcommand)]
    Token(token::Command),
}

impl Command {
    /// How a client command reaches its server.
    fn conn(&self) -> Option<ConnectArgs> {
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
            Command::Serve(_) | Command::Token(_) | Command::CheckStore(_) | Command::Backup(_) => {
                return None;
            }
        };
        Some(conn.clone())
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
/// cannot be reached says how to start or find one, a failed TLS handshake
/// which setting to fix, and an HTTP port given for errand's gRPC one says
/// so.
fn error_line(e: &anyhow::Error, conn: Option<&ConnectArgs>) -> String {
    if let (Some(status), Some(conn)) = (answered_http(e), conn) {
        return format!(
            "{} answered HTTP, not errand's gRPC{status}: is this the MCP, A2A or dashboard \
port? Give --server/ERRAND_SERVER the address of errand serve --listen (port 7466 by default)",
            shown_address(&conn.server)
        );
    }
    if let Some(conn) = conn
        && let Some(line) = e
            .chain()
            .find_map(|c| conn.transport_line(c.downcast_ref::<errand_client::Error>()?))
    {
        return line;
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
    if let Some(cause) = e.chain().find_map(|c| match c.downcast_ref() {
        Some(errand_client::Error::Connect { cause, .. }) => Some(cause),
        _ => None,
    }) {
        let advice = match conn {
            Some(conn) => conn.connect_advice(cause),
            None => "start one with errand serve, or set --server/ERRAND_SERVER".to_string(),
        };
        line.push_str(": ");
        line.push_str(&advice);
    }
    if sent_no_token(e) {
        line.push_str(": give the CLI a token with --token or ERRAND_TOKEN (errand token new)");
    }
    line
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
    let conn = cli.command.conn();
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
        Command::Backup(args) => backup::run(args).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("errand: {}", error_line(&e, conn.as_ref()));
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
