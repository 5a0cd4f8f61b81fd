//! MCP requests whose params rmcp cannot read into its types: -32602 naming
//! the problem for the methods errand serves, and `tasks/update` without
//! `inputResponses` acknowledged as the README says.
use errand_tests::{fronts::Mcp, *};
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

    for (result, structured) in [
        (r#""Definition of a word""#, None),
        (r#"[1,2]"#, None),
        (r#"{"echo":"hi"}"#, Some(json!({"echo": "hi"}))),
    ] {
        let task = mcp.call_tool("echo", json!({"n": 1})).await;
        let id = task["taskId"].as_str().unwrap().to_string();
        worker.next().await.succeed(result);
        take_completions(&mut completions, 1).await;
        let got = mcp.get_task(&id).await;
        assert_eq!(got["status"], "completed", "{got}");
        let r = &got["result"];
        assert_eq!(r["content"][0]["text"], result, "{got}");
        assert_eq!(r.get("structuredContent").cloned(), structured, "{got}");
    }
}
