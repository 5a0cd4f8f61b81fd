//! Task listings as store queries (`ListTasks`, `CancelTasks`, A2A's
//! `ListTasks`): the caller's tenant only (all tasks when auth is off), the
//! client's session and tool names keyed, and the page tokens that carry a
//! listing from page to page.
use std::time::{Duration, SystemTime};

use uuid::Uuid;

use crate::{
    auth::Caller,
    config::Limits,
    error::{
        Error,
        phrases::{NEXT_PAGE, SAME_ORDER},
    },
    model::{SessionKey, TaskState, ToolKey},
    store::{Cursor, TaskQuery},
    tenant,
};

/// `page_size` when the request gives none.
pub const DEFAULT_PAGE: u32 = 100;
/// The largest `page_size` accepted.
pub const MAX_PAGE: u32 = 1_000;

/// Which page of a listing: `size` tasks (0: [`DEFAULT_PAGE`]) after
/// `token` ("" for the first page), in `newest_first` order.
#[derive(Debug, Clone, Copy, Default)]
pub struct Page<'a> {
    pub size: u32,
    pub token: &'a str,
    pub newest_first: bool,
}

/// A listing of `caller`'s tasks as a store query: of `session` and `tool`
/// (client names, "" for any) in `states` (none: any). `states` come as
/// the wire reads them, each a state or the error that it is none, so that
/// errors are found in one order whatever the front end. Errors, in that
/// order: a page size over [`MAX_PAGE`]; a bad session or tool name; a bad
/// state; a page token this server did not issue for this order.
pub fn task_query(
    caller: &Caller,
    session: &str,
    tool: &str,
    states: impl IntoIterator<Item = Result<TaskState, Error>>,
    page: Page<'_>,
    limits: &Limits,
) -> Result<TaskQuery, Error> {
    if page.size > MAX_PAGE {
        return Err(Error::invalid(format!(
            "page_size {} is over the limit of {MAX_PAGE}: ask for fewer and follow {NEXT_PAGE}",
            page.size
        )));
    }
    let mut query = filter(caller, session, tool, states, limits)?;
    query.newest_first = page.newest_first;
    query.limit = if page.size == 0 {
        DEFAULT_PAGE
    } else {
        page.size
    } as usize;
    if !page.token.is_empty() {
        query.after = Some(parse_token(page.token, page.newest_first)?);
    }
    Ok(query)
}

/// A bulk cancel of `caller`'s unfinished tasks as a query (see
/// [`task_query`] for the arguments). Errors: a bad session or tool name, a
/// bad state, a state other than QUEUED or RUNNING.
pub fn cancel_query(
    caller: &Caller,
    session: &str,
    tool: &str,
    states: impl IntoIterator<Item = Result<TaskState, Error>>,
    limits: &Limits,
) -> Result<TaskQuery, Error> {
    let query = filter(caller, session, tool, states, limits)?;
    if let Some(s) = query.states.iter().find(|s| s.is_final()) {
        return Err(Error::invalid(format!(
            "statuses may only hold QUEUED and RUNNING: a {} task cannot be cancelled",
            s.name()
        )));
    }
    Ok(query)
}

/// The filter both listings share: the caller's tenant only (all tasks
/// when auth is off), then session, tool and states.
fn filter(
    caller: &Caller,
    session: &str,
    tool: &str,
    states: impl IntoIterator<Item = Result<TaskState, Error>>,
    limits: &Limits,
) -> Result<TaskQuery, Error> {
    let tenant = &*caller.tenant;
    let session = if session.is_empty() {
        None
    } else {
        Some(
            SessionKey::new(tenant, session, limits)?
                .as_key()
                .to_string(),
        )
    };
    let tool = if tool.is_empty() {
        None
    } else {
        crate::tools::check_name(tool)?;
        Some(ToolKey::new(tenant, tool).as_key().to_string())
    };
    let states = states.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok(TaskQuery {
        key_prefix: (!tenant.is_empty()).then(|| tenant::key(tenant, "")),
        session,
        tool,
        states,
        after: None,
        newest_first: false,
        limit: DEFAULT_PAGE as usize,
        fallback_runs: false,
    })
}

/// The token after `last`: "v1", the order, created_at in nanoseconds and
/// the task ID, made [`opaque`].
/// The leading items of `items`, at most `max`, whose sizes (`size`, in
/// bytes) add up to at most `budget`, and at least one: a listing's page
/// within the message limit (the server's limits let any one item fit).
/// Returns the page and whether items were left out.
pub fn page_within<T>(
    items: impl IntoIterator<Item = T>,
    size: impl Fn(&T) -> usize,
    budget: usize,
    max: usize,
) -> (Vec<T>, bool) {
    let (mut page, mut used) = (Vec::new(), 0usize);
    for item in items {
        let n = size(&item);
        if page.len() == max || (!page.is_empty() && used + n > budget) {
            return (page, true);
        }
        used += n;
        page.push(item);
    }
    (page, false)
}

pub fn page_token(last: &Cursor, newest_first: bool) -> String {
    let dir = if newest_first { 'd' } else { 'a' };
    opaque(&format!(
        "v1.{dir}.{}.{}",
        nanos(last.created_at),
        last.id.simple()
    ))
}

/// Most bytes of a page token: twice its plain text's.
const MAX_TOKEN_BYTES: usize = 256;

/// A page token's plain text, hex-encoded so clients treat it as opaque
/// (every listing's tokens are made this way).
pub fn opaque(plain: &str) -> String {
    plain.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The plain text of an [`opaque`] token; `None` for one no listing made
/// (not hex, not UTF-8, over [`MAX_TOKEN_BYTES`]).
pub fn plain(token: &str) -> Option<String> {
    if token.len() > MAX_TOKEN_BYTES || !token.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// The token after tool `name` in `ListTools`: "v1.t." and the name, made
/// [`opaque`].
pub fn tool_page_token(name: &str) -> String {
    opaque(&format!("v1.t.{name}"))
}

/// The last tool name a [`tool_page_token`] carries. Errors
/// (INVALID_ARGUMENT): a token no `ListTools` answer gave.
pub fn parse_tool_token(token: &str) -> Result<String, Error> {
    plain(token)
        .and_then(|p| p.strip_prefix("v1.t.").map(str::to_string))
        .filter(|name| crate::tools::check_name(name).is_ok())
        .ok_or_else(|| {
            Error::invalid(format!(
                "page_token is not one this server gave: pass a {NEXT_PAGE} unchanged, or leave \
                 it empty for the first page"
            ))
        })
}

/// `ListWorkersRequest.page_size` when the request gives none.
pub const DEFAULT_WORKER_PAGE: u32 = 100;
/// The largest `ListWorkersRequest.page_size` accepted.
pub const MAX_WORKER_PAGE: u32 = 1_000;

/// Which page of `ListWorkers`: at most this many workers, after this
/// worker ID (`None`: from the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerPage {
    pub size: usize,
    pub after: Option<u64>,
}

/// A `ListWorkers` request's page. Errors (INVALID_ARGUMENT): a page size
/// over [`MAX_WORKER_PAGE`]; a token no `ListWorkers` answer gave.
pub fn worker_page(size: u32, token: &str) -> Result<WorkerPage, Error> {
    if size > MAX_WORKER_PAGE {
        return Err(Error::invalid(format!(
            "page_size {size} is over the limit of {MAX_WORKER_PAGE}: ask for fewer and follow \
             {NEXT_PAGE}"
        )));
    }
    let after = if token.is_empty() {
        None
    } else {
        let id = plain(token)
            .and_then(|p| p.strip_prefix("v1.w.").and_then(|id| id.parse().ok()))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "page_token is not one ListWorkers gave: pass a {NEXT_PAGE} unchanged, or \
                     leave it empty for the first page"
                ))
            })?;
        Some(id)
    };
    let size = match size {
        0 => DEFAULT_WORKER_PAGE,
        given => given,
    };
    Ok(WorkerPage {
        size: size as usize,
        after,
    })
}

/// The token after worker `id` in `ListWorkers`: "v1.w." and the ID, made
/// [`opaque`].
pub fn worker_page_token(id: u64) -> String {
    opaque(&format!("v1.w.{id}"))
}

/// Nanoseconds since the Unix epoch (0 before it).
fn nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The cursor a [`page_token`] carries. Errors (INVALID_ARGUMENT): a token
/// this server did not issue, or issued for the other order.
pub fn parse_token(token: &str, newest_first: bool) -> Result<Cursor, Error> {
    let bad = || {
        Error::invalid(format!(
            "page_token is not one this server issued for this order: pass {NEXT_PAGE} \
             unchanged{SAME_ORDER} or leave it empty for the first page"
        ))
    };
    let plain = plain(token).ok_or_else(bad)?;
    let mut parts = plain.split('.');
    let dir = if newest_first { "d" } else { "a" };
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("v1"), Some(d), Some(at), Some(id), None) if d == dir => Ok(Cursor {
            created_at: SystemTime::UNIX_EPOCH
                + Duration::from_nanos(at.parse().map_err(|_| bad())?),
            id: Uuid::parse_str(id).map_err(|_| bad())?,
        }),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_refuse_the_other_order_or_junk() {
        let c = Cursor {
            created_at: SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789),
            id: Uuid::new_v4(),
        };
        let t = page_token(&c, false);
        assert_eq!(parse_token(&t, false).unwrap(), c);
        assert!(matches!(
            parse_token(&t, true),
            Err(Error::InvalidArgument(_))
        ));
        for junk in ["zz", "abc", "00", &"ab".repeat(200)] {
            assert!(matches!(
                parse_token(junk, false),
                Err(Error::InvalidArgument(_))
            ));
        }
    }

    #[test]
    fn worker_pages_have_a_default_a_maximum_and_their_own_tokens() {
        assert_eq!(
            worker_page(0, "").unwrap(),
            WorkerPage {
                size: DEFAULT_WORKER_PAGE as usize,
                after: None
            }
        );
        let t = worker_page_token(42);
        assert_eq!(
            worker_page(7, &t).unwrap(),
            WorkerPage {
                size: 7,
                after: Some(42)
            }
        );
        assert!(matches!(
            worker_page(MAX_WORKER_PAGE + 1, ""),
            Err(Error::InvalidArgument(_))
        ));
        for junk in ["zz", "abc", &tool_page_token("x"), &opaque("v1.w.x")] {
            assert!(matches!(
                worker_page(1, junk),
                Err(Error::InvalidArgument(_))
            ));
        }
    }

    #[test]
    fn tool_page_tokens_round_trip_and_refuse_names_and_junk() {
        let name = "a".repeat(64);
        assert_eq!(parse_tool_token(&tool_page_token(&name)).unwrap(), name);
        // A bare tool name, a task listing's token, a bad name inside: none
        // came from ListTools.
        let task_token = page_token(
            &Cursor {
                created_at: SystemTime::UNIX_EPOCH,
                id: Uuid::nil(),
            },
            false,
        );
        for junk in [
            "alpha",
            "zz",
            &task_token,
            &opaque("v1.t.bad name"),
            &opaque("v1.t."),
        ] {
            assert!(
                matches!(parse_tool_token(junk), Err(Error::InvalidArgument(_))),
                "{junk}"
            );
        }
    }
}
