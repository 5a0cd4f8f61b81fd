//! Status codes as gRPC's status-code table defines them, where tonic
//! answers outside errand's handlers. tonic refuses a message over the
//! server's limit (a request it decodes, a response it encodes) with
//! OUT_OF_RANGE; the table says RESOURCE_EXHAUSTED ("a message larger than
//! the configured limit"), and that is what clients and the contract expect.
//! A request that is not valid protobuf gets INTERNAL from tonic; it is the
//! client's error, INVALID_ARGUMENT.
//!
//! The codes errand's own errors map to are in [`super::convert`].
use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::Frame;
use tonic::{Status, body::Body, codegen::http};

use crate::error::Error;

/// How tonic words a request message over the decoding limit.
const DECODE_TOO_LARGE: &str = "Error, decoded message length too large";
/// How tonic words a response message over the encoding limit.
const ENCODE_TOO_LARGE: &str = "Error, encoded message length too large";

/// How prost words a message that is not valid protobuf for its type
/// (tonic answers it as INTERNAL).
const UNDECODABLE: &str = "failed to decode Protobuf message";

/// Most bytes of prost's decode error kept in the answer.
const DECODE_DETAIL_BYTES: usize = 512;

/// A status tonic made without errand's handlers, as the code gRPC's table
/// gives it: [`oversized`] or [`undecodable`]; `None` for any other status.
pub fn refused(status: &Status) -> Option<Error> {
    oversized(status).or_else(|| undecodable(status))
}

/// A request message tonic could not decode (truncated, wrong wire types,
/// a string that is not UTF-8) as INVALID_ARGUMENT: the client sent it, and
/// INTERNAL would tell it to retry. Keeps prost's words, which name the
/// field; `None` for any other status.
pub fn undecodable(status: &Status) -> Option<Error> {
    if status.code() != tonic::Code::Internal || !status.message().starts_with(UNDECODABLE) {
        return None;
    }
    Some(Error::invalid(format!(
        "the message is not valid protobuf for this RPC ({}): check that the client is \
         generated from proto/errand/v1/errand.proto and that every string is UTF-8",
        crate::error::cut(status.message(), DECODE_DETAIL_BYTES)
    )))
}

/// tonic's message-length errors as errand's RESOURCE_EXHAUSTED, saying the
/// sizes and what to do; `None` for any other status.
pub fn oversized(status: &Status) -> Option<Error> {
    let (what, hint) = match too_large(status)? {
        Direction::Request => ("request", "pass large data by reference (a URL or a path)"),
        Direction::Response => ("response", "ask for less at once, or raise the limit"),
    };
    let sizes = sizes(status);
    Some(Error::TooLarge(format!(
        "the {what} message {sizes} (--max-message-bytes): {hint}"
    )))
}

/// [`refused`] for a worker's Register that is over the message limit:
/// what to do is register fewer or smaller tools, not pass data by
/// reference. `None` for any other status.
pub fn refused_register(status: &Status) -> Option<Error> {
    if too_large(status)? != Direction::Request {
        return None;
    }
    Some(Error::TooLarge(format!(
        "the Register message {} (--max-message-bytes): serve fewer tools per worker (split \
         them over several workers) or shorten their descriptions and schemas",
        sizes(status)
    )))
}

/// [`refused`] for a message a worker sent on its stream, which then ends:
/// says what was wrong and what became of the worker's tasks. `None` for any
/// other status (the worker went away: nobody to tell).
pub fn refused_worker_message(status: &Status) -> Option<Error> {
    if let Some(e) = undecodable(status) {
        return Some(Error::invalid(format!(
            "{}; the stream ends and this worker's tasks go to another attempt",
            e.into_message()
        )));
    }
    if too_large(status)? != Direction::Request {
        return None;
    }
    let sizes = sizes(status);
    Some(Error::TooLarge(format!(
        "a message from this worker {sizes} (--max-message-bytes, sent in \
         Registered.max_message_bytes), so its stream ends and its tasks go to another \
         attempt: keep every message within the limit (send a result that does not fit \
         as a failure with code \"invalid_result\", and keep progress reports small)"
    )))
}

/// `err` as a trailers-only gRPC response, for an HTTP layer that refuses a
/// gRPC request before any service runs (A2A's gRPC binding): the status
/// a gRPC client reads, with `retry-after-ms` where `err` says when.
pub fn refusal_response<B: Default>(err: Error) -> http::Response<B> {
    Status::from(err).into_http()
}

/// Whether `headers` end a gRPC call (a trailers-only answer: an error
/// before any message).
pub fn is_status(headers: &http::HeaderMap) -> bool {
    headers.contains_key("grpc-status")
}

/// Rewrites the trailers-only gRPC error in `headers` to RESOURCE_EXHAUSTED
/// when its `ErrorInfo` metadata holds `key` = `value` (a mark a front
/// end's SDK keeps, see [`crate::a2a::busy`]), with `value` as the
/// `ErrorInfo` reason; leaves any other status alone.
pub fn exhausted_if_marked(headers: &mut http::HeaderMap, key: &str, value: &str) {
    use tonic_types::StatusExt;
    let Some(status) = Status::from_header_map(headers) else {
        return;
    };
    let Some(info) = status.get_details_error_info() else {
        return;
    };
    if info.metadata.get(key).is_none_or(|v| v != value) {
        return;
    }
    let busy = Status::with_error_details(
        tonic::Code::ResourceExhausted,
        status.message(),
        tonic_types::ErrorDetails::with_error_info(value, info.domain, info.metadata),
    );
    // Overwrites grpc-status, grpc-message and grpc-status-details-bin.
    if busy.add_header(headers).is_err() {
        let code = tonic::Code::ResourceExhausted as i32;
        headers.insert("grpc-status", http::HeaderValue::from(code));
    }
}

#[derive(Debug, PartialEq)]
enum Direction {
    Request,
    Response,
}

/// Which of tonic's message-length errors `status` is, if one.
fn too_large(status: &Status) -> Option<Direction> {
    if status.code() != tonic::Code::OutOfRange {
        return None;
    }
    if status.message().starts_with(DECODE_TOO_LARGE) {
        Some(Direction::Request)
    } else if status.message().starts_with(ENCODE_TOO_LARGE) {
        Some(Direction::Response)
    } else {
        None
    }
}

/// "is N bytes, the server's limit is M" from tonic's words
/// ("...: found 2097157 bytes, the limit is: 1048576 bytes").
fn sizes(status: &Status) -> String {
    let numbers: Vec<&str> = status
        .message()
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .collect();
    match numbers[..] {
        [found, limit] => format!("is {found} bytes, the server's limit is {limit}"),
        _ => "is over the server's limit".to_string(),
    }
}

/// The server layer that applies [`oversized`] to every response: to the
/// headers of a trailers-only one (a request refused before its handler
/// ran) and to the trailers that end a body (a response message over the
/// limit). The worker stream maps a worker's later messages itself.
pub fn layer() -> tower::util::MapResponseLayer<fn(http::Response<Body>) -> http::Response<Body>> {
    tower::util::MapResponseLayer::new(rewrite as fn(_) -> _)
}

fn rewrite(mut response: http::Response<Body>) -> http::Response<Body> {
    remap(response.headers_mut());
    response.map(|body| Body::new(MapTrailers(body)))
}

/// Rewrites the status in `headers` (response headers or trailers) when it
/// is one of tonic's message-length errors.
fn remap(headers: &mut http::HeaderMap) {
    if let Some(err) = Status::from_header_map(headers).as_ref().and_then(refused) {
        headers.remove(Status::GRPC_STATUS_DETAILS);
        // Overwrites grpc-status and grpc-message.
        let _ = Status::from(err).add_header(headers);
    }
}

/// A response body whose trailers pass through [`remap`].
struct MapTrailers(Body);

impl http_body::Body for MapTrailers {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        Pin::new(&mut self.0).poll_frame(cx).map(|frame| {
            frame.map(|frame| {
                frame.map(|frame| match frame.into_trailers() {
                    Ok(mut trailers) => {
                        remap(&mut trailers);
                        Frame::trailers(trailers)
                    }
                    Err(data) => data,
                })
            })
        })
    }

    fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.0)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::Body::size_hint(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn only_the_decode_length_error_is_mapped() {
        let tonic_says = Status::out_of_range(
            "Error, decoded message length too large: found 2097157 bytes, the limit is: 1048576 bytes",
        );
        let s = Status::from(oversized(&tonic_says).unwrap());
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert!(
            s.message()
                .contains("is 2097157 bytes, the server's limit is 1048576"),
            "{}",
            s.message()
        );
        assert!(oversized(&Status::out_of_range("seq is past the end")).is_none());
        assert!(oversized(&Status::invalid_argument(DECODE_TOO_LARGE)).is_none());
    }

    #[test]
    fn a_worker_is_told_its_limit_and_what_became_of_its_tasks() {
        let tonic_says = Status::out_of_range(format!(
            "{DECODE_TOO_LARGE}: found 70000 bytes, the limit is: 65536 bytes"
        ));
        let s = Status::from(refused_worker_message(&tonic_says).unwrap());
        assert_eq!(s.code(), Code::ResourceExhausted);
        for part in [
            "is 70000 bytes, the server's limit is 65536",
            "Registered.max_message_bytes",
            "another attempt",
            "invalid_result",
        ] {
            assert!(s.message().contains(part), "{part}: {}", s.message());
        }
        let encode = Status::out_of_range(format!("{ENCODE_TOO_LARGE}: found 9 bytes"));
        assert!(refused_worker_message(&encode).is_none());
        assert!(refused_worker_message(&Status::cancelled("gone")).is_none());
    }

    #[test]
    fn a_message_that_is_not_protobuf_is_the_clients_error() {
        // prost's words, as tonic answers them.
        let tonic_says = Status::internal(
            "failed to decode Protobuf message: SubmitToolRequest.session_id: invalid string \
             value: data is not UTF-8 encoded",
        );
        let s = Status::from(refused(&tonic_says).unwrap());
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(
            s.message().contains("SubmitToolRequest.session_id"),
            "{}",
            s.message()
        );
        let out = rewrite(tonic_says.clone().into_http());
        let s = Status::from_header_map(out.headers()).unwrap();
        assert_eq!(s.code(), Code::InvalidArgument);
        let w = Status::from(refused_worker_message(&tonic_says).unwrap());
        assert_eq!(w.code(), Code::InvalidArgument);
        assert!(w.message().contains("another attempt"), "{}", w.message());
        // Bounded whatever prost says.
        let long = Status::internal(format!("{UNDECODABLE}: {}", "x".repeat(100_000)));
        assert!(Status::from(refused(&long).unwrap()).message().len() < 1024);
        // The server's own faults stay INTERNAL.
        assert!(refused(&Status::internal("the store failed")).is_none());
        assert!(refused_worker_message(&Status::internal("the store failed")).is_none());
    }

    #[test]
    fn a_marked_a2a_error_becomes_resource_exhausted_and_others_stay() {
        use tonic_types::StatusExt;
        let (key, value) = ("errand.status", "RESOURCE_EXHAUSTED");
        let marked = crate::a2a::busy::mark(a2a::A2AError::new(-32000, "10 pending tasks"));
        // The A2A SDK's own conversion, which keeps ErrorInfo metadata.
        let status = a2a_grpc::errors::a2a_error_to_status(&marked);
        let mut headers = status.into_http::<Body>().into_parts().0.headers;
        assert!(is_status(&headers));
        exhausted_if_marked(&mut headers, key, value);
        let s = Status::from_header_map(&headers).unwrap();
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(s.get_details_error_info().unwrap().reason, value);
        assert!(s.message().contains("10 pending"), "{}", s.message());
        let other = a2a_grpc::errors::a2a_error_to_status(&a2a::A2AError::internal("down"));
        let mut headers = other.clone().into_http::<Body>().into_parts().0.headers;
        exhausted_if_marked(&mut headers, key, value);
        assert_eq!(
            Status::from_header_map(&headers).unwrap().code(),
            other.code()
        );
    }

    #[test]
    fn trailers_only_responses_are_rewritten() {
        let tonic_says = Status::out_of_range(format!(
            "{DECODE_TOO_LARGE}: found 9 bytes, the limit is: 4 bytes"
        ));
        let out = rewrite(tonic_says.into_http());
        let s = Status::from_header_map(out.headers()).unwrap();
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert!(s.message().contains("is 9 bytes"), "{}", s.message());
        let other = rewrite(Status::not_found("no task").into_http());
        let s = Status::from_header_map(other.headers()).unwrap();
        assert_eq!((s.code(), s.message()), (Code::NotFound, "no task"));
    }

    #[tokio::test]
    async fn trailers_that_end_a_body_are_rewritten() {
        use http_body_util::BodyExt;
        let mut trailers = http::HeaderMap::new();
        Status::out_of_range(format!(
            "{ENCODE_TOO_LARGE}: found 9 bytes, the limit is: 4 bytes"
        ))
        .add_header(&mut trailers)
        .unwrap();
        let frames = vec![
            Ok::<_, Status>(Frame::data(Bytes::from_static(b"x"))),
            Ok(Frame::trailers(trailers)),
        ];
        let body = Body::new(http_body_util::StreamBody::new(tokio_stream::iter(frames)));
        let out = rewrite(http::Response::new(body));
        let collected = out.into_body().collect().await.unwrap();
        let trailers = collected.trailers().unwrap().clone();
        let s = Status::from_header_map(&trailers).unwrap();
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert!(
            s.message().starts_with("the response message is 9 bytes"),
            "{}",
            s.message()
        );
    }
}
