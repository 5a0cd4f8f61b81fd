//! Operations: health, reflection, metrics, graceful shutdown.
use errand_client::pb;
use errand_tests::*;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

#[tokio::test]
async fn health_is_open_and_reflection_needs_a_token() {
    let tokens = Tokens::new();
    let agent = tokens.add(&["--role", "agent", "--tenant", "t"]).await;
    let server = Server::start(&strs(&tokens.flag())).await;
    let channel = errand_client::endpoint(&server.addr)
        .unwrap()
        .connect_lazy();
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "errand.v1.ToolService", "errand.v1.WorkerService"] {
        let answer = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.status(), ServingStatus::Serving, "{service:?}");
    }

    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let list = || {
        tokio_stream::iter([ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }])
    };
    let denied = ServerReflectionClient::new(channel.clone())
        .server_reflection_info(list())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::Unauthenticated);
    let mut reflection = ServerReflectionClient::with_interceptor(
        channel,
        errand_client::Credentials::new(Some(&agent)).unwrap(),
    );
    let mut answers = reflection
        .server_reflection_info(list())
        .await
        .unwrap()
        .into_inner();
    let answer = answers.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(services)) = answer.message_response else {
        panic!("not a service list: {answer:?}");
    };
    let names: Vec<_> = services.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"errand.v1.ToolService"), "{names:?}");
    assert!(names.contains(&"errand.v1.WorkerService"), "{names:?}");
}

/// What `grpcurl list` and `grpcurl describe` ask, in one reflection
/// version: every service is listed and each symbol's file describes it.
macro_rules! list_and_describe {
    ($version:ident, $channel:expr) => {{
        use prost::Message;
        use tonic_reflection::pb::$version::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let ask = |m: MessageRequest| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(m),
        };
        let mut requests = vec![ask(MessageRequest::ListServices(String::new()))];
        let symbols = [
            "grpc.health.v1.Health",
            "errand.v1.ToolService",
            "errand.v1.WorkerService",
        ];
        for symbol in symbols {
            requests.push(ask(MessageRequest::FileContainingSymbol(symbol.into())));
        }
        let mut answers = ServerReflectionClient::new($channel)
            .server_reflection_info(tokio_stream::iter(requests))
            .await
            .unwrap()
            .into_inner();
        let first = answers.next().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(listed)) = first.message_response else {
            panic!("not a service list: {first:?}");
        };
        let names: Vec<_> = listed.service.iter().map(|s| s.name.clone()).collect();
        for symbol in symbols {
            assert!(
                names.iter().any(|n| n == symbol),
                "{names:?} lacks {symbol}"
            );
            let answer = answers.next().await.unwrap().unwrap();
            let Some(MessageResponse::FileDescriptorResponse(files)) = answer.message_response
            else {
                panic!("{symbol}: not a descriptor: {answer:?}");
            };
            let (package, service) = symbol.rsplit_once('.').unwrap();
            let described = files.file_descriptor_proto.iter().any(|bytes| {
                let file = prost_types::FileDescriptorProto::decode(&bytes[..]).unwrap();
                file.package() == package && file.service.iter().any(|s| s.name() == service)
            });
            assert!(described, "{symbol}: no file describes it");
        }
        names
    }};
}

#[tokio::test]
async fn both_reflection_versions_list_and_describe_every_service_health_included() {
    let server = Server::start(&[]).await;
    let channel = errand_client::endpoint(&server.addr)
        .unwrap()
        .connect_lazy();
    let v1 = list_and_describe!(v1, channel.clone());
    assert!(
        v1.iter()
            .any(|n| n == "grpc.reflection.v1.ServerReflection"),
        "{v1:?}"
    );
    let v1alpha = list_and_describe!(v1alpha, channel);
    assert!(
        v1alpha
            .iter()
            .any(|n| n == "grpc.reflection.v1alpha.ServerReflection"),
        "{v1alpha:?}"
    );
}

#[tokio::test]
async fn metrics_count_tasks_latencies_and_workers() {
    if on_postgres() {
        // Queue depth is this server's live state; in shared mode the queue
        // lives in the database.
        eprintln!("skipped on PostgreSQL: queue gauges are per server");
        return;
    }
    let server = Server::start(&["--metrics-listen", "127.0.0.1:0"]).await;
    let url = server.metrics_url.clone().expect("the metrics line");
    let mut gate = server.gate_worker(&["search"], 1).await;
    let client = server.client().await;
    let mut stream = client.completions("s", 0);
    client.submit("s", "search", "{}").await.unwrap();
    client.submit("s", "search", "{}").await.unwrap();
    let job = gate.next().await;
    let text = http_get(&url).await;
    for line in [
        r#"errand_tasks_submitted_total{tenant="",tool="search"} 2"#,
        r#"errand_tasks_queued{tenant="",tool="search"} 1"#,
        r#"errand_tasks_running{tenant="",tool="search"} 1"#,
        "errand_workers_connected 1",
        "errand_completion_streams 1",
        "errand_dispatch_latency_seconds_count 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    job.succeed("1");
    take_completions(&mut stream, 1).await;
    let text = http_get(&url).await;
    for line in [
        r#"errand_tasks_finished_total{tenant="",tool="search",state="succeeded"} 1"#,
        "errand_delivery_latency_seconds_count 1",
        "errand_dispatch_latency_seconds_count 2",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
}

#[tokio::test]
async fn sigterm_drains_running_tasks_flushes_the_store_and_exits() {
    let data = tempfile::tempdir().unwrap();
    let args = vec![
        "--store".to_string(),
        "sqlite".to_string(),
        "--data-dir".to_string(),
        data.path().display().to_string(),
        "--shutdown-grace-secs".to_string(),
        "60".to_string(),
    ];
    let mut server = Server::start_on("127.0.0.1:0", args).await;
    let mut gate = server.gate_worker(&["search"], 1).await;
    let client = server.client().await;
    let mut raw_stream = server
        .raw()
        .completions(pb::CompletionsRequest {
            session_id: "s".into(),
            after_seq: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let running = client.submit("s", "search", "{}").await.unwrap();
    let queued = client.submit("s", "search", "{}").await.unwrap();
    let job = gate.next().await;

    let channel = errand_client::endpoint(&server.addr)
        .unwrap()
        .connect_lazy();
    let mut health = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = health.next().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);
    server.terminate();
    let next = within("NOT_SERVING", health.next()).await.unwrap().unwrap();
    assert_eq!(next.status(), ServingStatus::NotServing);
    // Draining: no new work is accepted...
    let refused = client.submit("s", "search", "{}").await.unwrap_err();
    assert_eq!(refused.code(), Some(Code::Unavailable), "{refused}");
    // ...the running task may still finish, and its completion is delivered.
    job.succeed(r#""done""#);
    let done = within("the drained completion", raw_stream.message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.task_id, running.task_id);
    let status = server.exited().await;
    assert!(status.success(), "{status:?}");
    assert!(gate.try_next().is_none(), "nothing new was dispatched");
    drop(gate); // it would reconnect to the restarted server

    // Restarted on the same data: the finished task is kept, the queued one
    // is still queued and runs now.
    server.restart().await;
    let client = server.client().await;
    let task = client.get_task(&running.task_id).await.unwrap();
    assert_eq!(status_of(task.status), pb::TaskStatus::Succeeded);
    let mut gate = server.gate_worker(&["search"], 1).await;
    let job = gate.next().await;
    assert_eq!(job.task.task_id, queued.task_id);
}

#[tokio::test]
async fn sighup_drains_and_stops_like_sigterm() {
    // SIGHUP's default action killed the server at once: no drain, running
    // tasks lost their result. It is handled as SIGTERM is.
    let mut server = Server::start(&["--shutdown-grace-secs", "60"]).await;
    let mut gate = server.gate_worker(&["search"], 1).await;
    let client = server.client().await;
    let mut completions = server
        .raw()
        .completions(pb::CompletionsRequest {
            session_id: "s".into(),
            after_seq: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let running = client.submit("s", "search", "{}").await.unwrap();
    let job = gate.next().await;
    // SAFETY: kill(2) with the pid of the server this test started.
    unsafe { libc::kill(server.pid(), libc::SIGHUP) };
    // Draining: the running task still finishes and is delivered...
    job.succeed(r#""done""#);
    let done = within("the drained completion", completions.message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.task_id, running.task_id);
    // ...then the server exits cleanly, not by the signal.
    let status = server.exited().await;
    assert!(status.success(), "{status:?}");
}
