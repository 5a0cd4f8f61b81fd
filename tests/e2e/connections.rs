//! What one connection, or many, may cost the server: HTTP/2 streams per
//! connection are capped (and advertised), and connections that never speak
//! are closed without locking anyone else out.
use std::time::{Duration, Instant};

use errand_tests::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const SETTINGS: u8 = 0x4;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const GOAWAY: u8 = 0x7;
const REFUSED_STREAM: u32 = 0x7;

struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

async fn write_frame(s: &mut TcpStream, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    let mut head = len.to_be_bytes()[1..].to_vec();
    head.extend([kind, flags]);
    head.extend(stream.to_be_bytes());
    s.write_all(&head).await.unwrap();
    s.write_all(payload).await.unwrap();
}

async fn read_frame(s: &mut TcpStream) -> Frame {
    let mut head = [0u8; 9];
    s.read_exact(&mut head)
        .await
        .expect("a frame from the server");
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0; len];
    s.read_exact(&mut payload).await.unwrap();
    Frame {
        kind: head[3],
        flags: head[4],
        stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
        payload,
    }
}

/// An HPACK header block of literal fields (no indexing, no Huffman).
fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0);
        out.push(name.len() as u8);
        out.extend(name.as_bytes());
        out.push(value.len() as u8);
        out.extend(value.as_bytes());
    }
    out
}

/// A stream the server keeps open: a health Watch whose request never ends.
fn open_watch() -> Vec<u8> {
    header_block(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/grpc.health.v1.Health/Watch"),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ])
}

#[tokio::test]
async fn one_connection_is_refused_streams_past_the_advertised_limit() {
    const LIMIT: u32 = 8;
    let server = Server::start(&[
        "--max-concurrent-streams",
        &LIMIT.to_string(),
        "--max-header-list-bytes",
        "4096",
        "--stream-window-bytes",
        "100000",
    ])
    .await;
    let mut s = TcpStream::connect(&server.addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    write_frame(&mut s, SETTINGS, 0, 0, &[]).await;
    let settings = within("the server's SETTINGS", async {
        loop {
            let f = read_frame(&mut s).await;
            if f.kind == SETTINGS && f.flags & 1 == 0 {
                return f.payload;
            }
        }
    })
    .await;
    let advertised: Vec<(u16, u32)> = settings
        .chunks(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect();
    // SETTINGS_MAX_HEADER_LIST_SIZE: 4x the limit (`grpc::metadata_limit`).
    for expected in [(0x3, LIMIT), (0x4, 100_000), (0x6, 4 * 4096)] {
        assert!(
            advertised.contains(&expected),
            "{expected:?} in {advertised:?}"
        );
    }
    write_frame(&mut s, SETTINGS, 1, 0, &[]).await;
    // END_HEADERS, not END_STREAM: every stream stays open.
    for i in 0..=LIMIT {
        write_frame(&mut s, HEADERS, 0x4, 2 * i + 1, &open_watch()).await;
    }
    let last = 2 * LIMIT + 1;
    let refused = within("the stream past the limit refused", async {
        loop {
            let f = read_frame(&mut s).await;
            assert_ne!(f.kind, GOAWAY, "the whole connection was closed");
            if f.kind == RST_STREAM {
                return (
                    f.stream,
                    u32::from_be_bytes(f.payload[..4].try_into().unwrap()),
                );
            }
        }
    })
    .await;
    assert_eq!(
        refused,
        (last, REFUSED_STREAM),
        "only the stream past the limit"
    );
    // The connection still serves: the others are open and a new client works.
    server.client().await.list_tools().await.unwrap();
}

#[tokio::test]
async fn a_thousand_silent_connections_lock_no_one_out_and_are_closed() {
    const IDLE: usize = 1000;
    const HANDSHAKE: Duration = Duration::from_secs(10);
    let server = Server::start(&[
        "--max-connections-per-peer",
        "2000",
        "--handshake-timeout-ms",
        &HANDSHAKE.as_millis().to_string(),
    ])
    .await;
    let opened = Instant::now();
    let mut silent = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        silent.push(TcpStream::connect(&server.addr).await.unwrap());
    }
    let client = server.client().await;
    client.list_tools().await.expect("a new client is served");
    if opened.elapsed() < HANDSHAKE {
        // None can have been closed yet: they were still open when the client was served.
        for s in &silent {
            // The server's SETTINGS may be there to read; EOF or an error is a close.
            let mut buf = [0u8; 64];
            let r = s.try_read(&mut buf);
            let still_open = match &r {
                Ok(n) => *n > 0,
                Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
            };
            assert!(still_open, "closed before the handshake timeout: {r:?}");
        }
    }
    within("every silent connection closed", async {
        for mut s in silent {
            let mut buf = [0u8; 16];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }
    })
    .await;
    assert!(opened.elapsed() >= HANDSHAKE, "closed before the timeout");
    // The client that spoke is still connected and served.
    client.list_tools().await.unwrap();
}

/// A request body that sends part of its message, then nothing, for ever,
/// while its connection stays alive (HTTP/2 answers pings by itself).
struct HalfSent(Option<bytes::Bytes>);

impl http_body::Body for HalfSent {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, tonic::Status>>> {
        match self.0.take() {
            Some(part) => std::task::Poll::Ready(Some(Ok(http_body::Frame::data(part)))),
            None => std::task::Poll::Pending,
        }
    }
}

/// Nothing waits for ever: a request whose message never arrives whole
/// ends DEADLINE_EXCEEDED after --idle-timeout-ms. It held its stream for
/// as long as the client kept the connection alive.
#[tokio::test]
async fn a_request_whose_message_never_arrives_ends_at_the_idle_timeout() {
    use tower::ServiceExt;
    let server = Server::start(&["--idle-timeout-ms", "1000"]).await;
    // The client pings every 200 ms, so its connection is never idle.
    let channel = errand_client::endpoint(&server.addr)
        .unwrap()
        .http2_keep_alive_interval(Duration::from_millis(200))
        .keep_alive_while_idle(true)
        .connect()
        .await
        .unwrap();
    // A gRPC frame header announcing 100 bytes, and 10 of them.
    let mut part = vec![0u8, 0, 0, 0, 100];
    part.extend_from_slice(&[0u8; 10]);
    let request = tonic::codegen::http::Request::builder()
        .method("POST")
        .uri(format!(
            "http://{}/errand.v1.ToolService/SubmitTool",
            server.addr
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(HalfSent(Some(part.into()))))
        .unwrap();
    let started = std::time::Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(10), channel.oneshot(request))
        .await
        .expect("the server ended the call within 10 s");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "ended after {waited:?}"
    );
    // The server answers and resets the stream whose body it stopped
    // reading: the client sees the answer, or its send cut.
    if let Ok(response) = answer {
        let status = match tonic::Status::from_header_map(response.headers()) {
            Some(s) => s,
            None => {
                let trailers = tokio::time::timeout(
                    Duration::from_secs(10),
                    trailers_of(response.into_body()),
                )
                .await
                .expect("the body ended");
                tonic::Status::from_header_map(&trailers).expect("a grpc-status")
            }
        };
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
        assert!(status.message().contains("--idle-timeout-ms"), "{status:?}");
    }
}

/// The trailers of `body`, once it ends.
async fn trailers_of(mut body: tonic::body::Body) -> tonic::codegen::http::HeaderMap {
    use http_body::Body as _;
    let mut body = std::pin::Pin::new(&mut body);
    loop {
        let frame = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await;
        match frame {
            Some(Ok(frame)) => {
                if let Ok(trailers) = frame.into_trailers() {
                    return trailers;
                }
            }
            _ => return Default::default(),
        }
    }
}

/// The HTTP listeners by the same rule: a POST body trickled a byte at a
/// time (so the connection is never idle) ends at --idle-timeout-ms. MCP
/// and A2A held it for as long as the bytes kept coming.
#[tokio::test]
async fn an_http_body_that_never_ends_is_cut_at_the_idle_timeout() {
    let server = Server::start(&[
        "--idle-timeout-ms",
        "1000",
        "--mcp-listen",
        "127.0.0.1:0",
        "--a2a-listen",
        "127.0.0.1:0",
    ])
    .await;
    let mcp = server.mcp_url.clone().expect("the MCP address");
    let a2a = format!(
        "{}/jsonrpc",
        server.a2a_url.clone().expect("the A2A address")
    );
    for url in [mcp, a2a] {
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_once('/').unwrap();
        let mut conn = TcpStream::connect(host).await.unwrap();
        let head = format!(
            "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nA2A-Version: 1.0\r\n\
             Content-Length: 1000\r\n\r\n{{"
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        let (mut read, mut write) = conn.into_split();
        let started = Instant::now();
        let trickle = tokio::spawn(async move {
            for _ in 0..50 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if write.write_all(b" ").await.is_err() {
                    return;
                }
            }
        });
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(8), read.read_to_end(&mut answer)).await;
        let waited = started.elapsed();
        trickle.abort();
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
            "{url}: ended after {waited:?}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
}

/// The server pings a quiet peer often enough for `--idle-timeout-ms`: an
/// idle timeout below the default 15 s ping interval closes connections
/// whose peer is gone, not live ones holding a quiet stream. (The client
/// pings every 15 s itself, so only the server's pings keep this one open.)
#[tokio::test]
async fn a_quiet_stream_outlives_an_idle_timeout_shorter_than_the_ping_interval() {
    let server = Server::start(&["--idle-timeout-ms", "1500"]).await;
    let client = server.client().await;
    let mut stream = client.completions_once("s", 0).await.unwrap();
    // Three idle timeouts in which neither side has anything to say: the
    // passing time is what is tested.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let mut worker = server.gate_worker(&["t"], 1).await;
    server.client().await.submit("s", "t", "{}").await.unwrap();
    worker.next().await.succeed("1");
    let completion = within("the completion", stream.message())
        .await
        .expect("the quiet stream was cut")
        .expect("a completion");
    assert_eq!(completion.seq, 1);
}
