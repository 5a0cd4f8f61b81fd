//! Requests rmcp could not read: rmcp hands a request whose params do not
//! fit its method's type to `on_custom_request`, whose default answers
//! -32601 (method not found) even for `tools/call`. Errand answers -32602
//! naming what is wrong for the methods it serves, and -32601 only for
//! methods it does not know.
//!
//! And requests rmcp would read wrongly: a body with a key twice in one
//! JSON object (`"arguments": {"a":1,"a":2}`), of which rmcp's parser keeps
//! the last value, is refused by [`refuse_duplicate_keys`] with -32602, as
//! errand's JSON rule ([`crate::json_text`]) has gRPC refuse it.
use axum::{
    body::{Body, to_bytes},
    extract::{Request, State},
    http::{Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use rmcp::{ErrorData, model::ErrorCode};
use serde_json::{Value, json};

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

/// Middleware on the MCP route: a POST body (at most `max` bytes, the
/// limit rmcp applies after, answered 413 the way rmcp does) holding a key
/// twice in one object gets the JSON-RPC error -32602 naming the key, with
/// the request's `id`; any other body goes on to rmcp unchanged.
pub async fn refuse_duplicate_keys(State(max): State<usize>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, max).await else {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Payload Too Large: request body exceeds {max} bytes"),
        )
            .into_response();
    };
    if let Ok(text) = std::str::from_utf8(&bytes)
        && let Some(problem) = crate::json_text::duplicate_key(text)
    {
        // Read as rmcp would (the last value wins), for the id and method.
        let request = serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
        let id = request.get("id").cloned().unwrap_or(Value::Null);
        let method = request.get("method").and_then(Value::as_str).unwrap_or("?");
        let message = format!(
            "invalid {} params: the request {problem}",
            crate::logs::field(method)
        );
        let error = json!({"code": ErrorCode::INVALID_PARAMS.0, "message": message});
        return axum::Json(json!({"jsonrpc": "2.0", "id": id, "error": error})).into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
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
