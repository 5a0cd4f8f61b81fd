//! What the live state tells about tools and load: lookups for submits,
//! listings, metrics, and the questions shared mode asks.
use std::{collections::HashMap, sync::Arc};

use uuid::Uuid;

use super::{Io, State, WorkerEntry};
use crate::{tenant, tools::ToolSpec};

impl<I: Io> State<I> {
    /// A registered tool's spec, local or (shared mode) another server's.
    pub fn tool_spec(&self, key: &str) -> Option<ToolSpec> {
        if let Some(spec) = self.tools.get(key).and_then(|t| t.spec.clone()) {
            return Some(spec);
        }
        self.remote.get(key).map(|(spec, _)| spec.clone())
    }

    /// The names (not keys) of `tenant`'s registered tools, sorted, once each.
    pub fn tool_names(&self, tenant: &str) -> Vec<&str> {
        let mut known: Vec<&str> = self
            .tools
            .iter()
            .filter(|(n, t)| t.spec.is_some() && tenant::of(n) == tenant)
            .map(|(n, _)| tenant::strip(n))
            .chain(
                self.remote
                    .keys()
                    .filter(|n| tenant::of(n) == tenant)
                    .map(|n| tenant::strip(n)),
            )
            .collect();
        known.sort_unstable();
        known.dedup();
        known
    }

    /// `tenant`'s tools with the workers serving each (here and, in shared
    /// mode, elsewhere), sorted by name.
    pub fn list_tools(&self, tenant: &str) -> Vec<(ToolSpec, u32)> {
        let mut tools: Vec<(ToolSpec, u32)> = self
            .tools
            .iter()
            .filter(|(name, _)| tenant::of(name) == tenant)
            .filter_map(|(_, t)| t.spec.clone().map(|s| (s, t.workers.len() as u32)))
            .collect();
        let remote = self.remote.iter().filter(|(n, _)| tenant::of(n) == tenant);
        for (name, (spec, workers)) in remote {
            match tools.iter_mut().find(|(s, _)| s.name.as_key() == &**name) {
                Some((_, w)) => *w += workers,
                None => tools.push((spec.clone(), *workers)),
            }
        }
        tools.sort_by(|a, b| a.0.name.name().cmp(b.0.name.name()));
        tools
    }

    /// Queued and running tasks per tool key, and workers connected.
    pub fn load(&self) -> (Vec<(Arc<str>, usize, usize)>, usize) {
        let mut running: HashMap<&Arc<str>, usize> = HashMap::new();
        for live in self.tasks.values().filter(|l| l.worker.is_some()) {
            *running.entry(&live.task.tool).or_default() += 1;
        }
        let tools = self
            .tools
            .iter()
            .map(|(name, t)| {
                let r = running.get(name).copied().unwrap_or(0);
                (name.clone(), t.queue.len(), r)
            })
            .collect();
        (tools, self.workers.len())
    }

    /// Whether a worker here serving `tool` has a free slot (one neither
    /// running nor held, see `room.rs`) and no task of the tool is waiting
    /// here.
    pub fn has_room_for(&self, tool: &str) -> bool {
        self.tools.get(tool).is_some_and(|entry| {
            entry.queue.is_empty()
                && entry
                    .workers
                    .iter()
                    .filter_map(|id| self.workers.get(id))
                    .any(WorkerEntry::has_room)
        })
    }

    /// How `spec` differs from the definition of the same tool already
    /// known here: the names of the fields that differ, and whether workers
    /// here serve that definition now. `None` when it is new or the same.
    pub fn differs(&self, spec: &ToolSpec) -> Option<(Vec<&'static str>, bool)> {
        let known = self.tools.get(spec.name.as_key())?;
        let fields = differing_fields(known.spec.as_ref()?, spec);
        (!fields.is_empty()).then_some((fields, !known.workers.is_empty()))
    }

    /// Whether a worker here or (in shared mode) elsewhere serves tool key
    /// `tool`.
    pub fn is_served(&self, tool: &str) -> bool {
        self.serves(tool) || self.remote.get(tool).is_some_and(|(_, w)| *w > 0)
    }

    /// Whether a worker here serves `tool`.
    pub fn serves(&self, tool: &str) -> bool {
        self.tools.get(tool).is_some_and(|t| !t.workers.is_empty())
    }

    /// Shared mode: takes out the queued tasks of `tools` that no worker
    /// here serves (they go back to the store's queue).
    pub fn unservable(&mut self, tools: &[Arc<str>]) -> Vec<Uuid> {
        let mut out = Vec::new();
        for tool in tools {
            let Some(entry) = self.tools.get_mut(tool) else {
                continue;
            };
            if !entry.workers.is_empty() {
                continue;
            }
            while let Some((session, id)) = entry.queue.pop() {
                out.push((session, id));
            }
        }
        out.into_iter()
            .map(|(_, id)| {
                if let Some(live) = self.tasks.remove(&id) {
                    // Its next run, if it is claimed here again, resumes.
                    self.park_progress(id, live.reports, live.detail);
                    self.release(live.held);
                }
                id
            })
            .collect()
    }

    /// The spec of tool key `key` as known here (served or not).
    pub fn local_spec(&self, key: &str) -> Option<ToolSpec> {
        self.tools.get(key).and_then(|t| t.spec.clone())
    }

    /// The specs of the tools this server's workers serve, with how many.
    pub fn local_tools(&self) -> Vec<(ToolSpec, u32)> {
        self.tools
            .values()
            .filter(|t| !t.workers.is_empty())
            .filter_map(|t| t.spec.clone().map(|s| (s, t.workers.len() as u32)))
            .collect()
    }

    /// Replaces what is known of other servers' tools.
    pub fn set_remote_tools(&mut self, remote: HashMap<Arc<str>, (ToolSpec, u32)>) {
        self.remote = remote;
    }
}

/// The names of the fields in which tool definition `spec` differs from
/// `old`; empty when they are the same.
pub fn differing_fields(old: &ToolSpec, spec: &ToolSpec) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if old.description != spec.description {
        fields.push("description");
    }
    if old.input_schema_json != spec.input_schema_json {
        fields.push("input_schema_json");
    }
    if old.timeout != spec.timeout {
        fields.push("timeout_ms");
    }
    if old.queue_timeout != spec.queue_timeout {
        fields.push("queue_timeout_ms");
    }
    let (a, b) = (&old.policy, &spec.policy);
    for (differ, field) in [
        (a.delivery != b.delivery, "delivery"),
        (a.join_in_flight != b.join_in_flight, "dedup"),
        (
            a.result_budget_bytes != b.result_budget_bytes,
            "result_budget_bytes",
        ),
        (a.fallback != b.fallback, "fallback"),
        (
            a.cancellable_by_model != b.cancellable_by_model,
            "cancellable_by_model",
        ),
    ] {
        if differ {
            fields.push(field);
        }
    }
    fields
}
