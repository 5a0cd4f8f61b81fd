//! [`TaskQuery`] as SQL, once for both engines: they differ only in how a
//! parameter is written (`?N` or `$N`) and how an ID is bound.
use uuid::Uuid;

use super::call_columns;
use super::codec::{TASK_COLUMNS, state_code, time_to_i64, to_i64};
use crate::store::listing::TaskQuery;

/// A parameter of the listing statement.
#[derive(Debug, Clone)]
pub(crate) enum Param {
    Text(String),
    Int(i64),
    Id(Uuid),
}

/// The statement listing `query` from `table`, and its parameters in order;
/// `placeholder(n)` writes the n-th (1-based) parameter.
pub(crate) fn select(
    query: &TaskQuery,
    table: &str,
    placeholder: impl Fn(usize) -> String,
) -> (String, Vec<Param>) {
    let mut params = Vec::new();
    let filter = conditions(query, true, &mut params, &placeholder);
    let dir = if query.newest_first { "DESC" } else { "ASC" };
    params.push(Param::Int(to_i64(query.limit as u64)));
    let limit = placeholder(params.len());
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM {table}{filter} ORDER BY created_at {dir}, id {dir} LIMIT {limit}"
    );
    (sql, params)
}

/// The statement counting every task of `table` that passes `query`'s
/// filter (its cursor and limit ignored), and its parameters in order.
pub(crate) fn count(
    query: &TaskQuery,
    table: &str,
    placeholder: impl Fn(usize) -> String,
) -> (String, Vec<Param>) {
    let mut params = Vec::new();
    let filter = conditions(query, false, &mut params, &placeholder);
    (format!("SELECT COUNT(*) FROM {table}{filter}"), params)
}

/// The WHERE clause of `query` ("" when it has none), adding its
/// parameters to `params`; the cursor only when `with_cursor`.
fn conditions(
    query: &TaskQuery,
    with_cursor: bool,
    params: &mut Vec<Param>,
    placeholder: &impl Fn(usize) -> String,
) -> String {
    let mut add = |p: Param| {
        params.push(p);
        placeholder(params.len())
    };
    let mut conds: Vec<String> = Vec::new();
    if let Some(prefix) = &query.key_prefix {
        // Both engines count characters in `length` and `substr` alike.
        let p1 = add(Param::Text(prefix.clone()));
        let p2 = add(Param::Text(prefix.clone()));
        conds.push(format!("substr(session, 1, length({p1})) = {p2}"));
    }
    if let Some(session) = &query.session {
        conds.push(format!("session = {}", add(Param::Text(session.clone()))));
    }
    if let Some(tool) = &query.tool {
        conds.push(format!("tool = {}", add(Param::Text(tool.clone()))));
    }
    if !query.states.is_empty() {
        // Codes are ours, not the client's: written inline.
        let codes: Vec<String> = query
            .states
            .iter()
            .map(|s| state_code(*s).to_string())
            .collect();
        conds.push(format!("state IN ({})", codes.join(", ")));
    }
    if !query.fallback_runs {
        conds.push(call_columns::NOT_A_RUN.to_string());
    }
    if let Some(c) = query.after.filter(|_| with_cursor) {
        let at = time_to_i64(c.created_at);
        let (at1, at2) = (add(Param::Int(at)), add(Param::Int(at)));
        let id = add(Param::Id(c.id));
        let op = if query.newest_first { "<" } else { ">" };
        conds.push(format!(
            "(created_at {op} {at1} OR (created_at = {at2} AND id {op} {id}))"
        ));
    }
    if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    }
}
