//! The one rule for text fields at the API boundary, the same whatever the
//! store (issue 15.5): an identifier (session ID, idempotency key, tool
//! name) with a NUL character is refused with INVALID_ARGUMENT, and free
//! text (tool descriptions, worker names, a worker's error code and
//! message) has each NUL escaped as the six characters `\u0000`. JSON
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

/// Free text as errand keeps it: every NUL escaped as `\u0000`.
pub fn free_text(value: String) -> String {
    if value.contains('\0') {
        value.replace('\0', "\\u0000")
    } else {
        value
    }
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
}
