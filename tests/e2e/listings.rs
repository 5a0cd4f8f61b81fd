//! The operator RPCs: ListTasks (filters, pages across inserts, tenants),
//! ListWorkers and Tool.queued/running, CancelTasks reaching workers,
//! RetryTask's rules, listings after a restart and across two servers.
use std::collections::HashSet;

use errand_client::{Client, pb};
use errand_tests::{fronts::a2a_call, *};
use tonic::Code;

fn list(session: &str, statuses: &[pb::TaskStatus], tool: &str) -> pb::ListTasksRequest {
    pb::ListTasksRequest {
        session_id: session.into(),
        statuses: statuses.iter().map(|s| *s as i32).collect(),
        tool: tool.into(),
        ..Default::default()
    }
}

/// Every page of `req`, submitting one more task to `session` between pages.
async fn walk(client: &Client, mut req: pb::ListTasksRequest, session: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let page = client.list_tasks(req.clone()).await.unwrap();
        assert!(page.tasks.len() <= req.page_size as usize);
        seen.extend(page.tasks.into_iter().map(|t| t.task_id));
        client.submit(session, "slow", "{}").await.unwrap();
        if page.next_page_token.is_empty() {
            return seen;
        }
        req.page_token = page.next_page_token;
    }
}

#[tokio::test]
async fn list_tasks_filters_pages_and_keeps_tenants_apart() {
    let tokens = Tokens::new();
    let agent_a = tokens.add(&["--role", "agent", "--tenant", "a"]).await;
    let worker_a = tokens.add(&["--role", "worker", "--tenant", "a"]).await;
    let agent_b = tokens.add(&["--role", "agent", "--tenant", "b"]).await;
    let worker_b = tokens.add(&["--role", "worker", "--tenant", "b"]).await;
    let server = Server::start(&strs(&tokens.flag())).await;
    let a = server.client_as(&agent_a).await;
    let b = server.client_as(&agent_b).await;
    let mut wa = server.gate_worker_as(&worker_a, &["echo", "slow"], 4).await;
    let _wb = server.gate_worker_as(&worker_b, &["echo", "slow"], 1).await;

    // Tenant a: two succeeded and one failed echo in s1, one echo in s2.
    let mut mine = Vec::new();
    for (session, fail) in [("s1", false), ("s1", true), ("s1", false), ("s2", false)] {
        let id = a.submit(session, "echo", "{}").await.unwrap().task_id;
        let job = wa.next().await;
        if fail {
            job.fail("tool_error", "no")
        } else {
            job.succeed("{}")
        }
        mine.push(id);
    }
    let mut done = a.completions("s2", 0);
    take_completions(&mut done, 1).await;
    let mut done = a.completions("s1", 0);
    take_completions(&mut done, 3).await;
    // Tenant b: one task in a session of the same name.
    let foreign = b.submit("s1", "echo", "{}").await.unwrap().task_id;

    let all = a.list_tasks(list("", &[], "")).await.unwrap();
    let ids: Vec<_> = all.tasks.iter().map(|t| t.task_id.clone()).collect();
    assert_eq!(ids, mine, "oldest first, tenant a only");
    assert!(all.next_page_token.is_empty());
    let s1 = a.list_tasks(list("s1", &[], "")).await.unwrap();
    assert_eq!(s1.tasks.len(), 3);
    let failed = a
        .list_tasks(list("s1", &[pb::TaskStatus::Failed], "echo"))
        .await
        .unwrap();
    assert_eq!(failed.tasks.len(), 1);
    assert_eq!(failed.tasks[0].task_id, mine[1]);
    let succeeded = a
        .list_tasks(list("", &[pb::TaskStatus::Succeeded], ""))
        .await
        .unwrap();
    assert_eq!(succeeded.tasks.len(), 3);
    let none = a.list_tasks(list("", &[], "slow")).await.unwrap();
    assert!(none.tasks.is_empty());
    let newest = a
        .list_tasks(pb::ListTasksRequest {
            newest_first: true,
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<_> = newest.tasks.iter().map(|t| t.task_id.clone()).collect();
    assert_eq!(ids, vec![mine[3].clone(), mine[2].clone()]);
    assert!(!newest.next_page_token.is_empty());

    // The foreign task is never listed, shown, cancelled or retried.
    let b_all = b.list_tasks(list("", &[], "")).await.unwrap();
    assert_eq!(b_all.tasks.len(), 1);
    assert_eq!(code(a.get_task(&foreign).await), Code::NotFound);
    assert_eq!(code(a.retry_task(&foreign).await), Code::NotFound);
    assert_eq!(code(b.retry_task(&mine[1]).await), Code::NotFound);
    let cancelled = a
        .cancel_tasks(pb::CancelTasksRequest::default())
        .await
        .unwrap();
    assert_eq!(cancelled, 0, "tenant a has nothing unfinished");
    let still = b.get_task(&foreign).await.unwrap();
    assert_ne!(status_of(still.status), pb::TaskStatus::Cancelled);

    // Pages across inserts, both orders: no task twice, none missed.
    for _ in 0..7 {
        a.submit("p", "slow", "{}").await.unwrap();
    }
    let before: HashSet<String> = a
        .list_tasks(pb::ListTasksRequest {
            session_id: "p".into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .tasks
        .into_iter()
        .map(|t| t.task_id)
        .collect();
    assert_eq!(before.len(), 7);
    for newest_first in [false, true] {
        let req = pb::ListTasksRequest {
            session_id: "p".into(),
            page_size: 2,
            newest_first,
            ..Default::default()
        };
        let seen = walk(&a, req, "p").await;
        let unique: HashSet<_> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "a task listed twice: {seen:?}");
        assert!(before.is_subset(&unique), "a task missed");
    }

    // Bounds: page_size, tokens, statuses.
    let too_big = pb::ListTasksRequest {
        page_size: 1001,
        ..Default::default()
    };
    assert_eq!(code(a.list_tasks(too_big).await), Code::InvalidArgument);
    let junk = pb::ListTasksRequest {
        page_token: "not-a-token".into(),
        ..Default::default()
    };
    assert_eq!(code(a.list_tasks(junk).await), Code::InvalidArgument);
    let bad_status = pb::ListTasksRequest {
        statuses: vec![42],
        ..Default::default()
    };
    assert_eq!(code(a.list_tasks(bad_status).await), Code::InvalidArgument);
    let finished = pb::CancelTasksRequest {
        statuses: vec![pb::TaskStatus::Succeeded as i32],
        ..Default::default()
    };
    assert_eq!(code(a.cancel_tasks(finished).await), Code::InvalidArgument);

    // Workers and queue depth: each tenant sees its own.
    let workers = a.list_workers("").await.unwrap();
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].worker_name, "gate");
    assert_eq!(workers[0].tools, vec!["echo", "slow"]);
    assert_eq!(workers[0].max_concurrency, 4);
    assert!(workers[0].connected_at.is_some() && workers[0].last_seen.is_some());
    assert!(a.list_workers("nope").await.unwrap().is_empty());
}

#[tokio::test]
async fn queue_depth_runner_and_bulk_cancel_reach_the_workers() {
    let server = Server::start(&[]).await;
    let client = server.client().await;
    let mut worker = server.gate_worker(&["work"], 2).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(client.submit("bulk", "work", "{}").await.unwrap().task_id);
    }
    let other = client.submit("other", "work", "{}").await.unwrap().task_id;
    let first = worker.next().await;
    let second = worker.next().await;

    let tool = &client.list_tools().await.unwrap()[0];
    // Shared mode keeps the queue in the store: not counted here.
    let queued = if on_postgres() { 0 } else { 4 };
    assert_eq!((tool.queued, tool.running, tool.workers), (queued, 2, 1));
    let running = client.get_task(&first.task.task_id).await.unwrap();
    assert_eq!(status_of(running.status), pb::TaskStatus::Running);
    assert_eq!(running.worker_name, "gate");
    assert!(!running.worker_id.is_empty());
    let workers = client.list_workers("work").await.unwrap();
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].running, 2);
    assert_eq!(workers[0].worker_id, running.worker_id);

    let cancelled = client
        .cancel_tasks(pb::CancelTasksRequest {
            session_id: "bulk".into(),
            reason: "test".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // Both running tasks were in "bulk" (submitted first): their workers
    // are told to stop.
    assert_eq!(cancelled, 5);
    within("the first cancel", first.cancel.cancelled()).await;
    within("the second cancel", second.cancel.cancelled()).await;
    for id in &ids {
        let task = client.get_task(id).await.unwrap();
        assert_eq!(status_of(task.status), pb::TaskStatus::Cancelled, "{id}");
    }
    // The other session's task runs on the freed slot.
    let job = worker.next().await;
    assert_eq!(job.task.task_id, other);
    job.succeed("{}");
}

#[tokio::test]
async fn retry_runs_failed_timed_out_and_cancelled_tasks_again() {
    let server = Server::start(&[]).await;
    let client = server.client().await;
    let mut worker = server.gate_worker(&["flaky"], 4).await;
    let mut stream = client.completions("r", 0);

    let failed = client
        .submit("r", "flaky", r#"{"n":1}"#)
        .await
        .unwrap()
        .task_id;
    worker.next().await.fail("tool_error", "boom");
    let ok = client.submit("r", "flaky", "{}").await.unwrap().task_id;
    worker.next().await.succeed("{}");
    let timed_out = client
        .submit_request(pb::SubmitToolRequest {
            session_id: "r".into(),
            tool: "flaky".into(),
            arguments_json: "{}".into(),
            timeout_ms: 50,
            ..Default::default()
        })
        .await
        .unwrap()
        .task_id;
    let hung = worker.next().await;
    take_completions(&mut stream, 3).await;
    drop(hung);
    let running = client.submit("r", "flaky", "{}").await.unwrap().task_id;
    let held = worker.next().await;

    assert_eq!(
        code(client.retry_task(&running).await),
        Code::FailedPrecondition
    );
    assert_eq!(code(client.retry_task(&ok).await), Code::FailedPrecondition);
    assert_eq!(
        code(
            client
                .retry_task("00000000-0000-0000-0000-000000000000")
                .await
        ),
        Code::NotFound
    );
    client.cancel(&running).await.unwrap();
    within("the cancel", held.cancel.cancelled()).await;

    for original in [&failed, &timed_out, &running] {
        let again = client.retry_task(original).await.unwrap();
        let task = again.task.unwrap();
        assert_ne!(&again.task_id, original);
        assert_eq!(&task.retry_of, original);
        assert_eq!(task.session_id, "r");
        let job = worker.next().await;
        assert_eq!(job.task.task_id, again.task_id);
        if original == &failed {
            assert_eq!(job.args()["n"], 1, "same arguments");
        }
        job.succeed("{}");
    }
}

#[tokio::test]
async fn listings_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = if on_postgres() {
        Server::start(&[]).await
    } else {
        Server::start_durable(dir.path(), &[]).await
    };
    let client = server.client().await;
    let mut worker = server.gate_worker(&["t"], 1).await;
    let done = client.submit("s", "t", "{}").await.unwrap().task_id;
    worker.next().await.succeed("{}");
    take_completions(&mut client.completions("s", 0), 1).await;
    let queued = client.submit("s", "t", "{}").await.unwrap().task_id;
    let _running = worker.next().await;
    worker.stop();
    drop(worker);
    server.restart().await;
    let client = server.client().await;
    let listed = client.list_tasks(list("s", &[], "")).await.unwrap();
    let ids: Vec<_> = listed.tasks.iter().map(|t| t.task_id.clone()).collect();
    assert_eq!(ids, vec![done.clone(), queued.clone()]);
    assert_eq!(status_of(listed.tasks[0].status), pb::TaskStatus::Succeeded);
    let unfinished = client
        .list_tasks(list(
            "s",
            &[pb::TaskStatus::Queued, pb::TaskStatus::Running],
            "",
        ))
        .await
        .unwrap();
    assert_eq!(unfinished.tasks.len(), 1);
    assert_eq!(unfinished.tasks[0].task_id, queued);
}

/// `retry_of` is stored: GetTask and ListTasks name the original, also
/// after a restart (the durable store's column, not the live state).
#[tokio::test]
async fn retry_of_is_stored_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = if on_postgres() {
        Server::start(&[]).await
    } else {
        Server::start_durable(dir.path(), &[]).await
    };
    let client = server.client().await;
    let mut worker = server.gate_worker(&["t"], 1).await;
    let original = client.submit("s", "t", "{}").await.unwrap().task_id;
    worker.next().await.fail("boom", "it broke");
    take_completions(&mut client.completions("s", 0), 1).await;
    let again = client.retry_task(&original).await.unwrap().task_id;
    worker.next().await.succeed("{}");
    take_completions(&mut client.completions("s", 1), 1).await;
    worker.stop();
    drop(worker);
    for round in ["before", "after"] {
        if round == "after" {
            server.restart().await;
        }
        let client = server.client().await;
        let got = client.get_task(&again).await.unwrap();
        assert_eq!(got.retry_of, original, "GetTask {round} the restart");
        assert_eq!(client.get_task(&original).await.unwrap().retry_of, "");
        let listed = client.list_tasks(list("s", &[], "")).await.unwrap();
        let pairs: Vec<_> = listed
            .tasks
            .iter()
            .map(|t| (t.task_id.clone(), t.retry_of.clone()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                (original.clone(), String::new()),
                (again.clone(), original.clone())
            ],
            "ListTasks {round} the restart"
        );
    }
}

#[tokio::test]
async fn listings_span_servers_on_postgres() {
    let Some(cluster) = pg::cluster() else {
        assert!(
            !on_postgres(),
            "ERRAND_TEST_STORE=postgres needs PostgreSQL"
        );
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED listings_span_servers_on_postgres: PostgreSQL's binaries are not installed"
        );
        return;
    };
    let url = cluster.create_database().await;
    let one = Server::start_postgres(&url, &[]).await;
    let two = Server::start_postgres(&url, &[]).await;
    let (c1, c2) = (one.client().await, two.client().await);
    let mut worker = two.gate_worker(&["t"], 1).await;
    // Server one learns server two's tool through the store, as the
    // multi-server tests wait for it.
    within("server one to learn the tool", async {
        while c1.list_tools().await.unwrap().is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    let id = c1.submit("x", "t", "{}").await.unwrap().task_id;
    worker.next().await.succeed("{}");
    take_completions(&mut c1.completions("x", 0), 1).await;
    for client in [&c1, &c2] {
        let listed = client.list_tasks(list("x", &[], "")).await.unwrap();
        assert_eq!(listed.tasks.len(), 1);
        assert_eq!(listed.tasks[0].task_id, id);
        assert_eq!(status_of(listed.tasks[0].status), pb::TaskStatus::Succeeded);
    }
    // Bulk cancel through one server reaches a task queued through the other.
    let queued = c2.submit("y", "t", "{}").await.unwrap().task_id;
    let job = worker.next().await;
    assert_eq!(job.task.task_id, queued);
    let n = c1
        .cancel_tasks(pb::CancelTasksRequest {
            session_id: "y".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(n, 1);
    within("the cancel across servers", job.cancel.cancelled()).await;
}

#[tokio::test]
async fn total_size_counts_every_matching_task_not_the_page() {
    let server = Server::start(&["--a2a-listen", "127.0.0.1:0"]).await;
    let a2a = server.a2a_url.clone().expect("the A2A address");
    let client = server.client().await;
    let mut worker = server.gate_worker(&["echo"], 1).await;
    for _ in 0..5 {
        client.submit("t", "echo", "{}").await.unwrap();
    }
    client.submit("u", "echo", "{}").await.unwrap();
    // One succeeded, one running, the rest queued behind it.
    let mut done = client.completions("t", 0);
    worker.next().await.succeed("{}");
    take_completions(&mut done, 1).await;
    let running = worker.next().await;

    let page = |token: String, statuses: &[pb::TaskStatus]| pb::ListTasksRequest {
        session_id: "t".into(),
        statuses: statuses.iter().map(|s| *s as i32).collect(),
        page_size: 2,
        page_token: token,
        ..Default::default()
    };
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let listed = client.list_tasks(page(token, &[])).await.unwrap();
        assert!(listed.tasks.len() <= 2);
        assert_eq!(listed.total_size, 5, "every page counts the whole listing");
        pages += 1;
        if listed.next_page_token.is_empty() {
            break;
        }
        token = listed.next_page_token;
    }
    assert_eq!(pages, 3);
    let queued = client
        .list_tasks(page(String::new(), &[pb::TaskStatus::Queued]))
        .await
        .unwrap();
    assert_eq!(queued.total_size, 3);
    let all = client
        .list_tasks(pb::ListTasksRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((all.tasks.len(), all.total_size), (1, 6), "both sessions");
    let none = client.list_tasks(list("v", &[], "")).await.unwrap();
    assert_eq!(none.total_size, 0);

    // A2A's ListTasks says the same in totalSize.
    let answer = a2a_call(
        &a2a,
        "ListTasks",
        serde_json::json!({"contextId": "t", "pageSize": 2}),
    )
    .await;
    let result = &answer["result"];
    assert_eq!(
        result["tasks"].as_array().map(Vec::len),
        Some(2),
        "{answer}"
    );
    assert_eq!(result["totalSize"], 5, "{answer}");
    assert_eq!(result["pageSize"], 2, "{answer}");
    running.succeed("{}");
}

/// Tools that do not fit one ListTools answer come in pages, and the
/// client (which `errand tools` and `errand mcp --stdio` use) follows every
/// page to the last tool.
#[tokio::test]
async fn list_tools_pages_are_followed_to_the_last_tool() {
    let server = Server::start(&[
        "--max-message-bytes",
        "131072",
        "--max-result-bytes",
        "16384",
        "--max-arguments-bytes",
        "4096",
    ])
    .await;
    // 60 tools of ~4 KB each, from two workers (a Register fits one
    // message): about two answers' worth.
    let tool = |i: usize| pb::Tool {
        name: format!("tool{i:02}"),
        description: "d".repeat(4000),
        input_schema_json: "{}".into(),
        ..Default::default()
    };
    let _a = raw::connect_worker(&server.addr, None, (0..30).map(tool).collect())
        .await
        .unwrap();
    let _b = raw::connect_worker(&server.addr, None, (30..60).map(tool).collect())
        .await
        .unwrap();
    let mut raw = server.raw();
    let first = raw
        .list_tools(pb::ListToolsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(first.tools.len() < 60, "one page held them all");
    assert!(!first.next_page_token.is_empty());
    let listed = server.client().await.list_tools().await.unwrap();
    let names: Vec<_> = listed.iter().map(|t| t.name.clone()).collect();
    let expected: Vec<_> = (0..60).map(|i| format!("tool{i:02}")).collect();
    assert_eq!(names, expected);
}

/// A page of ListTasks holds what fits the message limit, and its token
/// goes on from there: the default page of a few tasks with large
/// arguments failed RESOURCE_EXHAUSTED, and so did `errand tasks`.
#[tokio::test]
async fn a_page_of_large_tasks_stops_at_the_message_limit() {
    let server = Server::start(&[
        "--max-message-bytes",
        "1048576",
        "--max-result-bytes",
        "524288",
    ])
    .await;
    let _worker = server.gate_worker(&["big"], 1).await;
    let client = server.client().await;
    let args = format!(r#"{{"blob":"{}"}}"#, "x".repeat(200_000));
    let mut ids = HashSet::new();
    for _ in 0..8 {
        ids.insert(client.submit("s", "big", &args).await.unwrap().task_id);
    }
    let mut req = pb::ListTasksRequest {
        page_size: 100,
        ..list("s", &[], "")
    };
    let mut seen = HashSet::new();
    let mut pages = 0;
    loop {
        let page = client.list_tasks(req.clone()).await.unwrap();
        pages += 1;
        assert!(!page.tasks.is_empty(), "a page moves on");
        assert_eq!(page.total_size, 8);
        seen.extend(page.tasks.into_iter().map(|t| t.task_id));
        if page.next_page_token.is_empty() {
            break;
        }
        req.page_token = page.next_page_token;
    }
    assert_eq!(seen, ids, "every task, once");
    assert!(pages >= 2, "8 × 200 KB do not fit one 1 MiB message");
    let out = server.cli(&["tasks", "--session", "s"]).await;
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(ids.iter().filter(|id| stdout.contains(*id)).count(), 8);
}
