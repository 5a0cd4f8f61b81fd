//! What the scheduler accepts: sessions, submits (idempotency key, timeout,
//! arguments against the tool's schema), per-session and per-tenant quotas,
//! worker registrations, and workers' results. Plain functions over the
//! input, the limits and (for quotas) the live state.
use std::{collections::HashSet, time::Duration};

use uuid::Uuid;

use super::state::{Ended, Io, State};
use crate::{
    config::{Config, Limits},
    error::{self, Error},
    fields::MAX_ERROR_MESSAGE_BYTES,
    json_text,
    model::{
        CallOptions, Delivery, Fallback, MAX_PROGRESS_DETAIL_BYTES, MAX_PROGRESS_MESSAGE_BYTES,
        Outcome, ProgressReport, Registration, SessionKey, Submission, TaskState, ToolDef, ToolKey,
        call, codes,
    },
    tools::{self, ToolSpec},
};

/// A task ID as a client passes it.
pub fn parse_task_id(task_id: &str) -> Result<Uuid, Error> {
    if task_id.is_empty() {
        return Err(Error::invalid("task_id is required"));
    }
    Uuid::parse_str(task_id).map_err(|_| {
        Error::invalid(format!(
            "task_id {} is not a UUID: pass {}",
            error::quote(task_id),
            error::phrases::TASK_ID_SOURCE
        ))
    })
}

/// The answer for a task that is not here (or not the caller's).
pub fn not_found(task_id: impl std::fmt::Display) -> Error {
    Error::NotFound(format!(
        "no task {task_id}: it never existed here or is no longer retained"
    ))
}

/// The submit's checks that need no live state: idempotency key, timeout
/// limit (its session was checked when its key was made).
pub fn check_submission(sub: &Submission, limits: &Limits) -> Result<(), Error> {
    if sub.idempotency_key.len() > limits.max_idempotency_key_bytes {
        return Err(Error::invalid(format!(
            "idempotency_key is {} bytes, the limit is {}",
            sub.idempotency_key.len(),
            limits.max_idempotency_key_bytes
        )));
    }
    tools::check_timeout("timeout_ms", sub.timeout_ms, limits)?;
    tools::check_timeout("queue_timeout_ms", sub.queue_timeout_ms, limits)?;
    check_budget("result_budget_bytes", sub.result_budget_bytes, limits)
}

/// A result budget a submit or a tool asks for (0: the default).
pub fn check_budget(field: &str, budget: u64, limits: &Limits) -> Result<(), Error> {
    let max = limits.max_result_budget_bytes as u64;
    if budget > max {
        return Err(Error::invalid(format!(
            "{field} is {budget} bytes, above the server's maximum of {max} \
             (--max-result-budget-bytes): ask for at most {max}, or 0 for the default"
        )));
    }
    Ok(())
}

/// The timeout of one run: the submit's, else the tool's, else the server's.
pub fn timeout(sub: &Submission, spec: &ToolSpec, config: &Config) -> Duration {
    if sub.timeout_ms > 0 {
        Duration::from_millis(sub.timeout_ms)
    } else {
        spec.timeout.unwrap_or(config.default_timeout)
    }
}

/// How the call's completion reaches the model: the submit's policy, else
/// the tool's, else the server's `--default-delivery`.
pub fn delivery(sub: &Submission, spec: &ToolSpec, config: &Config) -> Delivery {
    sub.delivery
        .or(spec.policy.delivery)
        .unwrap_or(config.default_delivery)
}

/// How long a call may wait for a worker: the submit's, else the tool's,
/// else the server's.
pub fn queue_timeout(sub: &Submission, spec: &ToolSpec, config: &Config) -> Duration {
    if sub.queue_timeout_ms > 0 {
        Duration::from_millis(sub.queue_timeout_ms)
    } else {
        spec.queue_timeout.unwrap_or(config.default_queue_timeout)
    }
}

/// The spec of tool `key`, or NOT_FOUND listing the tools of the same
/// tenant (another tenant's are not its business).
pub fn tool_spec<I: Io>(st: &State<I>, key: &ToolKey) -> Result<ToolSpec, Error> {
    if let Some(spec) = st.tool_spec(key.as_key()) {
        return Ok(spec);
    }
    let known = st.tool_names(key.tenant());
    let known = if known.is_empty() {
        "none yet: start a worker that serves it".to_string()
    } else {
        error::list(&known)
    };
    Err(Error::NotFound(format!(
        "unknown tool {}; known tools: {known}",
        error::quote(key.name())
    )))
}

/// Checks the submit's fallback tool, if it names one. Errors: NOT_FOUND
/// for an unknown tool; INVALID_ARGUMENT for the call's own tool. A tool's
/// declared fallback was checked at registration, and one unknown when a
/// call fails leaves the call's own ending (logged).
pub fn check_fallback_tool<I: Io>(
    st: &State<I>,
    sub: &Submission,
    spec: &ToolSpec,
) -> Result<(), Error> {
    let Some(Fallback::Tool(tool)) = sub.fallback.clone() else {
        return Ok(());
    };
    let key = ToolKey::from_key(tool);
    if key == spec.name {
        return Err(Error::invalid(format!(
            "fallback.tool is `{key}`, the call's own tool: a fallback must be another tool"
        )));
    }
    tool_spec(st, &key).map(drop).map_err(|e| match e {
        Error::NotFound(m) => Error::NotFound(format!("fallback.tool: {m}")),
        other => other,
    })
}

/// The submit's fallback, else the tool's.
fn resolved_fallback(sub: &Submission, spec: &ToolSpec) -> Option<Fallback> {
    sub.fallback
        .clone()
        .or_else(|| spec.policy.fallback.clone())
}

/// The call's options: budget (the submit's, else the tool's, else
/// `limits.result_budget_bytes`), dedup (the submit's, else the tool's,
/// else off), fallback (the submit's, else the tool's), and the hash of
/// its checked `arguments`.
pub fn call_options(
    sub: &Submission,
    spec: &ToolSpec,
    arguments: &str,
    limits: &Limits,
) -> CallOptions {
    let result_budget = match (sub.result_budget_bytes, spec.policy.result_budget_bytes) {
        (0, 0) => limits.result_budget_bytes as u64,
        (0, n) | (n, _) => n,
    };
    let joinable = sub
        .join_in_flight
        .or(spec.policy.join_in_flight)
        .unwrap_or(false);
    let mut call = CallOptions {
        result_budget,
        args_hash: call::ArgsHash::default(),
        joinable,
        fallback: resolved_fallback(sub, spec),
        fallback_for: None,
    };
    // Only joins and last-good lookups match on it: parsing, canonicalizing
    // and hashing the arguments is skipped for a call that does neither.
    if call.joinable || call.asks_last_good() {
        call.args_hash = call::ArgsHash::of(arguments);
    }
    call
}

/// Room for one more task of `session` and of its tenant, holding `bytes`
/// of arguments (the tenant's unfinished tasks' and these together at most
/// `max_pending_bytes_per_tenant`), on a server that is not stopping. A fallback run (`run`) is admitted while the server
/// drains: it continues a call accepted before the drain, and is stored
/// queued for the next start or another server (nothing is dispatched
/// while draining), so the call still falls back as it would have.
pub fn check_room<I: Io>(
    st: &State<I>,
    session: &SessionKey,
    bytes: usize,
    limits: &Limits,
    run: bool,
) -> Result<(), Error> {
    if st.is_draining() && !run {
        return Err(Error::Unavailable(
            "the server is shutting down: submit again once it is back".into(),
        ));
    }
    let tenant_pending = st.tenant_pending(session.tenant());
    if tenant_pending >= limits.max_pending_per_tenant {
        return Err(Error::ResourceExhausted(format!(
            "your tenant has {tenant_pending} unfinished tasks, the limit is {}: wait for completions or cancel some",
            limits.max_pending_per_tenant
        )));
    }
    let held = st.tenant_pending_bytes(session.tenant());
    if held.saturating_add(bytes) > limits.max_pending_bytes_per_tenant {
        return Err(Error::ResourceExhausted(format!(
            "your tenant's unfinished tasks hold {held} bytes of arguments, the limit is {} \
             (--max-pending-bytes-per-tenant), and this call's are {bytes}: wait for \
             completions or cancel some",
            limits.max_pending_bytes_per_tenant
        )));
    }
    let pending = st.pending(session.as_key());
    if pending >= limits.max_pending_per_session {
        return Err(Error::ResourceExhausted(format!(
            "session {:?} has {pending} unfinished tasks, the limit is {}: wait for completions or cancel some",
            session.name(),
            limits.max_pending_per_session
        )));
    }
    Ok(())
}

/// Checks a worker's registration; returns its tools' specs.
pub fn check_registration(reg: &Registration, limits: &Limits) -> Result<Vec<ToolSpec>, Error> {
    if reg.tools.is_empty() {
        return Err(Error::invalid("Register must list at least one tool"));
    }
    if reg.tools.len() > limits.max_tools_per_worker {
        return Err(Error::invalid(format!(
            "Register lists {} tools, the limit is {}",
            reg.tools.len(),
            limits.max_tools_per_worker
        )));
    }
    if reg.max_concurrency > limits.max_worker_concurrency {
        return Err(Error::invalid(format!(
            "max_concurrency {} is above the limit of {}",
            reg.max_concurrency, limits.max_worker_concurrency
        )));
    }
    let specs = reg
        .tools
        .iter()
        .map(|t| {
            check_tool_policy(t, limits)?;
            ToolSpec::new(t, limits)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut names = HashSet::new();
    if let Some(dup) = specs.iter().find(|s| !names.insert(s.name.clone())) {
        return Err(Error::invalid(format!(
            "Register lists tool `{}` twice",
            dup.name
        )));
    }
    Ok(specs)
}

/// A worker's progress report as the scheduler keeps it: `message` cut to
/// [`MAX_PROGRESS_MESSAGE_BYTES`], numbers that are not finite read as 0.
/// Errors (the report is ignored): a `detail_json` that breaks errand's
/// JSON rule or is over [`MAX_PROGRESS_DETAIL_BYTES`]; the text says why.
pub fn check_progress(mut report: ProgressReport) -> Result<ProgressReport, String> {
    if !report.detail_json.is_empty() {
        json_text::check(&report.detail_json, MAX_PROGRESS_DETAIL_BYTES)
            .map_err(|problem| format!("detail_json {problem}"))?;
    }
    truncate_utf8(&mut report.message, MAX_PROGRESS_MESSAGE_BYTES);
    // Not a number, infinite or negative: no amount of work, read as the
    // proto's "0 when unknown" rather than shown to the model.
    for n in [&mut report.progress, &mut report.total] {
        if !n.is_finite() || *n < 0.0 {
            *n = 0.0;
        }
    }
    Ok(report)
}

/// What a registered tool declares about its calls, by the rules a submit
/// follows (enum values were decoded at the wire): a budget within
/// `--max-result-budget-bytes` ([`check_budget`]), a fallback tool other
/// than itself. An unknown fallback tool is NOT_FOUND at submit, where the
/// tools are known.
pub fn check_tool_policy(tool: &ToolDef, limits: &Limits) -> Result<(), Error> {
    let name = tool.name.name();
    check_budget(
        &format!("tool `{name}`: result_budget_bytes"),
        tool.policy.result_budget_bytes,
        limits,
    )?;
    if let Some(Fallback::Tool(key)) = &tool.policy.fallback
        && **key == *tool.name.as_key()
    {
        return Err(Error::invalid(format!(
            "tool `{name}`: fallback.tool is the tool itself: a fallback must be another tool"
        )));
    }
    Ok(())
}

/// How a worker's result ends its task: a JSON text by errand's one rule
/// ([`json_text`], with `max_result` bytes) succeeds; anything else fails
/// with [`codes::INVALID_RESULT`], saying why. A worker's own failure keeps
/// its code (cut to [`crate::fields::MAX_ERROR_CODE_BYTES`]) and message
/// (cut to `max_result` bytes).
pub fn judge_result(outcome: Option<Outcome>, max_result: usize) -> (TaskState, Outcome) {
    match outcome {
        Some(Outcome::Result(json)) => match json_text::check(&json, max_result) {
            Ok(()) => (TaskState::Succeeded, Outcome::Result(json)),
            Err(json_text::Problem::TooLarge { len, limit }) => (
                TaskState::Failed,
                Outcome::error(
                    codes::INVALID_RESULT,
                    format!(
                        "the tool's result is {len} bytes, the limit is {limit} (the \
                         server's --max-result-bytes): return less, or a reference (a URL or a \
                         path) to the data"
                    ),
                ),
            ),
            Err(problem) => (
                TaskState::Failed,
                Outcome::error(
                    codes::INVALID_RESULT,
                    format!("the tool's result {problem}"),
                ),
            ),
        },
        Some(Outcome::Error {
            mut code,
            mut message,
        }) => {
            if code.is_empty() {
                code = codes::TOOL_ERROR.to_string();
            }
            truncate_utf8(&mut code, crate::fields::MAX_ERROR_CODE_BYTES);
            truncate_utf8(&mut message, max_result);
            (TaskState::Failed, Outcome::Error { code, message })
        }
        None => (
            TaskState::Failed,
            Outcome::error(
                codes::INVALID_RESULT,
                "the worker sent a result with neither result_json nor error",
            ),
        ),
    }
}

/// The summary kept with a successful result: cut to the task's budget
/// (and to `max_result`); `None` when empty or when the task did not
/// succeed.
pub fn summary(mut summary: String, ended: &Ended, max_result: usize) -> Option<String> {
    if summary.is_empty() || ended.finish.state != TaskState::Succeeded {
        return None;
    }
    let budget = usize::try_from(ended.task.call.result_budget).unwrap_or(usize::MAX);
    let max = if budget == 0 {
        max_result
    } else {
        budget.min(max_result)
    };
    truncate_utf8(&mut summary, max);
    Some(summary)
}

/// A failure's message (`outcome`, when an error) cut to the task's result
/// budget (`budget`; 0: `default_budget`, the server's), as a result's
/// inline part is: a failing tool cannot put more text before the model
/// than a succeeding one. Where cut, the message says so and how long it
/// was, in at most 96 bytes more. Whatever the budget, it is kept within
/// [`MAX_ERROR_MESSAGE_BYTES`] in all ([`crate::text::cut_marked`]): a 4
/// MiB budget let a 4 MiB failure ride beside a 4 MiB fallback result, and
/// the task no longer fit a message.
pub fn bound_error_message(outcome: &mut Outcome, budget: u64, default_budget: usize) {
    let Outcome::Error { message, .. } = outcome else {
        return;
    };
    let max = match usize::try_from(budget).unwrap_or(usize::MAX) {
        0 => default_budget,
        given => given,
    };
    // A budget's marker is at most 96 bytes: from this budget up, the
    // message's own bound is the smaller.
    if max >= MAX_ERROR_MESSAGE_BYTES - 96 {
        if let std::borrow::Cow::Owned(cut) =
            crate::text::cut_marked(message, MAX_ERROR_MESSAGE_BYTES)
        {
            *message = cut;
        }
    } else if message.len() > max {
        let len = message.len();
        truncate_utf8(message, max);
        message.push_str(&format!(
            "… (cut to the call's result budget of {max} bytes; {len} bytes in all)"
        ));
    }
}

fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failures_message_keeps_to_the_result_budget() {
        let failed = |message: &str| Outcome::error("x", message);
        let mut long = failed(&"é".repeat(600));
        bound_error_message(&mut long, 1001, 16 * 1024);
        let Outcome::Error { message, .. } = &long else {
            unreachable!()
        };
        assert!(message.starts_with(&"é".repeat(500)), "cut at a character");
        assert!(
            message
                .ends_with("… (cut to the call's result budget of 1001 bytes; 1200 bytes in all)"),
            "{message}"
        );
        assert!(message.len() <= 1001 + 96);
        // No budget of its own: the server's; within it: untouched.
        let mut default = failed(&"m".repeat(40));
        bound_error_message(&mut default, 0, 32);
        assert!(
            matches!(&default, Outcome::Error { message, .. } if message.starts_with(&"m".repeat(32)) && message.contains("32 bytes; 40"))
        );
        let mut short = failed("fine");
        bound_error_message(&mut short, 10, 10);
        assert_eq!(short, failed("fine"));
    }

    /// Trial finding: a 4 MiB budget kept a 4 MiB failure message, which
    /// beside a fallback's 4 MiB result made a task no message could carry.
    #[test]
    fn a_failures_message_keeps_to_its_own_bound_whatever_the_budget() {
        let huge = "é".repeat(2 * 1024 * 1024);
        for budget in [4 * 1024 * 1024, MAX_ERROR_MESSAGE_BYTES as u64, 0] {
            let mut failed = Outcome::error("x", &huge);
            bound_error_message(&mut failed, budget, 4 * 1024 * 1024);
            let Outcome::Error { message, .. } = &failed else {
                unreachable!()
            };
            assert!(
                message.len() <= MAX_ERROR_MESSAGE_BYTES,
                "{}",
                message.len()
            );
            assert!(
                message.len() > MAX_ERROR_MESSAGE_BYTES - 64,
                "{}",
                message.len()
            );
            assert!(
                message.ends_with(&format!(
                    "… (cut to {MAX_ERROR_MESSAGE_BYTES} bytes; {} bytes in all)",
                    huge.len()
                )),
                "{}",
                &message[message.len() - 100..]
            );
            // Bounded once, it stays as it is.
            let again = message.clone();
            let mut twice = Outcome::error("x", &again);
            bound_error_message(&mut twice, budget, 4 * 1024 * 1024);
            assert_eq!(twice, Outcome::error("x", &again));
        }
    }

    #[test]
    fn results_are_judged_by_size_and_json() {
        let ok = judge_result(Some(Outcome::Result("{}".into())), 8);
        assert_eq!(ok.0, TaskState::Succeeded);
        let big = judge_result(Some(Outcome::Result("[1,2,3,4,5]".into())), 8);
        assert!(
            matches!(&big, (TaskState::Failed, Outcome::Error { code, message })
                if code == codes::INVALID_RESULT && message.contains("11 bytes")
                    && message.contains("the limit is 8 (the server's --max-result-bytes)")),
            "{big:?}"
        );
        let bad = judge_result(Some(Outcome::Result("nope".into())), 8);
        assert_eq!(bad.0, TaskState::Failed);
        // The rule arguments follow: no lone surrogate, bounded depth.
        for (text, why) in [
            (r#"{"a":"\ud800"}"#.to_string(), "lone UTF-16 surrogate"),
            (
                format!("{}{}", "[".repeat(129), "]".repeat(129)),
                "deeper than 128",
            ),
        ] {
            let (state, outcome) = judge_result(Some(Outcome::Result(text)), 1024);
            assert_eq!(state, TaskState::Failed);
            assert!(
                matches!(&outcome, Outcome::Error { code, message }
                    if code == codes::INVALID_RESULT && message.contains(why)),
                "{outcome:?}"
            );
        }
        let long = judge_result(Some(Outcome::error(&"é".repeat(1000), "m")), 1024);
        assert!(
            matches!(&long.1, Outcome::Error { code, .. } if code.len() == crate::fields::MAX_ERROR_CODE_BYTES),
            "{long:?}"
        );
        let err = judge_result(Some(Outcome::error("", "ééééé")), 3);
        assert_eq!(
            err.1,
            Outcome::Error {
                code: codes::TOOL_ERROR.into(),
                message: "é".into()
            }
        );
        assert_eq!(judge_result(None, 8).0, TaskState::Failed);
    }

    #[test]
    fn progress_reports_are_bounded_and_their_detail_follows_the_json_rule() {
        let report = |message: &str, detail: &str| ProgressReport {
            message: message.into(),
            detail_json: detail.into(),
            progress: f64::NAN,
            total: f64::INFINITY,
            ..Default::default()
        };
        let ok = check_progress(report(&"é".repeat(1000), r#"{"page":2}"#)).unwrap();
        assert!(ok.message.len() <= MAX_PROGRESS_MESSAGE_BYTES && ok.message.len() >= 1022);
        assert_eq!((ok.progress, ok.total), (0.0, 0.0));
        // Negative amounts are not work done: read as unknown, as 0 is.
        let negative = ProgressReport {
            progress: -2.0,
            total: -5.0,
            ..Default::default()
        };
        let read = check_progress(negative).unwrap();
        assert_eq!((read.progress, read.total), (0.0, 0.0));
        assert!(check_progress(report("m", "")).is_ok(), "no detail is fine");
        let bad = check_progress(report("m", "{nope")).unwrap_err();
        assert!(bad.starts_with("detail_json is not valid JSON"), "{bad}");
        let big = format!("\"{}\"", "x".repeat(MAX_PROGRESS_DETAIL_BYTES));
        assert!(
            check_progress(report("m", &big))
                .unwrap_err()
                .contains("the limit is 65536")
        );
        assert!(
            check_progress(report("m", r#""\ud800""#)).is_err(),
            "lone surrogate"
        );
        let twice = check_progress(report("m", r#"{"page":1,"page":2}"#)).unwrap_err();
        assert!(twice.contains(r#"duplicate key "page""#), "{twice}");
    }

    #[test]
    fn task_ids_are_checked() {
        assert!(parse_task_id("").is_err() && parse_task_id("x").is_err());
        let id = Uuid::new_v4();
        assert_eq!(parse_task_id(&id.to_string()).unwrap(), id);
    }
}
