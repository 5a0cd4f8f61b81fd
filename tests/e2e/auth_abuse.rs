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
