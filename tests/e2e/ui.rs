//! The dashboard on `--ui-listen`, over plain HTTP as the browser's page
//! script uses it: embedded assets, the JSON API, the CSRF check on POSTs,
//! tokens and tenants, and a live `completion` event when a running task
//! is cancelled.
use errand_client::pb;
use errand_tests::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.0 request; the status code and the body.
async fn http(url: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    let mut conn = tokio::net::TcpStream::connect(host).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Length: 0\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut response = String::new();
    within("an HTTP response", conn.read_to_string(&mut response))
        .await
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

async fn json(url: &str, path: &str, headers: &[(&str, &str)]) -> Value {
    let (status, body) = http(url, "GET", path, headers).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn dashboard_serves_pages_api_and_live_events() {
    let server = Server::start(&["--ui-listen", "127.0.0.1:0"]).await;
    let ui = server.ui_url.clone().expect("the dashboard's address");
    let client = server.client().await;
    let mut worker = server.gate_worker(&["slow"], 1).await;

    let (status, page) = http(&ui, "GET", "/", &[]).await;
    assert_eq!(status, 200);
    assert!(page.contains("<script src=\"/app.js\">"));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no CDN"
    );
    let (status, script) = http(&ui, "GET", "/app.js", &[]).await;
    assert_eq!(status, 200);
    assert!(script.contains("/api/events"));

    let id = client
        .submit("web", "slow", r#"{"n":1}"#)
        .await
        .unwrap()
        .task_id;
    let job = worker.next().await;
    let tools = json(&ui, "/api/tools", &[]).await;
    assert_eq!(tools["tools"][0]["name"], "slow");
    assert_eq!(tools["tools"][0]["running"], 1);
    let tasks = json(&ui, "/api/tasks?session=web&tool=slow", &[]).await;
    assert_eq!(tasks["tasks"][0]["task_id"], id.as_str());
    let none = json(&ui, "/api/tasks?status=failed", &[]).await;
    assert_eq!(none["tasks"].as_array().unwrap().len(), 0);
    let task = json(&ui, &format!("/api/tasks/{id}"), &[]).await;
    assert_eq!(task["status"], "RUNNING");
    assert_eq!(task["worker_name"], "gate");
    assert!(task["ack"].as_str().unwrap().contains(&id));
    let workers = json(&ui, "/api/workers", &[]).await;
    assert_eq!(workers["workers"][0]["running"], 1);

    // Live events: open the stream, then cancel through the API.
    let host = ui
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut events = tokio::net::TcpStream::connect(&host).await.unwrap();
    events
        .write_all(format!("GET /api/events HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains("text/event-stream") {
        let n = within("the event stream's head", events.read(&mut buf))
            .await
            .unwrap();
        assert!(n > 0);
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }

    let cancel = format!("/api/tasks/{id}/cancel");
    let (status, _) = http(&ui, "POST", &cancel, &[]).await;
    assert_eq!(status, 403, "a POST without the CSRF token is refused");
    let me = json(&ui, "/api/me", &[]).await;
    let csrf = me["csrf"].as_str().unwrap().to_string();
    let (status, body) = http(&ui, "POST", &cancel, &[("x-csrf-token", &csrf)]).await;
    assert_eq!(status, 200, "{body}");
    within("the worker's cancel", job.cancel.cancelled()).await;
    while !(seen.contains("event: completion") && seen.contains(&id)) {
        let n = within("the completion event", events.read(&mut buf))
            .await
            .unwrap();
        assert!(n > 0, "the event stream ended");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.contains("CANCELLED"), "{seen}");

    let retry = format!("/api/tasks/{id}/retry");
    let (status, body) = http(&ui, "POST", &retry, &[("x-csrf-token", &csrf)]).await;
    assert_eq!(status, 200, "{body}");
    let again: Value = serde_json::from_str(&body).unwrap();
    let job = worker.next().await;
    assert_eq!(job.task.task_id, again["task_id"].as_str().unwrap());
    job.succeed("{}");
    let (status, _) = http(&ui, "GET", "/api/tasks/not-a-uuid", &[]).await;
    assert_eq!(status, 400);
    let task = client.get_task(&id).await.unwrap();
    assert_eq!(status_of(task.status), pb::TaskStatus::Cancelled);
}

#[tokio::test]
async fn dashboard_needs_an_agent_token_and_shows_its_tenant_only() {
    let tokens = Tokens::new();
    let agent_a = tokens.add(&["--role", "agent", "--tenant", "a"]).await;
    let agent_b = tokens.add(&["--role", "agent", "--tenant", "b"]).await;
    let worker_a = tokens.add(&["--role", "worker", "--tenant", "a"]).await;
    let mut flags = tokens.flag().to_vec();
    flags.extend(["--ui-listen".to_string(), "127.0.0.1:0".to_string()]);
    let server = Server::start(&strs(&flags)).await;
    let ui = server.ui_url.clone().unwrap();
    let a = server.client_as(&agent_a).await;
    let _w = server.gate_worker_as(&worker_a, &["t"], 1).await;
    let id = a.submit("s", "t", "{}").await.unwrap().task_id;

    // The page itself loads (it shows the login); the API does not.
    let (status, _) = http(&ui, "GET", "/", &[]).await;
    assert_eq!(status, 200);
    for path in [
        "/api/me",
        "/api/tasks",
        "/api/tools",
        "/api/workers",
        "/api/events",
    ] {
        let (status, _) = http(&ui, "GET", path, &[]).await;
        assert_eq!(status, 401, "{path}");
    }
    let bearer = |t: &str| format!("Bearer {t}");
    let (status, _) = http(
        &ui,
        "GET",
        "/api/me",
        &[("Authorization", &bearer(&worker_a))],
    )
    .await;
    assert_eq!(status, 403, "a worker token cannot use the dashboard");
    let auth_a = bearer(&agent_a);
    let mine = json(&ui, "/api/tasks", &[("Authorization", &auth_a)]).await;
    assert_eq!(mine["tasks"][0]["task_id"], id.as_str());
    let auth_b = bearer(&agent_b);
    let theirs = json(&ui, "/api/tasks", &[("Authorization", &auth_b)]).await;
    assert_eq!(theirs["tasks"].as_array().unwrap().len(), 0);
    let (status, _) = http(
        &ui,
        "GET",
        &format!("/api/tasks/{id}"),
        &[("Authorization", &auth_b)],
    )
    .await;
    assert_eq!(status, 404, "another tenant's task is not found");
    let me_b = json(&ui, "/api/me", &[("Authorization", &auth_b)]).await;
    let csrf = me_b["csrf"].as_str().unwrap();
    let (status, _) = http(
        &ui,
        "POST",
        &format!("/api/tasks/{id}/cancel"),
        &[("Authorization", &auth_b), ("x-csrf-token", csrf)],
    )
    .await;
    assert_eq!(status, 404, "nor cancelled");
}
