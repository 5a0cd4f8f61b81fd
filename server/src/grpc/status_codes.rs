//! Status codes as gRPC's status-code table defines them, where tonic
//! answers before a handler runs. tonic refuses a request message over the
//! server's decoding limit with OUT_OF_RANGE; the table says
//! RESOURCE_EXHAUSTED ("a message larger than the configured limit"), and
//! that is what clients and the contract expect for oversized input.
//!
//! The codes errand's own errors map to are in [`super::convert`].
use tonic::{Status, body::Body, codegen::http};

use crate::error::Error;

/// How tonic words a request message over the decoding limit.
const DECODE_TOO_LARGE: &str = "Error, decoded message length too large";

/// tonic's decode-length error as errand's RESOURCE_EXHAUSTED, saying the
/// sizes and what to do; `None` for any other status.
pub fn oversized(status: &Status) -> Option<Error> {
    if status.code() != tonic::Code::OutOfRange || !status.message().starts_with(DECODE_TOO_LARGE) {
        return None;
    }
    // "...: found 2097157 bytes, the limit is: 1048576 bytes"
    let numbers: Vec<&str> = status
        .message()
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .collect();
    let sizes = match numbers[..] {
        [found, limit] => format!("is {found} bytes, the server's limit is {limit}"),
        _ => "is over the server's limit".to_string(),
    };
    Some(Error::ResourceExhausted(format!(
        "the request message {sizes} (--max-message-bytes): pass large data by reference (a URL or a path)"
    )))
}

/// The server layer that applies [`oversized`] to every trailers-only
/// response: unary and server-streaming requests, and a worker's first
/// message (the handlers map later messages themselves).
pub fn layer() -> tower::util::MapResponseLayer<fn(http::Response<Body>) -> http::Response<Body>> {
    tower::util::MapResponseLayer::new(rewrite as fn(_) -> _)
}

fn rewrite(mut response: http::Response<Body>) -> http::Response<Body> {
    let mapped = Status::from_header_map(response.headers())
        .as_ref()
        .and_then(oversized);
    if let Some(err) = mapped {
        let headers = response.headers_mut();
        headers.remove(Status::GRPC_STATUS_DETAILS);
        // Overwrites grpc-status and grpc-message.
        let _ = Status::from(err).add_header(headers);
    }
    response
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
}
