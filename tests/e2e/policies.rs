//! What tools and submits declare (issue 17): the delivery policy resolved
//! at submit (the submit's, else the tool's, else `--default-delivery`) and
//! stamped on the task and its completion; tool fields carried through
//! registration and ListTools; a cancel's reason reaching the worker and
//! the completion; bad values refused with their codes.
use errand_client::pb;
use errand_tests::{raw::connect_worker, *};
use tonic::Code;

fn tool(name: &str, delivery: pb::DeliveryPolicy) -> pb::Tool {
    pb::Tool {
        name: name.into(),
        delivery: delivery as i32,
        result_budget_bytes: 2048,
        cancellable_by_model: true,
        ..Default::default()
    }
}

async fn submit(
    server: &Server,
    tool: &str,
    delivery: pb::DeliveryPolicy,
) -> Result<pb::SubmitToolResponse, tonic::Status> {
    server
        .raw()
        .submit_tool(pb::SubmitToolRequest {
            session_id: "s".into(),
            tool: tool.into(),
            arguments_json: "{}".into(),
            delivery: delivery as i32,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

fn delivery_of(code: i32) -> pb::DeliveryPolicy {
    pb::DeliveryPolicy::try_from(code).unwrap()
}

#[tokio::test]
async fn delivery_is_the_submits_else_the_tools_else_the_default_and_is_stamped_on_the_completion()
{
    use pb::DeliveryPolicy::*;
    let server = Server::start(&[]).await;
    let mut plain = tool("plain", Unspecified);
    plain.dedup = pb::DedupPolicy::JoinInFlight as i32;
    plain.fallback = Some(pb::Fallback {
        kind: Some(pb::fallback::Kind::Tool("alert".into())),
    });
    let mut worker = connect_worker(&server.addr, None, vec![tool("alert", Interrupt), plain])
        .await
        .unwrap();
    let tools = server.client().await.list_tools().await.unwrap();
    let alert = tools.iter().find(|t| t.name == "alert").unwrap();
    assert_eq!(delivery_of(alert.delivery), Interrupt);
    assert_eq!(
        (alert.result_budget_bytes, alert.cancellable_by_model),
        (2048, true)
    );
    let plain = tools.iter().find(|t| t.name == "plain").unwrap();
    assert_eq!(
        delivery_of(plain.delivery),
        Unspecified,
        "the tool set none"
    );

    let cases = [
        ("plain", Unspecified, WhenIdle),
        ("alert", Unspecified, Interrupt),
        ("alert", Silent, Silent),
        ("plain", Interrupt, Interrupt),
    ];
    let client = server.client().await;
    let mut stream = client.completions("s", 0);
    for (i, (tool, asked, resolved)) in cases.into_iter().enumerate() {
        let ack = submit(&server, tool, asked).await.unwrap();
        let task = ack.task.unwrap();
        assert_eq!(delivery_of(task.delivery), resolved, "case {i}");
        let a = worker.assignment().await;
        worker.send_result(&a.task_id, "1", 0).await;
        let c = take_completions(&mut stream, 1).await.remove(0);
        assert_eq!(
            (c.task_id.as_str(), delivery_of(c.delivery)),
            (a.task_id.as_str(), resolved),
            "case {i}"
        );
        let stored = client.get_task(&a.task_id).await.unwrap();
        assert_eq!(delivery_of(stored.delivery), resolved, "case {i}");
    }

    // The operator's default applies where neither says.
    let silent = Server::start(&["--default-delivery", "silent"]).await;
    let _w = connect_worker(&silent.addr, None, vec![tool("plain", Unspecified)])
        .await
        .unwrap();
    let ack = submit(&silent, "plain", Unspecified).await.unwrap();
    assert_eq!(delivery_of(ack.task.unwrap().delivery), Silent);
}

#[tokio::test]
async fn a_cancels_reason_reaches_the_worker_and_the_completions_message() {
    let server = Server::start(&[]).await;
    let mut worker = connect_worker(
        &server.addr,
        None,
        vec![tool("crawl", pb::DeliveryPolicy::Unspecified)],
    )
    .await
    .unwrap();
    let client = server.client().await;
    let mut stream = client.completions("s", 0);
    let id = submit(&server, "crawl", pb::DeliveryPolicy::Unspecified)
        .await
        .unwrap()
        .task_id;
    worker.assignment().await;
    let too_long = server
        .raw()
        .cancel_task(pb::CancelTaskRequest {
            task_id: id.clone(),
            reason: "x".repeat(1025),
        })
        .await
        .unwrap_err();
    assert_eq!(too_long.code(), Code::InvalidArgument, "{too_long:?}");
    assert!(
        too_long.message().contains("1024"),
        "{}",
        too_long.message()
    );
    let task = server
        .raw()
        .cancel_task(pb::CancelTaskRequest {
            task_id: id.clone(),
            reason: "the user changed their mind".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status_of(task.status), pb::TaskStatus::Cancelled);
    let cancel = loop {
        if let pb::worker_command::Kind::Cancel(c) = worker.next_command().await {
            break c;
        }
    };
    assert_eq!(
        (cancel.task_id.as_str(), cancel.reason.as_str()),
        (id.as_str(), "cancelled: the user changed their mind")
    );
    let c = take_completions(&mut stream, 1).await.remove(0);
    assert!(
        c.message.contains("the user changed their mind"),
        "{}",
        c.message
    );
}

/// CancelTasks' reason follows CancelTask's rule: at most 1 KiB, each NUL
/// escaped as `\u0000` before it reaches the worker, the completion and
/// the store (PostgreSQL refuses a raw NUL).
#[tokio::test]
async fn cancel_tasks_reason_follows_the_cancel_task_rule() {
    let server = Server::start(&[]).await;
    let mut worker = connect_worker(
        &server.addr,
        None,
        vec![tool("crawl", pb::DeliveryPolicy::Unspecified)],
    )
    .await
    .unwrap();
    let client = server.client().await;
    let mut stream = client.completions("s", 0);
    let running = submit(&server, "crawl", pb::DeliveryPolicy::Unspecified)
        .await
        .unwrap()
        .task_id;
    worker.assignment().await;
    // The worker runs one at a time: this one waits in the queue.
    let queued = submit(&server, "crawl", pb::DeliveryPolicy::Unspecified)
        .await
        .unwrap()
        .task_id;
    let cancel_all = |reason: String| pb::CancelTasksRequest {
        session_id: "s".into(),
        reason,
        ..Default::default()
    };
    let too_long = server
        .raw()
        .cancel_tasks(cancel_all("x".repeat(1025)))
        .await
        .unwrap_err();
    assert_eq!(too_long.code(), Code::InvalidArgument, "{too_long:?}");
    assert!(
        too_long.message().contains("1024"),
        "{}",
        too_long.message()
    );
    // 300 bytes with a NUL: within the limit, the NUL escaped.
    let reason = format!("stop\0now {}", "y".repeat(290));
    let cancelled = server
        .raw()
        .cancel_tasks(cancel_all(reason.clone()))
        .await
        .unwrap()
        .into_inner()
        .cancelled;
    assert_eq!(cancelled, 2);
    let escaped = reason.replace('\0', "\\u0000");
    let cancel = loop {
        if let pb::worker_command::Kind::Cancel(c) = worker.next_command().await {
            break c;
        }
    };
    assert_eq!(
        (cancel.task_id.as_str(), cancel.reason),
        (running.as_str(), format!("cancelled: {escaped}"))
    );
    let ended = take_completions(&mut stream, 2).await;
    for c in &ended {
        assert_eq!(status_of(c.status), pb::TaskStatus::Cancelled, "{c:?}");
        assert!(c.message.contains(&escaped), "{}", c.message);
        assert!(!c.message.contains('\0'), "{}", c.message);
    }
    let mut ids: Vec<&str> = ended.iter().map(|c| c.task_id.as_str()).collect();
    ids.sort_unstable();
    let mut want = [running.as_str(), queued.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want);
}

#[tokio::test]
async fn unknown_enum_values_are_refused_on_submit_and_on_the_worker_stream() {
    let server = Server::start(&[]).await;
    let _worker = connect_worker(
        &server.addr,
        None,
        vec![tool("crawl", pb::DeliveryPolicy::Unspecified)],
    )
    .await
    .unwrap();
    let bad = pb::SubmitToolRequest {
        session_id: "s".into(),
        tool: "crawl".into(),
        delivery: 9,
        ..Default::default()
    };
    let err = server.raw().submit_tool(bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("delivery 9 is not a DeliveryPolicy"),
        "{}",
        err.message()
    );

    for broken in [
        pb::Tool {
            name: "odd".into(),
            delivery: 9,
            ..Default::default()
        },
        pb::Tool {
            name: "odd".into(),
            dedup: 5,
            ..Default::default()
        },
        pb::Tool {
            name: "odd".into(),
            result_budget_bytes: u64::MAX,
            ..Default::default()
        },
        pb::Tool {
            name: "odd".into(),
            fallback: Some(pb::Fallback {
                kind: Some(pb::fallback::Kind::Tool("odd".into())),
            }),
            ..Default::default()
        },
    ] {
        let err = match connect_worker(&server.addr, None, vec![broken]).await {
            Err(status) => status,
            Ok(mut w) => within("the refusal", w.commands.message())
                .await
                .expect_err("refused on the stream"),
        };
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("tool `odd`"), "{}", err.message());
    }
}
