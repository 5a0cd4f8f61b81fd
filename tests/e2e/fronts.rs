//! The MCP and A2A front ends through the real binary: who may call them
//! (the gRPC port's rule: agent and admin tokens, each within its tenant).
use errand_client::pb;
use errand_tests::{
    fronts::{Mcp, a2a_call_as},
    *,
};
use serde_json::json;

#[tokio::test]
async fn admin_tokens_act_as_agents_of_their_tenant_on_mcp_and_a2a() {
    let tokens = Tokens::new();
    let admin = tokens.add(&["--role", "admin", "--tenant", "a"]).await;
    let worker_a = tokens.add(&["--role", "worker", "--tenant", "a"]).await;
    let agent_b = tokens.add(&["--role", "agent", "--tenant", "b"]).await;
    let viewer = tokens.add(&["--role", "viewer", "--tenant", "a"]).await;
    let mut flags = tokens.flag().to_vec();
    flags.extend(["--mcp-listen", "127.0.0.1:0", "--a2a-listen", "127.0.0.1:0"].map(String::from));
    let server = Server::start(&strs(&flags)).await;
    let a2a = server.a2a_url.clone().expect("the A2A address");
    let mcp_as = |token: &str| Mcp {
        url: server.mcp_url.clone().expect("the MCP address"),
        token: Some(token.to_string()),
        session: "m".into(),
    };
    let mut wa = server.gate_worker_as(&worker_a, &["echo"], 4).await;

    // MCP: the admin lists its tenant's tools and calls one as a task.
    let mcp = mcp_as(&admin);
    let listed = mcp.call("tools/list", json!({})).await.result();
    let names: Vec<_> = listed["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("echo")], "{listed}");
    let created = mcp.call_tool("echo", json!({"n": 1})).await;
    let id = created["taskId"].as_str().expect("a task ID").to_string();
    let job = wa.next().await;
    assert_eq!(job.task.task_id, id, "tenant a's worker runs it");
    let mut done = server.client_as(&admin).await.completions("m", 0);
    job.succeed(r#"{"ok":true}"#);
    take_completions(&mut done, 1).await;
    let got = mcp.get_task(&id).await;
    assert_eq!(got["status"], "completed", "{got}");

    // A2A: the same token reads the task and lists its context.
    let answer = a2a_call_as(&a2a, Some(&admin), "GetTask", json!({"id": id})).await;
    let task = answer.result();
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{task}");
    let answer = a2a_call_as(&a2a, Some(&admin), "ListTasks", json!({"contextId": "m"})).await;
    assert_eq!(answer.result()["totalSize"], 1, "{}", answer.body);

    // Scoped as on gRPC: another tenant's agent does not see the task.
    let answer = a2a_call_as(&a2a, Some(&agent_b), "GetTask", json!({"id": id})).await;
    assert!(answer.json().get("error").is_some(), "{}", answer.body);
    let answer = mcp_as(&agent_b)
        .call("tasks/get", json!({"taskId": id}))
        .await;
    assert_eq!(answer.json()["error"]["code"], -32602, "{}", answer.body);

    // Viewer and worker tokens stay refused, told what to use.
    for token in [&viewer, &worker_a] {
        let answer = mcp_as(token).call("tools/list", json!({})).await;
        assert_eq!(answer.status, 403, "{}", answer.body);
        assert!(
            answer.body.contains("role agent or admin"),
            "{}",
            answer.body
        );
        let answer = a2a_call_as(&a2a, Some(token), "ListTasks", json!({"contextId": "m"})).await;
        assert!(
            answer.status == 403 || answer.json().get("error").is_some(),
            "{}: {}",
            answer.status,
            answer.body
        );
    }
}

/// The HTTP status of a POST of `body` to `url` with `Origin: origin`.
async fn post_from(url: &str, origin: &str, headers: &str, body: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut conn = tokio::net::TcpStream::connect(host).await.unwrap();
    let req = format!(
        "POST /{path} HTTP/1.0\r\nHost: {host}\r\nOrigin: {origin}\r\n{headers}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut response = String::new();
    within("an HTTP answer", conn.read_to_string(&mut response))
        .await
        .unwrap();
    response.split(' ').nth(1).unwrap().parse().unwrap()
}

/// A page of another origin cannot drive MCP or A2A through a browser: a
/// POST whose Origin is off the listener's hosts is refused 403 (the MCP
/// transport spec's MUST). A2A took a text/plain JSON-RPC body from
/// `Origin: http://evil.example` and ran the tool.
#[tokio::test]
async fn mcp_and_a2a_refuse_a_foreign_origin() {
    let server =
        Server::start(&["--mcp-listen", "127.0.0.1:0", "--a2a-listen", "127.0.0.1:0"]).await;
    let mut worker = server.gate_worker(&["echo"], 1).await;
    let mcp = server.mcp_url.clone().expect("the MCP address");
    let a2a = format!(
        "{}/jsonrpc",
        server.a2a_url.clone().expect("the A2A address")
    );
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}"#;
    let mcp_headers = "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-11-25\r\n";
    let send = r#"{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"messageId":"m1","role":"ROLE_USER","parts":[{"data":{"tool":"echo","arguments":{}}}]}}}"#;
    let a2a_headers = "Content-Type: text/plain\r\nA2A-Version: 1.0\r\n";
    assert_eq!(
        post_from(&mcp, "http://evil.example", mcp_headers, init).await,
        403
    );
    assert_eq!(
        post_from(&a2a, "http://evil.example", a2a_headers, send).await,
        403
    );
    assert!(worker.try_next().is_none(), "no call ran");
    // The listener's own origin passes.
    let own = format!(
        "http://{}",
        mcp.strip_prefix("http://")
            .unwrap()
            .split('/')
            .next()
            .unwrap()
    );
    assert_eq!(post_from(&mcp, &own, mcp_headers, init).await, 200);
}

/// A worker holding a Register stream open with `tools` (name, schema).
async fn raw_worker(
    server: &Server,
    tools: Vec<pb::Tool>,
) -> (
    tokio::sync::mpsc::Sender<pb::WorkerMessage>,
    tonic::Streaming<pb::WorkerCommand>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::WorkerMessage {
        kind: Some(pb::worker_message::Kind::Register(pb::Register {
            worker_name: "w".into(),
            tools,
            max_concurrency: 1,
        })),
    })
    .await
    .unwrap();
    let mut commands = pb::worker_service_client::WorkerServiceClient::new(
        errand_client::endpoint(&server.addr)
            .unwrap()
            .connect_lazy(),
    )
    .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
    .await
    .unwrap()
    .into_inner();
    within("Registered", commands.message()).await.unwrap();
    (tx, commands)
}

/// MCP's tools/list comes in pages within the server's message limit,
/// `nextCursor` going on: it was one answer of every tool whatever its
/// size (65 MB for 800 tools at the limits).
#[tokio::test]
async fn mcp_tools_list_pages_stop_at_the_message_limit() {
    let server = Server::start(&[
        "--mcp-listen",
        "127.0.0.1:0",
        "--max-message-bytes",
        "200000",
        "--max-result-bytes",
        "50000",
        "--max-arguments-bytes",
        "50000",
    ])
    .await;
    let schema = format!(
        r#"{{"type":"object","description":"{}"}}"#,
        "x".repeat(60_000)
    );
    let mut workers = Vec::new();
    for w in 0..3 {
        let tools = (0..2)
            .map(|i| pb::Tool {
                name: format!("big_{w}{i}"),
                input_schema_json: schema.clone(),
                ..Default::default()
            })
            .collect();
        workers.push(raw_worker(&server, tools).await);
    }
    let mcp = Mcp {
        url: server.mcp_url.clone().expect("the MCP address"),
        token: None,
        session: "m".into(),
    };
    let (mut names, mut pages, mut params) = (Vec::new(), 0, json!({}));
    loop {
        let listed = mcp.call("tools/list", params).await.result();
        pages += 1;
        let tools = listed["tools"].as_array().expect("tools");
        assert!(!tools.is_empty(), "a page moves on: {listed}");
        names.extend(
            tools
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_string()),
        );
        match listed["nextCursor"].as_str() {
            Some(cursor) => params = json!({"cursor": cursor}),
            None => break,
        }
    }
    assert_eq!(
        names,
        ["big_00", "big_01", "big_10", "big_11", "big_20", "big_21"]
    );
    assert!(pages >= 2, "360 KB of tools do not fit one 200 KB page");
    // A cursor this server did not issue is invalid params.
    let refused = mcp.call("tools/list", json!({"cursor": "nope"})).await;
    assert_eq!(refused.json()["error"]["code"], -32602, "{}", refused.body);
}
