//! Requests rmcp could not read: rmcp hands a request whose params do not
//! fit its method's type to `on_custom_request`, whose default answers
//! -32601 (method not found) even for `tools/call`. Errand answers -32602
//! naming what is wrong for the methods it serves, and -32601 for methods
//! it does not serve ([`not_found`]), naming the method and what to call
//! instead. rmcp's own -32601 refusals say only the method's name (`ping`
//! in protocol 2026-07-28, which removed it): [`explain`] words them alike.
use rmcp::{ErrorData, model::ErrorCode};
use serde_json::Value;

/// Methods errand serves whose params rmcp parses before they reach the
/// handler.
const KNOWN: &[&str] = &[
    "tools/call",
    "tools/list",
    "tasks/get",
    "tasks/update",
    "tasks/cancel",
];

/// The error for `method` whose `params` rmcp could not read into the
/// method's type (`parse_error`, when known, says why); for a method errand
/// does not serve, [`not_found`].
pub fn error(method: &str, params: Option<&Value>, parse_error: Option<String>) -> ErrorData {
    if !KNOWN.contains(&method) {
        return not_found(method);
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

/// -32601 for `method`, which errand does not serve (in the request's
/// protocol version): the message names it and what to call instead.
pub fn not_found(method: &str) -> ErrorData {
    let instead = match method {
        "tasks/result" => {
            "the Tasks extension errand serves has no tasks/result: poll tasks/get with the \
             taskId until the task is completed; that answer holds the result"
        }
        "tasks/list" => {
            "the Tasks extension errand serves has no tasks/list: keep the taskId each \
             tools/call answers and follow it with tasks/get"
        }
        "ping" => {
            "MCP 2026-07-28 removed ping: call server/discover to check that the server \
             answers (a 2025-11-25 session still answers ping)"
        }
        "subscriptions/listen" | "resources/subscribe" | "resources/unsubscribe" => {
            "errand sends no change notifications: follow a task with tasks/get, and call \
             tools/list again for the tools"
        }
        _ => {
            "errand serves tools: tools/list lists them, tools/call runs one, and with the \
             io.modelcontextprotocol/tasks extension (protocol 2026-07-28) tasks/get, \
             tasks/update and tasks/cancel follow its task"
        }
    };
    ErrorData::new(
        ErrorCode::METHOD_NOT_FOUND,
        crate::error::bound(format!(
            "Method not found: {:?}: {instead}",
            crate::logs::field(method)
        )),
        None,
    )
}

/// What rmcp's error `message` says, within errand's bounds: a header
/// that does not match the body (rmcp's "NAME header `A` does not match
/// body value `B`", or "body method `B`") with each value quoted as
/// errand quotes client input ([`crate::error::quote`]); any message
/// within [`crate::error::MAX_MESSAGE_BYTES`] ([`crate::error::bound`]).
pub fn bounded(message: &str) -> String {
    const MISMATCH: &str = " does not match body ";
    let quoted = message.split_once(MISMATCH).and_then(|(header, body)| {
        let (name, sent) = header.split_once(" `")?;
        let sent = sent.strip_suffix('`')?;
        let (what, expected) = body.split_once(" `")?;
        let expected = expected.strip_suffix('`')?;
        Some(format!(
            "{name} {}{MISMATCH}{what} {}",
            crate::error::quote(sent),
            crate::error::quote(expected)
        ))
    });
    crate::error::bound(quoted.unwrap_or_else(|| message.to_string()))
}

/// Words rmcp's own -32601 for a method (its message is the method's bare
/// name) as [`not_found`] does; any other error is left as it is.
pub fn explain(error: &mut ErrorData) {
    let bare = !error.message.is_empty() && !error.message.contains(char::is_whitespace);
    if error.code == ErrorCode::METHOD_NOT_FOUND && bare {
        *error = not_found(&error.message);
    }
}

/// The `taskId` of `tasks/update` params rmcp refused (those without
/// `inputResponses`: errand never asks for input, so there is none to send).
pub fn update_task_id(params: Option<&Value>) -> Option<&str> {
    params?.get("taskId")?.as_str()
}

#[cfg(test)]
mod tests {

    #[test]
    fn header_mismatches_quote_each_value_bounded() {
        let long = "x".repeat(4_000_000);
        let m = bounded(&format!(
            "Mcp-Name header `abc` does not match body value `{long}`"
        ));
        assert!(
            m.starts_with("Mcp-Name header \"abc\" does not match body value \"xxx"),
            "{m}"
        );
        assert!(m.ends_with("\"… (4000000 bytes)"), "{m}");
        let m = bounded(&format!(
            "Mcp-Method header `{long}` does not match body method `tools/list`"
        ));
        assert!(
            m.ends_with("(4000000 bytes) does not match body method \"tools/list\""),
            "{m}"
        );
        assert_eq!(
            bounded("duplicate Mcp-Name header"),
            "duplicate Mcp-Name header"
        );
        assert!(bounded(&long).len() <= crate::error::MAX_MESSAGE_BYTES);
    }
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

    #[test]
    fn methods_not_served_are_method_not_found_saying_what_to_call() {
        for (method, hint) in [
            ("tasks/list", "tasks/get"),
            ("tasks/result", "tasks/get"),
            ("ping", "server/discover"),
            ("subscriptions/listen", "tasks/get"),
            ("prompts/list", "tools/call"),
            ("nope/nothing", "tools/call"),
        ] {
            let e = error(method, Some(&json!({"taskId": "t1"})), None);
            assert_eq!(e.code, ErrorCode::METHOD_NOT_FOUND, "{method}");
            let text = &e.message;
            assert!(text.starts_with("Method not found: "), "{text}");
            assert!(text.contains(&format!("\"{method}\"")), "{text}");
            assert!(text.contains(hint), "{text}");
            assert!(text.len() <= crate::error::MAX_MESSAGE_BYTES, "{text}");
        }
        // rmcp's own refusals carry the bare method name: explained alike.
        let mut bare = ErrorData::new(ErrorCode::METHOD_NOT_FOUND, "ping", None);
        explain(&mut bare);
        assert_eq!(bare.message, error("ping", None, None).message);
        // Any other error is left as it is.
        for e in [
            ErrorData::new(
                ErrorCode::METHOD_NOT_FOUND,
                "a sentence, not a method",
                None,
            ),
            ErrorData::invalid_params("ping", None),
        ] {
            let mut same = e.clone();
            explain(&mut same);
            assert_eq!(same, e);
        }
        // A long unknown method is cut.
        let long = "x".repeat(10_000);
        let e = error(&long, None, None);
        assert!(
            e.message.len() <= crate::error::MAX_MESSAGE_BYTES,
            "{}",
            e.message.len()
        );
    }
}
