//! The wire mapping, in one place: every `errand.v1` message to and from
//! its domain type, and every [`Error`] to its gRPC status ([`remote`]: a
//! remote server's answers back to domain types, for the CLI; `worker.rs`:
//! the messages of a worker's stream).
use std::time::SystemTime;

use errand_proto::v1 as pb;
use tonic::{Code, Status, metadata::MetadataValue};

pub mod remote;
mod worker;

pub use worker::{command, progress_report, registered_within, registration, task_result};

use crate::{
    agents::Call,
    config::Limits,
    error::{Error, Kind},
    model::{
        CompletionRecord, Delivery, Fallback, FinishNotes, Outcome, ProgressRecord, Submission,
        TaskRecord, TaskState, ToolKey, ToolPolicy, millis,
    },
    tenant, text,
    tools::ToolSpec,
};

/// Each error's code: its [`Kind`], one to one. The message is bounded
/// ([`crate::error::bound`]).
impl From<Error> for Status {
    fn from(err: Error) -> Self {
        let code = code(err.kind());
        let retry_after = match &err {
            Error::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        let mut status = Status::new(code, err.into_message());
        if let Some(wait) = retry_after {
            let ms = wait.as_millis().max(1) as u64;
            let meta = status.metadata_mut();
            meta.insert("retry-after-ms", MetadataValue::from(ms));
            meta.insert("retry-after", MetadataValue::from(ms.div_ceil(1000)));
        }
        status
    }
}

/// A [`Kind`] as a gRPC code.
pub fn code(kind: Kind) -> Code {
    match kind {
        Kind::InvalidArgument => Code::InvalidArgument,
        Kind::NotFound => Code::NotFound,
        Kind::ResourceExhausted => Code::ResourceExhausted,
        Kind::FailedPrecondition => Code::FailedPrecondition,
        Kind::OutOfRange => Code::OutOfRange,
        Kind::Unauthenticated => Code::Unauthenticated,
        Kind::PermissionDenied => Code::PermissionDenied,
        Kind::DeadlineExceeded => Code::DeadlineExceeded,
        Kind::Unavailable => Code::Unavailable,
        Kind::Internal => Code::Internal,
    }
}

pub fn status(state: TaskState) -> pb::TaskStatus {
    match state {
        TaskState::Queued => pb::TaskStatus::Queued,
        TaskState::Running => pb::TaskStatus::Running,
        TaskState::Succeeded => pb::TaskStatus::Succeeded,
        TaskState::Failed => pb::TaskStatus::Failed,
        TaskState::Cancelled => pb::TaskStatus::Cancelled,
        TaskState::TimedOut => pb::TaskStatus::TimedOut,
    }
}

pub fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// A failure as the wire carries it: its message within
/// [`crate::fields::MAX_ERROR_MESSAGE_BYTES`] whatever made or stored it
/// (a message kept before the bound, or one no intake cut), as the
/// largest message the limits allow counts it (`Config::largest_message`).
fn tool_error(code: &str, message: &str) -> pb::ToolError {
    pb::ToolError {
        code: code.to_string(),
        message: text::cut_marked(message, crate::fields::MAX_ERROR_MESSAGE_BYTES).into_owned(),
    }
}

/// A task as `GetTask`, `CancelTask` and `SubmitTool` show it.
pub fn task(task: &TaskRecord) -> pb::Task {
    let end = task.finished_at.unwrap_or_else(SystemTime::now);
    pb::Task {
        task_id: task.id.to_string(),
        session_id: tenant::strip(&task.session).to_string(),
        tool: tenant::strip(&task.tool).to_string(),
        arguments_json: task.arguments.to_string(),
        status: status(task.state) as i32,
        outcome: task.outcome.as_ref().map(|o| match o {
            Outcome::Result(json) => pb::task::Outcome::ResultJson(json.clone()),
            Outcome::Error { code, message } => pb::task::Outcome::Error(tool_error(code, message)),
        }),
        attempts: task.attempts,
        created_at: Some(timestamp(task.created_at)),
        started_at: task.started_at.map(timestamp),
        finished_at: task.finished_at.map(timestamp),
        timeout_ms: millis(task.timeout),
        seq: task.seq,
        elapsed_ms: millis(end.duration_since(task.created_at).unwrap_or_default()),
        idempotency_key: task
            .idempotency_key
            .as_deref()
            .unwrap_or_default()
            .to_string(),
        // Set by the listings, which know the runner ([`super::listing`]).
        worker_id: String::new(),
        worker_name: String::new(),
        retry_of: task.retry_of.map(|id| id.to_string()).unwrap_or_default(),
        delivery: delivery_policy(task.delivery) as i32,
        fallback: fallback_used(&task.notes),
        ..Default::default()
    }
}

/// What answered a call a fallback answered (`Completion.fallback`,
/// `Task.fallback`); `None` when the call answered itself.
fn fallback_used(notes: &FinishNotes) -> Option<pb::FallbackUsed> {
    notes.answered_by.as_ref().map(|a| pb::FallbackUsed {
        primary_status: status(a.primary.state) as i32,
        primary_error: Some(tool_error(&a.primary.code, &a.primary.message)),
        tool: tenant::strip(&a.tool).to_string(),
        last_good_age_ms: a.last_good_age_ms,
        task_id: a.task_id.to_string(),
    })
}

/// How a stream renders its completions.
#[derive(Debug, Clone, Copy)]
pub struct StreamOptions {
    /// The largest message the server may send.
    pub max_bytes: usize,
    /// `SessionEventsRequest.results_by_reference`: leave `result_json` off
    /// every completion (the message still shows a result within budget).
    pub results_by_reference: bool,
    /// The server's `--result-budget-bytes`, for tasks stored without one.
    pub default_budget: u64,
}

/// A completion as both session streams (`Completions`, `SessionEvents`)
/// send it: the one place that decides what of a completion goes on a
/// stream. A result over the task's budget goes as a preview (the worker's
/// summary, else head and tail) with `result_truncated`; `result_bytes` is
/// always set. Whatever the limits, it fits `options.max_bytes`: a budget
/// too large for the message limit is halved until the completion fits,
/// and what still does not (huge arguments or error text) becomes the
/// `undeliverable` error ([`super::completions::deliverable`]).
pub fn streamed_completion(c: &CompletionRecord, options: &StreamOptions) -> pb::Completion {
    use prost::Message;
    let mut budget = if c.result_budget == 0 {
        options.default_budget
    } else {
        c.result_budget
    };
    let mut out = completion(c, budget, options.results_by_reference);
    while out.encoded_len() > options.max_bytes
        && matches!(c.outcome, Outcome::Result(_))
        && budget > crate::results::MIN_PAGE as u64
    {
        budget /= 2;
        out = completion(c, budget, options.results_by_reference);
    }
    super::completions::deliverable(out, options.max_bytes)
}

/// `c` rendered with result budget `budget` (bytes).
fn completion(c: &CompletionRecord, budget: u64, by_reference: bool) -> pb::Completion {
    let mut out = pb::Completion {
        seq: c.seq,
        task_id: c.task_id.to_string(),
        session_id: tenant::strip(&c.session).to_string(),
        tool: tenant::strip(&c.tool).to_string(),
        arguments_json: c.arguments.to_string(),
        status: status(c.state) as i32,
        elapsed_ms: millis(c.elapsed),
        attempts: c.attempts,
        completed_at: Some(timestamp(c.completed_at)),
        delivery: delivery_policy(c.delivery) as i32,
        fallback: fallback_used(&c.notes),
        ..Default::default()
    };
    match &c.outcome {
        Outcome::Result(json) => {
            out.result_bytes = json.len() as u64;
            let fits = out.result_bytes <= budget;
            let limit = usize::try_from(budget).unwrap_or(usize::MAX);
            let preview = if fits {
                String::new()
            } else {
                match c.notes.summary.as_deref().filter(|s| !s.is_empty()) {
                    Some(summary) => crate::results::head(summary, limit).to_string(),
                    None => crate::results::preview(json, limit),
                }
            };
            out.message = text::completion_message(
                c,
                if fits {
                    text::Shown::Whole
                } else {
                    text::Shown::Preview {
                        preview: &preview,
                        budget,
                    }
                },
            );
            let inline = fits && !by_reference;
            out.outcome = Some(pb::completion::Outcome::ResultJson(if inline {
                json.clone()
            } else {
                String::new()
            }));
            out.result_truncated = !fits;
            out.result_preview = preview;
        }
        Outcome::Error { code, message } => {
            out.outcome = Some(pb::completion::Outcome::Error(tool_error(code, message)));
            out.message = text::completion_message(c, text::Shown::Whole);
        }
    }
    out
}

/// A delivery policy on the wire.
pub fn delivery_policy(d: Delivery) -> pb::DeliveryPolicy {
    match d {
        Delivery::WhenIdle => pb::DeliveryPolicy::WhenIdle,
        Delivery::Interrupt => pb::DeliveryPolicy::Interrupt,
        Delivery::Silent => pb::DeliveryPolicy::Silent,
    }
}

/// A `DeliveryPolicy` a client sent in `field`: `None` for UNSPECIFIED.
/// Errors: a value the enum does not have (INVALID_ARGUMENT).
pub fn delivery(field: &str, value: i32) -> Result<Option<Delivery>, Error> {
    match pb::DeliveryPolicy::try_from(value) {
        Ok(pb::DeliveryPolicy::Unspecified) => Ok(None),
        Ok(pb::DeliveryPolicy::WhenIdle) => Ok(Some(Delivery::WhenIdle)),
        Ok(pb::DeliveryPolicy::Interrupt) => Ok(Some(Delivery::Interrupt)),
        Ok(pb::DeliveryPolicy::Silent) => Ok(Some(Delivery::Silent)),
        Err(_) => Err(Error::invalid(format!(
            "{field} {value} is not a DeliveryPolicy: use DELIVERY_POLICY_WHEN_IDLE (1), \
             DELIVERY_POLICY_INTERRUPT (2) or DELIVERY_POLICY_SILENT (3), or leave it unset"
        ))),
    }
}

/// A `DedupPolicy` a client sent in `field`: `None` for UNSPECIFIED,
/// `Some(true)` to join identical calls in flight. Errors: a value the enum
/// does not have (INVALID_ARGUMENT).
pub fn dedup(field: &str, value: i32) -> Result<Option<bool>, Error> {
    match pb::DedupPolicy::try_from(value) {
        Ok(pb::DedupPolicy::Unspecified) => Ok(None),
        Ok(pb::DedupPolicy::Off) => Ok(Some(false)),
        Ok(pb::DedupPolicy::JoinInFlight) => Ok(Some(true)),
        Err(_) => Err(Error::invalid(format!(
            "{field} {value} is not a DedupPolicy: use DEDUP_POLICY_OFF (1) or \
             DEDUP_POLICY_JOIN_IN_FLIGHT (2), or leave it unset"
        ))),
    }
}

/// What a registered tool declares about its calls (`tool` names it in
/// errors). Errors (INVALID_ARGUMENT): an unknown enum value; a fallback
/// that [`fallback`] refuses (empty, the tool itself, an age of 0). The
/// budget is checked with the registration
/// (`scheduler::admission::check_tool_policy`).
pub(super) fn tool_policy(tool: &pb::Tool, tenant: &str) -> Result<ToolPolicy, Error> {
    let field = |f: &str| format!("tool `{}`: {f}", tool.name);
    let fallback = match &tool.fallback {
        None => None,
        Some(f) => Some(
            fallback(f.clone(), tenant, &tool.name)
                .map_err(|e| Error::invalid(format!("tool `{}`: {e}", tool.name)))?,
        ),
    };
    Ok(ToolPolicy {
        delivery: delivery(&field("delivery"), tool.delivery)?,
        join_in_flight: dedup(&field("dedup"), tool.dedup)?,
        result_budget_bytes: tool.result_budget_bytes,
        fallback,
        cancellable_by_model: tool.cancellable_by_model,
    })
}

/// A fallback as `ListTools` shows it.
fn listed_fallback(f: &Fallback) -> pb::Fallback {
    pb::Fallback {
        kind: Some(match f {
            Fallback::Tool(key) => pb::fallback::Kind::Tool(tenant::strip(key).to_string()),
            Fallback::LastGood { max_age_ms } => pb::fallback::Kind::LastGoodMaxAgeMs(*max_age_ms),
        }),
    }
}

/// A progress report as `SessionEvents` and `Task.progress` show it.
pub fn progress(p: &ProgressRecord) -> pb::Progress {
    pb::Progress {
        task_id: p.task_id.to_string(),
        tool: tenant::strip(&p.tool).to_string(),
        index: p.index,
        progress: p.progress,
        total: p.total,
        message: p.message.clone(),
        detail_json: p.detail_json.to_string(),
        elapsed_ms: millis(p.elapsed),
        session_id: tenant::strip(&p.session).to_string(),
        attempt: 0,
    }
}

/// A tool as `ListTools` shows it: the client's name, the async notice
/// appended, an empty schema shown as any object.
// Fields other branches add to `Tool` (queue_timeout_ms) come in by the
// struct update.
#[allow(clippy::needless_update)]
pub fn listed_tool(spec: &ToolSpec, workers: u32) -> pb::Tool {
    pb::Tool {
        name: spec.name.name().to_string(),
        description: text::tool_description(&spec.description),
        input_schema_json: if spec.input_schema_json.is_empty() {
            r#"{"type":"object"}"#.to_string()
        } else {
            spec.input_schema_json.to_string()
        },
        timeout_ms: spec.timeout.map_or(0, millis),
        workers,
        queue_timeout_ms: spec.queue_timeout.map_or(0, millis),
        // Set by `ListTools` from the live state ([`super::listing`]).
        queued: 0,
        running: 0,
        delivery: spec
            .policy
            .delivery
            .map_or(0, |d| delivery_policy(d) as i32),
        dedup: match spec.policy.join_in_flight {
            None => pb::DedupPolicy::Unspecified,
            Some(false) => pb::DedupPolicy::Off,
            Some(true) => pb::DedupPolicy::JoinInFlight,
        } as i32,
        result_budget_bytes: spec.policy.result_budget_bytes,
        fallback: spec.policy.fallback.as_ref().map(listed_fallback),
        cancellable_by_model: spec.policy.cancellable_by_model,
    }
}

/// A submit of `tenant`'s. Errors: [`Call::submission`]'s, then a
/// `dedup`, `fallback` or `delivery` the contract does not have
/// (INVALID_ARGUMENT).
pub fn submission(
    req: pb::SubmitToolRequest,
    tenant: &str,
    limits: &Limits,
) -> Result<Submission, Error> {
    let call = Call {
        session: req.session_id,
        tool: req.tool,
        arguments_json: req.arguments_json,
        idempotency_key: req.idempotency_key,
    };
    let mut sub = call.submission(tenant, limits)?;
    sub.join_in_flight = dedup("dedup", req.dedup)?;
    sub.fallback = req
        .fallback
        .map(|f| fallback(f, tenant, sub.tool.name()))
        .transpose()?;
    sub.delivery = delivery("delivery", req.delivery)?;
    sub.timeout_ms = req.timeout_ms;
    sub.queue_timeout_ms = req.queue_timeout_ms;
    sub.result_budget_bytes = req.result_budget_bytes;
    Ok(sub)
}

/// A fallback of `tenant`'s, for calls of tool `own` (a name). Errors
/// (INVALID_ARGUMENT): no kind set, the call's own tool, a tool name no
/// tool can have, an age of 0. An unknown tool is NOT_FOUND later, at
/// submit, where the tools are known.
pub fn fallback(f: pb::Fallback, tenant: &str, own: &str) -> Result<Fallback, Error> {
    match f.kind {
        None => Err(Error::invalid(
            "fallback is set but empty: set fallback.tool or fallback.last_good_max_age_ms, or \
             leave fallback unset",
        )),
        Some(pb::fallback::Kind::Tool(tool)) => {
            crate::tools::check_name_in("fallback.tool", &tool)?;
            if tool == own {
                return Err(Error::invalid(format!(
                    "fallback.tool is `{tool}`, the call's own tool: a fallback must be another \
                     tool (or use fallback.last_good_max_age_ms)"
                )));
            }
            Ok(Fallback::Tool(ToolKey::new(tenant, &tool).as_arc().clone()))
        }
        Some(pb::fallback::Kind::LastGoodMaxAgeMs(0)) => Err(Error::invalid(
            "fallback.last_good_max_age_ms is 0: no earlier result is that young; give the \
             oldest age (ms) a result may have to stand in",
        )),
        Some(pb::fallback::Kind::LastGoodMaxAgeMs(max_age_ms)) => {
            Ok(Fallback::LastGood { max_age_ms })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use uuid::Uuid;

    use super::*;
    use crate::{fields, model::ToolDef, store::StoreError};

    fn finished(result: &str, budget: u64, summary: Option<&str>) -> CompletionRecord {
        CompletionRecord {
            seq: 1,
            task_id: Uuid::nil(),
            session: "s".into(),
            tool: "report".into(),
            arguments: "{}".into(),
            state: TaskState::Succeeded,
            outcome: Outcome::Result(result.into()),
            elapsed: Duration::ZERO,
            attempts: 1,
            completed_at: SystemTime::now(),
            result_budget: budget,
            notes: crate::model::FinishNotes {
                summary: summary.map(Into::into),
                ..Default::default()
            },
            delivery: Default::default(),
        }
    }

    fn options(max_bytes: usize, by_reference: bool) -> StreamOptions {
        StreamOptions {
            max_bytes,
            results_by_reference: by_reference,
            default_budget: 16 * 1024,
        }
    }

    #[test]
    fn a_worker_name_is_bounded() {
        let register = |name: String| pb::Register {
            worker_name: name,
            tools: vec![pb::Tool {
                name: "search".into(),
                ..Default::default()
            }],
            max_concurrency: 1,
        };
        let most = "w".repeat(fields::MAX_WORKER_NAME_BYTES);
        assert!(registration(register(most.clone()), "t").is_ok());
        let e = registration(register(most + "w"), "t").unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument(m) if m.contains("worker_name")),
            "{e:?}"
        );
    }

    /// A bad fallback tool name is named as `fallback.tool`, not as the
    /// call's own tool.
    #[test]
    fn a_bad_fallback_tool_name_names_its_field() {
        for bad in ["", "has space"] {
            let f = pb::Fallback {
                kind: Some(pb::fallback::Kind::Tool(bad.into())),
            };
            let e = fallback(f, "t", "search").unwrap_err();
            assert!(
                matches!(&e, Error::InvalidArgument(m) if m.starts_with("fallback.tool ")),
                "{e:?}"
            );
        }
    }

    #[test]
    fn completions_keep_to_their_budget_and_always_fit_the_stream() {
        use prost::Message;
        let result = format!("\"{}\"", "é".repeat(50_000));
        // Budget 0: the server's default applies.
        let c = streamed_completion(&finished(&result, 0, None), &options(1 << 20, false));
        assert!(c.result_truncated && c.result_preview.len() <= 16 * 1024);
        assert_eq!(c.result_bytes, result.len() as u64);
        // A budget larger than the message limit: the preview shrinks to fit.
        for max in [4_000, 20_000, 90_000] {
            let c = streamed_completion(&finished(&result, 1 << 30, None), &options(max, false));
            assert!(c.encoded_len() <= max, "{max}: {}", c.encoded_len());
            assert!(c.result_truncated, "{max}");
            assert_eq!(
                c.status,
                pb::TaskStatus::Succeeded as i32,
                "never undeliverable"
            );
        }
        // Within budget: whole, unless by reference.
        let small = finished("[1,2]", 64, Some("ignored"));
        let c = streamed_completion(&small, &options(1 << 20, false));
        assert_eq!(
            (c.result_truncated, c.result_bytes, c.outcome.clone()),
            (
                false,
                5,
                Some(pb::completion::Outcome::ResultJson("[1,2]".into()))
            )
        );
        assert!(c.result_preview.is_empty());
        let c = streamed_completion(&small, &options(1 << 20, true));
        assert_eq!(
            c.outcome,
            Some(pb::completion::Outcome::ResultJson(String::new()))
        );
        assert!(
            c.message.contains("[1,2]"),
            "the model still reads it: {}",
            c.message
        );
        // A summary stands in for the preview, cut to the budget.
        let c = streamed_completion(
            &finished(&result, 100, Some(&"s".repeat(500))),
            &options(1 << 20, false),
        );
        assert_eq!(c.result_preview, "s".repeat(100));
    }

    #[test]
    fn listing_appends_the_async_notice() {
        let def = ToolDef {
            name: ToolKey::new("acme", "search"),
            description: "Search the web.".into(),
            ..Default::default()
        };
        let s = ToolSpec::new(&def, &Limits::default()).unwrap();
        let p = listed_tool(&s, 2);
        assert!(p.description.starts_with("Search the web.\n\n"));
        assert!(p.description.contains("asynchronous"));
        assert_eq!(p.workers, 2);
        assert_eq!(p.name, "search");
    }

    #[test]
    fn every_error_has_the_code_grpc_s_table_gives_it() {
        use StoreError as S;
        let m = || "m".to_string();
        let rate = Error::RateLimited {
            message: m(),
            retry_after: Duration::from_secs(1),
        };
        let table = [
            (Error::InvalidArgument(m()), Code::InvalidArgument),
            (Error::NotFound(m()), Code::NotFound),
            (Error::ResourceExhausted(m()), Code::ResourceExhausted),
            (rate, Code::ResourceExhausted),
            (Error::FailedPrecondition(m()), Code::FailedPrecondition),
            (Error::Unauthenticated(m()), Code::Unauthenticated),
            (Error::PermissionDenied(m()), Code::PermissionDenied),
            (Error::DeadlineExceeded(m()), Code::DeadlineExceeded),
            (Error::Unavailable(m()), Code::Unavailable),
            (Error::Store(S::Full(m())), Code::ResourceExhausted),
            (Error::Store(S::Unavailable(m())), Code::Unavailable),
            (Error::Store(S::LimitReached(m())), Code::ResourceExhausted),
            (Error::Store(S::Internal(m())), Code::Internal),
        ];
        for (err, code) in table {
            let what = format!("{err:?}");
            assert_eq!(Status::from(err).code(), code, "{what}");
        }
        // Never OUT_OF_RANGE (tonic's choice for oversized messages, mapped
        // in `status_codes`), UNKNOWN or OK.
    }

    #[test]
    fn every_message_is_bounded() {
        let s = Status::from(Error::invalid("x".repeat(100_000)));
        assert!(s.message().len() <= crate::error::MAX_MESSAGE_BYTES);
        assert!(
            s.message().ends_with("(100000 bytes in all)"),
            "{}",
            s.message()
        );
    }

    #[test]
    fn statuses_keep_their_codes_and_rate_limits_say_when_to_retry() {
        let s = Status::from(Error::Store(StoreError::LimitReached("full".into())));
        assert_eq!((s.code(), s.message()), (Code::ResourceExhausted, "full"));
        let s = Status::from(Error::RateLimited {
            message: "slow down".into(),
            retry_after: Duration::from_millis(1500),
        });
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(s.metadata().get("retry-after-ms").unwrap(), "1500");
        assert_eq!(s.metadata().get("retry-after").unwrap(), "2");
        let s = Status::from(Error::Store(StoreError::Internal("bug".into())));
        assert_eq!((s.code(), s.message()), (Code::Internal, "store: bug"));
    }
}
