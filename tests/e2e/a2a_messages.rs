//! A2A `SendMessage` over JSON-RPC as a client writes it: numbers in the
//! data part, the result and errand's metadata, duplicate keys, and
//! retried messages.
use errand_tests::{fronts::a2a_call_as, *};
use serde_json::{Value, json};

fn message(id: &str, data: Value) -> Value {
    json!({
        "message": {
            "messageId": id,
            "role": "ROLE_USER",
            "parts": [{"data": data}],
            "metadata": {"skill": "echo"},
        },
        "configuration": {"returnImmediately": true},
    })
}

#[tokio::test]
async fn a2a_integers_stay_integers_both_ways() {
    let server = Server::start(&["--a2a-listen", "127.0.0.1:0"]).await;
    let a2a = server.a2a_url.clone().expect("the A2A address");
    let mut worker = server.gate_worker(&["echo"], 1).await;

    let data = json!({"n": 5, "x": 2.5, "l": [1, -2], "o": {"big": 9007199254740991_u64}});
    let sent = a2a_call_as(&a2a, None, "SendMessage", message("m-int", data)).await;
    let task = sent.result()["task"].clone();
    let client = server.client().await;
    let mut completions = client.completions(task["contextId"].as_str().unwrap(), 0);
    let job = worker.next().await;
    assert_eq!(
        job.task.arguments_json,
        r#"{"l":[1,-2],"n":5,"o":{"big":9007199254740991},"x":2.5}"#
    );
    job.succeed(r#"{"count":3}"#);

    // errand's metadata (attempts, seq) and the artifact come back as integers.
    assert!(sent.body.contains(r#""attempts":"#), "{}", sent.body);
    assert_eq!(floats(&sent.json()), Vec::<String>::new(), "{}", sent.body);
    let id = task["id"].as_str().unwrap();
    take_completions(&mut completions, 1).await;
    let done = a2a_call_as(&a2a, None, "GetTask", json!({"id": id})).await;
    assert!(done.body.contains("TASK_STATE_COMPLETED"), "{}", done.body);
    assert!(done.body.contains(r#"{"count":3}"#), "{}", done.body);
    assert!(done.body.contains(r#""attempts":1"#), "{}", done.body);
    assert_eq!(floats(&done.json()), Vec::<String>::new(), "{}", done.body);

    // An integer a double cannot hold: refused, saying what to send.
    let big = r#"{"jsonrpc":"2.0","id":7,"method":"SendMessage","params":{"message":{"messageId":"m-big","role":"ROLE_USER","parts":[{"data":{"n":12345678901234567}}],"metadata":{"skill":"echo"}}}}"#;
    let answer = post_raw(&format!("{a2a}/jsonrpc"), big).await;
    let error = answer.json()["error"].clone();
    assert_eq!(error["code"], -32602, "{error}");
    let text = error["message"].as_str().unwrap();
    assert!(text.contains("12345678901234567"), "{text}");
    assert!(text.contains("parts[0].data.n"), "{text}");
    assert!(text.contains("as a string"), "{text}");
    assert!(worker.try_next().is_none());
}

/// POSTs `body` verbatim (numbers serde_json would change) as A2A 1.0.
async fn post_raw(url: &str, body: &str) -> fronts::Answer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut conn = tokio::net::TcpStream::connect(host).await.unwrap();
    let req = format!(
        "POST /{path} HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         A2A-Version: 1.0\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut response = String::new();
    within("an HTTP answer", conn.read_to_string(&mut response))
        .await
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    fronts::Answer {
        status: head.split(' ').nth(1).unwrap().parse().unwrap(),
        body: body.to_string(),
    }
}

#[tokio::test]
async fn a2a_the_same_message_twice_without_a_context_is_one_task() {
    let server = Server::start(&["--a2a-listen", "127.0.0.1:0"]).await;
    let a2a = server.a2a_url.clone().expect("the A2A address");
    let mut worker = server.gate_worker(&["echo"], 2).await;

    let send = || {
        a2a_call_as(
            &a2a,
            None,
            "SendMessage",
            message("m-retry", json!({"n": 1})),
        )
    };
    let first = send().await.result()["task"].clone();
    let job = worker.next().await;
    let second = send().await.result()["task"].clone();
    assert_eq!(first["id"], second["id"], "{first} / {second}");
    assert_eq!(first["contextId"], second["contextId"]);
    let other = a2a_call_as(
        &a2a,
        None,
        "SendMessage",
        message("m-other", json!({"n": 1})),
    )
    .await
    .result()["task"]
        .clone();
    assert_ne!(other["contextId"], first["contextId"]);
    assert_ne!(other["id"], first["id"]);
    let other_job = worker.next().await;
    assert_eq!(other_job.task.task_id, other["id"].as_str().unwrap());
    assert_eq!(job.task.task_id, first["id"].as_str().unwrap());
    assert!(worker.try_next().is_none(), "the retry made no task");
}

/// A result holding integers a double cannot hold (64-bit IDs) leaves A2A
/// exactly: as a text part of media type application/json, since a data
/// part is a protobuf Struct, whose numbers are doubles. Other results
/// stay data parts.
#[tokio::test]
async fn a2a_a_result_with_big_integers_is_sent_exactly() {
    let server = Server::start(&["--a2a-listen", "127.0.0.1:0"]).await;
    let a2a = server.a2a_url.clone().expect("the A2A address");
    let mut worker = server.gate_worker(&["echo"], 1).await;
    let result =
        r#"{"id":9007199254740993,"tweet":1790000000000000001,"n":5,"neg":-9223372036854775807}"#;

    // Streamed: the artifact as the task ends.
    let url = format!("{a2a}/jsonrpc");
    let sent = tokio::spawn(async move {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "SendStreamingMessage",
            "params": {"message": {"messageId": "m-big-out", "role": "ROLE_USER",
                "parts": [{"data": {"n": 1}}], "metadata": {"skill": "echo"}}}});
        fronts::post(&url, &[("A2A-Version", "1.0".into())], &body).await
    });
    let job = worker.next().await;
    let id = job.task.task_id.clone();
    job.succeed(result);
    let streamed = within("the stream's end", sent).await.unwrap();
    let artifact = streamed
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find_map(|v| v["result"].get("artifactUpdate").cloned())
        .unwrap_or_else(|| panic!("no artifact in {}", streamed.body));
    assert_exact(&artifact["artifact"]["parts"][0], result);

    // Read back: GetTask and ListTasks with artifacts.
    let got = a2a_call_as(&a2a, None, "GetTask", json!({"id": id})).await;
    assert_exact(&got.result()["artifacts"][0]["parts"][0], result);
    let context = got.result()["contextId"].clone();
    let listed = a2a_call_as(
        &a2a,
        None,
        "ListTasks",
        json!({"contextId": context, "includeArtifacts": true}),
    )
    .await;
    assert_exact(
        &listed.result()["tasks"][0]["artifacts"][0]["parts"][0],
        result,
    );

    // A result a double holds stays a data part.
    let base = a2a.clone();
    let sent = tokio::spawn(async move {
        let mut m = message("m-small", json!({"n": 2}));
        m["configuration"]["returnImmediately"] = json!(false);
        a2a_call_as(&base, None, "SendMessage", m).await
    });
    let job = worker.next().await;
    job.succeed(r#"{"id":9007199254740991}"#);
    let done = within("the result", sent).await.unwrap().result();
    let part = done["task"]["artifacts"][0]["parts"][0].clone();
    assert_eq!(part["data"], json!({"id": 9007199254740991_u64}), "{part}");
}

/// `part` carries `result` exactly: a text part of media type
/// application/json holding the very JSON.
fn assert_exact(part: &Value, result: &str) {
    assert_eq!(part["mediaType"], "application/json", "{part}");
    assert!(part.get("data").is_none(), "{part}");
    assert_eq!(part["text"], result, "{part}");
}

/// The JSON rule's "no key twice in one object" holds on A2A as on gRPC:
/// JSON-RPC -32602 and HTTP+JSON 400 naming the key, and no task.
#[tokio::test]
async fn a2a_a_key_twice_in_one_object_is_refused() {
    let server = Server::start(&["--a2a-listen", "127.0.0.1:0"]).await;
    let a2a = server.a2a_url.clone().expect("the A2A address");
    let mut worker = server.gate_worker(&["echo"], 1).await;
    let headers = [("A2A-Version", "1.0".to_string())];

    let message = r#"{"messageId":"m-dup","role":"ROLE_USER","parts":[{"data":{"city":"Lyon","city":"Paris"}}],"metadata":{"skill":"echo"}}"#;
    let rpc = format!(
        r#"{{"jsonrpc":"2.0","id":3,"method":"SendMessage","params":{{"message":{message}}}}}"#
    );
    let answer = fronts::post_raw(&format!("{a2a}/jsonrpc"), &headers, &rpc)
        .await
        .json();
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    assert_eq!(answer["id"], 3, "{answer}");
    let text = answer["error"]["message"].as_str().unwrap();
    assert!(text.contains(r#"duplicate key "city""#), "{text}");

    let rest = format!(r#"{{"message":{message}}}"#);
    let answer = fronts::post_raw(&format!("{a2a}/rest/message:send"), &headers, &rest).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(
        answer.body.contains(r#"duplicate key \"city\""#),
        "{}",
        answer.body
    );
    assert!(worker.try_next().is_none(), "no task was made");
}

/// A call refused for lack of room is the caller's to retry later on every
/// binding: JSON-RPC -32000, HTTP+JSON 429 `RESOURCE_EXHAUSTED` (the A2A SDK
/// alone answers 500 `INTERNAL`).
#[tokio::test]
async fn a2a_too_many_pending_tasks_is_resource_exhausted_not_internal() {
    let server = Server::start(&[
        "--a2a-listen",
        "127.0.0.1:0",
        "--max-pending-per-session",
        "1",
    ])
    .await;
    let a2a = server.a2a_url.clone().expect("the A2A address");
    let _worker = server.gate_worker(&["echo"], 1).await;
    let headers = [("A2A-Version", "1.0".to_string())];
    let in_context = |id: &str| {
        let mut m = message(id, json!({"n": 1}));
        m["message"]["contextId"] = json!("full");
        m
    };
    let first = a2a_call_as(&a2a, None, "SendMessage", in_context("m1")).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(first.json().get("error").is_none(), "{}", first.body);

    let rpc = a2a_call_as(&a2a, None, "SendMessage", in_context("m2"))
        .await
        .json();
    assert_eq!(rpc["error"]["code"], -32000, "{rpc}");
    let rest = fronts::post(
        &format!("{a2a}/rest/message:send"),
        &headers,
        &in_context("m3"),
    )
    .await;
    assert_eq!(rest.status, 429, "{}", rest.body);
    let body: Value = serde_json::from_str(&rest.body).unwrap();
    assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED", "{body}");
    assert_eq!(body["error"]["code"], 429, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the limit is 1"),
        "{body}"
    );
    assert_eq!(
        body["error"]["details"][0]["reason"], "RESOURCE_EXHAUSTED",
        "{body}"
    );
}

/// Integers stay integers on HTTP+JSON too, whose answers are
/// `application/a2a+json`: the task's metadata read `"attempts":1.0`, and a
/// result `{"n":1}` came back as `{"n":1.0}` (JSON-RPC's were right).
#[tokio::test]
async fn a2a_rest_answers_keep_integers_integers() {
    let server = Server::start(&["--a2a-listen", "127.0.0.1:0"]).await;
    let a2a = server.a2a_url.clone().expect("the A2A address");
    let mut worker = server.gate_worker(&["echo"], 1).await;
    let headers = [("A2A-Version", "1.0".to_string())];
    let rest = r#"{"message":{"messageId":"m-int","role":"ROLE_USER","parts":[{"data":{"n":1}}],"metadata":{"skill":"echo"}},"configuration":{"returnImmediately":true}}"#;
    let sent = tokio::spawn({
        let url = format!("{a2a}/rest/message:send");
        async move { fronts::post_raw(&url, &headers, rest).await }
    });
    worker.next().await.succeed(r#"{"n":1}"#);
    let answer = sent.await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    // Parsed, not searched: a timestamp such as "…:31.021…Z" holds "1.0".
    let body: Value = serde_json::from_str(&answer.body).expect("a JSON answer");
    assert_eq!(floats(&body), Vec::<String>::new(), "{body}");
    assert!(
        body["task"]["metadata"]["errand"]["attempts"].is_u64(),
        "{body}"
    );
}

/// The JSON numbers in `v` written with a fraction or exponent, with their paths.
fn floats(v: &Value) -> Vec<String> {
    fn walk(v: &Value, path: &str, out: &mut Vec<String>) {
        match v {
            Value::Number(n) if n.is_f64() => out.push(format!("{path} = {n}")),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, &format!("{path}[{i}]"), out);
                }
            }
            Value::Object(fields) => {
                for (k, item) in fields {
                    walk(item, &format!("{path}.{k}"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, "", &mut out);
    out
}

/// A request the A2A port has no route for is answered at once, whatever
/// its body: a worker's `Connect` stream sent here by mistake (its body
/// never ends) waited for ever while the JSON check read the whole body.
#[tokio::test]
async fn a_stream_to_an_unknown_path_is_answered_without_its_body_ending() {
    let server = Server::start(&["--a2a-listen", "127.0.0.1:0"]).await;
    let a2a = server.a2a_url.clone().expect("the A2A address");
    let channel = errand_client::endpoint(&a2a).unwrap().connect_lazy();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(errand_client::pb::WorkerMessage::default())
        .await
        .unwrap();
    let mut workers = errand_client::pb::worker_service_client::WorkerServiceClient::new(channel);
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    // `tx` stays open: the request body never ends.
    let answer = within(
        "an answer to a stream on the A2A port",
        workers.connect(stream),
    )
    .await;
    // tonic gives a streaming call's HTTP error at its first message.
    let status = match answer {
        Err(status) => status,
        Ok(r) => within("the stream's first message", r.into_inner().message())
            .await
            .expect_err("no route here"),
    };
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
    drop(tx);
}

/// A JSON-RPC call without `A2A-Version` (which means 0.3) or in another
/// version gets -32009 saying what to send, with the request's id; the
/// SDK's router said only "version not supported: 0.3".
#[tokio::test]
async fn a2a_a_call_in_another_version_is_told_which_to_send() {
    let server = Server::start(&["--a2a-listen", "127.0.0.1:0"]).await;
    let a2a = server.a2a_url.clone().expect("the A2A address");
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "GetTask", "params": {"id": "x"}});
    for (headers, sent) in [
        (vec![], "0.3"),
        (vec![("A2A-Version", "0.2".to_string())], "0.2"),
    ] {
        let answer = errand_tests::fronts::post(&format!("{a2a}/jsonrpc"), &headers, &body)
            .await
            .json();
        assert_eq!(answer["id"], 7, "{answer}");
        assert_eq!(answer["error"]["code"], -32009, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("A2A-Version \"{sent}\" is not supported"))
                && message.contains("send the header `A2A-Version: 1.0`"),
            "{answer}"
        );
    }
}

/// Defect: a body over the limit was answered 413 `text/plain` "length
/// limit exceeded", with no limit and no fix and in neither binding's
/// error form. Now a JSON-RPC error on /jsonrpc, problem+json on /rest,
/// both naming the limit and the flag.
#[tokio::test]
async fn a2a_bodies_over_the_limit_are_answered_in_the_bindings_error_form() {
    let server = Server::start(&["--a2a-listen", "127.0.0.1:0"]).await;
    let a2a = server.a2a_url.clone().expect("the A2A address");
    // Over the default limit, 8 MiB.
    let big = message("m-big", json!({"blob": "x".repeat(9 * 1024 * 1024)}));
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": big});
    let headers = [("A2A-Version", "1.0".to_string())];
    let answer = errand_tests::fronts::post(&format!("{a2a}/jsonrpc"), &headers, &body).await;
    assert_eq!(answer.status, 413, "{}", answer.body);
    let error = answer.json()["error"].clone();
    assert_eq!(error["code"], -32600, "{error}");
    let text = error["message"].as_str().unwrap();
    assert!(
        text.contains("8388608") && text.contains("--max-message-bytes"),
        "{text}"
    );

    let rest =
        errand_tests::fronts::post(&format!("{a2a}/rest/message:send"), &headers, &big).await;
    assert_eq!(rest.status, 413, "{}", rest.body);
    let problem: serde_json::Value = serde_json::from_str(&rest.body).expect("a JSON body");
    assert!(
        problem["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-message-bytes"),
        "{problem}"
    );
}

/// Defect: a data part the skill's schema refused was answered "the data
/// part (errand's arguments_json) fails ...": gRPC's field name, which an
/// A2A client never sent.
#[tokio::test]
async fn a2a_errors_name_a2as_fields_not_grpcs() {
    let server = Server::start(&["--a2a-listen", "127.0.0.1:0"]).await;
    let a2a = server.a2a_url.clone().expect("the A2A address");
    let _worker = errand_tests::raw::connect_worker(
        &server.addr,
        None,
        vec![errand_tests::raw::tool(
            "echo",
            r#"{"type":"object","required":["q"]}"#,
        )],
    )
    .await
    .unwrap();
    let answer = a2a_call_as(&a2a, None, "SendMessage", message("m-schema", json!({}))).await;
    let error = answer.json()["error"].clone();
    assert_eq!(error["code"], -32602, "{error}");
    let text = error["message"].as_str().unwrap();
    assert!(
        text.starts_with("the data part fails the input schema of tool `echo`"),
        "{text}"
    );
    assert!(
        !text.contains("errand's") && !text.contains("arguments_json"),
        "{text}"
    );
}
