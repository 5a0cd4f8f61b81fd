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
