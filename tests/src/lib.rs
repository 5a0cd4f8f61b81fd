//! The end-to-end harness: start the real `errand` binary on a free loopback
//! port (through [`errand_testkit`]'s process harness), start real workers
//! (processes, or in-process ones the test steers), and talk to it as
//! clients do. Every wait is for an event: a line on a child's stdout, a
//! message on a stream, a channel receive, each bounded by a timeout so a
//! broken server fails the test instead of hanging it.
pub mod fronts;
pub mod raw;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
};

use errand_client::{
    Client, ConnectOptions, Credentials, endpoint, pb,
    worker::{self, Handler, WorkerConfig},
};
use errand_testkit::ServeProcess;
pub use errand_testkit::{EVENT_TIMEOUT, errand_bin, pg, wait_line, within};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::{mpsc, oneshot},
};
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

/// A running `errand serve`.
pub struct Server {
    process: ServeProcess,
    pub addr: String,
    args: Vec<String>,
    /// `http://ADDR/metrics` when started with `--metrics-listen`.
    pub metrics_url: Option<String>,
    /// `http://ADDR/` when started with `--ui-listen`.
    pub ui_url: Option<String>,
    /// `http://ADDR` when started with `--a2a-listen`.
    pub a2a_url: Option<String>,
    /// `http://ADDR/mcp` when started with `--mcp-listen`.
    pub mcp_url: Option<String>,
    /// How clients reach it (TLS); tokens are given per call.
    pub tls: Option<errand_client::TlsOptions>,
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

    /// Starts a server with the durable store in `data_dir` and `extra` flags.
    pub async fn start_durable(data_dir: &Path, extra: &[&str]) -> Server {
        let mut args = vec!["--data-dir".to_string(), data_dir.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::start_on("127.0.0.1:0", args).await
    }

    /// Starts `errand serve --listen listen ARGS`.
    pub async fn start_on(listen: &str, args: Vec<String>) -> Server {
        let process = ServeProcess::start(listen, &args).await;
        Server {
            addr: process.addr.clone(),
            metrics_url: process.metrics_url.clone(),
            ui_url: process.ui_url.clone(),
            a2a_url: process.a2a_url.clone(),
            mcp_url: process.mcp_url.clone(),
            process,
            args,
            tls: None,
        }
    }

    /// The server's process ID.
    pub fn pid(&self) -> i32 {
        self.process.pid()
    }

    /// Sends SIGTERM, as an orchestrator stopping it would.
    pub fn terminate(&self) {
        self.process.terminate()
    }

    /// Waits for the process to exit.
    pub async fn exited(&mut self) -> std::process::ExitStatus {
        self.process.exited().await
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.process.rss_kib()
    }

    fn options(&self, token: Option<&str>) -> ConnectOptions {
        ConnectOptions {
            token: token.map(str::to_string),
            tls: self.tls.clone(),
        }
    }

    /// A client that sends `token` on every call.
    pub async fn client_as(&self, token: &str) -> Client {
        Client::connect_with(&self.addr, &self.options(Some(token)))
            .await
            .expect("connecting to the server")
    }

    /// A raw `ToolService` client that sends `token` (if any).
    pub fn raw_as(
        &self,
        token: Option<&str>,
    ) -> pb::tool_service_client::ToolServiceClient<errand_client::client::AuthChannel> {
        let channel = errand_client::endpoint_with(&self.addr, &self.options(token))
            .unwrap()
            .connect_lazy();
        pb::tool_service_client::ToolServiceClient::with_interceptor(
            channel,
            Credentials::new(token).unwrap(),
        )
    }

    /// An in-process worker with a worker token.
    pub async fn gate_worker_as(
        &self,
        token: &str,
        tools: &[&str],
        max_concurrency: u32,
    ) -> GateWorker {
        GateWorker::start_with(&self.addr, tools, max_concurrency, Some(token.to_string())).await
    }

    /// SIGKILL, as a crash would.
    pub async fn kill(&mut self) {
        self.process.kill().await
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

    /// A gate worker registering `tools` with their own policies (dedup,
    /// fallback, ...).
    pub async fn gate_worker_for(&self, tools: Vec<pb::Tool>, max_concurrency: u32) -> GateWorker {
        let channel = endpoint(&self.addr).unwrap().connect_lazy();
        GateWorker::serving(channel, tools, max_concurrency, None).await
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
        Self::start_with(addr, tools, max_concurrency, None).await
    }

    /// A gate worker over an existing channel (TLS, for example).
    pub async fn on_channel(
        channel: tonic::transport::Channel,
        tools: &[&str],
        max_concurrency: u32,
    ) -> GateWorker {
        Self::start_on(channel, tools, max_concurrency, None).await
    }

    async fn start_with(
        addr: &str,
        tools: &[&str],
        max_concurrency: u32,
        token: Option<String>,
    ) -> GateWorker {
        let channel = endpoint(addr).unwrap().connect_lazy();
        Self::start_on(channel, tools, max_concurrency, token).await
    }

    async fn start_on(
        channel: tonic::transport::Channel,
        tools: &[&str],
        max_concurrency: u32,
        token: Option<String>,
    ) -> GateWorker {
        let tools = tools
            .iter()
            .map(|t| pb::Tool {
                name: t.to_string(),
                description: format!("test tool {t}"),
                ..Default::default()
            })
            .collect();
        Self::serving(channel, tools, max_concurrency, token).await
    }

    /// A gate worker registering `tools` as given (policies and all).
    async fn serving(
        channel: tonic::transport::Channel,
        tools: Vec<pb::Tool>,
        max_concurrency: u32,
        token: Option<String>,
    ) -> GateWorker {
        let (tx, jobs) = mpsc::unbounded_channel();
        let (registered_tx, registered) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let config = WorkerConfig {
            name: "gate".into(),
            tools,
            max_concurrency,
            token,
        };
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

/// A call of `tool` in `session` with no arguments; a test sets the fields
/// it cares about with struct update syntax (`..tool_call("s", "t")`).
pub fn tool_call(session: &str, tool: &str) -> pb::SubmitToolRequest {
    pb::SubmitToolRequest {
        session_id: session.into(),
        tool: tool.into(),
        ..Default::default()
    }
}

/// Submits `req`, which must be accepted; its task ID.
pub async fn submit_id(client: &Client, req: pb::SubmitToolRequest) -> String {
    client.submit_request(req).await.unwrap().task_id
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

/// A tokens file in a temporary directory, filled through the real
/// `errand token new --append`.
pub struct Tokens {
    dir: tempfile::TempDir,
}

impl Tokens {
    pub fn new() -> Tokens {
        Tokens {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("tokens")
    }

    /// `errand token new ARGS --append FILE`; returns the secret.
    pub async fn add(&self, args: &[&str]) -> String {
        let out = Command::new(errand_bin())
            .args(["token", "new"])
            .args(args)
            .arg("--append")
            .arg(self.path())
            .output()
            .await
            .expect("running errand token new");
        assert!(
            out.status.success(),
            "errand token new failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// `--tokens-file PATH` for `Server::start`.
    pub fn flag(&self) -> [String; 2] {
        [
            "--tokens-file".to_string(),
            self.path().display().to_string(),
        ]
    }
}

impl Default for Tokens {
    fn default() -> Self {
        Self::new()
    }
}

/// A certificate authority, a server certificate (localhost, 127.0.0.1) and
/// a client certificate, made with `rcgen` for this test only and written as
/// PEM files to a temporary directory. No key is ever checked in.
pub struct Pki {
    dir: tempfile::TempDir,
    pub ca_pem: Vec<u8>,
    pub client: (Vec<u8>, Vec<u8>),
}

impl Pki {
    pub fn new() -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca.distinguished_name
            .push(DnType::CommonName, "errand test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let leaf = |names: Vec<String>, cn: &str| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(names).unwrap();
            params.distinguished_name.push(DnType::CommonName, cn);
            let cert = params.signed_by(&key, &issuer).unwrap();
            (cert.pem().into_bytes(), key.serialize_pem().into_bytes())
        };
        let server = leaf(
            vec!["localhost".to_string(), "127.0.0.1".to_string()],
            "errand server",
        );
        let client = leaf(vec!["agent.test".to_string()], "errand client");
        let ca_pem = ca_cert.pem().into_bytes();
        let write = |name: &str, data: &[u8]| std::fs::write(dir.path().join(name), data).unwrap();
        write("ca.pem", &ca_pem);
        write("server.pem", &server.0);
        write("server.key", &server.1);
        write("client.pem", &client.0);
        write("client.key", &client.1);
        Pki {
            dir,
            ca_pem,
            client,
        }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// `--tls-cert --tls-key` for `errand serve`, and `--tls-client-ca` when
    /// `mutual`.
    pub fn serve_flags(&self, mutual: bool) -> Vec<String> {
        let mut flags = vec![
            "--tls-cert".to_string(),
            self.path("server.pem"),
            "--tls-key".to_string(),
            self.path("server.key"),
        ];
        if mutual {
            flags.extend(["--tls-client-ca".to_string(), self.path("ca.pem")]);
        }
        flags
    }

    /// TLS options of a client that trusts the CA, with the client
    /// certificate when `identity`.
    pub fn client(&self, identity: bool) -> errand_client::TlsOptions {
        errand_client::TlsOptions {
            ca_pem: Some(self.ca_pem.clone()),
            identity: identity.then(|| self.client.clone()),
            domain: None,
        }
    }
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

/// Borrows owned flags for `Server::start`.
pub fn strs(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

/// Opens a worker stream with `token` and registers `tool`; the status the
/// server answers with (OK when it accepted).
pub async fn register_raw(addr: &str, token: Option<&str>, tool: &str) -> tonic::Code {
    use tonic::Code;
    let channel = endpoint(addr).unwrap().connect_lazy();
    let mut rpc = pb::worker_service_client::WorkerServiceClient::with_interceptor(
        channel,
        errand_client::Credentials::new(token).unwrap(),
    );
    let register = pb::WorkerMessage {
        kind: Some(pb::worker_message::Kind::Register(pb::Register {
            worker_name: "w".into(),
            tools: vec![pb::Tool {
                name: tool.into(),
                ..Default::default()
            }],
            max_concurrency: 1,
        })),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(register).await.unwrap();
    let result = rpc
        .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    match result {
        Err(status) => status.code(),
        Ok(stream) => {
            let first = stream.into_inner().message().await;
            match first {
                Ok(Some(_)) => Code::Ok,
                Ok(None) => Code::Unknown,
                Err(status) => status.code(),
            }
        }
    }
}

impl GateWorker {
    /// Succeeds every task it receives with `result_json`, from now on.
    pub fn auto_succeed(mut self, result_json: String) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            while let Some(job) = self.jobs.recv().await {
                job.succeed(&result_json);
            }
        })
    }
}

/// `errand serve --store memory --listen 127.0.0.1:0 ARGS` with `RUST_LOG`
/// = `log`: the process, its gRPC address and its log lines as they come
/// (read as they come: a full pipe would stall the server).
pub async fn serve_logging(
    args: &[String],
    log: &str,
) -> (
    tokio::process::Child,
    String,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    serve_logging_on(&["--store", "memory"], args, log).await
}

/// [`serve_logging`] on the store `store` names (`--store ...` and its
/// flags).
pub async fn serve_logging_on(
    store: &[&str],
    args: &[String],
    log: &str,
) -> (
    tokio::process::Child,
    String,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(errand_bin())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(store)
        .args(args)
        .env("RUST_LOG", log)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = within("listening", wait_line(&mut out, "errand listening on "))
        .await
        .trim_start_matches("errand listening on ")
        .to_string();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let (line_tx, lines) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = err.next_line().await {
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, addr, lines)
}

/// The first of [`serve_logging`]'s log lines holding `needle`.
pub async fn line_with(
    lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    needle: &str,
) -> String {
    within(needle, async {
        loop {
            let line = lines.recv().await.expect("the server's log");
            if line.contains(needle) {
                return line;
            }
        }
    })
    .await
}

/// One HTTP/1.0 request to `addr` (`host:port`): `METHOD path`, `Host:
/// host` (`addr` when `None`), `headers`, and `body` with its
/// Content-Length; the response's status code and body.
pub async fn http_request(
    addr: &str,
    host: Option<&str>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let host = host.unwrap_or(addr);
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut response = String::new();
    within("an HTTP response", conn.read_to_string(&mut response))
        .await
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// Fetches `url` (http://HOST:PORT/PATH) with a bare HTTP/1.0 GET; the body.
pub async fn http_get(url: &str) -> String {
    let (head, body) = http_get_as(url, None).await;
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    body
}

/// Fetches `url` with a bare HTTP/1.0 GET, sending `Authorization: Bearer
/// TOKEN` when given; the response head and body.
pub async fn http_get_as(url: &str, token: Option<&str>) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut conn = tokio::net::TcpStream::connect(host).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    conn.write_all(format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n{auth}\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    (head.to_string(), body.to_string())
}
