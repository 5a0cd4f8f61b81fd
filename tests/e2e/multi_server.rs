//! Several servers on one PostgreSQL database acting as one service: tasks
//! submitted anywhere run on workers connected anywhere, and every session's
//! completions reach streams on every server in seq order, none missed and
//! none twice, while one server is SIGKILLed for good and another is killed
//! and restarted.
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use errand_client::{
    Client, endpoint, pb,
    worker::{self, Handler, WorkerConfig},
};
use errand_tests::{pg, raw, *};
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

const TASKS: usize = 3000;
const SESSIONS: usize = 6;

/// Sleeps as long as the task asks, counts every run of every task.
struct Sleeper {
    runs: Arc<Mutex<HashMap<String, u32>>>,
}

#[async_trait::async_trait]
impl Handler for Sleeper {
    async fn run(
        &self,
        task: pb::Assignment,
        cancel: CancellationToken,
    ) -> Result<String, pb::ToolError> {
        *self
            .runs
            .lock()
            .unwrap()
            .entry(task.task_id.clone())
            .or_default() += 1;
        let args: serde_json::Value = serde_json::from_str(&task.arguments_json).unwrap();
        let ms = args["ms"].as_u64().unwrap_or(0);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
            _ = cancel.cancelled() => {}
        }
        Ok(format!(r#"{{"i":{}}}"#, args["i"]))
    }
}

fn start_worker(addr: &str, runs: &Arc<Mutex<HashMap<String, u32>>>) -> CancellationToken {
    let shutdown = CancellationToken::new();
    let config = WorkerConfig {
        name: format!("sleeper@{addr}"),
        tools: vec![pb::Tool {
            name: "sleep".into(),
            description: "Sleeps.".into(),
            ..Default::default()
        }],
        max_concurrency: 16,
        token: None,
    };
    tokio::spawn(worker::run(
        endpoint(addr).unwrap().connect_lazy(),
        config,
        Arc::new(Sleeper { runs: runs.clone() }),
        shutdown.clone(),
        |_| {},
    ));
    shutdown
}

/// Mixed latencies: mostly quick, some slower, a few slow.
fn latency_ms(i: usize) -> u64 {
    match i % 20 {
        0 => 300 + (i % 7) as u64 * 70,
        1..=5 => 20 + (i % 9) as u64 * 10,
        _ => (i % 5) as u64,
    }
}

/// Follows a session on one server; records every completion it gets.
fn follow(
    client: Client,
    session: String,
    seen: Arc<Mutex<Vec<pb::Completion>>>,
    progress: watch::Sender<usize>,
) {
    tokio::spawn(async move {
        let mut stream = client.completions(&session, 0);
        while let Some(Ok(c)) = stream.next().await {
            let n = {
                let mut seen = seen.lock().unwrap();
                seen.push(c);
                seen.len()
            };
            progress.send_replace(n);
        }
    });
}

/// Checks one stream's record: seqs 1..=n in order, each task once.
fn check_stream(
    name: &str,
    seen: &[pb::Completion],
    submitted: &HashSet<String>,
) -> (usize, usize) {
    let seqs: Vec<u64> = seen.iter().map(|c| c.seq).collect();
    let want: Vec<u64> = (1..=seen.len() as u64).collect();
    assert_eq!(seqs, want, "{name}: seqs out of order or with a gap");
    let mut ids = HashSet::new();
    let duplicated = seen
        .iter()
        .filter(|c| !ids.insert(c.task_id.clone()))
        .count();
    let lost = submitted.iter().filter(|id| !ids.contains(*id)).count();
    (lost, duplicated)
}

/// Waits until `count` reaches `n`. Each step is one event (a submit
/// acknowledged, a completion received), bounded as every event is: the
/// count must keep moving (a stall fails the test), however long a thousand
/// of them take on a loaded machine.
async fn reaches(count: &mut watch::Receiver<usize>, n: usize, what: &str) {
    while *count.borrow_and_update() < n {
        within(what, count.changed())
            .await
            .unwrap_or_else(|_| panic!("{what}: its sender is gone"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_one_database_survive_a_kill_and_a_restart() {
    let Some(cluster) = pg::cluster() else {
        eprintln!("skipped: PostgreSQL's binaries are not installed");
        return;
    };
    let url = cluster.create_database().await;
    let flags = ["--lease-ms", "1500"];
    let mut a = Server::start_postgres(&url, &flags).await;
    let mut b = Server::start_postgres(&url, &flags).await;
    let c = Server::start_postgres(&url, &flags).await;
    let addrs = [a.addr.clone(), b.addr.clone(), c.addr.clone()];

    // Workers on A (which dies for good) and B (restarted) and C.
    let runs = Arc::new(Mutex::new(HashMap::new()));
    let workers: Vec<_> = [&a.addr, &a.addr, &b.addr, &b.addr, &c.addr]
        .into_iter()
        .map(|addr| start_worker(addr, &runs))
        .collect();
    // The tool is known on every server once each has seen the others'.
    for addr in &addrs {
        let client = Client::connect(addr).await.unwrap();
        within("the tool to be known on every server", async {
            loop {
                let tools = client.list_tools().await.unwrap();
                if tools.iter().any(|t| t.name == "sleep" && t.workers == 5) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
    }

    // Streams: every session followed on C (never killed) and on B
    // (restarted: its client resumes after the last seq it got).
    let sessions: Vec<String> = (0..SESSIONS).map(|i| format!("agent-{i}")).collect();
    let mut on_c = Vec::new();
    let mut on_b = Vec::new();
    let mut progress = Vec::new();
    for s in &sessions {
        for (server, into) in [(&c, &mut on_c), (&b, &mut on_b)] {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let (tx, rx) = watch::channel(0);
            follow(server.client().await, s.clone(), seen.clone(), tx);
            into.push(seen);
            if std::ptr::eq(server, &c) {
                progress.push(rx);
            }
        }
    }

    // Agents: one per session, submitting through "its" server and, when
    // that one fails, through the next with the same idempotency key.
    let (count_tx, mut count_rx) = watch::channel(0usize);
    let count_tx = Arc::new(count_tx);
    let started = Instant::now();
    let mut agents = Vec::new();
    for (k, session) in sessions.iter().enumerate() {
        let addrs = addrs.clone();
        let session = session.clone();
        let count_tx = count_tx.clone();
        agents.push(tokio::spawn(async move {
            let clients: Vec<Client> = addrs
                .iter()
                .map(|a| Client::from_channel(endpoint(a).unwrap().connect_lazy()))
                .collect();
            let mut ids = Vec::new();
            for i in (k..TASKS).step_by(SESSIONS) {
                let request = pb::SubmitToolRequest {
                    session_id: session.clone(),
                    tool: "sleep".into(),
                    arguments_json: format!(r#"{{"i":{i},"ms":{}}}"#, latency_ms(i)),
                    idempotency_key: format!("task-{i}"),
                    ..Default::default()
                };
                let mut tries = 0;
                let ack = loop {
                    let client = &clients[(k + tries) % clients.len()];
                    match client.submit_request(request.clone()).await {
                        Ok(ack) => break ack,
                        Err(e) => {
                            tries += 1;
                            assert!(tries < 200, "no server took task {i}: {e}");
                            if tries % clients.len() == 0 {
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                };
                ids.push(ack.task_id);
                count_tx.send_modify(|n| *n += 1);
            }
            ids
        }));
    }

    // Faults, at set points of the run: A is SIGKILLed for good a third of
    // the way in; B is SIGKILLed and restarted two thirds in.
    reaches(
        &mut count_rx,
        TASKS / 3,
        "the next submit to be acknowledged",
    )
    .await;
    a.kill().await;
    reaches(
        &mut count_rx,
        2 * TASKS / 3,
        "the next submit to be acknowledged",
    )
    .await;
    b.restart().await;

    let mut submitted = HashSet::new();
    let mut per_session = Vec::new();
    let mut session_ids = Vec::new();
    for agent in agents {
        let ids = agent.await.unwrap();
        per_session.push(ids.len());
        submitted.extend(ids.iter().cloned());
        session_ids.push(ids.into_iter().collect::<HashSet<String>>());
    }
    let submit_secs = started.elapsed().as_secs_f64();
    // Every session's stream on C reaches its count of tasks.
    for (rx, want) in progress.iter_mut().zip(&per_session) {
        reaches(rx, *want, "the next completion on C").await;
    }
    let total_secs = started.elapsed().as_secs_f64();

    // The record: read back from C, and what each live stream received.
    let client = c.client().await;
    let mut lost = 0;
    let mut duplicated = 0;
    let mut completed = 0;
    for (i, session) in sessions.iter().enumerate() {
        let session_ids = &session_ids[i];
        let (l, d) = check_stream(
            &format!("{session} on C"),
            &on_c[i].lock().unwrap(),
            session_ids,
        );
        lost += l;
        duplicated += d;
        completed += on_c[i].lock().unwrap().len();
        // Let B's resumed stream catch up, then it must match C's exactly.
        let want = on_c[i].lock().unwrap().len();
        within("B's stream to catch up", async {
            while on_b[i].lock().unwrap().len() < want {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        let (_, d) = check_stream(
            &format!("{session} on B"),
            &on_b[i].lock().unwrap(),
            session_ids,
        );
        duplicated += d;
        let replay = take_completions(&mut client.completions(session, 0), want).await;
        let (_, d) = check_stream(&format!("{session} replayed"), &replay, session_ids);
        duplicated += d;
        let b_ids: Vec<_> = on_b[i]
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.task_id.clone())
            .collect();
        let c_ids: Vec<_> = replay.iter().map(|c| c.task_id.clone()).collect();
        assert_eq!(
            b_ids, c_ids,
            "{session}: B and C delivered different sequences"
        );
    }
    let delivered: HashSet<String> = on_c
        .iter()
        .flat_map(|s| {
            s.lock()
                .unwrap()
                .iter()
                .map(|c| c.task_id.clone())
                .collect::<Vec<_>>()
        })
        .collect();
    lost += submitted
        .iter()
        .filter(|id| !delivered.contains(*id))
        .count();
    let reruns: u32 = runs
        .lock()
        .unwrap()
        .values()
        .map(|n| n.saturating_sub(1))
        .sum();
    println!(
        "submitted {} / completed {completed} / lost {lost} / duplicated deliveries {duplicated} / \
         re-run tools {reruns}  (3 servers, A killed, B restarted; submits {submit_secs:.1} s, \
         all completions {total_secs:.1} s)",
        submitted.len()
    );
    assert_eq!(submitted.len(), TASKS);
    assert_eq!(lost, 0, "lost completions");
    assert_eq!(duplicated, 0, "duplicated deliveries");
    assert_eq!(completed, TASKS, "completions on C");
    for w in workers {
        w.cancel();
    }
}

#[tokio::test]
async fn a_database_outage_mid_run_loses_nothing_acknowledged() {
    let Some(bin) = pg::bin_dir() else {
        eprintln!("skipped: PostgreSQL's binaries are not installed");
        return;
    };
    // A cluster of its own, to stop and start again.
    let cluster = pg::Cluster::start(&bin, &[("fsync", "off")]);
    let url = cluster.create_database().await;
    let server = Server::start_postgres(&url, &["--lease-ms", "1500"]).await;
    let mut worker = server.gate_worker(&["t"], 4).await;
    let client = server.client().await;
    let mut stream = client.completions("s", 0);
    let acked = client.submit("s", "t", r#"{"n":1}"#).await.unwrap();
    let job = worker.next().await;

    cluster.stop();
    // While the database is down: a submit is refused with UNAVAILABLE
    // (after the store's retries), and a result that arrives waits.
    let refused = client.submit("s", "t", r#"{"n":2}"#).await;
    assert_eq!(code(refused), tonic::Code::Unavailable);
    job.succeed(r#"{"n":1}"#);

    cluster.restart();
    // The server did not exit: the waiting completion is stored and
    // delivered, and new work flows again.
    let first = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!(
        (first.seq, first.task_id.as_str()),
        (1, acked.task_id.as_str())
    );
    let again = within(
        "a submit after the outage",
        client.submit("s", "t", r#"{"n":3}"#),
    )
    .await
    .unwrap();
    worker.next().await.succeed(r#"{"n":3}"#);
    let second = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!(
        (second.seq, second.task_id.as_str()),
        (2, again.task_id.as_str())
    );
    cluster.stop();
}

#[tokio::test]
async fn submit_on_one_run_on_another_cancel_through_a_third() {
    let Some(cluster) = pg::cluster() else {
        eprintln!("skipped: PostgreSQL's binaries are not installed");
        return;
    };
    let url = cluster.create_database().await;
    let a = Server::start_postgres(&url, &[]).await;
    let b = Server::start_postgres(&url, &[]).await;
    let c = Server::start_postgres(&url, &[]).await;
    let mut worker = b.gate_worker(&["research"], 1).await;
    let (on_a, on_c) = (a.client().await, c.client().await);
    within("A to learn B's tool", async {
        while on_a.list_tools().await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let mut stream = on_c.completions("s", 0);

    // Submitted through A, run by B's worker, completed on C's stream.
    let first = on_a.submit("s", "research", r#"{"q":1}"#).await.unwrap();
    let job = worker.next().await;
    assert_eq!(job.task.task_id, first.task_id);
    job.succeed(r#"{"a":1}"#);
    let done = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!(
        (done.seq, done.task_id.as_str()),
        (1, first.task_id.as_str())
    );
    assert_eq!(status_of(done.status), pb::TaskStatus::Succeeded);

    // Running on B, cancelled through C: B's worker is told, the stream
    // gets one CANCELLED completion, and the late result changes nothing.
    let second = on_a.submit("s", "research", r#"{"q":2}"#).await.unwrap();
    let job = worker.next().await;
    let cancelled = on_c.cancel(&second.task_id).await.unwrap();
    assert_eq!(status_of(cancelled.status), pb::TaskStatus::Cancelled);
    within("B's worker to be told", job.cancel.cancelled()).await;
    job.succeed(r#"{"a":"late"}"#);
    let done = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!(
        (done.seq, done.task_id.as_str()),
        (2, second.task_id.as_str())
    );
    assert_eq!(status_of(done.status), pb::TaskStatus::Cancelled);
    let task = on_a.get_task(&second.task_id).await.unwrap();
    assert_eq!(status_of(task.status), pb::TaskStatus::Cancelled);

    // B's worker is free again: the next task runs there.
    let third = on_c.submit("s", "research", r#"{"q":3}"#).await.unwrap();
    let job = worker.next().await;
    assert_eq!(job.task.task_id, third.task_id);
    job.succeed("{}");
    let done = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!(done.seq, 3);
}

#[tokio::test]
async fn a_cancel_through_another_server_keeps_its_reason() {
    let Some(cluster) = pg::cluster() else {
        eprintln!("skipped: PostgreSQL's binaries are not installed");
        return;
    };
    let url = cluster.create_database().await;
    // Leases long enough that no renewal finds the task gone before the
    // cancel's notification tells B (that path says no reason).
    let flags = ["--lease-ms", "60000"];
    let a = Server::start_postgres(&url, &flags).await;
    let b = Server::start_postgres(&url, &flags).await;
    let mut worker = raw::connect_worker(&b.addr, None, vec![raw::tool("research", "")])
        .await
        .unwrap();
    let on_b = b.client().await;
    let mut stream = a.client().await.completions("s", 0);

    // Submitted and running on B, cancelled through A with a reason.
    let id = on_b.submit("s", "research", "{}").await.unwrap().task_id;
    let assigned = loop {
        let command = within("an assignment", worker.commands.message())
            .await
            .unwrap()
            .expect("the worker's stream ended");
        if let Some(pb::worker_command::Kind::Assignment(a)) = command.kind {
            break a;
        }
    };
    assert_eq!(assigned.task_id, id);
    let cancelled = a
        .client()
        .await
        .cancel_with_reason(&id, "the user changed their mind")
        .await
        .unwrap();
    assert_eq!(status_of(cancelled.status), pb::TaskStatus::Cancelled);

    // B's worker hears the reason, as on one server.
    let cancel = loop {
        let command = within("a CancelAssignment", worker.commands.message())
            .await
            .unwrap()
            .expect("the worker's stream ended");
        if let Some(pb::worker_command::Kind::Cancel(c)) = command.kind {
            break c;
        }
    };
    assert_eq!(
        (cancel.task_id.as_str(), cancel.reason.as_str()),
        (id.as_str(), "cancelled: the user changed their mind")
    );
    // And the completion's message carries it, on every server.
    let done = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!(done.task_id, id);
    assert_eq!(status_of(done.status), pb::TaskStatus::Cancelled);
    assert!(
        done.message.contains("the user changed their mind"),
        "{}",
        done.message
    );
    let task = on_b.get_task(&id).await.unwrap();
    let Some(pb::task::Outcome::Error(error)) = task.outcome else {
        panic!("no error on the cancelled task: {task:?}");
    };
    assert_eq!(
        error.message, "cancelled by the client: the user changed their mind",
        "{error:?}"
    );
}

#[tokio::test]
async fn a_call_failed_by_the_reaper_falls_back() {
    let Some(cluster) = pg::cluster() else {
        eprintln!("skipped: PostgreSQL's binaries are not installed");
        return;
    };
    let url = cluster.create_database().await;
    let flags = ["--lease-ms", "600", "--max-attempts", "1"];
    let mut a = Server::start_postgres(&url, &flags).await;
    let b = Server::start_postgres(&url, &flags).await;
    let mut primary = a.gate_worker(&["primary"], 1).await;
    // A knows the fallback tool (a submit names a known one); B runs it.
    let _known_on_a = a.gate_worker(&["backup"], 1).await;
    let mut backup = b.gate_worker(&["backup"], 1).await;
    let mut stream = b.client().await.completions("s", 0);

    let ack = a
        .client()
        .await
        .submit_request(pb::SubmitToolRequest {
            session_id: "s".into(),
            tool: "primary".into(),
            arguments_json: r#"{"q":3}"#.into(),
            fallback: Some(pb::Fallback {
                kind: Some(pb::fallback::Kind::Tool("backup".into())),
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let job = primary.next().await;
    assert_eq!(job.task.task_id, ack.task_id);
    // A dies holding its only attempt: B's reaper fails the call when the
    // lease expires, and the fallback answers it.
    a.kill().await;
    let run = backup.next().await;
    assert_eq!(run.task.tool, "backup");
    assert_eq!(run.task.arguments_json, r#"{"q":3}"#);
    run.succeed(r#"{"from":"backup"}"#);
    let c = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!(c.task_id, ack.task_id);
    assert_eq!(status_of(c.status), pb::TaskStatus::Succeeded, "{c:?}");
    let used = c.fallback.as_ref().expect("FallbackUsed");
    assert_eq!(used.tool, "backup");
    assert_eq!(status_of(used.primary_status), pb::TaskStatus::Failed);
    assert_eq!(used.primary_error.as_ref().unwrap().code, "worker_lost");
    drop(job);
}

#[tokio::test]
async fn cancelling_a_call_through_another_server_stops_its_fallback_run_with_the_reason() {
    let Some(cluster) = pg::cluster() else {
        eprintln!("skipped: PostgreSQL's binaries are not installed");
        return;
    };
    let url = cluster.create_database().await;
    // As above: no lease renewal races the cancel's notification.
    let flags = ["--lease-ms", "60000"];
    let a = Server::start_postgres(&url, &flags).await;
    let b = Server::start_postgres(&url, &flags).await;
    let mut worker = raw::connect_worker(
        &b.addr,
        None,
        vec![raw::tool("primary", ""), raw::tool("backup", "")],
    )
    .await
    .unwrap();
    let mut stream = a.client().await.completions("s", 0);
    let ack = b
        .client()
        .await
        .submit_request(pb::SubmitToolRequest {
            session_id: "s".into(),
            tool: "primary".into(),
            arguments_json: "{}".into(),
            fallback: Some(pb::Fallback {
                kind: Some(pb::fallback::Kind::Tool("backup".into())),
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let pb::worker_command::Kind::Assignment(primary) = next_command(&mut worker).await else {
        panic!("expected the primary's assignment");
    };
    assert_eq!(primary.task_id, ack.task_id);
    worker
        .tx
        .send(pb::WorkerMessage {
            kind: Some(pb::worker_message::Kind::Result(pb::TaskResult {
                task_id: primary.task_id.clone(),
                attempt: primary.attempt,
                outcome: Some(pb::task_result::Outcome::Error(pb::ToolError {
                    code: "upstream_down".into(),
                    message: "503".into(),
                })),
                ..Default::default()
            })),
        })
        .await
        .unwrap();
    let pb::worker_command::Kind::Assignment(run) = next_command(&mut worker).await else {
        panic!("expected the fallback run's assignment");
    };
    assert_eq!(run.tool, "backup");

    // The call is cancelled through A while its run runs on B: B's worker
    // hears why at once, as the call's own worker would.
    let cancelled = a
        .client()
        .await
        .cancel_with_reason(&ack.task_id, "no longer needed")
        .await
        .unwrap();
    assert_eq!(status_of(cancelled.status), pb::TaskStatus::Cancelled);
    let pb::worker_command::Kind::Cancel(cancel) = next_command(&mut worker).await else {
        panic!("expected the run's CancelAssignment");
    };
    assert_eq!(
        (cancel.task_id.as_str(), cancel.reason.as_str()),
        (run.task_id.as_str(), "cancelled: no longer needed")
    );
    let done = take_completions(&mut stream, 1).await.remove(0);
    assert_eq!(done.task_id, ack.task_id);
    assert_eq!(status_of(done.status), pb::TaskStatus::Cancelled);
    assert!(
        done.message.contains("no longer needed"),
        "{}",
        done.message
    );
}

async fn next_command(worker: &mut raw::RawWorker) -> pb::worker_command::Kind {
    within("a command", worker.commands.message())
        .await
        .unwrap()
        .expect("the worker's stream ended")
        .kind
        .expect("a command")
}

/// A server cut off from the database for longer than its lease, while
/// another is not, loses its running task to the other's reaper (that
/// server really could not renew): its worker is told why, with the
/// reason `lease_lost: ...`, not a plain "cancelled" that reads as a
/// client's cancel, and the task runs again as a new attempt.
#[tokio::test]
async fn a_task_reclaimed_from_a_cut_off_server_tells_its_worker_lease_lost() {
    let Some(cluster) = pg::cluster() else {
        eprintln!("skipped: PostgreSQL's binaries are not installed");
        return;
    };
    let url = cluster.create_database().await;
    let (proxied, freeze) = pg::freezable(&url).await;
    let flags = ["--lease-ms", "900", "--database-timeout-ms", "1000"];
    let a = Server::start_postgres(&proxied, &flags).await;
    let _b = Server::start_postgres(&url, &flags).await;
    let mut worker = raw::connect_worker(&a.addr, None, vec![raw::tool("research", "")])
        .await
        .unwrap();
    let id = a
        .client()
        .await
        .submit("s", "research", "{}")
        .await
        .unwrap()
        .task_id;
    let first = loop {
        if let pb::worker_command::Kind::Assignment(job) = next_command(&mut worker).await {
            break job;
        }
    };
    assert_eq!((first.task_id.as_str(), first.attempt), (id.as_str(), 1));
    // A is cut off for three leases; B, in contact, reclaims the task.
    freeze.send_replace(true);
    tokio::time::sleep(Duration::from_millis(2_700)).await;
    freeze.send_replace(false);
    let cancel = loop {
        if let pb::worker_command::Kind::Cancel(c) = next_command(&mut worker).await {
            break c;
        }
    };
    assert_eq!(cancel.task_id, id);
    assert!(
        cancel.reason.starts_with("lease_lost: "),
        "{:?}",
        cancel.reason
    );
    // It runs again, as a new attempt.
    let again = loop {
        if let pb::worker_command::Kind::Assignment(job) = next_command(&mut worker).await {
            break job;
        }
    };
    assert_eq!((again.task_id.as_str(), again.attempt), (id.as_str(), 2));
}

/// Connects a raw worker serving `tool` to `addr` as soon as the servers
/// accept its definition: a tool whose last worker left another server
/// stays served there until that server withdraws it.
async fn register_when_accepted(addr: &str, tool: pb::Tool) -> raw::RawWorker {
    within("the definition to be accepted", async {
        loop {
            match raw::connect_worker(addr, None, vec![tool.clone()]).await {
                Ok(w) => return w,
                Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(s) => panic!("registration failed: {s}"),
            }
        }
    })
    .await
}

/// Waits until `client` lists tool `name` with input schema `schema`.
async fn listed_with(client: &Client, name: &str, schema: &str) {
    within("the definition to be listed", async {
        loop {
            let tools = client.list_tools().await.unwrap();
            if tools
                .iter()
                .any(|t| t.name == name && t.input_schema_json == schema)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// One definition per tool across the servers: while a worker on any
/// server serves a tool, a different definition is refused on every
/// server (as on one); once none serves it, a new one replaces it on all.
#[tokio::test]
async fn a_different_definition_is_refused_while_any_server_serves_the_tool() {
    let Some(cluster) = pg::cluster() else {
        eprintln!("skipped: PostgreSQL's binaries are not installed");
        return;
    };
    let url = cluster.create_database().await;
    let a = Server::start_postgres(&url, &[]).await;
    let b = Server::start_postgres(&url, &[]).await;
    let original = pb::Tool {
        name: "t".into(),
        description: "Look a term up.".into(),
        input_schema_json: r#"{"type":"object"}"#.into(),
        ..Default::default()
    };
    let different = pb::Tool {
        description: "Different".into(),
        input_schema_json: r#"{"type":"object","required":["zzz"]}"#.into(),
        ..original.clone()
    };
    let first = raw::connect_worker(&a.addr, None, vec![original.clone()])
        .await
        .unwrap();
    // At once, before B has heard of A's worker.
    let refused = raw::connect_worker(&b.addr, None, vec![different.clone()])
        .await
        .err()
        .expect("a different definition is refused while A's worker serves it");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains("`t`")
            && refused.message().contains("description")
            && refused.message().contains("input_schema_json"),
        "{}",
        refused.message()
    );
    // The same definition is welcome on B; both servers list it, and a
    // submit through B is checked against it.
    let same = raw::connect_worker(&b.addr, None, vec![original.clone()])
        .await
        .unwrap();
    let (on_a, on_b) = (a.client().await, b.client().await);
    listed_with(&on_a, "t", &original.input_schema_json).await;
    listed_with(&on_b, "t", &original.input_schema_json).await;
    on_b.submit("s", "t", r#"{"term":"a"}"#).await.unwrap();

    // Both leave; nothing serves `t` any more, and a new definition
    // replaces the old one on every server.
    for mut w in [first, same] {
        drop(w.tx);
        while let Ok(Some(_)) = within("the worker's departure", w.commands.message()).await {}
    }
    let _new = register_when_accepted(&b.addr, different.clone()).await;
    listed_with(&on_a, "t", &different.input_schema_json).await;
    // Now the old definition is the different one, on A too.
    let refused = raw::connect_worker(&a.addr, None, vec![original])
        .await
        .err()
        .expect("the old definition is refused while B's worker serves the new one");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
}
