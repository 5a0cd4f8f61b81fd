//! The `errand` program as a user runs it: the quick start, `worker --exec`,
//! and one clear error line with a non-zero exit.
use std::time::Duration;

use errand_client::pb;
use errand_tests::*;
use serde_json::Value;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn quick_start_worker_submit_watch_status() {
    let server = Server::start(&[]).await;
    let _echo = server
        .exec_worker(
            "echo",
            "cat",
            &["--description", "Echo the arguments back."],
        )
        .await;
    let _upper = server
        .exec_worker(
            "shout",
            "tr a-z A-Z | sed 's/^/said: /'",
            &["--concurrency", "2"],
        )
        .await;

    let tools = server.cli(&["tools", "--json"]).await;
    assert!(tools.status.success(), "{}", stderr(&tools));
    let names: Vec<String> = stdout(&tools)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(names, ["echo", "shout"]);

    let submitted = server
        .cli(&[
            "submit",
            "echo",
            "--args",
            r#"{"text":"hi"}"#,
            "--session",
            "demo",
        ])
        .await;
    assert!(submitted.status.success(), "{}", stderr(&submitted));
    let task_id = stdout(&submitted).trim().to_string();
    assert!(
        stderr(&submitted).contains("fabricate"),
        "the ack goes to stderr for people"
    );

    let waited = server
        .cli(&[
            "submit",
            "shout",
            "--args",
            r#"{"text":"hi"}"#,
            "--session",
            "demo",
            "--wait",
        ])
        .await;
    assert!(waited.status.success(), "{}", stderr(&waited));
    assert_eq!(
        stdout(&waited).trim(),
        r#""said: {\"TEXT\":\"HI\"}""#,
        "non-JSON stdout becomes a JSON string"
    );

    let watched = server
        .cli(&["watch", "--session", "demo", "--json", "--count", "2"])
        .await;
    let lines: Vec<Value> = stdout(&watched)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let seqs: Vec<_> = lines.iter().map(|l| l["seq"].as_u64()).collect();
    assert_eq!(seqs, [Some(1), Some(2)]);
    // The echo may finish after the shout that was submitted later (its
    // program starts on another worker): find it by its task ID.
    let echo = (lines.iter())
        .find(|l| l["task_id"] == task_id.as_str())
        .expect("the echo task's completion");
    assert_eq!(echo["status"], "SUCCEEDED");
    assert_eq!(echo["result"]["text"], "hi", "JSON stdout stays JSON");

    let human = server
        .cli(&["watch", "--session", "demo", "--after", "1", "--count", "1"])
        .await;
    assert!(stdout(&human).starts_with("#2 "), "{}", stdout(&human));

    let status = server.cli(&["status", &task_id, "--json"]).await;
    let task: Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(task["status"], "SUCCEEDED");
    assert_eq!(task["attempts"], 1);
}

#[tokio::test]
async fn a_failing_program_is_a_failed_completion_with_its_stderr() {
    let server = Server::start(&[]).await;
    let _w = server
        .exec_worker("flaky", "echo 'disk on fire' >&2; exit 3", &[])
        .await;
    let out = server.cli(&["submit", "flaky", "--wait", "--json"]).await;
    assert!(!out.status.success(), "a failed task exits non-zero");
    let c: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(c["status"], "FAILED");
    assert_eq!(c["error"]["code"], "exit_status");
    let message = c["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("exit status 3") && message.contains("disk on fire"),
        "{message}"
    );
}

#[tokio::test]
async fn cancelling_a_task_kills_its_process() {
    let server = Server::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pid");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let _w = server
        .exec_worker(
            "nap",
            &format!("echo $$ > {}; exec sleep 600", fifo.display()),
            &[],
        )
        .await;
    let client = server.client().await;
    let id = client.submit("s", "nap", "{}").await.unwrap().task_id;
    let pid: i32 = {
        let fifo = fifo.clone();
        within(
            "the program to start",
            tokio::task::spawn_blocking(move || std::fs::read_to_string(fifo).unwrap()),
        )
        .await
        .unwrap()
        .trim()
        .parse()
        .unwrap()
    };
    let out = server.cli(&["cancel", &id]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("CANCELLED"));
    // The worker kills the process group and reaps it.
    within("the program to be killed", async {
        // SAFETY: signal 0 only checks that the process exists.
        while unsafe { libc::kill(pid, 0) } == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let task = client.get_task(&id).await.unwrap();
    assert_eq!(status_of(task.status), pb::TaskStatus::Cancelled);
}

#[tokio::test]
async fn errors_print_one_line_and_exit_non_zero() {
    let server = Server::start(&[]).await;
    let out = server
        .cli(&["status", "2f0a6a7e-8f8e-4d8b-9a8e-0c6b8a7d6e5f"])
        .await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("errand: NOT_FOUND: no task"), "{err}");

    let out = server.cli(&["submit", "missing", "--args", "{}"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("errand: NOT_FOUND: unknown tool \"missing\""),
        "{}",
        stderr(&out)
    );

    let out = tokio::process::Command::new(errand_bin())
        .args(["tools", "--server", "127.0.0.1:1"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    // One line, each cause once, and what to do.
    assert_eq!(
        stderr(&out),
        "errand: no errand server at 127.0.0.1:1 (connection refused): \
start one with errand serve, or set --server/ERRAND_SERVER\n"
    );
}

/// Numbers a flag cannot take are refused before anything is sent, saying
/// which flag and why: a count or concurrency of 0 (0 workers' slots, a watch
/// that stops before it starts), a negative number (clap read `-5` as a flag
/// and advised `-- -5`, which made it a positional argument).
#[tokio::test]
async fn numbers_a_flag_cannot_take_are_refused_naming_the_flag() {
    for (args, flag, why) in [
        (
            &[
                "worker",
                "--tool",
                "t",
                "--exec",
                "cat",
                "--concurrency",
                "0",
            ][..],
            "--concurrency",
            "0 is not in 1..",
        ),
        (&["watch", "--count", "0"][..], "--count", "0 is not in 1.."),
        (
            &["submit", "t", "--timeout-ms", "-5"][..],
            "--timeout-ms",
            "invalid digit",
        ),
        (&["watch", "--after", "-1"][..], "--after", "invalid digit"),
    ] {
        let out = tokio::process::Command::new(errand_bin())
            .args(args)
            .args(["--server", "127.0.0.1:1"])
            .output()
            .await
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(flag) && err.contains(why), "{args:?}: {err}");
        assert!(!err.contains("-- -"), "{args:?}: {err}");
    }
}

/// A listen address in use is refused before the store is touched: the
/// data dir given is not created (nor a store in it made and migrated) by a
/// server that cannot serve.
#[tokio::test]
async fn serve_on_a_port_in_use_fails_before_creating_its_store() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = tokio::process::Command::new(errand_bin())
        .args(["serve", "--listen", &addr, "--data-dir"])
        .arg(&data)
        .output()
        .await
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert!(!data.exists(), "the data dir was made: {err}");
}

#[tokio::test]
async fn serve_refuses_a_public_address_without_protection() {
    let out = tokio::process::Command::new(errand_bin())
        .args(["serve", "--store", "memory", "--listen", "0.0.0.0:0"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("refusing to serve") && err.contains("--allow-unauthenticated"),
        "{err}"
    );
}

/// Logs are coloured only on a terminal: a log file or pipe gets no ANSI
/// escapes.
#[tokio::test]
async fn logs_to_a_pipe_carry_no_colour_codes() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    let mut child = tokio::process::Command::new(errand_bin())
        .args(["serve", "--store", "memory", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    within("the listening line", async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("errand listening on") {
                break;
            }
        }
    })
    .await;
    child.start_kill().unwrap();
    let mut logs = String::new();
    within(
        "the log's end",
        child.stderr.take().unwrap().read_to_string(&mut logs),
    )
    .await
    .unwrap();
    assert!(logs.contains("INFO"), "{logs}");
    assert!(!logs.contains('\x1b'), "{logs:?}");
}

#[tokio::test]
async fn submit_delivery_watch_progress_pending_and_cancel_with_a_reason() {
    use errand_tests::raw::{connect_worker, tool};
    use tokio::io::{AsyncBufReadExt, BufReader};
    let server = Server::start(&[]).await;
    let mut worker = connect_worker(&server.addr, None, vec![tool("crawl", "")])
        .await
        .unwrap();
    let submitted = server
        .cli(&[
            "submit",
            "crawl",
            "--session",
            "m",
            "--delivery",
            "interrupt",
            "--json",
        ])
        .await;
    assert!(submitted.status.success(), "{}", stderr(&submitted));
    let ack: Value = serde_json::from_str(stdout(&submitted).trim()).unwrap();
    let id = ack["task_id"].as_str().unwrap().to_string();
    assert_eq!(ack["task"]["delivery"], "INTERRUPT");
    let bad = server
        .cli(&["submit", "crawl", "--session", "m", "--delivery", "loud"])
        .await;
    assert!(!bad.status.success() && stderr(&bad).contains("when-idle, interrupt or silent"));

    let assigned = loop {
        let cmd = within("an assignment", worker.commands.message())
            .await
            .unwrap()
            .unwrap();
        if let Some(pb::worker_command::Kind::Assignment(a)) = cmd.kind {
            break a;
        }
    };
    assert_eq!(assigned.task_id, id);
    let mut watch = tokio::process::Command::new(errand_bin())
        .args([
            "watch",
            "--session",
            "m",
            "--progress",
            "--count",
            "1",
            "--json",
        ])
        .env("ERRAND_SERVER", &server.addr)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let report = pb::WorkerMessage {
        kind: Some(pb::worker_message::Kind::Progress(pb::Progress {
            task_id: id.clone(),
            progress: 1.0,
            total: 4.0,
            message: "page 1".into(),
            ..Default::default()
        })),
    };
    worker.tx.send(report).await.unwrap();
    let first: Value = serde_json::from_str(
        &within("a progress line", lines.next_line())
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["progress"]["task_id"], id.as_str());
    assert_eq!(first["progress"]["message"], "page 1");

    let pending = server.cli(&["pending", "--session", "m"]).await;
    assert!(pending.status.success(), "{}", stderr(&pending));
    let text = stdout(&pending);
    assert!(
        text.contains(&id) && text.contains("(25%): page 1"),
        "{text}"
    );

    let cancelled = server
        .cli(&["cancel", &id, "--reason", "no longer needed"])
        .await;
    assert!(cancelled.status.success(), "{}", stderr(&cancelled));
    let reason = loop {
        let cmd = within("a cancel", worker.commands.message())
            .await
            .unwrap()
            .unwrap();
        if let Some(pb::worker_command::Kind::Cancel(c)) = cmd.kind {
            break c.reason;
        }
    };
    assert_eq!(reason, "cancelled: no longer needed");
    let done: Value = serde_json::from_str(
        &within("a completion line", lines.next_line())
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(done["completion"]["status"], "CANCELLED");
    assert_eq!(done["completion"]["delivery"], "INTERRUPT");
    assert!(
        within("watch exits after --count 1", watch.wait())
            .await
            .unwrap()
            .success()
    );

    let pending = server.cli(&["pending", "--session", "m"]).await;
    assert!(stdout(&pending).starts_with("No tool calls are pending. 1 result"));
    let acked = server.cli(&["ack", "--session", "m", "--up-to", "1"]).await;
    assert!(acked.status.success(), "{}", stderr(&acked));
    let pending = server.cli(&["pending", "--session", "m"]).await;
    assert!(pending.status.success() && stdout(&pending).is_empty());
    assert!(
        stderr(&pending).contains("nothing pending"),
        "{}",
        stderr(&pending)
    );
}

/// A program's output too large for one message to the server fails its
/// task with `invalid_result` (size and limit in a short message), and the
/// worker keeps serving: before, the transport refused the result, the
/// worker lost its stream and the requeued task did the same to the next.
#[tokio::test]
async fn output_over_the_message_limit_fails_the_task_and_the_worker_stays() {
    const LIMIT: usize = 1024 * 1024;
    let server = Server::start(&[
        "--max-message-bytes",
        &LIMIT.to_string(),
        "--max-result-bytes",
        &(512 * 1024).to_string(),
    ])
    .await;
    // Writes as many bytes as the digits of its arguments say.
    let _worker = server
        .exec_worker(
            "fill",
            "n=$(tr -dc 0-9); head -c \"$n\" /dev/zero | tr '\\0' a",
            &[],
        )
        .await;
    let submit = |n: usize| {
        let server = &server;
        let args = format!("{{\"n\":{n}}}");
        async move {
            server
                .cli(&["submit", "fill", "--args", &args, "--wait", "--json"])
                .await
        }
    };

    let out = submit(LIMIT + 100_000).await;
    assert!(!out.status.success(), "a failed task exits non-zero");
    let c: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(c["status"], "FAILED", "{c}");
    assert_eq!(c["error"]["code"], "invalid_result", "{c}");
    assert_eq!(c["attempts"], 1, "not requeued: {c}");
    let message = c["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("the limit is {LIMIT}"))
            && message.contains("--max-message-bytes")
            && message.len() < 300,
        "{message}"
    );

    // The same worker still serves.
    let out = submit(3).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let c: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(c["status"], "SUCCEEDED", "{c}");
}

/// A failure whose text is larger than one message to the server (a
/// program's stderr) keeps its code, its text cut to fit: before, the
/// worker sent it as `invalid_result`, losing the exit status.
#[tokio::test]
async fn a_failure_over_the_message_limit_keeps_its_code_cut_to_fit() {
    const LIMIT: usize = 32 * 1024;
    let server = Server::start(&[
        "--max-message-bytes",
        &LIMIT.to_string(),
        "--max-arguments-bytes",
        "4096",
        "--max-result-bytes",
        "4096",
        "--max-schema-bytes",
        "4096",
        "--max-description-bytes",
        "1024",
    ])
    .await;
    // 60 KiB on stderr (the worker keeps up to 64 KiB of it), then exit 3.
    let _worker = server
        .exec_worker(
            "loud",
            "head -c 61440 /dev/zero | tr '\\0' e >&2; exit 3",
            &[],
        )
        .await;
    let out = server
        .cli(&["submit", "loud", "--args", "{}", "--wait", "--json"])
        .await;
    assert!(!out.status.success(), "a failed task exits non-zero");
    let c: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(c["status"], "FAILED", "{c}");
    assert_eq!(c["error"]["code"], "exit_status", "{c}");
    assert_eq!(c["attempts"], 1, "not requeued: {c}");
    let message = c["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("exit status 3: eee"), "{message:.80}");
}

/// Runs the CLI with its stdout on a pipe whose reading end is already
/// closed, as `errand ... | head -1` leaves it once head has its line.
async fn cli_into_closed_pipe(server: &Server, args: &[&str]) -> std::process::Output {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just opened and are owned here only.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    tokio::process::Command::new(errand_bin())
        .args(args)
        .env("ERRAND_SERVER", &server.addr)
        .stdout(std::process::Stdio::from(write))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running errand")
        // Not `output()`: it would give the child a fresh stdout pipe.
        .wait_with_output()
        .await
        .expect("running errand")
}

/// `errand tasks --json | head -1`: a closed stdout ends the command
/// quietly, as other Unix tools end (SIGPIPE), not with a panic.
#[tokio::test]
async fn a_closed_stdout_ends_commands_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let server = Server::start(&[]).await;
    let _w = server.exec_worker("echo", "cat", &[]).await;
    let client = server.client().await;
    let id = client.submit("s", "echo", "{}").await.unwrap().task_id;
    for args in [
        vec!["tools"],
        vec!["tools", "--json"],
        vec!["tasks", "--json", "--limit", "500"],
        vec!["status", id.as_str()],
        vec!["watch", "--session", "s", "--count", "1"],
        vec!["token", "new", "--role", "agent", "--tenant", "t"],
    ] {
        let out = cli_into_closed_pipe(&server, &args).await;
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(
            out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
            "{args:?}: {:?} {err}",
            out.status
        );
    }
}

/// `submit --wait` prints the whole result, also one over the inline budget
/// (the stream carries only a preview of it).
#[tokio::test]
async fn submit_wait_prints_a_result_over_the_budget_whole() {
    let server = Server::start(&[]).await;
    let _w = server.exec_worker("echo", "cat", &[]).await;
    let args = serde_json::json!({ "text": "word ".repeat(400) }).to_string();
    let out = server
        .cli(&[
            "submit", "echo", "--args", &args, "--budget", "100", "--wait",
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let printed: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(printed, serde_json::from_str::<Value>(&args).unwrap());

    let out = server
        .cli(&[
            "submit", "echo", "--args", &args, "--budget", "100", "--wait", "--json",
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let c: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(c["status"], "SUCCEEDED");
    assert_eq!(c["result"]["text"], "word ".repeat(400));
}

/// `--args @FILE` and `--args -` (stdin), as curl reads data: arguments
/// larger than a command line may carry (about 128 KiB per argument).
#[tokio::test]
async fn submit_reads_arguments_from_a_file_or_stdin() {
    use tokio::io::AsyncWriteExt;
    let server = Server::start(&[]).await;
    let _w = server.exec_worker("echo", "cat", &[]).await;
    let args = serde_json::json!({ "text": "x".repeat(200 * 1024) }).to_string();
    let expected: Value = serde_json::from_str(&args).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("args.json");
    std::fs::write(&file, &args).unwrap();
    let at_file = format!("@{}", file.display());
    let out = server
        .cli(&["submit", "echo", "--args", &at_file, "--wait"])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        serde_json::from_str::<Value>(stdout(&out).trim()).unwrap(),
        expected
    );

    for dash in ["-", "@-"] {
        let mut child = tokio::process::Command::new(errand_bin())
            .args(["submit", "echo", "--args", dash, "--wait"])
            .env("ERRAND_SERVER", &server.addr)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(args.as_bytes()).await.unwrap();
        drop(stdin);
        let out = within("submit to finish", child.wait_with_output())
            .await
            .unwrap();
        assert!(out.status.success(), "{dash}: {}", stderr(&out));
        assert_eq!(
            serde_json::from_str::<Value>(stdout(&out).trim()).unwrap(),
            expected
        );
    }

    let out = server
        .cli(&["submit", "echo", "--args", "@/nonexistent/args.json"])
        .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("/nonexistent/args.json"),
        "{}",
        stderr(&out)
    );
}

/// A worker that never reached its server says so at once, as submit does,
/// instead of retrying for ever.
#[tokio::test]
async fn a_worker_that_never_connected_fails_at_once() {
    let out = within(
        "the worker to give up",
        tokio::process::Command::new(errand_bin())
            .args(["worker", "--tool", "q", "--exec", "cat"])
            .args(["--server", "127.0.0.1:1"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("errand: no errand server at 127.0.0.1:1 (connection refused)"),
        "{}",
        stderr(&out)
    );
}

/// `--server` at an HTTP port (the dashboard's, MCP's) says what it found
/// instead of "grpc-status header missing".
#[tokio::test]
async fn a_server_address_at_an_http_port_says_so() {
    let server =
        Server::start(&["--ui-listen", "127.0.0.1:0", "--mcp-listen", "127.0.0.1:0"]).await;
    let host_port = |url: &str| {
        url.trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_string()
    };
    for url in [server.ui_url.clone(), server.mcp_url.clone()] {
        let addr = host_port(&url.unwrap());
        let out = tokio::process::Command::new(errand_bin())
            .args(["tools", "--server", &addr])
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("{addr} answered HTTP, not errand's gRPC")),
            "{err}"
        );
        assert!(!err.contains("grpc-status header missing"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

/// A bare host means port 7466, and the error names the port it tried.
#[tokio::test]
async fn a_bare_host_names_the_port_tried() {
    let out = tokio::process::Command::new(errand_bin())
        .args(["tools", "--server", "127.0.0.2"])
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "nothing listens on 127.0.0.2:7466"
    );
    assert!(
        stderr(&out).contains("no errand server at 127.0.0.2:7466"),
        "{}",
        stderr(&out)
    );
}

/// `pending --max-bytes` keeps the text within it, in whole sentences, and
/// ends the line; below the least a digest needs (256) it is refused, where
/// 10 bytes printed a fragment ("No tool") that read as another message.
#[tokio::test]
async fn pending_cut_short_ends_at_a_word_with_a_newline() {
    let server = Server::start(&[]).await;
    let mut worker = server.gate_worker(&["crawl"], 1).await;
    let client = server.client().await;
    client.submit("demo", "crawl", "{}").await.unwrap();
    worker.next().await.succeed("1");
    client.submit("demo", "crawl", "{}").await.unwrap();
    let _held = worker.next().await;
    let full = stdout(&server.cli(&["pending", "--session", "demo"]).await);
    let out = server
        .cli(&["pending", "--session", "demo", "--max-bytes", "256"])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    // The task is counted, not listed, and the text stays whole sentences
    // (the cut at a word is `text::digest`'s unit test).
    let short = stdout(&out);
    assert!(
        short.len() <= 257 && short.len() < full.len(),
        "{short:?} of {full:?}"
    );
    assert!(
        short.ends_with(".\n") && short.contains("(1 not listed here.)"),
        "{short:?}"
    );
    let out = server
        .cli(&["pending", "--session", "demo", "--max-bytes", "10"])
        .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("max_bytes 10 is below 256"),
        "{}",
        stderr(&out)
    );
}

/// `watch --after` past the session's last seq is refused as `ack` refuses
/// it (OUT_OF_RANGE), instead of waiting silently: the server's rule, in
/// the server's words.
#[tokio::test]
async fn watch_after_beyond_the_last_seq_is_refused_as_ack_does() {
    let server = Server::start(&[]).await;
    let _w = server.exec_worker("echo", "cat", &[]).await;
    let done = server
        .cli(&["submit", "echo", "--session", "demo", "--wait"])
        .await;
    assert!(done.status.success(), "{}", stderr(&done));
    let ack = server
        .cli(&["ack", "--session", "demo", "--up-to", "1000"])
        .await;
    assert!(
        stderr(&ack).starts_with("errand: OUT_OF_RANGE"),
        "{}",
        stderr(&ack)
    );
    for extra in [&[][..], &["--progress"][..]] {
        let mut args = vec!["watch", "--session", "demo", "--after", "1000"];
        args.extend_from_slice(extra);
        let out = within("watch to refuse", server.cli(&args)).await;
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(
            err.starts_with(
                "errand: OUT_OF_RANGE: after_seq 1000 is beyond session \"demo\"'s last seq, 1"
            ),
            "{err}"
        );
    }
    // At the last seq it follows as before.
    let out = server
        .cli(&["watch", "--session", "demo", "--after", "0", "--count", "1"])
        .await;
    assert!(stdout(&out).starts_with("#1 "), "{}", stdout(&out));
}

/// Usage lines show only what must be given: --server has a default.
#[tokio::test]
async fn usage_lines_do_not_show_defaulted_flags_as_required() {
    for command in ["worker", "submit", "tools", "watch"] {
        let out = tokio::process::Command::new(errand_bin())
            .args([command, "--help"])
            .env("ERRAND_SERVER", "127.0.0.1:9")
            .output()
            .await
            .unwrap();
        let help = stdout(&out);
        let usage = help.lines().find(|l| l.starts_with("Usage:")).unwrap();
        assert!(!usage.contains("--server"), "{command}: {usage}");
    }
}
