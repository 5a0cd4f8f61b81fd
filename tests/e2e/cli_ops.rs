//! `errand tasks`, `workers`, bulk `cancel`, `retry` and the queue columns
//! of `errand tools`, as a user runs them.
use errand_client::pb;
use errand_tests::*;
use serde_json::Value;

fn lines(out: &std::process::Output) -> Vec<String> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn json_lines(out: &std::process::Output) -> Vec<Value> {
    lines(out)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn tasks_workers_cancel_and_retry_from_the_cli() {
    let server = Server::start(&[]).await;
    let client = server.client().await;
    let mut worker = server.gate_worker(&["job"], 1).await;
    let failed = client.submit("cli", "job", "{}").await.unwrap().task_id;
    worker.next().await.fail("tool_error", "no");
    take_completions(&mut client.completions("cli", 0), 1).await;
    let running = client.submit("cli", "job", "{}").await.unwrap().task_id;
    let held = worker.next().await;
    let queued = client.submit("cli", "job", "{}").await.unwrap().task_id;

    let tools = json_lines(&server.cli(&["tools", "--json"]).await);
    // Shared mode keeps the queue in the store and counts here only what
    // this server has claimed (proto `Tool.queued`): a claim that the slot
    // freed by the failed task asked for may have taken the queued task
    // after the running one took that slot, so 0 and 1 are both right.
    let depths: &[u64] = if on_postgres() { &[0, 1] } else { &[1] };
    let queued_here = tools[0]["queued"].as_u64().unwrap();
    assert!(depths.contains(&queued_here), "{tools:?}");
    assert_eq!(tools[0]["running"].as_u64(), Some(1));
    let table = lines(&server.cli(&["tools"]).await);
    assert!(
        depths
            .iter()
            .any(|d| table[0].contains(&format!("queued={d}")))
            && table[0].contains("running=1"),
        "{table:?}"
    );
    // A tool without a description of its own shows none, not the notice
    // the server appends for the model.
    assert!(!table[0].contains("asynchronous"), "{table:?}");

    // Newest first; one object per line.
    let tasks = json_lines(&server.cli(&["tasks", "--session", "cli", "--json"]).await);
    let ids: Vec<_> = tasks
        .iter()
        .map(|t| t["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [&queued, &running, &failed]);
    let only = json_lines(
        &server
            .cli(&["tasks", "--status", "failed", "--limit", "5", "--json"])
            .await,
    );
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["status"], "FAILED");
    let table = lines(&server.cli(&["tasks", "--limit", "2"]).await);
    assert_eq!(table.len(), 3, "a header and two rows: {table:?}");
    assert!(table[0].starts_with("TASK") && table[0].contains("CREATED"));
    assert!(table[1].contains("s ago"), "{table:?}");
    let col = table[0].find("SESSION").unwrap();
    assert_eq!(&table[1][col..col + 3], "cli", "aligned columns: {table:?}");
    let bad = server.cli(&["tasks", "--status", "nope"]).await;
    assert!(!bad.status.success());

    let workers = json_lines(&server.cli(&["workers", "--json"]).await);
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0]["worker_name"], "gate");
    assert_eq!(workers[0]["running"], 1);
    let table = lines(&server.cli(&["workers"]).await);
    assert!(table[1].contains("1/1"), "{table:?}");

    let out = lines(&server.cli(&["cancel", "--session", "cli"]).await);
    assert_eq!(out, ["cancelled 2 tasks of session \"cli\""]);
    within("the worker's cancel", held.cancel.cancelled()).await;
    let task = client.get_task(&queued).await.unwrap();
    assert_eq!(status_of(task.status), pb::TaskStatus::Cancelled);

    let again = json_lines(&server.cli(&["retry", &failed, "--json"]).await);
    assert_eq!(again[0]["retry_of"], failed.as_str());
    let job = worker.next().await;
    assert_eq!(job.task.task_id, again[0]["task_id"].as_str().unwrap());
    job.succeed("{}");
    let refused = server
        .cli(&["retry", "00000000-0000-0000-0000-000000000000"])
        .await;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no task"));
}

fn err_text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One serializer for a task (submit --json carries tasks --json's
/// fields), retry acknowledges on stderr as submit does, ack and result
/// have --json, and ELAPSED reads as CREATED does.
#[tokio::test]
async fn commands_print_tasks_and_acks_alike() {
    let server = Server::start(&[]).await;
    let client = server.client().await;
    let mut worker = server.gate_worker(&["job"], 1).await;
    let sub = json_lines(
        &server
            .cli(&["submit", "job", "--session", "c3", "--json"])
            .await,
    );
    for key in ["retry_of", "worker_id", "worker_name"] {
        assert!(sub[0]["task"].get(key).is_some(), "{key}: {sub:?}");
    }
    let id = sub[0]["task_id"].as_str().unwrap().to_string();
    worker.next().await.fail("tool_error", "no");
    take_completions(&mut client.completions("c3", 0), 1).await;

    let again = server.cli(&["retry", &id]).await;
    assert!(again.status.success(), "{}", err_text(&again));
    assert!(
        err_text(&again).contains("submitted"),
        "{}",
        err_text(&again)
    );
    let retried = lines(&again)[0].clone();
    worker.next().await.succeed("{\"n\":7}");
    take_completions(&mut client.completions("c3", 1), 1).await;

    let res = json_lines(&server.cli(&["result", &retried, "--json"]).await);
    assert_eq!(res[0]["task_id"], retried.as_str());
    assert_eq!(res[0]["result"]["n"], 7);
    let plain = server.cli(&["result", &retried]).await;
    assert_eq!(String::from_utf8_lossy(&plain.stdout), "{\"n\":7}");

    let table = lines(&server.cli(&["tasks", "--session", "c3"]).await);
    assert!(!table[1].contains(" ms"), "{table:?}");

    let acked = json_lines(
        &server
            .cli(&["ack", "--session", "c3", "--up-to", "2", "--json"])
            .await,
    );
    assert_eq!(acked[0]["released"], 2, "{acked:?}");
    assert_eq!(acked[0]["session_id"], "c3");
    // The session's acknowledged seq after the call, as the RPC answers it:
    // a lower --up-to releases nothing and says where acknowledgement is.
    assert_eq!(acked[0]["acked_seq"], 2, "{acked:?}");
    let again = lines(
        &server
            .cli(&["ack", "--session", "c3", "--up-to", "1"])
            .await,
    );
    assert_eq!(
        again,
        ["released 0 completions of session \"c3\" (acknowledged up to seq 2)"],
    );
    server.cli(&["submit", "job", "--session", "c3"]).await;
    worker.next().await.succeed("3");
    take_completions(&mut client.completions("c3", 2), 1).await;
    let one = lines(
        &server
            .cli(&["ack", "--session", "c3", "--up-to", "3"])
            .await,
    );
    assert_eq!(
        one,
        ["released 1 completion of session \"c3\" (acknowledged up to seq 3)"],
    );
}

/// `workers` with none says whose workers it lists.
#[tokio::test]
async fn workers_without_any_says_it_lists_this_servers() {
    let server = Server::start(&[]).await;
    let out = server.cli(&["workers"]).await;
    assert!(out.status.success());
    let err = err_text(&out);
    assert!(
        err.contains("no workers are connected to this server"),
        "{err}"
    );
}

/// A worker stopped mid-task by SIGINT says it stops and that its running
/// task goes back to the queue, exits 0 (a stop asked for, as a service
/// manager expects), and another worker gets the task.
#[tokio::test]
async fn a_worker_interrupted_mid_task_says_where_its_task_goes() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let server = Server::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("started");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let mut child = tokio::process::Command::new(errand_bin())
        .args(["worker", "--tool", "nap", "--exec"])
        .arg(format!("echo go > {}; exec sleep 600", fifo.display()))
        .env("ERRAND_SERVER", &server.addr)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    within(
        "registration",
        wait_line(&mut out, "errand worker registered"),
    )
    .await;
    let client = server.client().await;
    let id = client.submit("w", "nap", "{}").await.unwrap().task_id;
    within(
        "the program to start",
        tokio::task::spawn_blocking(move || std::fs::read_to_string(fifo).unwrap()),
    )
    .await
    .unwrap();
    // SAFETY: signalling our own child.
    assert_eq!(
        unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGINT) },
        0
    );
    let done = within("the worker to stop", child.wait_with_output())
        .await
        .unwrap();
    let err = err_text(&done);
    assert_eq!(done.status.code(), Some(0), "{err}");
    assert!(
        err.contains("stopping") && err.contains("back to the queue"),
        "{err}"
    );
    let mut other = server.gate_worker(&["nap"], 1).await;
    let job = other.next().await;
    assert_eq!(job.task.task_id, id);
    job.succeed("1");
}

/// A program `errand worker --exec` runs does not outlive the worker: a
/// worker killed outright (SIGKILL: no chance to clean up) takes its running
/// program with it (PR_SET_PDEATHSIG), so the task's next attempt does not
/// run beside an orphan of the last one.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_killed_exec_worker_takes_its_running_program_with_it() {
    let server = Server::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let command = format!("echo $$ > {}; exec sleep 1000", pid_file.display());
    let mut worker = server.exec_worker("t", &command, &[]).await;
    server.client().await.submit("s", "t", "{}").await.unwrap();
    let pid: i32 = within("the program to start", async {
        loop {
            if let Ok(text) = std::fs::read_to_string(&pid_file)
                && text.ends_with('\n')
            {
                return text.trim().parse().unwrap();
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    worker.kill().await.unwrap();
    within("the program to end with its worker", async {
        // Gone, or a zombie its new parent has yet to reap.
        while std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| !stat.contains(") Z "))
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
}
