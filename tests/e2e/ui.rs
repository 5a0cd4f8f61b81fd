//! The dashboard on `--ui-listen`, over plain HTTP as the browser's page
//! script uses it: embedded assets, the JSON API, the CSRF check on POSTs,
//! tokens, roles and tenants, the overview's statistics, sessions, a task's
//! attempts and texts, and live events (a `finished` one when a running
//! task is cancelled).
use errand_client::pb;
use errand_tests::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.0 request; the status code and the body.
async fn http(url: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    http_to(url, host, method, path, headers).await
}

/// [`http`] with `Host: host`.
async fn http_to(
    url: &str,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    http_request(addr, Some(host), method, path, headers, "").await
}

/// `/api/events` of the dashboard at `url`, as `authorization` (if any),
/// once its head has arrived.
async fn open_events(url: &str, authorization: Option<&str>) -> tokio::net::TcpStream {
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    let mut events = tokio::net::TcpStream::connect(host).await.unwrap();
    let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let req = format!("GET /api/events HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n");
    events.write_all(req.as_bytes()).await.unwrap();
    let mut seen = String::new();
    read_until(&mut events, &mut seen, "text/event-stream").await;
    events
}

/// Reads the event stream into `seen` until it holds `needle`.
async fn read_until(events: &mut tokio::net::TcpStream, seen: &mut String, needle: &str) {
    let mut buf = [0u8; 4096];
    while !seen.contains(needle) {
        let n = within("an event", events.read(&mut buf)).await.unwrap();
        assert!(n > 0, "the event stream ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
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
    let tools = json(&ui, "/api/overview", &[]).await;
    assert_eq!(tools["tools"][0]["name"], "slow");
    assert_eq!(tools["tools"][0]["running"], 1);
    let now = tools["depth"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (now[1].as_u64(), now[2].as_u64()),
        (Some(0), Some(1)),
        "{now}"
    );
    let tasks = json(&ui, "/api/tasks?session=web&tool=slow", &[]).await;
    assert_eq!(tasks["tasks"][0]["task_id"], id.as_str());
    let none = json(&ui, "/api/tasks?status=failed", &[]).await;
    assert_eq!(none["tasks"].as_array().unwrap().len(), 0);
    let task = json(&ui, &format!("/api/tasks/{id}"), &[]).await;
    assert_eq!(task["status"], "RUNNING");
    assert_eq!(task["worker_name"], "gate");
    assert!(task["ack"].as_str().unwrap().contains(&id));
    assert_eq!(task["attempt_log"][0]["worker_name"], "gate");
    assert_eq!(task["attempt_log"][0]["attempt"], 1);
    let workers = json(&ui, "/api/workers", &[]).await;
    assert_eq!(workers["workers"][0]["running"], 1);

    // Live events: open the stream, then cancel through the API.
    let mut events = open_events(&ui, None).await;

    let cancel = format!("/api/tasks/{id}/cancel");
    let (status, _) = http(&ui, "POST", &cancel, &[]).await;
    assert_eq!(status, 403, "a POST without the CSRF token is refused");
    let me = json(&ui, "/api/me", &[]).await;
    let csrf = me["csrf"].as_str().unwrap().to_string();
    let (status, body) = http(&ui, "POST", &cancel, &[("x-csrf-token", &csrf)]).await;
    assert_eq!(status, 200, "{body}");
    within("the worker's cancel", job.cancel.cancelled()).await;
    let mut seen = String::new();
    read_until(&mut events, &mut seen, "event: finished").await;
    assert!(seen.contains(&id), "{seen}");
    assert!(seen.contains("CANCELLED"), "{seen}");

    let retry = format!("/api/tasks/{id}/retry");
    let (status, body) = http(&ui, "POST", &retry, &[("x-csrf-token", &csrf)]).await;
    assert_eq!(status, 200, "{body}");
    let again: Value = serde_json::from_str(&body).unwrap();
    let job = worker.next().await;
    let again_id = again["task_id"].as_str().unwrap().to_string();
    assert_eq!(job.task.task_id, again_id);
    // A result over the page's preview: cut, and whole at .../result.
    let big = format!("{{\"text\":\"{}\"}}", "x".repeat(5_000));
    job.succeed(&big);
    take_completions(&mut client.completions("web", 1), 1).await;
    let task = json(&ui, &format!("/api/tasks/{again_id}"), &[]).await;
    assert_eq!(task["retry_of"], id.as_str());
    assert_eq!(task["result_truncated"], true);
    assert_eq!(task["result_json"].as_str().unwrap().chars().count(), 4_000);
    assert!(
        task["completion_message"]
            .as_str()
            .unwrap()
            .contains(&again_id)
    );
    let (status, full) = http(&ui, "GET", &format!("/api/tasks/{again_id}/result"), &[]).await;
    assert_eq!((status, full.as_str()), (200, big.as_str()));
    // The overview counts the last hour; the sessions page the seqs.
    let tools = json(&ui, "/api/overview", &[]).await;
    assert_eq!(tools["tools"][0]["succeeded_1h"], 1, "{tools}");
    assert!(tools["tools"][0]["p50_ms"].is_u64(), "{tools}");
    let (status, _) = http(&ui, "GET", "/api/tasks/not-a-uuid", &[]).await;
    assert_eq!(status, 400);
    let task = client.get_task(&id).await.unwrap();
    assert_eq!(status_of(task.status), pb::TaskStatus::Cancelled);
    client.ack_completions("web", 1).await.unwrap();
    let sessions = json(&ui, "/api/sessions", &[]).await;
    let web = &sessions["sessions"][0];
    assert_eq!(web["session_id"], "web", "{sessions}");
    assert_eq!(
        (web["last_seq"].as_u64(), web["acked_seq"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(web["pending"], 0);
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
        "/api/tasks",
        "/api/overview",
        "/api/sessions",
        "/api/workers",
        "/api/events",
    ] {
        let (status, _) = http(&ui, "GET", path, &[]).await;
        assert_eq!(status, 401, "{path}");
    }
    // `me` answers so the page can show its login without a console error.
    let me = json(&ui, "/api/me", &[]).await;
    assert_eq!(me["logged_in"], false);
    assert!(me.get("csrf").is_none());
    let bearer = |t: &str| format!("Bearer {t}");
    let me = json(&ui, "/api/me", &[("Authorization", &bearer(&worker_a))]).await;
    assert_eq!(
        me["logged_in"], false,
        "a worker token cannot use the dashboard"
    );
    assert!(me["error"].as_str().unwrap().contains("worker"));
    let (status, _) = http(
        &ui,
        "GET",
        "/api/tasks",
        &[("Authorization", &bearer(&worker_a))],
    )
    .await;
    assert_eq!(status, 403);
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

/// Roles: an admin sees every tenant and changes only its own; a viewer
/// looks and changes nothing (and calls no RPC); on gRPC an admin is an
/// agent of its tenant.
#[tokio::test]
async fn dashboard_roles_admin_sees_all_viewer_only_looks() {
    let tokens = Tokens::new();
    let agent_a = tokens.add(&["--role", "agent", "--tenant", "a"]).await;
    let worker_a = tokens.add(&["--role", "worker", "--tenant", "a"]).await;
    let admin = tokens.add(&["--role", "admin", "--tenant", "ops"]).await;
    let worker_ops = tokens.add(&["--role", "worker", "--tenant", "ops"]).await;
    let viewer_a = tokens.add(&["--role", "viewer", "--tenant", "a"]).await;
    let mut flags = tokens.flag().to_vec();
    flags.extend(["--ui-listen".to_string(), "127.0.0.1:0".to_string()]);
    let server = Server::start(&strs(&flags)).await;
    let ui = server.ui_url.clone().unwrap();
    let a = server.client_as(&agent_a).await;
    let mut wa = server.gate_worker_as(&worker_a, &["t"], 2).await;
    let mut wops = server.gate_worker_as(&worker_ops, &["t"], 1).await;
    let theirs = a.submit("s", "t", "{}").await.unwrap().task_id;
    let held_a = wa.next().await;
    // On gRPC the admin is an agent of its own tenant.
    let ops = server.client_as(&admin).await;
    let own = ops.submit("x", "t", "{}").await.unwrap().task_id;
    let held_ops = wops.next().await;
    assert_eq!(
        ops.list_tasks(Default::default())
            .await
            .unwrap()
            .tasks
            .len(),
        1
    );
    let viewer_rpc = server.client_as(&viewer_a).await;
    assert_eq!(
        code(viewer_rpc.list_tools().await),
        tonic::Code::PermissionDenied
    );

    let bearer = |t: &str| format!("Bearer {t}");
    let (auth_admin, auth_viewer) = (bearer(&admin), bearer(&viewer_a));
    let me = json(&ui, "/api/me", &[("Authorization", &auth_admin)]).await;
    assert_eq!(
        (me["role"].as_str(), me["all_tenants"].as_bool()),
        (Some("admin"), Some(true))
    );
    let all = json(&ui, "/api/tasks", &[("Authorization", &auth_admin)]).await;
    let mut listed: Vec<(String, String)> = all["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tenant"].as_str().unwrap().into(),
                t["task_id"].as_str().unwrap().into(),
            )
        })
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        vec![("a".into(), theirs.clone()), ("ops".into(), own.clone())]
    );
    let only_a = json(
        &ui,
        "/api/tasks?tenant=a",
        &[("Authorization", &auth_admin)],
    )
    .await;
    assert_eq!(only_a["tasks"].as_array().unwrap().len(), 1);
    let overview = json(&ui, "/api/overview", &[("Authorization", &auth_admin)]).await;
    assert_eq!(overview["tools"].as_array().unwrap().len(), 2, "{overview}");
    let workers = json(&ui, "/api/workers", &[("Authorization", &auth_admin)]).await;
    assert_eq!(workers["workers"].as_array().unwrap().len(), 2);
    let csrf = me["csrf"].as_str().unwrap().to_string();

    // The admin sees tenant a's task but may not cancel it; its own it may.
    let task = json(
        &ui,
        &format!("/api/tasks/{theirs}"),
        &[("Authorization", &auth_admin)],
    )
    .await;
    assert_eq!(task["may_change"], false);
    let post = |id: &str, who: &str| {
        let (ui, id, who, csrf) = (ui.clone(), id.to_string(), who.to_string(), csrf.clone());
        async move {
            http(
                &ui,
                "POST",
                &format!("/api/tasks/{id}/cancel"),
                &[("Authorization", &who), ("x-csrf-token", &csrf)],
            )
            .await
        }
    };
    let (status, body) = post(&theirs, &auth_admin).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("tenant"), "{body}");
    let (status, body) = post(&own, &auth_admin).await;
    assert_eq!(status, 200, "{body}");
    within("the admin's cancel", held_ops.cancel.cancelled()).await;

    // The viewer sees its tenant only, and changes nothing.
    let seen = json(&ui, "/api/tasks", &[("Authorization", &auth_viewer)]).await;
    let ids: Vec<&str> = seen["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![theirs.as_str()]);
    assert!(
        seen["tasks"][0]["tenant"].is_null(),
        "one tenant: no column"
    );
    let (status, _) = http(
        &ui,
        "GET",
        &format!("/api/tasks/{own}"),
        &[("Authorization", &auth_viewer)],
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = post(&theirs, &auth_viewer).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("viewer"), "{body}");
    assert_eq!(
        status_of(a.get_task(&theirs).await.unwrap().status),
        pb::TaskStatus::Running
    );
    held_a.succeed("{}");

    // Live events: tenant a's stream never carries tenant ops' tasks (the
    // hub broadcasts in order, so ops' would arrive before a's).
    let mut events = open_events(&ui, Some(&bearer(&agent_a))).await;
    let hidden = ops.submit("x", "t", "{}").await.unwrap().task_id;
    let shown = a.submit("s", "t", "{}").await.unwrap().task_id;
    let mut seen = String::new();
    read_until(&mut events, &mut seen, &shown).await;
    assert!(!seen.contains(&hidden), "{seen}");
    assert!(seen.contains("event: submitted"), "{seen}");
}

/// With several servers on PostgreSQL the overview's queued counts the
/// tasks waiting in the shared store, which no server's own queue holds.
#[tokio::test]
async fn overview_counts_the_shared_queue_on_postgres() {
    let Some(cluster) = pg::cluster() else {
        assert!(
            !on_postgres(),
            "ERRAND_TEST_STORE=postgres needs PostgreSQL"
        );
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED overview_counts_the_shared_queue_on_postgres: PostgreSQL's binaries are not installed"
        );
        return;
    };
    let url = cluster.create_database().await;
    let one = Server::start_postgres(&url, &["--ui-listen", "127.0.0.1:0"]).await;
    let two = Server::start_postgres(&url, &[]).await;
    let (c1, c2) = (one.client().await, two.client().await);
    let mut worker = two.gate_worker(&["t"], 1).await;
    let running = c2.submit("s", "t", "{}").await.unwrap().task_id;
    let held = worker.next().await;
    assert_eq!(held.task.task_id, running);
    // Server one learns the tool through the store, as the multi-server
    // tests wait for it; its submits then wait in the shared queue, since
    // the only worker is busy.
    within("server one to learn the tool", async {
        while c1.list_tools().await.unwrap().is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    for _ in 0..2 {
        c1.submit("s", "t", "{}").await.unwrap();
    }
    let ui = one.ui_url.clone().unwrap();
    let overview = json(&ui, "/api/overview", &[]).await;
    let t = &overview["tools"][0];
    assert_eq!(
        (t["name"].as_str(), t["queued"].as_u64()),
        (Some("t"), Some(2)),
        "{overview}"
    );
    let now = overview["depth"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(now[1], 2, "{overview}");
    held.succeed("{}");
}

#[tokio::test]
async fn dashboard_refuses_a_foreign_host_and_a_foreign_origin() {
    let server = Server::start(&["--ui-listen", "127.0.0.1:0"]).await;
    let ui = server.ui_url.clone().expect("the dashboard's address");
    let port = ui
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let client = server.client().await;
    let mut worker = server.gate_worker(&["slow"], 1).await;
    let id = client
        .submit("s3", "slow", r#"{"n":1}"#)
        .await
        .unwrap()
        .task_id;
    let _job = worker.next().await;

    // DNS rebinding: a page of evil.com, resolved to 127.0.0.1, calls the API.
    let evil = format!("evil.com:{port}");
    for path in ["/api/tasks?session=s3", "/api/me", "/"] {
        let (status, body) = http_to(&ui, &evil, "GET", path, &[]).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(body.contains("evil.com"), "{body}");
        assert!(
            body.contains("--ui-allowed-host"),
            "says how to allow it: {body}"
        );
        assert!(!body.contains(&id), "{body}");
    }
    let (status, _) = http_to(&ui, &format!("localhost:{port}"), "GET", "/api/me", &[]).await;
    assert_eq!(status, 200, "loopback names are allowed");

    // A POST from a foreign page (right Host, wrong Origin) changes nothing,
    // even with the CSRF token.
    let me = json(&ui, "/api/me", &[]).await;
    let csrf = me["csrf"].as_str().unwrap().to_string();
    let cancel = format!("/api/tasks/{id}/cancel");
    let foreign = [
        ("x-csrf-token", csrf.as_str()),
        ("Origin", "http://evil.com"),
    ];
    let (status, body) = http(&ui, "POST", &cancel, &foreign).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("Origin"), "{body}");
    assert!(body.contains("--ui-allowed-host"), "{body}");
    let task = json(&ui, &format!("/api/tasks/{id}"), &[]).await;
    assert_eq!(task["status"], "RUNNING");
    let own = format!("http://127.0.0.1:{port}");
    let (status, body) = http(
        &ui,
        "POST",
        &cancel,
        &[("x-csrf-token", &csrf), ("Origin", &own)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn dashboard_accepts_the_hosts_given_with_ui_allowed_host() {
    let server = Server::start(&[
        "--ui-listen",
        "127.0.0.1:0",
        "--ui-allowed-host",
        "Dash.Example",
    ])
    .await;
    let ui = server.ui_url.clone().expect("the dashboard's address");
    let (status, body) = http_to(&ui, "dash.example:8080", "GET", "/api/me", &[]).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(&ui, "GET", "/api/me", &[]).await;
    assert_eq!(status, 200, "the listener's own address: {body}");
    let (status, body) = http_to(&ui, "localhost", "GET", "/api/me", &[]).await;
    assert_eq!(status, 403, "the list replaces the loopback names: {body}");
}

/// The head of one HTTP/1.0 GET of `path` from the dashboard at `url`, with
/// `Host: host` and `headers`, lower-cased.
async fn head_of(url: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut seen = String::new();
    read_until(&mut conn, &mut seen, "\r\n\r\n").await;
    let (head, _) = seen.split_once("\r\n\r\n").unwrap();
    head.to_ascii_lowercase()
}

#[tokio::test]
async fn dashboard_responses_forbid_framing_and_sniffing() {
    let tokens = Tokens::new();
    let viewer = tokens.add(&["--role", "viewer", "--tenant", "a"]).await;
    let mut flags = tokens.flag().to_vec();
    flags.extend(["--ui-listen".to_string(), "127.0.0.1:0".to_string()]);
    let server = Server::start(&strs(&flags)).await;
    let ui = server.ui_url.clone().unwrap();
    let host = ui.trim_start_matches("http://").trim_end_matches('/');
    let port = host.rsplit(':').next().unwrap();
    let auth = format!("Bearer {viewer}");
    let with_token = [("Authorization", auth.as_str())];

    // Every answer, the page, its assets, the API (refused or not), the
    // live events and a refused Host: a page of another site cannot frame
    // the dashboard (clickjacking Cancel and Retry), nor a body be sniffed
    // into another type.
    let evil = format!("evil.com:{port}");
    for (what, host, path, headers) in [
        ("page", host, "/", &[][..]),
        ("script", host, "/app.js", &[]),
        ("style", host, "/style.css", &[]),
        ("refused API", host, "/api/tasks", &[]),
        ("API", host, "/api/tasks", &with_token),
        ("events", host, "/api/events", &with_token),
        ("unknown path", host, "/nope", &[]),
        ("foreign host", evil.as_str(), "/", &[]),
    ] {
        let head = head_of(&ui, host, path, headers).await;
        assert!(head.contains("\r\nx-frame-options: deny"), "{what}: {head}");
        assert!(
            head.contains("\r\nx-content-type-options: nosniff"),
            "{what}: {head}"
        );
        let csp = head
            .lines()
            .find_map(|l| l.strip_prefix("content-security-policy: "))
            .unwrap_or_else(|| panic!("{what}: no Content-Security-Policy in {head}"));
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{what}: {directive} not in {csp}");
        }
    }
    // A 401 names the scheme it wants (RFC 9110 section 15.5.2).
    let head = head_of(&ui, host, "/api/tasks", &[]).await;
    assert!(
        head.starts_with("http/1.0 401") || head.starts_with("http/1.1 401"),
        "{head}"
    );
    assert!(head.contains("\r\nwww-authenticate: bearer"), "{head}");
}

/// The dashboard keeps the budgets of the other ports: calls without a
/// valid token count against --auth-failures-per-minute (past it, 429 with
/// Retry-After), and a tenant's requests against
/// --requests-per-second-per-tenant. It answered every call, 401 or 200.
#[tokio::test]
async fn the_dashboard_keeps_the_failed_auth_and_tenant_rate_budgets() {
    let tokens = Tokens::new();
    let agent = tokens.add(&["--role", "agent", "--tenant", "acme"]).await;
    let mut flags = tokens.flag().to_vec();
    for f in [
        "--ui-listen",
        "127.0.0.1:0",
        "--auth-failures-per-minute",
        "3",
        "--requests-per-second-per-tenant",
        "3",
    ] {
        flags.push(f.to_string());
    }
    let server = Server::start(&strs(&flags)).await;
    let url = server.ui_url.clone().expect("the dashboard's address");
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(http(&url, "GET", "/api/overview", &[]).await.0);
    }
    assert_eq!(&statuses[..3], [401, 401, 401], "{statuses:?}");
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    let bearer = format!("Bearer {agent}");
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(
            http(&url, "GET", "/api/tasks", &[("Authorization", &bearer)])
                .await
                .0,
        );
    }
    assert_eq!(statuses[0], 200, "{statuses:?}");
    assert!(statuses.contains(&429), "the tenant's rate: {statuses:?}");
}
