//! The agent side: submit tool calls, follow a session's completions.
use std::time::Duration;

use errand_proto::v1::{self as pb, tool_service_client::ToolServiceClient};
use rustls::pki_types::TrustAnchor;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{
    Request, Status,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};
use tracing::debug;

use crate::{
    error::Error,
    follow::{self, FollowEvent, FollowOptions},
    tls::Trust,
};

/// The port an address without one means: errand's default.
pub const DEFAULT_PORT: u16 = 7466;

/// The largest message this client receives (1 GiB): the largest a server
/// sends, as its `--max-message-bytes` is at most 1 GiB (gRPC's length
/// prefix is 32 bits), so whatever a server accepted reaches its agents and
/// workers; how much memory a message may take is the server's setting.
/// tonic's own default (4 MiB) would end a stream at a larger task or
/// completion.
pub const MAX_RECEIVE_BYTES: usize = 1 << 30;

/// Parses `host:port`, `host` (port [`DEFAULT_PORT`]) or a URL into an
/// endpoint. The connection is made lazily and re-made after failures.
pub fn endpoint(addr: &str) -> Result<Endpoint, Error> {
    let url = if let Some((scheme, _)) = addr.split_once("://") {
        // gRPC is HTTP/2: another scheme is a mistake, not a host name.
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(Error::Address(addr.to_string()));
        }
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    Endpoint::from_shared(with_default_port(url))
        .map(|e| {
            e.connect_timeout(Duration::from_secs(5))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(15))
                .keep_alive_timeout(Duration::from_secs(20))
                .keep_alive_while_idle(true)
        })
        .map_err(|_| Error::Address(addr.to_string()))
}

/// `url` with [`DEFAULT_PORT`] when it names no port (a bad URL is left for
/// the endpoint to refuse).
fn with_default_port(url: String) -> String {
    let Ok(uri) = url.parse::<tonic::codegen::http::Uri>() else {
        return url;
    };
    match uri.authority() {
        Some(a) if a.port().is_none() => {
            let a = a.as_str();
            url.replacen(&format!("://{a}"), &format!("://{a}:{DEFAULT_PORT}"), 1)
        }
        _ => url,
    }
}

/// How to reach a server beyond its address: a bearer token, TLS.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Sent as `authorization: Bearer <token>` on every call.
    pub token: Option<String>,
    /// Connect with TLS (the address's scheme becomes https). An
    /// `https://` address without them connects with TLS too, as
    /// `TlsOptions::default()`: trusting the system's trust store.
    pub tls: Option<TlsOptions>,
}

impl ConnectOptions {
    /// What the server's certificate must be signed by, when the
    /// connection is TLS: the CA given, or else the system's trust store.
    pub fn trust(&self) -> Trust {
        match self.tls.as_ref().and_then(|tls| tls.ca_pem.as_ref()) {
            Some(_) => Trust::Ca,
            None => Trust::System,
        }
    }
}

/// TLS for a client: the CA that signed the server's certificate, and the
/// client's own certificate for mutual TLS. PEM contents, not paths.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// The CA that signed the server's certificate, the only one trusted;
    /// `None`: the CAs of the system's trust store (the platform's, or
    /// those `SSL_CERT_FILE` / `SSL_CERT_DIR` name), as every gRPC client
    /// trusts without one: enough for a server whose certificate a public
    /// CA signed, or a TLS proxy's. See [`crate::tls::system_roots`].
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate chain and key, for servers that require mTLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The name the server's certificate must carry; default: the host.
    pub domain: Option<String>,
}

/// Parses an address and applies `options`' TLS settings: TLS when they
/// ask for it or the address is `https://`, trusting the CA given or else
/// the system's trust store. A CA file, client identity or system trust
/// store that cannot be used is [`Error::Tls`], before connecting.
pub fn endpoint_with(addr: &str, options: &ConnectOptions) -> Result<Endpoint, Error> {
    endpoint_trusting(addr, options, crate::tls::system_roots)
}

/// [`endpoint_with`], with the system's trust store read by `system_roots`
/// (only when TLS is asked for without a CA).
fn endpoint_trusting(
    addr: &str,
    options: &ConnectOptions,
    system_roots: impl FnOnce() -> Result<Vec<TrustAnchor<'static>>, String>,
) -> Result<Endpoint, Error> {
    let https = addr
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
    let default = TlsOptions::default();
    let tls = match &options.tls {
        Some(tls) => tls,
        None if https => &default,
        None => return endpoint(addr),
    };
    let url = if addr.contains("://") {
        addr.replacen("http://", "https://", 1)
    } else {
        format!("https://{addr}")
    };
    let mut config = ClientTlsConfig::new();
    match &tls.ca_pem {
        Some(ca) => {
            if let Some(why) = crate::tls::ca_problem(ca) {
                return Err(Error::Tls(format!("the CA certificate {why}")));
            }
            config = config.ca_certificate(Certificate::from_pem(ca));
        }
        None => config = config.trust_anchors(system_roots().map_err(Error::Tls)?),
    }
    if let Some((cert, key)) = &tls.identity {
        if let Some((part, why)) = crate::tls::identity_problem(cert, key) {
            return Err(Error::Tls(match part {
                crate::tls::IdentityPart::Cert => format!("the client certificate {why}"),
                crate::tls::IdentityPart::Key => format!("the client key {why}"),
                crate::tls::IdentityPart::Pair => format!("client certificate and key: {why}"),
            }));
        }
        config = config.identity(Identity::from_pem(cert, key));
    }
    if let Some(domain) = &tls.domain {
        config = config.domain_name(domain.clone());
    }
    // tonic's own error says only "transport error": its causes say why.
    endpoint(&url)?
        .tls_config(config)
        .map_err(|e| Error::Tls(crate::error::chain(&e)))
}

/// Adds the bearer token, if any, to every call.
#[derive(Clone, Default)]
pub struct Credentials {
    bearer: Option<MetadataValue<Ascii>>,
}

impl Credentials {
    pub fn new(token: Option<&str>) -> Result<Self, Error> {
        let bearer = token
            .map(|t| {
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| Error::Token("the token is not printable ASCII".into()))
            })
            .transpose()?;
        Ok(Self { bearer })
    }
}

impl Interceptor for Credentials {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(bearer) = &self.bearer {
            request
                .metadata_mut()
                .insert("authorization", bearer.clone());
        }
        Ok(request)
    }
}

/// A channel with credentials on every call.
pub type AuthChannel = InterceptedService<Channel, Credentials>;

/// A connection to errand's `ToolService`. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    pub(crate) rpc: ToolServiceClient<AuthChannel>,
}

/// Opens a channel to `addr` (as [`endpoint_with`] reads it), failing at
/// once when nothing answers there: [`Error::Connect`] names the host and
/// the port tried (`localhost` is `localhost:7466`). The channel reconnects
/// by itself after later failures.
pub async fn connect_channel(addr: &str, options: &ConnectOptions) -> Result<Channel, Error> {
    let endpoint = endpoint_with(addr, options)?;
    let shown = endpoint
        .uri()
        .authority()
        .map_or_else(|| addr.to_string(), |a| a.to_string());
    endpoint.connect().await.map_err(|cause| Error::Connect {
        addr: shown,
        trust: options.trust(),
        cause,
    })
}

impl Client {
    /// Connects to `addr` (`host:port` or a URL), failing at once when the
    /// server cannot be reached.
    pub async fn connect(addr: &str) -> Result<Self, Error> {
        Self::connect_with(addr, &ConnectOptions::default()).await
    }

    /// Connects with a token and/or TLS.
    pub async fn connect_with(addr: &str, options: &ConnectOptions) -> Result<Self, Error> {
        let channel = connect_channel(addr, options).await?;
        Ok(Self::from_channel_with(
            channel,
            Credentials::new(options.token.as_deref())?,
        ))
    }

    pub fn from_channel(channel: Channel) -> Self {
        Self::from_channel_with(channel, Credentials::default())
    }

    pub fn from_channel_with(channel: Channel, credentials: Credentials) -> Self {
        Self {
            rpc: ToolServiceClient::with_interceptor(channel, credentials)
                .max_decoding_message_size(MAX_RECEIVE_BYTES),
        }
    }

    /// Every tool of the caller's tenant, sorted by name, following the
    /// server's pages.
    pub async fn list_tools(&self) -> Result<Vec<pb::Tool>, Error> {
        let (mut tools, mut page_token) = (Vec::new(), String::new());
        loop {
            let page = self
                .rpc
                .clone()
                .list_tools(pb::ListToolsRequest {
                    page_size: 0,
                    page_token: page_token.clone(),
                    only_served: false,
                })
                .await?
                .into_inner();
            // Tokens are opaque. One that does not move on (the same
            // token again, or a page without tools) would loop for ever.
            let stuck = page.tools.is_empty() || page.next_page_token == page_token;
            tools.extend(page.tools);
            if page.next_page_token.is_empty() || stuck {
                return Ok(tools);
            }
            page_token = page.next_page_token;
        }
    }

    /// Submits one call with default options.
    pub async fn submit(
        &self,
        session: &str,
        tool: &str,
        arguments_json: &str,
    ) -> Result<pb::SubmitToolResponse, Error> {
        self.submit_request(pb::SubmitToolRequest {
            session_id: session.to_string(),
            tool: tool.to_string(),
            arguments_json: arguments_json.to_string(),
            ..Default::default()
        })
        .await
    }

    /// Submits one call with every option of the request.
    pub async fn submit_request(
        &self,
        request: pb::SubmitToolRequest,
    ) -> Result<pb::SubmitToolResponse, Error> {
        Ok(self.rpc.clone().submit_tool(request).await?.into_inner())
    }

    /// One page of a task's full result: `max_bytes` from byte `offset`
    /// (0: the server's default page). Errors: NOT_FOUND, FAILED_PRECONDITION
    /// (no result), OUT_OF_RANGE (offset past the end).
    pub async fn read_result(
        &self,
        task_id: &str,
        offset: u64,
        max_bytes: u64,
    ) -> Result<pb::ResultChunk, Error> {
        let req = pb::ReadResultRequest {
            task_id: task_id.to_string(),
            offset,
            max_bytes,
        };
        Ok(self.rpc.clone().read_result(req).await?.into_inner())
    }

    /// A task's whole result text, read page by page with
    /// [`Self::read_result`].
    pub async fn read_whole_result(&self, task_id: &str) -> Result<String, Error> {
        let mut out = String::new();
        loop {
            let chunk = self.read_result(task_id, out.len() as u64, 0).await?;
            out.push_str(&chunk.data);
            // A chunk that does not move on would loop for ever.
            if chunk.eof || chunk.data.is_empty() {
                return Ok(out);
            }
        }
    }

    pub async fn get_task(&self, task_id: &str) -> Result<pb::Task, Error> {
        let req = pb::GetTaskRequest {
            task_id: task_id.to_string(),
        };
        Ok(self.rpc.clone().get_task(req).await?.into_inner())
    }

    pub async fn cancel(&self, task_id: &str) -> Result<pb::Task, Error> {
        self.cancel_with_reason(task_id, "").await
    }

    /// Cancels a task saying why (at most 1 KiB): the reason reaches the
    /// worker and the completion's message.
    pub async fn cancel_with_reason(&self, task_id: &str, reason: &str) -> Result<pb::Task, Error> {
        let req = pb::CancelTaskRequest {
            task_id: task_id.to_string(),
            reason: reason.to_string(),
        };
        Ok(self.rpc.clone().cancel_task(req).await?.into_inner())
    }

    /// What a session is waiting for: its pending calls, unacknowledged
    /// results, and the text for the model (`max_bytes` 0: 4096).
    pub async fn pending_digest(
        &self,
        session: &str,
        max_bytes: u64,
    ) -> Result<pb::PendingDigestResponse, Error> {
        let req = pb::PendingDigestRequest {
            session_id: session.to_string(),
            max_bytes,
        };
        Ok(self.rpc.clone().pending_digest(req).await?.into_inner())
    }

    /// One `SessionEvents` stream (no reconnection, unlike
    /// [`Self::follow_session_events`]: on an error, open another after the
    /// last completion's seq).
    pub async fn session_events(
        &self,
        request: pb::SessionEventsRequest,
    ) -> Result<tonic::Streaming<pb::SessionEvent>, Error> {
        Ok(self.rpc.clone().session_events(request).await?.into_inner())
    }

    /// One `Completions` stream of the session after `after_seq` (no
    /// reconnection, unlike [`Self::completions`]: on an error, open another
    /// after the last completion's seq).
    pub async fn completions_once(
        &self,
        session: &str,
        after_seq: u64,
    ) -> Result<tonic::Streaming<pb::Completion>, Error> {
        let req = pb::CompletionsRequest {
            session_id: session.to_string(),
            after_seq,
        };
        Ok(self.rpc.clone().completions(req).await?.into_inner())
    }

    /// One page of the caller's tasks; pass the response's
    /// `next_page_token` back for the next.
    pub async fn list_tasks(
        &self,
        request: pb::ListTasksRequest,
    ) -> Result<pb::ListTasksResponse, Error> {
        Ok(self.rpc.clone().list_tasks(request).await?.into_inner())
    }

    /// The workers connected to the server (`tool` empty: all of them),
    /// every page of them ([`Self::list_workers_page`] until its
    /// `next_page_token` is empty).
    pub async fn list_workers(&self, tool: &str) -> Result<Vec<pb::WorkerInfo>, Error> {
        let mut req = pb::ListWorkersRequest {
            tool: tool.to_string(),
            ..Default::default()
        };
        let mut workers = Vec::new();
        loop {
            let page = self.list_workers_page(req.clone()).await?;
            workers.extend(page.workers);
            if page.next_page_token.is_empty() {
                return Ok(workers);
            }
            req.page_token = page.next_page_token;
        }
    }

    /// One page of the connected workers; pass the response's
    /// `next_page_token` back for the next.
    pub async fn list_workers_page(
        &self,
        request: pb::ListWorkersRequest,
    ) -> Result<pb::ListWorkersResponse, Error> {
        Ok(self.rpc.clone().list_workers(request).await?.into_inner())
    }

    /// Cancels every queued or running task matching `request`; returns
    /// how many.
    pub async fn cancel_tasks(&self, request: pb::CancelTasksRequest) -> Result<u64, Error> {
        Ok(self
            .rpc
            .clone()
            .cancel_tasks(request)
            .await?
            .into_inner()
            .cancelled)
    }

    /// Runs a FAILED, TIMED_OUT or CANCELLED task again as a new task.
    pub async fn retry_task(&self, task_id: &str) -> Result<pb::SubmitToolResponse, Error> {
        let req = pb::RetryTaskRequest {
            task_id: task_id.to_string(),
        };
        Ok(self.rpc.clone().retry_task(req).await?.into_inner())
    }

    /// Releases the session's completions up to `up_to_seq`; returns how many
    /// this call released (their tasks are removed, except results still to
    /// be read or reused, kept until retention: see the proto's
    /// AckCompletions).
    pub async fn ack_completions(&self, session: &str, up_to_seq: u64) -> Result<u64, Error> {
        Ok(self.ack(session, up_to_seq).await?.removed)
    }

    /// [`Self::ack_completions`] with the server's whole answer: how many
    /// this call released (`removed`) and the session's acknowledged seq
    /// after it (`acked_seq`; acknowledgement is monotonic, so a lower
    /// `up_to_seq` releases nothing and this says where it stands).
    pub async fn ack(
        &self,
        session: &str,
        up_to_seq: u64,
    ) -> Result<pb::AckCompletionsResponse, Error> {
        let req = pb::AckCompletionsRequest {
            session_id: session.to_string(),
            up_to_seq,
        };
        Ok(self.rpc.clone().ack_completions(req).await?.into_inner())
    }

    /// The session's completions after `after_seq`, then live ones, for as
    /// long as the returned stream is read. Reconnects by itself with
    /// backoff (100 ms doubling to 5 s) when the server or network goes
    /// away, resuming after the last seq it delivered: nothing is missed or
    /// repeated. Ends with an error only for errors that retrying cannot
    /// fix: OUT_OF_RANGE for an `after_seq` beyond the session's last seq,
    /// say. [`Self::follow_completions`] is the same stream with its
    /// reconnections shown and its waits chosen.
    pub fn completions(
        &self,
        session: &str,
        after_seq: u64,
    ) -> ReceiverStream<Result<pb::Completion, Error>> {
        let session_id = session.to_string();
        let keep = move |event| match event {
            FollowEvent::Completion(completion) => Some(completion),
            FollowEvent::Lost { cause } => {
                debug!(%session_id, %cause, "completions stream lost; reconnecting");
                None
            }
            FollowEvent::Progress(_)
            | FollowEvent::Retrying { .. }
            | FollowEvent::Reconnected { .. } => None,
        };
        let source = follow::Source::completions(session, after_seq);
        follow::spawn(self.rpc.clone(), source, FollowOptions::default(), keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_without_a_port_means_7466() {
        let uri = |addr: &str| endpoint(addr).unwrap().uri().to_string();
        assert_eq!(uri("localhost"), "http://localhost:7466/");
        assert_eq!(uri("10.0.0.1"), "http://10.0.0.1:7466/");
        assert_eq!(uri("[::1]"), "http://[::1]:7466/");
        assert_eq!(uri("http://example.com"), "http://example.com:7466/");
        assert_eq!(uri("localhost:9000"), "http://localhost:9000/");
        assert_eq!(uri("http://h:1/x"), "http://h:1/x");
        assert!(matches!(endpoint("a b"), Err(Error::Address(_))));
    }

    /// A scheme gRPC does not speak is refused (`ftp://x` was read as host
    /// `x`).
    #[test]
    fn an_address_says_what_its_scheme_needs() {
        assert!(matches!(endpoint("ftp://x"), Err(Error::Address(_))));
        assert!(matches!(endpoint("unix:///tmp/s"), Err(Error::Address(_))));
        let plain = ConnectOptions::default();
        assert!(endpoint_with("http://h:1", &plain).is_ok());
    }

    /// A trust anchor of a throwaway certificate, standing for the
    /// system's trust store.
    fn a_root() -> Vec<TrustAnchor<'static>> {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["ca.test".to_string()]).unwrap();
        let der = params.self_signed(&key).unwrap().der().clone();
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates([der]);
        roots.roots
    }

    /// TLS without a CA (an `https://` address alone, or TLS settings
    /// without one) trusts the system's trust store, as every gRPC client
    /// does; a store without certificates is an error that says so; a CA
    /// given is trusted alone, the system's store not read.
    #[test]
    fn tls_without_a_ca_trusts_the_systems_roots() {
        let plain = ConnectOptions::default();
        let uri = endpoint_trusting("https://h:1", &plain, || Ok(a_root()))
            .expect("https:// alone is TLS with the system's roots")
            .uri()
            .to_string();
        assert_eq!(uri, "https://h:1/");
        assert_eq!(plain.trust(), Trust::System);

        let no_ca = ConnectOptions {
            tls: Some(TlsOptions::default()),
            ..Default::default()
        };
        let uri = endpoint_trusting("h:1", &no_ca, || Ok(a_root()))
            .unwrap()
            .uri()
            .to_string();
        assert_eq!(uri, "https://h:1/");
        assert_eq!(no_ca.trust(), Trust::System);

        let none = || Err("the system's trust store holds no CA certificate".to_string());
        for (addr, options) in [("https://h:1", &plain), ("h:1", &no_ca)] {
            let Err(Error::Tls(why)) = endpoint_trusting(addr, options, none) else {
                panic!("{addr}: TLS without roots accepted")
            };
            assert!(why.contains("holds no CA certificate"), "{why}");
        }
        // Without TLS, the store is not read.
        assert!(endpoint_trusting("http://h:1", &plain, none).is_ok());

        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["ca.test".to_string()]).unwrap();
        let ca = ConnectOptions {
            tls: Some(TlsOptions {
                ca_pem: Some(params.self_signed(&key).unwrap().pem().into_bytes()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let unread = || -> Result<Vec<TrustAnchor<'static>>, String> {
            panic!("the system's trust store read although a CA was given")
        };
        assert!(endpoint_trusting("https://h:1", &ca, unread).is_ok());
        assert_eq!(ca.trust(), Trust::Ca);
    }
}
