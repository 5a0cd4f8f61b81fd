//! A refusal for lack of room (too many pending tasks, a rate limit) as each
//! A2A binding says it: JSON-RPC error -32000 ([`super::convert::SERVER_BUSY`]),
//! HTTP+JSON 429 with status `RESOURCE_EXHAUSTED`, gRPC `RESOURCE_EXHAUSTED`.
//! The A2A SDK knows no such error: it answers any code outside A2A's list
//! as a server fault (HTTP 500, gRPC INTERNAL or UNKNOWN), which clients
//! would not retry later. So the error carries a mark in its `ErrorInfo`
//! metadata ([`mark`]), which the SDK keeps on every binding, and
//! [`layer`] gives the HTTP+JSON and gRPC answers that carry it their code
//! (and their `ErrorInfo` the reason `RESOURCE_EXHAUSTED`).
use std::collections::HashMap;

use a2a::{A2AError, errordetails::TypedDetail};
use axum::{
    body::Body,
    extract::Request,
    http::{StatusCode, header},
    middleware::Next,
    response::Response,
};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::grpc::status_codes;

/// The `ErrorInfo` metadata key of the mark, and its value.
const KEY: &str = "errand.status";
const BUSY: &str = "RESOURCE_EXHAUSTED";

/// Most bytes of an error body read to look for the mark.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// `err` marked as a refusal for lack of room.
pub fn mark(err: A2AError) -> A2AError {
    let metadata = HashMap::from([(KEY.to_string(), BUSY.to_string())]);
    err.with_details(vec![TypedDetail::error_info(
        BUSY,
        a2a::errordetails::PROTOCOL_DOMAIN,
        Some(metadata),
    )])
}

/// Middleware (`axum::middleware::from_fn`): a marked HTTP+JSON error
/// becomes 429 `RESOURCE_EXHAUSTED`, a marked gRPC status
/// `RESOURCE_EXHAUSTED`. Looks only at error answers (HTTP 500, or a gRPC
/// status in the headers), so the calls that succeed pay nothing.
pub async fn layer(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    if status_codes::is_status(response.headers()) {
        status_codes::exhausted_if_marked(response.headers_mut(), KEY, BUSY);
        return response;
    }
    if response.status() == StatusCode::INTERNAL_SERVER_ERROR && is_json(&response) {
        return rest(response).await;
    }
    response
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.starts_with("application/json") || v.starts_with("application/problem+json")
        })
}

async fn rest(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = http_body_util::Limited::new(body, MAX_ERROR_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
    else {
        // Cannot happen for the SDK's small error bodies; the answer stays
        // a 500 without its body rather than a wrong one.
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::empty());
    };
    let Ok(mut doc) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    if !rest_marked(&doc) {
        return Response::from_parts(parts, Body::from(bytes));
    }
    doc["error"]["code"] = Value::from(StatusCode::TOO_MANY_REQUESTS.as_u16());
    doc["error"]["status"] = Value::from(BUSY);
    if let Some(details) = doc["error"]["details"].as_array_mut() {
        for d in details.iter_mut().filter(|d| d["metadata"][KEY] == BUSY) {
            d["reason"] = Value::from(BUSY);
        }
    }
    parts.status = StatusCode::TOO_MANY_REQUESTS;
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(doc.to_string()))
}

/// Whether an HTTP+JSON error body carries the mark in a detail's metadata.
fn rest_marked(doc: &Value) -> bool {
    doc["error"]["details"]
        .as_array()
        .is_some_and(|details| details.iter().any(|d| d["metadata"][KEY] == BUSY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_rides_in_json_rpc_data() {
        let err = mark(A2AError::new(-32000, "10 pending tasks: the limit"));
        let rpc = serde_json::to_value(err.to_jsonrpc_error()).unwrap();
        assert_eq!(rpc["code"], -32000);
        assert!(rpc.to_string().contains(KEY), "{rpc}");
    }

    #[test]
    fn a_marked_rest_error_is_found_in_its_details() {
        let body = serde_json::json!({"error": {"code": 500, "status": "INTERNAL", "message": "m",
            "details": [{"@type": "x", "reason": "INTERNAL_ERROR", "metadata": {KEY: BUSY}}]}});
        assert!(rest_marked(&body));
        let plain = serde_json::json!({"error": {"code": 500, "details": [{"metadata": {}}]}});
        assert!(!rest_marked(&plain));
    }
}
