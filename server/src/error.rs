//! The server's error type. Each error is of one [`Kind`] ([`Error::kind`]),
//! gRPC's canonical codes, which each front end maps to its own:
//! [`crate::grpc::convert`] to a status, `mcp::convert::error` and
//! `a2a::convert::error` to JSON-RPC errors (the dashboard maps errors to
//! HTTP statuses in `ui/api.rs`); all show [`Error::into_message`].
use std::time::Duration;

use crate::store::StoreError;

/// An error a caller can act on; the message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    ResourceExhausted(String),
    /// Input over a size limit (arguments, a message): RESOURCE_EXHAUSTED,
    /// as gRPC's table says, but permanent for this input, where a quota or
    /// a rate frees up later. The HTTP front ends answer it as the caller's
    /// mistake (invalid params, HTTP 400), never as "busy, retry later"
    /// ([`Error::is_too_large`]).
    #[error("{0}")]
    TooLarge(String),
    /// Too many calls: retry after `retry_after`.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: Duration,
    },
    #[error("{0}")]
    FailedPrecondition(String),
    /// A position past the end of what it points into (a result offset).
    #[error("{0}")]
    OutOfRange(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Unavailable(String),
    /// A broken invariant, or a remote server's failure of that kind (the
    /// CLI's front ends relay the status they were given).
    #[error("{0}")]
    Internal(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// What kind of failure an error is, as gRPC's status-code table names
/// them: INVALID_ARGUMENT for input that is wrong whatever the server's
/// state, NOT_FOUND for a task or tool that is not there, RESOURCE_EXHAUSTED
/// for a quota, a rate or a size limit (and a full disk), FAILED_PRECONDITION
/// for a request the task's state refuses (retrying will not help until it
/// changes), UNAUTHENTICATED and PERMISSION_DENIED for who may call,
/// DEADLINE_EXCEEDED for a wait that ran out, UNAVAILABLE for what a retry
/// may fix (draining, the store unreachable), INTERNAL for a broken
/// invariant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    FailedPrecondition,
    OutOfRange,
    Unauthenticated,
    PermissionDenied,
    DeadlineExceeded,
    Unavailable,
    Internal,
}

impl Error {
    /// The error's [`Kind`]: the one table every front end's codes follow.
    pub fn kind(&self) -> Kind {
        match self {
            Error::InvalidArgument(_) => Kind::InvalidArgument,
            Error::NotFound(_) => Kind::NotFound,
            Error::ResourceExhausted(_) | Error::TooLarge(_) | Error::RateLimited { .. } => {
                Kind::ResourceExhausted
            }
            Error::FailedPrecondition(_) => Kind::FailedPrecondition,
            Error::OutOfRange(_) => Kind::OutOfRange,
            Error::Unauthenticated(_) => Kind::Unauthenticated,
            Error::PermissionDenied(_) => Kind::PermissionDenied,
            Error::DeadlineExceeded(_) => Kind::DeadlineExceeded,
            Error::Unavailable(_) => Kind::Unavailable,
            Error::Internal(_) => Kind::Internal,
            Error::Store(StoreError::Full(_)) => Kind::ResourceExhausted,
            Error::Store(StoreError::Unavailable(_)) => Kind::Unavailable,
            Error::Store(StoreError::LimitReached(_)) => Kind::ResourceExhausted,
            Error::Store(StoreError::Internal(_)) => Kind::Internal,
            Error::Store(StoreError::Rejected(_)) => Kind::InvalidArgument,
        }
    }

    /// This error as a front end that names errand's request fields its own
    /// way says it: a message that starts with a field of `words.fields`
    /// (errand's name, the front end's) starts with the front end's name,
    /// so the caller is told the field it sent ("contextId is 129 bytes,
    /// ..."), and each of `words.phrases` (errand's gRPC words) anywhere in
    /// it is said the front end's way.
    pub fn renamed(self, words: &Vocabulary) -> Error {
        let rename = |mut m: String| {
            for (ours, theirs) in words.phrases {
                if m.contains(ours) {
                    m = m.replace(ours, theirs);
                }
            }
            for (ours, theirs) in words.fields {
                if let Some(rest) = m.strip_prefix(ours)
                    && rest.starts_with(' ')
                {
                    return format!("{theirs}{rest}");
                }
            }
            m
        };
        match self {
            Error::InvalidArgument(m) => Error::InvalidArgument(rename(m)),
            Error::NotFound(m) => Error::NotFound(rename(m)),
            Error::ResourceExhausted(m) => Error::ResourceExhausted(rename(m)),
            Error::TooLarge(m) => Error::TooLarge(rename(m)),
            Error::RateLimited {
                message,
                retry_after,
            } => Error::RateLimited {
                message: rename(message),
                retry_after,
            },
            Error::FailedPrecondition(m) => Error::FailedPrecondition(rename(m)),
            Error::OutOfRange(m) => Error::OutOfRange(rename(m)),
            Error::Unauthenticated(m) => Error::Unauthenticated(rename(m)),
            Error::PermissionDenied(m) => Error::PermissionDenied(rename(m)),
            Error::DeadlineExceeded(m) => Error::DeadlineExceeded(rename(m)),
            Error::Unavailable(m) => Error::Unavailable(rename(m)),
            Error::Internal(m) => Error::Internal(rename(m)),
            store @ Error::Store(_) => store,
        }
    }

    /// Input over a size limit ([`Error::TooLarge`]): retrying the same
    /// input cannot help.
    pub fn is_too_large(&self) -> bool {
        matches!(self, Error::TooLarge(_))
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidArgument(msg.into())
    }

    /// The message a client is shown, within [`MAX_MESSAGE_BYTES`]: a
    /// store's limit in its own words, without the `store:` prefix.
    pub fn into_message(self) -> String {
        let message = match self {
            Error::Store(StoreError::LimitReached(m)) => m,
            other => other.to_string(),
        };
        bound(message)
    }
}

/// How a front end (MCP, A2A) says what errand's gRPC API says its own
/// way ([`Error::renamed`]).
#[derive(Debug, Clone, Copy)]
pub struct Vocabulary {
    /// errand's request fields and the front end's names of them.
    pub fields: &'static [(&'static str, &'static str)],
    /// errand's [`phrases`] and the front end's words for them.
    pub phrases: &'static [(&'static str, &'static str)],
}

/// The phrases of errand's messages that name its gRPC API (an RPC, a
/// response's field); each front end's [`Vocabulary`] says every one of
/// them ([`phrases::ALL`]) its own way.
pub mod phrases {
    /// Where a task ID comes from.
    pub const TASK_ID_SOURCE: &str = "the task_id SubmitTool returned";
    /// How to read a task that is finishing.
    pub const READ_OUTCOME: &str = "read its outcome with GetTask";
    /// The streams counted against `--max-streams-per-tenant`.
    pub const STREAMS: &str = "Completions and SessionEvents streams";
    /// The token of the next page of a listing.
    pub const NEXT_PAGE: &str = "next_page_token";
    /// A listing's order, which its page tokens keep.
    pub const SAME_ORDER: &str = ", with the same newest_first,";
    pub const ALL: &[&str] = &[TASK_ID_SOURCE, READ_OUTCOME, STREAMS, NEXT_PAGE, SAME_ORDER];
}

/// Most bytes of one client input that a status message quotes.
pub const QUOTE_BYTES: usize = 100;
/// Most names (of tools, say) that a status message lists.
pub const LIST_ITEMS: usize = 20;
/// Most bytes of any status message. The message travels in the
/// `grpc-message` HTTP/2 header (percent-encoded: up to 3 times longer),
/// and clients cap headers at 8-16 KiB: past that they see RESOURCE_EXHAUSTED
/// or an h2 protocol error instead of the real code.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// `input` as a status message quotes it: Rust-escaped in double quotes, at
/// most [`QUOTE_BYTES`] of it, and when cut, its length:
/// `"xxxx…" (20000 bytes)`.
pub fn quote(input: &str) -> String {
    if input.len() <= QUOTE_BYTES {
        format!("{input:?}")
    } else {
        format!("{:?}… ({} bytes)", cut(input, QUOTE_BYTES), input.len())
    }
}

/// `names` as a status message lists them: comma-separated, at most
/// [`LIST_ITEMS`], each quoted by [`quote`]'s rule without the quotes, then
/// how many more there are: `a, b, … and 380 more`.
pub fn list<S: AsRef<str>>(names: &[S]) -> String {
    let shown: Vec<String> = names
        .iter()
        .take(LIST_ITEMS)
        .map(|n| {
            let n = n.as_ref();
            if n.len() <= QUOTE_BYTES {
                n.to_string()
            } else {
                format!("{}…", cut(n, QUOTE_BYTES))
            }
        })
        .collect();
    let mut out = shown.join(", ");
    if names.len() > LIST_ITEMS {
        out.push_str(&format!(" and {} more", names.len() - LIST_ITEMS));
    }
    out
}

/// `message` within [`MAX_MESSAGE_BYTES`]: every status passes here, so
/// no message, whatever it quotes, can break the header it travels in.
pub fn bound(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_BYTES {
        let total = message.len();
        let tail = format!("… ({total} bytes in all)");
        message.truncate(cut(&message, MAX_MESSAGE_BYTES - tail.len()).len());
        message.push_str(&tail);
    }
    message
}

/// The longest prefix of `s` within `max` bytes that ends on a char boundary.
pub fn cut(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A2A's contextId of 129 bytes was refused as "session_id is 129
    /// bytes": a field the caller never sent.
    #[test]
    fn a_front_end_names_the_field_its_caller_sent() {
        const WORDS: Vocabulary = Vocabulary {
            fields: &[
                ("session_id", "contextId"),
                ("idempotency_key", "messageId"),
            ],
            phrases: &[],
        };
        let e = Error::invalid("session_id is 129 bytes, the limit is 128").renamed(&WORDS);
        assert_eq!(e.to_string(), "contextId is 129 bytes, the limit is 128");
        let e = Error::invalid("idempotency_key is 300 bytes").renamed(&WORDS);
        assert_eq!(e.to_string(), "messageId is 300 bytes");
        // Only a leading field name; other errors as they were.
        let e = Error::invalid("session_ids differ").renamed(&WORDS);
        assert_eq!(e.to_string(), "session_ids differ");
    }

    /// Defect: MCP's `tasks/get` of "nope" answered `taskId (errand's
    /// task_id) "nope" is not a UUID: pass the task_id SubmitTool
    /// returned`: gRPC's field and RPC, which an MCP client never called.
    #[test]
    fn a_front_end_says_errands_grpc_phrases_in_its_own_words() {
        const WORDS: Vocabulary = Vocabulary {
            fields: &[("task_id", "taskId")],
            phrases: &[
                (
                    phrases::TASK_ID_SOURCE,
                    "the taskId its tools/call returned",
                ),
                (phrases::READ_OUTCOME, "read its outcome with tasks/get"),
            ],
        };
        let e = crate::scheduler::parse_task_id("nope")
            .unwrap_err()
            .renamed(&WORDS);
        assert_eq!(
            e.to_string(),
            "taskId \"nope\" is not a UUID: pass the taskId its tools/call returned"
        );
        // Whatever the error's kind.
        let e =
            Error::FailedPrecondition(format!("task 1 is completing: {}", phrases::READ_OUTCOME))
                .renamed(&WORDS);
        assert_eq!(
            e.to_string(),
            "task 1 is completing: read its outcome with tasks/get"
        );
        let e = Error::NotFound("task_id is 1 byte".into()).renamed(&WORDS);
        assert_eq!(e.to_string(), "taskId is 1 byte");
        assert_eq!(e.kind(), Kind::NotFound);
    }

    #[test]
    fn quotes_lists_and_messages_are_bounded() {
        assert_eq!(quote("search"), r#""search""#);
        let long = "é".repeat(10_000);
        let q = quote(&long);
        assert!(q.len() < QUOTE_BYTES + 40, "{q}");
        assert!(q.ends_with("… (20000 bytes)"), "{q}");
        let names: Vec<String> = (0..400).map(|i| format!("tool_{i:03}")).collect();
        let l = list(&names);
        assert!(l.starts_with("tool_000, tool_001,"), "{l}");
        assert!(l.ends_with("tool_019 and 380 more"), "{l}");
        assert_eq!(list(&["a", "b"]), "a, b");
        assert_eq!(bound("short".into()), "short");
        let b = bound("ü".repeat(5000));
        assert!(b.len() <= MAX_MESSAGE_BYTES, "{}", b.len());
        assert!(b.ends_with("… (10000 bytes in all)"), "{b}");
    }
}

/// Errors as errand's gRPC API words them, each made by the code that makes
/// it, for the front ends' tests: every one a front end may pass on.
#[cfg(test)]
pub(crate) mod grpc_worded {
    use super::{Error, phrases};
    use crate::{config::Limits, model::SessionKey};

    pub fn errors() -> Vec<Error> {
        let limits = Limits::default();
        let schema = crate::tools::ToolSpec::new(
            &crate::model::ToolDef {
                name: crate::model::ToolKey::from_key("search"),
                input_schema_json: r#"{"type":"object","required":["q"]}"#.into(),
                ..Default::default()
            },
            &limits,
        )
        .unwrap();
        let big = format!("\"{}\"", "x".repeat(limits.max_arguments_bytes));
        vec![
            crate::scheduler::parse_task_id("nope").unwrap_err(),
            crate::scheduler::parse_task_id("").unwrap_err(),
            crate::agents::listing::parse_tool_token("x").unwrap_err(),
            crate::agents::listing::parse_token("x", false).unwrap_err(),
            SessionKey::new("", &"s".repeat(200), &limits).unwrap_err(),
            SessionKey::new("", "", &limits).unwrap_err(),
            schema.check_arguments("{}", &limits).unwrap_err(),
            crate::tools::parse_arguments(&big, &limits).unwrap_err(),
            crate::tools::parse_arguments("[]", &limits).unwrap_err(),
            crate::tools::check_name("bad name!").unwrap_err(),
            Error::FailedPrecondition(format!(
                "task 1 is completing right now: {}",
                phrases::READ_OUTCOME
            )),
            Error::ResourceExhausted(format!(
                "your tenant has 3 {} open, the limit is 3",
                phrases::STREAMS
            )),
        ]
    }

    /// Words of errand's gRPC API: its RPCs, and its request fields as
    /// they are spelt there.
    pub const GRPC_WORDS: &[&str] = &[
        "errand's",
        "SubmitTool",
        "ReadResult",
        "Completions",
        "AckCompletions",
        "SessionEvents",
        "ListTools",
        "PendingDigest",
        "task_id",
        "session_id",
        "arguments_json",
        "page_token",
        "newest_first",
    ];
}
