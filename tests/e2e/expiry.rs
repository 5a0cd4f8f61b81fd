//! Streams opened with a token end when the token expires (issue 16 item 7).
use errand_client::pb;
use errand_tests::{raw::*, *};
use tonic::Code;

#[tokio::test]
async fn streams_end_at_their_tokens_expiry() {
    let tokens = Tokens::new();
    // Seconds from now: long enough to start the server and open both
    // streams on a loaded machine, short enough to wait for.
    let agent = tokens
        .add(&["--role", "agent", "--tenant", "t", "--expires", "5s"])
        .await;
    let worker = tokens
        .add(&["--role", "worker", "--tenant", "t", "--expires", "5s"])
        .await;
    let lasting = tokens.add(&["--role", "agent", "--tenant", "t"]).await;
    let server = Server::start(&strs(&tokens.flag())).await;

    let mut w = connect_worker(&server.addr, Some(&worker), vec![tool("search", "")])
        .await
        .expect("the worker connects before its token expires");
    let mut raw = server.raw_as(Some(&agent));
    let mut completions = raw
        .completions(pb::CompletionsRequest {
            session_id: "s".into(),
            after_seq: 0,
        })
        .await
        .expect("the stream opens before the token expires")
        .into_inner();
    // Both streams work while the token is valid: a submit by a token that
    // does not expire reaches the worker, its result reaches the stream.
    let other = server.client_as(&lasting).await;
    other.submit("s", "search", "{}").await.unwrap();
    let assignment = match within("the assignment", w.commands.message()).await {
        Ok(Some(pb::WorkerCommand {
            kind: Some(pb::worker_command::Kind::Assignment(a)),
        })) => a,
        other => panic!("expected an assignment, got {other:?}"),
    };
    w.tx.send(pb::WorkerMessage {
        kind: Some(pb::worker_message::Kind::Result(pb::TaskResult {
            task_id: assignment.task_id.clone(),
            attempt: assignment.attempt,
            outcome: Some(pb::task_result::Outcome::ResultJson("1".into())),
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let first = within("the completion", completions.message()).await;
    assert_eq!(first.unwrap().unwrap().task_id, assignment.task_id);

    // Then each ends at the expiry, whatever it was doing.
    let ended = within("the worker stream's end", w.commands.message())
        .await
        .expect_err("the worker stream ends with an error");
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    assert!(ended.message().contains("token expired"), "{ended:?}");
    let ended = within("the completions stream's end", completions.message())
        .await
        .expect_err("the completions stream ends with an error");
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    assert!(ended.message().contains("token expired"), "{ended:?}");
    // And the token no longer opens anything.
    let again = connect_worker(&server.addr, Some(&worker), vec![tool("search", "")]).await;
    assert_eq!(again.err().map(|s| s.code()), Some(Code::Unauthenticated));
}

/// Sends `request` (an HTTP/1.0 request, head and body) to `addr` and reads
/// the answer until the server ends it: the whole response. A stream that
/// does not end fails the test at [`within`]'s bound.
async fn until_closed(addr: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    within("the server to end the stream", conn.read_to_end(&mut seen))
        .await
        .unwrap();
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn dashboard_live_events_end_at_the_tokens_expiry() {
    let tokens = Tokens::new();
    let viewer = tokens
        .add(&["--role", "viewer", "--tenant", "t", "--expires", "5s"])
        .await;
    let mut flags = tokens.flag().to_vec();
    flags.extend(["--ui-listen", "127.0.0.1:0"].map(String::from));
    let server = Server::start(&strs(&flags)).await;
    let ui = server.ui_url.clone().expect("the dashboard's address");
    let host = ui.trim_start_matches("http://").trim_end_matches('/');

    // Opened while the token is valid; ended (with an `expired` event that
    // says why) at its expiry, as the gRPC streams end.
    let seen = until_closed(
        host,
        &format!(
            "GET /api/events HTTP/1.0\r\nHost: {host}\r\nAuthorization: Bearer {viewer}\r\n\r\n"
        ),
    )
    .await;
    assert!(
        seen.starts_with("HTTP/1.0 200") || seen.starts_with("HTTP/1.1 200"),
        "{seen}"
    );
    assert!(seen.contains("event: expired"), "{seen}");
    assert!(seen.contains("token expired"), "{seen}");
    // And the token opens no stream any more.
    let again = until_closed(
        host,
        &format!(
            "GET /api/events HTTP/1.0\r\nHost: {host}\r\nAuthorization: Bearer {viewer}\r\n\r\n"
        ),
    )
    .await;
    assert!(again.contains(" 401 "), "{again}");
}

#[tokio::test]
async fn mcp_streams_end_at_the_tokens_expiry() {
    let tokens = Tokens::new();
    let agent = tokens
        .add(&["--role", "agent", "--tenant", "t", "--expires", "5s"])
        .await;
    let mut flags = tokens.flag().to_vec();
    flags.extend(["--mcp-listen", "127.0.0.1:0"].map(String::from));
    let server = Server::start(&strs(&flags)).await;
    let url = server.mcp_url.clone().expect("the MCP address");
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_string();
    // A 2025-11-25 client: a session, then its standalone GET stream, which
    // rmcp keeps open (with keep-alives) for as long as the client reads.
    let request = |method: &str, session: &str, body: &str| {
        format!(
            "{method} /mcp HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {agent}\r\n\
             Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
             MCP-Protocol-Version: 2025-11-25\r\n{session}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let init = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "old", "version": "1"},
    }});
    let answer = until_closed(&addr, &request("POST", "", &init.to_string())).await;
    let session = answer
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("mcp-session-id")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no Mcp-Session-Id in {answer}"));
    let session = format!("Mcp-Session-Id: {session}\r\n");
    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    until_closed(&addr, &request("POST", &session, initialized)).await;

    let seen = until_closed(&addr, &request("GET", &session, "")).await;
    assert!(seen.contains(" 200 "), "{seen}");
    assert!(
        seen.to_ascii_lowercase().contains("text/event-stream"),
        "{seen}"
    );
    // The session outlives the token, but nothing more is served on it.
    let again = until_closed(&addr, &request("GET", &session, "")).await;
    assert!(again.contains(" 401 "), "{again}");
}
