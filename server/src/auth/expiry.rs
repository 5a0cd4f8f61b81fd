//! Streams end when the token that opened them expires: a token checked once
//! at the start of a long stream must not keep working after its expiry.
//! The stream ends with UNAUTHENTICATED "token expired"; clients reconnect
//! with a fresh token.
use std::time::SystemTime;

use tokio::time::Instant;

use crate::{auth::Caller, error::Error};

/// The moment `caller`'s token expires, on tokio's clock; `None`: never.
pub fn deadline(caller: &Caller) -> Option<Instant> {
    let expires = caller.expires?;
    let left = expires
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    Some(Instant::now() + left)
}

/// Sleeps until `deadline`; for ever when there is none.
pub async fn reached(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The status a stream ends with at its token's expiry.
pub fn expired(caller: &Caller) -> Error {
    let at = caller
        .expires
        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_default();
    Error::Unauthenticated(format!(
        "token expired at {at}: the stream it opened ends; reconnect with a fresh token"
    ))
}
