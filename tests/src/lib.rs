//! The end-to-end harness: start the real `errand` binary on a free loopback
//! port, start real workers (processes, or in-process ones the test steers),
//! and talk to it as clients do. Every wait is for an event: a line on a
//! child's stdout, a message on a stream, a channel receive, each bounded by
//! a timeout so a broken server fails the test instead of hanging it.
use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, OnceLock},
    time::Duration,
};

use errand_client::{
    Client, endpoint, pb,
    worker::{self, Handler, WorkerConfig},
};
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
    sync::{mpsc, oneshot},
};
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

pub mod pg;

/// How long any single awaited event may take before the test fails.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// Awaits `fut`, failing the test with `what` if it takes too long.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(EVENT_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// The `errand` binary: `$ERRAND_BIN`, or the workspace's debug build
/// (built once per test run when missing).
pub fn errand_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("ERRAND_BIN") {
            return PathBuf::from(bin);
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf();
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "errand-client", "--bin", "errand"])
            .current_dir(&root)
            .status()
            .expect("running cargo build");
        assert!(status.success(), "building the errand binary failed");
        root.join("target/debug/errand")
    })
}

/// A running `errand serve`.
pub struct Server {
    child: Child,
    pub addr: String,
    args: Vec<String>,
}

impl Server {
    /// Starts a server with the test store and `extra` flags: the in-memory
    /// store, or with `ERRAND_TEST_STORE=postgres` a fresh database in the
    /// test run's PostgreSQL cluster ([`pg::cluster`]).
    pub async fn start(extra: &[&str]) -> Server {
        let mut args = store_args().await;
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::start_on("127.0.0.1:0", args).await
    }

    /// Starts a server on an existing PostgreSQL database (several servers
    /// on one database act as one service).
    pub async fn start_postgres(url: &str, extra: &[&str]) -> Server {
        let mut args: Vec<String> = ["--store", "postgres", "--database-url", url]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::start_on("127.0.0.1:0", args).await
    }

    /// Starts `errand serve --listen listen ARGS`.
    pub async fn start_on(listen: &str, args: Vec<String>) -> Server {
        let mut child = Command::new(errand_bin())
            .arg("serve")
            .arg("--listen")
            .arg(listen)
            .args(&args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("starting errand serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = within(
            "the server's listening line",
            wait_line(&mut lines, "errand listening on "),
        )
        .await;
        let addr = line.trim_start_matches("errand listening on ").to_string();
        Server { child, addr, args }
    }

    /// SIGKILL, as a crash would.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Kills the server and starts it again on the same address and flags.
    pub async fn restart(&mut self) {
        self.kill().await;
        let again = Server::start_on(&self.addr, self.args.clone()).await;
        *self = again;
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.addr)
            .await
            .expect("connecting to the server")
    }

    /// A raw `ToolService` client, for requests the SDK would not send.
    pub fn raw(&self) -> pb::tool_service_client::ToolServiceClient<tonic::transport::Channel> {
        pb::tool_service_client::ToolServiceClient::new(
            endpoint(&self.addr).unwrap().connect_lazy(),
        )
    }

    /// Runs the CLI against this server.
    pub async fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(errand_bin())
            .args(args)
            .env("ERRAND_SERVER", &self.addr)
            .output()
            .await
            .expect("running errand")
    }

    /// Starts `errand worker --tool TOOL --exec COMMAND EXTRA` and waits until
    /// it has registered.
    pub async fn exec_worker(&self, tool: &str, command: &str, extra: &[&str]) -> Child {
        let mut child = Command::new(errand_bin())
            .args(["worker", "--tool", tool, "--exec", command])
            .args(extra)
            .env("ERRAND_SERVER", &self.addr)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("starting errand worker");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        within(
            "the worker's registration",
            wait_line(&mut lines, "errand worker registered"),
        )
        .await;
        child
    }

    /// Starts an in-process worker whose every task the test finishes by hand.
    pub async fn gate_worker(&self, tools: &[&str], max_concurrency: u32) -> GateWorker {
        GateWorker::start(&self.addr, tools, max_concurrency).await
    }
}

/// Whether the e2e suite runs on PostgreSQL (`ERRAND_TEST_STORE=postgres`).
pub fn on_postgres() -> bool {
    std::env::var("ERRAND_TEST_STORE").is_ok_and(|s| s == "postgres")
}

async fn store_args() -> Vec<String> {
    if !on_postgres() {
        return vec!["--store".into(), "memory".into()];
    }
    let cluster = pg::cluster().expect(
        "ERRAND_TEST_STORE=postgres needs PostgreSQL's binaries (Debian's postgresql package)",
    );
    let url = cluster.create_database().await;
    vec![
        "--store".into(),
        "postgres".into(),
        "--database-url".into(),
        url,
    ]
}

async fn wait_line(lines: &mut Lines<BufReader<ChildStdout>>, prefix: &str) -> String {
    while let Some(line) = lines.next_line().await.expect("reading a child's stdout") {
        if line.starts_with(prefix) {
            return line;
        }
    }
    panic!("the process exited before printing {prefix:?}")
}

/// One task a [`GateWorker`] received: finish it with [`Job::succeed`] or
/// [`Job::fail`], or watch `cancel` to see the server cancel it.
pub struct Job {
    pub task: pb::Assignment,
    pub cancel: CancellationToken,
    reply: oneshot::Sender<Result<String, pb::ToolError>>,
}

impl Job {
    pub fn succeed(self, result_json: &str) {
        let _ = self.reply.send(Ok(result_json.to_string()));
    }

    pub fn fail(self, code: &str, message: &str) {
        let _ = self.reply.send(Err(pb::ToolError {
            code: code.into(),
            message: message.into(),
        }));
    }

    pub fn args(&self) -> serde_json::Value {
        serde_json::from_str(&self.task.arguments_json).unwrap()
    }
}

struct Gate(mpsc::UnboundedSender<Job>);

#[async_trait::async_trait]
impl Handler for Gate {
    async fn run(
        &self,
        task: pb::Assignment,
        cancel: CancellationToken,
    ) -> Result<String, pb::ToolError> {
        let (reply, answer) = oneshot::channel();
        let _ = self.0.send(Job {
            task,
            cancel: cancel.clone(),
            reply,
        });
        tokio::select! {
            a = answer => a.unwrap_or_else(|_| Err(pb::ToolError { code: "dropped".into(), message: "the test dropped the job".into() })),
            _ = cancel.cancelled() => Err(pb::ToolError { code: "cancelled".into(), message: String::new() }),
        }
    }
}

/// An in-process worker (the Rust worker runtime) that hands each task to
/// the test.
pub struct GateWorker {
    jobs: mpsc::UnboundedReceiver<Job>,
    shutdown: CancellationToken,
}

impl GateWorker {
    async fn start(addr: &str, tools: &[&str], max_concurrency: u32) -> GateWorker {
        let (tx, jobs) = mpsc::unbounded_channel();
        let (registered_tx, registered) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let config = WorkerConfig {
            name: "gate".into(),
            tools: tools
                .iter()
                .map(|t| pb::Tool {
                    name: t.to_string(),
                    description: format!("test tool {t}"),
                    ..Default::default()
                })
                .collect(),
            max_concurrency,
        };
        let channel = endpoint(addr).unwrap().connect_lazy();
        tokio::spawn(worker::run(
            channel,
            config,
            Arc::new(Gate(tx)),
            shutdown.clone(),
            move |_| {
                let _ = registered_tx.send(());
            },
        ));
        let mut registered = registered;
        within("the gate worker's registration", registered.recv()).await;
        GateWorker { jobs, shutdown }
    }

    /// The next task the server assigns.
    pub async fn next(&mut self) -> Job {
        within("an assignment", self.jobs.recv())
            .await
            .expect("the worker stopped")
    }

    /// Tasks already assigned and not yet taken, without waiting.
    pub fn try_next(&mut self) -> Option<Job> {
        self.jobs.try_recv().ok()
    }

    pub fn stop(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for GateWorker {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Reads the next `n` completions of a stream.
pub async fn take_completions(
    stream: &mut (
             impl tokio_stream::Stream<Item = Result<pb::Completion, errand_client::Error>> + Unpin
         ),
    n: usize,
) -> Vec<pb::Completion> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let next = within("a completion", stream.next()).await;
        out.push(next.expect("the stream ended").expect("the stream failed"));
    }
    out
}

pub fn seqs(completions: &[pb::Completion]) -> Vec<u64> {
    completions.iter().map(|c| c.seq).collect()
}

pub fn status_of(code: i32) -> pb::TaskStatus {
    pb::TaskStatus::try_from(code).unwrap()
}

/// The gRPC code of a failed call.
pub fn code<T: std::fmt::Debug>(result: Result<T, errand_client::Error>) -> tonic::Code {
    result
        .expect_err("the call should have failed")
        .code()
        .expect("a gRPC status")
}
