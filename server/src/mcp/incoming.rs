//! One incoming MCP message (an HTTP request body, a line of
//! `errand mcp --stdio`), screened before rmcp reads it, so both transports
//! answer what is not a JSON-RPC request alike and go on:
//!
//! - not JSON: -32700 Parse error;
//! - JSON but not one message object (a batch `[...]`, which MCP dropped in
//!   2025-06-18 and rmcp reads in no version, so a 2025-03-26 client's batch
//!   is refused too and must be resent as single messages; `42`; an object
//!   without `method`, with a wrong `jsonrpc` or an `id` that is neither a
//!   string nor an integer): -32600 Invalid Request;
//! - over the size limit: -32600 too ([`too_large`]);
//! - a notification rmcp cannot read: nothing (a notification is never
//!   answered; rmcp drops those too);
//! - a request with a key twice in one JSON object (its arguments'
//!   `{"a":1,"a":2}`, of which rmcp would keep the last value): -32602
//!   naming the key, by errand's JSON rule, as gRPC refuses such arguments
//!   ([`duplicate_key`]; the HTTP endpoint checks every body for it).
//!
//! The error carries the request's `id` when it could be read and no `id`
//! otherwise: MCP's error responses omit an `id` they cannot give (JSON-RPC
//! 2.0 wrote `null`; MCP's schema never allowed it), as rmcp's own do.
use rmcp::model::{ClientJsonRpcMessage, ErrorData, RequestId, ServerJsonRpcMessage};
use serde_json::Value;

/// What to do with one incoming message.
#[derive(Debug)]
pub enum Screened {
    /// A message rmcp reads.
    Message(ClientJsonRpcMessage),
    /// A notification rmcp cannot read: dropped without an answer.
    Ignored,
    /// Not a JSON-RPC message: answer with this error.
    Refused(ServerJsonRpcMessage),
}

/// Screens `bytes`, one whole message (a UTF-8 byte order mark is skipped,
/// as rmcp skips it).
pub fn screen(bytes: &[u8]) -> Screened {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            return Screened::Refused(ServerJsonRpcMessage::error(
                ErrorData::parse_error(bounded(parse_error(bytes, &e)), None),
                None,
            ));
        }
    };
    let object = match &value {
        Value::Object(o) => o,
        Value::Array(_) => {
            return refused(
                None,
                "a batch (JSON array) is not accepted: MCP has no batches since 2025-06-18; \
                 send each message by itself",
            );
        }
        other => {
            return refused(
                None,
                &format!(
                    "a JSON-RPC message is a JSON object, not {}",
                    crate::json_text::kind(other)
                ),
            );
        }
    };
    let id = match object.get("id") {
        None => None,
        Some(raw) => match serde_json::from_value::<RequestId>(raw.clone()) {
            Ok(id) => Some(id),
            Err(_) => return refused(None, "\"id\" must be a string or an integer"),
        },
    };
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return refused(id, "\"jsonrpc\" must be \"2.0\"");
    }
    let is_response = object.contains_key("result") || object.contains_key("error");
    match object.get("method") {
        Some(Value::String(_)) => {}
        Some(_) => return refused(id, "\"method\" must be a string"),
        None if is_response => {}
        None => {
            return refused(
                id,
                "a request needs a \"method\" (and an \"id\" when it wants an answer)",
            );
        }
    }
    // A notification, or an answer without an id (an echo of one of these
    // errors, say): never answered, so no two peers trade errors for ever.
    let unanswered = id.is_none();
    if !unanswered && !is_response && object.get("params").is_some_and(|p| !p.is_object()) {
        return refused(id, "\"params\" must be a JSON object");
    }
    if !unanswered
        && !is_response
        && let Some(error) = duplicate_key(bytes)
    {
        return Screened::Refused(error);
    }
    match serde_json::from_value::<ClientJsonRpcMessage>(value) {
        Ok(message) => Screened::Message(message),
        Err(e) if unanswered => {
            tracing::debug!(error = %e, "ignoring an MCP notification or answer that cannot be read");
            Screened::Ignored
        }
        Err(e) => refused(
            id,
            &format!(
                "{e}: send a request, or an answer to the server's request, as MCP defines it"
            ),
        ),
    }
}

/// Most arrays and objects nested in one message that serde_json (rmcp's
/// parser) reads: its recursion limit.
const MAX_MESSAGE_DEPTH: usize = 127;

/// What is wrong with `bytes`, which serde_json refused with `e`, and where:
/// a lone surrogate escape (serde_json says only "unexpected end of hex
/// escape") or nesting past [`MAX_MESSAGE_DEPTH`] by name; other errors
/// as serde_json words them, with the hint for text that is not one
/// JSON-RPC request.
fn parse_error(bytes: &[u8], e: &serde_json::Error) -> String {
    let text = String::from_utf8_lossy(bytes);
    let at = |byte: usize| {
        let before = &text[..byte.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        format!("line {line} column {column}")
    };
    if let Err(crate::json_text::Problem::LoneSurrogate { at: byte }) =
        crate::json_text::check(&text, usize::MAX)
    {
        return format!(
            "Parse error: a lone UTF-16 surrogate escape {} at {}: JSON strings must be valid \
             Unicode (a \\ud800-\\udbff escape must be followed by a \\udc00-\\udfff one)",
            text.get(byte..byte + 6).unwrap_or("\\u"),
            at(byte)
        );
    }
    if e.to_string().starts_with("recursion limit exceeded") {
        return format!(
            "Parse error: the message nests arrays and objects deeper than {MAX_MESSAGE_DEPTH} \
             levels (line {} column {}), the most the MCP endpoint reads, the JSON-RPC request \
             and its params included: nest the arguments less deeply",
            e.line(),
            e.column()
        );
    }
    format!("Parse error: {e}: send one JSON-RPC request, a JSON object, per message")
}

/// The -32602 error, with the request's `id`, for a request (a message
/// with a `method` and an `id`) holding a key twice in one JSON object
/// ([`crate::json_text::duplicate_key`], the rule gRPC applies); `None`
/// for any other message, which [`screen`] or rmcp answers.
pub fn duplicate_key(bytes: &[u8]) -> Option<ServerJsonRpcMessage> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).ok()?;
    let problem = crate::json_text::duplicate_key(text)?;
    // Read as rmcp would (the last value wins), for the id and method.
    let value: Value = serde_json::from_str(text).ok()?;
    let id = serde_json::from_value::<RequestId>(value.get("id")?.clone()).ok()?;
    let method = value.get("method")?.as_str()?;
    let message = format!(
        "invalid {} params: the request {problem}",
        crate::logs::field(method)
    );
    Some(ServerJsonRpcMessage::error(
        ErrorData::invalid_params(bounded(message), None),
        Some(id),
    ))
}

/// The error for a message over `max_bytes`, which was not read.
pub fn too_large(max_bytes: usize) -> ServerJsonRpcMessage {
    ServerJsonRpcMessage::error(
        ErrorData::invalid_request(
            format!(
                "Invalid Request: the message is over the limit of {max_bytes} bytes: send a \
                 smaller one"
            ),
            None,
        ),
        None,
    )
}

fn refused(id: Option<RequestId>, why: &str) -> Screened {
    Screened::Refused(ServerJsonRpcMessage::error(
        ErrorData::invalid_request(bounded(format!("Invalid Request: {why}")), None),
        id,
    ))
}

/// A message within [`crate::error::MAX_MESSAGE_BYTES`] (serde's errors may
/// quote the input).
fn bounded(message: String) -> String {
    crate::error::bound(message)
}

#[cfg(test)]
mod tests {
    use rmcp::model::ErrorCode;
    use serde_json::json;

    use super::*;

    /// The error `input` is refused with, as JSON.
    fn refusal(input: &str) -> Value {
        match screen(input.as_bytes()) {
            Screened::Refused(e) => serde_json::to_value(e).unwrap(),
            other => panic!("{input} is refused, got {other:?}"),
        }
    }

    #[test]
    fn what_is_not_a_request_is_refused_with_its_json_rpc_error() {
        for (input, code) in [
            ("not json", ErrorCode::PARSE_ERROR.0),
            ("{\"jsonrpc\":", ErrorCode::PARSE_ERROR.0),
            ("", ErrorCode::PARSE_ERROR.0),
            ("[]", ErrorCode::INVALID_REQUEST.0),
            (
                r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
                ErrorCode::INVALID_REQUEST.0,
            ),
            ("42", ErrorCode::INVALID_REQUEST.0),
            ("null", ErrorCode::INVALID_REQUEST.0),
            (
                r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
                ErrorCode::INVALID_REQUEST.0,
            ),
        ] {
            let e = refusal(input);
            assert_eq!(e["error"]["code"], code, "{input}: {e}");
            assert!(e.get("id").is_none(), "no id could be read: {e}");
            assert_eq!(e["jsonrpc"], "2.0");
        }
        let e = refusal("not json");
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("Parse error: expected"),
            "{e}"
        );
        let e = refusal("[]");
        assert!(
            e["error"]["message"].as_str().unwrap().contains("batch"),
            "{e}"
        );
    }

    #[test]
    fn parse_errors_say_what_is_wrong_and_where() {
        let deep = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{{"a":{}1{}}}}}}}"#,
            "[".repeat(130),
            "]".repeat(130)
        );
        let e = refusal(&deep);
        assert_eq!(e["error"]["code"], ErrorCode::PARSE_ERROR.0, "{e}");
        let text = e["error"]["message"].as_str().unwrap();
        assert!(text.contains("deeper than 127 levels"), "{text}");
        assert!(text.contains("line 1 column"), "{text}");
        assert!(!text.contains("per message"), "{text}");
        let e = refusal(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"a":"\ud800"}}}"#,
        );
        assert_eq!(e["error"]["code"], ErrorCode::PARSE_ERROR.0, "{e}");
        let text = e["error"]["message"].as_str().unwrap();
        assert!(text.contains("lone UTF-16 surrogate"), "{text}");
        assert!(text.contains("line 1 column 86"), "{text}");
    }

    #[test]
    fn a_request_with_a_key_twice_is_invalid_params_naming_it() {
        let call = r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"t","arguments":{"a":1,"a":2}}}"#;
        let e = refusal(call);
        assert_eq!(e["error"]["code"], ErrorCode::INVALID_PARAMS.0, "{e}");
        assert_eq!(e["id"], 4, "{e}");
        let text = e["error"]["message"].as_str().unwrap();
        assert!(text.contains(r#"duplicate key "a""#), "{text}");
        assert!(text.contains("tools/call"), "{text}");
        // A notification is never answered; without a duplicate, nothing to say.
        let note = r#"{"jsonrpc":"2.0","method":"notifications/x","params":{"a":1,"a":2}}"#;
        assert!(duplicate_key(note.as_bytes()).is_none());
        let ok = r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"a":{"a":1}}}"#;
        assert!(duplicate_key(ok.as_bytes()).is_none());
    }

    #[test]
    fn a_readable_id_is_answered() {
        for input in [
            r#"{"jsonrpc":"2.0","id":7}"#,
            r#"{"jsonrpc":"1.0","id":7,"method":"ping"}"#,
            r#"{"id":7,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":7,"method":5}"#,
        ] {
            let e = refusal(input);
            assert_eq!(e["id"], 7, "{input}: {e}");
            assert_eq!(e["error"]["code"], ErrorCode::INVALID_REQUEST.0, "{e}");
        }
        let e = refusal(r#"{"jsonrpc":"2.0","id":"a","method":5}"#);
        assert_eq!(e["id"], "a");
        let e = refusal(r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":5}"#);
        assert_eq!(e["id"], 8);
        assert_eq!(
            e["error"]["message"],
            "Invalid Request: \"params\" must be a JSON object"
        );
        let e = refusal(r#"{"jsonrpc":"2.0","id":9,"error":5}"#);
        assert_eq!(
            (e["id"].as_i64(), e["error"]["code"].as_i64()),
            (Some(9), Some(-32600))
        );
    }

    #[test]
    fn requests_notifications_and_responses_pass_and_bad_notifications_are_dropped() {
        let ping = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        assert!(matches!(screen(ping), Screened::Message(_)));
        let with_bom = [&b"\xEF\xBB\xBF"[..], ping].concat();
        assert!(matches!(screen(&with_bom), Screened::Message(_)));
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string();
        assert!(matches!(screen(note.as_bytes()), Screened::Message(_)));
        for bad in [
            json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": 5}),
            json!({"jsonrpc": "2.0", "method": "x/y", "params": 5}),
        ] {
            let screened = screen(bad.to_string().as_bytes());
            assert!(matches!(screened, Screened::Ignored), "{bad}: {screened:?}");
        }
        let answer = json!({"jsonrpc": "2.0", "id": 3, "result": {}}).to_string();
        assert!(matches!(screen(answer.as_bytes()), Screened::Message(_)));
    }

    #[test]
    fn an_echo_of_an_error_is_never_answered() {
        for input in [
            "not json",
            "[]",
            r#"{"jsonrpc":"2.0"}"#,
            r#"{"jsonrpc":"2.0","id":7,"method":5}"#,
        ] {
            let error = serde_json::to_vec(&refusal(input)).unwrap();
            let echoed = screen(&error);
            assert!(
                !matches!(echoed, Screened::Refused(_)),
                "{input}: {echoed:?}"
            );
        }
        let bare = json!({"jsonrpc": "2.0", "error": 5}).to_string();
        assert!(matches!(screen(bare.as_bytes()), Screened::Ignored));
    }

    #[test]
    fn errors_are_bounded() {
        let long = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"{}""#,
            "x".repeat(100_000)
        );
        let e = refusal(&long);
        let message = e["error"]["message"].as_str().unwrap();
        assert!(
            message.len() <= crate::error::MAX_MESSAGE_BYTES,
            "{}",
            message.len()
        );
        let e = serde_json::to_value(too_large(1024)).unwrap();
        assert_eq!(e["error"]["code"], ErrorCode::INVALID_REQUEST.0);
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("1024 bytes"),
            "{e}"
        );
    }
}
