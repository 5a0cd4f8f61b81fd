//! The whole server in process, on a loopback port, over a store double
//! that holds one write until the test lets it return: what a client that
//! gives up in the middle of a call leaves behind.
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use errand_proto::v1::{
    self as pb, tool_service_client::ToolServiceClient, worker_service_client::WorkerServiceClient,
};
use errand_testkit::within;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Streaming, codegen::http, transport::Channel};

use crate::{
    config::Config,
    store::{
        StoreError,
        double::{Doubled, Hooks},
    },
};

/// One write held: the first call after [`Gate::arm`] does its work, says
/// so, and returns only once the test opens the gate. Later calls pass.
#[derive(Default)]
struct Gate(Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>);

impl Gate {
    /// Returns the signal that the write was made, and the gate's key.
    fn arm(&self) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (made_tx, made_rx) = oneshot::channel();
        let (open_tx, open_rx) = oneshot::channel();
        *self.0.lock().unwrap() = Some((made_tx, open_rx));
        (made_rx, open_tx)
    }

    async fn pass(&self) {
        let held = self.0.lock().unwrap().take();
        if let Some((made, open)) = held {
            let _ = made.send(());
            let _ = open.await;
        }
    }
}

/// What [`Held`] changes in a memory store: its task inserts and tool
/// writes can be held after they are made (durable, in a real store),
/// before the caller hears so, and its next dispatch records can be made
/// to fail (a full disk).
#[derive(Default)]
struct Holds {
    insert: Gate,
    put_tools: Gate,
    /// How many of the next dispatch records fail.
    fail_dispatch: AtomicU32,
}

type Held = Doubled<Holds>;

#[async_trait::async_trait]
impl Hooks for Holds {
    async fn inserted(&self) {
        self.insert.pass().await;
    }
    fn dispatching(&self) -> Result<(), StoreError> {
        let failing = self.fail_dispatch.load(Ordering::SeqCst);
        if failing > 0 {
            self.fail_dispatch.store(failing - 1, Ordering::SeqCst);
            return Err(StoreError::Full("the disk is full".into()));
        }
        Ok(())
    }
    async fn tools_put(&self) {
        self.put_tools.pass().await;
    }
}

/// A server on a loopback port over `store`: its address, a channel to it.
async fn start(store: Arc<Held>) -> (std::net::SocketAddr, Channel) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(super::serve(
        listener,
        Config::default(),
        store,
        std::future::pending(),
    ));
    (addr, channel(addr).await)
}

/// A channel of its own (its own connection) to `addr`.
async fn channel(addr: std::net::SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A client connection that leaves a call's deadline to the server (a
/// tonic channel cancels the call itself at its deadline, and whether the
/// server then dropped the call would be a race). The server's answer at
/// the deadline means it dropped the call's future. Dropping both ends
/// closes the connection.
type Raw = tower::util::BoxCloneService<
    http::Request<tonic::body::Body>,
    http::Response<hyper::body::Incoming>,
    hyper::Error,
>;

async fn raw(addr: std::net::SocketAddr) -> (Raw, tokio::task::JoinHandle<()>) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let svc = tower::service_fn(move |mut req: http::Request<tonic::body::Body>| {
        let mut send = send.clone();
        *req.uri_mut() = format!("http://{addr}{}", req.uri().path())
            .parse()
            .unwrap();
        async move { send.send_request(req).await }
    });
    (Raw::new(svc), driver)
}

/// A worker's stream: what it sends, and its commands.
struct Worker {
    _messages: mpsc::Sender<pb::WorkerMessage>,
    commands: Streaming<pb::WorkerCommand>,
}

fn register(tool: &str, max_concurrency: u32) -> pb::WorkerMessage {
    pb::WorkerMessage {
        kind: Some(pb::worker_message::Kind::Register(pb::Register {
            worker_name: "w".into(),
            tools: vec![pb::Tool {
                name: tool.into(),
                ..Default::default()
            }],
            max_concurrency,
        })),
    }
}

/// A worker registered for `tool`, its Registered read.
async fn worker(channel: &Channel, tool: &str, max_concurrency: u32) -> Worker {
    let (tx, rx) = mpsc::channel(8);
    tx.send(register(tool, max_concurrency)).await.unwrap();
    let mut commands = WorkerServiceClient::new(channel.clone())
        .connect(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let first = within("Registered", commands.message()).await.unwrap();
    assert!(
        matches!(
            first.and_then(|c| c.kind),
            Some(pb::worker_command::Kind::Registered(_))
        ),
        "the first command is Registered"
    );
    Worker {
        _messages: tx,
        commands,
    }
}

/// The next Assignment `worker` receives.
async fn assignment(worker: &mut Worker) -> pb::Assignment {
    let command = within("an Assignment", worker.commands.message())
        .await
        .unwrap();
    match command.and_then(|c| c.kind) {
        Some(pb::worker_command::Kind::Assignment(a)) => a,
        other => panic!("expected an Assignment, got {other:?}"),
    }
}

/// Checks that `status` is the server's answer at a call's deadline (on a
/// [`raw`] connection): the server dropped the call's future then. tonic
/// answers CANCELLED ("Timeout expired"); gRPC's table says
/// DEADLINE_EXCEEDED.
fn past_deadline(status: tonic::Status) {
    assert!(
        matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{status:?}"
    );
}

fn submit(tool: &str) -> pb::SubmitToolRequest {
    pb::SubmitToolRequest {
        session_id: "s".into(),
        tool: tool.into(),
        arguments_json: "{}".into(),
        ..Default::default()
    }
}

/// Trial finding: a SubmitTool whose client gave up (its deadline passed,
/// the server dropped the call) after the store took the task, before the
/// call queued it, left the task stored and QUEUED for good: never run,
/// its queue timeout never armed. The call now runs to its end whatever
/// the client does.
#[tokio::test]
async fn a_submit_whose_client_gave_up_after_the_task_was_stored_still_runs() {
    let store = Arc::new(Held::default());
    let (addr, channel) = start(store.clone()).await;
    let mut w = worker(&channel, "t", 1).await;
    let (stored, open) = store.insert.arm();
    let mut request = tonic::Request::new(submit("t"));
    request.set_timeout(Duration::from_millis(200));
    let (raw, _conn) = raw(addr).await;
    let mut client = ToolServiceClient::new(raw);
    let call = tokio::spawn(async move { client.submit_tool(request).await });
    within("the task's insert", stored).await.unwrap();
    let answer = within("the submit's answer", call).await.unwrap();
    past_deadline(answer.unwrap_err());
    let _ = open.send(());
    let a = assignment(&mut w).await;
    assert_eq!((a.tool.as_str(), a.attempt), ("t", 1));
}

/// Trial finding (ghost workers): a worker's Connect dropped (its client
/// gone) while its registration's store write was under way left the
/// worker registered with no stream behind it; the next task went to it
/// and stayed RUNNING until its timeout. The registration now runs to its
/// end, and the stream behind it, finding the client gone, removes the
/// worker: the task goes to a live one.
#[tokio::test]
async fn a_worker_whose_connect_was_dropped_while_registering_takes_no_task() {
    let store = Arc::new(Held::default());
    let (addr, channel) = start(store.clone()).await;
    let open = {
        let (stored, open) = store.put_tools.arm();
        let (tx, rx) = mpsc::channel(8);
        tx.send(register("t", 8)).await.unwrap();
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        request.set_timeout(Duration::from_millis(200));
        // Its own connection, as a worker process's.
        let (ghost, conn) = raw(addr).await;
        let mut client = WorkerServiceClient::new(ghost);
        let call = tokio::spawn(async move { client.connect(request).await.map(drop) });
        within("the registration's write", stored).await.unwrap();
        let answer = within("the Connect's answer", call).await.unwrap();
        past_deadline(answer.unwrap_err());
        // The worker is gone: its stream ends, its connection closes.
        drop(tx);
        conn.abort();
        open
    };
    let _ = open.send(());
    let mut live = worker(&channel, "t", 1).await;
    let submitted = ToolServiceClient::new(channel.clone())
        .submit_tool(submit("t"))
        .await
        .unwrap()
        .into_inner();
    let a = assignment(&mut live).await;
    assert_eq!(a.task_id, submitted.task_id);
}

/// A worker whose command stream the server ended (here: a dispatch it
/// could not record) while the worker's own side stayed open was left
/// registered, its task RUNNING on it until the task's timeout. A worker's
/// registration now ends when either side of its stream does: the task
/// goes to another worker as a new attempt.
/// Trial defect: a dispatch record that could not be written (a full
/// disk) ended the worker's stream, and the scheduler charged the task an
/// attempt as if the worker were lost: 3 such and the task failed
/// `worker_lost` unrun, while healthy workers were disconnected. The
/// store's fault is charged to no one: the worker stays connected, and the
/// task, queued meanwhile, reaches it as attempt 1 once records are written
/// again.
#[tokio::test]
async fn a_dispatch_the_store_could_not_record_spends_no_attempt_and_keeps_the_worker() {
    let store = Arc::new(Held::default());
    let (_, channel) = start(store.clone()).await;
    let mut first = worker(&channel, "t", 1).await;
    // More failures than the default --max-attempts (3).
    store.fail_dispatch.store(5, Ordering::SeqCst);
    let submitted = ToolServiceClient::new(channel.clone())
        .submit_tool(submit("t"))
        .await
        .unwrap()
        .into_inner();
    let a = assignment(&mut first).await;
    assert_eq!((a.task_id, a.attempt), (submitted.task_id, 1));
    assert_eq!(store.fail_dispatch.load(Ordering::SeqCst), 0);
}

/// A worker that stops reading its commands (its response stream dropped,
/// its own side still open) leaves: a worker left registered would take
/// tasks it never receives.
#[tokio::test]
async fn a_worker_whose_command_stream_ended_leaves_and_its_task_runs_elsewhere() {
    let store = Arc::new(Held::default());
    let (_, channel) = start(store.clone()).await;
    let Worker {
        _messages: first_messages,
        commands,
    } = worker(&channel, "t", 1).await;
    drop(commands);
    let mut second = worker(&channel, "t", 1).await;
    let submitted = ToolServiceClient::new(channel.clone())
        .submit_tool(submit("t"))
        .await
        .unwrap()
        .into_inner();
    let a = assignment(&mut second).await;
    assert_eq!(a.task_id, submitted.task_id);
    drop(first_messages);
}
