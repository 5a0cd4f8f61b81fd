//! A later Register on a worker's stream: the worker serves more tools
//! without giving up its running tasks (the seed's manager serves a
//! function as a tool whenever it is first submitted).
use std::time::Duration;

use errand_client::pb;
use errand_tests::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Streaming};

/// A worker driven message by message.
struct Raw {
    tx: mpsc::Sender<pb::WorkerMessage>,
    commands: Streaming<pb::WorkerCommand>,
}

fn register(tools: &[(&str, &str)], max_concurrency: u32) -> pb::WorkerMessage {
    pb::WorkerMessage {
        kind: Some(pb::worker_message::Kind::Register(pb::Register {
            worker_name: "w".into(),
            tools: (tools.iter())
                .map(|(name, description)| pb::Tool {
                    name: name.to_string(),
                    description: description.to_string(),
                    ..Default::default()
                })
                .collect(),
            max_concurrency,
        })),
    }
}

impl Raw {
    async fn connect(server: &Server, tools: &[(&str, &str)], max_concurrency: u32) -> Self {
        let (tx, rx) = mpsc::channel(8);
        tx.send(register(tools, max_concurrency)).await.unwrap();
        let commands = pb::worker_service_client::WorkerServiceClient::new(
            errand_client::endpoint(&server.addr)
                .unwrap()
                .connect_lazy(),
        )
        .connect(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
        Self { tx, commands }
    }

    async fn next(&mut self) -> Result<pb::worker_command::Kind, tonic::Status> {
        let command = tokio::time::timeout(Duration::from_secs(10), self.commands.message())
            .await
            .expect("no command within 10 s")?;
        Ok(command.and_then(|c| c.kind).expect("the stream ended"))
    }

    async fn assignment(&mut self) -> pb::Assignment {
        match self.next().await.unwrap() {
            pb::worker_command::Kind::Assignment(a) => a,
            other => panic!("expected an Assignment, got {other:?}"),
        }
    }

    async fn registered(&mut self) -> String {
        match self.next().await.unwrap() {
            pb::worker_command::Kind::Registered(r) => r.worker_id,
            other => panic!("expected Registered, got {other:?}"),
        }
    }

    async fn succeed(&self, a: &pb::Assignment) {
        let result = pb::TaskResult {
            task_id: a.task_id.clone(),
            attempt: a.attempt,
            outcome: Some(pb::task_result::Outcome::ResultJson(format!(
                "\"{}\"",
                a.tool
            ))),
            ..Default::default()
        };
        (self.tx)
            .send(pb::WorkerMessage {
                kind: Some(pb::worker_message::Kind::Result(result)),
            })
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_later_register_adds_tools_and_keeps_running_tasks() {
    let server = Server::start(&[]).await;
    let client = server.client().await;
    let mut w = Raw::connect(&server, &[("a", "A")], 2).await;
    let id = w.registered().await;
    let a = client.submit("s", "a", "{}").await.unwrap().task_id;
    let run_a = w.assignment().await;
    assert_eq!(run_a.task_id, a);

    // b is served by nobody yet: a later Register on the same stream adds it.
    w.tx.send(register(&[("b", "B")], 0)).await.unwrap();
    assert_eq!(
        w.registered().await,
        id,
        "the same worker, registered again"
    );
    let workers = client.list_workers("").await.unwrap();
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].tools, ["a", "b"]);
    let b = client.submit("s", "b", "{}").await.unwrap().task_id;
    let run_b = w.assignment().await;
    assert_eq!(run_b.task_id, b);

    // Listing a served tool again with its definition changes nothing.
    w.tx.send(register(&[("a", "A"), ("b", "B")], 2))
        .await
        .unwrap();
    assert_eq!(w.registered().await, id);

    // Both results count: a's run was not given to another attempt.
    w.succeed(&run_b).await;
    w.succeed(&run_a).await;
    let mut stream = client.completions("s", 0);
    let done = take_completions(&mut stream, 2).await;
    for c in &done {
        assert_eq!(status_of(c.status), pb::TaskStatus::Succeeded, "{c:?}");
    }
    let task_a = client.get_task(&a).await.unwrap();
    assert_eq!(task_a.attempts, 1, "a ran once: {task_a:?}");
}

impl Raw {
    async fn refused(&mut self) -> pb::RegisterRefused {
        match self.next().await.unwrap() {
            pb::worker_command::Kind::RegisterRefused(r) => r,
            other => panic!("expected RegisterRefused, got {other:?}"),
        }
    }
}

/// Defect: a refused later Register ended the worker's stream, so one tool
/// the server would not take stopped every tool the worker served and
/// lost its running tasks' results (the SDKs add a tool on first use).
/// Now only the new tools are refused, with the status a first Register
/// would end with; the stream, its tools and its running task go on.
#[tokio::test]
async fn a_refused_later_register_is_answered_and_the_worker_serves_on() {
    let server = Server::start(&[]).await;
    let mut other = Raw::connect(&server, &[("c", "the one definition")], 1).await;
    other.registered().await;
    let client = server.client().await;

    let mut w = Raw::connect(&server, &[("a", "A")], 2).await;
    w.registered().await;
    let mut completions = client.completions("s", 0);
    let running = client.submit("s", "a", "{}").await.unwrap();
    let job = w.assignment().await;
    // Another definition of a tool a connected worker serves.
    w.tx.send(register(&[("c", "another definition")], 0))
        .await
        .unwrap();
    let refused = w.refused().await;
    assert_eq!(refused.code, Code::FailedPrecondition as i32, "{refused:?}");
    assert!(refused.message.contains("description"), "{refused:?}");
    // Another max_concurrency: the worker's stream was sized by the first.
    w.tx.send(register(&[("d", "D")], 3)).await.unwrap();
    let refused = w.refused().await;
    assert_eq!(refused.code, Code::InvalidArgument as i32, "{refused:?}");
    assert!(refused.message.contains("max_concurrency"), "{refused:?}");
    // A good one after them is still taken.
    w.tx.send(register(&[("e", "E")], 0)).await.unwrap();
    w.registered().await;

    // The running task's result is taken, and `a` is still served here.
    w.succeed(&job).await;
    let done = take_completions(&mut completions, 1).await;
    assert_eq!(done[0].task_id, running.task_id);
    assert_eq!(status_of(done[0].status), pb::TaskStatus::Succeeded);
    client.submit("s", "e", "{}").await.unwrap();
    assert_eq!(w.assignment().await.tool, "e");

    // Nothing of a refused Register stays: d is not served.
    let tools: Vec<String> = (client.list_tools().await.unwrap())
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert!(!tools.contains(&"d".to_string()), "{tools:?}");
}
