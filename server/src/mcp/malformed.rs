//! Requests rmcp could not read: rmcp hands a request whose params do not
//! fit its method's type to `on_custom_request`, whose default answers
//! -32601 (method not found) even for `tools/call`. Errand answers -32602
//! naming what is wrong for the methods it serves, and -32601 only for
//! methods it does not know.
use rmcp::{ErrorData, model::ErrorCode};
use serde_json::Value;

/// Methods whose params rmcp parses before they reach the handler.
const KNOWN: &[&str] = &[
    "tools/call",
    "tools/list",
    "tasks/get",
    "tasks/update",
    "tasks/cancel",
    "tasks/list",
    "tasks/result",
];

/// The error for `method` whose `params` rmcp could not read into the
/// method's type (`parse_error`, when known, says why).
pub fn error(method: &str, params: Option<&Value>, parse_error: Option<String>) -> ErrorData {
    if !KNOWN.contains(&method) {
        return ErrorData::new(
            ErrorCode::METHOD_NOT_FOUND,
            format!(
                "method {} is not served here: see the server's capabilities",
                crate::logs::field(method)
            ),
            None,
        );
    }
    let arguments = params.and_then(|p| p.get("arguments"));
    let problem = match (method, arguments) {
        ("tools/call", Some(a)) if !a.is_object() && !a.is_null() => {
            "`arguments` must be a JSON object: the tool's arguments by name".to_string()
        }
        _ if params.is_some_and(|p| !p.is_object()) => "params must be a JSON object".into(),
        _ => parse_error.unwrap_or_else(|| "params do not match the method".into()),
    };
    ErrorData::invalid_params(
        format!("invalid {method} params: {}", crate::logs::field(&problem)),
        None,
    )
}

/// The `taskId` of `tasks/update` params rmcp refused (those without
/// `inputResponses`: errand never asks for input, so there is none to send).
pub fn update_task_id(params: Option<&Value>) -> Option<&str> {
    params?.get("taskId")?.as_str()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn known_methods_get_invalid_params_naming_the_problem() {
        let e = error(
            "tools/call",
            Some(&json!({"name": "t", "arguments": "str"})),
            None,
        );
        assert_eq!(e.code, ErrorCode::INVALID_PARAMS);
        assert!(
            e.message.contains("`arguments` must be a JSON object"),
            "{}",
            e.message
        );
        let e = error(
            "tasks/get",
            Some(&json!({})),
            Some("missing field `taskId`".into()),
        );
        assert_eq!(e.code, ErrorCode::INVALID_PARAMS);
        assert!(e.message.contains("taskId"), "{}", e.message);
        let e = error("nope/nothing", None, None);
        assert_eq!(e.code, ErrorCode::METHOD_NOT_FOUND);
        assert_eq!(update_task_id(Some(&json!({"taskId": "t1"}))), Some("t1"));
    }
}
