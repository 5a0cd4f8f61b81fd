//! What PostgreSQL's errors mean to the store's callers.

use tokio_postgres::error::SqlState;

use crate::store::StoreError;

/// `e` and its causes, outermost first: tokio-postgres's own text is
/// often only "error connecting to server", its source says why
/// ("Connection refused", "failed to lookup address ...").
pub(super) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// Maps a PostgreSQL error to what the caller can do about it.
pub(super) fn pg_error(e: tokio_postgres::Error) -> StoreError {
    if e.is_closed() {
        return StoreError::Unavailable(format!("the database connection closed ({})", chain(&e)));
    }
    match e.code() {
        None => StoreError::Unavailable(format!("the database is unreachable ({})", chain(&e))),
        Some(code) => {
            let class = &code.code()[..2];
            if *code == SqlState::DISK_FULL || *code == SqlState::OUT_OF_MEMORY {
                StoreError::Full(format!("the database is out of space ({e})"))
            } else if class == "08"
                || class == "57"
                || class == "53"
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::T_R_SERIALIZATION_FAILURE
            {
                StoreError::Unavailable(format!("the database is unavailable ({e})"))
            } else if class == "22" || class == "54" {
                // Data exception, program limit: this row's values.
                let detail = e.as_db_error().map(|d| d.message().to_string());
                StoreError::Rejected(detail.unwrap_or_else(|| e.to_string()))
            } else {
                let detail = e
                    .as_db_error()
                    .map(|d| d.message().to_string())
                    .unwrap_or_default();
                // No `store:` prefix: `Error::Store` adds it once.
                StoreError::Internal(format!("{e} {detail}").trim_end().to_string())
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
        other => StoreError::Unavailable(format!("no database connection ({other})")),
    }
}
