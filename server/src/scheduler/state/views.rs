//! What the live state shows operators: connected workers, who runs a task,
//! and per-tool queue depth.
use std::{collections::HashMap, sync::Arc, time::SystemTime};

use uuid::Uuid;

use super::{Io, State, WorkerId};
use crate::tenant;

/// One connected worker as listings show it. `tools` hold keys.
#[derive(Debug, Clone)]
pub struct WorkerView {
    pub id: WorkerId,
    pub name: String,
    pub tools: Vec<Arc<str>>,
    pub max_concurrency: usize,
    pub running: usize,
    pub connected_at: SystemTime,
    pub last_seen: SystemTime,
}

impl<I: Io> State<I> {
    /// Workers serving a tool of `tenant` (every worker when `None`), and
    /// only those serving `tool` (a key) when given; sorted by ID.
    pub fn workers(&self, tenant: Option<&str>, tool: Option<&str>) -> Vec<WorkerView> {
        let mut out: Vec<WorkerView> = self
            .workers
            .iter()
            .filter(|(_, w)| {
                tenant.is_none_or(|t| w.tools.iter().any(|k| tenant::of(k) == t))
                    && tool.is_none_or(|t| w.tools.iter().any(|k| &**k == t))
            })
            .map(|(id, w)| WorkerView {
                id: *id,
                name: w.name.clone(),
                tools: w.tools.clone(),
                max_concurrency: w.max_concurrency,
                running: w.running.len(),
                connected_at: w.connected_at,
                last_seen: w.last_seen,
            })
            .collect();
        out.sort_by_key(|w| w.id);
        out
    }

    /// The worker running task `id`, if it runs here: its ID and name.
    pub fn runner(&self, id: Uuid) -> Option<(WorkerId, &str)> {
        let worker = self.tasks.get(&id)?.worker?;
        Some((worker, self.workers.get(&worker)?.name.as_str()))
    }

    /// Notes that `worker` was heard from.
    pub fn touch(&mut self, worker: WorkerId, now: SystemTime) {
        if let Some(w) = self.workers.get_mut(&worker) {
            w.last_seen = now;
        }
    }

    /// The tenants with a known tool, here or (shared mode) elsewhere.
    pub fn tenants(&self) -> std::collections::BTreeSet<String> {
        self.tools
            .keys()
            .chain(self.remote.keys())
            .map(|k| tenant::of(k).to_string())
            .collect()
    }

    /// Queued and running tasks per tool key of every tenant, here.
    pub fn depth_all(&self) -> HashMap<Arc<str>, (usize, usize)> {
        let mut out: HashMap<Arc<str>, (usize, usize)> = HashMap::new();
        for (name, t) in &self.tools {
            out.entry(name.clone()).or_default().0 = t.queue.len();
        }
        for live in self.tasks.values().filter(|l| l.worker.is_some()) {
            out.entry(live.task.tool.clone()).or_default().1 += 1;
        }
        out
    }

    /// Queued and running tasks per tool key of `tenant`, here.
    pub fn depth(&self, tenant: &str) -> HashMap<Arc<str>, (usize, usize)> {
        let mut out: HashMap<Arc<str>, (usize, usize)> = HashMap::new();
        for (name, t) in self.tools.iter().filter(|(n, _)| tenant::of(n) == tenant) {
            out.entry(name.clone()).or_default().0 = t.queue.len();
        }
        for live in self.tasks.values().filter(|l| l.worker.is_some()) {
            if tenant::of(&live.task.tool) == tenant {
                out.entry(live.task.tool.clone()).or_default().1 += 1;
            }
        }
        out
    }
}
