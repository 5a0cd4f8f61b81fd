//! What PostgreSQL's errors mean to the store's callers.

use tokio_postgres::error::SqlState;

use crate::store::StoreError;

/// `e` and its causes, outermost first, on one line: tokio-postgres's own
/// text is often only "error connecting to server" or "db error", its
/// source says why ("Connection refused", "FATAL: the database system is
/// shutting down"); a server's DETAIL and HINT lines are joined with "; ".
pub(super) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string().replace('\n', "; ");
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string().replace('\n', "; ");
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// Maps a PostgreSQL error to what the caller can do about it. Every
/// message carries the error's source chain ([`chain`]): tokio-postgres's
/// own text for a server's error is only "db error", its source says what
/// happened ("FATAL: the database system is shutting down").
pub(super) fn pg_error(e: tokio_postgres::Error) -> StoreError {
    let why = chain(&e);
    if e.is_closed() {
        return StoreError::Unavailable(format!("the database connection closed ({why})"));
    }
    match e.code() {
        None => StoreError::Unavailable(format!("the database is unreachable ({why})")),
        Some(code) => {
            let class = &code.code()[..2];
            if *code == SqlState::DISK_FULL || *code == SqlState::OUT_OF_MEMORY {
                StoreError::Full(format!("the database is out of space ({why})"))
            } else if class == "08"
                || class == "57"
                || class == "53"
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::T_R_SERIALIZATION_FAILURE
            {
                StoreError::Unavailable(format!("the database is unavailable ({why})"))
            } else if class == "22" || class == "54" {
                // Data exception, program limit: this row's values.
                let detail = e.as_db_error().map(|d| d.message().to_string());
                StoreError::Rejected(detail.unwrap_or(why))
            } else {
                // No `store:` prefix: `Error::Store` adds it once.
                StoreError::Internal(why)
            }
        }
    }
}

pub(super) fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_error(e),
        deadpool_postgres::PoolError::Timeout(what) => {
            // Connecting (or waiting for a free connection) took longer
            // than the operation timeout: the database does not answer.
            tracing::warn!(timeout = ?what, "PostgreSQL did not answer in time (no connection)");
            StoreError::Unavailable(format!(
                "no database connection: the database did not answer in time ({})",
                deadpool_postgres::PoolError::Timeout(what)
            ))
        }
        other => StoreError::Unavailable(format!("no database connection ({})", chain(&other))),
    }
}
