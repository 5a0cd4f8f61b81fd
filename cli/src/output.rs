//! How the CLI prints tasks, completions and tools: one readable line for
//! people, or one JSON object per line with `--json`.
use errand_client::pb;
use serde_json::{Value, json};

/// Text from outside (a worker's error or progress message, a result, a
/// call's arguments, a worker's name) as a person's terminal is shown it:
/// on one line, its line breaks and other control characters escaped as
/// JSON escapes them (`\n`, `\u001b`), so that it cannot print a line that
/// passes for one of errand's, nor send the terminal escape sequences.
/// `--json` output needs none of this: JSON escapes them itself.
pub fn shown(text: &str) -> String {
    errand_server::text::quote(text, usize::MAX)
}

pub fn status_name(status: i32) -> &'static str {
    pb::TaskStatus::try_from(status).map_or("UNKNOWN", |s| {
        s.as_str_name().trim_start_matches("TASK_STATUS_")
    })
}

/// Milliseconds since the Unix epoch, or null.
pub fn time(t: &Option<prost_types::Timestamp>) -> Value {
    t.as_ref().map_or(Value::Null, |t| {
        json!(t.seconds * 1000 + i64::from(t.nanos / 1_000_000))
    })
}

fn error_json(e: &pb::ToolError) -> Value {
    json!({ "code": e.code, "message": e.message })
}

/// The outcome as JSON values. An empty `result_json` (a result delivered
/// truncated or by reference: see `result_truncated`/`result_bytes`) is no
/// JSON value, so it is `null`, never `""` (a real empty-string result).
fn outcome_json(result: Option<&str>, error: Option<&pb::ToolError>) -> (Value, Value) {
    let result = result.filter(|r| !r.is_empty()).map_or(Value::Null, |r| {
        serde_json::from_str(r).unwrap_or_else(|_| json!(r))
    });
    (result, error.map_or(Value::Null, error_json))
}

pub fn completion_json(c: &pb::Completion) -> Value {
    let (result, error) = match &c.outcome {
        Some(pb::completion::Outcome::ResultJson(r)) => outcome_json(Some(r), None),
        Some(pb::completion::Outcome::Error(e)) => outcome_json(None, Some(e)),
        None => (Value::Null, Value::Null),
    };
    json!({
        "seq": c.seq,
        "task_id": c.task_id,
        "session_id": c.session_id,
        "tool": c.tool,
        "arguments": serde_json::from_str::<Value>(&c.arguments_json).unwrap_or(Value::Null),
        "status": status_name(c.status),
        "result": result,
        "error": error,
        "elapsed_ms": c.elapsed_ms,
        "attempts": c.attempts,
        "message": c.message,
        "completed_at_ms": time(&c.completed_at),
        "delivery": delivery_name(c.delivery),
        "result_truncated": c.result_truncated,
        "result_bytes": c.result_bytes,
        "result_preview": c.result_preview,
        "fallback": c.fallback.as_ref().map_or(Value::Null, fallback_json),
    })
}

/// How a fallback answered the call (`Completion.fallback`): how the call
/// itself ended, and the fallback tool or the last-good result's age.
fn fallback_json(f: &pb::FallbackUsed) -> Value {
    json!({
        "primary_status": status_name(f.primary_status),
        "primary_error": f.primary_error.as_ref().map_or(Value::Null, error_json),
        "tool": f.tool,
        "last_good_age_ms": f.last_good_age_ms,
        "task_id": f.task_id,
    })
}

/// " (answered by fallback tool `backup`: the call TIMED_OUT)", " (a stale
/// result, 12300 ms old, of task ID: the call FAILED)", or "".
fn fallback_note(c: &pb::Completion) -> String {
    c.fallback.as_ref().map_or(String::new(), fallback_text)
}

/// [`fallback_note`] of a completion's or a task's `fallback`.
fn fallback_text(f: &pb::FallbackUsed) -> String {
    let primary = status_name(f.primary_status);
    if f.tool.is_empty() {
        format!(
            " (answered by a stale result, {} ms old, of task {}: the call {primary})",
            f.last_good_age_ms, f.task_id
        )
    } else {
        format!(
            " (answered by fallback tool {} in task {}: the call {primary})",
            f.tool, f.task_id
        )
    }
}

/// One line per completion. A result over its budget (`result_truncated`)
/// shows its preview, its size and how to read it all.
pub fn completion_line(c: &pb::Completion) -> String {
    let detail = match &c.outcome {
        _ if c.result_truncated => format!(
            "{} [result truncated: {} bytes in all; `errand result {}` prints it]",
            shown(&c.result_preview),
            c.result_bytes,
            c.task_id
        ),
        Some(pb::completion::Outcome::ResultJson(r)) if r.is_empty() && c.result_bytes > 0 => {
            format!(
                "[result of {} bytes not sent inline; `errand result {}` prints it]",
                c.result_bytes, c.task_id
            )
        }
        Some(pb::completion::Outcome::ResultJson(r)) => shown(r),
        Some(pb::completion::Outcome::Error(e)) => {
            format!("[{}] {}", shown(&e.code), shown(&e.message))
        }
        None => String::new(),
    };
    format!(
        "#{seq} {id} {tool} {status}{fallback} in {ms} ms: {detail}",
        seq = c.seq,
        id = c.task_id,
        tool = c.tool,
        status = status_name(c.status),
        fallback = fallback_note(c),
        ms = c.elapsed_ms,
    )
}

/// `WHEN_IDLE`, `INTERRUPT`, `SILENT`; "" when unset.
fn delivery_name(code: i32) -> &'static str {
    match pb::DeliveryPolicy::try_from(code) {
        Ok(pb::DeliveryPolicy::WhenIdle) => "WHEN_IDLE",
        Ok(pb::DeliveryPolicy::Interrupt) => "INTERRUPT",
        Ok(pb::DeliveryPolicy::Silent) => "SILENT",
        _ => "",
    }
}

pub fn progress_json(p: &pb::Progress) -> Value {
    json!({
        "task_id": p.task_id,
        "session_id": p.session_id,
        "tool": p.tool,
        "index": p.index,
        "progress": p.progress,
        "total": p.total,
        "message": p.message,
        "detail": serde_json::from_str::<Value>(&p.detail_json).unwrap_or(Value::Null),
        "elapsed_ms": p.elapsed_ms,
    })
}

pub fn progress_line(p: &pb::Progress) -> String {
    use errand_server::text::number;
    let amount = if p.total > 0.0 {
        format!("{}/{}", number(p.progress), number(p.total))
    } else {
        number(p.progress)
    };
    format!(
        "~ {id} {tool} progress {amount} after {ms} ms: {message}",
        id = p.task_id,
        tool = p.tool,
        ms = p.elapsed_ms,
        message = shown(&p.message),
    )
}

pub fn task_json(t: &pb::Task) -> Value {
    let (result, error) = match &t.outcome {
        Some(pb::task::Outcome::ResultJson(r)) => outcome_json(Some(r), None),
        Some(pb::task::Outcome::Error(e)) => outcome_json(None, Some(e)),
        None => (Value::Null, Value::Null),
    };
    json!({
        "task_id": t.task_id,
        "session_id": t.session_id,
        "tool": t.tool,
        "arguments": serde_json::from_str::<Value>(&t.arguments_json).unwrap_or(Value::Null),
        "status": status_name(t.status),
        "result": result,
        "error": error,
        "attempts": t.attempts,
        "timeout_ms": t.timeout_ms,
        "seq": t.seq,
        "elapsed_ms": t.elapsed_ms,
        "created_at_ms": time(&t.created_at),
        "started_at_ms": time(&t.started_at),
        "finished_at_ms": time(&t.finished_at),
        "delivery": delivery_name(t.delivery),
        "progress": t.progress.as_ref().map(progress_json),
        "fallback": t.fallback.as_ref().map_or(Value::Null, fallback_json),
        "worker_id": t.worker_id,
        "worker_name": t.worker_name,
        "retry_of": t.retry_of,
    })
}

/// A duration for people, in one format everywhere (`tasks`' ELAPSED and
/// CREATED, `workers`' times): "340ms", "4.2s", "59s", "5m3s", "3h5m", "2d3h".
pub fn duration_text(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    let secs = d.as_secs();
    match secs {
        _ if ms < 1000 => format!("{ms}ms"),
        0..10 => format!("{:.1}s", d.as_secs_f64()),
        10..60 => format!("{secs}s"),
        60..3600 => format!("{}m{}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h{}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{}h", secs / 86400, secs % 86400 / 3600),
    }
}

/// Most bytes of a result `errand status` shows; `errand result` prints it
/// all, and `--json` carries it whole.
pub const STATUS_RESULT_BYTES: usize = 4096;

pub fn task_text(t: &pb::Task) -> String {
    let mut out = format!(
        "task     {}\nsession  {}\ntool     {}\nargs     {}\nstatus   {}\nattempts {}\nelapsed  {} ms",
        t.task_id,
        shown(&t.session_id),
        t.tool,
        shown(&t.arguments_json),
        status_name(t.status),
        t.attempts,
        t.elapsed_ms
    );
    if let Some(f) = &t.fallback {
        // " (answered by …)": how the call itself ended, and what answered.
        out.insert_str(
            out.find("\nattempts").unwrap_or(out.len()),
            &fallback_text(f),
        );
    }
    match &t.outcome {
        Some(pb::task::Outcome::ResultJson(r)) if r.len() > STATUS_RESULT_BYTES => {
            out.push_str(&format!(
                "\nresult   {} [result truncated: {} bytes in all; `errand result {}` prints it]",
                errand_server::text::quote(r, STATUS_RESULT_BYTES),
                r.len(),
                t.task_id
            ))
        }
        Some(pb::task::Outcome::ResultJson(r)) => out.push_str(&format!("\nresult   {}", shown(r))),
        Some(pb::task::Outcome::Error(e)) => out.push_str(&format!(
            "\nerror    [{}] {}",
            shown(&e.code),
            shown(&e.message)
        )),
        None => {}
    }
    out
}

pub fn tool_json(t: &pb::Tool) -> Value {
    json!({
        "name": t.name,
        "description": t.description,
        "input_schema": serde_json::from_str::<Value>(&t.input_schema_json).unwrap_or(Value::Null),
        "timeout_ms": t.timeout_ms,
        "workers": t.workers,
        "queued": t.queued,
        "running": t.running,
    })
}

pub fn print_task(task: &pb::Task, json: bool) {
    if json {
        out!("{}", task_json(task));
    } else {
        out!("{}", task_text(task));
    }
}

/// A command's stdout. SIGPIPE stays ignored (Rust's default), because the
/// same process writes to gRPC sockets, where a peer that closed (a TLS
/// alert, a reset) must be an error the command reports, not a silent
/// death; so a reader of stdout that went away (`errand tasks | head -1`)
/// is seen here, as EPIPE, and the process then ends as Unix tools do,
/// killed by SIGPIPE.
pub struct Stdout(std::io::StdoutLock<'static>);

impl Stdout {
    pub fn lock() -> Self {
        Stdout(std::io::stdout().lock())
    }
}

impl std::io::Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf).map_err(closed)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().map_err(closed)
    }
}

/// `e`, unless stdout's reader went away: then the process ends by SIGPIPE.
fn closed(e: std::io::Error) -> std::io::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        die_of_sigpipe();
    }
    e
}

/// Ends the process as a Unix tool whose reader went away ends: by SIGPIPE
/// (a shell reports status 141).
fn die_of_sigpipe() -> ! {
    // SAFETY: the default disposition runs no handler code; raise() then
    // ends the process.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    std::process::exit(141)
}

/// What [`out!`] prints, through [`Stdout`]; another write error ends the
/// process with status 1, saying so (as `println!` would panic).
pub fn print(args: std::fmt::Arguments) {
    use std::io::Write;
    let mut out = Stdout::lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        eprintln!("errand: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// Prints a line the long-running commands (serve, worker) announce
/// themselves with; a closed stdout does not stop them (nobody reads it).
pub fn announce(line: std::fmt::Arguments) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_truncated_result_shows_its_preview_size_and_how_to_read_it() {
        let c = pb::Completion {
            seq: 1,
            task_id: "t1".into(),
            tool: "big".into(),
            status: pb::TaskStatus::Succeeded as i32,
            outcome: Some(pb::completion::Outcome::ResultJson(String::new())),
            result_truncated: true,
            result_bytes: 60_000,
            result_preview: "\"aaa … zzz\"".into(),
            ..Default::default()
        };
        let line = completion_line(&c);
        for part in ["\"aaa … zzz\"", "60000 bytes", "errand result t1"] {
            assert!(line.contains(part), "{part}: {line}");
        }
        let json = completion_json(&c);
        assert_eq!(json["result_truncated"], true);
        assert_eq!(json["result_bytes"], 60_000);
        let inline = pb::Completion {
            outcome: Some(pb::completion::Outcome::ResultJson("{\"n\":1}".into())),
            result_bytes: 7,
            result_truncated: false,
            ..c
        };
        assert!(completion_line(&inline).ends_with(": {\"n\":1}"));
    }

    /// A call a fallback answered does not read as the tool's own success.
    #[test]
    fn a_fallback_answer_says_so() {
        let primary_error = pb::ToolError {
            code: "timeout".into(),
            message: "no result within 300 ms".into(),
        };
        let c = pb::Completion {
            seq: 1,
            task_id: "t1".into(),
            tool: "fail_tool".into(),
            status: pb::TaskStatus::Succeeded as i32,
            outcome: Some(pb::completion::Outcome::ResultJson("\"done\"".into())),
            fallback: Some(pb::FallbackUsed {
                primary_status: pb::TaskStatus::TimedOut as i32,
                primary_error: Some(primary_error),
                tool: "ok_tool".into(),
                task_id: "t2".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let line = completion_line(&c);
        assert!(
            line.contains(
                "SUCCEEDED (answered by fallback tool ok_tool in task t2: the call TIMED_OUT)"
            ),
            "{line}"
        );
        let json = completion_json(&c);
        assert_eq!(json["fallback"]["tool"], "ok_tool");
        assert_eq!(json["fallback"]["primary_status"], "TIMED_OUT");
        assert_eq!(json["fallback"]["primary_error"]["code"], "timeout");
        let stale = pb::Completion {
            fallback: Some(pb::FallbackUsed {
                primary_status: pb::TaskStatus::Failed as i32,
                last_good_age_ms: 12_300,
                task_id: "t0".into(),
                ..Default::default()
            }),
            ..c
        };
        assert!(
            completion_line(&stale).contains(
                "(answered by a stale result, 12300 ms old, of task t0: the call FAILED)"
            ),
            "{}",
            completion_line(&stale)
        );
        assert!(completion_json(&inline_without_fallback())["fallback"].is_null());
    }

    /// `errand status` says a fallback answered, as `errand watch` does.
    #[test]
    fn a_task_a_fallback_answered_says_so() {
        let task = pb::Task {
            task_id: "t1".into(),
            status: pb::TaskStatus::Succeeded as i32,
            fallback: Some(pb::FallbackUsed {
                primary_status: pb::TaskStatus::Failed as i32,
                primary_error: Some(pb::ToolError {
                    code: "boom".into(),
                    message: "it broke".into(),
                }),
                last_good_age_ms: 1200,
                task_id: "t0".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let text = task_text(&task);
        assert!(
            text.contains(
                "status   SUCCEEDED (answered by a stale result, 1200 ms old, of task t0: the call FAILED)\nattempts"
            ),
            "{text}"
        );
        let json = task_json(&task);
        assert_eq!(json["fallback"]["primary_status"], "FAILED");
        assert_eq!(json["fallback"]["task_id"], "t0");
        assert!(task_json(&pb::Task::default())["fallback"].is_null());
    }

    /// Text a worker or a client wrote (an error or progress message, a
    /// result, arguments) cannot start a line of its own that passes for
    /// one of errand's, nor send terminal escapes.
    #[test]
    fn outside_text_stays_on_its_line_and_sends_no_escapes() {
        let forged = "no\n#2 0000 pay SUCCEEDED in 1 ms: {\"ok\":true} \u{1b}[31mRED\r\u{1b}[2J";
        let failed = pb::Completion {
            seq: 1,
            task_id: "t1".into(),
            tool: "pay".into(),
            status: pb::TaskStatus::Failed as i32,
            outcome: Some(pb::completion::Outcome::Error(pb::ToolError {
                code: "bad\u{1b}[2J".into(),
                message: forged.into(),
            })),
            ..Default::default()
        };
        let progress = pb::Progress {
            task_id: "t1".into(),
            tool: "pay".into(),
            message: forged.into(),
            ..Default::default()
        };
        let task = pb::Task {
            task_id: "t1".into(),
            session_id: "s\u{1b}[2J".into(),
            arguments_json: "{\n\"a\": 1}".into(),
            status: pb::TaskStatus::Failed as i32,
            outcome: failed.outcome.as_ref().map(|o| match o {
                pb::completion::Outcome::Error(e) => pb::task::Outcome::Error(e.clone()),
                pb::completion::Outcome::ResultJson(r) => pb::task::Outcome::ResultJson(r.clone()),
            }),
            ..Default::default()
        };
        let result = pb::Completion {
            status: pb::TaskStatus::Succeeded as i32,
            outcome: Some(pb::completion::Outcome::ResultJson(
                "{\n\"x\": \"\u{1b}\"}".into(),
            )),
            ..failed.clone()
        };
        for text in [completion_line(&failed), progress_line(&progress)] {
            assert!(!text.contains(['\n', '\r', '\u{1b}']), "{text:?}");
            assert!(text.contains("\\n#2"), "{text:?}");
        }
        let text = completion_line(&result);
        assert!(text.ends_with(r#": {\n"x": "\u001b"}"#), "{text:?}");
        let text = task_text(&task);
        assert_eq!(text.lines().count(), 8, "{text}");
        assert!(!text.contains(['\r', '\u{1b}']), "{text:?}");
        assert!(
            text.contains("error    [bad\\u001b[2J] no\\n#2 0000 pay"),
            "{text}"
        );
    }

    /// `errand status` shows a large result's start and how to read it all
    /// (`errand result`), as `watch` does, not megabytes on a terminal.
    #[test]
    fn a_large_result_in_status_is_a_preview() {
        let big = format!("\"{}\"", "a".repeat(1_000_000));
        let task = pb::Task {
            task_id: "t1".into(),
            status: pb::TaskStatus::Succeeded as i32,
            outcome: Some(pb::task::Outcome::ResultJson(big)),
            ..Default::default()
        };
        let text = task_text(&task);
        assert!(text.len() < STATUS_RESULT_BYTES + 500, "{}", text.len());
        assert!(
            text.contains("[result truncated: 1000002 bytes in all; `errand result t1` prints it]"),
            "{}",
            &text[text.len() - 200..]
        );
        // --json keeps the whole result.
        assert_eq!(
            task_json(&task)["result"].as_str().unwrap().len(),
            1_000_000
        );
    }

    /// A result delivered truncated or by reference has an empty
    /// `result_json`, which is no JSON value: `--json` says `null` (as for a
    /// failed task) beside `result_truncated`/`result_bytes`, never `""`, a
    /// tool's real empty-string result.
    #[test]
    fn a_result_left_off_is_null_not_an_empty_string() {
        let truncated = pb::Completion {
            status: pb::TaskStatus::Succeeded as i32,
            outcome: Some(pb::completion::Outcome::ResultJson(String::new())),
            result_truncated: true,
            result_bytes: 9_000_000,
            ..Default::default()
        };
        let json = completion_json(&truncated);
        assert_eq!(json["result"], Value::Null, "{json}");
        assert_eq!(json["result_truncated"], true);
        let empty_string = pb::Completion {
            outcome: Some(pb::completion::Outcome::ResultJson("\"\"".into())),
            ..Default::default()
        };
        assert_eq!(completion_json(&empty_string)["result"], "");
        let task = pb::Task {
            outcome: Some(pb::task::Outcome::ResultJson(String::new())),
            ..Default::default()
        };
        assert_eq!(task_json(&task)["result"], Value::Null);
    }

    fn inline_without_fallback() -> pb::Completion {
        pb::Completion {
            outcome: Some(pb::completion::Outcome::ResultJson("1".into())),
            ..Default::default()
        }
    }
}
