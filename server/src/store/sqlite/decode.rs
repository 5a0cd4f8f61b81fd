//! Reading stored rows back, and what happens to a row that does not read.
//!
//! SQLite keeps whatever bytes a page holds: bit rot the file's checks do
//! not see (`PRAGMA integrity_check` checks the b-trees, not the values),
//! or a hand edit, can leave a value that no longer decodes: text that is
//! not UTF-8, a blob of the wrong size, a state code errand never wrote.
//! Such a row is [`Unreadable`], and the error names it: which task (or
//! tool), which column, what is wrong, and that `errand check-store` lists
//! such rows with how to remove them.
//!
//! **One row never takes the others down.** Where a query reads many rows
//! for the server's own work, an unreadable one is left out and logged at
//! error level with its task ID ([`readable`]): recovery at start takes up
//! every other unfinished task, a listing pages through the others (a page
//! it was on is filled with the next row, so pages end early only at the
//! listing's end), the tool registry loads the other definitions. Nothing
//! is changed or deleted: the row stays in the store as it is, reading it
//! alone (`GetTask`) fails naming it, counts still count it, and every
//! start logs it again until its operator removes it or restores the file.
//!
//! Completions are the exception: a session's completions are delivered in
//! seq order, and an acknowledgement past one removes it, so an unreadable
//! completion is never skipped. A read returns the completions before it;
//! the next read, which would start with it, fails naming it, for that
//! session only.
use std::fmt;

use rusqlite::{Connection, Row, types::FromSql, types::Type};
use tracing::error;
use uuid::Uuid;

use crate::model::{CompletionRecord, TaskRecord};
use crate::store::{
    Cursor, StoredTool,
    sql::{
        call_columns::CallRow,
        codec::{self, TASK_COLUMNS, TaskRow, time_from_i64},
    },
};

/// A stored row whose values do not decode.
#[derive(Debug, Clone)]
pub(super) struct Unreadable {
    /// Which row, for people: `task 0190…`, `tool "search"`.
    pub row: String,
    /// The task's ID, when the row is a task's and its ID reads.
    pub task_id: Option<Uuid>,
    /// What is wrong: `column arguments: invalid utf-8 …`.
    pub what: String,
}

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the stored row of {} cannot be read ({}): the server's store is damaged there; \
             its operator can list such rows, with how to remove them, by `errand check-store`",
            self.row, self.what
        )
    }
}

impl std::error::Error for Unreadable {}

impl Unreadable {
    /// Task `id`'s row, for `what` is wrong with it.
    pub(super) fn of_task(id: Uuid, what: String) -> Self {
        Self::task(Some(id), what)
    }

    fn task(id: Option<Uuid>, what: String) -> Self {
        let row = match id {
            Some(id) => format!("task {id}"),
            None => "a task whose id does not read".into(),
        };
        Self {
            row,
            task_id: id,
            what,
        }
    }

    /// As a rusqlite error, for the queries that read one row: the store's
    /// error mapping (`errors::store_error`) shows it as it is.
    pub(super) fn into_sqlite(self) -> rusqlite::Error {
        rusqlite::Error::FromSqlConversionFailure(0, Type::Null, Box::new(self))
    }
}

/// What is wrong with column `name`, from rusqlite's error reading it.
fn column(name: &str, e: rusqlite::Error) -> String {
    let why = match e {
        rusqlite::Error::FromSqlConversionFailure(_, _, cause) => cause.to_string(),
        rusqlite::Error::Utf8Error(_, e) => format!("text that is not UTF-8 ({e})"),
        rusqlite::Error::InvalidColumnType(_, _, found) => {
            format!("holds a value of type {found}, not what errand stores there")
        }
        rusqlite::Error::IntegralValueOutOfRange(_, n) => format!("{n} is out of range"),
        other => other.to_string(),
    };
    format!("column {name}: {why}")
}

/// Column `i` of a row of [`TASK_COLUMNS`], naming it when it does not read.
fn get<T: FromSql>(row: &Row<'_>, i: usize, id: Option<Uuid>) -> Result<T, Unreadable> {
    row.get(i).map_err(|e| {
        let name = TASK_COLUMNS.split(',').nth(i).map_or("?", str::trim);
        Unreadable::task(id, column(name, e))
    })
}

/// Column `i`, called `name`, of a row of task `id` that some other
/// statement selected; naming both when it does not read.
pub(super) fn get_named<T: FromSql>(
    row: &Row<'_>,
    i: usize,
    name: &str,
    id: Uuid,
) -> Result<T, Unreadable> {
    row.get(i)
        .map_err(|e| Unreadable::task(Some(id), column(name, e)))
}

/// Decodes a row of [`TASK_COLUMNS`] through the shared codec.
pub(super) fn decode_task(row: &Row<'_>) -> Result<TaskRecord, Unreadable> {
    let id = Uuid::from_bytes(get(row, 0, None)?);
    let at = Some(id);
    TaskRow {
        id,
        session: get(row, 1, at)?,
        tool: get(row, 2, at)?,
        arguments: get(row, 3, at)?,
        timeout_ns: get(row, 4, at)?,
        idempotency_key: get(row, 5, at)?,
        created_at: get(row, 6, at)?,
        state: get(row, 7, at)?,
        attempts: get(row, 8, at)?,
        started_at: get(row, 9, at)?,
        finished_at: get(row, 10, at)?,
        result: get(row, 11, at)?,
        error_code: get(row, 12, at)?,
        error_message: get(row, 13, at)?,
        seq: get(row, 14, at)?,
        queue_deadline: get(row, 15, at)?,
        call: CallRow {
            result_budget: get(row, 16, at)?,
            args_hash: get(row, 17, at)?,
            joinable: get(row, 18, at)?,
            fallback: get(row, 19, at)?,
            summary: get(row, 20, at)?,
            answered_by: get(row, 21, at)?,
        },
        delivery: get(row, 22, at)?,
        retry_of: get::<Option<[u8; 16]>>(row, 23, at)?.map(Uuid::from_bytes),
    }
    .decode()
    .map_err(|e| Unreadable::task(at, e.0))
}

/// A task row, for the queries that read one: an unreadable row is an
/// error naming it.
pub(super) fn task_from_row(row: &Row<'_>) -> rusqlite::Result<TaskRecord> {
    decode_task(row).map_err(Unreadable::into_sqlite)
}

/// A task row, for the queries that read many: an unreadable row is left
/// to the caller (see [`readable`]).
pub(super) fn task_or_unreadable(
    row: &Row<'_>,
) -> rusqlite::Result<Result<TaskRecord, Unreadable>> {
    Ok(decode_task(row))
}

/// A task row and where it stands in a listing (its created_at and id,
/// read alone so that an unreadable row has a place too, when those read).
pub(super) fn listed(
    row: &Row<'_>,
) -> rusqlite::Result<(Result<TaskRecord, Unreadable>, Option<Cursor>)> {
    let place = (row.get::<_, [u8; 16]>(0).ok())
        .zip(row.get::<_, i64>(6).ok())
        .map(|(id, at)| Cursor {
            created_at: time_from_i64(at),
            id: Uuid::from_bytes(id),
        });
    Ok((decode_task(row), place))
}

/// The completion a finished task carries; unreadable when the row lacks
/// it (a seq but no outcome).
pub(super) fn completion(task: &TaskRecord) -> Result<CompletionRecord, Unreadable> {
    codec::completion_of(task).map_err(|e| Unreadable::task(Some(task.id), e.0))
}

/// The rule for a row that does not read in a query that reads many (see
/// the module's doc): logs it at error level, naming it, while `doing`.
pub(super) fn left_out(doing: &str, unreadable: &Unreadable) {
    let task_id = unreadable.task_id.map(tracing::field::display);
    error!(
        task_id,
        row = %unreadable.row,
        problem = %unreadable.what,
        "{doing}: a stored row cannot be read and is left out; it stays in the store as it is \
         (`errand check-store` lists such rows, with how to remove them)"
    );
}

/// The readable rows of `rows`, the others left out ([`left_out`]).
pub(super) fn readable<T>(
    doing: &str,
    rows: impl Iterator<Item = rusqlite::Result<Result<T, Unreadable>>>,
) -> rusqlite::Result<Vec<T>> {
    let mut out = Vec::new();
    for row in rows {
        match row? {
            Ok(item) => out.push(item),
            Err(unreadable) => left_out(doing, &unreadable),
        }
    }
    Ok(out)
}

/// The tool registry's rows: their columns, and the name's bytes last
/// (which read even when the name is not UTF-8).
pub(super) const SELECT_TOOLS: &str = "SELECT name, description, input_schema, timeout_ms, \
     queue_timeout_ms, last_served_at, policy, CAST(name AS BLOB) FROM tools ORDER BY name";

const TOOL_COLUMNS: [&str; 7] = [
    "name",
    "description",
    "input_schema",
    "timeout_ms",
    "queue_timeout_ms",
    "last_served_at",
    "policy",
];

/// A row of [`SELECT_TOOLS`]; an unreadable one is left to the caller.
pub(super) fn tool_or_unreadable(
    row: &Row<'_>,
) -> rusqlite::Result<Result<StoredTool, Unreadable>> {
    Ok(decode_tool(row))
}

fn decode_tool(row: &Row<'_>) -> Result<StoredTool, Unreadable> {
    let bad = |i: usize, e| {
        let name: Vec<u8> = row.get(7).unwrap_or_default();
        Unreadable {
            row: format!("tool {:?}", String::from_utf8_lossy(&name)),
            task_id: None,
            what: column(TOOL_COLUMNS[i], e),
        }
    };
    let int = |i: usize| row.get::<_, i64>(i).map_err(|e| bad(i, e));
    let text = |i: usize| row.get::<_, String>(i).map_err(|e| bad(i, e));
    Ok(StoredTool {
        name: text(0)?,
        description: text(1)?,
        input_schema: text(2)?,
        timeout_ms: int(3)?.max(0) as u64,
        queue_timeout_ms: int(4)?.max(0) as u64,
        last_served_at: time_from_i64(int(5)?),
        policy: text(6)?,
    })
}

/// Most unreadable rows `errand check-store` names.
const MAX_NAMED: usize = 20;

/// Every task and tool row of the file that does not read, as `errand
/// check-store` reports them: each with the statement that removes it;
/// `Ok(None)` when every row reads.
pub(super) fn unreadable_rows(conn: &Connection, db: &str) -> rusqlite::Result<Option<String>> {
    let mut found: Vec<(Unreadable, String)> = Vec::new();
    let mut count = 0usize;
    let mut note = |u: Unreadable, delete: String| {
        count += 1;
        if found.len() < MAX_NAMED {
            found.push((u, delete));
        }
    };
    let sql = format!("SELECT {TASK_COLUMNS}, rowid FROM tasks");
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let decoded = decode_task(row).and_then(|t| match t.seq {
            0 => Ok(t),
            _ => completion(&t).map(|_| t),
        });
        if let Err(u) = decoded {
            let delete = match row.get::<_, [u8; 16]>(0) {
                Ok(id) => format!("DELETE FROM tasks WHERE id = X'{}'", hex(&id)),
                Err(_) => format!("DELETE FROM tasks WHERE rowid = {}", row.get::<_, i64>(24)?),
            };
            note(u, delete);
        }
    }
    let mut stmt = conn.prepare(SELECT_TOOLS)?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        if let Err(u) = decode_tool(row) {
            let name: Vec<u8> = row.get(7)?;
            let delete = format!(
                "DELETE FROM tools WHERE CAST(name AS BLOB) = X'{}'",
                hex(&name)
            );
            note(u, delete);
        }
    }
    if count == 0 {
        return Ok(None);
    }
    let mut report = format!(
        "{count} stored row(s) cannot be read (the file's pages are sound, values in them are \
         not). The server leaves such rows out of recovery, listings and the tool registry, and \
         fails reads of them; to remove one, stop the server and run the statement given with \
         it, as `sqlite3 {db} \"STATEMENT\"` (or restore the file from a backup):"
    );
    for (u, delete) in &found {
        report.push_str(&format!("\n  {}: {}\n    {delete}", u.row, u.what));
    }
    if count > found.len() {
        report.push_str(&format!("\n  … and {} more", count - found.len()));
    }
    Ok(Some(report))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
