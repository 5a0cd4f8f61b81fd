//! Joined duplicates (issue 17): identical calls in flight share one run.
use errand_client::pb;
use errand_tests::*;

fn call(args: &str, dedup: pb::DedupPolicy) -> pb::SubmitToolRequest {
    pb::SubmitToolRequest {
        session_id: "s".into(),
        tool: "lookup".into(),
        arguments_json: args.into(),
        dedup: dedup as i32,
        ..Default::default()
    }
}

/// The same arguments, keys in different orders and spacing.
const SAME: [&str; 4] = [
    r#"{"city":"Lyon","days":3,"opts":{"units":"metric","lang":"fr"}}"#,
    r#"{"days":3,"city":"Lyon","opts":{"lang":"fr","units":"metric"}}"#,
    r#"{ "opts": {"units": "metric", "lang": "fr"}, "days": 3, "city": "Lyon" }"#,
    r#"{"opts":{"lang":"fr","units":"metric"},"city":"Lyon","days":3.0}"#,
];

async fn submit_all(server: &Server, dedup: pb::DedupPolicy) -> Vec<pb::SubmitToolResponse> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..20 {
        let mut rpc = server.raw();
        set.spawn(async move { rpc.submit_tool(call(SAME[i % SAME.len()], dedup)).await });
    }
    let mut acks = Vec::new();
    while let Some(done) = within("20 submits", set.join_next()).await {
        acks.push(done.unwrap().unwrap().into_inner());
    }
    acks
}

#[tokio::test]
async fn identical_calls_in_flight_join_one_run_and_one_completion() {
    let server = Server::start(&[]).await;
    let mut worker = server.gate_worker(&["lookup"], 20).await;
    let client = server.client().await;
    let mut stream = client.completions("s", 0);

    let acks = submit_all(&server, pb::DedupPolicy::JoinInFlight).await;
    let id = &acks[0].task_id;
    assert!(acks.iter().all(|a| &a.task_id == id), "one task for all 20");
    let joined: Vec<&pb::SubmitToolResponse> = acks.iter().filter(|a| a.joined).collect();
    assert_eq!(joined.len(), 19, "19 joined");
    let first = acks.iter().find(|a| !a.joined).unwrap();
    assert!(!first.ack.contains("already running"), "{}", first.ack);
    for a in &joined {
        assert!(!a.deduplicated);
        for needle in ["already running", id.as_str(), "lookup", "fabricate"] {
            assert!(a.ack.contains(needle), "{needle}: {}", a.ack);
        }
    }
    // One run.
    let job = worker.next().await;
    assert_eq!(job.task.task_id, *id);
    job.succeed(r#"{"temp":21}"#);
    let done = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!((done.seq, done.task_id.as_str()), (1, id.as_str()));
    assert!(worker.try_next().is_none(), "no second run");

    // A finished call is never joined: the same call runs again.
    let again = client
        .submit_request(call(SAME[1], pb::DedupPolicy::JoinInFlight))
        .await
        .unwrap();
    assert!(!again.joined);
    assert_ne!(again.task_id, *id);
    let job = worker.next().await;
    assert_eq!(job.task.task_id, again.task_id);
    job.succeed("1");
    let next = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!(
        (next.seq, next.task_id.as_str()),
        (2, again.task_id.as_str()),
        "one completion for the 20 joined calls"
    );

    // An idempotency key is checked first: a repeat is deduplicated, not joined.
    let mut keyed = call(SAME[0], pb::DedupPolicy::JoinInFlight);
    keyed.idempotency_key = "k1".into();
    let k1 = client.submit_request(keyed.clone()).await.unwrap();
    let k2 = client.submit_request(keyed).await.unwrap();
    assert_eq!(k1.task_id, k2.task_id);
    assert!(k2.deduplicated && !k2.joined);
    let mut other_key = call(SAME[2], pb::DedupPolicy::JoinInFlight);
    other_key.idempotency_key = "k2".into();
    let k3 = client.submit_request(other_key).await.unwrap();
    assert!(
        k3.joined && !k3.deduplicated,
        "a new key joins the call in flight"
    );
    assert_eq!(k3.task_id, k1.task_id);
    worker.next().await.succeed("2");
    take_completions(&mut stream, 1).await;
}

#[tokio::test]
async fn with_dedup_off_every_call_runs() {
    let server = Server::start(&[]).await;
    let mut worker = server.gate_worker(&["lookup"], 20).await;
    let acks = submit_all(&server, pb::DedupPolicy::Off).await;
    let ids: std::collections::HashSet<&str> = acks.iter().map(|a| a.task_id.as_str()).collect();
    assert_eq!(ids.len(), 20);
    assert!(acks.iter().all(|a| !a.joined));
    for _ in 0..20 {
        worker.next().await.succeed("1");
    }
    // Unset is the tool's policy: off.
    let mut rpc = server.raw();
    let a = rpc.submit_tool(call(SAME[0], pb::DedupPolicy::Unspecified));
    let a = a.await.unwrap().into_inner();
    let b = rpc.submit_tool(call(SAME[0], pb::DedupPolicy::Unspecified));
    let b = b.await.unwrap().into_inner();
    assert_ne!(a.task_id, b.task_id);
    let mut bad = call(SAME[0], pb::DedupPolicy::Off);
    bad.dedup = 7;
    let e = server.raw().submit_tool(bad).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("DedupPolicy"), "{}", e.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_sharing_a_database_join_one_call_between_them() {
    let Some(cluster) = pg::cluster() else {
        eprintln!("skipped: PostgreSQL's binaries are not installed");
        return;
    };
    let url = cluster.create_database().await;
    let a = Server::start_postgres(&url, &[]).await;
    let b = Server::start_postgres(&url, &[]).await;
    // A worker on each server: each knows the tool first-hand.
    let mut on_a = a.gate_worker(&["lookup"], 20).await;
    let mut on_b = b.gate_worker(&["lookup"], 20).await;
    let b_client = b.client().await;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..20 {
        let mut rpc = if i % 2 == 0 { a.raw() } else { b.raw() };
        set.spawn(async move {
            rpc.submit_tool(call(SAME[i % SAME.len()], pb::DedupPolicy::JoinInFlight))
                .await
        });
    }
    let mut acks = Vec::new();
    while let Some(done) = within("20 submits", set.join_next()).await {
        acks.push(done.unwrap().unwrap().into_inner());
    }
    let ids: std::collections::HashSet<&str> = acks.iter().map(|a| a.task_id.as_str()).collect();
    assert_eq!(ids.len(), 1, "one task across both servers");
    assert_eq!(acks.iter().filter(|a| a.joined).count(), 19);
    let job = tokio::select! {
        job = on_a.next() => job,
        job = on_b.next() => job,
    };
    assert_eq!(job.task.task_id, acks[0].task_id);
    job.succeed("1");
    let mut stream = b_client.completions("s", 0);
    let done = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!(
        (done.seq, done.task_id.as_str()),
        (1, acks[0].task_id.as_str())
    );
    assert!(
        on_a.try_next().is_none() && on_b.try_next().is_none(),
        "one run"
    );
}

/// A submit that adds no task (a retried idempotency key, a join of an
/// identical call in flight) is answered at the session's and the tenant's
/// limits too: both were refused RESOURCE_EXHAUSTED there, so a client
/// whose first answer was lost was told its running call failed.
#[tokio::test]
async fn repeats_and_joins_are_answered_at_the_pending_limits() {
    for flag in ["--max-pending-per-session", "--max-pending-per-tenant"] {
        let server = Server::start(&[flag, "2"]).await;
        let _worker = server.gate_worker(&["lookup"], 1).await;
        let client = server.client().await;
        let keyed = pb::SubmitToolRequest {
            idempotency_key: "K1".into(),
            ..call(SAME[0], pb::DedupPolicy::Off)
        };
        let first = client.submit_request(keyed.clone()).await.unwrap();
        let join = call(SAME[1], pb::DedupPolicy::JoinInFlight);
        let joinable = client.submit_request(join.clone()).await.unwrap();
        assert!(!joinable.joined, "{flag}: the first joinable call runs");

        let again = client.submit_request(keyed).await.unwrap();
        assert_eq!(again.task_id, first.task_id, "{flag}");
        assert!(again.deduplicated, "{flag}");
        let joined = client
            .submit_request(call(SAME[2], pb::DedupPolicy::JoinInFlight))
            .await
            .unwrap();
        assert_eq!(joined.task_id, joinable.task_id, "{flag}");
        assert!(joined.joined, "{flag}");

        if flag == "--max-pending-per-tenant" && on_postgres() {
            // A shared store counts a session's tasks across servers, but
            // the tenant's only as each server holds them (noted).
            continue;
        }
        // A call that would add a task is still refused.
        let err = client
            .submit_request(call("{}", pb::DedupPolicy::Off))
            .await;
        let err = err.unwrap_err();
        assert_eq!(
            err.code(),
            Some(tonic::Code::ResourceExhausted),
            "{flag}: {err}"
        );
    }
}

/// An idempotency key names one call. A retried submit (the same tool, the
/// same arguments in any spacing or key order) gets the first task; another
/// call under the key is INVALID_ARGUMENT saying which part differs, on
/// every path that finds the earlier task: the insert, a session without
/// room for a new task, a tool that is not known.
#[tokio::test]
async fn an_idempotency_key_reused_for_another_call_is_refused() {
    fn keyed(session: &str, tool: &str, args: &str) -> pb::SubmitToolRequest {
        pb::SubmitToolRequest {
            session_id: session.into(),
            tool: tool.into(),
            arguments_json: args.into(),
            idempotency_key: "k1".into(),
            ..Default::default()
        }
    }
    let server = Server::start(&["--max-pending-per-session", "1"]).await;
    let mut worker = server.gate_worker(&["lookup", "other"], 1).await;
    let mut rpc = server.raw();
    // "roomy": its first task ends, so a repeat meets it at the insert;
    // "full": its first task holds the session's only room.
    let done = rpc.submit_tool(keyed("roomy", "lookup", SAME[0])).await;
    let done = done.unwrap().into_inner();
    worker.next().await.succeed("1");
    let held = rpc.submit_tool(keyed("full", "lookup", SAME[0])).await;
    let held = held.unwrap().into_inner();
    for (session, first) in [("roomy", &done), ("full", &held)] {
        let again = rpc.submit_tool(keyed(session, "lookup", SAME[2])).await;
        let again = again.unwrap().into_inner();
        assert!(again.deduplicated, "{session}: {again:?}");
        assert_eq!(again.task_id, first.task_id, "{session}");
        for (tool, args, differs) in [
            ("lookup", r#"{"city":"Paris"}"#, "with other arguments"),
            ("other", SAME[0], r#"for tool "lookup""#),
            ("unknown", SAME[0], r#"for tool "lookup""#),
        ] {
            let s = rpc.submit_tool(keyed(session, tool, args)).await;
            let s = s.unwrap_err();
            assert_eq!(
                s.code(),
                tonic::Code::InvalidArgument,
                "{session} {tool}: {s:?}"
            );
            for part in [r#"idempotency_key "k1""#, differs, &first.task_id] {
                assert!(
                    s.message().contains(part),
                    "{session} {tool}: {}",
                    s.message()
                );
            }
        }
    }
}
