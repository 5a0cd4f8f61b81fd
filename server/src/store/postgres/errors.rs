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
    if let Some(fix) = misconfigured(&e) {
        return StoreError::Internal(format!("{why}: {fix}"));
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

/// What to fix when `e` says that errand's connection settings cannot
/// work with this database, so that trying again cannot help: [`pg_error`]
/// answers `Internal` and a start fails at once (`connect` retries only
/// `Unavailable`), as it does for a TLS certificate refused (`tls.rs`).
/// Every other failure to reach the database (refused, unreachable, shutting
/// down, too many connections, no answer) is transient and retried.
fn misconfigured(e: &tokio_postgres::Error) -> Option<&'static str> {
    if let Some(code) = e.code() {
        return if code.code().starts_with("28") {
            // Invalid authorization: a wrong password, an unknown role, no
            // pg_hba.conf entry for it.
            Some(LOGIN_REFUSED)
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            Some(NO_DATABASE)
        } else {
            None
        };
    }
    // tokio-postgres's error kinds are private: its own text names them.
    match e.to_string().as_str() {
        "invalid configuration" if chain(e).ends_with("password missing") => Some(PASSWORD_MISSING),
        "invalid configuration" | "invalid connection string" => Some(FIX_URL),
        // A login this client cannot do: Kerberos, GSSAPI, SSPI, a SASL
        // mechanism other than SCRAM-SHA-256, channel binding refused.
        "authentication error" => Some(LOGIN_METHOD),
        _ => None,
    }
}

const PASSWORD_MISSING: &str = "the database asks for a password and the database URL has \
     none: put it in the URL (postgres://USER:PASSWORD@HOST:PORT/DBNAME, with `@`, `:`, `/`, \
     `?`, `#`, `&` and `%` in it percent-encoded) or in its key=value settings (password=...); \
     errand reads neither PGPASSWORD nor ~/.pgpass, and ERRAND_DATABASE_URL keeps the URL off \
     the command line";
const LOGIN_REFUSED: &str = "check the user name and password in the database URL, and that \
     the database's pg_hba.conf lets that user in from this host";
const NO_DATABASE: &str = "create the database (`createdb -O USER DBNAME`) or name an existing \
     one in the database URL";
const FIX_URL: &str = "fix the database URL";
const LOGIN_METHOD: &str = "errand logs in with a password (SCRAM-SHA-256, MD5 or cleartext) \
     or none (trust): give this user such a method in the database's pg_hba.conf, or fix the \
     database URL's settings";

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
