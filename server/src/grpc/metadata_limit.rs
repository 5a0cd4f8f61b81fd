//! The gRPC listener's bound on a call's metadata (`--max-header-list-bytes`),
//! answered as a gRPC status. HTTP/2 itself can only refuse a header list
//! over its limit with an HTTP 431 (gRPC clients read it as UNKNOWN) or, for
//! a block sent in several frames, by closing the connection (UNAVAILABLE,
//! which clients retry). So the HTTP/2 layer takes up to
//! [`HARD_LIMIT_FACTOR`] times the limit, and this layer refuses a call
//! between the two with RESOURCE_EXHAUSTED, its size and the limit, before
//! any handler sees it.
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use tonic::{Status, body::Body, codegen::http};

use crate::error::Error;

/// How many times `--max-header-list-bytes` the HTTP/2 layer takes (and
/// advertises as SETTINGS_MAX_HEADER_LIST_SIZE), so that a call somewhat
/// over the limit gets a gRPC status. Past it, HTTP/2's own refusal.
pub const HARD_LIMIT_FACTOR: u32 = 4;

/// What the HTTP/2 layer takes for a limit of `limit` bytes.
pub fn hard_limit(limit: u32) -> u32 {
    limit.saturating_mul(HARD_LIMIT_FACTOR)
}

/// A header list's size as HTTP/2 counts it (RFC 9113, 6.5.2): each field's
/// name and value in bytes, uncompressed, plus 32, pseudo-headers included.
pub fn header_list_bytes<B>(req: &http::Request<B>) -> usize {
    const FIELD: usize = 32;
    let uri = req.uri();
    let pseudo = [
        (":method".len(), req.method().as_str().len()),
        (":scheme".len(), uri.scheme_str().map_or(0, str::len)),
        (
            ":authority".len(),
            uri.authority().map_or(0, |a| a.as_str().len()),
        ),
        (
            ":path".len(),
            uri.path_and_query().map_or(0, |p| p.as_str().len()),
        ),
    ];
    let pseudo: usize = pseudo.iter().map(|(n, v)| n + v + FIELD).sum();
    let fields: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + FIELD)
        .sum();
    pseudo + fields
}

/// The layer: refuses a call whose header list is over `limit` bytes.
#[derive(Debug, Clone, Copy)]
pub struct MetadataLimit {
    limit: usize,
}

impl MetadataLimit {
    /// `limit`: `--max-header-list-bytes`, in bytes.
    pub fn new(limit: u32) -> Self {
        Self {
            limit: limit as usize,
        }
    }
}

impl<S> tower::Layer<S> for MetadataLimit {
    type Service = Bounded<S>;

    fn layer(&self, inner: S) -> Bounded<S> {
        Bounded {
            inner,
            limit: self.limit,
        }
    }
}

/// The service [`MetadataLimit`] wraps around the gRPC routes.
#[derive(Debug, Clone)]
pub struct Bounded<S> {
    inner: S,
    limit: usize,
}

impl<S> tower::Service<http::Request<Body>> for Bounded<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Either<Ready<Result<http::Response<Body>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let size = header_list_bytes(&req);
        if size <= self.limit {
            return Either::Right(self.inner.call(req));
        }
        let err = Error::TooLarge(format!(
            "the call's metadata (its HTTP/2 header list: names, values and 32 bytes per \
             entry) is {size} bytes, the server's limit is {} (--max-header-list-bytes): \
             send less metadata (data belongs in the request message), or raise the limit",
            self.limit
        ));
        Either::Left(ready(Ok(Status::from(err).into_http())))
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    fn request(value_bytes: usize) -> http::Request<Body> {
        http::Request::builder()
            .method("POST")
            .uri("http://localhost:7070/errand.v1.ToolService/ListTools")
            .header("x-big", "a".repeat(value_bytes))
            .body(Body::empty())
            .unwrap()
    }

    #[test]
    fn counts_names_values_and_32_per_field_pseudo_headers_included() {
        let req = request(100);
        let expected = (7 + 4 + 32)               // :method POST
            + (7 + 4 + 32)                        // :scheme http
            + (10 + 14 + 32)                      // :authority localhost:7070
            + (5 + 32 + 32)                       // :path
            + (5 + 100 + 32); // x-big
        assert_eq!(header_list_bytes(&req), expected);
    }

    #[tokio::test]
    async fn a_call_over_the_limit_gets_resource_exhausted_and_never_reaches_the_routes() {
        let routes = tower::service_fn(|_req: http::Request<Body>| async {
            Ok::<_, Infallible>(http::Response::new(Body::empty()))
        });
        let mut svc = tower::Layer::layer(&MetadataLimit::new(1024), routes);
        let small = tower::Service::call(&mut svc, request(100)).await.unwrap();
        assert!(
            Status::from_header_map(small.headers()).is_none(),
            "passed on"
        );
        let big = tower::Service::call(&mut svc, request(2000)).await.unwrap();
        let status = Status::from_header_map(big.headers()).expect("a trailers-only status");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        let size = header_list_bytes(&request(2000));
        assert!(
            status
                .message()
                .contains(&format!("is {size} bytes, the server's limit is 1024")),
            "{}",
            status.message()
        );
    }
}
