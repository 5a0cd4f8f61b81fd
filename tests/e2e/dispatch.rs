//! Dispatch: concurrency limits, fairness, timeouts, cancellation, and
//! workers lost mid-task.
use errand_client::pb;
use errand_tests::*;

async fn statuses(client: &errand_client::Client, ids: &[String]) -> Vec<pb::TaskStatus> {
    let mut out = Vec::new();
    for id in ids {
        out.push(status_of(client.get_task(id).await.unwrap().status));
    }
    out
}

fn count(statuses: &[pb::TaskStatus], wanted: pb::TaskStatus) -> usize {
    statuses.iter().filter(|s| **s == wanted).count()
}

#[tokio::test]
async fn a_worker_never_holds_more_than_its_max_concurrency() {
    let server = Server::start(&[]).await;
    let mut worker = server.gate_worker(&["t"], 2).await;
    let client = server.client().await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(client.submit("s", "t", "{}").await.unwrap().task_id);
    }
    // Dispatch happens inside SubmitTool, so the server's view is settled.
    let s = statuses(&client, &ids).await;
    assert_eq!(
        (
            count(&s, pb::TaskStatus::Running),
            count(&s, pb::TaskStatus::Queued)
        ),
        (2, 4)
    );
    let mut stream = client.completions("s", 0);
    let first = worker.next().await;
    let _second = worker.next().await;
    first.succeed("1");
    take_completions(&mut stream, 1).await;
    let _third = worker.next().await;
    let s = statuses(&client, &ids).await;
    assert_eq!(
        (
            count(&s, pb::TaskStatus::Running),
            count(&s, pb::TaskStatus::Queued),
            count(&s, pb::TaskStatus::Succeeded)
        ),
        (2, 3, 1)
    );
    assert!(
        worker.try_next().is_none(),
        "a third task reached the worker while it held two"
    );
}

#[tokio::test]
async fn a_busy_session_does_not_starve_another() {
    let server = Server::start(&[]).await;
    let mut worker = server.gate_worker(&["t"], 1).await;
    let client = server.client().await;
    for i in 0..200 {
        client
            .submit("greedy", "t", &format!(r#"{{"i":{i}}}"#))
            .await
            .unwrap();
    }
    let polite = client.submit("polite", "t", "{}").await.unwrap().task_id;
    let mut order = Vec::new();
    for _ in 0..3 {
        let job = worker.next().await;
        order.push(job.task.session_id.clone());
        let is_polite = job.task.task_id == polite;
        job.succeed("0");
        if is_polite {
            break;
        }
    }
    assert!(
        order.contains(&"polite".to_string()),
        "polite's one task waited behind greedy's: {order:?}"
    );
}

#[tokio::test]
async fn tasks_of_a_tool_go_to_any_worker_that_serves_it() {
    let server = Server::start(&[]).await;
    let mut a = server.gate_worker(&["t"], 1).await;
    let mut b = server.gate_worker(&["t", "other"], 1).await;
    let client = server.client().await;
    client.submit("s", "t", "{}").await.unwrap();
    client.submit("s", "t", "{}").await.unwrap();
    // One each: both workers have room for exactly one.
    a.next().await.succeed("1");
    b.next().await.succeed("2");
}

#[tokio::test]
async fn a_task_past_its_timeout_times_out_and_its_worker_is_told() {
    let server = Server::start(&[]).await;
    let mut worker = server.gate_worker(&["t"], 1).await;
    let client = server.client().await;
    let mut stream = client.completions("s", 0);
    let call = pb::SubmitToolRequest {
        timeout_ms: 300,
        ..tool_call("s", "t")
    };
    let id = submit_id(&client, call).await;
    let job = worker.next().await;
    assert_eq!(job.task.timeout_ms, 300);
    within("CancelAssignment on timeout", job.cancel.cancelled()).await;
    let done = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!(done.task_id, id);
    assert_eq!(status_of(done.status), pb::TaskStatus::TimedOut);
    assert!(
        matches!(done.outcome, Some(pb::completion::Outcome::Error(ref e)) if e.code == "timeout")
    );
    assert!(done.elapsed_ms >= 300);
}

#[tokio::test]
async fn cancel_a_running_task_tells_its_worker() {
    let server = Server::start(&[]).await;
    let mut worker = server.gate_worker(&["t"], 1).await;
    let client = server.client().await;
    let mut stream = client.completions("s", 0);
    let id = client.submit("s", "t", "{}").await.unwrap().task_id;
    let job = worker.next().await;
    let task = client.cancel(&id).await.unwrap();
    assert_eq!(status_of(task.status), pb::TaskStatus::Cancelled);
    within("CancelAssignment", job.cancel.cancelled()).await;
    let done = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!(
        (done.task_id.as_str(), status_of(done.status)),
        (id.as_str(), pb::TaskStatus::Cancelled)
    );
    // Cancelling again is harmless; it answers with the cancelled task.
    assert_eq!(
        status_of(client.cancel(&id).await.unwrap().status),
        pb::TaskStatus::Cancelled
    );
}

#[tokio::test]
async fn cancel_a_queued_task_and_a_finished_one() {
    let server = Server::start(&[]).await;
    let mut worker = server.gate_worker(&["t"], 1).await;
    let client = server.client().await;
    let mut stream = client.completions("s", 0);
    let running = client.submit("s", "t", "{}").await.unwrap().task_id;
    let queued = client.submit("s", "t", "{}").await.unwrap().task_id;
    let job = worker.next().await;
    assert_eq!(job.task.task_id, running);
    let task = client.cancel(&queued).await.unwrap();
    assert_eq!(status_of(task.status), pb::TaskStatus::Cancelled);
    assert_eq!(task.attempts, 0, "a queued task never reached a worker");
    job.succeed("42");
    let done = take_completions(&mut stream, 2).await;
    assert_eq!(done[0].task_id, queued);
    assert_eq!(done[1].task_id, running);
    let err = client.cancel(&running).await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::FailedPrecondition));
    assert!(err.to_string().contains("SUCCEEDED"), "{err}");
    assert_eq!(
        status_of(client.get_task(&running).await.unwrap().status),
        pb::TaskStatus::Succeeded
    );
}

#[tokio::test]
async fn a_killed_worker_s_task_runs_again_on_another_worker() {
    let server = Server::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    mkfifo(&started);
    // The first worker signals through the fifo that it runs the task, then hangs.
    let mut doomed = server
        .exec_worker(
            "job",
            &format!("echo $ERRAND_ATTEMPT > {}; sleep 600", started.display()),
            &[],
        )
        .await;
    let client = server.client().await;
    let mut stream = client.completions("s", 0);
    let id = client
        .submit("s", "job", r#"{"x":1}"#)
        .await
        .unwrap()
        .task_id;
    let attempt = within("the first attempt to start", read_fifo(&started)).await;
    assert_eq!(attempt.trim(), "1");
    doomed.kill().await.unwrap();
    let _rescuer = server
        .exec_worker("job", "echo attempt-$ERRAND_ATTEMPT", &[])
        .await;
    let done = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!(done.task_id, id);
    assert_eq!(status_of(done.status), pb::TaskStatus::Succeeded);
    assert_eq!(
        done.outcome,
        Some(pb::completion::Outcome::ResultJson(r#""attempt-2""#.into()))
    );
    assert_eq!(done.attempts, 2);
}

#[tokio::test]
async fn a_task_whose_workers_keep_dying_fails_as_worker_lost() {
    let server = Server::start(&["--max-attempts", "2"]).await;
    let client = server.client().await;
    let mut stream = client.completions("s", 0);
    let mut id = None;
    for attempt in 1..=2 {
        let mut worker = server.gate_worker(&["t"], 1).await;
        if id.is_none() {
            id = Some(client.submit("s", "t", "{}").await.unwrap().task_id);
        }
        let job = worker.next().await;
        assert_eq!(job.task.attempt, attempt);
        worker.stop();
        within(
            "the worker's task to be cancelled locally",
            job.cancel.cancelled(),
        )
        .await;
    }
    let done = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!(Some(done.task_id), id);
    assert_eq!(status_of(done.status), pb::TaskStatus::Failed);
    assert!(
        matches!(done.outcome, Some(pb::completion::Outcome::Error(ref e)) if e.code == "worker_lost"),
        "{:?}",
        done.outcome
    );
    assert_eq!(done.attempts, 2);
}

#[tokio::test]
async fn a_late_result_after_timeout_is_dropped_and_the_worker_stays() {
    let server = Server::start(&[]).await;
    let client = server.client().await;
    // A worker speaking the raw protocol, to send what the SDK never would.
    let mut raw = raw::connect_worker(&server.addr, None, vec![raw::tool("t", "")])
        .await
        .unwrap();
    let mut stream = client.completions("s", 0);
    let call = pb::SubmitToolRequest {
        timeout_ms: 100,
        ..tool_call("s", "t")
    };
    let id = submit_id(&client, call).await;
    let assignment = raw.next_assignment().await;
    assert_eq!(assignment.task_id, id);
    let cancel = raw.next_command().await;
    assert!(
        matches!(cancel, pb::worker_command::Kind::Cancel(ref c) if c.task_id == id && c.reason == "timeout")
    );
    // Too late, then for a task it never held, then garbage.
    raw.send_result(&id, r#""late""#, assignment.attempt).await;
    raw.send_result("7f8e6a40-0000-4000-8000-000000000000", "1", 1)
        .await;
    raw.send_result("not-a-uuid", "1", 1).await;
    let timed_out = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!(status_of(timed_out.status), pb::TaskStatus::TimedOut);
    // The worker is still connected and serving; the next completion is the
    // new task's, so the late result produced none.
    let next = client.submit("s", "t", "{}").await.unwrap().task_id;
    let a = raw.next_assignment().await;
    assert_eq!(a.task_id, next);
    raw.send_result(&next, r#""fresh""#, a.attempt).await;
    let c = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!((c.seq, c.task_id), (2, next));
}

fn mkfifo(path: &std::path::Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo failed"
    );
}

async fn read_fifo(path: &std::path::Path) -> String {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::read_to_string(path).unwrap())
        .await
        .unwrap()
}
