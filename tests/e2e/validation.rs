//! Bad input gets a precise status and a message that says what to fix, and
//! never disturbs anyone else.
use errand_client::pb;
use errand_tests::*;
use tonic::Code;

const SCHEMA: &str = r#"{"type":"object","properties":{"query":{"type":"string"},"limit":{"type":"integer","minimum":1}},"required":["query"],"additionalProperties":false}"#;

fn submit(session: &str, tool: &str, args: &str) -> pb::SubmitToolRequest {
    pb::SubmitToolRequest {
        session_id: session.into(),
        tool: tool.into(),
        arguments_json: args.into(),
        ..Default::default()
    }
}

async fn status(server: &Server, req: pb::SubmitToolRequest) -> tonic::Status {
    server
        .raw()
        .submit_tool(req)
        .await
        .expect_err("the submit should fail")
}

#[tokio::test]
async fn submit_rejects_bad_sessions_tools_and_arguments() {
    let server = Server::start(&["--max-arguments-bytes", "1024"]).await;
    let _worker = server
        .exec_worker(
            "search",
            "cat",
            &["--schema", SCHEMA, "--description", "Search."],
        )
        .await;
    let mut cases: Vec<(pb::SubmitToolRequest, Code, &str)> = vec![
        (
            submit("", "search", r#"{"query":"x"}"#),
            Code::InvalidArgument,
            "session_id is required",
        ),
        (
            submit(&"s".repeat(129), "search", "{}"),
            Code::InvalidArgument,
            "limit is 128",
        ),
        (
            submit("s", "nope", "{}"),
            Code::NotFound,
            "known tools: search",
        ),
        (
            submit("s", "search", "{not json"),
            Code::InvalidArgument,
            "not valid JSON",
        ),
        (
            submit("s", "search", r#"["query"]"#),
            Code::InvalidArgument,
            "must be a JSON object, got an array",
        ),
        (
            submit("s", "search", "42"),
            Code::InvalidArgument,
            "got a number",
        ),
        (
            submit("s", "search", r#"{"limit":3}"#),
            Code::InvalidArgument,
            "query",
        ),
        (
            submit("s", "search", r#"{"query":"x","limit":"3"}"#),
            Code::InvalidArgument,
            "/limit",
        ),
        (
            submit("s", "search", r#"{"query":"x","limit":0}"#),
            Code::InvalidArgument,
            "/limit",
        ),
        (
            submit("s", "search", r#"{"query":"x","extra":1}"#),
            Code::InvalidArgument,
            "extra",
        ),
        (
            submit(
                "s",
                "search",
                &format!(r#"{{"query":"{}"}}"#, "x".repeat(2000)),
            ),
            Code::ResourceExhausted,
            "the limit is 1024",
        ),
    ];
    let mut forever = submit("s", "search", r#"{"query":"x"}"#);
    forever.timeout_ms = u64::MAX;
    cases.push((forever, Code::InvalidArgument, "timeout_ms is"));
    for (req, code, needle) in cases {
        let what = format!("{}:{:.40}", req.tool, req.arguments_json);
        let s = status(&server, req).await;
        assert_eq!(s.code(), code, "{what}: {}", s.message());
        assert!(
            s.message().contains(needle),
            "{what}: {:?} lacks {needle:?}",
            s.message()
        );
    }
    // The same server still serves good input.
    let ok = server
        .client()
        .await
        .submit("s", "search", r#"{"query":"x","limit":2}"#)
        .await;
    assert!(ok.is_ok(), "{ok:?}");
}

#[tokio::test]
async fn too_many_pending_tasks_in_a_session_is_resource_exhausted() {
    let server = Server::start(&["--max-pending-per-session", "2"]).await;
    let mut worker = server.gate_worker(&["t"], 1).await;
    let client = server.client().await;
    client.submit("busy", "t", "{}").await.unwrap();
    client.submit("busy", "t", "{}").await.unwrap();
    let err = client.submit("busy", "t", "{}").await.unwrap_err();
    assert_eq!(err.code(), Some(Code::ResourceExhausted));
    assert!(err.to_string().contains("limit is 2"), "{err}");
    // Other sessions are not affected, and finishing one frees a slot.
    client.submit("calm", "t", "{}").await.unwrap();
    worker.next().await.succeed("0");
    let mut stream = client.completions("busy", 0);
    take_completions(&mut stream, 1).await;
    client.submit("busy", "t", "{}").await.unwrap();
}

#[tokio::test]
async fn unknown_and_malformed_task_ids() {
    let server = Server::start(&[]).await;
    let client = server.client().await;
    let unknown = "2f0a6a7e-8f8e-4d8b-9a8e-0c6b8a7d6e5f";
    assert_eq!(code(client.get_task(unknown).await), Code::NotFound);
    assert_eq!(code(client.cancel(unknown).await), Code::NotFound);
    assert_eq!(code(client.get_task("").await), Code::InvalidArgument);
    let err = client.get_task("task-1").await.unwrap_err();
    assert_eq!(err.code(), Some(Code::InvalidArgument));
    assert!(err.to_string().contains("not a UUID"));
    let mut raw = server.raw();
    let stream = raw
        .completions(pb::CompletionsRequest {
            session_id: String::new(),
            after_seq: 0,
        })
        .await;
    assert_eq!(stream.unwrap_err().code(), Code::InvalidArgument);
}

#[tokio::test]
async fn invalid_worker_registrations_are_refused() {
    let server = Server::start(&[]).await;
    let cases = [
        (vec![], "at least one tool"),
        (vec![tool("bad name", "")], "invalid"),
        (vec![tool("t", "[1]")], "JSON Schema object"),
        (
            vec![tool("t", r#"{"type":"wat"}"#)],
            "not a valid JSON Schema",
        ),
        (vec![tool("t", ""), tool("t", "")], "twice"),
    ];
    for (tools, needle) in cases {
        let status = register(
            &server,
            pb::Register {
                worker_name: "w".into(),
                tools,
                max_concurrency: 1,
            },
        )
        .await
        .expect_err("registration should fail");
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert!(
            status.message().contains(needle),
            "{:?} lacks {needle:?}",
            status.message()
        );
    }
    // A first message that is not Register.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(pb::WorkerMessage {
        kind: Some(pb::worker_message::Kind::Heartbeat(pb::Heartbeat {})),
    })
    .await
    .unwrap();
    let status = worker_rpc(&server)
        .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("must be Register"));
    assert!(server.client().await.list_tools().await.unwrap().is_empty());
}

fn tool(name: &str, schema: &str) -> pb::Tool {
    pb::Tool {
        name: name.into(),
        input_schema_json: schema.into(),
        ..Default::default()
    }
}

fn worker_rpc(
    server: &Server,
) -> pb::worker_service_client::WorkerServiceClient<tonic::transport::Channel> {
    pb::worker_service_client::WorkerServiceClient::new(
        errand_client::endpoint(&server.addr)
            .unwrap()
            .connect_lazy(),
    )
}

async fn register(server: &Server, register: pb::Register) -> Result<(), tonic::Status> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(pb::WorkerMessage {
        kind: Some(pb::worker_message::Kind::Register(register)),
    })
    .await
    .unwrap();
    let mut stream = worker_rpc(server)
        .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    stream.message().await?;
    Ok(())
}

/// One rule for every JSON text: what a submit may not carry, a worker may
/// not return either. A result with a lone surrogate or nested deeper than
/// 128 levels ends FAILED with `invalid_result`, saying why; the limit
/// itself (128 levels) passes both ways.
#[tokio::test]
async fn results_follow_the_rule_arguments_follow() {
    let server = Server::start(&[]).await;
    let mut worker = server.gate_worker(&["echo"], 4).await;
    let client = server.client().await;
    let nest = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
    let lone = r#"{"s":"\ud800"}"#;
    let deep = format!(r#"{{"a":{}}}"#, nest(128));
    // Arguments: refused at submit, with the reason.
    for (args, why) in [(lone, "lone UTF-16 surrogate"), (&deep, "deeper than 128")] {
        let s = status(&server, submit("s", "echo", args)).await;
        assert_eq!(s.code(), Code::InvalidArgument, "{}", s.message());
        assert!(s.message().contains(why), "{:?} lacks {why:?}", s.message());
    }
    let at_limit = format!(r#"{{"a":{}}}"#, nest(127));
    client.submit("s", "echo", &at_limit).await.unwrap();
    worker.next().await.succeed(&nest(128));
    // Results: the same texts end the task FAILED, saying why.
    let cases = [
        (lone.to_string(), "lone UTF-16 surrogate"),
        (nest(129), "deeper than 128"),
        (nest(100_000), "deeper than 128"),
    ];
    for (result, _) in &cases {
        client.submit("s", "echo", "{}").await.unwrap();
        worker.next().await.succeed(result);
    }
    let mut stream = client.completions("s", 0);
    let got = take_completions(&mut stream, 1 + cases.len()).await;
    assert_eq!(status_of(got[0].status), pb::TaskStatus::Succeeded);
    assert_eq!(
        got[0].outcome,
        Some(pb::completion::Outcome::ResultJson(nest(128)))
    );
    for (c, (_, why)) in got[1..].iter().zip(&cases) {
        assert_eq!(status_of(c.status), pb::TaskStatus::Failed);
        let Some(pb::completion::Outcome::Error(e)) = &c.outcome else {
            panic!("{c:?}")
        };
        assert_eq!(e.code, "invalid_result");
        assert!(e.message.contains(why), "{:?} lacks {why:?}", e.message);
    }
    // A schema by the same rule: too deep is refused at registration.
    let deep_schema = format!(
        r#"{{"type":"object","properties":{{"a":{{"enum":[{}]}}}}}}"#,
        nest(130)
    );
    let s = register(
        &server,
        pb::Register {
            worker_name: "w".into(),
            tools: vec![tool("deep", &deep_schema)],
            max_concurrency: 1,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument, "{}", s.message());
    assert!(s.message().contains("deeper than 128"), "{}", s.message());
}

/// Every status message is bounded, whatever the input: quotes keep ~100
/// bytes and say the length, lists keep 20 names and say how many more. An
/// unbounded message travels in an HTTP/2 header that clients cap at 8-16
/// KiB, and they then see RESOURCE_EXHAUSTED or an h2 INTERNAL error
/// instead of the real code.
#[tokio::test]
async fn oversized_inputs_get_their_precise_code_and_a_bounded_message() {
    let server = Server::start(&[]).await;
    let names: Vec<String> = (0..400).map(|i| format!("tool_{i:03}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let _a = server.gate_worker(&names[..200], 1).await;
    let _b = server.gate_worker(&names[200..], 1).await;
    let picky = r#"{"type":"object","additionalProperties":false}"#;
    let _picky = server
        .exec_worker("picky", "cat", &["--schema", picky])
        .await;
    let long = "x".repeat(20_000);
    let bounded = |what: &str, s: &tonic::Status, code: Code, needle: &str| {
        assert_eq!(s.code(), code, "{what}: {}", s.message());
        assert!(
            s.message().len() <= 1024,
            "{what}: {} bytes",
            s.message().len()
        );
        assert!(
            s.message().contains(needle),
            "{what}: {:?} lacks {needle:?}",
            s.message()
        );
    };
    let s = status(&server, submit("s", "nope", "{}")).await;
    bounded("unknown tool", &s, Code::NotFound, "tool_018 and 381 more");
    let s = status(&server, submit("s", &long, "{}")).await;
    bounded("long tool", &s, Code::InvalidArgument, "(20000 bytes)");
    let s = status(&server, submit(&long, "tool_000", "{}")).await;
    bounded("long session", &s, Code::InvalidArgument, "20000 bytes");
    let mut keyed = submit("s", "tool_000", "{}");
    keyed.idempotency_key = long.clone();
    let s = status(&server, keyed).await;
    bounded("long key", &s, Code::InvalidArgument, "20000 bytes");
    let args = format!(r#"{{"{long}":1}}"#);
    let s = status(&server, submit("s", "picky", &args)).await;
    bounded("long property", &s, Code::InvalidArgument, "input schema");
    let mut raw = server.raw();
    let s = raw
        .get_task(pb::GetTaskRequest {
            task_id: long.clone(),
        })
        .await
        .unwrap_err();
    bounded("long task id", &s, Code::InvalidArgument, "(20000 bytes)");
    let s = raw
        .cancel_task(pb::CancelTaskRequest {
            task_id: long.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    bounded("cancel long id", &s, Code::InvalidArgument, "(20000 bytes)");
    let s = raw
        .completions(pb::CompletionsRequest {
            session_id: long.clone(),
            after_seq: 0,
        })
        .await
        .unwrap_err();
    bounded(
        "stream long session",
        &s,
        Code::InvalidArgument,
        "20000 bytes",
    );
    let s = raw
        .ack_completions(pb::AckCompletionsRequest {
            session_id: long.clone(),
            up_to_seq: 1,
        })
        .await
        .unwrap_err();
    bounded("ack long session", &s, Code::InvalidArgument, "20000 bytes");
    let s = register(
        &server,
        pb::Register {
            worker_name: "w".into(),
            tools: vec![tool(&long, "")],
            max_concurrency: 1,
        },
    )
    .await
    .unwrap_err();
    bounded(
        "register long tool",
        &s,
        Code::InvalidArgument,
        "(20000 bytes)",
    );
    // The CLI reads the same codes: NOT_FOUND, not an h2 protocol error.
    let out = server.cli(&["submit", "nope"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("unknown tool") && !stderr.contains("h2 protocol error"),
        "{stderr}"
    );
}

/// Issue 15.5: one rule for NUL, whatever the store: refused in
/// identifiers, escaped in free text; a worker's error message with a NUL
/// still ends its task (it used to stay RUNNING on PostgreSQL).
#[tokio::test]
async fn nul_is_refused_in_identifiers_and_escaped_in_free_text_on_every_store() {
    let server = Server::start(&[]).await;
    let mut gate = server.gate_worker(&["search"], 1).await;
    for (req, field) in [
        (submit("a\0b", "search", "{}"), "session_id"),
        (
            pb::SubmitToolRequest {
                idempotency_key: "k\0".into(),
                ..submit("s", "search", "{}")
            },
            "idempotency_key",
        ),
        (submit("s", "sea\0rch", "{}"), "tool"),
    ] {
        let s = status(&server, req).await;
        assert_eq!(s.code(), Code::InvalidArgument, "{field}: {s:?}");
        assert!(
            s.message().contains(field) && s.message().contains("NUL"),
            "{s:?}"
        );
    }
    let err = server
        .raw()
        .ack_completions(pb::AckCompletionsRequest {
            session_id: "\0".into(),
            up_to_seq: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let client = server.client().await;
    let mut stream = client.completions("s", 0);
    let id = client.submit("s", "search", "{}").await.unwrap().task_id;
    gate.next().await.fail("bad\0code", "a NUL \0 here");
    let c = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!(
        (c.task_id.as_str(), status_of(c.status)),
        (id.as_str(), pb::TaskStatus::Failed)
    );
    let Some(pb::completion::Outcome::Error(e)) = c.outcome else {
        panic!("an error outcome");
    };
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("bad\\u0000code", "a NUL \\u0000 here")
    );
}

/// A key twice in one object is refused everywhere, naming the key: a
/// last-key-wins schema check and a first-key-wins worker would otherwise
/// read different values from the same arguments.
#[tokio::test]
async fn duplicate_keys_are_refused_in_arguments_results_and_schemas() {
    let server = Server::start(&[]).await;
    let mut worker = server.gate_worker(&["echo"], 4).await;
    let client = server.client().await;
    let dup = r#"{"a":1,"nested":{"b":2,"b":3}}"#;
    let s = status(&server, submit("s", "echo", dup)).await;
    assert_eq!(s.code(), Code::InvalidArgument, "{}", s.message());
    assert!(
        s.message().contains(r#"duplicate key "b""#),
        "{}",
        s.message()
    );

    client.submit("s", "echo", "{}").await.unwrap();
    worker.next().await.succeed(dup);
    let mut stream = client.completions("s", 0);
    let got = take_completions(&mut stream, 1).await;
    assert_eq!(status_of(got[0].status), pb::TaskStatus::Failed);
    let Some(pb::completion::Outcome::Error(e)) = &got[0].outcome else {
        panic!("{:?}", got[0])
    };
    assert_eq!(e.code, "invalid_result");
    assert!(e.message.contains(r#"duplicate key "b""#), "{}", e.message);

    let s = register(
        &server,
        pb::Register {
            worker_name: "w".into(),
            tools: vec![tool("twice", r#"{"type":"object","type":"array"}"#)],
            max_concurrency: 1,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument, "{}", s.message());
    assert!(
        s.message().contains(r#"duplicate key "type""#),
        "{}",
        s.message()
    );
}

/// A Register over the message limit (each tool within its own limits, too
/// many of them) says what to do about a Register: it said "pass large data
/// by reference (a URL or a path)".
#[tokio::test]
async fn a_register_over_the_message_limit_says_to_serve_fewer_tools() {
    let server = Server::start(&[
        "--max-message-bytes",
        "200000",
        "--max-result-bytes",
        "50000",
        "--max-arguments-bytes",
        "50000",
    ])
    .await;
    let padding = "x".repeat(60_000);
    let schema = format!(r#"{{"type":"object","description":"{padding}"}}"#);
    let tools = (0..4).map(|i| tool(&format!("t{i}"), &schema)).collect();
    let status = register(
        &server,
        pb::Register {
            worker_name: "w".into(),
            tools,
            max_concurrency: 1,
        },
    )
    .await
    .expect_err("over the message limit");
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "{}",
        status.message()
    );
    for needle in ["Register", "200000", "fewer tools"] {
        assert!(
            status.message().contains(needle),
            "{needle}: {}",
            status.message()
        );
    }
}
