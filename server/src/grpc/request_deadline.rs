//! The gRPC listener's request-body deadline ([`crate::net::body_deadline`]):
//! every RPC but a worker's `Connect` takes one message, which must arrive
//! within `--idle-timeout-ms` of its headers; past it the call ends
//! DEADLINE_EXCEEDED.
use std::time::Duration;

use tonic::{Status, body::Body, codegen::http};

use crate::net::body_deadline::{BoxError, Deadlined, overdue_text};

/// The one RPC whose request is a stream of messages, for its whole life.
const STREAMING_REQUEST: &str = "/errand.v1.WorkerService/Connect";

/// The layer (`tower::util::MapRequestLayer`): each request's body but a
/// worker stream's must end within `limit` of its headers.
pub fn layer(
    limit: Duration,
) -> tower::util::MapRequestLayer<impl Fn(http::Request<Body>) -> http::Request<Body> + Clone> {
    tower::util::MapRequestLayer::new(move |req: http::Request<Body>| {
        if req.uri().path() == STREAMING_REQUEST {
            return req;
        }
        req.map(|body| Body::new(Deadlined::new(body, limit, deadline_exceeded)))
    })
}

/// DEADLINE_EXCEEDED, which tonic passes on as the call's status.
fn deadline_exceeded(limit: Duration) -> BoxError {
    Box::new(Status::deadline_exceeded(overdue_text(limit)))
}
