//! Tools without workers: a call no worker takes within its queue timeout
//! ends as TIMED_OUT (`queue_timeout`) instead of waiting for ever.
use errand_client::{Client, pb};
use errand_tests::{pg, raw::connect_worker, *};

#[tokio::test]
async fn a_call_no_worker_takes_times_out_in_the_queue() {
    let server = Server::start(&[]).await;
    raw::worker_came_and_went(&server.addr, "t").await;
    let client = server.client().await;
    let mut stream = client.completions("s", 0);
    let call = pb::SubmitToolRequest {
        timeout_ms: 60_000,
        queue_timeout_ms: 1_000,
        ..tool_call("s", "t")
    };
    let id = submit_id(&client, call).await;
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
    raw::worker_came_and_went(&server.addr, "t").await;
    let call = pb::SubmitToolRequest {
        queue_timeout_ms: 1_500,
        ..tool_call("s", "t")
    };
    let id = submit_id(&server.client().await, call).await;
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
    raw::worker_came_and_went(&server.addr, "t").await;
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
            queue_timeout_ms: 60_000,
            ..tool_call("s", "t")
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

/// A server whose store outlives a restart: the durable store in `dir`, or
/// with `ERRAND_TEST_STORE=postgres` the test's database.
/// A server `restart` keeps the tasks of: on PostgreSQL with a short lease
/// (see [`claims_lapsed`]).
async fn restartable(dir: &std::path::Path) -> Server {
    if on_postgres() {
        Server::start(&["--lease-ms", "1500"]).await
    } else {
        Server::start_durable(dir, &[]).await
    }
}

/// After a kill on PostgreSQL, waits until task `id` is queued. A round of
/// claims the killed server began while its worker was still there may
/// have claimed the task after the worker left: the server hands such a
/// task back at once, but a kill in between leaves it claimed (RUNNING) by
/// the dead server until its lease runs out and a live server reclaims it.
async fn claims_lapsed(client: &Client, id: &str) {
    if !on_postgres() {
        return;
    }
    within("the killed server's claim to lapse", async {
        loop {
            let task = client.get_task(id).await.unwrap();
            if status_of(task.status) == pb::TaskStatus::Queued {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
}

fn call(tool: &str, queue_timeout_ms: u64, key: &str) -> pb::SubmitToolRequest {
    pb::SubmitToolRequest {
        queue_timeout_ms,
        idempotency_key: key.into(),
        ..tool_call("s", tool)
    }
}

/// Issue 15.7: the registry is stored. After a restart a known tool is
/// listed (no worker serves it yet), an idempotent repeat of a call still
/// queued gets its task, a new call is accepted and queued: it times out in
/// the queue, or runs once a worker comes.
#[tokio::test]
async fn after_a_restart_a_known_tool_takes_calls_that_wait_for_a_worker() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = restartable(dir.path()).await;
    raw::worker_came_and_went(&server.addr, "t").await;
    let before = server
        .client()
        .await
        .submit_request(call("t", 60_000, "k1"))
        .await
        .unwrap();
    server.restart().await;

    let mut raw = server.raw();
    let listed = raw
        .list_tools(pb::ListToolsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tools;
    assert_eq!(
        listed.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["t"]
    );
    // (On PostgreSQL the killed server's advert of its worker may linger
    // for a few leases: the count and the ack's notice are checked on the
    // durable store only.)
    let shared = on_postgres();
    assert!(shared || listed[0].workers == 0, "{listed:?}");
    let client = server.client().await;
    claims_lapsed(&client, &before.task_id).await;
    let again = client
        .submit_request(call("t", 60_000, "k1"))
        .await
        .unwrap();
    assert_eq!(again.task_id, before.task_id);
    assert!(again.deduplicated);
    assert_eq!(
        status_of(again.task.unwrap().status),
        pb::TaskStatus::Queued
    );

    let mut stream = client.completions("s", 0);
    let short = client.submit_request(call("t", 1_000, "")).await.unwrap();
    assert_eq!(
        status_of(short.task.as_ref().unwrap().status),
        pb::TaskStatus::Queued
    );
    assert!(
        shared || short.ack.contains("no worker serves tool `t` right now"),
        "{}",
        short.ack
    );
    let long = client.submit_request(call("t", 60_000, "")).await.unwrap();
    let done = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!(done.task_id, short.task_id);
    assert_eq!(status_of(done.status), pb::TaskStatus::TimedOut);
    assert!(
        matches!(done.outcome, Some(pb::completion::Outcome::Error(ref e)) if e.code == "queue_timeout"),
        "{:?}",
        done.outcome
    );
    // A worker that comes takes the calls still waiting, oldest first.
    let mut worker = server.gate_worker(&["t"], 1).await;
    let first = worker.next().await;
    assert_eq!(first.task.task_id, before.task_id);
    first.succeed("1");
    let second = worker.next().await;
    assert_eq!(second.task.task_id, long.task_id);
    second.succeed("2");
    let ran: Vec<String> = take_completions(&mut stream, 2)
        .await
        .into_iter()
        .map(|c| c.task_id)
        .collect();
    assert_eq!(ran, [before.task_id, long.task_id]);
}

/// Issue 15.7, shared store: a tool registered on one server is known on
/// the others through the store, after its worker has left.
#[tokio::test]
async fn a_tool_registered_on_one_server_is_known_on_the_others() {
    let Some(cluster) = pg::cluster() else {
        assert!(
            !on_postgres(),
            "ERRAND_TEST_STORE=postgres needs PostgreSQL"
        );
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED a_tool_registered_on_one_server_is_known_on_the_others: PostgreSQL's \
             binaries are not installed"
        );
        return;
    };
    let url = cluster.create_database().await;
    let one = Server::start_postgres(&url, &[]).await;
    let two = Server::start_postgres(&url, &[]).await;
    raw::worker_came_and_went(&two.addr, "t").await;
    // Server one learns it from the stored registry (at its next upkeep).
    let c1 = one.client().await;
    within("server one to know the tool, unserved", async {
        loop {
            let listed = c1.list_tools().await.unwrap();
            if listed.iter().any(|t| t.name == "t" && t.workers == 0) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    let ack = c1.submit_request(call("t", 60_000, "")).await.unwrap();
    assert_eq!(status_of(ack.task.unwrap().status), pb::TaskStatus::Queued);
    let mut worker = one.gate_worker(&["t"], 1).await;
    assert_eq!(worker.next().await.task.task_id, ack.task_id);
}
