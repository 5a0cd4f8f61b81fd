//! MCP requests whose params rmcp cannot read into its types (or would read
//! wrongly: a key twice in one object): -32602 naming the problem for the
//! methods errand serves, `tasks/update` without `inputResponses`
//! acknowledged as the README says; methods errand does not serve, -32601
//! naming them; input that is not a JSON-RPC request at all, answered alike
//! on stdio and HTTP; and calls a client gives up on.
use errand_client::pb;
use errand_tests::{
    fronts::{self, Mcp},
    *,
};
use serde_json::json;

#[tokio::test]
async fn mcp_malformed_params_are_invalid_params_and_tasks_update_is_acked() {
    let server = Server::start(&["--mcp-listen", "127.0.0.1:0"]).await;
    let mcp = Mcp {
        url: server.mcp_url.clone().expect("the MCP address"),
        token: None,
        session: "m".into(),
    };
    let mut worker = server.gate_worker(&["echo"], 1).await;

    let answer = mcp
        .call("tools/call", json!({"name": "echo", "arguments": "str"}))
        .await
        .json();
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    let text = answer["error"]["message"].as_str().unwrap();
    assert!(text.contains("`arguments` must be a JSON object"), "{text}");
    assert!(worker.try_next().is_none());

    // A tool name no tool can have is the request's error, not a tool
    // result the model reads as the tool failing.
    let answer = mcp
        .call("tools/call", json!({"name": "bad name!", "arguments": {}}))
        .await
        .json();
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    // Argument errors name MCP's field, not gRPC's.
    let big = json!({"blob": "x".repeat(300 * 1024)});
    let answer = mcp
        .call("tools/call", json!({"name": "echo", "arguments": big}))
        .await
        .json();
    let text = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(text.starts_with("arguments is "), "{answer}");

    let task = mcp.call_tool("echo", json!({"n": 1})).await;
    let id = task["taskId"].as_str().unwrap().to_string();
    let job = worker.next().await;
    // Without inputResponses (errand never asks for input): the empty ack.
    let bare = mcp
        .call("tasks/update", json!({"taskId": id}))
        .await
        .result();
    let acked = mcp
        .call("tasks/update", json!({"taskId": id, "inputResponses": {}}))
        .await
        .result();
    assert_eq!(bare, acked);
    assert_eq!(acked, json!({"resultType": "complete"}));
    assert_eq!(mcp.get_task(&id).await["status"], "working");
    let unknown = mcp
        .call("tasks/update", json!({"taskId": "no-such-task"}))
        .await
        .json();
    assert!(unknown.get("error").is_some(), "{unknown}");
    let missing = mcp.call("tasks/get", json!({})).await.json();
    assert_eq!(missing["error"]["code"], -32602, "{missing}");
    assert!(
        missing["error"]["message"]
            .as_str()
            .unwrap()
            .contains("taskId"),
        "{missing}"
    );
    job.succeed("{}");
}

/// Methods errand does not serve are -32601 Method not found, naming the
/// method and what to call instead, not -32602 (`tasks/list`,
/// `tasks/result`) nor rmcp's bare method name (`ping` in 2026-07-28, which
/// removed it; `prompts/list`); the methods it serves still answer.
#[tokio::test]
async fn mcp_methods_not_served_are_method_not_found_saying_what_to_call() {
    let server = Server::start(&["--mcp-listen", "127.0.0.1:0"]).await;
    let url = server.mcp_url.clone().expect("the MCP address");
    let mcp = Mcp {
        url: url.clone(),
        token: None,
        session: "m".into(),
    };
    let mut worker = server.gate_worker(&["echo"], 1).await;
    let task = mcp.call_tool("echo", json!({"n": 1})).await;
    let id = task["taskId"].as_str().unwrap().to_string();
    let not_found = |method: &str, answer: &serde_json::Value, hint: &str| {
        assert_eq!(answer["error"]["code"], -32601, "{method}: {answer}");
        let text = answer["error"]["message"].as_str().unwrap();
        assert!(text.starts_with("Method not found"), "{method}: {text}");
        assert!(text.contains(&format!("\"{method}\"")), "{method}: {text}");
        assert!(text.contains(hint), "{method}: {text}");
    };
    for (method, params, hint) in [
        ("tasks/result", json!({"taskId": id}), "tasks/get"),
        ("tasks/list", json!({}), "tasks/get"),
        ("ping", json!({}), "server/discover"),
        ("prompts/list", json!({}), "tools/call"),
        ("resources/list", json!({}), "tools/call"),
        ("nope/nothing", json!({}), "tools/call"),
    ] {
        let answer = mcp.call(method, params).await.json();
        not_found(method, &answer, hint);
    }
    // The methods errand serves still answer.
    assert_eq!(mcp.get_task(&id).await["status"], "working");
    let listed = mcp.call("tools/list", json!({})).await.result();
    assert_eq!(listed["tools"][0]["name"], "echo", "{listed}");

    // A 2025-11-25 session: ping answers {}; what errand does not serve is
    // -32601 with the same messages.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "old", "version": "1"},
    }});
    let (head, _) = legacy_post(&url, None, &init).await;
    let session = session_of(&head);
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    legacy_post(&url, Some(&session), &initialized).await;
    let request = |method: &str, params: serde_json::Value| json!({"jsonrpc": "2.0", "id": 2, "method": method, "params": params});
    let (_, body) = legacy_post(&url, Some(&session), &request("ping", json!({}))).await;
    let pong = fronts::Answer { status: 200, body }.json();
    assert_eq!(pong["result"], json!({}), "{pong}");
    for (method, params, hint) in [
        ("tasks/list", json!({}), "tasks/get"),
        ("tasks/result", json!({"taskId": id}), "tasks/get"),
        ("prompts/list", json!({}), "tools/call"),
    ] {
        let (_, body) = legacy_post(&url, Some(&session), &request(method, params)).await;
        not_found(method, &fronts::Answer { status: 200, body }.json(), hint);
    }
    worker.next().await.succeed("{}");
}

#[tokio::test]
async fn mcp_structured_content_is_an_object_or_absent() {
    let server = Server::start(&["--mcp-listen", "127.0.0.1:0"]).await;
    let mcp = Mcp {
        url: server.mcp_url.clone().expect("the MCP address"),
        token: None,
        session: "m".into(),
    };
    let mut worker = server.gate_worker(&["echo"], 1).await;
    let client = server.client().await;
    let mut completions = client.completions("m", 0);

    // A string result's text is its value (no quotes or escapes), other
    // JSON its text; structuredContent only for an object.
    for (result, text, structured) in [
        (
            r#""Definition of a \"word\"""#,
            r#"Definition of a "word""#,
            None,
        ),
        (r#"[1,2]"#, r#"[1,2]"#, None),
        (
            r#"{"echo":"hi"}"#,
            r#"{"echo":"hi"}"#,
            Some(json!({"echo": "hi"})),
        ),
    ] {
        let task = mcp.call_tool("echo", json!({"n": 1})).await;
        let id = task["taskId"].as_str().unwrap().to_string();
        worker.next().await.succeed(result);
        take_completions(&mut completions, 1).await;
        let got = mcp.get_task(&id).await;
        assert_eq!(got["status"], "completed", "{got}");
        let r = &got["result"];
        assert_eq!(r["content"][0]["text"], text, "{got}");
        assert_eq!(r.get("structuredContent").cloned(), structured, "{got}");
    }
}

/// One POST to the MCP endpoint `url` as a 2025-11-25 client (with
/// `Mcp-Session-Id: session` when given): the response's head and body.
async fn legacy_post(
    url: &str,
    session: Option<&str>,
    body: &serde_json::Value,
) -> (String, String) {
    legacy_request("POST", url, None, session, &body.to_string()).await
}

/// One 2025-11-25 HTTP request to the MCP endpoint `url`, with `Host`
/// `host` (else the URL's); the answer's head and body.
async fn legacy_request(
    method: &str,
    url: &str,
    host: Option<&str>,
    session: Option<&str>,
    body: &str,
) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (addr, path) = rest.split_once('/').unwrap();
    let host = host.unwrap_or(addr);
    let session = session.map_or(String::new(), |s| format!("Mcp-Session-Id: {s}\r\n"));
    let req = format!(
        "{method} /{path} HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-11-25\r\n\
         {session}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut response = String::new();
    within("an MCP answer", conn.read_to_string(&mut response))
        .await
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

/// The `Mcp-Session-Id` an initialize's answer `head` gives.
fn session_of(head: &str) -> String {
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("mcp-session-id")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no Mcp-Session-Id in {head}"))
}

#[tokio::test]
async fn mcp_refuses_a_foreign_host_by_name_and_ends_a_session_with_204() {
    let server = Server::start(&["--mcp-listen", "127.0.0.1:0"]).await;
    let url = server.mcp_url.clone().expect("the MCP address");
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "old", "version": "1"},
    }});
    let (head, body) =
        legacy_request("POST", &url, Some("evil.example"), None, &init.to_string()).await;
    assert!(
        head.starts_with("HTTP/1.0 403") || head.starts_with("HTTP/1.1 403"),
        "{head}"
    );
    for part in ["evil.example", "--mcp-allowed-host"] {
        assert!(body.contains(part), "{part}: {body}");
    }
    // The loopback names are the default list.
    let (head, _) = legacy_request("POST", &url, Some("localhost"), None, &init.to_string()).await;
    let session = session_of(&head);
    let (head, _) = legacy_request("DELETE", &url, None, Some(&session), "").await;
    assert!(head.contains(" 204 "), "{head}");
}

#[tokio::test]
async fn mcp_a_2025_11_25_session_waits_for_the_result_even_with_the_tasks_extension() {
    let server = Server::start(&["--mcp-listen", "127.0.0.1:0"]).await;
    let url = server.mcp_url.clone().expect("the MCP address");
    let mut worker = server.gate_worker(&["echo"], 1).await;

    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {"extensions": {fronts::MCP_TASKS: {}}},
        "clientInfo": {"name": "old", "version": "1"},
    }});
    let (head, body) = legacy_post(&url, None, &init).await;
    assert!(body.contains("2025-11-25"), "{head}\n{body}");
    let session = session_of(&head);
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    legacy_post(&url, Some(&session), &initialized).await;

    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"n": 1}}});
    let (url2, session2) = (url.clone(), session.clone());
    let waiting = tokio::spawn(async move { legacy_post(&url2, Some(&session2), &call).await });
    worker.next().await.succeed(r#"{"echo":"old"}"#);
    let (_, body) = within("the call's result", waiting).await.unwrap();
    let answer = fronts::Answer { status: 200, body }.json();
    let result = &answer["result"];
    assert_ne!(result["resultType"], "task", "{answer}");
    assert_eq!(
        result["structuredContent"],
        json!({"echo": "old"}),
        "{answer}"
    );
}

/// Sends a 2026-07-28 `tools/call` of `tool` without the Tasks extension
/// (so the request waits for the result) to the MCP endpoint `url`, in
/// errand session `session`; returns the open connection: dropping it is
/// the client giving up on the call.
async fn waiting_call(
    url: &str,
    session: &str,
    tool: &str,
    arguments: serde_json::Value,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": tool, "arguments": arguments,
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": fronts::MCP_VERSION,
            "io.modelcontextprotocol/clientCapabilities": {},
        },
    }})
    .to_string();
    let req = format!(
        "POST /{path} HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: {}\r\n\
         Mcp-Method: tools/call\r\nMcp-Name: {tool}\r\nErrand-Session: {session}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        fronts::MCP_VERSION,
        body.len()
    );
    let mut conn = tokio::net::TcpStream::connect(host).await.unwrap();
    conn.write_all(req.as_bytes()).await.unwrap();
    conn
}

/// A client that gives up on a call it created cancels the task; one that
/// gives up on a call that joined another caller's task leaves it running
/// for that caller.
#[tokio::test]
async fn mcp_giving_up_on_a_joined_call_leaves_the_other_callers_task_running() {
    let server = Server::start(&["--mcp-listen", "127.0.0.1:0"]).await;
    let url = server.mcp_url.clone().expect("the MCP address");
    let mut worker = server
        .gate_worker_for(
            vec![pb::Tool {
                name: "search".into(),
                dedup: pb::DedupPolicy::JoinInFlight as i32,
                ..Default::default()
            }],
            4,
        )
        .await;
    let client = server.client().await;
    let mut stream = client.completions("m", 0);

    // Caller A (gRPC) creates the task; MCP caller B joins it, then gives up.
    let mine = client
        .submit("m", "search", r#"{"q":"x"}"#)
        .await
        .unwrap()
        .task_id;
    let job = worker.next().await;
    assert_eq!(job.task.task_id, mine);
    let joined = waiting_call(&url, "m", "search", json!({"q": "x"})).await;
    drop(joined);

    // A call this MCP request created is cancelled when it gives up: seen
    // after B's give-up, which the server handled the same way.
    let own = waiting_call(&url, "m", "search", json!({"q": "other"})).await;
    let own_job = worker.next().await;
    assert_ne!(own_job.task.task_id, mine);
    drop(own);
    within("the abandoned call's cancel", own_job.cancel.cancelled()).await;
    let cancelled = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!(
        cancelled.task_id, own_job.task.task_id,
        "the first cancel is the abandoned call's own, not A's task"
    );
    assert_eq!(status_of(cancelled.status), pb::TaskStatus::Cancelled);

    assert!(!job.cancel.is_cancelled(), "A's task was cancelled by B");
    job.succeed(r#"{"hits":1}"#);
    let done = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!(done.task_id, mine);
    assert_eq!(status_of(done.status), pb::TaskStatus::Succeeded);
}

/// The JSON rule's "no key twice in one object" holds on MCP as on gRPC:
/// -32602 naming the key, and no task.
#[tokio::test]
async fn mcp_a_key_twice_in_one_object_is_invalid_params() {
    let server = Server::start(&["--mcp-listen", "127.0.0.1:0"]).await;
    let mcp = Mcp {
        url: server.mcp_url.clone().expect("the MCP address"),
        token: None,
        session: "m".into(),
    };
    let mut worker = server.gate_worker(&["echo"], 1).await;
    let meta = format!(
        r#""_meta":{{"io.modelcontextprotocol/protocolVersion":"{}","io.modelcontextprotocol/clientCapabilities":{{"extensions":{{"{}":{{}}}}}}}}"#,
        fronts::MCP_VERSION,
        fronts::MCP_TASKS
    );
    for arguments in [
        r#"{"city":"Lyon","city":"Paris"}"#,
        r#"{"opts":{"city":"Lyon","units":"metric","city":"Paris"}}"#,
    ] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{arguments},{meta}}}}}"#
        );
        let answer = mcp
            .post_text("tools/call", Some("echo"), &body)
            .await
            .json();
        assert_eq!(answer["error"]["code"], -32602, "{answer}");
        let text = answer["error"]["message"].as_str().unwrap();
        assert!(text.contains(r#"duplicate key "city""#), "{text}");
    }
    assert!(worker.try_next().is_none(), "no task was made");
    // The same call with each key once runs.
    let task = mcp.call_tool("echo", json!({"city": "Lyon"})).await;
    let job = worker.next().await;
    assert_eq!(job.task.task_id, task["taskId"].as_str().unwrap());
    job.succeed("{}");
}

/// What is not a JSON-RPC request, each with the error code both MCP
/// transports answer it with.
const NOT_REQUESTS: &[(&str, i64)] = &[
    ("not json", -32700),
    ("{\"jsonrpc\":\"2.0\",\"id\":", -32700),
    ("[]", -32600),
    (
        "[{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"ping\"}]",
        -32600,
    ),
    ("42", -32600),
    ("{\"jsonrpc\":\"2.0\",\"id\":2}", -32600),
    ("{\"jsonrpc\":\"1.0\",\"id\":2,\"method\":\"ping\"}", -32600),
];

/// `errand mcp --stdio` answers each line that is not a request with a
/// JSON-RPC error (-32700 for one that is not JSON, -32600 for JSON that is
/// not one request, or a line over the limit) and goes on; the HTTP endpoint
/// answers the same bodies with the same errors (HTTP 400).
#[tokio::test]
async fn mcp_stdio_and_http_answer_what_is_not_a_request_alike_and_go_on() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let server = Server::start(&["--mcp-listen", "127.0.0.1:0"]).await;
    let mut bridge = tokio::process::Command::new(errand_bin())
        .args(["mcp", "--stdio", "--server", &server.addr, "--session", "m"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = bridge.stdin.take().unwrap();
    let mut stdout = BufReader::new(bridge.stdout.take().unwrap()).lines();
    // A notification before any request is dropped, not the end of the bridge.
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
        .await
        .unwrap();
    let mut answer = async |line: &str| -> serde_json::Value {
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        let got = within("the bridge's answer", stdout.next_line())
            .await
            .unwrap()
            .expect("the bridge is still running");
        serde_json::from_str(&got).unwrap_or_else(|e| panic!("{e}: {got}"))
    };
    let url = server.mcp_url.clone().expect("the MCP address");
    let accept = [("Accept", "application/json, text/event-stream".to_string())];
    // A request rmcp refuses before its lifecycle (no initialize, no inline
    // metadata) does not begin it: a notification after it is dropped too.
    let refused = answer(r#"{"jsonrpc":"2.0","id":11,"method":"tools/list"}"#).await;
    assert_eq!(refused["id"], 11, "{refused}");
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    for (i, (input, code)) in NOT_REQUESTS.iter().enumerate() {
        // The notification goes unanswered: the next line's answer is first.
        let line = if i == 0 {
            format!("{note}\n{input}")
        } else {
            input.to_string()
        };
        let on_stdio = answer(&line).await;
        assert_eq!(on_stdio["error"]["code"], *code, "{input}: {on_stdio}");
        let readable_id = input.contains("\"id\":2");
        assert_eq!(
            on_stdio.get("id").is_some(),
            readable_id,
            "{input}: {on_stdio}"
        );
        let on_http = fronts::post_raw(&url, &accept, input).await;
        assert_eq!(on_http.status, 400, "{input}: {}", on_http.body);
        assert_eq!(on_http.json(), on_stdio, "{input}: the same error on both");
    }
    let init = answer(
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
    )
    .await;
    assert_eq!(init["result"]["serverInfo"]["name"], "errand", "{init}");
    // A key twice in one object: -32602 naming it, as HTTP (and gRPC) do.
    let twice = answer(
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"a":1,"a":2}}}"#,
    )
    .await;
    assert_eq!(twice["id"], 5, "{twice}");
    assert_eq!(twice["error"]["code"], -32602, "{twice}");
    let message = twice["error"]["message"].as_str().unwrap();
    assert!(message.contains(r#"duplicate key "a""#), "{message}");
    let long = format!("\"{}\"", "x".repeat(9 << 20));
    let too_long = answer(&long).await;
    assert_eq!(too_long["error"]["code"], -32600, "{too_long}");
    let message = too_long["error"]["message"].as_str().unwrap();
    assert!(message.contains("over the limit of"), "{message}");
    let ping = answer(r#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#).await;
    assert_eq!(ping["id"], 3, "{ping}");
    assert!(ping.get("result").is_some(), "{ping}");
    // What errand does not serve: -32601 naming the method and what to call.
    let list = answer(r#"{"jsonrpc":"2.0","id":6,"method":"tasks/list","params":{}}"#).await;
    assert_eq!(list["error"]["code"], -32601, "{list}");
    let message = list["error"]["message"].as_str().unwrap();
    assert!(message.contains(r#""tasks/list""#), "{message}");
    assert!(message.contains("tasks/get"), "{message}");
    let prompts = answer(r#"{"jsonrpc":"2.0","id":7,"method":"prompts/list"}"#).await;
    assert_eq!(prompts["error"]["code"], -32601, "{prompts}");
    let message = prompts["error"]["message"].as_str().unwrap();
    assert!(message.contains(r#""prompts/list""#), "{message}");
    // A 2026-07-28 request's ping: that version removed ping.
    let ping = answer(&format!(
        r#"{{"jsonrpc":"2.0","id":8,"method":"ping","params":{{"_meta":{{"io.modelcontextprotocol/protocolVersion":"{}","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}"#,
        fronts::MCP_VERSION
    ))
    .await;
    assert_eq!(ping["error"]["code"], -32601, "{ping}");
    let message = ping["error"]["message"].as_str().unwrap();
    assert!(message.contains("server/discover"), "{message}");
    drop(stdin);
    let status = within("the bridge to end with its input", bridge.wait())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
}

/// One 2025-11-25 request to `url` as the holder of `token`; the answer's
/// head.
async fn request_as(
    method: &str,
    url: &str,
    token: &str,
    session: Option<&str>,
    body: &str,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (addr, path) = rest.split_once('/').unwrap();
    let session = session.map_or(String::new(), |s| format!("Mcp-Session-Id: {s}\r\n"));
    let req = format!(
        "{method} /{path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         MCP-Protocol-Version: 2025-11-25\r\n{session}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut response = String::new();
    within("an MCP answer", conn.read_to_string(&mut response))
        .await
        .unwrap();
    response.split_once("\r\n\r\n").unwrap().0.to_string()
}

/// A session is its opener's tenant's: another tenant's request naming it
/// gets 404, as an unknown session does. Tenant B could end tenant A's
/// session (204) and hold its stream open.
#[tokio::test]
async fn mcp_a_session_answers_only_its_own_tenant() {
    let tokens = Tokens::new();
    let a = tokens.add(&["--role", "agent", "--tenant", "a"]).await;
    let b = tokens.add(&["--role", "agent", "--tenant", "b"]).await;
    let mut flags = tokens.flag().to_vec();
    flags.extend(["--mcp-listen".to_string(), "127.0.0.1:0".to_string()]);
    let server = Server::start(&strs(&flags)).await;
    let url = server.mcp_url.clone().expect("the MCP address");
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "a", "version": "1"},
    }})
    .to_string();
    let head = request_as("POST", &url, &a, None, &init).await;
    let session = session_of(&head);
    let head = request_as("DELETE", &url, &b, Some(&session), "").await;
    assert!(head.contains(" 404 "), "another tenant's DELETE: {head}");
    let head = request_as("DELETE", &url, &a, Some(&session), "").await;
    assert!(head.contains(" 204 "), "its own tenant's DELETE: {head}");
}

/// Defect: `tasks/get` of "nope" answered `taskId (errand's task_id)
/// "nope" is not a UUID: pass the task_id SubmitTool returned`, and
/// arguments a tool's schema refused `arguments (errand's arguments_json)
/// fails ...`: gRPC's names, which an MCP client never sent nor called.
#[tokio::test]
async fn mcp_errors_name_mcps_fields_and_methods_not_grpcs() {
    let server = Server::start(&["--mcp-listen", "127.0.0.1:0"]).await;
    let mcp = Mcp {
        url: server.mcp_url.clone().expect("the MCP address"),
        token: None,
        session: "m".into(),
    };
    let _worker = raw::connect_worker(
        &server.addr,
        None,
        vec![raw::tool("search", r#"{"type":"object","required":["q"]}"#)],
    )
    .await
    .unwrap();
    let grpc = |text: &str| {
        ["errand's", "SubmitTool", "task_id", "arguments_json"]
            .into_iter()
            .find(|w| text.contains(w))
    };

    let answer = mcp
        .call("tasks/get", json!({"taskId": "nope"}))
        .await
        .json();
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    let text = answer["error"]["message"].as_str().unwrap();
    assert_eq!(
        text,
        r#"taskId "nope" is not a UUID: pass the taskId its tools/call returned"#
    );

    let answer = mcp
        .call("tools/call", json!({"name": "search", "arguments": {}}))
        .await
        .json();
    let text = answer["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("arguments fails the input schema of tool `search`"),
        "{answer}"
    );
    assert_eq!(grpc(text), None, "{text}");
}

/// The `Errand-Session` header names the session as gRPC's `session_id`
/// does: any UTF-8 name. One sent but unreadable (not UTF-8) or empty is
/// the request's error (-32602), never the default session `mcp`.
#[tokio::test]
async fn mcp_an_unreadable_or_empty_session_header_is_refused_not_the_default() {
    let server = Server::start(&["--mcp-listen", "127.0.0.1:0"]).await;
    let url = server.mcp_url.clone().expect("the MCP address");
    let mut worker = server.gate_worker(&["echo"], 1).await;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "echo", "arguments": {},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": fronts::MCP_VERSION,
            "io.modelcontextprotocol/clientCapabilities":
                {"extensions": {fronts::MCP_TASKS: {}}},
        },
    }})
    .to_string();
    let call = |session: &'static [u8]| {
        let (url, body) = (url.clone(), body.clone());
        async move {
            let headers: [(&str, &[u8]); 5] = [
                ("Accept", b"application/json, text/event-stream"),
                ("MCP-Protocol-Version", fronts::MCP_VERSION.as_bytes()),
                ("Mcp-Method", b"tools/call"),
                ("Mcp-Name", b"echo"),
                ("Errand-Session", session),
            ];
            fronts::post_bytes(&url, &headers, &body).await
        }
    };
    for session in [&b"a\xff\xfeb"[..], b""] {
        let answer = call(session).await.json();
        assert_eq!(answer["error"]["code"], -32602, "{session:?}: {answer}");
        let text = answer["error"]["message"].as_str().unwrap();
        assert!(text.contains("Errand-Session"), "{text}");
        assert!(worker.try_next().is_none(), "{session:?}: no task");
    }
    // A UTF-8 name that is not ASCII is a name like any other.
    let answer = call("café".as_bytes()).await.result();
    assert_eq!(answer["resultType"], "task", "{answer}");
    let job = worker.next().await;
    assert_eq!(job.task.session_id, "café");
}

/// rmcp's -32020 for an `Mcp-Name` or `Mcp-Method` header that does not
/// match the body quotes both values: each is quoted as errand quotes
/// client input (bounded), the whole message within errand's limit.
#[tokio::test]
async fn mcp_header_mismatch_errors_quote_the_request_bounded() {
    let server = Server::start(&["--mcp-listen", "127.0.0.1:0"]).await;
    let mcp = Mcp {
        url: server.mcp_url.clone().expect("the MCP address"),
        token: None,
        session: "m".into(),
    };
    let meta = json!({"io.modelcontextprotocol/protocolVersion": fronts::MCP_VERSION});
    let long = "x".repeat(100_000);
    let get = json!({"jsonrpc": "2.0", "id": 1, "method": "tasks/get",
        "params": {"taskId": long, "_meta": meta}})
    .to_string();
    let other =
        json!({"jsonrpc": "2.0", "id": 1, "method": long, "params": {"_meta": meta}}).to_string();
    for (method, name, body, named) in [
        ("tasks/get", Some("abc"), &get, "Mcp-Name"),
        ("tools/list", None, &other, "Mcp-Method"),
    ] {
        let answer = mcp.post_text(method, name, body).await;
        assert_eq!(answer.status, 400, "{named}");
        let error = answer.json();
        assert_eq!(error["error"]["code"], -32020, "{named}");
        let text = error["error"]["message"].as_str().unwrap();
        assert!(text.len() <= 1024, "{named}: {} bytes", text.len());
        assert!(text.contains(named), "{text}");
        assert!(text.contains("(100000 bytes)"), "{text}");
    }
}
