//! The agent-side commands: tools, submit, status, pending, result, ack
//! (watch is in `watch`, cancel in `ops`).
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use errand_client::{Client, pb};

use crate::follow::Follow;
use crate::output;
use crate::stop::{Signal, Stop};

#[derive(ClapArgs)]
pub struct ToolsArgs {
    #[command(flatten)]
    pub conn: crate::ConnectArgs,
    /// One JSON object per tool.
    #[arg(long)]
    json: bool,
}

#[derive(ClapArgs)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub conn: crate::ConnectArgs,
    /// The tool to call.
    tool: String,
    /// Arguments as a JSON object; @FILE reads them from a file, - (or @-)
    /// from stdin, as curl reads data.
    #[arg(long, default_value = "{}")]
    args: String,
    /// The agent session (conversation) the call belongs to.
    #[arg(long, env = "ERRAND_SESSION", default_value = "default")]
    session: String,
    /// Timeout of the run in milliseconds (0: the tool's default).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    timeout_ms: u64,
    /// How long the call may wait for a worker, in milliseconds from submit,
    /// before it times out (0: the tool's, else the server's default).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    queue_timeout_ms: u64,
    /// Makes a retried submit return the first one's task.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// How the result reaches the model: when-idle, interrupt or silent
    /// (default: the tool's, else the server's).
    #[arg(long, value_parser = parse_delivery)]
    delivery: Option<pb::DeliveryPolicy>,
    /// Join an identical call (same session, tool and arguments) still in
    /// flight instead of running the tool again: `join` or `off` (default:
    /// the tool's policy).
    #[arg(long, value_parser = ["join", "off"])]
    dedup: Option<String>,
    /// Most bytes of the result delivered inline; a larger result arrives
    /// as a preview (read it whole with `errand result`). 0: the tool's,
    /// then the server's budget.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    budget: u64,
    /// Wait for the result and print it; exit 1 unless it succeeded.
    #[arg(long)]
    wait: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(ClapArgs)]
pub struct PendingArgs {
    #[command(flatten)]
    pub conn: crate::ConnectArgs,
    /// The session to ask about.
    #[arg(long, env = "ERRAND_SESSION", default_value = "default")]
    session: String,
    /// Most bytes of the text: at least 256, or 0 for the server's default, 4096.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    max_bytes: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_delivery(s: &str) -> Result<pb::DeliveryPolicy, String> {
    let name = format!(
        "DELIVERY_POLICY_{}",
        s.trim().to_ascii_uppercase().replace('-', "_")
    );
    pb::DeliveryPolicy::from_str_name(&name)
        .filter(|d| *d != pb::DeliveryPolicy::Unspecified)
        .ok_or_else(|| {
            format!("{s:?} is not a delivery policy: use when-idle, interrupt or silent")
        })
}

#[derive(ClapArgs)]
pub struct TaskArgs {
    #[command(flatten)]
    pub conn: crate::ConnectArgs,
    /// The task ID SubmitTool returned.
    task_id: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(ClapArgs)]
pub struct ResultArgs {
    #[command(flatten)]
    pub conn: crate::ConnectArgs,
    /// The task whose full result to print.
    task_id: String,
    /// Bytes per ReadResult page (0: the server's default).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    page_bytes: u64,
    /// One JSON object: task_id, result (the result's JSON, or its text
    /// as a string) and result_bytes.
    #[arg(long)]
    json: bool,
}

#[derive(ClapArgs)]
pub struct AckArgs {
    #[command(flatten)]
    pub conn: crate::ConnectArgs,
    /// The session whose completions are released.
    #[arg(long, env = "ERRAND_SESSION", default_value = "default")]
    session: String,
    /// Completions with seq up to and including this are released.
    #[arg(long, allow_negative_numbers = true)]
    up_to: u64,
    /// One JSON object: session_id, up_to, released (how many this call
    /// released) and acked_seq (the session's acknowledged seq after it).
    #[arg(long)]
    json: bool,
}

async fn connect(server: &str, conn: &crate::ConnectArgs) -> Result<Client> {
    conn.client(server).await
}

pub async fn tools(server: &str, args: ToolsArgs) -> Result<ExitCode> {
    let tools = connect(server, &args.conn).await?.list_tools().await?;
    for tool in &tools {
        if args.json {
            out!("{}", output::tool_json(tool));
        } else {
            let first_line = own_description(&tool.description)
                .lines()
                .next()
                .unwrap_or_default();
            out!(
                "{:<24} workers={:<3} queued={:<4} running={:<4} {}",
                tool.name,
                tool.workers,
                tool.queued,
                tool.running,
                output::shown(first_line)
            );
        }
    }
    if tools.is_empty() && !args.json {
        eprintln!("no tools yet: start a worker, e.g. errand worker --tool echo --exec cat");
    }
    Ok(ExitCode::SUCCESS)
}

/// The server appends its notice for the model ("This tool is
/// asynchronous: ...") to every listed description; the table shows the
/// tool's own words (none: nothing), as the dashboard, MCP and A2A do.
fn own_description(listed: &str) -> &str {
    const NOTICE: &str = "This tool is asynchronous:";
    match listed.find(NOTICE) {
        Some(at) => listed[..at].trim_end(),
        None => listed,
    }
}

/// Most bytes `--args @FILE` or `--args -` reads: past any server's
/// message limit, so the server says what its own limit is.
const MAX_ARGS_FILE_BYTES: u64 = 16 << 20;

/// The arguments text `--args` names: the text itself, or with `@FILE` a
/// file's and with `-` or `@-` stdin's, at most [`MAX_ARGS_FILE_BYTES`].
fn arguments_text(arg: &str) -> Result<String> {
    use std::io::Read;
    let (source, reader): (String, Box<dyn Read>) =
        match arg {
            "-" | "@-" => ("stdin".into(), Box::new(std::io::stdin())),
            _ => match arg.strip_prefix('@') {
                Some(path) => (
                    path.to_string(),
                    Box::new(std::fs::File::open(path).with_context(|| {
                        format!("--args: cannot read the arguments file {path}")
                    })?),
                ),
                None => return Ok(arg.to_string()),
            },
        };
    let mut text = String::new();
    reader
        .take(MAX_ARGS_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("--args: cannot read the arguments from {source}"))?;
    if text.len() as u64 > MAX_ARGS_FILE_BYTES {
        bail!("--args: {source} holds more than {MAX_ARGS_FILE_BYTES} bytes");
    }
    Ok(text)
}

pub async fn submit(server: &str, args: SubmitArgs) -> Result<ExitCode> {
    let arguments_json = arguments_text(&args.args)?;
    let client = connect(server, &args.conn).await?;
    let request = pb::SubmitToolRequest {
        session_id: args.session.clone(),
        tool: args.tool,
        arguments_json,
        timeout_ms: args.timeout_ms,
        queue_timeout_ms: args.queue_timeout_ms,
        idempotency_key: args.idempotency_key.unwrap_or_default(),
        delivery: args.delivery.map_or(0, |d| d as i32),
        dedup: match args.dedup.as_deref() {
            Some("join") => pb::DedupPolicy::JoinInFlight as i32,
            Some(_) => pb::DedupPolicy::Off as i32,
            None => pb::DedupPolicy::Unspecified as i32,
        },
        result_budget_bytes: args.budget,
        ..Default::default()
    };
    if !args.wait {
        let ack = client.submit_request(request).await?;
        if args.json {
            out!("{}", submit_json(&ack, None));
        } else {
            out!("{}", ack.task_id);
            eprintln!("{}", ack.ack);
        }
        return Ok(ExitCode::SUCCESS);
    }
    // A stop (Ctrl-C, SIGTERM) while waiting leaves the task running on the
    // server: say which task and how to reach it, rather than die in silence.
    let mut stop = Stop::new()?;
    let ack = tokio::select! {
        ack = client.submit_request(request) => ack?,
        signal = stop.next() => {
            eprintln!(
                "errand: interrupted before the server answered; the call may have been \
    submitted: `errand tasks --session {}` lists the session's tasks",
                args.session
            );
            return Ok(signal.exit_code());
        }
    };
    // The ack (with the task ID) at once, as plain submit prints it: the wait
    // may be long (a tool no worker serves waits for its queue timeout).
    eprintln!("{}", ack.ack);
    tokio::select! {
        waited = wait_for(&client, server, &args.session, &ack.task_id, args.json) => waited,
        signal = stop.next() => {
            eprintln!("{}", left_running(&ack.task_id, &args.session, signal));
            Ok(signal.exit_code())
        }
    }
}

/// What a stopped `submit --wait` says of the task it leaves running.
fn left_running(id: &str, session: &str, signal: Signal) -> String {
    format!(
        "errand: stopped waiting ({}); task {id} goes on on the server: `errand status {id}` \
shows it, `errand watch --session {session}` follows the session's results, `errand result {id}` \
prints its result once it has one, `errand cancel {id}` cancels it",
        signal.name()
    )
}

/// `submit --json`'s object: the ack, and the task as `tasks --json` shows
/// one.
fn submit_json(ack: &pb::SubmitToolResponse, retry_of: Option<&str>) -> serde_json::Value {
    let task = ack.task.as_ref().map(output::task_json);
    let mut obj = serde_json::json!({
        "task_id": ack.task_id,
        "ack": ack.ack,
        "deduplicated": ack.deduplicated,
        "joined": ack.joined,
        "task": task,
    });
    if let Some(original) = retry_of {
        obj["retry_of"] = serde_json::json!(original);
    }
    obj
}

/// `retry --json`'s object (the retried task's ack, and what it retries).
pub fn retry_json(ack: &pb::SubmitToolResponse, retry_of: &str) -> serde_json::Value {
    submit_json(ack, Some(retry_of))
}

/// Waits for task `id`'s completion on `session` and prints it.
async fn wait_for(
    client: &Client,
    server: &str,
    session: &str,
    id: &str,
    json: bool,
) -> Result<ExitCode> {
    // Every retained completion is replayed from seq 0, so the task's own
    // cannot slip by between the submit and the stream.
    let mut stream = Follow::new(client, server, session, 0, true);
    loop {
        let mut completion = stream.next().await?;
        if completion.task_id != id {
            continue;
        }
        if completion.result_truncated {
            // Over the inline budget: the stream carries a preview, and
            // --wait promises the result, so read it whole.
            let mut full = Vec::with_capacity(completion.result_bytes.min(1 << 26) as usize);
            copy_result(client, id, 0, &mut full).await?;
            let full = String::from_utf8(full).context("the result is not UTF-8")?;
            completion.outcome = Some(pb::completion::Outcome::ResultJson(full));
        }
        if json {
            out!("{}", output::completion_json(&completion));
        } else {
            match &completion.outcome {
                Some(pb::completion::Outcome::ResultJson(r)) => out!("{r}"),
                _ => eprintln!("{}", output::completion_line(&completion)),
            }
        }
        let ok = completion.status == pb::TaskStatus::Succeeded as i32;
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
}

/// A server's answer speaks for itself, as on `ack` (an `--after` past the
/// session's last seq: `OUT_OF_RANGE: after_seq N is beyond ...`); another
/// failure says what was being done.
pub(crate) fn failed(e: errand_client::Error, doing: &'static str) -> anyhow::Error {
    match e {
        errand_client::Error::Status(_) => e.into(),
        other => anyhow::Error::new(other).context(doing),
    }
}

pub async fn pending(server: &str, args: PendingArgs) -> Result<ExitCode> {
    let digest = connect(server, &args.conn)
        .await?
        .pending_digest(&args.session, args.max_bytes)
        .await?;
    if args.json {
        let tasks: Vec<_> = digest.pending.iter().map(output::task_json).collect();
        out!(
            "{}",
            serde_json::json!({
                "session_id": args.session,
                "pending": tasks,
                "pending_count": digest.pending_count,
                "last_seq": digest.last_seq,
                "acked_seq": digest.acked_seq,
                "unacknowledged": digest.unacknowledged,
                "text": digest.text,
            })
        );
    } else if digest.text.is_empty() {
        eprintln!(
            "nothing pending in session {:?}, and every result is acknowledged",
            args.session
        );
    } else if digest.text.ends_with('\n') {
        out_raw!("{}", digest.text);
    } else {
        // A text cut at --max-bytes: the shell's prompt goes on a new line.
        out!("{}", digest.text);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn status(server: &str, args: TaskArgs) -> Result<ExitCode> {
    let task = connect(server, &args.conn)
        .await?
        .get_task(&args.task_id)
        .await?;
    output::print_task(&task, args.json);
    Ok(ExitCode::SUCCESS)
}

pub async fn ack(server: &str, args: AckArgs) -> Result<ExitCode> {
    let acked = connect(server, &args.conn)
        .await?
        .ack(&args.session, args.up_to)
        .await?;
    let removed = acked.removed;
    if args.json {
        out!(
            "{}",
            serde_json::json!({
                "session_id": args.session,
                "up_to": args.up_to,
                "released": removed,
                "acked_seq": acked.acked_seq,
            })
        );
    } else {
        out!(
            "released {removed} completion{} of session {:?} (acknowledged up to seq {})",
            if removed == 1 { "" } else { "s" },
            args.session,
            acked.acked_seq,
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes a task's full result to stdout, exactly its bytes (no newline
/// added), reading it page by page with ReadResult.
pub async fn result(server: &str, args: ResultArgs) -> Result<ExitCode> {
    use std::io::Write;
    let client = connect(server, &args.conn).await?;
    if args.json {
        let mut whole = Vec::new();
        copy_result(&client, &args.task_id, args.page_bytes, &mut whole).await?;
        let text = String::from_utf8(whole).context("the result is not UTF-8")?;
        let result = serde_json::from_str::<serde_json::Value>(&text)
            .unwrap_or_else(|_| serde_json::json!(text));
        out!(
            "{}",
            serde_json::json!({"task_id": args.task_id, "result": result, "result_bytes": text.len()})
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut stdout = crate::output::Stdout::lock();
    copy_result(&client, &args.task_id, args.page_bytes, &mut stdout).await?;
    stdout.flush().context("writing the result to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// Copies a task's full result text into `out`, page by page with
/// ReadResult (`page_bytes` per page, 0: the server's default).
async fn copy_result(
    client: &Client,
    task_id: &str,
    page_bytes: u64,
    out: &mut impl std::io::Write,
) -> Result<()> {
    let mut offset = 0u64;
    loop {
        let chunk = client.read_result(task_id, offset, page_bytes).await?;
        out.write_all(chunk.data.as_bytes())
            .context("writing the result to stdout")?;
        offset += chunk.data.len() as u64;
        if chunk.eof {
            return Ok(());
        }
        if chunk.data.is_empty() {
            bail!("the server sent an empty page before the end of the result");
        }
    }
}
