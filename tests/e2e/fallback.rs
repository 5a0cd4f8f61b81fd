//! Fallbacks (issue 17): what answers a call that failed or timed out.
use errand_client::pb;
use errand_tests::*;

fn call(tool: &str, args: &str, fallback: pb::fallback::Kind) -> pb::SubmitToolRequest {
    pb::SubmitToolRequest {
        session_id: "s".into(),
        tool: tool.into(),
        arguments_json: args.into(),
        fallback: Some(pb::Fallback {
            kind: Some(fallback),
        }),
        ..Default::default()
    }
}

fn to_backup() -> pb::fallback::Kind {
    pb::fallback::Kind::Tool("backup".into())
}

#[tokio::test]
async fn a_fallback_tool_answers_a_failure_once_without_chains() {
    let server = Server::start(&[]).await;
    let mut worker = server.gate_worker(&["primary", "backup"], 4).await;
    let client = server.client().await;
    let mut stream = client.completions("s", 0);

    let ack = client
        .submit_request(call("primary", r#"{"q":1}"#, to_backup()))
        .await
        .unwrap();
    let job = worker.next().await;
    assert_eq!(job.task.tool, "primary");
    job.fail("upstream_down", "the API answered 503");
    let backup = worker.next().await;
    assert_eq!(backup.task.tool, "backup");
    assert_eq!(backup.task.arguments_json, r#"{"q":1}"#);
    assert_ne!(backup.task.task_id, ack.task_id);
    backup.succeed(r#"{"answer":42}"#);
    let c = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!((c.seq, c.task_id.as_str()), (1, ack.task_id.as_str()));
    assert_eq!(c.tool, "primary");
    assert_eq!(status_of(c.status), pb::TaskStatus::Succeeded);
    assert_eq!(
        c.outcome,
        Some(pb::completion::Outcome::ResultJson(
            r#"{"answer":42}"#.into()
        ))
    );
    let used = c.fallback.as_ref().expect("FallbackUsed");
    assert_eq!(used.tool, "backup");
    assert_eq!(status_of(used.primary_status), pb::TaskStatus::Failed);
    assert_eq!(used.primary_error.as_ref().unwrap().code, "upstream_down");
    assert_eq!(used.last_good_age_ms, 0);
    for needle in [
        "fallback tool `backup`",
        "FAILED",
        "the API answered 503",
        "42",
    ] {
        assert!(c.message.contains(needle), "{needle}: {}", c.message);
    }
    let task = client.get_task(&ack.task_id).await.unwrap();
    assert_eq!(status_of(task.status), pb::TaskStatus::Succeeded);
    // The task says so too (`errand status` showed a plain success).
    assert_eq!(task.fallback.as_ref(), Some(used));

    // No chains: the fallback's own failure is final.
    let ack = client
        .submit_request(call("primary", r#"{"q":2}"#, to_backup()))
        .await
        .unwrap();
    worker.next().await.fail("upstream_down", "503 again");
    let backup = worker.next().await;
    assert_eq!(backup.task.tool, "backup");
    backup.fail("backup_down", "also broken");
    let c = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!(
        (c.seq, c.task_id.as_str()),
        (2, ack.task_id.as_str()),
        "one completion per call"
    );
    assert_eq!(status_of(c.status), pb::TaskStatus::Failed);
    let Some(pb::completion::Outcome::Error(e)) = &c.outcome else {
        panic!("{c:?}");
    };
    assert_eq!(e.code, "backup_down");
    assert_eq!(
        c.fallback
            .as_ref()
            .unwrap()
            .primary_error
            .as_ref()
            .unwrap()
            .code,
        "upstream_down"
    );
    assert!(
        worker.try_next().is_none(),
        "nothing runs after the fallback"
    );

    // A cancel never falls back.
    let ack = client
        .submit_request(call("primary", r#"{"q":3}"#, to_backup()))
        .await
        .unwrap();
    let job = worker.next().await;
    client.cancel(&ack.task_id).await.unwrap();
    within("the worker's cancel", job.cancel.cancelled()).await;
    let c = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!((c.seq, c.task_id.as_str()), (3, ack.task_id.as_str()));
    assert_eq!(status_of(c.status), pb::TaskStatus::Cancelled);
    assert!(c.fallback.is_none());
    // The next call proves no fallback run slipped in.
    let marker = client.submit("s", "backup", "{}").await.unwrap();
    let job = worker.next().await;
    assert_eq!(
        job.task.task_id, marker.task_id,
        "no fallback ran for the cancel"
    );
    job.succeed("1");
    assert_eq!(take_completions(&mut stream, 1).await[0].seq, 4);
}

#[tokio::test]
async fn a_last_good_result_answers_a_timeout_with_its_age() {
    let server = Server::start(&[]).await;
    let mut worker = server.gate_worker(&["weather"], 4).await;
    let client = server.client().await;
    let mut stream = client.completions("s", 0);
    let last_good = pb::fallback::Kind::LastGoodMaxAgeMs(3_600_000);

    let first = client
        .submit_request(call(
            "weather",
            r#"{"city":"Lyon","days":1}"#,
            last_good.clone(),
        ))
        .await
        .unwrap();
    worker.next().await.succeed(r#"{"temp":21}"#);
    take_completions(&mut stream, 1).await;

    let mut slow = call("weather", r#"{"days":1, "city":"Lyon"}"#, last_good.clone());
    slow.timeout_ms = 300;
    let second = client.submit_request(slow).await.unwrap();
    let _held = worker.next().await; // never answered: the call times out
    let c = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!(c.task_id, second.task_id);
    assert_eq!(status_of(c.status), pb::TaskStatus::Succeeded);
    assert_eq!(
        c.outcome,
        Some(pb::completion::Outcome::ResultJson(r#"{"temp":21}"#.into()))
    );
    let used = c.fallback.as_ref().expect("FallbackUsed");
    assert_eq!(status_of(used.primary_status), pb::TaskStatus::TimedOut);
    assert!(used.tool.is_empty());
    assert_eq!(used.task_id, first.task_id);
    assert!(used.last_good_age_ms >= 300, "{}", used.last_good_age_ms);
    for needle in [
        "stale result",
        "TIMED_OUT",
        "ago",
        "out of date",
        first.task_id.as_str(),
    ] {
        assert!(c.message.contains(needle), "{needle}: {}", c.message);
    }

    // A stale answer is not a good result itself, and other arguments have none.
    let mut other = call("weather", r#"{"city":"Paris","days":1}"#, last_good);
    other.timeout_ms = 300;
    let third = client.submit_request(other).await.unwrap();
    let _held = worker.next().await;
    let c = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!(c.task_id, third.task_id);
    assert_eq!(status_of(c.status), pb::TaskStatus::TimedOut);
    assert!(c.fallback.is_none());
}

/// An acknowledgement keeps a success its call's last-good fallback may
/// need: a client that acknowledges (the SDKs' default) still gets it.
#[tokio::test]
async fn an_acknowledged_success_still_answers_a_last_good_fallback() {
    let server = Server::start(&[]).await;
    let mut worker = server.gate_worker(&["weather"], 4).await;
    let client = server.client().await;
    let mut stream = client.completions("s", 0);
    let last_good = pb::fallback::Kind::LastGoodMaxAgeMs(3_600_000);
    let args = r#"{"city":"Lyon"}"#;

    let first = client
        .submit_request(call("weather", args, last_good.clone()))
        .await
        .unwrap();
    worker.next().await.succeed(r#"{"temp":21}"#);
    let seq = take_completions(&mut stream, 1).await[0].seq;
    assert_eq!(client.ack_completions("s", seq).await.unwrap(), 1);

    let mut slow = call("weather", args, last_good);
    slow.timeout_ms = 300;
    let second = client.submit_request(slow).await.unwrap();
    let _held = worker.next().await; // never answered: the call times out
    let c = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!(c.task_id, second.task_id);
    assert_eq!(status_of(c.status), pb::TaskStatus::Succeeded, "{c:?}");
    assert_eq!(
        c.fallback.as_ref().map(|f| f.task_id.as_str()),
        Some(first.task_id.as_str())
    );
}

#[tokio::test]
async fn bad_fallbacks_are_refused_at_submit() {
    let server = Server::start(&[]).await;
    let _worker = server.gate_worker(&["primary"], 1).await;
    let client = server.client().await;
    let itself = client
        .submit_request(call(
            "primary",
            "{}",
            pb::fallback::Kind::Tool("primary".into()),
        ))
        .await;
    assert_eq!(code(itself), tonic::Code::InvalidArgument);
    let unknown = client
        .submit_request(call(
            "primary",
            "{}",
            pb::fallback::Kind::Tool("nope".into()),
        ))
        .await;
    let e = unknown.unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::NotFound));
    assert!(e.to_string().contains("fallback.tool"), "{e}");
    let zero = client
        .submit_request(call(
            "primary",
            "{}",
            pb::fallback::Kind::LastGoodMaxAgeMs(0),
        ))
        .await;
    assert_eq!(code(zero), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn a_fallback_run_survives_a_restart_and_still_answers_its_call() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_durable(dir.path(), &[]).await;
    let mut primary = server.gate_worker(&["primary"], 2).await;
    let mut backup = server.gate_worker(&["backup"], 2).await;
    let client = server.client().await;
    let ack = client
        .submit_request(call("primary", r#"{"q":9}"#, to_backup()))
        .await
        .unwrap();
    primary.next().await.fail("upstream_down", "503");
    let before = backup.next().await;
    assert_eq!(before.task.attempt, 1);

    server.restart().await;
    // The run comes back as a second attempt; the call itself does not run again.
    let run = backup.next().await;
    assert_eq!(
        (run.task.task_id.as_str(), run.task.attempt),
        (before.task.task_id.as_str(), 2)
    );
    run.succeed(r#"{"answer":9}"#);
    let client = server.client().await;
    let mut stream = client.completions("s", 0);
    let c = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!((c.seq, c.task_id.as_str()), (1, ack.task_id.as_str()));
    assert_eq!(status_of(c.status), pb::TaskStatus::Succeeded);
    assert_eq!(c.fallback.as_ref().unwrap().task_id, before.task.task_id);
    let gone = client.get_task(&before.task.task_id).await;
    assert_eq!(
        code(gone),
        tonic::Code::NotFound,
        "the run's row went with the call's finish"
    );
    // Had the call been queued again at the restart, it would come first.
    let marker = client.submit("s", "primary", "{}").await.unwrap();
    let job = primary.next().await;
    assert_eq!(
        job.task.task_id, marker.task_id,
        "the failed call was not run again"
    );
    let call = client.get_task(&ack.task_id).await.unwrap();
    assert_eq!(
        (status_of(call.status), call.attempts),
        (pb::TaskStatus::Succeeded, 1)
    );
}

#[tokio::test]
async fn cancelling_a_call_during_its_fallback_stops_the_run() {
    let server = Server::start(&[]).await;
    let mut worker = server.gate_worker(&["primary", "backup"], 4).await;
    let client = server.client().await;
    let mut stream = client.completions("s", 0);
    let ack = client
        .submit_request(call("primary", r#"{"q":5}"#, to_backup()))
        .await
        .unwrap();
    worker.next().await.fail("upstream_down", "503");
    let run = worker.next().await;
    assert_eq!(run.task.tool, "backup");
    let task = client.cancel(&ack.task_id).await.unwrap();
    assert_eq!(task.task_id, ack.task_id);
    assert_eq!(status_of(task.status), pb::TaskStatus::Cancelled);
    within("the run's cancel", run.cancel.cancelled()).await;
    let c = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!((c.seq, c.task_id.as_str()), (1, ack.task_id.as_str()));
    assert_eq!(status_of(c.status), pb::TaskStatus::Cancelled);
    let used = c.fallback.as_ref().expect("FallbackUsed");
    assert_eq!(
        (used.tool.as_str(), used.task_id.as_str()),
        ("backup", run.task.task_id.as_str())
    );
    // Cancelling again answers the cancelled call, as for any task.
    let again = client.cancel(&ack.task_id).await.unwrap();
    assert_eq!(status_of(again.status), pb::TaskStatus::Cancelled);
}

#[tokio::test]
async fn a_call_timed_out_in_the_queue_falls_back() {
    // On PostgreSQL the call waits in the shared queue, not here: its queue
    // timeout ends it in the store, and the fallback must still answer.
    let server = Server::start(&[]).await;
    let mut busy = server.gate_worker(&["primary"], 1).await;
    let mut backup = server.gate_worker(&["backup"], 1).await;
    let client = server.client().await;
    let mut stream = client.completions("s", 0);
    let first = client.submit("s", "primary", "{}").await.unwrap().task_id;
    let held = busy.next().await;
    assert_eq!(held.task.task_id, first);

    let mut req = call("primary", r#"{"q":2}"#, to_backup());
    req.queue_timeout_ms = 300;
    let ack = client.submit_request(req).await.unwrap();
    let run = backup.next().await;
    assert_eq!(run.task.tool, "backup");
    assert_eq!(run.task.arguments_json, r#"{"q":2}"#);
    run.succeed(r#"{"from":"backup"}"#);
    let c = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!(c.task_id, ack.task_id);
    assert_eq!(status_of(c.status), pb::TaskStatus::Succeeded, "{c:?}");
    let used = c.fallback.as_ref().expect("FallbackUsed");
    assert_eq!(used.tool, "backup");
    assert_eq!(status_of(used.primary_status), pb::TaskStatus::TimedOut);
    assert_eq!(used.primary_error.as_ref().unwrap().code, "queue_timeout");
    held.succeed("{}");
    let c = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!(c.task_id, first);
}

#[tokio::test]
async fn a_fallback_run_timed_out_in_the_queue_ends_its_call() {
    // The run waits for a busy `backup` and times out in the queue (on
    // PostgreSQL, in the shared queue through the timer of the server that
    // started it): the call ends with the run's timeout, and the run never
    // takes a completion of its own.
    let server = Server::start(&["--default-queue-timeout-ms", "300"]).await;
    let mut primary = server.gate_worker(&["primary"], 1).await;
    let mut backup = server.gate_worker(&["backup"], 1).await;
    let client = server.client().await;
    let mut stream = client.completions("s", 0);
    let wait = |mut req: pb::SubmitToolRequest| {
        req.queue_timeout_ms = 60_000;
        req
    };
    let blocker = pb::SubmitToolRequest {
        session_id: "s".into(),
        tool: "backup".into(),
        arguments_json: "{}".into(),
        ..Default::default()
    };
    let blocker = client.submit_request(wait(blocker)).await.unwrap().task_id;
    let held = backup.next().await;
    assert_eq!(held.task.task_id, blocker);
    let ack = client
        .submit_request(wait(call("primary", r#"{"q":1}"#, to_backup())))
        .await
        .unwrap();
    primary
        .next()
        .await
        .fail("upstream_down", "the API answered 503");
    let c = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!(c.task_id, ack.task_id, "the call's completion: {c:?}");
    assert_eq!(status_of(c.status), pb::TaskStatus::TimedOut);
    let Some(pb::completion::Outcome::Error(e)) = &c.outcome else {
        panic!("{c:?}");
    };
    assert_eq!(e.code, "queue_timeout");
    let used = c.fallback.as_ref().expect("FallbackUsed");
    assert_eq!(used.tool, "backup");
    assert_eq!(status_of(used.primary_status), pb::TaskStatus::Failed);
    assert_eq!(used.primary_error.as_ref().unwrap().code, "upstream_down");
    let task = client.get_task(&ack.task_id).await.unwrap();
    assert_eq!(status_of(task.status), pb::TaskStatus::TimedOut);
    assert_eq!(task.fallback.as_ref(), Some(used));
    held.succeed("{}");
    let c = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!(c.task_id, blocker, "no completion for the run: {c:?}");
}

#[tokio::test]
async fn a_call_answered_by_its_fallback_is_listed_once() {
    let server = Server::start(&[]).await;
    let mut worker = server.gate_worker(&["primary", "backup"], 2).await;
    let client = server.client().await;
    let mut stream = client.completions("s", 0);
    let ack = client
        .submit_request(call("primary", r#"{"q":1}"#, to_backup()))
        .await
        .unwrap();
    worker
        .next()
        .await
        .fail("upstream_down", "the API answered 503");
    let run = worker.next().await;
    assert_eq!(run.task.tool, "backup");
    // The run answers the call: one pending call, under the call's ID.
    let d = client.pending_digest("s", 0).await.unwrap();
    let listed: Vec<&str> = d.pending.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(listed, [ack.task_id.as_str()], "{d:?}");
    assert_eq!(d.pending_count, 1);
    assert!(!d.text.contains("backup"), "{}", d.text);
    let list = client
        .list_tasks(pb::ListTasksRequest {
            session_id: "s".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let listed: Vec<&str> = list.tasks.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(listed, [ack.task_id.as_str()]);
    assert_eq!(list.total_size, 1);
    // While it runs, the run's own ID is still found.
    let got = client.get_task(&run.task.task_id).await.unwrap();
    assert_eq!(got.tool, "backup");
    run.succeed(r#"{"answer":42}"#);
    let c = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!(c.task_id, ack.task_id);
    let d = client.pending_digest("s", 0).await.unwrap();
    assert!(d.pending.is_empty() && d.pending_count == 0, "{d:?}");
}

/// A fallback tool no worker has registered (a tool's policy may name one
/// that comes later) cannot answer: the call ends with its own failure, and
/// its error says the fallback did not run and why, where only the server's
/// log said so.
#[tokio::test]
async fn a_fallback_that_cannot_run_is_named_in_the_failure() {
    let server = Server::start(&[]).await;
    let tool = pb::Tool {
        name: "primary".into(),
        fallback: Some(pb::Fallback {
            kind: Some(pb::fallback::Kind::Tool("ghost".into())),
        }),
        ..Default::default()
    };
    let mut worker = server.gate_worker_for(vec![tool], 1).await;
    let client = server.client().await;
    let mut stream = client.completions("s", 0);
    let ack = client
        .submit_request(pb::SubmitToolRequest {
            session_id: "s".into(),
            tool: "primary".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    worker
        .next()
        .await
        .fail("upstream_down", "the API answered 503");
    let c = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!(c.task_id, ack.task_id);
    assert_eq!(status_of(c.status), pb::TaskStatus::Failed);
    assert!(c.fallback.is_none(), "{:?}", c.fallback);
    let Some(pb::completion::Outcome::Error(e)) = &c.outcome else {
        panic!("{:?}", c.outcome)
    };
    assert_eq!(e.code, "upstream_down");
    for needle in [
        "the API answered 503",
        "fallback tool `ghost` did not run",
        "unknown tool",
    ] {
        assert!(e.message.contains(needle), "{needle}: {}", e.message);
    }
}
