//! The CLI's waiting commands as a user lives with them: `submit --wait`
//! says at once what it submitted and, interrupted, what became of the
//! task; a server that never answers or goes away is named, not waited on
//! in silence.
use std::process::Stdio;

use errand_client::pb;
use errand_tests::{raw::connect_worker, *};
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

/// Connects a worker serving `tool`, then lets it go and waits until the
/// server has: the tool is known, and no worker serves it.
async fn worker_came_and_went(server: &Server, tool: &str) {
    let mut w = connect_worker(&server.addr, None, vec![raw::tool(tool, "")])
        .await
        .unwrap();
    drop(w.tx);
    while let Ok(Some(_)) = within("the worker's departure", w.commands.message()).await {}
}

/// `submit --wait` prints the ack (the task ID, and that no worker serves
/// the tool) on stderr before it waits; SIGINT while it waits says the task
/// goes on, its ID and how to follow or cancel it, and exits 130. The task
/// is still queued.
#[tokio::test]
async fn submit_wait_shows_the_ack_at_once_and_an_interrupt_names_the_task() {
    let server = Server::start(&[]).await;
    worker_came_and_went(&server, "lonely").await;
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
