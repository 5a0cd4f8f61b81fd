//! Nothing accepted is lost: the durable store across SIGKILL and restart,
//! retention, acknowledgement and idempotent submits.
use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use errand_client::{
    Client, endpoint, pb,
    worker::{self, Handler, WorkerConfig},
};
use errand_tests::*;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_restart_keeps_seq_numbering_and_a_stream_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_durable(dir.path(), &[]).await;
    let mut worker = server.gate_worker(&["t"], 8).await;
    let client = server.client().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            client
                .submit("s", "t", &format!(r#"{{"i":{i}}}"#))
                .await
                .unwrap()
                .task_id,
        );
    }
    let mut jobs = Vec::new();
    for _ in 0..5 {
        jobs.push(worker.next().await);
    }
    jobs.sort_by_key(|j| j.args()["i"].as_u64());
    let mut unfinished = jobs.split_off(3);
    for job in jobs {
        job.succeed("\"before\"");
    }
    let mut stream = client.completions("s", 0);
    let before = take_completions(&mut stream, 3).await;
    assert_eq!(seqs(&before), [1, 2, 3]);
    drop(stream);

    server.restart().await;
    // The two tasks that were running come back as a second attempt, to the
    // same worker once it has reconnected by itself.
    let mut again = vec![worker.next().await, worker.next().await];
    again.sort_by_key(|j| j.args()["i"].as_u64());
    for (job, old) in again.into_iter().zip(unfinished.drain(..)) {
        assert_eq!(job.task.task_id, old.task.task_id);
        assert_eq!(job.task.attempt, 2);
        job.succeed("\"after\"");
    }
    let client = server.client().await;
    let mut resumed = client.completions("s", 3);
    let after = take_completions(&mut resumed, 2).await;
    assert_eq!(
        seqs(&after),
        [4, 5],
        "seq continues after the last stored one"
    );
    let mut all: Vec<_> = before
        .iter()
        .chain(&after)
        .map(|c| c.task_id.clone())
        .collect();
    all.sort();
    ids.sort();
    assert_eq!(all, ids);
    // A fresh stream from 0 replays the same five, in the same order.
    let mut replay = client.completions("s", 0);
    let replayed = take_completions(&mut replay, 5).await;
    assert_eq!(
        replayed
            .iter()
            .map(|c| (c.seq, c.task_id.clone()))
            .collect::<Vec<_>>(),
        before
            .iter()
            .chain(&after)
            .map(|c| (c.seq, c.task_id.clone()))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn an_idempotent_submit_returns_the_same_task_also_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_durable(dir.path(), &[]).await;
    let _worker = server.gate_worker(&["t"], 1).await;
    let request = pb::SubmitToolRequest {
        session_id: "s".into(),
        tool: "t".into(),
        arguments_json: "{}".into(),
        idempotency_key: "call-1".into(),
        ..Default::default()
    };
    let first = server
        .client()
        .await
        .submit_request(request.clone())
        .await
        .unwrap();
    assert!(!first.deduplicated);
    let again = server
        .client()
        .await
        .submit_request(request.clone())
        .await
        .unwrap();
    assert!(again.deduplicated);
    assert_eq!(again.task_id, first.task_id);
    server.restart().await;
    let _worker = server.gate_worker(&["t"], 1).await;
    let after = server
        .client()
        .await
        .submit_request(request.clone())
        .await
        .unwrap();
    assert_eq!(
        (after.task_id.as_str(), after.deduplicated),
        (first.task_id.as_str(), true)
    );
    // The key is per session.
    let other = server
        .client()
        .await
        .submit_request(pb::SubmitToolRequest {
            session_id: "other".into(),
            ..request
        })
        .await
        .unwrap();
    assert_ne!(other.task_id, first.task_id);
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Runs `n` tasks with 2 KiB of arguments through `worker` and reads their
/// completions; returns the last seq.
async fn run_batch(client: &Client, worker: &mut GateWorker, n: usize) -> u64 {
    let blob = "x".repeat(2048);
    let mut stream = client.completions("s", 0);
    for _ in 0..n {
        client
            .submit("s", "t", &format!(r#"{{"blob":"{blob}"}}"#))
            .await
            .unwrap();
        worker.next().await.succeed(&format!(r#""{blob}""#));
    }
    take_completions(&mut stream, n).await.last().unwrap().seq
}

#[tokio::test]
async fn acknowledged_and_expired_data_is_removed_so_the_data_dir_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    // Each round runs on a server of its own and ends with a clean stop,
    // which folds the WAL into errand.db: the file's size is then the data's,
    // whenever the last checkpoint ran.
    let mut sizes = Vec::new();
    for _ in 0..3 {
        let mut server = Server::start_durable(dir.path(), &[]).await;
        let mut worker = server.gate_worker(&["t"], 1).await;
        let client = server.client().await;
        let last = run_batch(&client, &mut worker, 300).await;
        client.ack_completions("s", last).await.unwrap();
        drop((client, worker));
        server.terminate();
        assert!(server.exited().await.success(), "a clean stop");
        sizes.push(dir_bytes(dir.path()));
    }
    // Freed pages are reused: the second and third rounds need no new room.
    // Without reuse the third round's file would be three times the first's.
    // With it, a round's size still varies between runs: 1.64-2.14 MB for the
    // same first round here (a 25 % bound failed on a loaded CI run, at
    // [1638441, 2048041, 2068521]), so the bound is half as much again as the
    // smallest round.
    let (least, most) = (*sizes.iter().min().unwrap(), *sizes.iter().max().unwrap());
    assert!(most <= least + least / 2, "data dir grew: {sizes:?}");
    let server = Server::start_durable(dir.path(), &[]).await;
    let mut worker = server.gate_worker(&["t"], 1).await;
    let client = server.client().await;
    let mut replay = client.completions("s", 0);
    client.submit("s", "t", "{}").await.unwrap();
    worker.next().await.succeed("0");
    assert_eq!(
        seqs(&take_completions(&mut replay, 1).await),
        [901],
        "acknowledged completions are gone, seqs go on"
    );
    drop(server);

    // Retention by time: a 1 s retention purged every 100 ms.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_durable(
        dir.path(),
        &["--retention-secs", "1", "--purge-interval-ms", "100"],
    )
    .await;
    let mut worker = server.gate_worker(&["t"], 1).await;
    let client = server.client().await;
    let id = client.submit("s", "t", "{}").await.unwrap().task_id;
    worker.next().await.succeed("0");
    let mut stream = client.completions("s", 0);
    take_completions(&mut stream, 1).await;
    within("the finished task to expire", async {
        while client.get_task(&id).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

/// A tool that sleeps 0–20 ms and records every run, to count re-runs.
struct Recorder(Arc<Mutex<HashMap<String, Vec<u32>>>>);

#[async_trait::async_trait]
impl Handler for Recorder {
    async fn run(
        &self,
        task: pb::Assignment,
        cancel: CancellationToken,
    ) -> Result<String, pb::ToolError> {
        self.0
            .lock()
            .unwrap()
            .entry(task.task_id.clone())
            .or_default()
            .push(task.attempt);
        let ms = task.task_id.bytes().map(u64::from).sum::<u64>() % 21;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
            _ = cancel.cancelled() => {}
        }
        Ok(format!(r#"{{"task":"{}"}}"#, task.task_id))
    }
}

/// Submits with an idempotency key until the server answers, as an agent
/// retrying after network errors does.
async fn submit_until_acked(addr: &str, i: usize) -> String {
    let client = Client::from_channel(endpoint(addr).unwrap().connect_lazy());
    let request = pb::SubmitToolRequest {
        session_id: "crash".into(),
        tool: "work".into(),
        arguments_json: format!(r#"{{"i":{i}}}"#),
        idempotency_key: format!("k{i}"),
        ..Default::default()
    };
    loop {
        match client.submit_request(request.clone()).await {
            Ok(ack) => return ack.task_id,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_burst_loses_nothing_and_delivers_nothing_twice() {
    crash_burst(10, 3000, 5).await;
}

/// Issue 15.1: with one attempt allowed, a task a worker received before a
/// SIGKILL is never run again (it fails as worker_lost instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_never_hands_out_an_attempt_twice_nor_past_the_maximum() {
    crash_burst(1, 2000, 4).await;
}

/// Submits `tasks` tasks through eight agents while the server is SIGKILLed
/// `kills` times; checks that nothing is lost or delivered twice, that seqs
/// have no gap, and that the worker never received one `(task_id, attempt)`
/// twice nor an attempt above `max_attempts`.
async fn crash_burst(max_attempts: u32, tasks: usize, kills: usize) {
    let dir = tempfile::tempdir().unwrap();
    let max = max_attempts.to_string();
    let mut server = Server::start_durable(dir.path(), &["--max-attempts", &max]).await;
    let addr = server.addr.clone();
    let runs = Arc::new(Mutex::new(HashMap::new()));
    let shutdown = CancellationToken::new();
    let _stop_worker = shutdown.clone().drop_guard();
    let worker = worker::run(
        endpoint(&addr).unwrap().connect_lazy(),
        WorkerConfig {
            name: "recorder".into(),
            tools: vec![pb::Tool {
                name: "work".into(),
                ..Default::default()
            }],
            max_concurrency: 32,
            token: None,
        },
        Arc::new(Recorder(runs.clone())),
        shutdown.clone(),
        |_| {},
    );
    tokio::spawn(worker);

    // Eight agents submit everything; the server is killed under them.
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // How many submits have been acknowledged: the killer waits on it.
    let (acks_tx, mut acks) = tokio::sync::watch::channel(0usize);
    let agents: Vec<_> = (0..8)
        .map(|_| {
            let (addr, next, acks_tx) = (addr.clone(), next.clone(), acks_tx.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= tasks {
                        return acked;
                    }
                    acked.push(submit_until_acked(&addr, i).await);
                    acks_tx.send_modify(|n| *n += 1);
                }
            })
        })
        .collect();
    for kill in 0..kills {
        // Kill at a moment chosen by how far the burst has got, which
        // differs from run to run.
        let target = (kill + 1) * tasks / (kills + 2);
        within("the burst to progress", acks.wait_for(|n| *n >= target))
            .await
            .expect("the agents are running");
        server.restart().await;
    }
    let mut submitted = Vec::new();
    for agent in agents {
        submitted.extend(within("the agents to finish", agent).await.unwrap());
    }

    // Read the whole session back from seq 0.
    let client = server.client().await;
    let mut stream = client.completions("crash", 0);
    let mut delivered: HashMap<String, usize> = HashMap::new();
    let mut seen_seqs = Vec::new();
    let wanted: std::collections::HashSet<_> = submitted.iter().cloned().collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while wanted.iter().any(|id| !delivered.contains_key(id)) {
        let next = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("every submitted task should complete")
            .unwrap()
            .unwrap();
        seen_seqs.push(next.seq);
        *delivered.entry(next.task_id).or_default() += 1;
    }
    let lost = wanted
        .iter()
        .filter(|id| !delivered.contains_key(*id))
        .count();
    let duplicated: usize = delivered.values().map(|n| n - 1).sum();
    let reruns: usize = runs
        .lock()
        .unwrap()
        .values()
        .map(|r| r.len().saturating_sub(1))
        .sum();
    println!(
        "submitted {} / completed {} / lost {lost} / duplicated deliveries {duplicated} / re-run tools {reruns} ({kills} kills)",
        wanted.len(),
        delivered.len(),
    );
    assert_eq!(wanted.len(), tasks, "each agent call got exactly one task");
    assert_eq!(lost, 0);
    assert_eq!(duplicated, 0);
    assert!(
        delivered.keys().all(|id| wanted.contains(id)),
        "a completion for a task nobody submitted"
    );
    let expected: Vec<u64> = (1..=seen_seqs.len() as u64).collect();
    assert_eq!(seen_seqs, expected, "seqs run 1, 2, 3, … with no gap");
    // Every (task_id, attempt) a worker received, checked for repeats and
    // for attempts past the maximum.
    for (task, attempts) in runs.lock().unwrap().iter() {
        let mut sorted = attempts.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            attempts.len(),
            "task {task} was handed the same attempt twice: {attempts:?}"
        );
        assert!(
            attempts.iter().all(|a| (1..=max_attempts).contains(a)),
            "task {task} ran attempts {attempts:?}, the maximum is {max_attempts}"
        );
    }
}

/// `errand serve` on the data dir, run to its end: (exit status, stdout, stderr).
pub(crate) async fn serve_to_the_end(dir: &Path) -> (std::process::ExitStatus, String, String) {
    let out = within(
        "errand serve to stop by itself",
        tokio::process::Command::new(errand_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .env("RUST_LOG", "info")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("running errand serve");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status, text(&out.stdout), text(&out.stderr))
}

#[tokio::test]
async fn a_store_found_corrupt_after_a_crash_stops_the_server_and_is_refused_next() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_durable(dir.path(), &[]).await;
    let mut worker = server.gate_worker(&["t"], 1).await;
    let client = server.client().await;
    // Finished tasks with arguments that take overflow pages: the restart
    // reads none of those, so the damage below is found by the check.
    let pad = "x".repeat(5000);
    for i in 0..300 {
        (client
            .submit("s", "t", &format!(r#"{{"i":{i},"pad":"{pad}"}}"#))
            .await)
            .unwrap();
        worker.next().await.succeed("{}");
    }
    drop(worker);
    // A clean stop folds the WAL into errand.db; the next run then crashes.
    server.terminate();
    assert!(server.exited().await.success());
    let mut server = Server::start_durable(dir.path(), &[]).await;
    server.kill().await;
    // Pages in the middle of the file damaged while the server was down.
    let db = dir.path().join("errand.db");
    let mut bytes = std::fs::read(&db).unwrap();
    assert!(bytes.len() > 1_000_000, "{} bytes", bytes.len());
    let middle = bytes.len() / 2;
    bytes[middle..middle + 16_384].fill(0x5a);
    std::fs::write(&db, bytes).unwrap();

    // After a crash the server serves at once, checks the file while serving,
    // and stops with an error when it finds the damage.
    let (status, out, err) = serve_to_the_end(dir.path()).await;
    assert!(!status.success(), "{err}");
    assert!(
        out.contains("errand listening on"),
        "it served first: {out}"
    );
    assert!(err.contains("stopped, as the store is corrupt"), "{err}");
    // The next start checks before serving and refuses the file, saying what to do.
    let (status, out, err) = serve_to_the_end(dir.path()).await;
    assert!(!status.success());
    assert!(!out.contains("errand listening on"), "{out}");
    assert!(
        err.contains("corrupt") && err.contains("restore it from a backup"),
        "{err}"
    );
}

/// Trial finding: a SubmitTool the client gave up on could leave its task
/// stored but never queued, QUEUED for good. The server frozen (SIGSTOP)
/// while a connected client's submit passes its deadline and is cancelled;
/// resumed, the server reads the call and its cancel together, and stored
/// the task then dropped the call before queueing it. Every stored task of
/// the session now ends, as the submit made after the resume does.
#[tokio::test]
async fn a_submit_cancelled_while_the_server_was_frozen_runs_if_stored() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_durable(dir.path(), &[]).await;
    let _worker = server
        .exec_worker("fast2", "cat", &["--concurrency", "4"])
        .await;
    let client = server.client().await;
    let mut completions = client.completions("S", 0);
    // Connected before the freeze, as the trial's client was.
    let mut raw = server.raw();
    raw.list_tools(pb::ListToolsRequest::default())
        .await
        .unwrap();
    let submit = |timeout: Option<Duration>| {
        let mut req = tonic::Request::new(pb::SubmitToolRequest {
            session_id: "S".into(),
            tool: "fast2".into(),
            arguments_json: "{}".into(),
            ..Default::default()
        });
        if let Some(timeout) = timeout {
            req.set_timeout(timeout);
        }
        req
    };
    unsafe { libc::kill(server.pid(), libc::SIGSTOP) };
    let given_up = raw
        .submit_tool(submit(Some(Duration::from_millis(300))))
        .await;
    unsafe { libc::kill(server.pid(), libc::SIGCONT) };
    assert!(given_up.is_err(), "a frozen server answered");
    // On the same connection: read after the call given up on.
    let after = (raw.submit_tool(submit(None)).await.unwrap().into_inner()).task_id;
    let mut ended = std::collections::HashSet::new();
    loop {
        let listed = raw
            .list_tasks(pb::ListTasksRequest {
                session_id: "S".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .tasks;
        if ended.contains(&after) && listed.iter().all(|t| ended.contains(&t.task_id)) {
            break;
        }
        let c = within("a completion of each stored task", completions.next())
            .await
            .unwrap()
            .unwrap();
        ended.insert(c.task_id);
    }
}

/// A run the server's own stop interrupts is not its worker going away: the
/// drain leaves it for the next start, as the drain's last line says, and on
/// its last attempt it ends there saying why (`--max-attempts 1`: the stop
/// used the only attempt), not "the worker ... went away" at the stop.
#[tokio::test]
async fn a_drain_leaves_running_tasks_to_the_next_start_with_the_true_reason() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--max-attempts", "1", "--shutdown-grace-secs", "0"];
    let mut server = Server::start_durable(dir.path(), &flags).await;
    let mut worker = server.gate_worker(&["t"], 1).await;
    let client = server.client().await;
    let id = client.submit("s", "t", "{}").await.unwrap().task_id;
    let _running = worker.next().await;
    server.terminate();
    assert!(server.exited().await.success());
    server.restart().await;
    let task = server.client().await.get_task(&id).await.unwrap();
    let Some(pb::task::Outcome::Error(error)) = task.outcome else {
        panic!("no error on {task:?}");
    };
    assert_eq!(
        (task.status, error.code.as_str()),
        (pb::TaskStatus::Failed as i32, "worker_lost")
    );
    assert!(
        error
            .message
            .contains("the server stopped while the task ran"),
        "{}",
        error.message
    );
}
