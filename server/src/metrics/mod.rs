//! Prometheus metrics, served in the OpenMetrics text format on `GET
//! /metrics` of `--metrics-listen`.
//!
//! Counters and histograms are updated where things happen (submit, dispatch,
//! completion, delivery); the open-streams gauge moves as streams open and
//! close; the gauges of the scheduler's live state (queue depth, running
//! tasks, workers) are read from a [`LoadSource`] at each scrape, so they
//! cannot drift.
//!
//! Every labelled series is bounded: `tool` series go when the registry
//! forgets the tool ([`Metrics::forget_tools`]) and are at most
//! `--max-tools-per-tenant` per tenant (more count under `tool="(other)"`);
//! tenants come from the tokens file; `peer` is capped in `FailedAuth`; `op`
//! and `state` are fixed sets.
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

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

use crate::{model::TaskState, tenant};

mod serve;
pub use serve::{Access, serve};

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

/// The `tool` label of a tenant's series past its bound: not a valid tool
/// name, so it names no tool.
pub const OTHER_TOOL: &str = "(other)";

/// The states a finished task can end in (the `state` label).
const FINAL: [TaskState; 4] = [
    TaskState::Succeeded,
    TaskState::Failed,
    TaskState::Cancelled,
    TaskState::TimedOut,
];

/// The tools with `submitted`/`finished` series, per tenant.
#[derive(Default)]
struct ToolSeries {
    max_per_tenant: usize,
    tenants: HashMap<String, HashSet<String>>,
}

impl ToolSeries {
    /// The labels tool key `key` counts under: its own while its tenant has
    /// room, else the tenant's [`OTHER_TOOL`].
    fn labels(&mut self, key: &str) -> ToolLabels {
        let (tenant, tool) = tenant::split(key);
        let tools = self.tenants.entry(tenant.to_string()).or_default();
        let tool = if tools.contains(tool) || tools.len() < self.max_per_tenant {
            tools.insert(tool.to_string());
            tool
        } else {
            OTHER_TOOL
        };
        ToolLabels {
            tenant: tenant.to_string(),
            tool: tool.to_string(),
        }
    }
}

pub struct Metrics {
    registry: Registry,
    /// Held while a tool's series are made or removed, so none outlives
    /// its entry here.
    tools: Mutex<ToolSeries>,
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
    /// With the default `--max-tools-per-tenant`.
    fn default() -> Self {
        Self::new(crate::config::Limits::default().max_tools_per_tenant)
    }
}

impl Metrics {
    /// Metrics keeping at most `max_tools_per_tenant` tool series per tenant
    /// (as many as the registry keeps tools; at least 1).
    pub fn new(max_tools_per_tenant: usize) -> Self {
        let mut registry = Registry::with_prefix("errand");
        let m = Metrics {
            tools: Mutex::new(ToolSeries {
                max_per_tenant: max_tools_per_tenant.max(1),
                tenants: HashMap::new(),
            }),
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

    fn tool_series(&self) -> std::sync::MutexGuard<'_, ToolSeries> {
        self.tools.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes the series of tool keys `keys` (tools the registry forgot):
    /// their counters restart from 0 if the tool comes back.
    pub fn forget_tools(&self, keys: &[Arc<str>]) {
        let mut series = self.tool_series();
        for key in keys {
            let (tenant, tool) = tenant::split(key);
            let Some(tools) = series.tenants.get_mut(tenant) else {
                continue;
            };
            if !tools.remove(tool) {
                continue;
            }
            if tools.is_empty() {
                series.tenants.remove(tenant);
            }
            self.remove_series(tenant, tool);
        }
    }

    /// Removes the series of every tool key for which `known` is false
    /// (the tenants' overflow series stay).
    pub fn retain_tools(&self, known: impl Fn(&str) -> bool) {
        let mut series = self.tool_series();
        let mut gone = Vec::new();
        for (tenant, tools) in &mut series.tenants {
            tools.retain(|tool| {
                let keep = known(&tenant::key(tenant, tool));
                if !keep {
                    gone.push((tenant.clone(), tool.clone()));
                }
                keep
            });
        }
        series.tenants.retain(|_, tools| !tools.is_empty());
        for (tenant, tool) in gone {
            self.remove_series(&tenant, &tool);
        }
    }

    fn remove_series(&self, tenant: &str, tool: &str) {
        let labels = ToolLabels {
            tenant: tenant.to_string(),
            tool: tool.to_string(),
        };
        self.submitted.remove(&labels);
        for state in FINAL {
            self.finished.remove(&StateLabels {
                tenant: labels.tenant.clone(),
                tool: labels.tool.clone(),
                state: state.name().to_ascii_lowercase(),
            });
        }
    }

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
        let mut series = self.tool_series();
        self.submitted.get_or_create(&series.labels(tool_key)).inc();
    }

    pub fn finished(&self, tool_key: &str, state: TaskState) {
        let mut series = self.tool_series();
        let ToolLabels { tenant, tool } = series.labels(tool_key);
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

    /// The metrics in the OpenMetrics text format (which Prometheus
    /// scrapes), the live gauges read from `source`.
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

#[cfg(test)]
mod tests {
    use super::*;

    struct Idle;
    impl LoadSource for Idle {
        fn load(&self) -> Load {
            Load::default()
        }
    }

    /// Distinct `tool` values of `family` of `tenant` in `text`.
    fn tools(text: &str, family: &str, tenant: &str) -> std::collections::HashSet<String> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{family}{{tenant=\"{tenant}\",")))
            .filter_map(|l| l.split("tool=\"").nth(1)?.split('"').next())
            .map(String::from)
            .collect()
    }

    #[test]
    fn tool_series_are_bounded_per_tenant_with_an_overflow_value() {
        let m = Metrics::default();
        for i in 0..1100 {
            let key = tenant::key("t", &format!("tool{i}"));
            m.submitted(&key);
            m.finished(&key, TaskState::Succeeded);
        }
        m.submitted(&tenant::key("u", "mine"));
        let text = m.render(&Idle);
        for family in [
            "errand_tasks_submitted_total",
            "errand_tasks_finished_total",
        ] {
            let seen = tools(&text, family, "t");
            assert_eq!(seen.len(), 1024 + 1, "{family}");
        }
        let seen = tools(&text, "errand_tasks_submitted_total", "u");
        assert!(seen.contains("mine"), "another tenant keeps its own room");
        assert!(
            text.lines()
                .any(|l| l == r#"errand_tasks_submitted_total{tenant="t",tool="(other)"} 76"#),
            "the overflow counts what it took in"
        );
    }

    #[test]
    fn forgotten_tools_lose_their_series_and_free_their_room() {
        let m = Metrics::new(2);
        let key = |t: &str| Arc::<str>::from(tenant::key("t", t));
        for t in ["a", "b", "c"] {
            m.submitted(&key(t));
            m.finished(&key(t), TaskState::Failed);
        }
        m.forget_tools(&[key("a")]);
        m.retain_tools(|k| k != &*key("b"));
        m.submitted(&key("d"));
        let text = m.render(&Idle);
        let seen = tools(&text, "errand_tasks_submitted_total", "t");
        assert_eq!(seen, ["d", OTHER_TOOL].map(String::from).into(), "{text}");
        let seen = tools(&text, "errand_tasks_finished_total", "t");
        assert_eq!(seen, [OTHER_TOOL].map(String::from).into(), "{text}");
    }
}
