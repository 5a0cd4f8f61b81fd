//! Strangers at the door: /metrics needs its token when one is set, and a
//! peer that keeps sending wrong tokens is counted, logged and slowed.
use errand_client::pb;
use errand_tests::*;
use tonic::Code;

const METRICS_TOKEN: &str = "a-metrics-token-of-some-length";

#[tokio::test]
async fn metrics_need_the_metrics_token_when_one_is_set() {
    let server = Server::start(&[
        "--metrics-listen",
        "127.0.0.1:0",
        "--metrics-token",
        METRICS_TOKEN,
    ])
    .await;
    let url = server.metrics_url.clone().expect("the metrics line");
    for token in [None, Some("wrong"), Some("a-metrics-token-of-some-lengt")] {
        let (head, body) = within("a scrape", http_get_as(&url, token)).await;
        assert!(head.contains(" 401 "), "{token:?}: {head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("www-authenticate: bearer"),
            "{head}"
        );
        assert!(!body.contains("errand_"), "{body}");
    }
    let (head, body) = within("a scrape", http_get_as(&url, Some(METRICS_TOKEN))).await;
    assert!(head.contains(" 200 "), "{head}");
    assert!(body.contains("errand_workers_connected"), "{body}");
}

#[tokio::test]
async fn wrong_tokens_are_counted_per_peer_and_a_peer_that_keeps_failing_is_told_to_wait() {
    const BUDGET: usize = 5;
    let tokens = Tokens::new();
    let agent = tokens.add(&["--role", "agent", "--tenant", "acme"]).await;
    let mut flags = tokens.flag().to_vec();
    flags.extend(
        [
            "--metrics-listen",
            "127.0.0.1:0",
            "--auth-failures-per-minute",
            "5",
        ]
        .map(String::from),
    );
    let server = Server::start(&strs(&flags)).await;
    let wrong = "ert_0000000000000000000000000000000000000000000000000000000000000000";
    let mut raw = server.raw_as(Some(wrong));
    let mut codes = Vec::new();
    for _ in 0..BUDGET + 3 {
        let err = raw
            .list_tools(pb::ListToolsRequest::default())
            .await
            .expect_err("a wrong token");
        if err.code() == Code::ResourceExhausted {
            let wait: u64 = err
                .metadata()
                .get("retry-after-ms")
                .expect("retry-after-ms")
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(wait > 0 && wait <= 12_000, "{wait}");
            assert!(err.message().contains("retry in"), "{}", err.message());
        }
        codes.push(err.code());
    }
    assert_eq!(codes[..BUDGET], [Code::Unauthenticated; BUDGET]);
    assert_eq!(codes[BUDGET..], [Code::ResourceExhausted; 3]);
    // A valid token from the same address is not locked out.
    server.client_as(&agent).await.list_tools().await.unwrap();
    let text = http_get(server.metrics_url.as_ref().unwrap()).await;
    let line = format!(
        r#"errand_auth_failures_total{{peer="127.0.0.1"}} {}"#,
        BUDGET + 3
    );
    assert!(text.contains(&line), "{text}");
}

/// The head of one HTTP/1.0 POST of a JSON-RPC ping to `url`
/// (`http://ADDR/PATH`) with `authorization` when given, lower-cased.
async fn post_head(url: &str, authorization: Option<&str>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (addr, path) = rest.split_once('/').unwrap_or((rest, ""));
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let req = format!(
        "POST /{path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut response = String::new();
    within("an HTTP answer", conn.read_to_string(&mut response))
        .await
        .unwrap();
    let (head, _) = response.split_once("\r\n\r\n").expect("an HTTP response");
    head.to_ascii_lowercase()
}

#[tokio::test]
async fn mcp_and_a2a_401s_name_the_bearer_scheme() {
    let tokens = Tokens::new();
    tokens.add(&["--role", "agent", "--tenant", "acme"]).await;
    let mut flags = tokens.flag().to_vec();
    flags.extend(["--mcp-listen", "127.0.0.1:0", "--a2a-listen", "127.0.0.1:0"].map(String::from));
    let server = Server::start(&strs(&flags)).await;
    let mcp = server.mcp_url.clone().expect("the MCP address");
    let a2a = format!(
        "{}/jsonrpc",
        server.a2a_url.clone().expect("the A2A address")
    );
    // RFC 9110 section 15.5.2 (and the MCP authorization spec): a 401
    // carries the challenge, without a token, with a wrong one, with
    // another scheme.
    for url in [&mcp, &a2a] {
        for authorization in [None, Some("Bearer ert_wrong"), Some("Basic abc")] {
            let head = post_head(url, authorization).await;
            assert!(head.contains(" 401 "), "{url} {authorization:?}: {head}");
            assert!(
                head.contains("\r\nwww-authenticate: bearer"),
                "{url} {authorization:?}: {head}"
            );
        }
    }
}

/// The metrics listener keeps the budget every other listener keeps: wrong
/// tokens count in errand_auth_failures_total, and past the budget a scrape
/// gets 429 with Retry-After instead of 401; the right token still passes.
#[tokio::test]
async fn wrong_metrics_tokens_are_counted_and_throttled() {
    const BUDGET: usize = 3;
    let server = Server::start(&[
        "--metrics-listen",
        "127.0.0.1:0",
        "--metrics-token",
        METRICS_TOKEN,
        "--auth-failures-per-minute",
        "3",
    ])
    .await;
    let url = server.metrics_url.clone().expect("the metrics line");
    let mut heads = Vec::new();
    for _ in 0..BUDGET + 2 {
        let (head, _) = within("a scrape", http_get_as(&url, Some("wrong"))).await;
        heads.push(head);
    }
    for head in &heads[..BUDGET] {
        assert!(head.contains(" 401 "), "{head}");
    }
    for head in &heads[BUDGET..] {
        assert!(head.contains(" 429 "), "{head}");
        assert!(
            head.to_ascii_lowercase().contains("retry-after: "),
            "{head}"
        );
    }
    let (head, body) = within("a scrape", http_get_as(&url, Some(METRICS_TOKEN))).await;
    assert!(head.contains(" 200 "), "{head}");
    let line = format!(
        r#"errand_auth_failures_total{{peer="127.0.0.1"}} {}"#,
        BUDGET + 2
    );
    assert!(body.lines().any(|l| l == line), "no {line:?} in\n{body}");
}
