//! Result budgets (issue 17): a result over its budget is stored whole,
//! delivered as a preview, and read back in pages with ReadResult.
use errand_client::pb;
use errand_tests::{raw::RawWorker, *};
use sha2::{Digest, Sha256};

/// A JSON text of at least `bytes` bytes, with characters of 1 to 4 bytes
/// so that pages must cut on character boundaries.
fn big_result(bytes: usize) -> String {
    let mut items = Vec::new();
    let mut size = 0;
    let mut i = 0;
    while size < bytes {
        let item = format!("row {i}: aé€😀 {}", "x".repeat(i % 50));
        size += item.len() + 3;
        items.push(item);
        i += 1;
    }
    serde_json::to_string(&items).unwrap()
}

fn sha(s: &str) -> Vec<u8> {
    Sha256::digest(s.as_bytes()).to_vec()
}

/// Answers the next assignment with `result_json` and `summary`; returns its task ID.
async fn answer(worker: &mut RawWorker, result_json: &str, summary: &str) -> String {
    let cmd = within("an assignment", worker.commands.message())
        .await
        .unwrap()
        .unwrap();
    let Some(pb::worker_command::Kind::Assignment(a)) = cmd.kind else {
        panic!("expected an assignment, got {cmd:?}");
    };
    let result = pb::TaskResult {
        task_id: a.task_id.clone(),
        outcome: Some(pb::task_result::Outcome::ResultJson(result_json.into())),
        attempt: a.attempt,
        summary: summary.into(),
    };
    worker
        .tx
        .send(pb::WorkerMessage {
            kind: Some(pb::worker_message::Kind::Result(result)),
        })
        .await
        .unwrap();
    a.task_id
}

fn submit_req(budget: u64) -> pb::SubmitToolRequest {
    pb::SubmitToolRequest {
        session_id: "s".into(),
        tool: "report".into(),
        arguments_json: "{}".into(),
        result_budget_bytes: budget,
        ..Default::default()
    }
}

/// Reads the whole result through ReadResult pages of `max_bytes`.
async fn read_pages(server: &Server, task_id: &str, max_bytes: u64) -> (String, usize) {
    let mut rpc = server.raw();
    let (mut text, mut pages) = (String::new(), 0);
    loop {
        let chunk = rpc
            .read_result(pb::ReadResultRequest {
                task_id: task_id.into(),
                offset: text.len() as u64,
                max_bytes,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(chunk.offset as usize, text.len());
        assert!(chunk.data.len() as u64 <= max_bytes.max(4));
        text.push_str(&chunk.data);
        pages += 1;
        if chunk.eof {
            assert_eq!(chunk.total_bytes as usize, text.len());
            return (text, pages);
        }
    }
}

#[tokio::test]
async fn a_result_over_its_budget_arrives_as_a_preview_and_reads_back_whole() {
    let server = Server::start(&[]).await;
    let mut worker = raw::connect_worker(&server.addr, None, vec![raw::tool("report", "")])
        .await
        .unwrap();
    let client = server.client().await;
    let mut stream = client.completions("s", 0);
    let full = big_result(1024 * 1024);
    let mut rpc = server.raw();

    // Default budget (16 KiB): a preview, the whole text kept.
    let first = rpc.submit_tool(submit_req(0)).await.unwrap().into_inner();
    answer(&mut worker, &full, "").await;
    let c = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!(c.task_id, first.task_id);
    assert_eq!(status_of(c.status), pb::TaskStatus::Succeeded);
    assert!(c.result_truncated);
    assert_eq!(c.result_bytes as usize, full.len());
    assert!(
        c.result_preview.len() <= 16 * 1024,
        "{}",
        c.result_preview.len()
    );
    assert!(full.starts_with(c.result_preview.split("\n[...]\n").next().unwrap()));
    assert!(full.ends_with(c.result_preview.rsplit("\n[...]\n").next().unwrap()));
    assert_eq!(
        c.outcome,
        Some(pb::completion::Outcome::ResultJson(String::new())),
        "the full text stays off the stream"
    );
    for needle in [
        format!("{} bytes", full.len()),
        "16384 bytes".to_string(),
        "ReadResult".to_string(),
        first.task_id.clone(),
    ] {
        assert!(c.message.contains(&needle), "{needle}: {}", c.message);
    }
    assert!(
        c.message.len() < 20 * 1024,
        "the message holds the preview only"
    );
    // With results_by_reference, SessionEvents carries no result text at all.
    let mut events = server
        .raw()
        .session_events(pb::SessionEventsRequest {
            session_id: "s".into(),
            after_seq: 0,
            include_progress: false,
            results_by_reference: true,
        })
        .await
        .unwrap()
        .into_inner();
    let event = within("a replayed event", events.message())
        .await
        .unwrap()
        .unwrap();
    let Some(pb::session_event::Event::Completion(by_ref)) = event.event else {
        panic!("{event:?}");
    };
    assert_eq!(by_ref.task_id, first.task_id);
    assert_eq!(
        by_ref.outcome,
        Some(pb::completion::Outcome::ResultJson(String::new()))
    );
    assert_eq!(
        (by_ref.result_bytes, by_ref.result_truncated),
        (full.len() as u64, true)
    );
    assert_eq!(by_ref.result_preview, c.result_preview);
    let (text, pages) = read_pages(&server, &first.task_id, 65536).await;
    assert_eq!(
        sha(&text),
        sha(&full),
        "pages rebuild the result byte for byte"
    );
    assert!(pages >= 16, "{pages} pages");
    // Odd page sizes still cut on characters.
    let (text, _) = read_pages(&server, &first.task_id, 100_003).await;
    assert_eq!(sha(&text), sha(&full));
    // The CLI writes exactly the bytes.
    let out = server.cli(&["result", &first.task_id]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sha(std::str::from_utf8(&out.stdout).unwrap()), sha(&full));

    // A worker's summary replaces the preview.
    rpc.submit_tool(submit_req(0)).await.unwrap();
    answer(&mut worker, &full, "1 MiB of rows; the last one is row 20k").await;
    let c = take_completions(&mut stream, 1).await.remove(0);
    assert!(c.result_truncated);
    assert_eq!(c.result_preview, "1 MiB of rows; the last one is row 20k");
    assert!(
        c.message.contains("the last one is row 20k"),
        "{}",
        c.message
    );

    // A larger submit budget delivers it whole.
    rpc.submit_tool(submit_req(2 * 1024 * 1024)).await.unwrap();
    answer(&mut worker, &full, "a summary").await;
    let c = take_completions(&mut stream, 1).await.remove(0);
    assert!(!c.result_truncated && c.result_preview.is_empty());
    assert_eq!(c.result_bytes as usize, full.len());
    assert_eq!(
        c.outcome,
        Some(pb::completion::Outcome::ResultJson(full.clone()))
    );

    // A small result: whole, its size said.
    rpc.submit_tool(submit_req(0)).await.unwrap();
    answer(&mut worker, r#"{"ok":true}"#, "").await;
    let c = take_completions(&mut stream, 1).await.remove(0);
    assert!(!c.result_truncated);
    assert_eq!(c.result_bytes, 11);
}

#[tokio::test]
async fn budgets_and_reads_refuse_bad_input_with_precise_codes() {
    let server = Server::start(&["--max-result-budget-bytes", "100000"]).await;
    let mut worker = raw::connect_worker(&server.addr, None, vec![raw::tool("report", "")])
        .await
        .unwrap();
    let mut rpc = server.raw();
    let over = rpc.submit_tool(submit_req(100_001)).await.unwrap_err();
    assert_eq!(over.code(), tonic::Code::InvalidArgument);
    assert!(
        over.message().contains("--max-result-budget-bytes"),
        "{}",
        over.message()
    );
    let read = |task_id: &str, offset: u64| pb::ReadResultRequest {
        task_id: task_id.into(),
        offset,
        max_bytes: 0,
    };
    let unknown = uuid_like();
    let e = rpc.read_result(read(&unknown, 0)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let task = rpc.submit_tool(submit_req(0)).await.unwrap().into_inner();
    let e = rpc.read_result(read(&task.task_id, 0)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{}", e.message());
    let mut stream = server.client().await.completions("s", 0);
    answer(&mut worker, r#""é""#, "").await;
    take_completions(&mut stream, 1).await;
    let chunk = rpc
        .read_result(read(&task.task_id, 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (chunk.data.as_str(), chunk.total_bytes, chunk.eof),
        (r#""é""#, 4, true)
    );
    let e = rpc.read_result(read(&task.task_id, 5)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::OutOfRange, "{}", e.message());
    let e = rpc.read_result(read(&task.task_id, 2)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "inside a character");
    // A failed task has no result.
    rpc.submit_tool(submit_req(0)).await.unwrap();
    let cmd = within("an assignment", worker.commands.message())
        .await
        .unwrap()
        .unwrap();
    let Some(pb::worker_command::Kind::Assignment(a)) = cmd.kind else {
        panic!("{cmd:?}");
    };
    worker
        .tx
        .send(pb::WorkerMessage {
            kind: Some(pb::worker_message::Kind::Result(pb::TaskResult {
                task_id: a.task_id.clone(),
                outcome: Some(pb::task_result::Outcome::Error(pb::ToolError {
                    code: "boom".into(),
                    message: "broke".into(),
                })),
                ..Default::default()
            })),
        })
        .await
        .unwrap();
    take_completions(&mut stream, 1).await;
    let e = rpc.read_result(read(&a.task_id, 0)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().contains("FAILED"), "{}", e.message());
}

fn uuid_like() -> String {
    "00000000-0000-4000-8000-000000000000".into()
}

fn declared(name: &str) -> pb::Tool {
    pb::Tool {
        name: name.into(),
        result_budget_bytes: 100,
        dedup: pb::DedupPolicy::JoinInFlight as i32,
        fallback: Some(pb::Fallback {
            kind: Some(pb::fallback::Kind::Tool("spare".into())),
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_tool_s_declared_budget_dedup_and_fallback_apply_unless_the_submit_says_otherwise() {
    let server = Server::start(&["--max-result-budget-bytes", "100000"]).await;
    let mut worker = raw::connect_worker(
        &server.addr,
        None,
        vec![declared("report"), raw::tool("spare", "")],
    )
    .await
    .unwrap();
    let listed = server.client().await.list_tools().await.unwrap();
    let report = listed.iter().find(|t| t.name == "report").unwrap();
    assert_eq!(report.result_budget_bytes, 100);
    assert_eq!(
        report.fallback.as_ref().unwrap().kind,
        Some(pb::fallback::Kind::Tool("spare".into()))
    );
    let mut rpc = server.raw();
    let mut stream = server.client().await.completions("s", 0);
    // Declared dedup: the second identical call joins the first.
    let a = rpc.submit_tool(submit_req(0)).await.unwrap().into_inner();
    let b = rpc.submit_tool(submit_req(0)).await.unwrap().into_inner();
    assert!(!a.joined && b.joined && a.task_id == b.task_id);
    // Declared budget: 100 bytes.
    answer(&mut worker, &format!("\"{}\"", "y".repeat(500)), "").await;
    let c = take_completions(&mut stream, 1).await.remove(0);
    assert!(c.result_truncated && c.result_preview.len() <= 100);
    // The submit's budget and dedup win.
    let mut own = submit_req(1000);
    own.dedup = pb::DedupPolicy::Off as i32;
    let a = rpc.submit_tool(own.clone()).await.unwrap().into_inner();
    let b = rpc.submit_tool(own).await.unwrap().into_inner();
    assert!(!b.joined && a.task_id != b.task_id);
    answer(&mut worker, &format!("\"{}\"", "y".repeat(500)), "").await;
    answer(&mut worker, "1", "").await;
    for c in take_completions(&mut stream, 2).await {
        assert!(!c.result_truncated, "{c:?}");
    }
    // Register refuses a budget above the maximum, and a fallback to itself.
    for (tool, why) in [
        (
            pb::Tool {
                result_budget_bytes: 100_001,
                ..raw::tool("greedy", "")
            },
            "--max-result-budget-bytes",
        ),
        (
            pb::Tool {
                fallback: Some(pb::Fallback {
                    kind: Some(pb::fallback::Kind::Tool("loop".into())),
                }),
                ..raw::tool("loop", "")
            },
            "own tool",
        ),
    ] {
        let refused = match raw::connect_worker(&server.addr, None, vec![tool]).await {
            Err(status) => status,
            Ok(_) => panic!("registration accepted"),
        };
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(refused.message().contains(why), "{}", refused.message());
    }
}

#[tokio::test]
async fn an_acknowledged_result_over_its_budget_still_reads_back_whole() {
    let server = Server::start(&[]).await;
    let mut worker = raw::connect_worker(&server.addr, None, vec![raw::tool("report", "")])
        .await
        .unwrap();
    let client = server.client().await;
    let mut stream = client.completions("s", 0);
    let mut rpc = server.raw();
    let full = big_result(40 * 1024);

    let big = rpc.submit_tool(submit_req(0)).await.unwrap().into_inner();
    answer(&mut worker, &full, "").await;
    let small = rpc.submit_tool(submit_req(0)).await.unwrap().into_inner();
    answer(&mut worker, r#"{"ok":true}"#, "").await;
    let got = take_completions(&mut stream, 2).await;
    assert!(got[0].result_truncated && !got[1].result_truncated);
    assert_eq!(client.ack_completions("s", got[1].seq).await.unwrap(), 2);

    // The preview told the model to read it: it still can, until retention.
    let (text, _) = read_pages(&server, &big.task_id, 65536).await;
    assert_eq!(sha(&text), sha(&full));
    let kept = rpc
        .get_task(pb::GetTaskRequest {
            task_id: big.task_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kept.task_id, big.task_id);
    // A result delivered whole is gone with its acknowledgement.
    let e = rpc
        .read_result(pb::ReadResultRequest {
            task_id: small.task_id.clone(),
            offset: 0,
            max_bytes: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{}", e.message());
    // Neither comes back on a stream from the start, nor counts unacknowledged.
    rpc.submit_tool(submit_req(0)).await.unwrap();
    answer(&mut worker, "3", "").await;
    let mut replay = client.completions("s", 0);
    let next = take_completions(&mut replay, 1).await.remove(0);
    assert_eq!(next.seq, got[1].seq + 1, "{next:?}");
}
