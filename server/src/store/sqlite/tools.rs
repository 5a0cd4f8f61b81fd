//! The tool registry's statements: the `tools` table (migration 3); its
//! rows are read back in `decode.rs`.
use rusqlite::{Connection, params};

use crate::store::StoredTool;
use crate::store::sql::codec::{time_to_i64, to_i64};

/// Stores each of `tools`, replacing the one of its name; `last_served_at`
/// never moves back. In a savepoint: all of them or none.
pub(super) fn put_tools(conn: &Connection, tools: &[StoredTool]) -> rusqlite::Result<()> {
    conn.prepare_cached("SAVEPOINT tools")?.execute([])?;
    match put_tools_inner(conn, tools) {
        Ok(()) => conn
            .prepare_cached("RELEASE tools")?
            .execute([])
            .map(|_| ()),
        Err(e) => {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK TO tools; RELEASE tools");
            }
            Err(e)
        }
    }
}

fn put_tools_inner(conn: &Connection, tools: &[StoredTool]) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO tools (name, description, input_schema, timeout_ms, queue_timeout_ms,
             last_served_at, policy) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (name) DO UPDATE SET description = excluded.description,
             input_schema = excluded.input_schema, timeout_ms = excluded.timeout_ms,
             queue_timeout_ms = excluded.queue_timeout_ms, policy = excluded.policy,
             last_served_at = max(last_served_at, excluded.last_served_at)",
    )?;
    for t in tools {
        stmt.execute(params![
            t.name,
            t.description,
            t.input_schema,
            to_i64(t.timeout_ms),
            to_i64(t.queue_timeout_ms),
            time_to_i64(t.last_served_at),
            t.policy,
        ])?;
    }
    Ok(())
}

/// Deletes the tools `names` (one statement); returns how many there were.
pub(super) fn forget_tools(conn: &Connection, names: &[String]) -> rusqlite::Result<u64> {
    let list = serde_json::to_string(names).unwrap_or_else(|_| "[]".into());
    conn.prepare_cached("DELETE FROM tools WHERE name IN (SELECT value FROM json_each(?1))")?
        .execute([list])
        .map(|n| n as u64)
}
