//! The tool registry every server shares: `errand_tool_defs` (migration 3).
//! Written directly (not through the writer's batches): registrations are
//! rare, and each write is one statement.
use deadpool_postgres::GenericClient;

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
             last_served_at FROM errand_tool_defs ORDER BY name",
        &[],
    )
    .await?;
    Ok(found
        .iter()
        .map(|r| StoredTool {
            name: r.get(0),
            description: r.get(1),
            input_schema: r.get(2),
            timeout_ms: r.get::<_, i64>(3).max(0) as u64,
            queue_timeout_ms: r.get::<_, i64>(4).max(0) as u64,
            last_served_at: time_from_i64(r.get(5)),
        })
        .collect())
}

/// Stores `tools` in one statement, each replacing the one of its name;
/// `last_served_at` never moves back.
pub(super) async fn put_tools(
    client: &impl GenericClient,
    tools: &[StoredTool],
) -> Result<(), StoreError> {
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
    let st = client
        .prepare_cached(
            "INSERT INTO errand_tool_defs AS d (name, description, input_schema_json, timeout_ms,
                 queue_timeout_ms, last_served_at)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[],
                 $5::bigint[], $6::bigint[])
             ON CONFLICT (name) DO UPDATE SET description = excluded.description,
                 input_schema_json = excluded.input_schema_json,
                 timeout_ms = excluded.timeout_ms,
                 queue_timeout_ms = excluded.queue_timeout_ms,
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
            ],
        )
        .await
        .map_err(pg_error)?;
    Ok(())
}

/// Deletes the tools `names`; returns how many there were.
pub(super) async fn forget_tools(
    client: &impl GenericClient,
    names: &[String],
) -> Result<u64, StoreError> {
    let st = client
        .prepare_cached("DELETE FROM errand_tool_defs WHERE name = ANY($1)")
        .await
        .map_err(pg_error)?;
    client.execute(&st, &[&names]).await.map_err(pg_error)
}
