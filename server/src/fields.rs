//! The one rule for text fields at the API boundary, the same whatever the
//! store (issue 15.5): an identifier (session ID, idempotency key, tool
//! name) with a NUL character is refused with INVALID_ARGUMENT, and free
//! text (tool descriptions, worker names, a worker's error code and
//! message, a cancel's reason) has each NUL escaped as the six characters `\u0000`. JSON
//! texts need neither: a raw NUL is not JSON, so their parsers refuse it.
use crate::error::Error;

/// Refuses an identifier that carries a NUL character, naming the field.
pub fn identifier(field: &str, value: &str) -> Result<(), Error> {
    match value.find('\0') {
        None => Ok(()),
        Some(at) => Err(Error::invalid(format!(
            "{field} contains a NUL character (U+0000) at byte {at}: identifiers may not contain it"
        ))),
    }
}

/// Most bytes of a worker's error code (`ToolError.code`): codes are
/// machine-readable names ("tool_error", "rate_limited"); a longer one is
/// cut to this at a character boundary, as the message is cut to the
/// result limit.
pub const MAX_ERROR_CODE_BYTES: usize = 128;

/// Most bytes of a failure's message (`ToolError.message`), whichever way
/// it comes: a worker's error, a fallback's `primary_error`, one errand
/// writes. Well under a result budget (16 KiB by default), so a failure
/// never outgrows the message that carries it beside a full result (a
/// fallback's answer), even under small limits (a 64 KiB message limit
/// with 16 KiB arguments and results still adds up): a
/// longer message is cut to this at a character boundary, ending with a
/// marker that says so and how long it was ([`crate::text::cut_marked`]).
pub const MAX_ERROR_MESSAGE_BYTES: usize = 4 * 1024;

/// Most bytes of a worker's name (`Register.worker_name`), which goes into
/// every log line and listing about the worker; a longer one is refused.
pub const MAX_WORKER_NAME_BYTES: usize = 256;

/// Free text as errand keeps it: every NUL escaped as `\u0000`.
pub fn free_text(value: String) -> String {
    if value.contains('\0') {
        value.replace('\0', "\\u0000")
    } else {
        value
    }
}

/// Most bytes of a cancel's reason (`CancelTaskRequest.reason`,
/// `CancelTasksRequest.reason`), before NULs are escaped.
pub const MAX_CANCEL_REASON_BYTES: usize = 1024;

/// The one rule for every cancel's reason, whichever RPC or front end
/// brings it: free text (NULs escaped, as it reaches the worker, the
/// completion's message and the store). Errors: over
/// [`MAX_CANCEL_REASON_BYTES`] (INVALID_ARGUMENT).
pub fn cancel_reason(reason: String) -> Result<String, Error> {
    if reason.len() > MAX_CANCEL_REASON_BYTES {
        return Err(Error::invalid(format!(
            "reason is {} bytes, over the limit of {MAX_CANCEL_REASON_BYTES}: shorten it",
            reason.len()
        )));
    }
    Ok(free_text(reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_refused_in_identifiers_and_escaped_in_free_text() {
        assert!(identifier("session_id", "s").is_ok());
        let e = identifier("session_id", "a\0b").unwrap_err();
        assert!(e.to_string().contains("session_id contains a NUL"), "{e}");
        assert_eq!(free_text("a\0b".into()), "a\\u0000b");
        assert_eq!(free_text("plain".into()), "plain");
    }

    #[test]
    fn a_cancel_reason_is_free_text_of_at_most_1_kib() {
        let at_limit = "x".repeat(MAX_CANCEL_REASON_BYTES);
        assert_eq!(cancel_reason(at_limit.clone()).unwrap(), at_limit);
        let e = cancel_reason("x".repeat(MAX_CANCEL_REASON_BYTES + 1)).unwrap_err();
        assert!(e.to_string().contains("1024"), "{e}");
        assert_eq!(cancel_reason("a\0b".into()).unwrap(), "a\\u0000b");
    }
}
