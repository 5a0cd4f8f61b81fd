//! The tool registry every server shares: `errand_tool_defs` (migration 3).
//! Written directly (not through the writer's batches): registrations are
//! rare.
//!
//! **One definition per tool.** While a worker on any live server serves a
//! tool, its stored definition is the one every server lists and checks
//! calls against: a registration with a different definition is refused
//! (FAILED_PRECONDITION), on whichever server it arrives, as on one server.
//! "Served" across servers is what each server advertises in
//! `errand_tools` (a row per server and tool, `workers > 0`), renewed with
//! its leases: a row renewed within three leases ([`stale_ms`]) is a live
//! server's (as [`SharedQueue::remote_tools`] counts them). The rule is
//! decided here, in one transaction under [`TOOLS_LOCK`]: the stored
//! definitions are compared, the other servers' adverts read, and, when the
//! registration is accepted, its definitions stored and advertised for this
//! server at once (before its publisher runs), so a registration on another
//! server right after is refused too. A server's own adverts never refuse
//! it: its live registry decides there (`scheduler/registry.rs`). Once no
//! live server advertises the tool, a new definition replaces the stored
//! one, and the others learn it from the `errand_tools` notification.
//!
//! [`SharedQueue::remote_tools`]: crate::store::SharedQueue::remote_tools
use std::{collections::HashMap, time::Duration};

use deadpool_postgres::{GenericClient, Object};

use super::errors::pg_error;
use super::rows::rows;
use crate::store::StoreError;
use crate::store::StoredTool;
use crate::store::sql::codec::{time_from_i64, time_to_i64, to_i64};

/// Every stored tool, by name.
pub(super) async fn tools(client: &impl GenericClient) -> Result<Vec<StoredTool>, StoreError> {
    let found = rows(
        client,
        "SELECT name, description, input_schema_json, timeout_ms, queue_timeout_ms,
             last_served_at, policy FROM errand_tool_defs ORDER BY name",
        &[],
    )
    .await?;
    Ok(found.iter().map(stored_tool).collect())
}

/// Advisory lock key ("ERND" + n) held while tool definitions are written.
const TOOLS_LOCK: i64 = 0x4552_4e44_0003;

/// How old (ms, database clock) a server's advert may be and still count as
/// a live server's: three leases, renewed every third of one.
pub(super) fn stale_ms(lease: Duration) -> f64 {
    3.0 * lease.as_millis() as f64
}

/// Whether the tool of `errand_tool_defs d` is served by another live
/// server than `$2`: an advert with workers renewed within `$3` ms
/// ([`stale_ms`]).
const SERVED_ELSEWHERE: &str = "EXISTS (SELECT 1 FROM errand_tools s WHERE s.name = d.name
    AND s.server_id <> $2 AND s.workers > 0
    AND s.seen_at > now() - $3 * interval '1 millisecond')";

/// Whether `a` and `b` define the same tool (`last_served_at` aside).
fn same_definition(a: &StoredTool, b: &StoredTool) -> bool {
    a.description == b.description
        && a.input_schema == b.input_schema
        && a.timeout_ms == b.timeout_ms
        && a.queue_timeout_ms == b.queue_timeout_ms
        && a.policy == b.policy
}

/// How [`put_checked`] writes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Put {
    /// A registration: refused whole by any conflict; accepted, its tools
    /// are advertised as served by this server.
    Register,
    /// A rewrite of what this server knows (served now, last served): the
    /// tools in conflict are left as stored, the others written.
    Refresh,
}

/// Stores `tools` for server `server_id` unless the stored definition of a
/// tool differs and another live server's workers serve it (see the module
/// documentation); returns those stored definitions, by name. With
/// [`Put::Register`], any of them refuses the whole write.
pub(super) async fn put_checked(
    client: &mut Object,
    server_id: &str,
    lease: Duration,
    tools: &[StoredTool],
    how: Put,
) -> Result<Vec<StoredTool>, StoreError> {
    if tools.is_empty() {
        return Ok(Vec::new());
    }
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&TOOLS_LOCK])
        .await
        .map_err(pg_error)?;
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    let stored = rows(
        &tx,
        &format!(
            "SELECT d.name, d.description, d.input_schema_json, d.timeout_ms,
                 d.queue_timeout_ms, d.last_served_at, d.policy, {SERVED_ELSEWHERE}
             FROM errand_tool_defs d WHERE d.name = ANY($1)"
        ),
        &[&names, &server_id, &stale_ms(lease)],
    )
    .await?;
    let stored: HashMap<String, (StoredTool, bool)> = stored
        .iter()
        .map(|r| {
            let tool = stored_tool(r);
            (tool.name.clone(), (tool, r.get::<_, bool>(7)))
        })
        .collect();
    let mut refused = Vec::new();
    let mut write = Vec::new();
    let mut changed = false;
    for tool in tools {
        match stored.get(&tool.name) {
            Some((old, true)) if !same_definition(old, tool) => refused.push(old.clone()),
            Some((old, _)) if same_definition(old, tool) => write.push(tool.clone()),
            // New, or unserved elsewhere: replaced.
            _ => {
                changed = true;
                write.push(tool.clone());
            }
        }
    }
    refused.sort_by(|a, b| a.name.cmp(&b.name));
    if how == Put::Register && !refused.is_empty() {
        return Ok(refused);
    }
    put_tools(&tx, &write).await?;
    if how == Put::Register {
        advertise(&tx, server_id, &write).await?;
    }
    if changed || how == Put::Register {
        // The other servers learn the new definitions (and this server's
        // adverts) now rather than at their next upkeep.
        tx.execute("SELECT pg_notify('errand_tools', $1)", &[&server_id])
            .await
            .map_err(pg_error)?;
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(refused)
}

/// Advertises `tools` as served by server `server_id`, by one worker at
/// least: the server's publisher writes the true count next.
async fn advertise(
    client: &impl GenericClient,
    server_id: &str,
    tools: &[StoredTool],
) -> Result<(), StoreError> {
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    let descriptions: Vec<&str> = tools.iter().map(|t| t.description.as_str()).collect();
    let schemas: Vec<&str> = tools.iter().map(|t| t.input_schema.as_str()).collect();
    let timeouts: Vec<i64> = tools.iter().map(|t| to_i64(t.timeout_ms)).collect();
    client
        .execute(
            "INSERT INTO errand_tools AS s (server_id, name, description, input_schema_json,
                 timeout_ms, workers)
             SELECT $1, n, d, i, t, 1 FROM unnest($2::text[], $3::text[], $4::text[],
                 $5::int8[]) AS u(n, d, i, t)
             ON CONFLICT (server_id, name) DO UPDATE SET description = excluded.description,
                 input_schema_json = excluded.input_schema_json,
                 timeout_ms = excluded.timeout_ms,
                 workers = greatest(s.workers, 1),
                 seen_at = now()",
            &[&server_id, &names, &descriptions, &schemas, &timeouts],
        )
        .await
        .map_err(pg_error)?;
    Ok(())
}

/// A stored tool from a row whose first columns are `tools`' own.
fn stored_tool(r: &tokio_postgres::Row) -> StoredTool {
    StoredTool {
        name: r.get(0),
        description: r.get(1),
        input_schema: r.get(2),
        timeout_ms: r.get::<_, i64>(3).max(0) as u64,
        queue_timeout_ms: r.get::<_, i64>(4).max(0) as u64,
        last_served_at: time_from_i64(r.get(5)),
        policy: r.get(6),
    }
}

/// Stores `tools` in one statement, each replacing the one of its name;
/// `last_served_at` never moves back. Unchecked: see [`put_checked`].
async fn put_tools(client: &impl GenericClient, tools: &[StoredTool]) -> Result<(), StoreError> {
    if tools.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    let descriptions: Vec<&str> = tools.iter().map(|t| t.description.as_str()).collect();
    let schemas: Vec<&str> = tools.iter().map(|t| t.input_schema.as_str()).collect();
    let timeouts: Vec<i64> = tools.iter().map(|t| to_i64(t.timeout_ms)).collect();
    let queue_timeouts: Vec<i64> = tools.iter().map(|t| to_i64(t.queue_timeout_ms)).collect();
    let served: Vec<i64> = tools
        .iter()
        .map(|t| time_to_i64(t.last_served_at))
        .collect();
    let policies: Vec<&str> = tools.iter().map(|t| t.policy.as_str()).collect();
    let st = client
        .prepare_cached(
            "INSERT INTO errand_tool_defs AS d (name, description, input_schema_json, timeout_ms,
                 queue_timeout_ms, last_served_at, policy)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[],
                 $5::bigint[], $6::bigint[], $7::text[])
             ON CONFLICT (name) DO UPDATE SET description = excluded.description,
                 input_schema_json = excluded.input_schema_json,
                 timeout_ms = excluded.timeout_ms,
                 queue_timeout_ms = excluded.queue_timeout_ms,
                 policy = excluded.policy,
                 last_served_at = greatest(d.last_served_at, excluded.last_served_at)",
        )
        .await
        .map_err(pg_error)?;
    client
        .execute(
            &st,
            &[
                &names,
                &descriptions,
                &schemas,
                &timeouts,
                &queue_timeouts,
                &served,
                &policies,
            ],
        )
        .await
        .map_err(pg_error)?;
    Ok(())
}

/// Deletes the tools `names` that no other live server's workers serve
/// (server `server_id` forgets what it no longer needs; a definition
/// another server serves stays, or the next registration anywhere would
/// take the tool as new and replace it); returns how many were deleted.
/// Under [`TOOLS_LOCK`], as registrations decide on what is stored.
pub(super) async fn forget_tools(
    client: &mut Object,
    server_id: &str,
    lease: Duration,
    names: &[String],
) -> Result<u64, StoreError> {
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&TOOLS_LOCK])
        .await
        .map_err(pg_error)?;
    let deleted = tx
        .execute(
            &format!(
                "DELETE FROM errand_tool_defs d WHERE d.name = ANY($1) AND NOT {SERVED_ELSEWHERE}"
            ),
            &[&names, &server_id, &stale_ms(lease)],
        )
        .await
        .map_err(pg_error)?;
    tx.commit().await.map_err(pg_error)?;
    Ok(deleted)
}
