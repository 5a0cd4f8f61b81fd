//! JSON numbers across A2A's protobuf `Struct`s (data parts, metadata),
//! whose numbers are 64-bit floats: the A2A SDK reads every JSON body into
//! proto types and writes them back from there, so `5` arrives as `5.0` and
//! would leave as `5.0`. Errand keeps integers integers:
//!
//! - [`integral`]: a float with no fraction that a double holds exactly
//!   (|n| < 2^53) becomes an integer, on the way in (a tool's arguments) and,
//!   by [`layer`], on the way out (JSON bodies and SSE events).
//! - [`layer`] also refuses, before the SDK does with a cryptic message, a
//!   request holding an integer a double cannot hold (-32602, or 400 on
//!   HTTP+JSON, naming where it is and what to send instead), and, being
//!   the one place that reads the raw body, one with a key twice in one
//!   object, by errand's JSON rule ([`crate::json_text::duplicate_key`]).
//! - On the way out, worker data that a `Struct` would change ([`fits_struct`]
//!   is false: a 64-bit ID in a result, say) is not put in one: the result
//!   goes as a text part of media type application/json, a tool's schema in
//!   the card as its JSON text.
use axum::{
    body::{Body, Bytes},
    extract::Request,
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::{Value, json};

/// Integers of magnitude below this (2^53) are held exactly by a double
/// (the SDK's parser refuses the others).
const EXACT: u64 = 1 << f64::MANTISSA_DIGITS;

/// Longest path named in an error, in characters.
const MAX_PATH: usize = 200;

/// Turns every float of `v` with no fraction and |n| < 2^53 into an integer.
pub fn integral(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() < EXACT as f64
            {
                *v = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral),
        Value::Object(map) => map.values_mut().for_each(integral),
        _ => {}
    }
}

/// Whether every number of `v` keeps its value through a protobuf
/// `Struct` (64-bit floats): integers within ±(2^53 - 1) and numbers with a
/// fraction do; an integer beyond does not, nor does a float of magnitude
/// 2^53 or more (serde_json's reading of an integer literal beyond 64 bits,
/// already rounded, or a float a reader could take for such an integer).
pub fn fits_struct(v: &Value) -> bool {
    match v {
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => u < EXACT,
            (_, Some(i), _) => i.unsigned_abs() < EXACT,
            (_, _, Some(f)) => f.abs() < EXACT as f64,
            _ => false,
        },
        Value::Array(items) => items.iter().all(fits_struct),
        Value::Object(map) => map.values().all(fits_struct),
        _ => true,
    }
}

/// The first integer in `v` a double cannot hold exactly: its path (like
/// `params.message.parts[0].data.n`) and its text.
fn inexact(v: &Value, path: &mut String) -> Option<(String, String)> {
    match v {
        Value::Number(n) => {
            let big = n.as_u64().is_some_and(|u| u >= EXACT)
                || n.as_i64().is_some_and(|i| i.unsigned_abs() >= EXACT);
            big.then(|| (path.clone(), n.to_string()))
        }
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let found = inexact(item, path);
            path.truncate(len);
            found
        }),
        Value::Object(map) => map.iter().find_map(|(k, item)| {
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(k);
            let found = inexact(item, path);
            path.truncate(len);
            found
        }),
        _ => None,
    }
}

/// The error message for the integer `number` at `path`.
fn inexact_message(path: &str, number: &str) -> String {
    let mut path = path.to_string();
    if path.len() > MAX_PATH {
        let cut = (0..=MAX_PATH).rev().find(|&i| path.is_char_boundary(i));
        path.truncate(cut.unwrap_or(0));
        path.push('…');
    }
    format!(
        "the integer {number} at {} cannot be carried exactly: A2A data parts and metadata \
         are protobuf Structs, whose numbers are 64-bit floats (integers up to \
         ±9007199254740991); send it as a string",
        crate::logs::field(&path)
    )
}

/// Middleware on the JSON-RPC and HTTP+JSON routes: refuses a request body
/// holding a key twice in one object (errand's JSON rule,
/// [`crate::json_text`]: the SDK's parser would keep the last value) or an
/// integer a double cannot hold, and makes integral floats integers again
/// in JSON and SSE responses (the gRPC binding passes untouched: its
/// Structs are protobuf's own). A body that fails to read (past the size
/// limit) gets 413.
pub async fn layer(req: Request, next: Next) -> Response {
    // Only the JSON routes' bodies are read here. Any other request (the
    // gRPC binding, a path with no route: a worker's stream sent to this
    // port by mistake, whose body never ends) passes untouched and at once.
    let path = req.uri().path();
    let rest = path.starts_with(super::card::REST_PATH);
    if !rest && !path.starts_with(super::card::JSONRPC_PATH) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return (StatusCode::PAYLOAD_TOO_LARGE, e.to_string()).into_response(),
    };
    let duplicate = std::str::from_utf8(&bytes)
        .ok()
        .and_then(crate::json_text::duplicate_key)
        .map(|p| format!("the request {p}"));
    if let Ok(value) = serde_json::from_slice::<Value>(&bytes)
        && let Some(message) = duplicate.or_else(|| {
            inexact(&value, &mut String::new())
                .map(|(path, number)| inexact_message(&path, &number))
        })
    {
        if rest {
            // The SDK's HTTP+JSON error shape.
            let error = json!({"code": 400, "status": "INVALID_ARGUMENT", "message": message});
            let mut r =
                (StatusCode::BAD_REQUEST, axum::Json(json!({"error": error}))).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/problem+json"),
            );
            return r;
        }
        let error = json!({"code": a2a::error_code::INVALID_PARAMS, "message": message});
        let id = value.get("id").cloned().unwrap_or(Value::Null);
        return axum::Json(json!({"jsonrpc": "2.0", "id": id, "error": error})).into_response();
    }
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let kind = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if is_json(kind) {
        let (mut parts, body) = response.into_parts();
        let Ok(bytes) = body.collect().await.map(|b| b.to_bytes()) else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::from(rewrite_json(bytes)));
    }
    if kind.starts_with("text/event-stream") {
        let (parts, body) = response.into_parts();
        let events = body
            .into_data_stream()
            .map(|frame| frame.map(rewrite_event));
        return Response::from_parts(parts, Body::from_stream(events));
    }
    response
}

/// Whether a `Content-Type` is JSON: `application/json`, or a JSON-based
/// type (`+json`: HTTP+JSON's `application/a2a+json`, errors'
/// `application/problem+json`), parameters aside.
fn is_json(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("application/json") || media.to_ascii_lowercase().ends_with("+json")
}

/// `bytes` with [`integral`] applied, if they are JSON.
fn rewrite_json(bytes: Bytes) -> Bytes {
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(mut v) => {
            integral(&mut v);
            serde_json::to_vec(&v).map_or(bytes, Bytes::from)
        }
        Err(_) => bytes,
    }
}

/// An SSE frame (`id: N\ndata: JSON\n\n`, one event per frame as axum
/// writes them) with [`integral`] applied to its `data:` lines.
fn rewrite_event(frame: Bytes) -> Bytes {
    let Ok(text) = std::str::from_utf8(&frame) else {
        return frame;
    };
    if !text.contains("data:") {
        return frame;
    }
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let Some(data) = line.strip_prefix("data:") else {
            out.push_str(line);
            continue;
        };
        let (json, end) = match data.strip_suffix('\n') {
            Some(j) => (j, "\n"),
            None => (data, ""),
        };
        match serde_json::from_str::<Value>(json.trim_start()) {
            Ok(mut v) => {
                integral(&mut v);
                out.push_str("data: ");
                out.push_str(&v.to_string());
                out.push_str(end);
            }
            Err(_) => out.push_str(line),
        }
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integral_floats_become_integers() {
        let mut v = json!({"n": 5.0, "x": 2.5, "l": [1.0, -3.0], "big": 1e300, "s": "5.0"});
        integral(&mut v);
        assert_eq!(
            v.to_string(),
            r#"{"big":1e+300,"l":[1,-3],"n":5,"s":"5.0","x":2.5}"#
        );
    }

    #[test]
    fn an_integer_a_double_cannot_hold_is_found_with_its_path() {
        let v: Value = serde_json::from_str(
            r#"{"params":{"message":{"parts":[{"data":{"n":12345678901234567}}]}}}"#,
        )
        .unwrap();
        let (path, n) = inexact(&v, &mut String::new()).unwrap();
        assert_eq!(path, "params.message.parts[0].data.n");
        assert_eq!(n, "12345678901234567");
        assert!(inexact_message(&path, &n).contains("send it as a string"));
        let ok: Value = serde_json::from_str(r#"{"n":9007199254740991,"m":-5}"#).unwrap();
        assert!(inexact(&ok, &mut String::new()).is_none());
    }

    #[test]
    fn values_a_struct_would_change_are_found() {
        let fits = |text: &str| fits_struct(&serde_json::from_str(text).unwrap());
        assert!(fits(
            r#"{"n":9007199254740991,"m":-9007199254740991,"x":2.5,"s":"9007199254740993"}"#
        ));
        assert!(fits(r#"[1e-300, 0.1, null, true]"#));
        assert!(!fits(r#"{"id":9007199254740993}"#));
        assert!(!fits(r#"[{"id":-9007199254740993}]"#));
        assert!(!fits(r#"{"tweet":1790000000000000001}"#));
        assert!(!fits(r#"{"huge":123456789012345678901234567890}"#));
        assert!(!fits(r#"{"f":1e300}"#));
    }

    #[test]
    fn sse_data_lines_are_rewritten() {
        let frame = Bytes::from("id: 1\ndata: {\"a\":1.0}\n\n");
        assert_eq!(rewrite_event(frame), "id: 1\ndata: {\"a\":1}\n\n");
        let comment = Bytes::from(":\n\n");
        assert_eq!(rewrite_event(comment.clone()), comment);
    }
}
