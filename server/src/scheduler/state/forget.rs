//! The tool registry's bounds: at most `max_tools_per_tenant` tools per
//! tenant, and tools that no worker serves and no queued task needs are
//! forgotten, after `tool_retention`, or sooner when a registration needs
//! their place. A forgotten tool is NOT_FOUND until a worker registers it
//! again.
//!
//! The persisted registry: every forgetting goes through [`State::forget`],
//! whose returned keys the scheduler deletes from the store as well
//! (`scheduler/registry.rs`). A tool another server's workers serve is never
//! forgotten (its stored definition stays). Stored definitions come in
//! through [`State::learn_tools`].
use std::{sync::Arc, time::SystemTime};

use super::{Io, State, ToolEntry};
use crate::tenant;

impl ToolEntry {
    /// No worker serves it and no task of it is queued or running here.
    fn forgettable(&self) -> bool {
        self.workers.is_empty() && self.queue.is_empty()
    }
}

impl<I: Io> State<I> {
    /// Shared mode: whether another server's workers serve tool `key` (its
    /// stored definition must stay).
    fn served_elsewhere(&self, key: &str) -> bool {
        self.remote.get(key).is_some_and(|(_, w)| *w > 0)
    }

    /// Takes stored definitions into the registry (see
    /// `scheduler/registry.rs`): a tool not known here becomes known,
    /// unserved since it was last served; one known and unserved here takes
    /// the stored definition (the latest registered, on any server); one
    /// that workers here serve keeps theirs. A tenant gets no more than
    /// `max` tools this way. Returns how many tools are known.
    pub fn learn_tools(
        &mut self,
        specs: Vec<(crate::tools::ToolSpec, SystemTime)>,
        max: usize,
    ) -> usize {
        let mut counts: std::collections::HashMap<String, usize> = Default::default();
        for (key, t) in &self.tools {
            if t.spec.is_some() {
                *counts.entry(tenant::of(key).to_string()).or_default() += 1;
            }
        }
        let mut learned = Vec::new();
        for (spec, served_at) in specs {
            match self.tools.get(spec.name.as_key()) {
                Some(t) if !t.workers.is_empty() => {}
                Some(t) if t.spec.is_some() => learned.push((spec, None)),
                _ => {
                    let tenant = tenant::of(spec.name.as_key()).to_string();
                    let count = counts.entry(tenant).or_default();
                    if *count < max {
                        *count += 1;
                        learned.push((spec, Some(served_at)));
                    }
                }
            }
        }
        for (spec, since) in learned {
            let entry = self.tools.entry(spec.name.as_arc().clone()).or_default();
            entry.spec = Some(spec);
            if since.is_some() {
                entry.unserved_since = since;
            }
        }
        self.tools.values().filter(|t| t.spec.is_some()).count()
    }

    /// Makes room for a registration by `tenant` of the tools `names`
    /// (keys): forgets the tenant's forgettable tools, longest unserved
    /// first, as many as the new ones exceed `max`. Returns the keys
    /// forgotten, or, when even that is not enough, the number of tools the
    /// tenant keeps.
    pub fn make_room(
        &mut self,
        tenant: &str,
        names: &[Arc<str>],
        max: usize,
    ) -> Result<Vec<Arc<str>>, usize> {
        let keys = self.room_for(tenant, names, max)?;
        Ok(if keys.is_empty() {
            keys
        } else {
            self.forget(keys)
        })
    }

    /// What [`Self::make_room`] would forget, changing nothing.
    pub fn room_for(
        &self,
        tenant: &str,
        names: &[Arc<str>],
        max: usize,
    ) -> Result<Vec<Arc<str>>, usize> {
        let mine = |key: &str| tenant::of(key) == tenant;
        let known = self
            .tools
            .iter()
            .filter(|(k, t)| t.spec.is_some() && mine(k))
            .count();
        let new = names
            .iter()
            .filter(|n| self.tools.get(*n).is_none_or(|t| t.spec.is_none()))
            .count();
        let over = (known + new).saturating_sub(max);
        if over == 0 {
            return Ok(Vec::new());
        }
        let mut candidates: Vec<(Option<SystemTime>, Arc<str>)> = self
            .tools
            .iter()
            .filter(|(k, t)| mine(k) && t.spec.is_some() && t.forgettable())
            .filter(|(k, _)| !names.contains(k) && !self.served_elsewhere(k))
            .map(|(k, t)| (t.unserved_since, k.clone()))
            .collect();
        if candidates.len() < over {
            return Err(known);
        }
        // Longest unserved first; not yet stamped (`None`) counts as now.
        candidates.sort_by_key(|(since, _)| (since.is_none(), *since));
        Ok(candidates.into_iter().take(over).map(|(_, k)| k).collect())
    }

    /// Forgets every tool unserved for `retention` at `now` (and entries
    /// left by recovered tasks once their queue is empty). Stamps newly
    /// unserved ones. Returns the keys of forgotten tools that had a spec.
    pub fn forget_unserved(
        &mut self,
        retention: std::time::Duration,
        now: SystemTime,
    ) -> Vec<Arc<str>> {
        let mut old = Vec::new();
        let remote = &self.remote;
        for (key, entry) in &mut self.tools {
            let elsewhere = remote.get(key).is_some_and(|(_, w)| *w > 0);
            if !entry.forgettable() || elsewhere {
                entry.unserved_since = None;
                continue;
            }
            match entry.unserved_since {
                _ if entry.spec.is_none() => old.push(key.clone()),
                None => entry.unserved_since = Some(now),
                Some(since) if now.duration_since(since).unwrap_or_default() >= retention => {
                    old.push(key.clone());
                }
                Some(_) => {}
            }
        }
        self.forget(old)
    }

    /// Removes forgettable tools `keys`; returns those removed that had a spec.
    pub fn forget(&mut self, keys: Vec<Arc<str>>) -> Vec<Arc<str>> {
        keys.into_iter()
            .filter(|k| {
                self.tools.get(k).is_some_and(ToolEntry::forgettable)
                    && !self.served_elsewhere(k)
                    && self.tools.remove(k).is_some_and(|t| t.spec.is_some())
            })
            .collect()
    }

    /// Whether tool key `key` has an entry (a definition, or tasks queued).
    pub fn knows_tool(&self, key: &str) -> bool {
        self.tools.contains_key(key)
    }

    /// Registered tools, every tenant together.
    #[cfg(test)]
    pub fn tool_count(&self) -> usize {
        self.tools.values().filter(|t| t.spec.is_some()).count()
    }
}
