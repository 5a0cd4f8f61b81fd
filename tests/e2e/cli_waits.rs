//! The CLI's waiting commands as a user lives with them: `submit --wait`
//! says at once what it submitted and, interrupted, what became of the
//! task; a server that never answers or goes away is named, not waited on
//! in silence.
use std::process::Stdio;

use errand_client::pb;
use errand_tests::*;
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader, Lines},
    process::{Child, Command},
};

fn send_signal(child: &Child, signal: i32) {
    let pid = child.id().expect("the child runs") as i32;
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

/// The next line of `lines` that contains `part`, with every line read.
async fn line_with<R: AsyncRead + Unpin>(
    lines: &mut Lines<BufReader<R>>,
    part: &str,
    seen: &mut String,
) -> String {
    while let Some(line) = lines.next_line().await.expect("reading a child's output") {
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(part) {
            return line;
        }
    }
    panic!("the output ended before a line with {part:?}: {seen}")
}

/// Runs `errand ARGS` against `addr` with stdout and stderr piped.
fn spawn_cli(addr: &str, args: &[&str]) -> Child {
    Command::new(errand_bin())
        .args(args)
        .env("ERRAND_SERVER", addr)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("running errand")
}

/// `submit --wait` prints the ack (the task ID, and that no worker serves
/// the tool) on stderr before it waits; SIGINT while it waits says the task
/// goes on, its ID and how to follow or cancel it, and exits 130. The task
/// is still queued.
#[tokio::test]
async fn submit_wait_shows_the_ack_at_once_and_an_interrupt_names_the_task() {
    let server = Server::start(&[]).await;
    raw::worker_came_and_went(&server.addr, "lonely").await;
    let mut child = spawn_cli(
        &server.addr,
        &["submit", "lonely", "--session", "sw", "--wait"],
    );
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    let ack = within(
        "the ack on stderr",
        line_with(&mut err, "no worker serves tool", &mut seen),
    )
    .await;
    let client = server.client().await;
    let listed = client
        .list_tasks(pb::ListTasksRequest {
            session_id: "sw".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.tasks.len(), 1);
    let id = listed.tasks[0].task_id.clone();
    assert!(ack.contains(&id), "the ack names the task: {ack}");

    send_signal(&child, libc::SIGINT);
    let status = within("submit --wait to stop", child.wait()).await.unwrap();
    while let Some(line) = err.next_line().await.unwrap() {
        seen.push_str(&line);
        seen.push('\n');
    }
    assert_eq!(status.code(), Some(130), "{seen}");
    for part in [
        id.clone(),
        format!("errand result {id}"),
        format!("errand cancel {id}"),
    ] {
        assert!(seen.contains(&part), "{part}: {seen}");
    }
    let task = client.get_task(&id).await.unwrap();
    assert_eq!(status_of(task.status), pb::TaskStatus::Queued);
}

/// SIGTERM while `submit --wait` waits says the same, with SIGTERM's code.
#[tokio::test]
async fn submit_wait_terminated_names_the_task_too() {
    let server = Server::start(&[]).await;
    let mut worker = server.gate_worker(&["slow"], 1).await;
    let mut child = spawn_cli(&server.addr, &["submit", "slow", "--wait", "--json"]);
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    let ack = within(
        "the ack on stderr",
        line_with(&mut err, "submitted", &mut seen),
    )
    .await;
    let job = worker.next().await;
    let id = job.task.task_id.clone();
    assert!(ack.contains(&id), "{ack}");
    send_signal(&child, libc::SIGTERM);
    let status = within("submit --wait to stop", child.wait()).await.unwrap();
    while let Some(line) = err.next_line().await.unwrap() {
        seen.push_str(&line);
        seen.push('\n');
    }
    assert_eq!(status.code(), Some(143), "{seen}");
    assert!(seen.contains(&format!("errand cancel {id}")), "{seen}");
    job.succeed("1");
}

/// A listener that accepts connections and never answers (a frozen server,
/// a wrong port): its address.
fn black_hole() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    addr
}

/// Commands against a server that accepts the connection and never
/// answers fail within the HTTP/2 keep-alive deadline (about 10 s), naming
/// the address and what to check; `watch` too, where it waited for ever.
#[tokio::test]
async fn a_server_that_never_answers_is_named_within_the_deadline() {
    let addr = black_hole();
    let started = std::time::Instant::now();
    let runs = [
        vec!["tools"],
        vec!["submit", "t"],
        vec!["status", "00000000-0000-0000-0000-000000000000"],
        vec!["watch", "--count", "1"],
    ]
    .map(|args| {
        let child = spawn_cli(&addr, &args);
        tokio::spawn(async move { (args, child.wait_with_output().await.unwrap()) })
    });
    for run in runs {
        let (args, out) = within("the command to give up", run).await.unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.contains(&format!(
                "errand server at {addr} did not answer within 10 s"
            )),
            "{args:?}: {err}"
        );
        assert!(err.contains("--listen"), "{args:?}: {err}");
    }
    // Well past the 10 s deadline, for a loaded machine: the point is that
    // it ends, which `within` bounds too.
    assert!(started.elapsed() < std::time::Duration::from_secs(40));
}

/// `watch` says when its server goes away, each time it tries again, and
/// when it is back, then goes on after the last seq it printed.
#[tokio::test]
async fn watch_says_when_it_loses_the_server_and_when_it_is_back() {
    watch_across_a_restart(&[]).await;
}

/// `watch --progress` (SessionEvents) says the same, in the same words.
#[tokio::test]
async fn watch_progress_says_when_it_loses_the_server_and_when_it_is_back() {
    watch_across_a_restart(&["--progress"]).await;
}

async fn watch_across_a_restart(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_durable(dir.path(), &[]).await;
    let client = server.client().await;
    let mut worker = server.gate_worker(&["job"], 1).await;
    client.submit("rw", "job", "{}").await.unwrap();
    worker.next().await.succeed("1");
    let mut args = vec!["watch", "--session", "rw"];
    args.extend_from_slice(extra);
    let mut child = spawn_cli(&server.addr, &args);
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut seen_out, mut seen_err) = (String::new(), String::new());
    within(
        "the first completion",
        line_with(&mut out, "#1 ", &mut seen_out),
    )
    .await;
    worker.stop();
    server.kill().await;
    let addr = server.addr.clone();
    within(
        "the loss on stderr",
        line_with(
            &mut err,
            &format!("lost the connection to the errand server at {addr}"),
            &mut seen_err,
        ),
    )
    .await;
    within(
        "a retry on stderr",
        line_with(&mut err, "retrying in", &mut seen_err),
    )
    .await;
    within(
        "another retry",
        line_with(&mut err, "attempt 2", &mut seen_err),
    )
    .await;
    assert!(
        seen_err.contains(&format!("still no errand server at {addr}")),
        "{seen_err}"
    );
    server = Server::start_on(
        &addr,
        vec!["--data-dir".into(), dir.path().display().to_string()],
    )
    .await;
    within(
        "the reconnection",
        line_with(&mut err, "reconnected to", &mut seen_err),
    )
    .await;
    let client = server.client().await;
    let mut worker = server.gate_worker(&["job"], 1).await;
    client.submit("rw", "job", "{}").await.unwrap();
    worker.next().await.succeed("2");
    let line = within(
        "the next completion",
        line_with(&mut out, "#", &mut seen_out),
    )
    .await;
    assert!(line.starts_with("#2 "), "{seen_out}");
    child.start_kill().unwrap();
}
