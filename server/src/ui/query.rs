//! The task listing's query string as the store's domain query
//! ([`TaskQuery`]): one page, newest first, within what the caller sees.
use axum::http::StatusCode;

use super::{Access, api::Denied, denied};
use crate::{
    agents::listing,
    config::Limits,
    model::{SessionKey, TaskState, ToolKey},
    store::TaskQuery,
    tenant,
};

/// Rows on one page of the task listing: all the UI ever holds.
pub(super) const PAGE: usize = 50;

/// `key=value&...` of a query string, percent-decoded; at most 16 pairs.
pub(super) fn params(query: &Option<String>) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .take(16)
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// A status name of the UI ("queued", "timed_out", ...).
fn state(name: &str) -> Option<TaskState> {
    Some(match name.to_ascii_lowercase().as_str() {
        "queued" => TaskState::Queued,
        "running" => TaskState::Running,
        "succeeded" => TaskState::Succeeded,
        "failed" => TaskState::Failed,
        "cancelled" => TaskState::Cancelled,
        "timed_out" => TaskState::TimedOut,
        _ => return None,
    })
}

/// The store query for the filters `session`, `tool`, `status` (repeatable),
/// `tenant` (callers who see every tenant; else their own) and `page` (a
/// token from the previous page). Errors: 400 naming the bad filter.
pub(super) fn tasks(
    params: &[(String, String)],
    access: &Access,
    limits: &Limits,
) -> Result<TaskQuery, Denied> {
    let bad = |m: String| denied(StatusCode::BAD_REQUEST, &m);
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    };
    let chosen = match (access.scope(), get("tenant")) {
        (Some(own), _) => Some(own),
        (None, Some(t)) => {
            tenant::check_name(t).map_err(bad)?;
            Some(t)
        }
        (None, None) => None,
    };
    // Names are keyed in the chosen tenant, else the caller's own.
    let names_in = chosen.unwrap_or(&access.caller.tenant);
    let session = get("session")
        .map(|s| SessionKey::new(names_in, s, limits).map(|k| k.as_key().to_string()))
        .transpose()
        .map_err(|e| bad(format!("session: {e}")))?;
    let tool = get("tool")
        .map(|t| {
            crate::tools::check_name(t)?;
            Ok::<_, crate::Error>(ToolKey::new(names_in, t).as_key().to_string())
        })
        .transpose()
        .map_err(|e| bad(format!("tool: {e}")))?;
    let mut states = Vec::new();
    for (_, v) in params
        .iter()
        .filter(|(k, v)| k == "status" && !v.is_empty())
    {
        states.push(state(v).ok_or_else(|| {
            bad(format!(
                "unknown status {v:?}: use queued, running, succeeded, failed, cancelled or \
                 timed_out"
            ))
        })?);
    }
    let after = get("page")
        .map(|p| listing::parse_token(p, true))
        .transpose()
        .map_err(|e| bad(e.to_string()))?;
    Ok(TaskQuery {
        key_prefix: chosen.filter(|t| !t.is_empty()).map(|t| tenant::key(t, "")),
        session,
        tool,
        states,
        after,
        newest_first: true,
        limit: PAGE,
        fallback_runs: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Caller, Role};

    fn access(tenant: &str, role: Option<Role>) -> Access {
        Access {
            caller: Caller {
                tenant: tenant.into(),
                role,
                ..Caller::anonymous()
            },
            all: role.is_none() || role == Some(Role::Admin),
        }
    }

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn an_agent_is_kept_in_its_tenant_and_an_admin_chooses() {
        let limits = Limits::default();
        let q = tasks(
            &p(&[("session", "s"), ("tenant", "other"), ("status", "running")]),
            &access("a", Some(Role::Agent)),
            &limits,
        )
        .unwrap();
        assert_eq!(q.key_prefix.as_deref(), Some("a\u{1f}"));
        assert_eq!(q.session.as_deref(), Some("a\u{1f}s"));
        assert_eq!(q.states, vec![TaskState::Running]);
        assert!(q.newest_first && q.limit == PAGE);

        let admin = access("ops", Some(Role::Admin));
        let q = tasks(&p(&[]), &admin, &limits).unwrap();
        assert_eq!(q.key_prefix, None, "an admin sees every tenant");
        let q = tasks(&p(&[("tenant", "b"), ("tool", "t")]), &admin, &limits).unwrap();
        assert_eq!(q.key_prefix.as_deref(), Some("b\u{1f}"));
        assert_eq!(q.tool.as_deref(), Some("b\u{1f}t"));

        let open = tasks(&p(&[("session", "s")]), &access("", None), &limits).unwrap();
        assert_eq!(
            (open.key_prefix, open.session.as_deref()),
            (None, Some("s"))
        );
    }

    #[test]
    fn bad_filters_are_refused_with_what_to_fix() {
        let limits = Limits::default();
        let agent = access("a", Some(Role::Agent));
        for (pairs, needle) in [
            (p(&[("status", "lost")]), "unknown status"),
            (p(&[("page", "zz")]), "page_token"),
            (p(&[("tool", "bad name")]), "tool"),
        ] {
            let Err(Denied(code, msg)) = tasks(&pairs, &agent, &limits) else {
                panic!("accepted {pairs:?}");
            };
            assert_eq!(code, StatusCode::BAD_REQUEST);
            assert!(msg.contains(needle), "{msg}");
        }
        let admin = access("ops", Some(Role::Admin));
        assert!(tasks(&p(&[("tenant", "a b")]), &admin, &limits).is_err());
    }
}
