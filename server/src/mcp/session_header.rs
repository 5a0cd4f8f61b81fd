//! The `Errand-Session` header of an MCP request: which agent conversation
//! its calls belong to.
use axum::http::HeaderValue;
use rmcp::ErrorData;

/// The session `header` names, any UTF-8 name as gRPC's `session_id`
/// (checked by the agent API), or `default_session` without the header.
/// Errors (-32602): a header that is sent but empty or not UTF-8, which
/// names no session and must not be read as absent (its calls would land
/// in the shared default session).
pub(super) fn session(
    header: Option<&HeaderValue>,
    default_session: &str,
) -> Result<String, ErrorData> {
    let Some(header) = header else {
        return Ok(default_session.to_string());
    };
    let default = crate::error::quote(default_session);
    let refused = |what: String| {
        ErrorData::invalid_params(
            format!(
                "the Errand-Session header {what}: name the agent conversation in UTF-8, \
                     or leave the header out for the default session {default}"
            ),
            None,
        )
    };
    match std::str::from_utf8(header.as_bytes()) {
        Ok("") => Err(refused("is empty".to_string())),
        Ok(name) => Ok(name.to_string()),
        Err(e) => Err(refused(format!(
            "is not UTF-8 text (byte {} of {})",
            e.valid_up_to(),
            header.len()
        ))),
    }
}
