//! Status codes as gRPC's status-code table defines them, where the server
//! answers before (or beside) errand's own errors: a message larger than the
//! configured limit is RESOURCE_EXHAUSTED on every path (tonic's default is
//! OUT_OF_RANGE), a worker that never registers is DEADLINE_EXCEEDED, an
//! unknown method UNIMPLEMENTED. The other codes have their tests beside
//! their cause: INVALID_ARGUMENT and NOT_FOUND in `validation`, quotas'
//! RESOURCE_EXHAUSTED in `limits`, FAILED_PRECONDITION in `dispatch`,
//! UNAUTHENTICATED and PERMISSION_DENIED in `security`, UNAVAILABLE in `ops`
//! and `multi_server`; every error's code is in `grpc::convert`'s unit test.
use errand_client::pb;
use errand_tests::*;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

/// Limits that add up under a 64 KiB message limit.
const SMALL: [&str; 10] = [
    "--max-message-bytes",
    "65536",
    "--max-arguments-bytes",
    "16384",
    "--max-result-bytes",
    "16384",
    "--max-schema-bytes",
    "16384",
    "--max-description-bytes",
    "4096",
];

fn worker_rpc(
    server: &Server,
) -> pb::worker_service_client::WorkerServiceClient<tonic::transport::Channel> {
    pb::worker_service_client::WorkerServiceClient::new(
        errand_client::endpoint(&server.addr)
            .unwrap()
            .connect_lazy(),
    )
    .max_encoding_message_size(usize::MAX)
}

fn register(tool: &str, description: String) -> pb::WorkerMessage {
    pb::WorkerMessage {
        kind: Some(pb::worker_message::Kind::Register(pb::Register {
            worker_name: "w".into(),
            tools: vec![pb::Tool {
                name: tool.into(),
                description,
                ..Default::default()
            }],
            max_concurrency: 1,
        })),
    }
}

fn assert_exhausted(what: &str, s: &tonic::Status) {
    assert_eq!(s.code(), Code::ResourceExhausted, "{what}: {s:?}");
    assert!(
        s.message().contains("the server's limit is 65536"),
        "{what}: {:?}",
        s.message()
    );
}

#[tokio::test]
async fn a_message_over_the_limit_is_resource_exhausted_on_every_path() {
    let server = Server::start(&SMALL).await;
    let huge = "x".repeat(200_000);
    let mut raw = server.raw().max_encoding_message_size(usize::MAX);
    // Unary.
    let s = raw
        .submit_tool(pb::SubmitToolRequest {
            session_id: "s".into(),
            tool: "t".into(),
            arguments_json: format!(r#"{{"blob":"{huge}"}}"#),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_exhausted("SubmitTool", &s);
    // Server streaming: the request is read before the stream starts.
    let s = raw
        .completions(pb::CompletionsRequest {
            session_id: huge.clone(),
            after_seq: 0,
        })
        .await
        .unwrap_err();
    assert_exhausted("Completions", &s);
    // A worker's first message.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(register("big", huge.clone())).await.unwrap();
    let s = worker_rpc(&server)
        .connect(ReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_exhausted("Register", &s);
    // A later message: the worker's stream ends saying why.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(register("t", String::new())).await.unwrap();
    let mut commands = worker_rpc(&server)
        .connect(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    within("Registered", commands.message()).await.unwrap();
    let task = server.client().await.submit("s", "t", "{}").await.unwrap();
    let assigned = within("the assignment", commands.message())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        assigned.kind,
        Some(pb::worker_command::Kind::Assignment(_))
    ));
    tx.send(pb::WorkerMessage {
        kind: Some(pb::worker_message::Kind::Result(pb::TaskResult {
            task_id: task.task_id,
            outcome: Some(pb::task_result::Outcome::ResultJson(format!(r#""{huge}""#))),
            attempt: 0,
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let s = within("the stream's end", commands.message())
        .await
        .unwrap_err();
    assert_exhausted("TaskResult", &s);
    // And the server goes on.
    server.client().await.list_tools().await.unwrap();
}

/// A progress report over the limit (from a worker that does not keep the
/// rule the SDKs keep) ends the worker's stream as a result does, and the
/// status names the limit the worker was told and what became of its task.
#[tokio::test]
async fn an_oversized_progress_report_ends_the_stream_saying_the_workers_limit() {
    let server = Server::start(&SMALL).await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(register("p", String::new())).await.unwrap();
    let mut commands = worker_rpc(&server)
        .connect(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    within("Registered", commands.message()).await.unwrap();
    let task = server.client().await.submit("s", "p", "{}").await.unwrap();
    within("the assignment", commands.message())
        .await
        .unwrap()
        .unwrap();
    tx.send(pb::WorkerMessage {
        kind: Some(pb::worker_message::Kind::Progress(pb::Progress {
            task_id: task.task_id,
            message: "m".repeat(200_000),
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let s = within("the stream's end", commands.message())
        .await
        .unwrap_err();
    assert_exhausted("Progress", &s);
    assert!(
        s.message().contains("Registered.max_message_bytes")
            && s.message().contains("another attempt"),
        "{}",
        s.message()
    );
}

#[tokio::test]
async fn a_worker_that_never_registers_gets_deadline_exceeded() {
    let server = Server::start(&["--register-timeout-ms", "200"]).await;
    let (_tx, rx) = tokio::sync::mpsc::channel::<pb::WorkerMessage>(1);
    let s = within(
        "the refusal",
        worker_rpc(&server).connect(ReceiverStream::new(rx)),
    )
    .await
    .unwrap_err();
    assert_eq!(s.code(), Code::DeadlineExceeded, "{s:?}");
    assert!(s.message().contains("Register"), "{}", s.message());
}

#[tokio::test]
async fn an_unknown_method_is_unimplemented() {
    let server = Server::start(&[]).await;
    let channel = errand_client::endpoint(&server.addr)
        .unwrap()
        .connect_lazy();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/errand.v1.ToolService/Nope");
    let s = grpc
        .unary::<_, pb::ListToolsResponse, _>(
            tonic::Request::new(pb::ListToolsRequest::default()),
            path,
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unimplemented, "{s:?}");
}

/// Metadata over `--max-header-list-bytes` is RESOURCE_EXHAUSTED with its
/// size and the limit, on a unary call and on a stream, not HTTP/2's 431
/// (which gRPC clients read as UNKNOWN); the connection goes on serving.
#[tokio::test]
async fn metadata_over_the_limit_is_resource_exhausted() {
    let server = Server::start(&["--max-header-list-bytes", "4096"]).await;
    let channel = errand_client::endpoint(&server.addr)
        .unwrap()
        .connect_lazy();
    let mut tools = pb::tool_service_client::ToolServiceClient::new(channel.clone());
    fn big<T>(msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.metadata_mut()
            .insert("x-note", "n".repeat(6000).parse().unwrap());
        req
    }
    let unary = tools
        .list_tools(big(pb::ListToolsRequest::default()))
        .await
        .unwrap_err();
    let stream = tools
        .completions(big(pb::CompletionsRequest {
            session_id: "s".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    for (what, s) in [("ListTools", unary), ("Completions", stream)] {
        assert_eq!(s.code(), Code::ResourceExhausted, "{what}: {s:?}");
        assert!(
            s.message()
                .contains("the server's limit is 4096 (--max-header-list-bytes)"),
            "{what}: {}",
            s.message()
        );
    }
    tools
        .list_tools(pb::ListToolsRequest::default())
        .await
        .expect("the same connection serves a call within the limit");
}

/// A tool list larger than one message no longer makes a response over the
/// limit (issue 16: ListTools is paged): every tool arrives, each page
/// within the limit. (The OUT_OF_RANGE -> RESOURCE_EXHAUSTED mapping of an
/// oversized response is covered by `grpc/status_codes.rs`'s unit tests.)
#[tokio::test]
async fn a_tool_list_larger_than_one_message_is_paged() {
    let server = Server::start(&SMALL).await;
    let mut workers = Vec::new();
    for w in 0..2 {
        let tools = (0..10)
            .map(|i| pb::Tool {
                name: format!("tool_{w}_{i}"),
                description: "d".repeat(4000),
                ..Default::default()
            })
            .collect();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(pb::WorkerMessage {
            kind: Some(pb::worker_message::Kind::Register(pb::Register {
                worker_name: format!("w{w}"),
                tools,
                max_concurrency: 1,
            })),
        })
        .await
        .unwrap();
        let mut commands = worker_rpc(&server)
            .connect(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        within("Registered", commands.message()).await.unwrap();
        workers.push((tx, commands));
    }
    let (mut names, mut token, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let page = server
            .raw()
            .max_decoding_message_size(65536)
            .list_tools(pb::ListToolsRequest {
                page_token: token,
                ..Default::default()
            })
            .await
            .expect("each page fits in one message")
            .into_inner();
        pages += 1;
        names.extend(page.tools.into_iter().map(|t| t.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(names.len(), 20, "{names:?}");
    assert!(pages > 1, "20 tools of 4 KB take more than one 64 KiB page");
}
