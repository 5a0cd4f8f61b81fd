//! Binds the services to a listener and runs them until a shutdown signal.
//!
//! Besides errand's two services the server carries the standard gRPC health
//! service (open to all, for load balancers and probes) and server reflection,
//! v1 and v1alpha, describing every service including health (so `grpcurl`
//! works; it needs a valid token when tokens are configured).
//! Shutdown is graceful: the signal starts a drain (no new submits,
//! registrations or dispatches; health says NOT_SERVING), running tasks get
//! up to `Config::shutdown_grace` to finish, then every stream ends, the last
//! results reach the store, and `serve` returns.
use std::{future::Future, sync::Arc, time::Duration};

use errand_proto::v1::{
    FILE_DESCRIPTOR_SET, tool_service_server::ToolServiceServer,
    worker_service_server::WorkerServiceServer,
};
use futures::future::Either;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic_health::ServingStatus;
use tracing::{info, warn};

use tokio_util::sync::CancellationToken;

use crate::{
    a2a,
    agents::AgentApi,
    auth::{Role, Tokens},
    cluster::Cluster,
    config::Config,
    grpc::{
        ToolApi, WorkerApi,
        auth::Auth,
        failed_auth::FailedAuth,
        rate::{Limited, TenantRate},
        status_codes, transport,
    },
    mcp,
    metrics::{self, LoadSource, Metrics},
    net::{self, Incoming, bearer::Bearer},
    scheduler::{
        Parts, Scheduler,
        queue::{Backlog, LocalBacklog, SharedBacklog},
    },
    sessions::{Feed, SessionHub},
    store::{SharedStore, StoreError},
};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("recovering unfinished tasks from the store failed: {0}")]
    Recover(#[from] StoreError),
    #[error("loading the tool registry from the store failed: {0}")]
    LoadTools(StoreError),
    #[error("serving gRPC failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// What `serve_with` adds to a plain server. `Default`: no auth, no TLS, no
/// metrics endpoint.
#[derive(Default)]
pub struct Options {
    /// Accepted tokens; `None` turns authentication off.
    pub tokens: Option<Arc<Tokens>>,
    /// TLS (and, with a client CA, mTLS) on every listener: gRPC (with ALPN
    /// `h2` only), MCP, A2A, the dashboard and metrics, as
    /// [`net::tls::server_config`] builds it from the certificate, key and
    /// client CA.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// Where to serve Prometheus metrics (`GET /metrics`).
    pub metrics: Option<TcpListener>,
    /// Where to serve the dashboard ([`crate::ui`]).
    pub ui: Option<TcpListener>,
    /// The bearer token `GET /metrics` requires; `None`: open to all.
    pub metrics_token: Option<Arc<str>>,
    /// Where to serve MCP (`POST /mcp`), with `Config::mcp`'s settings.
    pub mcp: Option<TcpListener>,
    /// Where to serve A2A (card, JSON-RPC, HTTP+JSON, gRPC), with
    /// `Config::a2a`'s settings.
    pub a2a: Option<TcpListener>,
}

/// Reads the store at start (`what`), and again, with backoff, while it is
/// unavailable: the database may go away between the store's connection
/// and these first reads, and the server waits for it then as it does to
/// connect (an outage later is waited out too). Any other error is final.
async fn read_at_start<T, F: Future<Output = Result<T, StoreError>>>(
    what: &'static str,
    mut read: impl FnMut() -> F,
) -> Result<T, StoreError> {
    let mut backoff = Duration::from_millis(100);
    loop {
        match read().await {
            Err(StoreError::Unavailable(why)) => {
                tracing::error!(reading = what, error = %why, retry_in_ms = backoff.as_millis() as u64,
                    "reading the store at start failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            read => return read,
        }
    }
}

/// How long connections may stay open once every stream was told to end.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

const SERVICES: [&str; 2] = ["errand.v1.ToolService", "errand.v1.WorkerService"];

/// Serves errand on `listener` until `shutdown` resolves, then ends every
/// stream (clients are told to reconnect) and returns. Every listener takes
/// `config.connections`' bounds ([`net`]); the process's soft open-files
/// limit is raised to the hard one.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    store: SharedStore,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    serve_with(listener, config, store, Options::default(), shutdown).await
}

/// [`serve`] with authentication, TLS and metrics as `options` say.
pub async fn serve_with(
    listener: TcpListener,
    config: Config,
    store: SharedStore,
    options: Options,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let grace = config.shutdown_grace;
    let mcp_config = config.mcp.clone();
    let a2a_config = config.a2a.clone();
    let ui_config = config.ui.clone();
    let metrics_config = config.metrics.clone();
    let retention = config.retention;
    let mut connections = config.connections.clone();
    connections.max_connections =
        net::connection_cap(connections.max_connections, net::raise_open_files_limit());
    let stream_buffer = config.limits.stream_buffer;
    let hub = Arc::new(SessionHub::default());
    let metrics = Arc::new(Metrics::new(config.limits.max_tools_per_tenant));
    let metrics_for_store = metrics.clone();
    let shutdown_token = CancellationToken::new();
    let shared = SharedBacklog::new(store.clone());
    let backlog: Arc<dyn Backlog> = match &shared {
        Some(shared) => shared.clone(),
        None => Arc::new(LocalBacklog),
    };
    let sched = Scheduler::new(
        config,
        store.clone(),
        Parts {
            hub: hub.clone(),
            metrics: metrics.clone(),
            shutdown: shutdown_token.clone(),
            backlog,
        },
    );
    let write_health = store.write_health().map(|w| (w, store.clone()));
    let feed = Feed::new(store, hub.clone(), shutdown_token.clone(), stream_buffer);
    // Known tools first: a recovered task's tool is then known, and listed.
    // A signal meanwhile (the store may be waited for) stops the server:
    // nothing runs yet, nothing is to drain. Either way out, the shutdown
    // token is cancelled: endings recovery kept (spawned, retried through
    // an outage) stop with the server, not with the runtime.
    let mut shutdown = std::pin::pin!(shutdown);
    let first_reads = async {
        read_at_start("the tool registry", || sched.load_tools())
            .await
            .map_err(ServeError::LoadTools)?;
        read_at_start("unfinished tasks", || sched.recover()).await?;
        Ok::<_, ServeError>(())
    };
    let read = tokio::select! {
        read = first_reads => Some(read),
        () = &mut shutdown => {
            warn!("signal received while reading the store at start: stopping before serving");
            None
        }
    };
    if !matches!(read, Some(Ok(()))) {
        shutdown_token.cancel();
        return read.unwrap_or(Ok(()));
    }
    let purge = tokio::spawn(sched.clone().purge_loop());
    // Shared mode only: claiming, leases, reaping, cross-server wake-ups.
    let hub_for_ui = hub.clone();
    let cluster = shared.map(|backlog| Cluster {
        sched: sched.clone(),
        backlog,
        hub,
        shutdown: shutdown_token.clone(),
    });
    let cluster_loops = cluster.as_ref().map(Cluster::start).unwrap_or_default();
    // Every port's budgets: failed calls per peer, requests per tenant.
    let failures = Arc::new(FailedAuth::new(
        sched.config().limits.auth_failures_per_minute,
        metrics.clone(),
    ));
    let metrics_endpoint = options.metrics.map(|l| {
        let source: Arc<dyn LoadSource> = sched.clone();
        let access = metrics::Access {
            token: options.metrics_token.clone(),
            failures: Some(failures.clone()),
            hosts: net::host::AllowedHosts::bound(
                &metrics_config.allowed_hosts,
                l.local_addr().ok(),
                "add it with --metrics-allowed-host",
            ),
        };
        tokio::spawn(metrics::serve(
            Incoming::new(l, connections.clone()),
            connections.clone(),
            access,
            metrics.clone(),
            source,
            options.tls.clone(),
            shutdown_token.clone(),
        ))
    });
    let rate = TenantRate::new(sched.config().limits.requests_per_second_per_tenant);
    let ui_endpoint = options.ui.map(|l| {
        let ui = crate::ui::Ui::new(sched.clone(), hub_for_ui.clone(), options.tokens.clone())
            .with_allowed_hosts(&ui_config.allowed_hosts, l.local_addr().ok())
            .with_budgets(failures.clone(), rate.clone());
        tokio::spawn(crate::ui::serve(
            Incoming::new(l, connections.clone()),
            connections.clone(),
            ui,
            options.tls.clone(),
            shutdown_token.clone(),
        ))
    });
    let (health, health_service) = tonic_health::server::health_reporter();
    for name in ["", SERVICES[0], SERVICES[1]] {
        health
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }
    // Cancelled as the drain starts: the health status is the drain's then.
    let draining = CancellationToken::new();
    if let Some((writes, store)) = write_health {
        writes.attach(metrics_for_store.clone());
        tokio::spawn(store_health::follow(
            writes,
            store,
            health.clone(),
            draining.clone(),
            shutdown_token.clone(),
        ));
    }
    let mut builder = transport::grpc_server(&connections)
        .layer(crate::grpc::metadata_limit::MetadataLimit::new(
            connections.max_header_list_bytes,
        ))
        .layer(status_codes::layer())
        .layer(crate::grpc::request_deadline::layer(
            connections.idle_timeout,
        ));
    // The gRPC port's handshakes are its own (not tonic's `tls_config`,
    // which dropped refused ones unseen): bounded and logged as the HTTP
    // listeners' are.
    let grpc_tls = options.tls.as_deref().map(|config| {
        net::handshake::Handshakes::new(
            net::handshake::grpc_config(config),
            connections.handshake_timeout,
        )
    });
    let tokens = options.tokens;

    let max = sched.config().limits.max_message_bytes;
    let agent_api = Arc::new(AgentApi::new(sched.clone(), feed, metrics));
    let tool_api = Arc::new(ToolApi::new(agent_api.clone()));
    // MCP and A2A on their own listeners, over the very agent API gRPC
    // translates, with its tokens and failed-auth budget.
    let bearer = |what| Bearer {
        tokens: tokens.clone(),
        failures: Some(failures.clone()),
        rate: Some(rate.clone()),
        what,
    };
    let a2a_endpoint = options.a2a.map(|listener| {
        let public_url = match (&a2a_config.public_url, listener.local_addr()) {
            (Some(url), _) => url.clone(),
            (None, Ok(addr)) if options.tls.is_some() => format!("https://{addr}"),
            (None, Ok(addr)) => format!("http://{addr}"),
            (None, Err(_)) => "http://127.0.0.1".into(),
        };
        let handler =
            a2a::A2aHandler::new(agent_api.clone(), bearer("call A2A skills"), public_url);
        let l = a2a::Listener {
            incoming: Incoming::new(listener, connections.clone()),
            limits: connections.clone(),
            allowed_hosts: a2a_config.allowed_hosts.clone(),
            tls: options.tls.clone(),
            max_body_bytes: max,
        };
        tokio::spawn(a2a::serve(l, handler, shutdown_token.clone()))
    });
    let mcp_endpoint = options.mcp.map(|listener| {
        let handler = mcp::McpHandler::new(
            agent_api.clone(),
            mcp::Settings {
                default_session: mcp_config.default_session.clone(),
                timing: mcp::convert::TaskTiming {
                    retention,
                    poll_interval: mcp_config.poll_interval,
                },
                page_bytes: max,
                progress_interval: agent_api.progress_interval(),
            },
        )
        .leaving_running(sched.left_running());
        let l = mcp::Listener {
            incoming: Incoming::new(listener, connections.clone()),
            limits: connections.clone(),
            allowed_hosts: mcp_config.allowed_hosts.clone(),
            tls: options.tls.clone(),
            max_body_bytes: max,
        };
        tokio::spawn(mcp::serve(
            l,
            handler,
            bearer("call MCP tools"),
            shutdown_token.clone(),
        ))
    });
    // Both reflection versions (grpcurl and older tools ask v1alpha), each
    // describing every service served, health included.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .expect("the descriptor sets are valid");
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .expect("the descriptor sets are valid");
    let guard = |role, service| {
        Limited::new(
            Auth::new(tokens.clone(), role, service).with_failures(failures.clone()),
            rate.clone(),
        )
    };
    let router = builder
        .add_service(health_service)
        .add_service(InterceptedService::new(
            reflection_v1,
            guard(None, "server reflection"),
        ))
        .add_service(InterceptedService::new(
            reflection_v1alpha,
            guard(None, "server reflection"),
        ))
        .add_service(InterceptedService::new(
            ToolServiceServer::from_arc(tool_api)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            guard(Some(Role::Agent), "ToolService"),
        ))
        .add_service(InterceptedService::new(
            WorkerServiceServer::new(WorkerApi::new(sched.clone(), shutdown_token.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            guard(Some(Role::Worker), "WorkerService"),
        ));
    let stop = {
        let sched = sched.clone();
        let shutdown_token = shutdown_token.clone();
        async move {
            shutdown.await;
            info!(
                grace_secs = grace.as_secs_f64(),
                "shutting down: draining running tasks"
            );
            // Refuse new work before health says so: a client that sees
            // NOT_SERVING must not get a submit in.
            sched.stop_taking_work();
            draining.cancel();
            for name in ["", SERVICES[0], SERVICES[1]] {
                health
                    .set_service_status(name, ServingStatus::NotServing)
                    .await;
            }
            let left = sched.drain(grace).await;
            if left > 0 {
                warn!(running = left, "{}", sched.left_running().drain_line());
            }
            shutdown_token.cancel();
        }
    };
    let incoming = Incoming::new(listener, connections);
    let serving = match grpc_tls {
        None => Either::Left(router.serve_with_incoming_shutdown(incoming, stop)),
        Some(handshakes) => {
            Either::Right(router.serve_with_incoming_shutdown(handshakes.incoming(incoming), stop))
        }
    };
    // Streams end once the drain is over; connections that stay open after
    // that (a health Watch, a client that never reads) are not waited for.
    let stopped = shutdown_token.clone();
    let result = tokio::select! {
        r = serving => r,
        _ = async { stopped.cancelled().await; tokio::time::sleep(CLOSE_WAIT).await } => {
            warn!("connections still open {} s after the drain: closing them", CLOSE_WAIT.as_secs());
            Ok(())
        }
    };
    shutdown_token.cancel();
    // Worker streams write their last results to the store before they end.
    sched.tracker().close();
    if tokio::time::timeout(Duration::from_secs(10), sched.tracker().wait())
        .await
        .is_err()
    {
        warn!("worker streams did not finish within 10 s");
    }
    purge.abort();
    for task in cluster_loops {
        task.abort();
    }
    if let Some(cluster) = cluster {
        cluster.stop().await;
    }
    if let Some(m) = metrics_endpoint {
        let _ = m.await;
    }
    if let Some(u) = ui_endpoint {
        let _ = u.await;
    }
    if let Some(m) = mcp_endpoint {
        let _ = m.await;
    }
    if let Some(a) = a2a_endpoint {
        let _ = a.await;
    }
    result.map_err(Into::into)
}

mod store_health;
#[cfg(test)]
mod tests;
