//! Strangers at the door: /metrics needs its token when one is set, and a
//! peer that keeps sending wrong tokens is counted, logged and slowed.
use errand_tests::*;

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
