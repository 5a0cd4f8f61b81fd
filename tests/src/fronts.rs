//! The HTTP front ends as their clients speak them: A2A JSON-RPC and MCP
//! (protocol 2026-07-28 with the Tasks extension, one stateless request at
//! a time). Each request goes over its own HTTP/1.0 connection, so the
//! answer ends with the connection; every read is bounded by [`within`].
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::within;

/// The MCP protocol version errand serves tasks on.
pub const MCP_VERSION: &str = "2026-07-28";
/// The MCP Tasks extension's name.
pub const MCP_TASKS: &str = "io.modelcontextprotocol/tasks";

/// An HTTP answer: its status code and body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    /// The JSON-RPC response in the body: the body itself, or the data line
    /// of a server-sent event that holds a `result` or an `error`.
    pub fn json(&self) -> Value {
        let body = self.body.trim();
        if body.starts_with('{') {
            return serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        }
        body.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|v| v.get("result").is_some() || v.get("error").is_some())
            .unwrap_or_else(|| panic!("no JSON-RPC response in {:?}: {body}", self.status))
    }

    /// The `result` of a JSON-RPC answer, failing the test on an error.
    pub fn result(&self) -> Value {
        assert_eq!(self.status, 200, "{}", self.body);
        let answer = self.json();
        assert!(answer.get("error").is_none(), "{answer}");
        answer["result"].clone()
    }
}

/// POSTs `body` (JSON) to `url` (`http://HOST:PORT/PATH`) with `headers`.
pub async fn post(url: &str, headers: &[(&str, String)], body: &Value) -> Answer {
    post_raw(url, headers, &body.to_string()).await
}

/// POSTs `body`, as it is, labelled `application/json`.
pub async fn post_raw(url: &str, headers: &[(&str, String)], body: &str) -> Answer {
    let headers: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
    post_bytes(url, &headers, body).await
}

/// POSTs `body` as [`post_raw`] does, with header values as bytes, sent
/// as they are (not UTF-8, say).
pub async fn post_bytes(url: &str, headers: &[(&str, &[u8])], body: &str) -> Answer {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut head = format!(
        "POST /{path} HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n",
        body.len()
    )
    .into_bytes();
    for (name, value) in headers {
        head.extend_from_slice(format!("{name}: ").as_bytes());
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    }
    let conn = within("a connection", tokio::net::TcpStream::connect(host))
        .await
        .unwrap();
    // Sent while the answer is read: a server may answer a body over its
    // limit (413) and close before the rest is sent, so writing fails with
    // a broken pipe or reset while the answer is already on its way.
    let (mut reader, mut writer) = conn.into_split();
    let request = [&head[..], b"\r\n", body.as_bytes()].concat();
    let send = tokio::spawn(async move {
        let _ = writer.write_all(&request).await;
        writer
    });
    let mut bytes = Vec::new();
    let read = within("an HTTP answer", reader.read_to_end(&mut bytes)).await;
    if let Err(e) = read {
        // A reset after the answer came (the server closed with the rest
        // of the body unread) ends what is read, not the answer.
        assert!(
            e.kind() == std::io::ErrorKind::ConnectionReset && !bytes.is_empty(),
            "reading the answer: {e}"
        );
    }
    drop(send.await);
    let response = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head}"));
    Answer {
        status,
        body: body.to_string(),
    }
}

fn bearer(token: Option<&str>) -> Vec<(&'static str, String)> {
    token
        .map(|t| vec![("Authorization", format!("Bearer {t}"))])
        .unwrap_or_default()
}

/// One A2A JSON-RPC call (`A2A-Version: 1.0`) to `base` (`http://ADDR`),
/// with `token` when given.
pub async fn a2a_call_as(base: &str, token: Option<&str>, method: &str, params: Value) -> Answer {
    let mut headers = bearer(token);
    headers.push(("A2A-Version", "1.0".into()));
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    post(&format!("{base}/jsonrpc"), &headers, &body).await
}

/// One A2A JSON-RPC call without a token; the parsed answer.
pub async fn a2a_call(base: &str, method: &str, params: Value) -> Value {
    a2a_call_as(base, None, method, params).await.json()
}

/// An MCP client of one errand session, declaring the Tasks extension.
pub struct Mcp {
    /// `http://ADDR/mcp`.
    pub url: String,
    pub token: Option<String>,
    /// Sent as `Errand-Session`.
    pub session: String,
}

impl Mcp {
    /// Calls `method` with `params` (an object), adding the per-request
    /// `_meta` and the headers protocol 2026-07-28 asks for.
    pub async fn call(&self, method: &str, mut params: Value) -> Answer {
        let name = match method {
            "tools/call" => params["name"].as_str().map(str::to_string),
            "tasks/get" | "tasks/update" | "tasks/cancel" => {
                params["taskId"].as_str().map(str::to_string)
            }
            _ => None,
        };
        params["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": MCP_VERSION,
            "io.modelcontextprotocol/clientCapabilities": {"extensions": {MCP_TASKS: {}}},
        });
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        self.post_text(method, name.as_deref(), &body.to_string())
            .await
    }

    /// POSTs `body`, a JSON-RPC request of `method` (about tool or task
    /// `name`), verbatim with the headers protocol 2026-07-28 asks for.
    pub async fn post_text(&self, method: &str, name: Option<&str>, body: &str) -> Answer {
        let mut headers = bearer(self.token.as_deref());
        headers.extend([
            ("Accept", "application/json, text/event-stream".to_string()),
            ("MCP-Protocol-Version", MCP_VERSION.to_string()),
            ("Mcp-Method", method.to_string()),
            ("Errand-Session", self.session.clone()),
        ]);
        if let Some(name) = name {
            headers.push(("Mcp-Name", name.to_string()));
        }
        post_raw(&self.url, &headers, body).await
    }

    /// `tools/call` of `tool` with `arguments`: the task it created
    /// (`resultType` "task", `taskId`, `status`, ...).
    pub async fn call_tool(&self, tool: &str, arguments: Value) -> Value {
        let task = self
            .call("tools/call", json!({"name": tool, "arguments": arguments}))
            .await
            .result();
        assert_eq!(task["resultType"], "task", "{task}");
        task
    }

    /// `tasks/get` of `task_id`: the result (the task's fields and `_meta`).
    pub async fn get_task(&self, task_id: &str) -> Value {
        self.call("tasks/get", json!({"taskId": task_id}))
            .await
            .result()
    }
}
