//! What every listener makes of an `Authorization` header and a `Host`:
//! the bearer scheme is read in any case (RFC 9110 section 11.1) and a
//! wrong one is named in the refusal, on gRPC, MCP, A2A, the dashboard and
//! metrics alike; the metrics listener keeps the `Host` allow-list the
//! other HTTP listeners keep (against DNS rebinding).
use errand_client::pb;
use errand_tests::*;
use tonic::{Code, metadata::MetadataValue};

const METRICS_TOKEN: &str = "a-metrics-token-of-some-length";

/// One HTTP/1.0 request to `url` (`http://ADDR/PATH`) with `Host: host`
/// and `authorization` when given; the status and the body.
async fn request(
    method: &str,
    url: &str,
    host: Option<&str>,
    authorization: Option<&str>,
) -> (u16, String) {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (addr, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = authorization {
        headers.push(("Authorization", a));
    }
    http_request(addr, host, method, &format!("/{path}"), &headers, "{}").await
}

/// `ListTools` on the gRPC port with `authorization` metadata as given.
async fn list_tools_with(server: &Server, authorization: &str) -> Result<(), tonic::Status> {
    let channel = errand_client::endpoint_with(&server.addr, &Default::default())
        .unwrap()
        .connect_lazy();
    let value: MetadataValue<_> = authorization.parse().unwrap();
    let mut raw = pb::tool_service_client::ToolServiceClient::with_interceptor(
        channel,
        move |mut r: tonic::Request<()>| {
            r.metadata_mut().insert("authorization", value.clone());
            Ok(r)
        },
    );
    raw.list_tools(pb::ListToolsRequest::default())
        .await
        .map(|_| ())
}

#[tokio::test]
async fn every_listener_reads_the_bearer_scheme_in_any_case_and_names_a_wrong_one() {
    let tokens = Tokens::new();
    let agent = tokens.add(&["--role", "agent", "--tenant", "acme"]).await;
    let mut flags = tokens.flag().to_vec();
    for (flag, value) in [
        ("--ui-listen", "127.0.0.1:0"),
        ("--mcp-listen", "127.0.0.1:0"),
        ("--a2a-listen", "127.0.0.1:0"),
        ("--metrics-listen", "127.0.0.1:0"),
        ("--metrics-token", METRICS_TOKEN),
    ] {
        flags.extend([flag.to_string(), value.to_string()]);
    }
    let server = Server::start(&strs(&flags)).await;
    let ui = format!("{}api/tasks", server.ui_url.clone().unwrap());
    let metrics = server.metrics_url.clone().unwrap();
    let mcp = server.mcp_url.clone().unwrap();
    let a2a = format!("{}/jsonrpc", server.a2a_url.clone().unwrap());

    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let auth = format!("{scheme} {agent}");
        let (status, body) = request("GET", &ui, None, Some(&auth)).await;
        assert_eq!(status, 200, "dashboard, {scheme}: {body}");
        let (status, body) = request(
            "GET",
            &metrics,
            None,
            Some(&format!("{scheme} {METRICS_TOKEN}")),
        )
        .await;
        assert_eq!(status, 200, "metrics, {scheme}: {body}");
        for url in [&mcp, &a2a] {
            let (status, body) = request("POST", url, None, Some(&auth)).await;
            assert_ne!(status, 401, "{url}, {scheme}: {body}");
        }
        list_tools_with(&server, &auth).await.unwrap();
    }

    // A wrong scheme is named, and the one to use said, on every listener
    // (GET is what the dashboard's API and /metrics answer).
    for (method, url) in [
        ("GET", &ui),
        ("GET", &metrics),
        ("POST", &mcp),
        ("POST", &a2a),
    ] {
        let (status, body) = request(method, url, None, Some("Basic YTpi")).await;
        assert_eq!(status, 401, "{url}: {body}");
        assert!(
            body.contains("scheme") && body.contains("Basic") && body.contains("Bearer"),
            "{url}: {body}"
        );
    }
    let err = list_tools_with(&server, "Basic YTpi").await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(
        err.message().contains("\"Basic\"") && err.message().contains("Bearer"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn metrics_answer_only_the_hosts_they_know() {
    let server = Server::start(&["--metrics-listen", "127.0.0.1:0"]).await;
    let metrics = server.metrics_url.clone().unwrap();
    let (status, body) = request("GET", &metrics, Some("attacker.example"), None).await;
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("errand_"), "{body}");
    assert!(body.contains("--metrics-allowed-host"), "{body}");
    for host in ["localhost:9466", "127.0.0.1"] {
        let (status, body) = request("GET", &metrics, Some(host), None).await;
        assert_eq!(status, 200, "{host}: {body}");
    }

    // Names given with --metrics-allowed-host replace the loopback ones;
    // the bound address stays allowed, as the dashboard's does.
    let server = Server::start(&[
        "--metrics-listen",
        "127.0.0.1:0",
        "--metrics-allowed-host",
        "prometheus-target.example,Other.Example",
    ])
    .await;
    let metrics = server.metrics_url.clone().unwrap();
    for host in ["prometheus-target.example:9466", "other.example"] {
        let (status, body) = request("GET", &metrics, Some(host), None).await;
        assert_eq!(status, 200, "{host}: {body}");
    }
    let bound = metrics
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap();
    let (status, body) = request("GET", &metrics, Some(bound), None).await;
    assert_eq!(status, 200, "{bound}: {body}");
    let (status, _) = request("GET", &metrics, Some("attacker.example"), None).await;
    assert_eq!(status, 403);

    // With --metrics-token a page cannot read them whatever its name (it
    // has no token): a scrape by any name (a compose service's, say) is
    // answered, and without the token refused 401.
    let server = Server::start(&[
        "--metrics-listen",
        "127.0.0.1:0",
        "--metrics-token",
        METRICS_TOKEN,
    ])
    .await;
    let metrics = server.metrics_url.clone().unwrap();
    let auth = format!("Bearer {METRICS_TOKEN}");
    let (status, body) = request("GET", &metrics, Some("errand:9466"), Some(&auth)).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = request("GET", &metrics, Some("errand:9466"), None).await;
    assert_eq!(status, 401);
}
