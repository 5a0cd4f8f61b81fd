//! Attacks and misuse: each shows the server stays up, answers others
//! normally, and loses nothing.
use std::{collections::HashMap, time::Duration};

use bytes_codec::RawCodec;
use errand_client::pb;
use errand_tests::*;
use tokio_stream::StreamExt;
use tonic::Code;

/// A codec that sends bytes as they are: garbage the generated clients
/// would never produce.
mod bytes_codec {
    use tonic::{
        Status,
        codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    };

    #[derive(Default)]
    pub struct RawCodec;

    pub struct Raw;

    impl Encoder for Raw {
        type Item = Vec<u8>;
        type Error = Status;
        fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
            use bytes::BufMut;
            dst.put_slice(&item);
            Ok(())
        }
    }

    impl Decoder for Raw {
        type Item = Vec<u8>;
        type Error = Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
            use bytes::Buf;
            let mut out = vec![0; src.remaining()];
            src.copy_to_slice(&mut out);
            Ok(Some(out))
        }
    }

    impl Codec for RawCodec {
        type Encode = Vec<u8>;
        type Decode = Vec<u8>;
        type Encoder = Raw;
        type Decoder = Raw;
        fn encoder(&mut self) -> Raw {
            Raw
        }
        fn decoder(&mut self) -> Raw {
            Raw
        }
    }
}

const PATHS: [&str; 7] = [
    "/errand.v1.ToolService/ListTools",
    "/errand.v1.ToolService/SubmitTool",
    "/errand.v1.ToolService/Completions",
    "/errand.v1.ToolService/GetTask",
    "/errand.v1.ToolService/CancelTask",
    "/errand.v1.ToolService/AckCompletions",
    "/errand.v1.WorkerService/Connect",
];

/// Sends `body` to `path` as one request message; the status (OK if the
/// server answered with headers and no error).
async fn send_raw(addr: &str, path: &'static str, body: Vec<u8>) -> Code {
    send_raw_messages(addr, path, vec![body]).await.code()
}

/// Sends `bodies` to `path` as request messages, then reads the answers
/// until the call ends or stays quiet for 500 ms (OK then).
async fn send_raw_messages(addr: &str, path: &'static str, bodies: Vec<Vec<u8>>) -> tonic::Status {
    let channel = errand_client::endpoint(addr).unwrap().connect_lazy();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    let stream = tokio_stream::iter(bodies);
    match tokio::time::timeout(
        Duration::from_secs(5),
        grpc.streaming(tonic::Request::new(stream), path, RawCodec),
    )
    .await
    {
        Err(_) => tonic::Status::deadline_exceeded("no answer in 5 s"),
        Ok(Err(status)) => status,
        Ok(Ok(response)) => {
            let mut inner = response.into_inner();
            loop {
                match tokio::time::timeout(Duration::from_millis(500), inner.message()).await {
                    Ok(Err(status)) => return status,
                    Ok(Ok(Some(_))) => continue,
                    Ok(Ok(None)) | Err(_) => return tonic::Status::ok(""),
                }
            }
        }
    }
}

#[tokio::test]
async fn malformed_empty_huge_and_wrong_typed_input_on_every_rpc() {
    let server = Server::start(&[
        "--max-message-bytes",
        "1048576",
        "--max-result-bytes",
        "524288",
    ])
    .await;
    let mut gate = server.gate_worker(&["search"], 4).await;
    let client = server.client().await;
    let mut stream = client.completions("victim", 0);
    let before = client.submit("victim", "search", "{}").await.unwrap();

    // Wrong-typed: a SubmitToolRequest's fields sent where other messages
    // are expected decode as nonsense; a Completion as a SubmitToolRequest
    // mismatches wire types. Garbage is not protobuf at all.
    use prost::Message;
    let completion = pb::Completion {
        seq: 7,
        task_id: "x".into(),
        status: 3,
        elapsed_ms: 9,
        ..Default::default()
    }
    .encode_to_vec();
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("garbage", vec![0xff; 64]),
        ("truncated varint", vec![0x08, 0xff, 0xff]),
        ("wrong wire types", vec![0x0a, 0x05, 0x01, 0x12, 0x00]),
        ("a Completion", completion),
        ("huge", vec![0x0a; 2 * 1024 * 1024]),
        ("invalid utf-8", vec![0x0a, 0x02, 0xc3, 0x28]),
    ];
    // Not protobuf at all: the client's error, never INTERNAL.
    let undecodable = ["garbage", "truncated varint", "wrong wire types"];
    for path in PATHS {
        for (what, body) in &bodies {
            let code = send_raw(&server.addr, path, body.clone()).await;
            assert_ne!(code, Code::Unknown, "{path} with {what}: a panic?");
            assert_ne!(
                code,
                Code::Unavailable,
                "{path} with {what}: the server fell over"
            );
            assert_ne!(
                code,
                Code::Internal,
                "{path} with {what}: the client's fault"
            );
            if undecodable.contains(what) {
                assert_eq!(code, Code::InvalidArgument, "{path} with {what}");
            }
        }
    }
    let not_utf8 = send_raw(
        &server.addr,
        "/errand.v1.ToolService/SubmitTool",
        vec![0x0a, 0x02, 0xc3, 0x28],
    )
    .await;
    assert_eq!(not_utf8, Code::InvalidArgument);
    // Empty messages through the generated client: precise statuses.
    let mut raw = server.raw();
    let empty_submit = raw
        .submit_tool(pb::SubmitToolRequest::default())
        .await
        .unwrap_err();
    assert_eq!(empty_submit.code(), Code::InvalidArgument);
    let empty_get = raw
        .get_task(pb::GetTaskRequest::default())
        .await
        .unwrap_err();
    assert_eq!(empty_get.code(), Code::InvalidArgument);
    let empty_cancel = raw
        .cancel_task(pb::CancelTaskRequest::default())
        .await
        .unwrap_err();
    assert_eq!(empty_cancel.code(), Code::InvalidArgument);
    let empty_stream = raw
        .completions(pb::CompletionsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(empty_stream.code(), Code::InvalidArgument);
    let sep = raw
        .submit_tool(pb::SubmitToolRequest {
            session_id: "a\u{1f}b".into(),
            tool: "search".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(sep.code(), Code::InvalidArgument);

    // The victim's task is intact, and the server still works for it.
    let job = gate.next().await;
    assert_eq!(job.task.task_id, before.task_id);
    job.succeed("1");
    let after = client.submit("victim", "search", "{}").await.unwrap();
    gate.next().await.succeed("2");
    let got = take_completions(&mut stream, 2).await;
    assert_eq!(seqs(&got), vec![1, 2]);
    assert_eq!(got[1].task_id, after.task_id);
}

#[tokio::test]
async fn a_worker_message_that_is_not_protobuf_ends_its_stream_with_invalid_argument() {
    use prost::Message;
    let server = Server::start(&[]).await;
    let register = pb::WorkerMessage {
        kind: Some(pb::worker_message::Kind::Register(pb::Register {
            tools: vec![raw::tool("search", "{}")],
            max_concurrency: 1,
            ..Default::default()
        })),
    }
    .encode_to_vec();
    // A result whose JSON is not UTF-8: field 2 (result) holding field 2
    // (result_json) = 0xff.
    let result = [0x12, 0x03, 0x12, 0x01, 0xff].to_vec();
    for (what, bad) in [("garbage", vec![0xff; 11]), ("a non-UTF-8 result", result)] {
        let status = send_raw_messages(
            &server.addr,
            "/errand.v1.WorkerService/Connect",
            vec![register.clone(), bad],
        )
        .await;
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(
            status.message().contains("not valid protobuf"),
            "{what}: {}",
            status.message()
        );
    }
}

#[tokio::test]
async fn a_worker_flooding_results_for_tasks_it_does_not_hold_changes_nothing() {
    let server = Server::start(&[]).await;
    let mut honest = server.gate_worker(&["search"], 1).await;
    let client = server.client().await;
    let mut stream = client.completions("s", 0);
    let task = client.submit("s", "search", "{}").await.unwrap();
    let job = honest.next().await;

    // The flooder registers the same tool and sends 20,000 results: for
    // random IDs, for the honest worker's task, and malformed ones.
    let channel = errand_client::endpoint(&server.addr)
        .unwrap()
        .connect_lazy();
    let mut rpc = pb::worker_service_client::WorkerServiceClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    tx.send(pb::WorkerMessage {
        kind: Some(pb::worker_message::Kind::Register(pb::Register {
            worker_name: "flood".into(),
            tools: vec![pb::Tool {
                name: "search".into(),
                // The honest worker's definition (a different one is refused).
                description: "test tool search".into(),
                ..Default::default()
            }],
            max_concurrency: 1,
        })),
    })
    .await
    .unwrap();
    let mut commands = rpc
        .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    within("the flooder's registration", commands.message())
        .await
        .unwrap()
        .unwrap();
    let result = |id: String| pb::WorkerMessage {
        kind: Some(pb::worker_message::Kind::Result(pb::TaskResult {
            task_id: id,
            outcome: Some(pb::task_result::Outcome::ResultJson(r#""forged""#.into())),
            attempt: 0,
            ..Default::default()
        })),
    };
    for i in 0..20_000u32 {
        let id = match i % 3 {
            0 => task.task_id.clone(),
            1 => format!("00000000-0000-4000-8000-{i:012}"),
            _ => "not-a-uuid".to_string(),
        };
        tx.send(result(id)).await.unwrap();
    }
    // A heartbeat after the flood, answered by nothing, proves the server
    // read it all: the next submit goes to the flooder (the honest worker is
    // full), so its stream is still open.
    let second = client.submit("s", "search", "{}").await.unwrap();
    let assigned = within("an assignment to the flooder", commands.message())
        .await
        .unwrap()
        .unwrap();
    let Some(pb::worker_command::Kind::Assignment(a)) = assigned.kind else {
        panic!("expected an assignment, got {assigned:?}");
    };
    assert_eq!(a.task_id, second.task_id);
    assert_eq!(
        status_of(client.get_task(&task.task_id).await.unwrap().status),
        pb::TaskStatus::Running,
        "forged results did not finish the honest worker's task"
    );
    job.succeed(r#""real""#);
    tx.send(result(second.task_id.clone())).await.unwrap();
    let got = take_completions(&mut stream, 2).await;
    let by_id: HashMap<_, _> = got.iter().map(|c| (c.task_id.clone(), c)).collect();
    assert_eq!(
        by_id[&task.task_id].outcome,
        Some(pb::completion::Outcome::ResultJson(r#""real""#.into()))
    );
    assert!(by_id.contains_key(&second.task_id));
    let more = tokio::time::timeout(Duration::from_millis(300), stream.next()).await;
    assert!(more.is_err(), "a task completed twice: {more:?}");
}

#[tokio::test]
async fn a_thousand_agents_with_open_streams() {
    const AGENTS: usize = 1000;
    let server = Server::start(&[]).await;
    let gate = server.gate_worker(&["search"], 64).await;
    let _worker = gate.auto_succeed(r#""ok""#.into());
    // 20 connections of 50 streams, as many processes would open.
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(server.client().await);
    }
    let mut streams = Vec::with_capacity(AGENTS);
    for i in 0..AGENTS {
        streams.push(clients[i % 20].completions(&format!("agent-{i}"), 0));
    }
    let mut ids = Vec::with_capacity(AGENTS);
    for i in 0..AGENTS {
        let ack = clients[i % 20]
            .submit(&format!("agent-{i}"), "search", "{}")
            .await
            .unwrap();
        ids.push(ack.task_id);
    }
    for (i, stream) in streams.iter_mut().enumerate() {
        let got = take_completions(stream, 1).await;
        assert_eq!(got[0].task_id, ids[i], "agent {i} got someone else's");
        assert_eq!(got[0].session_id, format!("agent-{i}"));
    }
    // Someone new is served as usual while all 1,000 streams stay open.
    let newcomer = server.client().await;
    let mut s = newcomer.completions("new", 0);
    newcomer.submit("new", "search", "{}").await.unwrap();
    take_completions(&mut s, 1).await;
}

#[tokio::test]
async fn streams_that_are_never_read_cost_bounded_memory_and_lose_nothing() {
    const SESSIONS: usize = 2;
    const STREAMS_PER_SESSION: usize = 50;
    const TASKS: usize = 3000;
    let server = Server::start(&[]).await;
    let gate = server.gate_worker(&["search"], 64).await;
    // ~4 KiB per result: unbounded buffering would cost
    // 100 streams x 1,500 completions x 4 KiB = 600 MiB.
    let _worker = gate.auto_succeed(format!(r#""{}""#, "r".repeat(4096)));
    let client = server.client().await;
    let baseline = server.rss_kib();

    // Open streams on their own connections and never read them.
    let mut idle = Vec::new();
    for s in 0..SESSIONS {
        let mut raw = server.raw();
        for _ in 0..STREAMS_PER_SESSION {
            let stream = raw
                .completions(pb::CompletionsRequest {
                    session_id: format!("slow-{s}"),
                    after_seq: 0,
                })
                .await
                .unwrap()
                .into_inner();
            idle.push(stream);
        }
    }
    for i in 0..TASKS {
        client
            .submit(&format!("slow-{}", i % SESSIONS), "search", "{}")
            .await
            .unwrap();
    }
    // A reader on each session receives everything, in order, none twice.
    for s in 0..SESSIONS {
        let mut reader = client.completions(&format!("slow-{s}"), 0);
        let got = take_completions(&mut reader, TASKS / SESSIONS).await;
        let expected: Vec<u64> = (1..=(TASKS / SESSIONS) as u64).collect();
        assert_eq!(seqs(&got), expected, "session slow-{s}");
    }
    let grown_mib = server.rss_kib().saturating_sub(baseline) / 1024;
    eprintln!(
        "RSS grew {grown_mib} MiB with {} unread streams over {TASKS} completions of 4 KiB",
        idle.len()
    );
    assert!(grown_mib < 200, "RSS grew {grown_mib} MiB");
    // The unread streams resume by after_seq with nothing lost: read one now
    // from its start, then reconnect after seq 10.
    let mut first = idle.swap_remove(0);
    for want in 1..=10u64 {
        let c = within("a buffered completion", first.message())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.seq, want);
    }
    drop(first);
    let mut resumed = client.completions("slow-0", 10);
    let rest = take_completions(&mut resumed, TASKS / SESSIONS - 10).await;
    assert_eq!(rest.first().map(|c| c.seq), Some(11));
    assert_eq!(rest.last().map(|c| c.seq), Some((TASKS / SESSIONS) as u64));
}
