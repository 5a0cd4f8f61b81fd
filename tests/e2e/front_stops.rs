//! A server told to stop while MCP and A2A calls wait for their tasks: a
//! task that finishes in the drain is answered to its caller; one that
//! outlives the grace period is answered at the stop (an MCP error naming
//! the task, A2A's task as it is, not final), and is not cancelled: it runs again at
//! the next start.
use errand_client::pb;
use errand_tests::{
    fronts::{self, MCP_VERSION},
    *,
};
use serde_json::{Value, json};
use tokio_stream::StreamExt;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// A `tools/call` without the Tasks extension: the answer is the result.
async fn synchronous_call(url: String, tool: &str) -> fronts::Answer {
    let body = json!({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": tool, "arguments": {},
                   "_meta": {"io.modelcontextprotocol/protocolVersion": MCP_VERSION,
                             "io.modelcontextprotocol/clientCapabilities": {}}},
    });
    let headers = [
        ("Accept", "application/json, text/event-stream".to_string()),
        ("MCP-Protocol-Version", MCP_VERSION.to_string()),
        ("Mcp-Method", "tools/call".to_string()),
        ("Mcp-Name", tool.to_string()),
        ("Errand-Session", "m".to_string()),
    ];
    fronts::post(&url, &headers, &body).await
}

/// A blocking A2A `SendMessage` to skill `tool`.
async fn blocking_send(base: String, tool: &str) -> Value {
    let params = json!({"message": {
        "messageId": "m-stop", "role": "ROLE_USER", "contextId": "m",
        "parts": [{"data": {}}], "metadata": {"skill": tool},
    }});
    fronts::a2a_call(&base, "SendMessage", params).await
}

/// Sends SIGTERM and returns once the server has stopped taking work (its
/// health says NOT_SERVING): the drain has begun.
async fn stop_and_await_the_drain(server: &Server) {
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
    let first = within("health", health.next()).await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);
    server.terminate();
    let next = within("NOT_SERVING", health.next()).await.unwrap().unwrap();
    assert_eq!(next.status(), ServingStatus::NotServing);
}

/// Defect: a synchronous MCP call whose task finished in the drain got an
/// HTTP 500 ("empty response"): rmcp's sessions were closed with the drain,
/// before the call's answer was written.
#[tokio::test]
async fn a_call_whose_task_finishes_in_the_drain_gets_its_result() {
    let mut server = Server::start(&[
        "--mcp-listen",
        "127.0.0.1:0",
        "--a2a-listen",
        "127.0.0.1:0",
        "--shutdown-grace-secs",
        "60",
    ])
    .await;
    let mut worker = server.gate_worker(&["slow"], 2).await;
    let mcp = tokio::spawn(synchronous_call(server.mcp_url.clone().unwrap(), "slow"));
    let a2a = tokio::spawn(blocking_send(server.a2a_url.clone().unwrap(), "slow"));
    let (one, two) = (worker.next().await, worker.next().await);
    stop_and_await_the_drain(&server).await;
    one.succeed(r#""done""#);
    two.succeed(r#""done""#);

    let answer = within("the MCP answer", mcp).await.unwrap();
    let result = answer.result();
    assert_eq!(result["content"][0]["text"], "done", "{result}");
    let sent = within("the A2A answer", a2a).await.unwrap();
    assert_eq!(
        sent["result"]["task"]["status"]["state"], "TASK_STATE_COMPLETED",
        "{sent}"
    );
    assert!(server.exited().await.success());
}

/// Defect: past the grace period, a synchronous MCP call got an HTTP 500
/// and a blocking A2A `SendMessage` a closed connection; and rmcp's cancel
/// of the request cancelled the task, which was to run again at the next
/// start.
#[tokio::test]
async fn a_call_whose_task_outlives_the_grace_is_answered_and_its_task_kept() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start_durable(
        data.path(),
        &[
            "--mcp-listen",
            "127.0.0.1:0",
            "--a2a-listen",
            "127.0.0.1:0",
            "--shutdown-grace-secs",
            "1",
        ],
    )
    .await;
    let mut worker = server.gate_worker(&["slow"], 2).await;
    let mcp = tokio::spawn(synchronous_call(server.mcp_url.clone().unwrap(), "slow"));
    let a2a = tokio::spawn(blocking_send(server.a2a_url.clone().unwrap(), "slow"));
    let (_one, _two) = (worker.next().await, worker.next().await);
    stop_and_await_the_drain(&server).await;

    let answer = within("the MCP answer", mcp).await.unwrap().json();
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("shutting down")
            && message.contains("not cancelled")
            && message.contains("runs again when the server restarts"),
        "{answer}"
    );
    let sent = within("the A2A answer", a2a).await.unwrap();
    let task = &sent["result"]["task"];
    // Not final: requeued for the next start.
    let state = task["status"]["state"].as_str().unwrap_or_default();
    assert!(
        ["TASK_STATE_SUBMITTED", "TASK_STATE_WORKING"].contains(&state),
        "{sent}"
    );
    assert!(server.exited().await.success());
    drop(worker);

    // Both tasks run again at the next start: neither was cancelled.
    server.restart().await;
    let client = server.client().await;
    let id = task["id"].as_str().unwrap();
    let kept = client.get_task(id).await.unwrap();
    assert_ne!(status_of(kept.status), pb::TaskStatus::Cancelled);
    let mut worker = server.gate_worker(&["slow"], 2).await;
    let (again, other) = (worker.next().await, worker.next().await);
    assert!([&again.task.task_id, &other.task.task_id].contains(&&id.to_string()));
}
