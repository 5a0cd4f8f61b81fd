//! Tools without workers: a call no worker takes within its queue timeout
//! ends as TIMED_OUT (`queue_timeout`) instead of waiting for ever.
use errand_client::pb;
use errand_tests::{raw::connect_worker, *};

/// Connects a worker serving `tool`, then lets it go and waits until the
/// server has (its command stream ends).
async fn worker_came_and_went(server: &Server, tool: &str) {
    let mut w = connect_worker(&server.addr, None, vec![raw::tool(tool, "")])
        .await
        .unwrap();
    drop(w.tx);
    while let Ok(Some(_)) = within("the worker's departure", w.commands.message()).await {}
}

#[tokio::test]
async fn a_call_no_worker_takes_times_out_in_the_queue() {
    let server = Server::start(&[]).await;
    worker_came_and_went(&server, "t").await;
    let client = server.client().await;
    let mut stream = client.completions("s", 0);
    let id = client
        .submit_request(pb::SubmitToolRequest {
            session_id: "s".into(),
            tool: "t".into(),
            timeout_ms: 60_000,
            queue_timeout_ms: 1_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .task_id;
    let done = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!(done.task_id, id);
    assert_eq!(status_of(done.status), pb::TaskStatus::TimedOut);
    let Some(pb::completion::Outcome::Error(e)) = &done.outcome else {
        panic!("expected an error outcome, got {:?}", done.outcome);
    };
    assert_eq!(e.code, "queue_timeout");
    assert!(
        e.message.contains("no worker took") && e.message.contains("1000 ms"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn a_queue_timeout_holds_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_durable(dir.path(), &[]).await;
    worker_came_and_went(&server, "t").await;
    let id = server
        .client()
        .await
        .submit_request(pb::SubmitToolRequest {
            session_id: "s".into(),
            tool: "t".into(),
            queue_timeout_ms: 1_500,
            ..Default::default()
        })
        .await
        .unwrap()
        .task_id;
    server.restart().await;
    let client = server.client().await;
    let mut stream = client.completions("s", 0);
    let done = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!(done.task_id, id);
    assert_eq!(status_of(done.status), pb::TaskStatus::TimedOut);
    assert!(
        matches!(done.outcome, Some(pb::completion::Outcome::Error(ref e)) if e.code == "queue_timeout"),
        "{:?}",
        done.outcome
    );
}

#[tokio::test]
async fn a_known_tool_without_workers_is_listed_and_its_calls_are_queued_with_a_warning() {
    let server = Server::start(&[]).await;
    worker_came_and_went(&server, "t").await;
    let mut raw = server.raw();
    let listed = raw
        .list_tools(pb::ListToolsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tools;
    assert_eq!(
        listed
            .iter()
            .map(|t| (t.name.as_str(), t.workers))
            .collect::<Vec<_>>(),
        [("t", 0)]
    );
    let served = raw
        .list_tools(pb::ListToolsRequest {
            only_served: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tools;
    assert!(served.is_empty(), "{served:?}");

    let client = server.client().await;
    let ack = client
        .submit_request(pb::SubmitToolRequest {
            session_id: "s".into(),
            tool: "t".into(),
            queue_timeout_ms: 60_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        ack.ack.contains("no worker serves tool `t` right now") && ack.ack.contains("60000 ms"),
        "{}",
        ack.ack
    );
    // A worker that connects takes the queued call.
    let mut worker = server.gate_worker(&["t"], 1).await;
    let job = worker.next().await;
    assert_eq!(job.task.task_id, ack.task_id);
}

#[tokio::test]
async fn an_idempotent_repeat_after_a_restart_is_answered_before_the_tool_check() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_durable(dir.path(), &[]).await;
    let mut worker = server.gate_worker(&["t"], 1).await;
    let request = pb::SubmitToolRequest {
        session_id: "s".into(),
        tool: "t".into(),
        idempotency_key: "k1".into(),
        ..Default::default()
    };
    let first = server
        .client()
        .await
        .submit_request(request.clone())
        .await
        .unwrap();
    worker.next().await.succeed("1");
    server.restart().await;
    // No worker has registered `t` since the restart.
    let again = server.client().await.submit_request(request).await.unwrap();
    assert_eq!(again.task_id, first.task_id);
    assert!(again.deduplicated);
}

#[tokio::test]
async fn a_different_definition_is_refused_while_served_and_replaces_it_after() {
    let server = Server::start(&[]).await;
    let first = connect_worker(&server.addr, None, vec![raw::tool("t", "")])
        .await
        .unwrap();
    let schema = r#"{"type":"object","properties":{"x":{"type":"integer"}}}"#;
    let refused = connect_worker(&server.addr, None, vec![raw::tool("t", schema)])
        .await
        .err()
        .expect("a different definition is refused while served");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains("`t`") && refused.message().contains("input_schema_json"),
        "{}",
        refused.message()
    );
    // The same definition is welcome.
    let same = connect_worker(&server.addr, None, vec![raw::tool("t", "")])
        .await
        .unwrap();
    // Both leave; then nothing serves `t`, and a new definition replaces it.
    for mut w in [first, same] {
        drop(w.tx);
        while let Ok(Some(_)) = within("the worker's departure", w.commands.message()).await {}
    }
    let mut raw = server.raw();
    let _new = connect_worker(&server.addr, None, vec![raw::tool("t", schema)])
        .await
        .unwrap();
    let listed = raw
        .list_tools(pb::ListToolsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tools;
    let t = listed.iter().find(|t| t.name == "t").unwrap();
    assert_eq!(t.input_schema_json, schema);
}
