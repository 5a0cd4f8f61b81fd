//! Prometheus metrics, served as text on `GET /metrics` of `--metrics-listen`.
//!
//! Counters and histograms are updated where things happen (submit, dispatch,
//! completion, delivery); the open-streams gauge moves as streams open and
//! close; the gauges of the scheduler's live state (queue depth, running
//! tasks, workers) are read from a [`LoadSource`] at each scrape, so they
//! cannot drift.
use std::{sync::Arc, time::Duration};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use tracing::warn;

use tokio_util::sync::CancellationToken;

use crate::{
    config::Connections,
    model::TaskState,
    net::{Incoming, authorization, host::AllowedHosts},
    tenant,
};

/// The `--metrics-token` as a scrape carries it, for a refusal's wording.
const METRICS_TOKEN: authorization::Carrier = authorization::Carrier {
    name: "the Authorization header",
    send: "`Authorization: Bearer <the --metrics-token>`",
};

/// What the live state holds, read at each scrape.
#[derive(Debug, Default)]
pub struct Load {
    /// Per tool key: queued and running tasks.
    pub tools: Vec<(Arc<str>, usize, usize)>,
    pub workers: usize,
}

/// Whatever can tell the live load (the scheduler).
pub trait LoadSource: Send + Sync {
    fn load(&self) -> Load;
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToolLabels {
    pub tenant: String,
    pub tool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub tenant: String,
    pub tool: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    pub peer: String,
}

pub struct Metrics {
    registry: Registry,
    auth_failures: Family<PeerLabels, Counter>,
    submitted: Family<ToolLabels, Counter>,
    finished: Family<StateLabels, Counter>,
    queued: Family<ToolLabels, Gauge>,
    running: Family<ToolLabels, Gauge>,
    workers: Gauge,
    streams: Gauge,
    dispatch_latency: Histogram,
    delivery_latency: Histogram,
    store_retries: Family<OpLabels, Counter>,
    store_failures: Family<OpLabels, Counter>,
    store_write_failures: Family<KindLabels, Counter>,
    store_writable: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub op: String,
}

fn labels(tool_key: &str) -> ToolLabels {
    let (tenant, tool) = tenant::split(tool_key);
    ToolLabels {
        tenant: tenant.to_string(),
        tool: tool.to_string(),
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("errand");
        let m = Metrics {
            submitted: Family::default(),
            auth_failures: Family::default(),
            finished: Family::default(),
            queued: Family::default(),
            running: Family::default(),
            workers: Gauge::default(),
            streams: Gauge::default(),
            // 100 µs to ~30 min.
            dispatch_latency: Histogram::new(exponential_buckets(0.0001, 2.5, 18)),
            delivery_latency: Histogram::new(exponential_buckets(0.0001, 2.5, 18)),
            registry: Registry::default(),
            store_retries: Family::default(),
            store_failures: Family::default(),
            store_write_failures: Family::default(),
            store_writable: Gauge::default(),
        };
        m.store_writable.set(1);
        registry.register(
            "store_write_failures",
            "Store writes that failed for a reason of the store's own, by kind \
             (full: out of space; unavailable: unreachable; internal: corrupt or a bug)",
            m.store_write_failures.clone(),
        );
        registry.register(
            "store_writable",
            "1 while the store's writes go through, 0 while the last one failed",
            m.store_writable.clone(),
        );
        registry.register(
            "store_retries",
            "Store writes retried after a transient error, by operation",
            m.store_retries.clone(),
        );
        registry.register(
            "store_failures",
            "Store writes given up (a permanent error, or retries used up), by operation",
            m.store_failures.clone(),
        );
        registry.register(
            "tasks_submitted",
            "Tasks accepted by SubmitTool",
            m.submitted.clone(),
        );
        registry.register(
            "tasks_finished",
            "Tasks finished, by final state",
            m.finished.clone(),
        );
        registry.register(
            "tasks_queued",
            "Tasks waiting for a worker (queue depth)",
            m.queued.clone(),
        );
        registry.register("tasks_running", "Tasks held by a worker", m.running.clone());
        registry.register("workers_connected", "Registered workers", m.workers.clone());
        registry.register(
            "completion_streams",
            "Open Completions streams",
            m.streams.clone(),
        );
        registry.register(
            "dispatch_latency_seconds",
            "From submit to the first dispatch to a worker",
            m.dispatch_latency.clone(),
        );
        registry.register(
            "delivery_latency_seconds",
            "From a task's completion to its sending on a Completions stream",
            m.delivery_latency.clone(),
        );
        registry.register(
            "auth_failures",
            "Calls refused for a missing, wrong or expired token, by peer address \
             (the first 256 addresses; later ones as \"other\")",
            m.auth_failures.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// A store write of `op` is retried after a transient error.
    pub fn store_retry(&self, op: &str) {
        let labels = OpLabels { op: op.to_string() };
        self.store_retries.get_or_create(&labels).inc();
    }

    /// A store write of `op` was given up.
    pub fn store_failure(&self, op: &str) {
        let labels = OpLabels { op: op.to_string() };
        self.store_failures.get_or_create(&labels).inc();
    }

    /// A store write failed with an error of `kind` (full, unavailable,
    /// internal).
    pub fn store_write_failed(&self, kind: &str) {
        let labels = KindLabels {
            kind: kind.to_string(),
        };
        self.store_write_failures.get_or_create(&labels).inc();
    }

    /// Whether the store's writes go through.
    pub fn store_writable(&self, writable: bool) {
        self.store_writable.set(i64::from(writable));
    }

    pub fn submitted(&self, tool_key: &str) {
        self.submitted.get_or_create(&labels(tool_key)).inc();
    }

    pub fn finished(&self, tool_key: &str, state: TaskState) {
        let ToolLabels { tenant, tool } = labels(tool_key);
        self.finished
            .get_or_create(&StateLabels {
                tenant,
                tool,
                state: state.name().to_ascii_lowercase(),
            })
            .inc();
    }

    /// One call refused for its token, from `peer` (an address or "other").
    pub fn auth_failed(&self, peer: &str) {
        self.auth_failures
            .get_or_create(&PeerLabels {
                peer: peer.to_string(),
            })
            .inc();
    }

    pub fn dispatched_after(&self, wait: Duration) {
        self.dispatch_latency.observe(wait.as_secs_f64());
    }

    pub fn delivered_after(&self, wait: Duration) {
        self.delivery_latency.observe(wait.as_secs_f64());
    }

    pub fn stream_opened(&self) {
        self.streams.inc();
    }

    pub fn stream_closed(&self) {
        self.streams.dec();
    }

    /// The metrics in Prometheus' text format, the live gauges read from `source`.
    pub fn render(&self, source: &dyn LoadSource) -> String {
        let load = source.load();
        self.queued.clear();
        self.running.clear();
        for (tool, queued, running) in &load.tools {
            self.queued.get_or_create(&labels(tool)).set(*queued as i64);
            self.running
                .get_or_create(&labels(tool))
                .set(*running as i64);
        }
        self.workers.set(load.workers as i64);
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            warn!(error = %e, "encoding metrics failed");
        }
        out
    }
}

/// Who may scrape: with `token`, only a scrape that sends `Authorization:
/// Bearer <token>`, by whatever host name; without one, a scrape whose
/// `Host` is in `hosts` (the allow-list the other HTTP listeners keep,
/// against DNS rebinding: a page of another name gets 403; with a token a
/// page cannot read the metrics anyway, as it has no token).
pub struct Access {
    pub token: Option<Arc<str>>,
    pub hosts: AllowedHosts,
}

/// Serves `GET /metrics` on `incoming` until `shutdown` is cancelled, over
/// `tls` when given (the gRPC port's certificate and client CA), to the
/// scrapes `access` lets in (403 for another `Host`, 401 without the token).
pub async fn serve(
    incoming: Incoming,
    limits: Connections,
    access: Access,
    metrics: Arc<Metrics>,
    source: Arc<dyn LoadSource>,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    shutdown: CancellationToken,
) {
    use axum::{
        Router,
        http::{HeaderMap, StatusCode, header},
        response::IntoResponse,
        routing::get,
    };
    let expected = access.token.map(|t| hash(t.as_bytes()));
    let guarded = expected.is_some();
    let hosts = Arc::new(access.hosts);
    let app = Router::new().route(
        "/metrics",
        get(move |headers: HeaderMap| {
            let metrics = metrics.clone();
            let source = source.clone();
            async move {
                if let Some(expected) = expected {
                    let value = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
                    let refused = match authorization::bearer_token(value) {
                        Ok(t) if hash(t.as_bytes()) == expected => None,
                        Ok(_) => Some(format!(
                            "the bearer token is not the metrics token: send {}",
                            METRICS_TOKEN.send
                        )),
                        Err(e) => Some(e.message(METRICS_TOKEN)),
                    };
                    if let Some(message) = refused {
                        return (
                            StatusCode::UNAUTHORIZED,
                            [(header::WWW_AUTHENTICATE, "Bearer")],
                            format!("{message}\n"),
                        )
                            .into_response();
                    }
                }
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.render(&*source),
                )
                    .into_response()
            }
        }),
    );
    let app = if guarded {
        app
    } else {
        app.layer(axum::middleware::from_fn_with_state(
            hosts,
            crate::net::host::check_host,
        ))
    };
    crate::net::http::serve_tls(
        incoming,
        app,
        &limits,
        tls,
        crate::net::http::Calls::RunToEnd,
        shutdown,
    )
    .await;
}

/// Compared as hashes: equal-length values, and nothing about the token
/// leaks through how long a comparison takes.
fn hash(bytes: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).into()
}
