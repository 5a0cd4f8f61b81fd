//! A worker stream driven by hand: the test chooses every `Register` field
//! (schemas, many tools) and holds the stream open as long as it likes.
use errand_client::{Credentials, endpoint, pb};
use errand_testkit::within;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// An open `Connect` stream that has been answered with `Registered`.
pub struct RawWorker {
    /// Sends the worker's messages; dropping it ends the worker's side.
    pub tx: mpsc::Sender<pb::WorkerMessage>,
    /// The server's commands after `Registered`.
    pub commands: tonic::Streaming<pb::WorkerCommand>,
}

/// A tool with `name` and `input_schema_json`.
pub fn tool(name: &str, schema: &str) -> pb::Tool {
    pb::Tool {
        name: name.into(),
        input_schema_json: schema.into(),
        ..Default::default()
    }
}

/// Connects a worker with `token` serving `tools`; the status the server
/// refused it with, if it did.
pub async fn connect_worker(
    addr: &str,
    token: Option<&str>,
    tools: Vec<pb::Tool>,
) -> Result<RawWorker, tonic::Status> {
    let channel = endpoint(addr).unwrap().connect_lazy();
    let mut rpc = pb::worker_service_client::WorkerServiceClient::with_interceptor(
        channel,
        Credentials::new(token).unwrap(),
    )
    .max_decoding_message_size(64 << 20)
    .max_encoding_message_size(64 << 20);
    let register = pb::WorkerMessage {
        kind: Some(pb::worker_message::Kind::Register(pb::Register {
            worker_name: "raw".into(),
            tools,
            max_concurrency: 1,
        })),
    };
    let (tx, rx) = mpsc::channel(4);
    tx.send(register).await.unwrap();
    let mut commands = rpc.connect(ReceiverStream::new(rx)).await?.into_inner();
    match commands.message().await? {
        Some(pb::WorkerCommand {
            kind: Some(pb::worker_command::Kind::Registered(_)),
        }) => Ok(RawWorker { tx, commands }),
        other => Err(tonic::Status::unknown(format!(
            "expected Registered, got {other:?}"
        ))),
    }
}

/// Connects a worker serving `tool` at `addr`, then lets it go and waits
/// until the server has (its command stream ends): the tool is known, and
/// no worker serves it.
pub async fn worker_came_and_went(addr: &str, tool: &str) {
    let mut w = connect_worker(addr, None, vec![self::tool(tool, "")])
        .await
        .unwrap();
    drop(w.tx);
    while let Ok(Some(_)) = within("the worker's departure", w.commands.message()).await {}
}

impl RawWorker {
    /// The server's next command; panics when the stream fails or ends.
    pub async fn next_command(&mut self) -> pb::worker_command::Kind {
        within("a worker command", self.commands.message())
            .await
            .expect("the worker's stream failed")
            .expect("the worker's stream ended")
            .kind
            .expect("a command")
    }

    /// The next command, which must be an assignment.
    pub async fn next_assignment(&mut self) -> pb::Assignment {
        match self.next_command().await {
            pb::worker_command::Kind::Assignment(a) => a,
            other => panic!("expected an assignment, got {other:?}"),
        }
    }

    /// The next assignment, past any other command (a cancel, say).
    pub async fn assignment(&mut self) -> pb::Assignment {
        loop {
            if let pb::worker_command::Kind::Assignment(a) = self.next_command().await {
                return a;
            }
        }
    }

    /// Sends `json` as the result of attempt `attempt` of `task_id` (0:
    /// whichever attempt the worker holds).
    pub async fn send_result(&self, task_id: &str, json: &str, attempt: u32) {
        let result = pb::TaskResult {
            task_id: task_id.into(),
            outcome: Some(pb::task_result::Outcome::ResultJson(json.into())),
            attempt,
            ..Default::default()
        };
        self.tx
            .send(pb::WorkerMessage {
                kind: Some(pb::worker_message::Kind::Result(result)),
            })
            .await
            .unwrap();
    }
}

/// Connects a worker serving `tools` with room for `max_concurrency` tasks
/// at once (no token); panics when the server refuses it.
pub async fn connect_worker_for(
    addr: &str,
    tools: Vec<pb::Tool>,
    max_concurrency: u32,
) -> RawWorker {
    let channel = endpoint(addr).unwrap().connect_lazy();
    let mut rpc = pb::worker_service_client::WorkerServiceClient::new(channel);
    let register = pb::WorkerMessage {
        kind: Some(pb::worker_message::Kind::Register(pb::Register {
            worker_name: "raw".into(),
            tools,
            max_concurrency,
        })),
    };
    let (tx, rx) = mpsc::channel(4);
    tx.send(register).await.unwrap();
    let mut commands = within("the worker's Connect", rpc.connect(ReceiverStream::new(rx)))
        .await
        .expect("Connect refused")
        .into_inner();
    match within("Registered", commands.message()).await {
        Ok(Some(pb::WorkerCommand {
            kind: Some(pb::worker_command::Kind::Registered(_)),
        })) => RawWorker { tx, commands },
        other => panic!("expected Registered, got {other:?}"),
    }
}

impl RawWorker {
    /// Ends the worker's side of the stream and waits until the server has
    /// let the worker go (its command stream ends).
    pub async fn leave(self) {
        let RawWorker { tx, mut commands } = self;
        drop(tx);
        while let Ok(Some(_)) = within("the worker's departure", commands.message()).await {}
    }
}
