//! Every limit has a safe default, a flag, and refuses with a status that
//! says what to do, without disturbing anyone else.
use std::time::Duration;

use errand_client::pb;
use errand_tests::*;
use tokio_stream::StreamExt;
use tonic::Code;

#[tokio::test]
async fn pending_tasks_are_bounded_per_tenant() {
    if on_postgres() {
        // Shared mode keeps the queue in the database; the per-tenant count
        // is not enforced across servers yet (the per-session one is).
        eprintln!("skipped on PostgreSQL: the per-tenant limit is per server");
        return;
    }
    let server = Server::start(&["--max-pending-per-tenant", "3"]).await;
    let _gate = server.gate_worker(&["search"], 1).await;
    let client = server.client().await;
    for s in ["s1", "s2", "s3"] {
        client.submit(s, "search", "{}").await.unwrap();
    }
    let err = client.submit("s4", "search", "{}").await.unwrap_err();
    assert_eq!(err.code(), Some(Code::ResourceExhausted));
    assert!(err.to_string().contains("limit is 3"), "{err}");
}

#[tokio::test]
async fn open_streams_are_bounded_per_tenant_and_given_back() {
    let server = Server::start(&["--max-streams-per-tenant", "2"]).await;
    let req = |s: &str| pb::CompletionsRequest {
        session_id: s.into(),
        after_seq: 0,
    };
    let mut raw = server.raw();
    let first = raw.completions(req("a")).await.unwrap();
    let _second = raw.completions(req("b")).await.unwrap();
    let third = raw.completions(req("c")).await.unwrap_err();
    assert_eq!(third.code(), Code::ResourceExhausted);
    assert!(third.message().contains("limit is 2"), "{third:?}");
    // Closing one frees its place, as soon as the server notices.
    drop(first);
    within("a freed stream slot", async {
        loop {
            if server.raw().completions(req("c")).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn submits_per_second_are_bounded_per_token_with_a_retry_hint() {
    let tokens = Tokens::new();
    let fast = tokens.add(&["--role", "agent", "--tenant", "t"]).await;
    let other = tokens.add(&["--role", "agent", "--tenant", "t"]).await;
    let worker = tokens.add(&["--role", "worker", "--tenant", "t"]).await;
    let mut flags = tokens.flag().to_vec();
    flags.extend(["--submits-per-second".into(), "5".into()]);
    let server = Server::start(&strs(&flags)).await;
    let _gate = server.gate_worker_as(&worker, &["search"], 1).await;
    let mut raw = server.raw_as(Some(&fast));
    let req = || pb::SubmitToolRequest {
        session_id: "s".into(),
        tool: "search".into(),
        arguments_json: "{}".into(),
        ..Default::default()
    };
    let mut refused = None;
    for _ in 0..20 {
        if let Err(status) = raw.submit_tool(req()).await {
            refused = Some(status);
            break;
        }
    }
    let status = refused.expect("the sixth submit within a second is refused");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("retry in"), "{status:?}");
    let ms: u64 = status
        .metadata()
        .get("retry-after-ms")
        .expect("retry-after-ms metadata")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1000).contains(&ms), "{ms}");
    // Another token is not slowed down by this one.
    server
        .raw_as(Some(&other))
        .submit_tool(req())
        .await
        .expect("another token submits");
    // And after the hint, this one may submit again.
    tokio::time::sleep(Duration::from_millis(ms)).await;
    raw.submit_tool(req())
        .await
        .expect("a submit after the hint");
}

#[tokio::test]
async fn worker_registrations_are_bounded_per_tenant() {
    let server = Server::start(&["--max-workers-per-tenant", "1"]).await;
    let first = server.gate_worker(&["search"], 1).await;
    assert_eq!(
        register_raw(&server.addr, None, "fetch").await,
        Code::ResourceExhausted
    );
    first.stop();
    within("a freed worker slot", async {
        while register_raw(&server.addr, None, "fetch").await != Code::Ok {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn messages_over_the_size_limit_are_refused_and_the_server_goes_on() {
    let server = Server::start(&[
        "--max-message-bytes",
        "65536",
        "--max-arguments-bytes",
        "16384",
        "--max-result-bytes",
        "16384",
    ])
    .await;
    let _gate = server.gate_worker(&["search"], 1).await;
    let huge = format!(r#"{{"blob":"{}"}}"#, "x".repeat(200_000));
    let status = server
        .raw()
        .submit_tool(pb::SubmitToolRequest {
            session_id: "s".into(),
            tool: "search".into(),
            arguments_json: huge,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let client = server.client().await;
    client
        .submit("s", "search", "{}")
        .await
        .expect("a normal submit");
}

/// Issue 15.3: a result at the result limit is delivered, and so is the
/// completion after it: no accepted result can block a stream.
#[tokio::test]
async fn a_result_at_the_limit_is_delivered_and_so_is_the_next_completion() {
    let server = Server::start(&[]).await;
    let mut gate = server.gate_worker(&["search"], 2).await;
    let client = server.client().await;
    let mut stream = client.completions("s", 0);
    // A JSON string of exactly the default limit, 4 MiB.
    let big = format!("\"{}\"", "x".repeat(4 * 1024 * 1024 - 2));
    // Delivered whole: the call's result budget (issue 17) is the limit too.
    let first = client
        .submit_request(pb::SubmitToolRequest {
            session_id: "s".into(),
            tool: "search".into(),
            arguments_json: "{}".into(),
            result_budget_bytes: 4 * 1024 * 1024,
            ..Default::default()
        })
        .await
        .unwrap()
        .task_id;
    gate.next().await.succeed(&big);
    let second = client.submit("s", "search", "{}").await.unwrap().task_id;
    gate.next().await.succeed("1");
    // Both arrive, in completion order (the small one may finish first).
    let got = take_completions(&mut stream, 2).await;
    let find = |id: &str| got.iter().find(|c| c.task_id == id).expect("delivered");
    let large = find(&first);
    assert_eq!(status_of(large.status), pb::TaskStatus::Succeeded);
    assert!(
        matches!(&large.outcome, Some(pb::completion::Outcome::ResultJson(r)) if r.len() == big.len())
    );
    assert!(
        large.message.len() < 1024,
        "the message does not repeat a large result: {} bytes",
        large.message.len()
    );
    assert_eq!(status_of(find(&second).status), pb::TaskStatus::Succeeded);
}

/// Issue 15.3: a configuration whose limits cannot add up is refused at
/// start, naming the flags to change.
#[tokio::test]
async fn limits_that_cannot_add_up_are_refused_at_start() {
    let out = within(
        "errand serve to refuse the configuration",
        tokio::process::Command::new(errand_bin())
            .args(["serve", "--store", "memory", "--listen", "127.0.0.1:0"])
            .args(["--max-message-bytes", "1048576"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--max-message-bytes")
            && err.contains("--max-result-bytes")
            && err.contains("at least"),
        "{err}"
    );
}

/// A stream's byte window (`--stream-buffer-bytes`) smaller than one result
/// slows a reader's queue, never its delivery: every large result arrives,
/// whole and in seq order, on `Completions` and on `SessionEvents`.
#[tokio::test]
async fn a_byte_window_smaller_than_a_result_still_delivers_every_result() {
    let server = Server::start(&["--stream-buffer-bytes", "1000"]).await;
    let mut gate = server.gate_worker(&["search"], 8).await;
    let client = server.client().await;
    let big = format!("\"{}\"", "x".repeat(100_000));
    for _ in 0..8 {
        client
            .submit_request(pb::SubmitToolRequest {
                session_id: "s".into(),
                tool: "search".into(),
                arguments_json: "{}".into(),
                result_budget_bytes: 200_000,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    for _ in 0..8 {
        gate.next().await.succeed(&big);
    }
    let mut stream = client.completions("s", 0);
    let got = take_completions(&mut stream, 8).await;
    let seqs: Vec<u64> = got.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, (1..=8).collect::<Vec<_>>());
    assert!(got.iter().all(|c| matches!(
        &c.outcome,
        Some(pb::completion::Outcome::ResultJson(r)) if r.len() == big.len()
    )));
    let mut events = server
        .raw()
        .session_events(pb::SessionEventsRequest {
            session_id: "s".into(),
            ..Default::default()
        })
        .await
        .expect("SessionEvents opens")
        .into_inner();
    for seq in 1..=8 {
        let event = within("a session event", events.next()).await;
        let Some(Ok(pb::SessionEvent {
            event: Some(pb::session_event::Event::Completion(c)),
        })) = event
        else {
            panic!("expected completion {seq}, got {event:?}");
        };
        assert_eq!(c.seq, seq);
    }
}

/// The limits add up in the Rust clients too: a server sends a worker
/// arguments, and an agent a completion, as large as its
/// `--max-message-bytes` lets it (up to 1 GiB). tonic's own receive limits
/// (4 MiB on a worker's stream, 64 MiB set on the agent's) ended the worker
/// at the first larger task, and then the next worker that took the task;
/// and ended the agent's completions with OUT_OF_RANGE.
#[tokio::test]
async fn arguments_and_results_past_tonics_receive_limits_reach_the_rust_worker_and_agent() {
    let server = Server::start(&[
        "--max-message-bytes",
        "200000000",
        "--max-arguments-bytes",
        "6000000",
        "--max-result-bytes",
        "70000000",
        "--max-result-budget-bytes",
        "70000000",
    ])
    .await;
    let mut gate = server.gate_worker(&["search"], 1).await;
    let client = server.client().await;
    let arguments = format!(r#"{{"blob":"{}"}}"#, "x".repeat(5_000_000));
    client
        .submit_request(pb::SubmitToolRequest {
            session_id: "s".into(),
            tool: "search".into(),
            arguments_json: arguments.clone(),
            result_budget_bytes: 70_000_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let job = gate.next().await;
    assert_eq!(job.task.arguments_json.len(), arguments.len());
    let big = format!("\"{}\"", "y".repeat(66 * 1024 * 1024));
    job.succeed(&big);
    let mut stream = client.completions("s", 0);
    let got = take_completions(&mut stream, 1).await;
    assert!(
        matches!(
            &got[0].outcome,
            Some(pb::completion::Outcome::ResultJson(r)) if r.len() == big.len()
        ),
        "status {} message {}",
        got[0].status,
        got[0].message
    );
}

#[tokio::test]
async fn bytes_of_pending_arguments_are_bounded_per_tenant_and_given_back() {
    if on_postgres() {
        // As the count: the shared queue is in the database, held by no server.
        eprintln!("skipped on PostgreSQL: the per-tenant limit is per server");
        return;
    }
    let server = Server::start(&[
        "--max-arguments-bytes",
        "100",
        "--max-pending-bytes-per-tenant",
        "250",
    ])
    .await;
    let mut gate = server.gate_worker(&["search"], 1).await;
    let client = server.client().await;
    // 100 bytes each: two fit, a third would hold 300.
    let args = format!(r#"{{"p":"{}"}}"#, "x".repeat(92));
    assert_eq!(args.len(), 100);
    let keyed = |key: &str| pb::SubmitToolRequest {
        session_id: "s1".into(),
        tool: "search".into(),
        arguments_json: args.clone(),
        idempotency_key: key.into(),
        ..Default::default()
    };
    let running = client.submit_request(keyed("k1")).await.unwrap();
    let queued = client.submit("s2", "search", &args).await.unwrap();
    let full = |err: errand_client::Error| {
        assert_eq!(err.code(), Some(Code::ResourceExhausted), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("hold 200 bytes of arguments, the limit is 250")
                && text.contains("--max-pending-bytes-per-tenant"),
            "{text}"
        );
    };
    full(client.submit("s3", "search", &args).await.unwrap_err());
    // A repeat adds no task: answered at the limit as below it.
    let again = client.submit_request(keyed("k1")).await.unwrap();
    assert_eq!(again.task_id, running.task_id);
    // A completion gives its bytes back.
    let job = gate.next().await;
    assert_eq!(job.task.task_id, running.task_id);
    job.succeed("{}");
    // The task gives its bytes back before its completion is stored: once
    // the completion is in, there is room.
    take_completions(&mut client.completions("s1", 0), 1).await;
    let third = client.submit("s3", "search", &args).await.unwrap();
    full(client.submit("s4", "search", &args).await.unwrap_err());
    // So does a cancel, of a queued task and of a running one.
    client.cancel(&third.task_id).await.unwrap();
    let fourth = client.submit("s4", "search", &args).await.unwrap();
    let job = gate.next().await;
    assert_eq!(job.task.task_id, queued.task_id);
    client.cancel(&queued.task_id).await.unwrap();
    let job4 = gate.next().await;
    assert_eq!(job4.task.task_id, fourth.task_id);
    job4.succeed("{}");
    drop(job);
    // Nothing unfinished once that completion is in: the bytes are back to
    // zero, so two fit again and a third finds exactly their 200 held.
    take_completions(&mut client.completions("s4", 0), 1).await;
    client.submit("s5", "search", &args).await.unwrap();
    client.submit("s6", "search", &args).await.unwrap();
    full(client.submit("s7", "search", &args).await.unwrap_err());
}
