//! The MCP and A2A front ends through the real binary: who may call them
//! (the gRPC port's rule: agent and admin tokens, each within its tenant).
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
