//! ListWorkers pages (AIP-158): by count and by bytes, so a response always
//! fits the message limit however many tools the workers serve. Trial
//! finding: 500 workers (the cap is 1,024) each serving 256 tools with
//! 64-byte names made an 8.6 MB answer, RESOURCE_EXHAUSTED with no way to
//! ask for less, the `tool` filter too.
use std::collections::BTreeSet;

use errand_client::pb;
use errand_tests::*;
use tonic::Code;

/// Workers kept connected: each one's stream (its Register sent).
struct Workers {
    _streams: Vec<(
        tokio::sync::mpsc::Sender<pb::WorkerMessage>,
        tonic::Streaming<pb::WorkerCommand>,
    )>,
}

/// `n` workers each serving the same `tools` 64-byte names and a 256-byte
/// worker_name, over one connection.
async fn connect_workers(server: &Server, n: usize, tools: usize) -> Workers {
    let channel = errand_client::endpoint(&server.addr)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let tools: Vec<pb::Tool> = (0..tools)
        .map(|i| pb::Tool {
            name: format!("t{i:063}"),
            ..Default::default()
        })
        .collect();
    let mut streams = Vec::new();
    for i in 0..n {
        let mut rpc = pb::worker_service_client::WorkerServiceClient::new(channel.clone())
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(pb::WorkerMessage {
            kind: Some(pb::worker_message::Kind::Register(pb::Register {
                worker_name: format!("{i:0256}"),
                tools: tools.clone(),
                max_concurrency: 1,
            })),
        })
        .await
        .unwrap();
        let mut stream = rpc
            .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let registered = within("Registered", stream.message()).await.unwrap();
        assert!(registered.is_some());
        streams.push((tx, stream));
    }
    Workers { _streams: streams }
}

#[tokio::test]
async fn list_workers_pages_by_count_and_by_bytes_and_the_cli_lists_them_all() {
    // A 1 MiB message limit (the other limits lowered to fit it): 70 workers
    // of 256 tools are 1.2 MB, past it, as 500 are past the default 8 MiB.
    let server = Server::start(&[
        "--max-message-bytes",
        "1048576",
        "--max-result-bytes",
        "524288",
    ])
    .await;
    let _workers = connect_workers(&server, 70, 256).await;
    let mut raw = server.raw().max_decoding_message_size(64 << 20);
    let tool = format!("t{:063}", 7);

    for filter in ["", tool.as_str()] {
        // Every page within the limit; all of them once, in ID order.
        let (mut seen, mut token, mut pages) = (Vec::new(), String::new(), 0);
        loop {
            let page = raw
                .list_workers(pb::ListWorkersRequest {
                    tool: filter.into(),
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await
                .expect("a page within the message limit")
                .into_inner();
            pages += 1;
            assert!(!page.workers.is_empty());
            seen.extend(
                page.workers
                    .iter()
                    .map(|w| w.worker_id.parse::<u64>().unwrap()),
            );
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert!(pages > 1, "70 workers do not fit one 1 MiB page");
        assert_eq!(seen.len(), 70);
        assert!(seen.is_sorted(), "{seen:?}");
        assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 70);
    }

    // By count: page_size 10 gives 10 and a token.
    let page = raw
        .list_workers(pb::ListWorkersRequest {
            page_size: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.workers.len(), 10);
    assert!(!page.next_page_token.is_empty());

    for bad in [
        pb::ListWorkersRequest {
            page_size: 1001,
            ..Default::default()
        },
        pb::ListWorkersRequest {
            page_token: "junk".into(),
            ..Default::default()
        },
        pb::ListWorkersRequest {
            // A ListTools token is not a ListWorkers one.
            page_token: "76312e742e61".into(),
            ..Default::default()
        },
    ] {
        let e = raw.list_workers(bad).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    }

    // The SDK and the CLI follow the pages.
    let client = server.client().await;
    assert_eq!(client.list_workers("").await.unwrap().len(), 70);
    let out = server.cli(&["workers", "--json"]).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 70);
}
